"""The experiment runner behind ``traitlab compare``.

``run_experiment(config, out_dir)`` validates the whole experiment (YAML file, dict or ``Experiment``) before
any model loads, then builds the judges once and runs one *cell* per (seed, method entry, trait, sweep scale):
it builds the method's Intervention once per (method entry, trait) through its recipe
(``traitlab.evaluation.recipes``, which gets those same judges), scales it (``intervention.scaled(s)``) for each
sweep scale, evaluates the requested suites and appends one JSON row per cell to ``results.jsonl`` as soon as
the cell is done. A cell's ``key`` hashes its coordinates, the method entry (name, parameters) and everything else that
decides its result (model, evaluations, judge); on a rerun, cells whose key is already in ``results.jsonl``
are skipped, so an interrupted run resumes where it stopped and a changed setting reruns only what it touches.
Finally it writes ``summary.csv`` and ``report.html`` (``traitlab.evaluation.report``).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from traitlab.evaluation.config import Experiment, MethodConfig, load_experiment
from traitlab.evaluation.recipes import RecipeContext, build
from traitlab.progress import stderr, steps

RESULTS = "results.jsonl"


@dataclasses.dataclass(frozen=True)
class Cell:
    method: MethodConfig
    trait: str
    scale: float | None
    seed: int
    key: str


def plan(experiment: Experiment) -> list[Cell]:
    """Every cell of the experiment, in run order."""
    base = experiment.fingerprint()
    cells = []
    for seed in experiment.seeds:
        for method in experiment.methods:
            for trait in experiment.traits:
                for scale in method.scales:
                    blob = json.dumps([base, method.model_dump(exclude={"sweep"}), trait, scale, seed], sort_keys=True)
                    cells.append(Cell(method, trait, scale, seed, hashlib.sha256(blob.encode()).hexdigest()[:16]))
    return cells


def read_results(path: Path) -> dict[str, dict[str, Any]]:
    """Finished rows by key; a torn last line (interrupted write) is ignored."""
    rows: dict[str, dict[str, Any]] = {}
    if not path.is_file():
        return rows
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            row = json.loads(line)
        except json.JSONDecodeError:
            continue
        if isinstance(row, dict) and "key" in row:
            rows[row["key"]] = row
    return rows


def _append(path: Path, row: dict[str, Any]) -> None:
    torn = False
    if path.is_file() and path.stat().st_size:
        with path.open("rb") as handle:
            handle.seek(-1, os.SEEK_END)
            torn = handle.read(1) != b"\n"
    with path.open("a", encoding="utf-8") as handle:
        handle.write(("\n" if torn else "") + json.dumps(row, ensure_ascii=False) + "\n")
        handle.flush()
        os.fsync(handle.fileno())


def run_experiment(config: Experiment | str | os.PathLike[str] | dict[str, Any], out_dir: str | os.PathLike[str], *,
                   progress: bool = True, report: bool = True,
                   on_cell: Callable[[dict[str, Any]], None] | None = None,
                   lm: Any | None = None) -> list[dict[str, Any]]:
    """Run (or resume) an experiment; returns one row per cell, in plan order. ``lm`` reuses a loaded model
    (it must be the experiment's model)."""
    from traitlab.evaluation.suite import Judges, evaluate, headline

    experiment, specs = load_experiment(config)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    results = out / RESULTS
    done = read_results(results)
    cells = plan(experiment)
    todo = [c for c in cells if c.key not in done]
    if todo:
        if lm is None:
            from traitlab.model.loaded import load_model

            lm = load_model(experiment.model, dtype=experiment.dtype, device=experiment.device)
        judges = Judges.from_config(experiment.judge, lm)
        built: dict[tuple[str, str], Any] = {}
        if progress and len(cells) > len(todo):
            stderr.print(f"resuming: {len(cells) - len(todo)} of {len(cells)} cells already in {results}")
        fits = {c.key for c in {(c.method.key, c.trait): c for c in reversed(todo)}.values()
                if c.method.name not in ("none", "prompt", "p2")}

        def describe(cell: Cell) -> str:
            at = "" if cell.scale is None else f" @ {cell.scale:g}"
            verb = "fitting (or loading) + evaluating" if cell.key in fits else "evaluating"
            return f"{verb} {cell.method.key} · {cell.trait}{at}"

        for cell in steps(todo, describe, enabled=progress):
            spec = specs[cell.trait]
            slot = (cell.method.key, cell.trait)
            first_of_slot = slot not in built
            if first_of_slot:
                workdir = out / "work" / cell.method.key / spec.name
                workdir.mkdir(parents=True, exist_ok=True)
                context = RecipeContext(lm, spec, workdir, judges)
                built[slot] = build(cell.method.name, context, cell.method.params)
            intervention = built[slot]
            if intervention is not None and cell.scale is not None:
                intervention = intervention.scaled(cell.scale)
            start = time.perf_counter()
            result = evaluate(lm, intervention, [spec], experiment.evaluations, judges, cell.seed, progress=False,
                              monitor=first_of_slot)
            row = {
                "key": cell.key, "experiment": experiment.name, "model": experiment.model,
                "method": cell.method.name, "label": cell.method.key, "trait": cell.trait, "spec": spec.name,
                "trait_name": spec.trait_name, "pole": spec.pole, "scale": cell.scale, "seed": cell.seed,
                "intervention": None if intervention is None else repr(intervention), "judge": judges.kind,
                "effective_scale": getattr(intervention, "scale", None),
                **headline(result, spec), "result": result, "seconds": round(time.perf_counter() - start, 3),
            }
            _append(results, row)
            done[cell.key] = row
            if on_cell is not None:
                on_cell(row)
    rows = [done[c.key] for c in cells]
    if report:
        from traitlab.evaluation.report import write_report

        write_report(rows, out, title=experiment.name,
                     threshold=experiment.evaluations.coherence.threshold if experiment.evaluations.coherence else 50.0)
    return rows
