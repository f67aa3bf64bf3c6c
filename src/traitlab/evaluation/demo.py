"""The demo experiment and its analysis: every mechanism on a real model (SmolLM2-135M-Instruct by default,
``data/demo.yaml``, mirrored in ``examples/demo.yaml``) or on the persona organism (``data/demo_organism.yaml``),
for both poles of each Big Five trait; its quick variant; and the per-pole statistics the demo's report, console
summary and README table are made of.

Statistics (``pole_cells``), per condition (method label, scale, pole), from the rows of ``results.jsonl``:

- trait expression: the mean judged expression of the evaluated pole over the held-out answers, with a 95 %
  t-interval ``mean ± t₀.₉₇₅,ₙ₋₁ · √(s² / n)`` (s² the answers' sample variance, n the answers);
- shift: the paired difference to ``none`` on the same questions, ``d_q = e_q(method) − e_q(none)``, mean and
  95 % t-interval; a method *moves* a pole when that interval lies above 0 (the pole's expression rose);
- coherence: the mean coherence of the same answers (0-100).

A method's best cell per pole (``best_per_pole``) is the highest expression among the methods at their fitted
strength (scale 1) whose coherence stays at or above the threshold.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from importlib import resources
from pathlib import Path
from typing import Any

import yaml

from traitlab.evaluation import scoring
from traitlab.evaluation.report import reference_scale

DATA = Path(str(resources.files("traitlab.evaluation"))) / "data"
DEMO_FILE = DATA / "demo.yaml"
ORGANISM_FILE = DATA / "demo_organism.yaml"
QUICK_POLES = ["extraversion_high", "extraversion_low"]
ORGANISM_QUICK_TRAITS = ["extraversion", "agreeableness"]
ORGANISM_NAMES = ("traitlab/persona-tiny", "persona-tiny")
POLE_ABBREV = {"openness": "O", "conscientiousness": "C", "extraversion": "E", "agreeableness": "A",
               "neuroticism": "N"}


def is_organism_name(model: str | None) -> bool:
    return model is not None and model in ORGANISM_NAMES


def demo_experiment(quick: bool = False, model: str | None = None) -> dict[str, Any]:
    """The demo's experiment as a dict: SmolLM2 by default (``data/demo.yaml``; another ``model`` runs the same
    experiment on that model), the organism's (``data/demo_organism.yaml``) for ``traitlab/persona-tiny``.
    ``quick`` keeps the extraversion poles (the organism: two traits), drops the sweeps and asks fewer
    questions."""
    organism = is_organism_name(model)
    experiment = yaml.safe_load((ORGANISM_FILE if organism else DEMO_FILE).read_text())
    if model is not None and not organism and model != experiment["model"]:
        experiment["model"] = model
        experiment["name"] = f"traitlab demo - every mechanism on {model}"
    if quick:
        experiment["name"] += " (quick)"
        experiment["traits"] = ORGANISM_QUICK_TRAITS if organism else QUICK_POLES
        for method in experiment["methods"]:
            method.pop("sweep", None)
        situational = experiment["evaluations"]["situational"]
        situational["n_questions"] = 4
        if "examples" in situational:
            situational["examples"] = 4
        if "questionnaire" in experiment["evaluations"]:
            experiment["evaluations"]["questionnaire"]["max_items_per_trait"] = 4
    return experiment


# ---------------------------------------------------------------------------------------------- statistics


def t_interval(mean: float | None, variance: float | None, n: int) -> tuple[float, float] | None:
    """The 95 % t-interval ``mean ± t₀.₉₇₅,ₙ₋₁ · √(variance / n)``; ``None`` below two values."""
    if mean is None or variance is None or n < 2:
        return None
    from scipy.special import stdtrit  # the t quantile, without importing all of scipy.stats

    half = float(stdtrit(n - 1, 0.975)) * math.sqrt(max(variance, 0.0) / n)
    return mean - half, mean + half


def _answers(row: dict[str, Any]) -> list[dict[str, Any]]:
    """The judged answers a row stored (``examples``; the demo stores all of them)."""
    sit = (row.get("result") or {}).get("situational") or {}
    return list(next(iter(sit.values()), {}).get("examples", [])) if sit else []


def _n_answers(row: dict[str, Any]) -> int:
    sit = (row.get("result") or {}).get("situational") or {}
    return int(next(iter(sit.values()), {}).get("n_answers", 0)) if sit else 0


def pole_cells(rows: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """One dict per (label, scale, trait) of the first seed, in run order: ``mean``, ``ci``, ``n``,
    ``coherence``, ``shift`` and ``shift_ci`` (paired against ``none`` on the same questions), ``moves``,
    ``effective_scale`` (the applied strength: scale × the stored coefficient) and the ``answers``."""
    seed = rows[0]["seed"] if rows else 0
    mine = [r for r in rows if r.get("seed") == seed]
    none = {r["trait"]: r for r in mine if r["method"] == "none"}
    out = []
    for row in mine:
        answers = _answers(row)
        n = _n_answers(row)
        mean = row.get("trait_expression")
        cell: dict[str, Any] = {
            "label": row["label"], "method": row["method"], "trait": row["trait"], "spec": row.get("spec"),
            "trait_name": row.get("trait_name"), "pole": row.get("pole"), "scale": row.get("scale"),
            "effective_scale": row.get("effective_scale"), "mean": mean, "n": n,
            "ci": t_interval(mean, row.get("expression_var"), n), "coherence": row.get("coherence"),
            "answers": answers, "shift": None, "shift_ci": None, "moves": False, "diffs": [],
        }
        base = none.get(row["trait"])
        if base is not None and row["method"] != "none":
            before = {a["question"]: a.get("expression") for a in _answers(base)}
            diffs = [a["expression"] - before[a["question"]] for a in answers
                     if a.get("expression") is not None and before.get(a["question"]) is not None]
            if diffs:
                cell["diffs"] = diffs
                cell["shift"] = scoring.mean(diffs)
                cell["shift_ci"] = t_interval(cell["shift"], scoring.variance(diffs), len(diffs))
                cell["moves"] = cell["shift_ci"] is not None and cell["shift_ci"][0] > 0
            elif mean is not None and base.get("trait_expression") is not None:
                cell["shift"] = mean - base["trait_expression"]
        out.append(cell)
    return out


def reference_cells(cells: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """Each method label at its fitted strength (scale 1, else its only or middle scale)."""
    scales: dict[str, list[float | None]] = {}
    for cell in cells:
        scales.setdefault(cell["label"], []).append(cell["scale"])
    return [c for c in cells if c["scale"] == reference_scale(scales[c["label"]])]


def best_per_pole(cells: Sequence[dict[str, Any]], threshold: float = 50.0) -> dict[str, dict[str, Any] | None]:
    """Per pole: the reference cell with the highest expression whose coherence is ≥ ``threshold`` (``none``
    included: a pole no method beats keeps ``none``); ``None`` when no cell is coherent."""
    out: dict[str, dict[str, Any] | None] = {}
    for cell in reference_cells(cells):
        out.setdefault(cell["trait"], None)
        if cell["mean"] is None or (cell["coherence"] is not None and cell["coherence"] < threshold):
            continue
        best = out[cell["trait"]]
        if best is None or cell["mean"] > best["mean"]:
            out[cell["trait"]] = cell
    return out


def pole_label(trait: str) -> str:
    """``extraversion_high`` → ``E+``, ``agreeableness_low`` → ``A−``, a bare Big Five name → ``E+``."""
    name, _, pole = trait.rpartition("_") if trait.endswith(("_high", "_low")) else (trait, "", "high")
    short = POLE_ABBREV.get(name)
    return f"{short}{'+' if pole == 'high' else '−'}" if short else trait


def scale_text(label: str, cells: Sequence[dict[str, Any]], scale: float | None) -> str:
    """``label`` with its scale and the effective strength it applies (scale × the stored coefficient), e.g.
    ``persona_vectors ×1 (coef ±4)``."""
    if scale is None:
        return label
    effective = sorted({round(c["effective_scale"], 4) for c in cells
                        if c["label"] == label and c["scale"] == scale and c["effective_scale"] is not None})
    text = f"{label} ×{scale:g}"
    if not effective or effective == [scale]:
        return text
    magnitudes = sorted({abs(e) for e in effective})
    if len(magnitudes) == 1 and len(effective) == 2:
        return f"{text} (±{magnitudes[0]:g})"
    return f"{text} ({', '.join(f'{e:g}' for e in effective)})"


def mechanism_summary(cells: Sequence[dict[str, Any]], threshold: float = 50.0) -> list[dict[str, Any]]:
    """Per method label: poles it moves at its fitted strength (coherent or not), poles it moves at any swept
    scale while coherence stays ≥ ``threshold``, its mean shift and mean coherence at the fitted strength."""
    poles = list(dict.fromkeys(c["trait"] for c in cells))
    reference = {(c["label"], c["trait"]): c for c in reference_cells(cells)}
    out = []
    for label in dict.fromkeys(c["label"] for c in cells):
        if all(c["method"] == "none" for c in cells if c["label"] == label):
            continue
        ref = [reference[(label, p)] for p in poles if (label, p) in reference]
        coherent_any = {c["trait"] for c in cells if c["label"] == label and c["moves"]
                        and (c["coherence"] is None or c["coherence"] >= threshold)}
        out.append({"label": label, "poles": len(ref), "moves": sum(c["moves"] for c in ref),
                    "moves_coherent_any_scale": len(coherent_any),
                    "shift": scoring.mean(c["shift"] for c in ref if c["shift"] is not None),
                    "coherence": scoring.mean(c["coherence"] for c in ref if c["coherence"] is not None)})
    return out


def console_summary(cells: Sequence[dict[str, Any]], threshold: float = 50.0, width: int = 80) -> list[str]:
    """The demo's console summary, every line at most ``width`` characters: the best method per pole, then
    where each mechanism stands."""
    lines = ["best method per pole (highest expression with coherence >= "
             f"{threshold:g}; 95% CI):"]
    for trait, best in best_per_pole(cells, threshold).items():
        if best is None:
            lines.append(f"  {pole_label(trait):3s} {trait:22s} no coherent cell")
            continue
        ci = best["ci"]
        interval = f" [{ci[0]:.0f}, {ci[1]:.0f}]" if ci else ""
        shift = "" if best["shift"] is None else f" shift {best['shift']:+.1f}"
        lines.append(f"  {pole_label(trait):3s} {trait:22s} {best['label'][:18]:18s} "
                     f"{best['mean']:.1f}{interval}{shift}")
    lines.append("mechanisms (poles moved: shift CI above 0 at the fitted strength):")
    for m in mechanism_summary(cells, threshold):
        shift = "-" if m["shift"] is None else f"{m['shift']:+.1f}"
        coherence = "-" if m["coherence"] is None else f"{m['coherence']:.0f}"
        lines.append(f"  {m['label'][:18]:18s} moves {m['moves']:2d}/{m['poles']:<2d} "
                     f"mean shift {shift:>5s}  coherence {coherence:>3s}")
    return [line[:width] for line in lines]


def markdown_table(cells: Sequence[dict[str, Any]], threshold: float = 50.0) -> str:
    """The method × pole table in Markdown (the README's): judged expression of each pole, mean ± the 95 % CI
    half-width, best coherent cell per pole in bold, then the mean shift against ``none`` and coherence."""
    reference = reference_cells(cells)
    poles = list(dict.fromkeys(c["trait"] for c in reference))
    best = {t: b for t, b in best_per_pole(cells, threshold).items() if b is not None}
    by = {(c["label"], c["trait"]): c for c in reference}
    head = ["method", *(pole_label(p) for p in poles), "shift", "coherence"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for label in dict.fromkeys(c["label"] for c in reference):
        mine = [by[(label, p)] for p in poles if (label, p) in by]
        row = [scale_text(label, cells, mine[0]["scale"])]
        for pole in poles:
            cell = by.get((label, pole))
            if cell is None or cell["mean"] is None:
                row.append("-")
                continue
            text = f"{cell['mean']:.1f}"
            if cell["ci"]:
                text += f" ± {(cell['ci'][1] - cell['ci'][0]) / 2:.1f}"
            row.append(f"**{text}**" if best.get(pole) is cell else text)
        shift = scoring.mean(c["shift"] for c in mine if c["shift"] is not None)
        coherence = scoring.mean(c["coherence"] for c in mine if c["coherence"] is not None)
        row.append("-" if shift is None or label == "none" else f"{shift:+.1f}")
        row.append("-" if coherence is None else f"{coherence:.0f}")
        lines.append("| " + " | ".join(row) + " |")
    return "\n".join(lines)


# ---------------------------------------------------------------------------------------------- run


def run_demo(experiment: dict[str, Any], folder: str | Path, progress: bool = True,
             workers: int = 1) -> dict[str, Any]:
    """Run (or resume: every fitted artifact and finished cell is reused) the demo's experiment into
    ``folder``, then write ``summary.csv`` and the demo report ``report.html``. ``workers`` > 1 fits the
    judge-free mechanisms in helper processes meanwhile (``runner.run_experiment``). Returns the rows, the
    per-pole ``cells``, the coherence ``threshold`` and the ``report`` path."""
    from traitlab.evaluation.demo_report import render_demo_html
    from traitlab.evaluation.report import write_summary_csv
    from traitlab.evaluation.runner import run_experiment

    out = Path(folder)
    rows = run_experiment(experiment, out, progress=progress, report=False, workers=workers)
    threshold = float((experiment.get("evaluations", {}).get("coherence") or {}).get("threshold", 50.0))
    write_summary_csv(rows, out / "summary.csv")
    report = out / "report.html"
    tmp = report.with_suffix(".html.tmp")
    tmp.write_text(render_demo_html(rows, experiment.get("name", "traitlab demo"), threshold), encoding="utf-8")
    tmp.replace(report)
    return {"rows": rows, "cells": pole_cells(rows), "threshold": threshold, "report": report}
