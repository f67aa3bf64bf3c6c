"""Offline judging of replies made anywhere, and the offline judges of an evaluation.

``read_rows`` checks a JSONL file of ``{"question", "reply", "trait"?}`` rows; ``score_rows`` scores them with
a trait judge per trait and a coherence judge (one JSON-ready dict per row: ``scores``, ``coherence``,
``judge``, and optionally ``profile``). ``calibration_questions`` are the project's own train questions, used
to draw the unsteered model's baseline replies (``baseline_replies``) that calibrate the embedding judge and
the coherence judge; they never overlap the evaluation questions of the trait library. ``offline_judges`` builds
the pair for a model; ``LazyOfflineJudges`` (what ``--judge auto``/``embedding`` uses) builds it on first use.

The calibration (the baseline replies and what the two judges take from them) is stored, when a ``cache_dir``
is given, as ``calibration-<key>.json``; ``key`` hashes everything that decides it (the model's weight
fingerprint, the rendered calibration prompts, ``max_new_tokens``, the embedding judge's weights, the reference
LM and its fingerprint, the format), so a later run of the same model and judges reads it instead of generating
24 replies and scoring them under the reference LM (a minute on a CPU core). The judges read back are the ones
``calibrate`` returned (the same float32 centres and scales, the same reference perplexity).
"""

from __future__ import annotations

import hashlib
import json
import random
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from traitlab.errors import ConfigError, ModelLoadError
from traitlab.readers import read_jsonl

BIG_FIVE = ("openness", "conscientiousness", "extraversion", "agreeableness", "neuroticism")
CALIBRATION_QUESTIONS = 24
CALIBRATION_FORMAT = "traitlab-judge-calibration/1"


def read_rows(path: str | Path) -> list[dict[str, Any]]:
    """Rows of a JSONL file with string ``question`` and ``reply`` and an optional string ``trait``."""
    source = Path(path).expanduser()
    rows = []
    for n, row in read_jsonl(source, "input file"):
        if not isinstance(row, dict) or not isinstance(row.get("reply"), str):
            raise ConfigError(f"{source} line {n} needs a string 'reply' (and 'question')")
        if not isinstance(row.get("question", ""), str):
            raise ConfigError(f"{source} line {n}: 'question' must be a string")
        trait = row.get("trait")
        if trait is not None and not isinstance(trait, str):
            raise ConfigError(f"{source} line {n}: 'trait' must be a string")
        rows.append({"question": row.get("question", ""), "reply": row["reply"], "trait": trait})
    if not rows:
        raise ConfigError(f"{source} has no rows")
    return rows


