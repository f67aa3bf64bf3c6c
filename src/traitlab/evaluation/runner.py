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

Atomicity: a run in progress lives in the hidden sibling ``.NAME.partial`` of the results folder ``NAME``. Each
cell is committed on its own (one fsynced line; a torn last line is ignored on resume); only when every cell,
the report and ``run.json`` (the completion record) are written is the folder renamed to ``NAME``. So ``NAME``
is always a finished run, a failure or Ctrl-C leaves the partial folder, and a rerun resumes from it. Rerunning a
finished run whose experiment gained cells moves it back to ``.NAME.partial`` for the new cells. Only one run may
write a folder at a time (a lock on the partial folder).
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import os
import shutil
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from traitlab.errors import ConfigError
from traitlab.evaluation.config import Experiment, MethodConfig, load_experiment
from traitlab.evaluation.recipes import RecipeContext, build
from traitlab.progress import activity, stderr, steps
from traitlab.validate import shielded, write_text_atomic

RESULTS = "results.jsonl"
COMPLETE = "run.json"
PROMPT_RECIPES = ("none", "prompt", "p2")  # recipes that fit nothing: at most a system prompt
RUNTIME_RECIPES = ("persona_vectors", "npti")  # recipes whose Intervention is a runtime edit with per-row scales


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
                   lm: Any | None = None, workers: int = 1) -> list[dict[str, Any]]:
    """Run (or resume) an experiment into the results folder ``out_dir``; returns one row per cell, in plan
    order. ``lm`` reuses a loaded model (it must be the experiment's model). ``workers`` > 1 starts
    ``workers − 1`` helper processes that fit the judge-free recipes from the end of the plan
    (``fit_workers``)."""
    experiment, specs = load_experiment(config)
    target = check_results_folder(out_dir)
    partial = partial_folder(target)
    cells = plan(experiment)
    source = partial if partial.is_dir() else target
    done = read_results(source / RESULTS)
    if source == target and _is_run(target) and all(c.key in done for c in cells):
        rows = [done[c.key] for c in cells]  # nothing to run: the finished folder stays where it is
        if report:
            _report(rows, target, experiment)
        if not (target / COMPLETE).is_file():  # a folder from before run.json existed
            _mark_complete(target, experiment, cells)
        return rows
    if lm is None and any(c.key not in done for c in cells):  # before any folder is made: a bad model leaves none
        from traitlab.model.loaded import load_model

        lm = load_model(experiment.model, dtype=experiment.dtype, device=experiment.device)
    with _locked_partial(target, partial) as out:
        rows = _run_cells(experiment, specs, cells, out, progress, on_cell, lm, workers)
        if report:
            _report(rows, out, experiment)
        _mark_complete(out, experiment, cells)
        if target.is_dir():  # an empty folder the user made for the run
            target.rmdir()
        os.replace(out, target)
    return rows


def partial_folder(target: Path) -> Path:
    """Where a run of results folder ``target`` lives until it is complete."""
    return target.parent / f".{target.name}.partial"


def _is_run(folder: Path) -> bool:
    return (folder / RESULTS).is_file() or (folder / COMPLETE).is_file()


def check_results_folder(out_dir: str | os.PathLike[str]) -> Path:
    """The results folder, checked before any work: not a file, not the working folder or one above it, and
    new, empty or a traitlab run (which the run resumes); its parent must be creatable and writable."""
    target = Path(os.path.abspath(out_dir))
    if target.exists() and not target.is_dir():
        raise ConfigError(f"results folder {target} is a file; give a folder (an existing run folder resumes)")
    cwd = Path.cwd().resolve()
    if target.exists() and (target.resolve() == cwd or target.resolve() in cwd.parents):
        raise ConfigError(f"results folder {target} is the working folder or above it; give a folder of its own")
    if target.is_dir() and not _is_run(target) and any(target.iterdir()):
        raise ConfigError(f"results folder {target} is not empty and holds no traitlab run ({RESULTS}); "
                          "give a new or empty folder")
    partial = partial_folder(target)
    if partial.exists() and not partial.is_dir():
        raise ConfigError(f"{partial} is a file; remove it (it is where an unfinished run of {target} lives)")
    if partial.is_dir() and target.is_dir() and _is_run(target):
        raise ConfigError(f"both {target} and the unfinished run {partial} exist; remove one of them")
    existing = target.parent
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if not existing.is_dir():
        raise ConfigError(f"cannot write results folder {target}: {existing} is a file, not a folder")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise ConfigError(f"cannot write results folder {target}: folder {existing} is not writable")
    return target


@contextlib.contextmanager
def _locked_partial(target: Path, partial: Path) -> Iterator[Path]:
    """The run's partial folder, made (or resumed, or moved back from a finished ``target`` that gained cells)
    and locked against a second run writing it at the same time."""
    created = False
    if not partial.exists():
        if _is_run(target):
            os.replace(target, partial)
        else:
            partial.mkdir(parents=True)
            created = True
    handle = os.open(partial, os.O_RDONLY)
    try:
        try:
            import fcntl

            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except ImportError:  # no advisory locks on this platform: run unlocked
            pass
        except OSError:
            raise ConfigError(f"another run is writing {partial}; wait for it or stop it") from None
        yield partial
    except BaseException:
        if created and not (partial / RESULTS).exists():  # failed before its first cell: leave nothing
            shielded(lambda: shutil.rmtree(partial, ignore_errors=True))
        raise
    finally:
        os.close(handle)  # releases the lock


