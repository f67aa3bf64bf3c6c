"""One bank of pole-prompted answers that several fits share.

Persona vectors (Chen et al. 2025, arXiv 2507.21509), persona subnetworks (Ye et al. 2026, arXiv 2602.07164),
NPTI (Deng et al. 2025, arXiv 2410.12327) and self-distilled personality vectors (arXiv 2509.19727) all start
from the same data: the model's own answers to a trait's extraction questions under one pole's system prompts.
The rows of a pole are

    rows(spec, side) = [(pair.side, q) for pair in spec.instruction for q in questions for _ in range(n)]

(``side`` is ``pos`` or ``neg``; every instruction pair × question × ``n_per_question``, pair-major), sampled in
one ``generate_chat`` call with one ``torch.Generator`` seeded ``seed``. Sampling depends on the whole call
(the rows, their order, the batch size), so only an identical call gives identical answers; the bank keys each
call on

    key = SHA-256(model fingerprint, dtype, device, the rendered prompts, the sampling settings)

and keeps its answers in memory (per loaded model) and, given a folder, on disk as ``<folder>/<key>.json``
(written to a temporary file and renamed, so a reader sees all of it or none; sampled under the file's claim,
``traitlab.claims``, so the processes of one run that share the folder sample a call once). A second fit that asks the
same question of the same model reads the answers back instead of sampling them again.

**Seed convention (common random numbers).** The recipes sample both sides of a trait with the *same* ``seed``,
so the ``neg`` answers persona vectors contrast and the low pole's calibration of a subnetwork are one call, and
the two sides draw from one random stream. (Rows are sorted by prompt length inside each call, so the draws line
up row for row only where both sides' orders agree; the point is one convention, so identical calls coincide.)
The library functions called without answers keep their own defaults: ``persona_vectors.rollouts`` and
``neurons.collect`` sample the ``neg`` side with ``seed + 1``, ``subnet_calibration.from_spec`` both with
``seed``.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import weakref
from collections import OrderedDict
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

from traitlab.claims import claimed
from traitlab.errors import ConfigError
from traitlab.model import Generation, LoadedModel
from traitlab.model.generation import SamplingParams
from traitlab.progress import activity
from traitlab.traits import TraitSpec
from traitlab.validate import write_text_atomic

Side = Literal["pos", "neg"]
VERSION = 1  # bump when what a stored answer means changes
MEMORY_ENTRIES = 64  # per loaded model; the oldest call is dropped past it


@dataclasses.dataclass(frozen=True)
class Sampling:
    """How a bank call samples: ``generate_chat``'s settings (temperature 0 = greedy)."""

    max_new_tokens: int = 64
    temperature: float = 1.0
    top_p: float = 1.0
    seed: int = 0
    batch_size: int = 32

    @classmethod
    def like(cls, settings: Any) -> Sampling:
        """The sampling of another settings object with the same field names (persona vectors'
        ``ExtractionSettings``, NPTI's ``CollectionSettings``, a subnetwork's ``GenerationSettings``); a field it
        lacks keeps this class's default."""
        return cls(**{f.name: getattr(settings, f.name) for f in dataclasses.fields(cls) if hasattr(settings, f.name)})

    def __post_init__(self) -> None:
        SamplingParams(self.max_new_tokens, self.temperature, self.top_p, seed=self.seed)  # generation's checks
        if self.batch_size < 1:
            raise ConfigError(f"batch_size must be ≥ 1, got {self.batch_size}")


@dataclasses.dataclass(frozen=True)
class PoleAnswers:
    """The answers of one bank call, row-aligned: ``questions[i]`` asked under ``systems[i]``, the reply in
    ``generation`` (its ``prompt_ids`` include the system prompt; ``texts`` are stripped)."""

    questions: list[str]
    systems: list[str | None]
    generation: Generation
    key: str

    @property
    def texts(self) -> list[str]:
        return self.generation.texts

    def __len__(self) -> int:
        return len(self.questions)


def pair_rows(pairs: Sequence[tuple[str, str]], questions: Sequence[str],
              n_per_question: int = 1) -> tuple[list[str], list[str], list[str]]:
    """(questions, pos system prompts, neg system prompts) of every ``(pos, neg)`` prompt pair × question ×
    ``n_per_question``, pair-major: the one row layout of persona-vector rollouts, a subnetwork's calibration,
    NPTI's collection and the personality vector's distillation, so identical calls of theirs coincide."""
    if n_per_question < 1:
        raise ConfigError(f"n_per_question must be ≥ 1, got {n_per_question}")
    rows = [(pair, q) for pair in pairs for q in questions for _ in range(n_per_question)]
    return [q for _, q in rows], [p[0] for p, _ in rows], [p[1] for p, _ in rows]


def pole_rows(spec: TraitSpec, side: Side, n_per_question: int = 1,
              questions: Sequence[str] | None = None) -> tuple[list[str], list[str]]:
    """(questions, system prompts) of one side of ``spec``: ``pair_rows`` of its instruction pairs over
    ``questions`` (default the spec's extraction questions)."""
    if side not in ("pos", "neg"):
        raise ConfigError(f"side must be 'pos' or 'neg', got '{side}'")
    qs, pos, neg = pair_rows([(p.pos, p.neg) for p in spec.instruction],
                             list(questions if questions is not None else spec.questions), n_per_question)
    return qs, pos if side == "pos" else neg


