"""The demo's report (``report.html``, self-contained: inline SVG and CSS, no script, nothing fetched), in six
sections (``id``), in order:

1. ``table``: method × pole, the judged expression of each pole with its 95 % CI and the coherence, the best
   coherent cell per pole marked (``evaluation.demo``'s statistics); every number cell carries ``data-label``,
   ``data-trait``, ``data-metric`` and ``data-value`` so a test can check it against ``results.jsonl``;
2. ``frontier``: trait shift against coherence cost per mechanism and scale (what each buys at what fluency);
3. ``dose-response``: per swept mechanism, expression and coherence against the scale, with 95 % CIs, the
   effective strength (scale × the stored coefficient) on the axis;
4. ``examples``: the replies to the same held-out question under each method, side by side, per pole;
5. ``profile``: the linguistic profile per method (``report._profile_section``);
6. ``judges``: the model, the trait and coherence judges that produced every number, and the trait judge's
   measured validity.
"""

from __future__ import annotations

import html
from collections.abc import Sequence
from typing import Any

from traitlab.evaluation import scoring
from traitlab.evaluation.demo import (
    best_per_pole,
    mechanism_summary,
    pole_cells,
    pole_label,
    reference_cells,
    scale_text,
    t_interval,
)
from traitlab.evaluation.report import _CSS, _profile_section, _table, method_trait_lines, summarize

COLORS = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22")
_EXTRA_CSS = """td.best{background:#e6f4e6;font-weight:bold}.ci{color:#777;font-size:11px}
.coh{color:#555;font-size:11px}
.grid{display:flex;flex-wrap:wrap;gap:16px}svg{background:#fff;border:1px solid #eee}
td.reply{text-align:left;max-width:640px;white-space:pre-wrap}details{margin:6px 0}"""


def _e(value: Any) -> str:
    return html.escape(str(value), quote=True)


# ---------------------------------------------------------------------------------------------- svg


def svg_plot(series: Sequence[dict[str, Any]], *, title: str, xlabel: str, ylabel: str,
             xticks: Sequence[tuple[float, str]] | None = None, ylim: tuple[float, float] | None = None,
             hline: float | None = None, vline: float | None = None, width: int = 460, height: int = 300) -> str:
    """An inline SVG line/scatter plot. ``series``: ``{name, color, points: [(x, y, lo, hi)], dashed?,
    lines?}``; ``lo``/``hi`` (or ``None``) draw a vertical 95 % interval."""
    pts = [p for s in series for p in s["points"] if p[1] is not None]
    if not pts:
        return f"<p>no data for {_e(title)}</p>"
    xs = [p[0] for p in pts] + [x for x, _ in (xticks or [])] + ([vline] if vline is not None else [])
    ys = [v for p in pts for v in (p[1], p[2], p[3]) if v is not None] + ([hline] if hline is not None else [])
    x0, x1 = min(xs), max(xs)
    y0, y1 = ylim if ylim else (min(ys), max(ys))
    if x1 - x0 < 1e-9:
        x0, x1 = x0 - 1, x1 + 1
    if y1 - y0 < 1e-9:
        y0, y1 = y0 - 1, y1 + 1
    padx, pady = (x1 - x0) * 0.06, (y1 - y0) * 0.06
    x0, x1, y0, y1 = x0 - padx, x1 + padx, y0 - (0 if ylim else pady), y1 + (0 if ylim else pady)
    left, right, top, bottom = 52, 150, 28, 42
    pw, ph = width - left - right, height - top - bottom

    def sx(x: float) -> float:
        return left + (x - x0) / (x1 - x0) * pw

    def sy(y: float) -> float:
        return top + (1 - (y - y0) / (y1 - y0)) * ph

    out = [f"<svg width='{width}' height='{height}' role='img' "
           f"aria-label='{_e(title)}' font-family='sans-serif' font-size='11'>",
           f"<text x='{left}' y='16' font-size='12' font-weight='bold'>{_e(title)}</text>",
           f"<rect x='{left}' y='{top}' width='{pw}' height='{ph}' fill='none' stroke='#999'/>"]
    for k in range(5):
        y = y0 + (y1 - y0) * k / 4
        out.append(f"<line x1='{left}' x2='{left + pw}' y1='{sy(y):.1f}' y2='{sy(y):.1f}' stroke='#eee'/>"
                   f"<text x='{left - 4}' y='{sy(y) + 4:.1f}' text-anchor='end'>{y:.0f}</text>")
    ticks = xticks or [(x0 + padx + (x1 - x0 - 2 * padx) * k / 4, "") for k in range(5)]
    for x, text in ticks:
        out.append(f"<text x='{sx(x):.1f}' y='{top + ph + 14}' text-anchor='middle'>{_e(text or f'{x:.3g}')}</text>")
    out.append(f"<text x='{left + pw / 2:.1f}' y='{height - 6}' text-anchor='middle'>{_e(xlabel)}</text>"
               f"<text transform='translate(12,{top + ph / 2:.1f}) rotate(-90)' text-anchor='middle'>"
               f"{_e(ylabel)}</text>")
    for value, attr in ((hline, "h"), (vline, "v")):
        if value is None:
            continue
        if attr == "h":
            out.append(f"<line x1='{left}' x2='{left + pw}' y1='{sy(value):.1f}' y2='{sy(value):.1f}' "
                       "stroke='#888' stroke-dasharray='2,3'/>")
        else:
            out.append(f"<line y1='{top}' y2='{top + ph}' x1='{sx(value):.1f}' x2='{sx(value):.1f}' "
                       "stroke='#888' stroke-dasharray='2,3'/>")
    for index, s in enumerate(series):
        color = s.get("color") or COLORS[index % len(COLORS)]
        points = sorted((p for p in s["points"] if p[1] is not None), key=lambda p: p[0])
        dash = " stroke-dasharray='5,3'" if s.get("dashed") else ""
        if s.get("lines", True) and len(points) > 1:
            path = " ".join(f"{sx(p[0]):.1f},{sy(p[1]):.1f}" for p in points)
            out.append(f"<polyline points='{path}' fill='none' stroke='{color}' stroke-width='1.8'{dash}/>")
        for x, y, lo, hi in points:
            if lo is not None and hi is not None:
                out.append(f"<line x1='{sx(x):.1f}' x2='{sx(x):.1f}' y1='{sy(lo):.1f}' y2='{sy(hi):.1f}' "
                           f"stroke='{color}' stroke-width='1'/>")
            out.append(f"<circle cx='{sx(x):.1f}' cy='{sy(y):.1f}' r='{s.get('radius', 3.5)}' fill='{color}'>"
                       f"<title>{_e(s['name'])}: ({x:.3g}, {y:.1f})</title></circle>")
        ly = top + 12 + 15 * index
        out.append(f"<line x1='{left + pw + 10}' x2='{left + pw + 26}' y1='{ly - 4}' y2='{ly - 4}' "
                   f"stroke='{color}' stroke-width='2'{dash}/><text x='{left + pw + 30}' y='{ly}'>"
                   f"{_e(s['name'][:20])}</text>")
    out.append("</svg>")
    return "".join(out)


