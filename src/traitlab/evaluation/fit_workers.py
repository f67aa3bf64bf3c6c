"""Fits in helper processes: while the run evaluates its cells in plan order, ``workers − 1`` helper processes
fit the judge-free recipes' Interventions (``Recipe.offload``: subnetwork, personality vector, NPTI) from the end
of the plan, the torch threads shared out among the processes, so a machine's cores all work on the run even
where torch's intra-op threads scale poorly (a 135M model's matmuls are small).

Coordination is through files in ``<out>/work/claims``. A process fits a slot (method entry × trait) only while
it holds the slot's claim file (created with ``O_CREAT | O_EXCL``, holding its pid); after the fit it writes
``<slot>.done`` and releases the claim. The run waits for a slot a helper holds; a claim whose process has died
is taken over. Artifacts go through the recipes' own cache (``recipes.base.cached``), so a slot a helper fitted
is read, not refitted, by the run, and a helper's failure only means the run fits that slot itself (the helper's
messages go to ``claims/helper-<n>.log``, never to the terminal).

While helpers live each process uses ``max(1, threads // workers)`` torch threads; the run takes its own thread
count back once they are done.
"""

from __future__ import annotations

import dataclasses
import hashlib
import multiprocessing
import os
import re
import signal
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from traitlab.claims import claimed

CLAIMS = "claims"
ANSWERS = "answers"


def default_workers() -> int:
    """The run plus one helper where the machine has two cores or more."""
    return min(2, os.cpu_count() or 1)


def claims_folder(out: Path) -> Path:
    return Path(out) / "work" / CLAIMS


def answers_folder(out: Path) -> Path:
    """The run's answer bank on disk (``traitlab.methods.pole_answers``): one folder for every method, so the
    run and its helpers sample each pole's answers once."""
    return Path(out) / "work" / ANSWERS


def slot_name(method_key: str, spec_name: str) -> str:
    """A file-safe name of the slot (method entry label, trait spec): readable prefix plus a hash of both."""
    digest = hashlib.sha256(f"{method_key}\0{spec_name}".encode()).hexdigest()[:12]
    readable = re.sub(r"[^A-Za-z0-9_.-]+", "_", f"{method_key}-{spec_name}")[:60]
    return f"{readable}-{digest}"


@dataclasses.dataclass(frozen=True)
class Slot:
    """One fit a helper may take: the recipe, its parameters, the trait spec (as JSON) and its work folder."""

    name: str
    method: str
    params: dict[str, Any]
    spec: dict[str, Any]
    workdir: str


@dataclasses.dataclass(frozen=True)
class HelperJob:
    model: str
    dtype: str | None
    device: str | None
    slots: tuple[Slot, ...]
    claims: str
    answers: str
    threads: int
    index: int
    parent: int  # the run's pid: a helper whose run is gone stops at its next slot


def _helper_main(job: HelperJob) -> None:
    """A helper process: load the model, then fit every slot nobody has claimed, in the order given."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the run stops its helpers itself
    log = os.open(Path(job.claims) / f"helper-{job.index}.log", os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    os.dup2(log, 1)
    os.dup2(log, 2)
    import torch

    from traitlab.evaluation.recipes import RecipeContext, build
    from traitlab.model.loaded import load_model
    from traitlab.progress import set_quiet
    from traitlab.traits import TraitSpec

    torch.set_num_threads(job.threads)
    set_quiet(True)
    lm = load_model(job.model, dtype=job.dtype, device=job.device)
    for slot in job.slots:
        if os.getppid() != job.parent:
            return
        with claimed(Path(job.claims), slot.name, wait=False) as mine:
            if not mine:
                continue
            workdir = Path(slot.workdir)
            workdir.mkdir(parents=True, exist_ok=True)
            build(slot.method, RecipeContext(lm, TraitSpec.model_validate(slot.spec), workdir,
                                            answers_dir=Path(job.answers)), slot.params)


class FitHelpers:
    """The run's helper processes (none with ``workers`` ≤ 1 or no slot to give them)."""

    def __init__(self, processes: Sequence[Any], threads: int) -> None:
        self._processes = list(processes)
        self._threads = threads

    @classmethod
    def start(cls, model: str, dtype: str | None, device: str | None, slots: Sequence[Slot], claims: Path,
              answers: Path, workers: int) -> FitHelpers:
        """Start ``workers − 1`` helpers on ``slots`` (the plan's judge-free fits, last first). The run's torch
        threads are shared out: each process gets ``max(1, threads // workers)`` until the helpers finish."""
        import torch

        threads = torch.get_num_threads()
        if workers <= 1 or not slots:
            return cls([], threads)
        each = max(1, threads // workers)
        claims.mkdir(parents=True, exist_ok=True)
        context = multiprocessing.get_context("spawn")
        processes = []
        for index in range(workers - 1):
            job = HelperJob(model, dtype, device, tuple(slots), str(claims), str(answers), each, index, os.getpid())
            process = context.Process(target=_helper_main, args=(job,), daemon=True)
            process.start()
            processes.append(process)
        torch.set_num_threads(each)
        return cls(processes, threads)

    def settle(self) -> None:
        """Give the run its threads back once every helper has finished."""
        if self._processes and not any(p.is_alive() for p in self._processes):
            self.stop()

    def stop(self) -> None:
        """Stop the helpers (a fit they hold is left to the run: its claim dies with them) and restore threads."""
        import torch

        for process in self._processes:
            if process.is_alive():
                process.terminate()
            process.join()
        if self._processes:
            torch.set_num_threads(self._threads)
        self._processes = []


def reset_claims(folder: Path) -> None:
    """Forget the claims of an earlier, interrupted run of this folder (only one run writes a folder)."""
    if folder.is_dir():
        for path in folder.iterdir():
            if path.suffix in (".claim", ".done"):
                path.unlink(missing_ok=True)


def fit_in(folder: Path, name: str, fit: Callable[[], Any]) -> Any:
    """``fit()`` while holding the slot's claim (waiting for a helper that holds it: the artifact it saves is
    then what ``fit`` loads)."""
    with claimed(folder, name):
        return fit()
