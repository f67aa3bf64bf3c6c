"""Reports of an experiment: ``summary.csv``, a self-contained ``report.html`` and a rich table.

Rows (one per cell, as ``run_experiment`` returns them) are aggregated over seeds per condition (method
label, scale, trait). The HTML has these sections (``id``), in order: ``table`` (method × trait: trait score
mean ± SD, self-report, coherence, perplexity), ``dose-response`` (curves of each swept method, with r, ρ,
monotonicity and the breakdown scale), ``monitor`` (persona-vector projection vs judged score), ``examples``
(answers per method and pole), ``profile`` (mean linguistic profile of the answers per method: plain
measures and empath categories, see ``evaluation.profile``), then ``summary`` (one line per condition),
``npti`` (NPTI-style table: mean and variance of the trait expression per trait per method) and ``heatmap``
(method × trait, embedded PNG).
Plots are matplotlib PNGs embedded as base64: the file needs nothing else.
"""

from __future__ import annotations

import base64
import csv
import html
import io
import math
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from rich.table import Table

from traitlab.evaluation import scoring
from traitlab.evaluation.dose import dose_response
from traitlab.validate import atomic_file, write_text_atomic

METRICS = ("questionnaire", "trait_expression", "expression_var", "coherence", "perplexity", "capability",
           "neutral_perplexity")
COLUMNS = ("label", "method", "trait", "pole", "scale", "seeds", *METRICS, "capability_retention")
SHORT = {"questionnaire": "self-report", "trait_expression": "expression", "expression_var": "var",
         "coherence": "coherence", "perplexity": "ppl", "capability": "MCQ acc", "neutral_perplexity": "neutral ppl",
         "capability_retention": "retention"}


def _num(value: Any) -> float | None:
    if value is None:
        return None
    try:
        value = float(value)
    except (TypeError, ValueError):
        return None
    return None if math.isnan(value) else value


def summarize(rows: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """One line per (label, scale, trait): metrics averaged over seeds, and capability retention relative to
    the ``none`` method (same trait) when the experiment has one."""
    groups: dict[tuple[Any, ...], list[dict[str, Any]]] = {}
    for row in rows:
        groups.setdefault((row["label"], row.get("scale"), row["trait"]), []).append(row)
    out = []
    for (label, scale, trait), members in groups.items():
        first = members[0]
        line: dict[str, Any] = {"label": label, "method": first["method"], "trait": trait, "pole": first.get("pole"),
                                "scale": scale, "seeds": len(members)}
        for metric in METRICS:
            line[metric] = scoring.mean(v for v in (_num(m.get(metric)) for m in members) if v is not None)
        out.append(line)
    baseline = {line["trait"]: line["capability"] for line in out if line["method"] == "none"}
    for line in out:
        base = baseline.get(line["trait"])
        line["capability_retention"] = (line["capability"] / base if base and line["capability"] is not None
                                        else None)
    return out


def _fmt(value: Any, digits: int = 2) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return str(value)


def _condition(line: dict[str, Any]) -> str:
    return line["label"] if line["scale"] is None else f"{line['label']} @ {line['scale']:g}"


def summary_table(rows: Sequence[dict[str, Any]], title: str = "results") -> Table:
    lines = summarize(rows)
    shown = [m for m in (*METRICS, "capability_retention") if any(line[m] is not None for line in lines)]
    table = Table(title=title)
    table.add_column("method")
    table.add_column("trait")
    for metric in shown:
        table.add_column(SHORT[metric], justify="right")
    for line in lines:
        table.add_row(_condition(line), line["trait"], *(_fmt(line[m]) for m in shown))
    return table


def write_summary_csv(rows: Sequence[dict[str, Any]], path: Path) -> Path:
    with atomic_file(path, newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(COLUMNS))
        writer.writeheader()
        for line in summarize(rows):
            writer.writerow({k: ("" if line.get(k) is None else line.get(k)) for k in COLUMNS})
    return path


def dose_curves(rows: Sequence[dict[str, Any]], threshold: float = 50.0) -> list[dict[str, Any]]:
    """Dose–response statistics of every (label, trait) swept over more than one scale."""
    lines = summarize(rows)
    curves: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for line in lines:
        if line["scale"] is not None:
            curves.setdefault((line["label"], line["trait"]), []).append(line)
    out = []
    for (label, trait), points in curves.items():
        if len(points) < 2:
            continue
        points.sort(key=lambda p: p["scale"])
        scales = [p["scale"] for p in points]
        metric = "trait_expression" if any(p["trait_expression"] is not None for p in points) else "questionnaire"
        stats = dose_response(scales, [p[metric] for p in points], [p["coherence"] for p in points], threshold)
        stats.update(label=label, trait=trait, metric=metric,
                     questionnaire=[p["questionnaire"] for p in points])
        out.append(stats)
    return out


# ---------------------------------------------------------------------------------------------- plots


def _png(fig: Any) -> str:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=90, bbox_inches="tight")
    import matplotlib.pyplot as plt

    plt.close(fig)
    return base64.b64encode(buffer.getvalue()).decode()