_MEMORY: weakref.WeakKeyDictionary[LoadedModel, OrderedDict[str, PoleAnswers]] = weakref.WeakKeyDictionary()


def answers_key(lm: LoadedModel, questions: Sequence[str], systems: Sequence[str | None], sampling: Sampling) -> str:
    """The bank key of a call (module docstring): 24 hex digits of SHA-256."""
    parameter = next(lm.model.parameters())
    blob = json.dumps({"version": VERSION, "fingerprint": lm.fingerprint.to_dict(), "dtype": str(parameter.dtype),
                       "device": parameter.device.type, "prompts": lm.render(list(questions), list(systems)),
                       "stop_ids": list(lm.stop_ids), "sampling": dataclasses.asdict(sampling)},
                      sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:24]


def answers(lm: LoadedModel, questions: Sequence[str], systems: Sequence[str | None],
            sampling: Sampling | None = None, folder: str | Path | None = None, label: str = "answers") -> PoleAnswers:
    """The model's answers to ``questions[i]`` under ``systems[i]``: from memory, else from ``folder`` (when
    given), else one ``generate_chat`` call (then kept in memory and in ``folder``). Call it on the model as
    loaded, not inside an applied intervention (the key does not see hooks)."""
    sampling = sampling or Sampling()
    questions, systems = list(questions), list(systems)
    if len(questions) != len(systems) or not questions:
        raise ConfigError(f"a bank call needs one system prompt per question, got {len(questions)} questions and "
                          f"{len(systems)} system prompts")
    key = answers_key(lm, questions, systems, sampling)
    memory = _MEMORY.setdefault(lm, OrderedDict())
    if key in memory:
        return memory[key]
    if folder is None:
        found = _sample(lm, questions, systems, sampling, key, label)
    else:  # under the file's claim: processes of one run sharing the folder sample a call once
        path = Path(folder) / f"{key}.json"
        path.parent.mkdir(parents=True, exist_ok=True)
        with claimed(path.parent, path.name, mark_done=False):
            found = _read(path, key, questions, systems) if path.is_file() else None
            if found is None:
                found = _sample(lm, questions, systems, sampling, key, label)
                write_text_atomic(path, json.dumps(_record(found, sampling)))
    memory[key] = found
    while len(memory) > MEMORY_ENTRIES:
        memory.popitem(last=False)
    return found


def _sample(lm: LoadedModel, questions: list[str], systems: list[str | None], sampling: Sampling, key: str,
            label: str) -> PoleAnswers:
    with activity(label):
        generation = lm.generate_chat(questions, systems, max_new_tokens=sampling.max_new_tokens,
                                      temperature=sampling.temperature, top_p=sampling.top_p, seed=sampling.seed,
                                      batch_size=sampling.batch_size)
    return PoleAnswers(questions, systems, generation, key)


def pole_answers(lm: LoadedModel, spec: TraitSpec, side: Side, n_per_question: int = 1,
                 sampling: Sampling | None = None, folder: str | Path | None = None,
                 questions: Sequence[str] | None = None) -> PoleAnswers:
    """``answers`` of the rows ``pole_rows(spec, side, n_per_question, questions)``."""
    qs, systems = pole_rows(spec, side, n_per_question, questions)
    return answers(lm, qs, systems, sampling, folder, label=f"{spec.name}: answers under the {side} prompts")


def clear_memory(lm: LoadedModel | None = None) -> None:
    """Forget the in-memory answers (of ``lm``, or of every model)."""
    if lm is None:
        _MEMORY.clear()
    else:
        _MEMORY.pop(lm, None)


def _record(found: PoleAnswers, sampling: Sampling) -> dict[str, Any]:
    generation = found.generation
    return {"version": VERSION, "key": found.key, "sampling": dataclasses.asdict(sampling),
            "questions": found.questions, "systems": found.systems, "texts": generation.texts,
            "prompt_ids": generation.prompt_ids, "response_ids": generation.response_ids,
            "finished": generation.finished, "pad_token_id": generation.pad_token_id}


def _read(path: Path, key: str, questions: list[str], systems: list[str | None]) -> PoleAnswers | None:
    """The stored answers, or ``None`` when the file is unreadable or not this call's (then it is resampled)."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        if data.get("key") != key or data["questions"] != questions or data["systems"] != systems:
            return None
        generation = Generation(list(data["texts"]), [list(p) for p in data["prompt_ids"]],
                                [list(r) for r in data["response_ids"]], [bool(f) for f in data["finished"]],
                                int(data["pad_token_id"]))
    except (OSError, ValueError, KeyError, TypeError):
        return None
    if not len(generation.texts) == len(generation.prompt_ids) == len(generation.response_ids) == len(questions):
        return None
    return PoleAnswers(questions, systems, generation, key)