def resolve_traits(rows: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """Each distinct row trait → its TraitSpec (a Big Five name means ``<name>_high``); unknown traits fail
    here, before any model loads."""
    from traitlab.traits import load_trait

    out: dict[str, Any] = {}
    for row in rows:
        name = row["trait"]
        if name is None or name in out:
            continue
        out[name] = load_trait(name)
    return out


TraitScorer = Callable[[Any, Sequence[str], Sequence[str]], list[float | None]]
"""``scorer(spec, questions, replies) -> 0-100 scores of the spec's pole``."""


def score_rows(rows: Sequence[dict[str, Any]], specs: dict[str, Any], trait_scorer: TraitScorer,
               coherence: Any | None, judge_names: dict[str, str], with_profile: bool = False) -> list[dict]:
    """Scores per row: the row's trait, or all five Big Five traits (high pole) when it names none."""
    from traitlab.traits import load_trait

    default = {t: load_trait(f"{t}_high") for t in BIG_FIVE}
    wanted = {name: spec for name, spec in {**default, **specs}.items()}
    out: list[dict[str, Any]] = [{"scores": {}} for _ in rows]
    for name, spec in wanted.items():
        idx = [i for i, r in enumerate(rows) if (r["trait"] == name) or (r["trait"] is None and name in BIG_FIVE)]
        if not idx:
            continue
        values = trait_scorer(spec, [rows[i]["question"] for i in idx], [rows[i]["reply"] for i in idx])
        for i, v in zip(idx, values, strict=True):
            out[i]["scores"][name] = None if v is None else round(float(v), 2)
    cvalues: list[float | None] = [None] * len(rows)
    if coherence is not None:
        cvalues = coherence.score_many([(r["question"], r["reply"], "") for r in rows])
    profiles = None
    if with_profile:
        from traitlab.evaluation.profile import profile_many

        profiles = profile_many([r["reply"] for r in rows])
    for i, record in enumerate(out):
        record["coherence"] = None if cvalues[i] is None else round(float(cvalues[i]), 2)  # type: ignore[arg-type]
        record["judge"] = dict(judge_names)
        if profiles is not None:
            record["profile"] = {k: round(v, 4) for k, v in profiles[i].items()}
    return out


def calibration_questions(n: int = CALIBRATION_QUESTIONS, seed: int = 0) -> list[str]:
    """``n`` of the project's train questions (never the evaluation questions), in a seeded order."""
    from traitlab.organism.corpus import train_questions

    questions = train_questions(seed)
    random.Random(f"calibration-{seed}").shuffle(questions)
    return questions[:n]


def baseline_replies(lm: Any, n: int = CALIBRATION_QUESTIONS, max_new_tokens: int = 64, seed: int = 0,
                     batch_size: int = 32, bank: Any | None = None) -> tuple[list[str], list[str]]:
    """Greedy replies of the un-intervened ``lm`` to the calibration questions (from ``bank``, a
    ``situational.ReplyBank``, when given: generated in one batch with whatever else it was asked for)."""
    questions = calibration_questions(n, seed)
    if bank is not None and bank.lm is lm and not lm.hooks.active_handles:
        generation = bank.generate(lm.encode(lm.render(questions)), max_new_tokens)
    else:
        generation = lm.generate_chat(questions, max_new_tokens=max_new_tokens, batch_size=batch_size,
                                      progress=False)
    return questions, list(generation.texts)


def calibration_key(lm: Any, reference: str | None, max_new_tokens: int, n: int = CALIBRATION_QUESTIONS,
                    seed: int = 0) -> str:
    """The hash of what the calibration of ``offline_judges(lm, reference, …)`` depends on, but the reference
    LM's weights (known only once it is loaded; the stored file carries its fingerprint, checked on reading):
    16 hex digits."""
    from traitlab.evaluation import coherence as coherence_module
    from traitlab.evaluation import embedding_judge

    judge = embedding_judge.default_judge()
    arrays = b"".join(a.astype("<f4").tobytes() for a in (judge.directions, judge.center, judge.scale))
    material = {
        "format": CALIBRATION_FORMAT, "model": lm.fingerprint.to_dict(),
        "prompts": lm.encode(lm.render(calibration_questions(n, seed))), "max_new_tokens": max_new_tokens,
        "stops": list(lm.stop_ids),
        "embedding": {"embedder": embedding_judge.EMBEDDER, "traits": list(judge.traits),
                      "spread": embedding_judge.BASELINE_SPREAD, "arrays": hashlib.sha256(arrays).hexdigest()},
        "reference": reference, "max_reply_tokens": coherence_module.MAX_REPLY_TOKENS,
        "char_gram": coherence_module.CHAR_GRAM,
    }
    return hashlib.sha256(json.dumps(material, sort_keys=True).encode()).hexdigest()[:16]


def calibration_path(cache_dir: str | Path, lm: Any, reference: str | None, max_new_tokens: int) -> Path:
    """Where ``offline_judges`` keeps this calibration in ``cache_dir``."""
    return Path(cache_dir) / f"calibration-{calibration_key(lm, reference, max_new_tokens)}.json"


def _reference_fingerprint(coherence: Any | None) -> dict[str, Any] | None:
    reference = getattr(coherence, "reference", None)
    return None if reference is None else {"spec": str(reference.spec), **reference.fingerprint.to_dict()}


def _read_calibration(path: Path, judge: Any, coherence: Any | None) -> tuple[Any, Any] | None:
    """The calibrated judges stored in ``path``, or ``None`` when it is missing or unreadable."""
    import dataclasses

    import numpy as np

    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        embedding = data["embedding"]
        center = np.asarray(embedding["center"], dtype=np.float32)
        scale = np.asarray(embedding["scale"], dtype=np.float32)
        if data.get("format") != CALIBRATION_FORMAT or center.shape != judge.center.shape \
                or scale.shape != judge.scale.shape or data.get("reference") != _reference_fingerprint(coherence):
            return None
        calibrated = dataclasses.replace(judge, center=center, scale=scale, calibration=str(embedding["label"]))
        if coherence is not None:
            stored = data["coherence"]
            coherence = dataclasses.replace(coherence, good=float(stored["good"]), ref_rep3=float(stored["ref_rep3"]),
                                            calibration=str(stored["label"]), memo=coherence.memo)
    except (OSError, ValueError, KeyError, TypeError):
        return None
    return calibrated, coherence


def _write_calibration(path: Path, questions: Sequence[str], replies: Sequence[str], judge: Any,
                       coherence: Any | None) -> None:
    from traitlab.validate import write_text_atomic

    record = {
        "format": CALIBRATION_FORMAT, "reference": _reference_fingerprint(coherence),
        "questions": list(questions), "replies": list(replies),
        "embedding": {"label": judge.calibration, "center": [float(v) for v in judge.center],
                      "scale": [float(v) for v in judge.scale]},
        "coherence": None if coherence is None else {"label": coherence.calibration, "good": coherence.good,
                                                     "ref_rep3": coherence.ref_rep3},
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    write_text_atomic(path, json.dumps(record, indent=1) + "\n")


def offline_judges(lm: Any | None, reference: str | None = "gemma-3-270m", calibrate: bool = True,
                   max_new_tokens: int = 64, cache_dir: str | Path | None = None,
                   bank: Any | None = None) -> tuple[Any, Any]:
    """(EmbeddingJudge, coherence judge) for ``lm``: the shipped embedding judge and the reference-LM coherence
    judge, both calibrated on ``lm``'s own unsteered replies when ``calibrate``. Without a reference LM
    (``reference=None``) coherence falls back to the answer's perplexity under ``lm`` itself. With
    ``cache_dir`` the calibration is read from (or written to) ``calibration-<key>.json`` there; ``bank`` (a
    ``situational.ReplyBank``) generates the baseline replies."""
    from traitlab.evaluation.coherence import ReferenceCoherenceJudge, load_reference
    from traitlab.evaluation.embedding_judge import default_judge

    judge = default_judge()
    coherence: Any = None
    if reference is not None:
        try:
            coherence = ReferenceCoherenceJudge(load_reference(reference))
        except ModelLoadError as exc:
            if lm is None:
                raise
            from traitlab.progress import stderr

            stderr.print(f"warning: reference LM '{reference}' unavailable ({exc}); coherence falls back to the "
                         f"perplexity under {lm.spec} itself")
    if coherence is None and lm is not None:
        coherence = ReferenceCoherenceJudge(lm)
    if calibrate and lm is not None:
        path = None
        if cache_dir is not None:
            path = calibration_path(cache_dir, lm, reference, max_new_tokens)
            stored = _read_calibration(path, judge, coherence) if path.is_file() else None
            if stored is not None:
                return stored
        questions, replies = baseline_replies(lm, max_new_tokens=max_new_tokens, bank=bank)
        label = f"baseline:{lm.spec}"
        judge = judge.calibrate(questions, replies, label)
        if coherence is not None:
            coherence = coherence.calibrate(questions, replies, label)
        if path is not None:
            _write_calibration(path, questions, replies, judge, coherence)
    return judge, coherence


class LazyOfflineJudges:
    """``offline_judges(lm, …)`` built on first use, so a run that judges no replies (a questionnaire-only
    ``traitlab eval``) neither loads the reference LM nor generates the calibration replies. ``cache_dir``
    and ``bank`` go to ``offline_judges``; ``request`` notes the calibration prompts in the bank ahead of
    time (unless the calibration is already on disk), so they share the bank's first batch."""

    def __init__(self, lm: Any, reference: str | None = "gemma-3-270m", calibrate: bool = True,
                 cache_dir: str | Path | None = None, bank: Any | None = None,
                 max_new_tokens: int = 64) -> None:
        self.lm, self.reference, self.calibrate = lm, reference, calibrate
        self.cache_dir, self.bank, self.max_new_tokens = cache_dir, bank, max_new_tokens
        self._built: tuple[Any, Any] | None = None

    def get(self) -> tuple[Any, Any]:
        """(calibrated EmbeddingJudge, coherence judge)."""
        if self._built is None:
            self._built = offline_judges(self.lm, self.reference, self.calibrate, self.max_new_tokens,
                                         self.cache_dir, self.bank)
        return self._built

    def request(self) -> None:
        """Note the calibration prompts in the bank, unless the judges are built or their calibration is on
        disk."""
        if self._built is not None or not self.calibrate or self.bank is None or self.lm is None:
            return
        lm = self.lm
        if self.cache_dir is not None and calibration_path(self.cache_dir, lm, self.reference,
                                                           self.max_new_tokens).is_file():
            return
        self.bank.request(lm.encode(lm.render(calibration_questions())), self.max_new_tokens)

    @property
    def trait(self) -> Any:
        return self.get()[0]

    def coherence_judge(self) -> LazyCoherence:
        return LazyCoherence(self)


class LazyCoherence:
    """The coherence judge of a ``LazyOfflineJudges`` behind the ``Judge`` protocol."""

    def __init__(self, parent: LazyOfflineJudges) -> None:
        self.parent = parent

    @property
    def name(self) -> str:
        return str(self.parent.get()[1].name)

    def score(self, question: str, answer: str, rubric: str = "") -> float | None:
        return self.parent.get()[1].score(question, answer, rubric)

    def score_many(self, triples: Sequence[tuple[str, str, str]]) -> list[float | None]:
        return self.parent.get()[1].score_many(triples)