def _plt() -> Any:
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    return plt


def heatmap_png(lines: Sequence[dict[str, Any]]) -> tuple[str, str] | None:
    metric = "trait_expression" if any(line["trait_expression"] is not None for line in lines) else "questionnaire"
    conditions = list(dict.fromkeys(_condition(line) for line in lines))
    traits = list(dict.fromkeys(line["trait"] for line in lines))
    if not any(line[metric] is not None for line in lines):
        return None
    grid = [[math.nan] * len(traits) for _ in conditions]
    for line in lines:
        if line[metric] is not None:
            grid[conditions.index(_condition(line))][traits.index(line["trait"])] = line[metric]
    plt = _plt()
    fig, ax = plt.subplots(figsize=(1.6 + 1.3 * len(traits), 0.9 + 0.45 * len(conditions)))
    vmin, vmax = (0, 100) if metric == "trait_expression" else (1, 5)
    image = ax.imshow(grid, cmap="viridis", vmin=vmin, vmax=vmax, aspect="auto")
    ax.set_xticks(range(len(traits)), traits, rotation=30, ha="right")
    ax.set_yticks(range(len(conditions)), conditions)
    for i, row in enumerate(grid):
        for j, value in enumerate(row):
            if not math.isnan(value):
                ax.text(j, i, f"{value:.0f}" if vmax == 100 else f"{value:.2f}", ha="center", va="center",
                        color="white" if value < (vmin + vmax) / 2 else "black", fontsize=8)
    fig.colorbar(image, ax=ax, label=metric.replace("_", " "))
    ax.set_title(f"method × trait: {metric.replace('_', ' ')}")
    return metric, _png(fig)


def dose_png(curves: Sequence[dict[str, Any]], trait: str, threshold: float) -> str:
    """Left: judged trait expression (solid) and coherence (dashed) vs scale, 0-100; right: self-report."""
    plt = _plt()
    mine = [c for c in curves if c["trait"] == trait]
    fig, (left, right) = plt.subplots(1, 2, figsize=(9.5, 3.4), gridspec_kw={"wspace": 0.3})

    def values(series: Sequence[Any] | None) -> list[float]:
        return [math.nan if v is None else v for v in (series or [])]

    for index, curve in enumerate(mine):
        color = f"C{index}"
        if curve["metric"] == "trait_expression":
            left.plot(curve["scales"], values(curve["scores"]), "o-", color=color, label=f"{curve['label']} trait")
        if curve["coherence"] and any(v is not None for v in curve["coherence"]):
            left.plot(curve["scales"], values(curve["coherence"]), "s--", color=color, alpha=0.6,
                      label=f"{curve['label']} coherence")
        if any(v is not None for v in curve["questionnaire"]):
            right.plot(curve["scales"], values(curve["questionnaire"]), "o-", color=color, label=curve["label"])
    left.axhline(threshold, color="grey", lw=0.8, ls=":")
    left.set_ylim(-2, 102)
    right.set_ylim(0.9, 5.1)
    for ax, title, ylabel in ((left, "judged answers", "score (0-100)"), (right, "self-report", "questionnaire (1-5)")):
        ax.set_xlabel("scale")
        ax.set_ylabel(ylabel)
        ax.set_title(f"{trait}: {title}")
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=7)
    return _png(fig)