def _report(rows: list[dict[str, Any]], folder: Path, experiment: Experiment) -> None:
    from traitlab.evaluation.report import write_report

    write_report(rows, folder, title=experiment.name,
                 threshold=experiment.evaluations.coherence.threshold if experiment.evaluations.coherence else 50.0)


def _mark_complete(folder: Path, experiment: Experiment, cells: list[Cell]) -> None:
    """``run.json``: the completion record (written last, atomically)."""
    record = {"experiment": experiment.name, "model": experiment.model, "fingerprint": experiment.fingerprint(),
              "cells": len(cells), "keys": [c.key for c in cells],
              "finished": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
    write_text_atomic(folder / COMPLETE, json.dumps(record, indent=1) + "\n")


def _run_cells(experiment: Experiment, specs: dict[str, Any], cells: list[Cell], out: Path, progress: bool,
               on_cell: Callable[[dict[str, Any]], None] | None, lm: Any | None,
               workers: int = 1) -> list[dict[str, Any]]:
    """Run the cells not yet in ``out/results.jsonl``, committing each as it finishes; all rows in plan order."""
    from traitlab.evaluation.fit_workers import FitHelpers, answers_folder, claims_folder, reset_claims
    from traitlab.evaluation.situational import ReplyBank
    from traitlab.evaluation.suite import Judges, evaluate, headline

    (out / COMPLETE).unlink(missing_ok=True)  # the folder is a run in progress until the end
    results = out / RESULTS
    done = read_results(results)
    todo = [c for c in cells if c.key not in done]
    if not todo:
        return [done[c.key] for c in cells]
    situational = experiment.evaluations.situational
    bank = ReplyBank(lm, situational.batch_size if situational else 32) if lm is not None else None
    judges = Judges.from_config(experiment.judge, lm, out / "work" / "judges", bank)
    built: dict[tuple[str, str], Any] = {}
    if progress and len(cells) > len(todo):
        stderr.print(f"resuming: {len(cells) - len(todo)} of {len(cells)} cells already in {results}")
    fits = {c.key for c in {(c.method.key, c.trait): c for c in reversed(todo)}.values()
            if c.method.name not in PROMPT_RECIPES}
    reset_claims(claims_folder(out))
    helpers = FitHelpers.start(experiment.model, experiment.dtype, experiment.device,
                               _helper_slots(todo, specs, out), claims_folder(out), answers_folder(out), workers)
    try:
        if bank is not None:
            built.update(_request_shared(experiment, specs, todo, out, lm, judges, bank))
        shared = set(built)  # slots built ahead of their first cell
        together: set[str] = set()  # cells whose answers were generated in a batch with others
        scaled_for: dict[str, Any] = {}

        def describe(cell: Cell) -> str:
            at = "" if cell.scale is None else f" @ {cell.scale:g}"
            verb = "fitting (or loading) + evaluating" if cell.key in fits else "evaluating"
            return f"{verb} {cell.method.key} · {cell.trait}{at}"

        for position, cell in enumerate(steps(todo, describe, enabled=progress)):
            helpers.settle()
            spec = specs[cell.trait]
            scale = "" if cell.scale is None else f", scale {cell.scale:g}"
            cell_label = f"{cell.method.key} on {spec.name}{scale}, seed {cell.seed}"
            with activity(cell_label):
                slot = (cell.method.key, cell.trait)
                first_of_slot = slot not in built or slot in shared
                shared.discard(slot)
                if slot not in built:
                    built[slot] = _build_cell(cell, spec, out, lm, judges)
                if bank is not None and cell.method.name in RUNTIME_RECIPES and cell.key not in together:
                    scaled_for.update(_steer_together(experiment, specs, todo[position:], out, lm, judges, bank,
                                                      built, shared, together, progress))
                intervention = scaled_for.pop(cell.key, None)
                if intervention is None:
                    intervention = built[slot]
                    if intervention is not None and cell.scale is not None:
                        intervention = intervention.scaled(cell.scale)
                start = time.perf_counter()
                result = evaluate(lm, intervention, [spec], experiment.evaluations, judges, cell.seed,
                                  progress=False, monitor=first_of_slot, bank=bank)
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
    finally:
        helpers.stop()
    return [done[c.key] for c in cells]


def _workdir(method_key: str, spec: Any, out: Path) -> Path:
    return out / "work" / method_key / spec.name


def _helper_slots(todo: list[Cell], specs: dict[str, Any], out: Path) -> list[Any]:
    """The fits a helper process may take (``Recipe.offload``), one per (method entry, trait), last first."""
    from traitlab.evaluation.fit_workers import Slot, slot_name
    from traitlab.evaluation.recipes import recipe

    slots: dict[tuple[str, str], Slot] = {}
    for cell in reversed(todo):
        spec = specs[cell.trait]
        if (cell.method.key, cell.trait) in slots or not recipe(cell.method.name).offload:
            continue
        slots[(cell.method.key, cell.trait)] = Slot(
            slot_name(cell.method.key, spec.name), cell.method.name, dict(cell.method.params),
            spec.model_dump(mode="json"), str(_workdir(cell.method.key, spec, out)))
    return list(slots.values())


def _build_cell(cell: Cell, spec: Any, out: Path, lm: Any, judges: Any) -> Any:
    """Fit (or load from ``out/work/<method>/<spec>``) the Intervention of ``cell``'s method on ``spec``."""
    from traitlab.evaluation.fit_workers import answers_folder, claims_folder, fit_in, slot_name

    workdir = _workdir(cell.method.key, spec, out)
    workdir.mkdir(parents=True, exist_ok=True)
    return fit_in(claims_folder(out), slot_name(cell.method.key, spec.name),
                  lambda: build(cell.method.name, RecipeContext(lm, spec, workdir, judges, answers_folder(out)),
                                cell.method.params))


def _answers_config(experiment: Experiment) -> Any:
    """The settings the cells' answers are generated with: the situational suite's, or its defaults when only
    coherence is asked for; ``None`` when the run generates no answers."""
    from traitlab.evaluation.config import SituationalConfig

    evaluations = experiment.evaluations
    return evaluations.situational or (SituationalConfig() if evaluations.coherence is not None else None)


def _request_shared(experiment: Experiment, specs: dict[str, Any], todo: list[Cell], out: Path, lm: Any,
                    judges: Any, bank: Any) -> dict[tuple[str, str], Any]:
    """Build the prompt-only cells' interventions (they fit nothing) and note their greedy answers and the
    judges' calibration replies in ``bank``, so the first cell generates all of them in one batch. Returns
    the interventions built, by (method label, trait)."""
    from traitlab.evaluation.situational import question_set, request_answers

    config = _answers_config(experiment)
    built: dict[tuple[str, str], Any] = {}
    if config is None:
        return built
    for cell in todo:
        if cell.method.name not in PROMPT_RECIPES:
            continue
        spec = specs[cell.trait]
        slot = (cell.method.key, cell.trait)
        if slot not in built:
            built[slot] = _build_cell(cell, spec, out, lm, judges)
        intervention = built[slot]
        if intervention is not None and cell.scale is not None:
            intervention = intervention.scaled(cell.scale)
        request_answers(bank, question_set(spec, config.questions, config.n_questions), intervention,
                        config.samples, config.temperature, config.max_new_tokens)
    judges.request_calibration()
    return built


def _steer_together(experiment: Experiment, specs: dict[str, Any], cells: list[Cell], out: Path, lm: Any,
                    judges: Any, bank: Any, built: dict[tuple[str, str], Any], shared: set[tuple[str, str]],
                    together: set[str], progress: bool = False) -> dict[str, Any]:
    """Fit (or load) the runtime Interventions of the cells still to run (``RUNTIME_RECIPES``) and generate
    their greedy answers in one batch (``situational.generate_together``: each steers only its own rows), kept
    in ``bank`` for each cell's evaluation. Returns each cell's scaled Intervention (the object the answers are
    kept under) by cell key; slots built here join ``shared``, cells batched here join ``together``."""
    from traitlab.evaluation.situational import generate_together, question_set, row_scalable

    config = _answers_config(experiment)
    if config is None:
        return {}
    temperature = (0.0 if config.samples == 1 else 1.0) if config.temperature is None else config.temperature
    if temperature != 0:
        return {}
    jobs, scaled = [], {}
    for cell in cells:
        if cell.method.name not in RUNTIME_RECIPES or cell.key in together:
            continue
        spec = specs[cell.trait]
        slot = (cell.method.key, cell.trait)
        if slot not in built:
            if progress:
                stderr.print(f"fitting (or loading) {cell.method.key} · {cell.trait} ahead of its cell, to generate "
                             "the steered cells together")
            with activity(f"{cell.method.key} on {spec.name} (ahead)"):
                built[slot] = _build_cell(cell, spec, out, lm, judges)
            shared.add(slot)
        intervention = built[slot]
        if intervention is not None and cell.scale is not None:
            intervention = intervention.scaled(cell.scale)
        if not row_scalable(intervention):
            continue
        together.add(cell.key)
        scaled[cell.key] = intervention
        questions = question_set(spec, config.questions, config.n_questions)
        jobs.append((intervention, [q for q in questions for _ in range(config.samples)]))
    # groups of at most one batch of rows: every Intervention's hooks run on every row of its batch, so a group
    # larger than a batch would only multiply hook work (the demo's quick run is one group of 16 rows)
    group: list[tuple[Any, list[str]]] = []
    for job in [*jobs, None]:
        if job is None or (group and sum(len(q) for _, q in group) + len(job[1]) > config.batch_size):
            if len(group) > 1:  # alone in its group, a cell generates its answers as usual
                generate_together(lm, group, config.max_new_tokens, config.batch_size, bank)
            group = []
        if job is not None:
            group.append(job)
    return scaled