# ---------------------------------------------------------------------------------------------- sections


def _table_section(cells: Sequence[dict[str, Any]], threshold: float) -> str:
    reference = reference_cells(cells)
    poles = list(dict.fromkeys(c["trait"] for c in reference))
    best = {t: b for t, b in best_per_pole(cells, threshold).items() if b is not None}
    by = {(c["label"], c["trait"]): c for c in reference}
    head = "".join(f"<th title='{_e(p)}'>{_e(pole_label(p))}<br><span class='small'>{_e(p)}</span></th>"
                   for p in poles)
    body = []
    for label in dict.fromkeys(c["label"] for c in reference):
        mine = [by[(label, p)] for p in poles if (label, p) in by]
        cells_html = [f"<td class='l'>{_e(scale_text(label, cells, mine[0]['scale']))}</td>"]
        for pole in poles:
            cell = by.get((label, pole))
            if cell is None or cell["mean"] is None:
                cells_html.append("<td>-</td>")
                continue
            ci = cell["ci"]
            interval = f"<div class='ci'>[{ci[0]:.1f}, {ci[1]:.1f}]</div>" if ci else ""
            coherence = ("" if cell["coherence"] is None else
                         f"<div class='coh' data-label='{_e(label)}' data-trait='{_e(pole)}' data-metric='coherence'"
                         f" data-value='{cell['coherence']:.4f}'>coh {cell['coherence']:.0f}</div>")
            mark = " best" if best.get(pole) is cell else ""
            star = " ★" if mark else ""
            cells_html.append(f"<td class='cell{mark}'><span data-label='{_e(label)}' data-trait='{_e(pole)}' "
                              f"data-metric='trait_expression' data-value='{cell['mean']:.4f}'>{cell['mean']:.1f}"
                              f"</span>{star}{interval}{coherence}</td>")
        shift = scoring.mean(c["shift"] for c in mine if c["shift"] is not None)
        coherence_mean = scoring.mean(c["coherence"] for c in mine if c["coherence"] is not None)
        moved = sum(c["moves"] for c in mine)
        cells_html.append("<td>-</td>" if shift is None or label == "none" else f"<td>{shift:+.1f}</td>")
        cells_html.append("<td>-</td>" if label == "none" else f"<td>{moved}/{len(mine)}</td>")
        cells_html.append("<td>-</td>" if coherence_mean is None else f"<td>{coherence_mean:.1f}</td>")
        body.append(f"<tr>{''.join(cells_html)}</tr>")
    return (f"<section id='table'><h2>1. Method × pole</h2><table id='method-pole'><tr><th class='l'>method</th>"
            f"{head}<th>mean shift</th><th>poles moved</th><th>coherence</th></tr>{''.join(body)}</table>"
            "<p class='small'>Each cell: the judged expression of that pole (0-100, 50 = no evidence) over the "
            "held-out answers, its 95% t-interval, and the answers' coherence (0-100). ★ marks the best cell per "
            f"pole: the highest expression whose coherence is at least {threshold:g}. Mean shift: the paired "
            "difference to <i>none</i> on the same questions, averaged over the poles; a pole is moved when "
            "that difference's 95% interval lies above 0. Swept methods are shown at scale 1 (their fitted "
            "strength; the effective coefficient, scale × the stored one, in brackets); the dose-response "
            "section has the other scales.</p></section>")