def reference_scale(scales: Sequence[float | None]) -> float | None:
    """The scale a method is shown at in the method × trait table: its only one, else 1.0 (the fitted
    strength) when swept over it, else the middle of the sweep."""
    ordered = sorted({s for s in scales if s is not None})
    if not ordered:
        return None
    return 1.0 if 1.0 in ordered else ordered[len(ordered) // 2]


def method_trait_lines(lines: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """Of ``summarize``'s lines, those of each method label at its reference scale, in experiment order."""
    scales: dict[str, list[float | None]] = {}
    for line in lines:
        scales.setdefault(line["label"], []).append(line["scale"])
    return [line for line in lines if line["scale"] == reference_scale(scales[line["label"]])]


def monitor_points(rows: Sequence[dict[str, Any]]) -> dict[tuple[str, str], dict[str, Any]]:
    """Monitor records by (method label, trait spec), from the first seed that has one."""
    out: dict[tuple[str, str], dict[str, Any]] = {}
    for row in rows:
        for spec, record in ((row.get("result") or {}).get("monitor") or {}).items():
            out.setdefault((row["label"], spec), record)
    return out


def monitor_png(records: dict[tuple[str, str], dict[str, Any]]) -> str:
    """One scatter per (method, trait): last-prompt projection vs judged score, coloured by system prompt."""
    plt = _plt()
    n = len(records)
    fig, axes = plt.subplots(1, n, figsize=(3.3 * n, 3.1), squeeze=False)
    colors = {"suppress": "C3", "none": "C7", "promote": "C2"}
    for ax, ((label, spec), record) in zip(axes[0], records.items(), strict=True):
        for condition, color in colors.items():
            pts = [p for p in record["points"] if p["condition"] == condition and p["score"] is not None]
            ax.scatter([p["projection"] for p in pts], [p["score"] for p in pts], s=12, color=color,
                       label=condition, alpha=0.8)
        r = record.get("pearson_r")
        ax.set_title(f"{spec} ({label}, L{record['layer']})\nr = {_fmt(r)}", fontsize=9)
        ax.set_xlabel("last-prompt projection")
        ax.set_ylim(-2, 102)
    axes[0][0].set_ylabel("judged trait score")
    axes[0][0].legend(fontsize=7)
    return _png(fig)


# ---------------------------------------------------------------------------------------------- html

_CSS = """body{font-family:system-ui,sans-serif;margin:2em;max-width:1200px;color:#222}
table{border-collapse:collapse;margin:1em 0;font-size:13px}th,td{border:1px solid #ccc;padding:4px 8px;text-align:right}
th{background:#f2f2f2}td.l,th.l{text-align:left}h2{border-bottom:1px solid #ddd;padding-bottom:4px;margin-top:2em}
.ex{border-left:3px solid #8ab;padding:4px 10px;margin:8px 0;background:#f8fafb}.q{color:#555}
.small{color:#666;font-size:12px}"""


def _table(headers: Sequence[str], body: Sequence[Sequence[Any]], left: int = 1) -> str:
    head = "".join(f'<th class="{"l" if i < left else ""}">{html.escape(str(h))}</th>' for i, h in enumerate(headers))
    lines = []
    for row in body:
        cells = "".join(f'<td class="{"l" if i < left else ""}">{html.escape(_fmt(v))}</td>' for i, v in enumerate(row))
        lines.append(f"<tr>{cells}</tr>")
    return f"<table><tr>{head}</tr>{''.join(lines)}</table>"


def _method_trait_section(lines: Sequence[dict[str, Any]]) -> str:
    """Methods as rows, traits as columns: judged trait expression mean ± SD (SD = √ of the answers'
    variance), then self-report, coherence and perplexity averaged over the traits. Each number cell
    carries ``data-label``/``data-trait``/``data-metric``/``data-value`` so it can be checked against
    ``results.jsonl``. ``lines``: ``method_trait_lines``."""
    traits = list(dict.fromkeys(x["trait"] for x in lines))
    labels = list(dict.fromkeys(x["label"] for x in lines))
    by = {(x["label"], x["trait"]): x for x in lines}
    extra = [m for m in ("questionnaire", "coherence", "perplexity") if any(x[m] is not None for x in lines)]
    head = "".join(f"<th>{html.escape(t)}</th>" for t in traits)
    head += "".join(f"<th>{html.escape(SHORT[m])} (mean)</th>" for m in extra)
    body = []
    for label in labels:
        mine = [by[(label, t)] for t in traits if (label, t) in by]
        scale = mine[0]["scale"]
        name = label if scale is None else f"{label} @ {scale:g}"
        cells = [f"<td class='l'>{html.escape(name)}</td>"]
        for trait in traits:
            x = by.get((label, trait))
            mean = None if x is None else x["trait_expression"]
            if mean is None:
                cells.append("<td>-</td>")
                continue
            sd = math.sqrt(x["expression_var"]) if x["expression_var"] is not None else None
            text = f"{mean:.1f}" + ("" if sd is None else f" ± {sd:.1f}")
            cells.append(f"<td data-label='{html.escape(label)}' data-trait='{html.escape(trait)}' "
                         f"data-metric='trait_expression' data-value='{mean:.4f}'>{text}</td>")
        for metric in extra:
            value = scoring.mean(v for v in (x[metric] for x in mine) if v is not None)
            attrs = (f" data-label='{html.escape(label)}' data-metric='{metric}' data-value='{value:.4f}'"
                     if value is not None else "")
            cells.append(f"<td{attrs}>{_fmt(value)}</td>")
        body.append(f"<tr>{''.join(cells)}</tr>")
    return (f"<section id='table'><h2>Method × trait</h2><table id='method-trait'><tr><th class='l'>method</th>"
            f"{head}</tr>{''.join(body)}</table><p class='small'>cells: judged expression of the trait's pole "
            "(0-100), mean ± SD over the answers; self-report: questionnaire 1-5 on the trait axis; coherence "
            "0-100; perplexity of the answers under the un-intervened model. Swept methods are shown at scale "
            "1 (the fitted strength); the dose-response section has the rest.</p></section>")


def _examples_section(rows: Sequence[dict[str, Any]], reference: Sequence[dict[str, Any]]) -> str:
    """Example answers per method (at its reference scale) and evaluated pole."""
    shown = {(x["label"], x["scale"]) for x in reference}
    parts = ["<section id='examples'><h2>Example answers</h2>"]
    count = 0
    for row in rows:
        if row.get("seed") != rows[0].get("seed") or (row["label"], row.get("scale")) not in shown:
            continue
        for spec, sit in (row.get("result", {}).get("situational") or {}).items():
            for ex in sit.get("examples", [])[:2]:
                parts.append(f"<div class='ex'><b>{html.escape(row['label'])}</b> · {html.escape(spec)} · "
                             f"expression {_fmt(ex.get('expression'), 0)} · coherence {_fmt(ex.get('coherence'), 0)}"
                             f"<div class='q'>Q: {html.escape(ex['question'])}</div>"
                             f"<div>A: {html.escape(ex['answer'])}</div></div>")
                count += 1
    if not count:
        parts.append("<p>no situational answers in this experiment</p>")
    return "".join(parts) + "</section>"


PROFILE_PLAIN = ("words", "i_rate", "you_rate", "question_rate", "exclaim_rate", "sentiment")


def method_profiles(rows: Sequence[dict[str, Any]], reference: Sequence[dict[str, Any]]) -> dict[str, dict]:
    """Per method label (at its reference scale): the mean of its situational answers' profiles over traits and
    seeds."""
    shown = {(x["label"], x["scale"]) for x in reference}
    found: dict[str, list[dict[str, float]]] = {}
    for row in rows:
        if (row["label"], row.get("scale")) not in shown:
            continue
        for sit in (row.get("result", {}).get("situational") or {}).values():
            if sit.get("profile"):
                found.setdefault(row["label"], []).append(sit["profile"])
    return {label: {k: scoring.mean(p.get(k, 0.0) for p in ps) for k in ps[0]} for label, ps in found.items()}


def _profile_section(rows: Sequence[dict[str, Any]], reference: Sequence[dict[str, Any]]) -> str:
    """Methods as rows: plain measures and the six empath categories that differ most between methods."""
    profiles = method_profiles(rows, reference)
    parts = ["<section id='profile'><h2>Linguistic profile</h2>"]
    if not profiles:
        return "".join(parts) + "<p>no profiles (situational answers and the empath package needed)</p></section>"
    keys = list(next(iter(profiles.values())))
    lexicon = [k for k in keys if k.startswith("empath:")]
    spread = {k: max(p.get(k, 0.0) for p in profiles.values()) - min(p.get(k, 0.0) for p in profiles.values())
              for k in lexicon}
    columns = [k for k in PROFILE_PLAIN if k in keys] + sorted(lexicon, key=lambda k: -spread[k])[:6]
    parts.append(_table(["method", *[c.removeprefix("empath:") for c in columns]],
                        [[label, *(p.get(c) for c in columns)] for label, p in profiles.items()]))
    parts.append("<p class='small'>means over each method's answers: words per answer; first-person singular and "
                 "second-person words per word; questions and exclamations per sentence; VADER sentiment −1…1; "
                 "empath category words per word (the six that differ most between methods; all are in "
                 "results.jsonl).</p></section>")
    return "".join(parts)


def render_html(rows: Sequence[dict[str, Any]], title: str = "traitlab report", threshold: float = 50.0) -> str:
    """The report: method × trait table, dose-response, monitor, example answers, then the details."""
    lines = summarize(rows)
    parts = [f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title>"
             f"<style>{_CSS}</style></head><body><h1>{html.escape(title)}</h1>"]
    models = sorted({str(r.get("model")) for r in rows})
    judges = sorted({str(r.get("judge")) for r in rows})
    parts.append(f"<p class='small'>model: {html.escape(', '.join(models))} · judge: {html.escape(', '.join(judges))}"
                 f" · {len(rows)} cells</p>")
    reference = method_trait_lines(lines)
    parts.append(_method_trait_section(reference))

    parts.append("<section id='dose-response'><h2>Dose–response</h2>")
    curves = dose_curves(rows, threshold)
    if not curves:
        parts.append("<p>no swept method (add <code>sweep: {scale: [...]}</code> to a method)</p>")
    else:
        for trait in dict.fromkeys(c["trait"] for c in curves):
            parts.append(f"<img alt='dose-response {html.escape(trait)}' "
                         f"src='data:image/png;base64,{dose_png(curves, trait, threshold)}'>")
        parts.append(_table(["method", "trait", "metric", "Pearson r", "Spearman ρ", "monotonicity",
                             f"coherence < {threshold:g} at"],
                            [[c["label"], c["trait"], c["metric"], c["pearson_r"], c["spearman_rho"],
                              c["monotonicity"], c["breakdown_scale"]] for c in curves], left=3))
    parts.append("</section><section id='monitor'><h2>Monitor: projection before the answer</h2>")
    records = monitor_points(rows)
    if records:
        parts.append("<p class='small'>Each point is one system prompt (suppressing, none or promoting the trait) "
                     "and question: the persona vector's projection at the last prompt token, read before the "
                     "model answers, against the judged score of its answer.</p>")
        parts.append(f"<img alt='monitor projections' src='data:image/png;base64,{monitor_png(records)}'>")
        parts.append(_table(["method", "trait", "layer", "Pearson r", "points"],
                            [[label, spec, r["layer"], r["pearson_r"], len(r["points"])]
                             for (label, spec), r in records.items()], left=2))
    else:
        parts.append("<p>no monitor records (add <code>monitor: {}</code> to the evaluations of an experiment "
                     "with persona vectors)</p>")
    parts.append("</section>")
    parts.append(_examples_section(rows, reference))
    parts.append(_profile_section(rows, reference))

    shown = [m for m in (*METRICS, "capability_retention") if any(line[m] is not None for line in lines)]
    parts.append("<section id='summary'><h2>Every condition</h2>")
    parts.append(_table(["method", "trait", "seeds", *shown],
                        [[_condition(x), x["trait"], x["seeds"], *(x[m] for m in shown)] for x in lines], left=2))
    parts.append("<p class='small'>questionnaire: self-report 1-5 on the trait axis; trait expression: judged "
                 "0-100 expression of the evaluated pole; coherence: 0-100; perplexity: of the answers under the "
                 "un-intervened model; capability: multiple-choice accuracy.</p></section>")
    traits = list(dict.fromkeys(x["trait"] for x in lines))
    conditions = list(dict.fromkeys(_condition(x) for x in lines))
    by = {(_condition(x), x["trait"]): x for x in lines}
    parts.append("<section id='npti'><h2>Trait expression per method (mean ± variance)</h2>")
    body = []
    for cond in conditions:
        cells = []
        for trait in traits:
            x = by.get((cond, trait))
            if x is None or x["trait_expression"] is None:
                cells.append(None if x is None or x["questionnaire"] is None else f"q {x['questionnaire']:.2f}")
            else:
                var = x["expression_var"]
                cells.append(f"{x['trait_expression']:.1f} ± {var:.1f}" if var is not None
                             else f"{x['trait_expression']:.1f}")
        body.append([cond, *cells])
    parts.append(_table(["method", *traits], body) + "</section>")
    parts.append("<section id='heatmap'><h2>Method × trait heatmap</h2>")
    heat = heatmap_png(lines)
    parts.append(f"<img alt='heatmap of {heat[0]}' src='data:image/png;base64,{heat[1]}'>" if heat
                 else "<p>no scores to plot</p>")
    parts.append("</section></body></html>")
    return "".join(parts)


def write_report(rows: Sequence[dict[str, Any]], out_dir: str | os.PathLike[str], title: str = "traitlab report",
                 threshold: float = 50.0) -> dict[str, Path]:
    """Write ``summary.csv`` and ``report.html`` into ``out_dir``; returns their paths."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    csv_path = write_summary_csv(rows, out / "summary.csv")
    html_path = out / "report.html"
    write_text_atomic(html_path, render_html(rows, title, threshold))
    return {"summary": csv_path, "report": html_path}