def _pooled(cells: Sequence[dict[str, Any]], key: str) -> tuple[float | None, tuple[float, float] | None]:
    """The mean of a per-answer quantity pooled over the cells' answers, with its 95% t-interval:
    ``expression`` or ``shift`` (paired against none, recomputed from the shift cells' own means)."""
    values = [a[key] for c in cells for a in c["answers"] if a.get(key) is not None]
    if not values:
        return None, None
    mean = scoring.mean(values)
    return mean, t_interval(mean, scoring.variance(values), len(values))


def _condition_points(cells: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per (label, scale): mean shift and coherence cost over the poles (against none); the shift's 95%
    interval pools the paired per-answer differences of all the poles (equal answers per pole, so its centre
    is the mean shift)."""
    none = {c["trait"]: c for c in cells if c["method"] == "none"}
    groups: dict[tuple[str, Any], list[dict[str, Any]]] = {}
    for cell in cells:
        if cell["method"] != "none":
            groups.setdefault((cell["label"], cell["scale"]), []).append(cell)
    out = []
    for (label, scale), members in groups.items():
        shifts = [c["shift"] for c in members if c["shift"] is not None]
        costs = [none[c["trait"]]["coherence"] - c["coherence"] for c in members
                 if c["coherence"] is not None and c["trait"] in none and none[c["trait"]]["coherence"] is not None]
        shift = scoring.mean(shifts)
        diffs = [d for c in members for d in c["diffs"]]
        pooled = scoring.mean(diffs)
        out.append({"label": label, "scale": scale, "shift": shift,
                    "shift_ci": t_interval(pooled, scoring.variance(diffs), len(diffs)),
                    "cost": scoring.mean(costs), "expression": scoring.mean(c["mean"] for c in members
                                                                           if c["mean"] is not None),
                    "expression_ci": _pooled(members, "expression")[1],
                    "coherence": scoring.mean(c["coherence"] for c in members if c["coherence"] is not None),
                    "poles": len(members)})
    return out


def _frontier_section(cells: Sequence[dict[str, Any]]) -> str:
    points = _condition_points(cells)
    labels = list(dict.fromkeys(p["label"] for p in points))
    series = []
    for label in labels:
        mine = sorted((p for p in points if p["label"] == label and p["cost"] is not None),
                      key=lambda p: (p["scale"] is None, p["scale"] or 0))
        series.append({"name": label, "points": [(p["cost"], p["shift"], *(p["shift_ci"] or (None, None)))
                                                 for p in mine], "lines": len(mine) > 1})
    plot = svg_plot(series, title="trait shift vs coherence cost (mean over poles)",
                    xlabel="coherence cost: none's coherence − the method's (points)",
                    ylabel="shift toward the pole (points)", hline=0.0, vline=0.0, width=620, height=360)
    rows = [[p["label"], "-" if p["scale"] is None else f"{p['scale']:g}", p["shift"],
             None if p["shift_ci"] is None else f"[{p['shift_ci'][0]:.1f}, {p['shift_ci'][1]:.1f}]", p["cost"],
             p["coherence"], p["poles"]] for p in points]
    return ("<section id='frontier'><h2>2. Trait shift vs coherence cost</h2>"
            "<p class='small'>One point per method and scale: how far it moves the evaluated pole above the "
            "unsteered model (paired on the same questions, mean over the poles, 95% interval over all the answers) "
            "against how much coherence it costs. Up and to the left is better; a line joins one mechanism's "
            f"scales in increasing order.</p>{plot}"
            + _table(["method", "scale", "shift", "95% CI", "coherence cost", "coherence", "poles"], rows, left=2)
            + "</section>")


def _dose_section(cells: Sequence[dict[str, Any]], threshold: float) -> str:
    points = _condition_points(cells)
    swept = [label for label in dict.fromkeys(p["label"] for p in points)
             if len({p["scale"] for p in points if p["label"] == label}) > 1]
    none = [c for c in cells if c["method"] == "none"]
    baseline = scoring.mean(c["mean"] for c in none if c["mean"] is not None)
    parts = ["<section id='dose-response'><h2>3. Dose–response</h2>"]
    if not swept:
        return "".join(parts) + "<p>no swept mechanism in this run (the quick demo drops the sweeps)</p></section>"
    parts.append("<p class='small'>Per mechanism: the judged expression of the evaluated pole (solid, 95% "
                 "interval over all its answers) and coherence (dashed), averaged over the poles, against the "
                 "scale; the axis also gives the effective strength (scale × the stored coefficient; ± where "
                 "the low poles apply it negated). Scale 0 is the model unchanged (the "
                 "<i>none</i> cells); grey dotted: <i>none</i>'s expression.</p><div class='grid'>")
    expression_none, ci_none = _pooled(none, "expression")
    zero = {"scale": 0.0, "expression": expression_none, "expression_ci": ci_none, "shift": 0.0,
            "coherence": scoring.mean(c["coherence"] for c in none if c["coherence"] is not None)}
    for index, label in enumerate(swept):
        mine = sorted((p for p in points if p["label"] == label), key=lambda p: p["scale"])
        if none and all(p["scale"] > 0 for p in mine):  # scale 0 is the model unchanged: the none cells
            mine = [{**zero, "label": label}, *mine]
        color = COLORS[(index + 3) % len(COLORS)]
        ticks = [(p["scale"], _tick(label, cells, p["scale"])) for p in mine]
        series = [{"name": "expression", "color": color,
                   "points": [(p["scale"], p["expression"], *(p["expression_ci"] or (None, None))) for p in mine]},
                  {"name": "coherence", "color": "#555", "dashed": True,
                   "points": [(p["scale"], p["coherence"], None, None) for p in mine]}]
        parts.append(svg_plot(series, title=label, xlabel="scale (effective strength)", ylabel="0-100",
                              xticks=ticks, ylim=(0, 100), hline=baseline, width=440, height=280))
    parts.append("</div>")
    rows = [[p["label"], _tick(p["label"], cells, p["scale"]), p["expression"],
             None if p["expression_ci"] is None else f"[{p['expression_ci'][0]:.1f}, {p['expression_ci'][1]:.1f}]",
             p["shift"], p["coherence"], "yes" if (p["coherence"] or 0) < threshold else "no"]
            for p in points if p["label"] in swept]
    parts.append(_table(["method", "scale (effective)", "expression", "95% CI", "shift", "coherence",
                         f"coherence < {threshold:g}"], rows, left=2))
    return "".join(parts) + "</section>"


def _tick(label: str, cells: Sequence[dict[str, Any]], scale: float) -> str:
    if scale == 0:
        return "0 (none)"
    text = scale_text(label, cells, scale)
    return text[len(label) + 2:] if text.startswith(label + " ×") else f"{scale:g}"


def _examples_section(cells: Sequence[dict[str, Any]]) -> str:
    reference = reference_cells(cells)
    poles = list(dict.fromkeys(c["trait"] for c in reference))
    parts = ["<section id='examples'><h2>4. Example replies, side by side</h2><p class='small'>Per pole, the "
             "replies to its first held-out question under each method (at its fitted strength), with the "
             "judged expression of the pole and the coherence.</p>"]
    for index, pole in enumerate(poles):
        mine = [c for c in reference if c["trait"] == pole and c["answers"]]
        if not mine:
            continue
        question = mine[0]["answers"][0]["question"]
        rows = []
        for cell in mine:
            answer = next((a for a in cell["answers"] if a["question"] == question), None)
            if answer is None:
                continue
            rows.append(f"<tr><td class='l'>{_e(cell['label'])}</td><td class='reply'>{_e(answer['answer'])}</td>"
                        f"<td>{_fmt(answer.get('expression'))}</td><td>{_fmt(answer.get('coherence'))}</td></tr>")
        parts.append(f"<details{' open' if index == 0 else ''}><summary><b>{_e(pole)}</b>: {_e(question)}</summary>"
                     "<table><tr><th class='l'>method</th><th class='l'>reply</th><th>expression</th>"
                     f"<th>coherence</th></tr>{''.join(rows)}</table></details>")
    return "".join(parts) + "</section>"


def _fmt(value: Any) -> str:
    return "-" if value is None else f"{value:.0f}"


def _judges_section(rows: Sequence[dict[str, Any]]) -> str:
    models = sorted({str(r.get("model")) for r in rows})
    kinds = sorted({str(r.get("judge")) for r in rows})
    trait_judges: set[str] = set()
    coherence_judges: set[str] = set()
    for row in rows:
        for sit in ((row.get("result") or {}).get("situational") or {}).values():
            trait_judges.add(str(sit.get("judge")))
            coherence_judges.add(str(sit.get("coherence_judge")))
    parts = ["<section id='judges'><h2>6. Model, judges and the judge's validity</h2><table>",
             f"<tr><td class='l'>model</td><td class='l'>{_e(', '.join(models))}</td></tr>",
             f"<tr><td class='l'>judge kind</td><td class='l'>{_e(', '.join(kinds))}</td></tr>",
             f"<tr><td class='l'>trait judge(s)</td><td class='l'>{_e(', '.join(sorted(trait_judges)))}</td></tr>",
             f"<tr><td class='l'>coherence judge(s)</td><td class='l'>{_e(', '.join(sorted(coherence_judges)))}"
             "</td></tr></table>"]
    if "embedding" in kinds:
        from traitlab.evaluation.embedding_judge import EmbeddingJudge

        validity = EmbeddingJudge.load().validity
        body = []
        for trait, record in validity.items():
            if isinstance(record, dict):
                body.append([trait, *(record.get(k) for k in ("big5chat_pairwise", "npti_auroc"))])
            else:
                body.append([trait, record, None])
        parts.append("<p>The trait judge is the embedding judge (static wordllama embeddings, one direction per "
                     "Big Five trait fitted on this project's own text), recentred on the model's own unsteered "
                     "replies to 24 train questions; coherence is the reply's perplexity under an independent "
                     "reference LM with a repetition penalty. Its validity as measured at fit time "
                     "(<code>traitlab judges validate</code>; see docs/judges.md):</p>")
        parts.append(_table(["trait", "Big5-Chat pairwise accuracy", "NPTI AUROC"], body))
        parts.append("<p class='small'>The judge reads word choice, not word order: a shuffled reply keeps its "
                     "trait score (coherence catches it). One reply is a noisy reading; compare means.</p>")
    elif "oracle" in kinds:
        parts.append("<p>The organism's oracle scores the trait exactly (it knows the persona the organism was "
                     "trained to speak); coherence is the perplexity under the un-intervened organism.</p>")
    return "".join(parts) + "</section>"


def render_demo_html(rows: Sequence[dict[str, Any]], title: str = "traitlab demo", threshold: float = 50.0) -> str:
    """The demo report's HTML (sections 1-6, then every condition's line); see the module docstring."""
    cells = pole_cells(rows)
    lines = summarize(rows)
    reference = method_trait_lines(lines)
    moved = mechanism_summary(cells, threshold)
    lead = ", ".join(f"{m['label']} {m['moves']}/{m['poles']}" for m in moved)
    parts = [f"<!doctype html><html><head><meta charset='utf-8'><title>{_e(title)}</title>"
             f"<style>{_CSS}\n{_EXTRA_CSS}</style></head><body><h1>{_e(title)}</h1>",
             f"<p class='small'>{len(rows)} cells · poles moved at the fitted strength: {_e(lead)}</p>",
             _table_section(cells, threshold), _frontier_section(cells), _dose_section(cells, threshold),
             _examples_section(cells),
             _profile_section(rows, reference).replace("<h2>Linguistic profile", "<h2>5. Linguistic profile"),
             _judges_section(rows)]
    parts.append("<section id='summary'><h2>Every condition</h2>")
    parts.append(_table(["method", "pole", "scale", "effective", "expression", "95% CI", "shift", "coherence"],
                        [[c["label"], c["trait"], c["scale"], c["effective_scale"], c["mean"],
                          None if c["ci"] is None else f"[{c['ci'][0]:.1f}, {c['ci'][1]:.1f}]", c["shift"],
                          c["coherence"]] for c in cells], left=2))
    parts.append("</section></body></html>")
    return "".join(parts)
