"""The offline trait judge: static token embeddings, one direction per trait, fitted on text this project wrote.

A reply is embedded as the mean of its tokens' static embeddings (``wordllama``'s ``l2_supercat_256``: 32k
Llama-2 tokens × 256 dimensions, shipped in the ``wordllama`` package; we read the two files directly). It is
judged *as an answer to its question*: the content words the reply takes over from its question (the topic:
"the party", "your sister's wedding") are left out of the mean, so a question about a party does not make every
reply look extraverted. The trait evidence is the projection on the trait's direction,
``u = (e · w − center) / scale`` (``center``: neutral text, or the judged model's own unsteered replies after
``calibrate``; ``scale``: half the distance between the poles' replies, or a multiple of the baseline's spread),
shrunk toward 0 by a *form* factor that is 1 for prose and falls for keyword lists (few function words) and
loops (few distinct bigrams): a list of trait words is not a reply that shows a personality. The score is
``100 · sigmoid(form · u)``: 50 = no evidence, about 73 / 27 for a typical reply of the high / low pole in
the project's text (u = ±1; a single neutral reply's u has a spread of about 0.5-0.7, so one reply is a noisy
reading and means over replies are what to compare).

Weights (``data/embedding_judge.safetensors``, a few kB) come from ``traitlab judges fit``
(``evaluation/judge_fit.py``); their measured validity is in the file's metadata and printed by
``traitlab judges validate``. A judge made from any other TraitSpec (``judge_for_spec``) has validity
``unknown`` until it is validated on labelled text.
"""

from __future__ import annotations

import functools
import itertools
import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from traitlab.errors import ConfigError

EMBEDDER = "wordllama/l2_supercat_256"
SLOPE = 1.0
BASELINE_SPREAD = 2.0  # after calibrate(): u = 1 at this many baseline standard deviations
WEIGHTS = Path(__file__).parent / "data" / "embedding_judge.safetensors"

# English function words (closed classes: articles, pronouns, prepositions, conjunctions, auxiliaries).
_FUNCTION_WORDS = """
a an the this that these those some any each every no none all both either neither such what which who whom
whose i me my mine myself we us our ours ourselves you your yours yourself yourselves he him his himself she
her hers herself it its itself they them their theirs themselves one
am is are was were be been being have has had having do does did doing will would shall should can could may
might must ought
and or but nor so yet if then than because as while when where whether although though unless until since
about above across after against along among around at before behind below beneath beside between beyond by
down during except for from in inside into like near of off on onto out outside over past through throughout
to toward towards under underneath up upon with within without
not too very just also only even still really quite rather here there now how why again ever never always
often sometimes
"""
FUNCTION_WORDS = frozenset(_FUNCTION_WORDS.split())

_WORD = re.compile(r"[A-Za-z][A-Za-z']*")


def words(text: str) -> list[str]:
    return [w.lower() for w in _WORD.findall(text)]


def form_factor(text: str) -> float:
    """1 for ordinary prose; lower for keyword lists (function words under a fifth of the words) and loops
    (distinct bigrams under half): ``min(1, fw_share / 0.2) · min(1, distinct_bigrams / 0.5)²``."""
    ws = words(text)
    if not ws:
        return 0.0
    share = sum(w in FUNCTION_WORDS for w in ws) / len(ws)
    factor = min(1.0, share / 0.2)
    if len(ws) >= 4:
        bigrams = list(itertools.pairwise(ws))
        factor *= min(1.0, len(set(bigrams)) / len(bigrams) / 0.5) ** 2
    return factor


def topic_words(question: str) -> set[str]:
    """The content words of a question (its topic), which a reply may repeat without saying anything about
    its speaker."""
    return {w for w in words(question) if w not in FUNCTION_WORDS and len(w) > 2}


def strip_topic(reply: str, question: str) -> str:
    """``reply`` without the content words it shares with ``question``."""
    topic = topic_words(question)
    if not topic:
        return reply
    return _WORD.sub(lambda m: "" if m.group(0).lower() in topic else m.group(0), reply)


class StaticEmbedder:
    """Mean static token embedding of a text (``wordllama``'s shipped Llama-2-token table)."""

    name = EMBEDDER

    def __init__(self) -> None:
        try:
            import wordllama
        except ImportError:
            raise ConfigError("the embedding judge needs the wordllama package: pip install wordllama") from None
        from safetensors.numpy import load_file
        from tokenizers import Tokenizer

        folder = Path(wordllama.__file__).parent
        weights = folder / "weights" / "l2_supercat_256.safetensors"
        tokenizer = folder / "tokenizers" / "l2_supercat_tokenizer_config.json"
        if not (weights.is_file() and tokenizer.is_file()):
            raise ConfigError(f"wordllama in {folder} lacks {weights.name} or {tokenizer.name}; reinstall it")
        self.table = load_file(str(weights))["embedding.weight"].astype(np.float32)
        self.tokenizer = Tokenizer.from_file(str(tokenizer))
        self.tokenizer.no_padding()
        self.tokenizer.no_truncation()
        self.dim = int(self.table.shape[1])

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        for i, enc in enumerate(self.tokenizer.encode_batch(list(texts), add_special_tokens=False)):
            ids = [t for t in enc.ids if t > 2]
            if ids:
                out[i] = self.table[ids].mean(0)
        return out


@functools.lru_cache(maxsize=1)
def embedder() -> StaticEmbedder:
    return StaticEmbedder()


def reply_features(questions: Sequence[str], replies: Sequence[str]) -> np.ndarray:
    """Embeddings of the replies, each without its question's topic words."""
    if len(questions) != len(replies):
        raise ValueError("questions and replies differ in length")
    return embedder().embed([strip_topic(r, q) for q, r in zip(questions, replies, strict=True)])


@dataclass(frozen=True)
class EmbeddingJudge:
    """Per-trait directions with their calibration; scores replies 0–100 per trait (50 = no evidence)."""

    traits: tuple[str, ...]
    directions: np.ndarray  # [T, dim]
    center: np.ndarray  # [T]
    scale: np.ndarray  # [T]
    validity: Mapping[str, Any] = field(default_factory=dict)
    calibration: str = "project-text"
    source: str = "traitlab"

    @property
    def name(self) -> str:
        return f"embedding:{self.source}" + ("" if self.calibration == "project-text" else f"@{self.calibration}")

    def index(self, trait: str) -> int:
        if trait not in self.traits:
            raise ConfigError(f"the embedding judge has no direction for '{trait}'; it knows "
                              f"{', '.join(self.traits)} (make one with judge_for_spec)")
        return self.traits.index(trait)

    def evidence(self, questions: Sequence[str], replies: Sequence[str]) -> np.ndarray:
        """``form · u`` per reply and trait, ``[N, T]``."""
        feats = reply_features(questions, replies)
        u = (feats @ self.directions.T - self.center) / self.scale
        form = np.array([form_factor(r) for r in replies], dtype=np.float32)
        return u * form[:, None]

    def score_matrix(self, questions: Sequence[str], replies: Sequence[str]) -> np.ndarray:
        """0–100 scores ``[N, T]``."""
        if not replies:
            return np.zeros((0, len(self.traits)))
        return 100.0 / (1.0 + np.exp(-SLOPE * self.evidence(questions, replies)))

    def scores(self, questions: Sequence[str], replies: Sequence[str]) -> list[dict[str, float]]:
        matrix = self.score_matrix(questions, replies)
        return [{t: round(float(v), 2) for t, v in zip(self.traits, row, strict=True)} for row in matrix]

    def for_trait(self, trait: str, pole: str = "high") -> TraitView:
        """A ``Judge`` (score/score_many, the rubric ignored) for one trait and pole."""
        return TraitView(self, trait, pole)

    def calibrate(self, questions: Sequence[str], replies: Sequence[str], label: str = "baseline") -> EmbeddingJudge:
        """Centre each trait on these (the judged model's own unsteered) replies; the scale becomes
        ``BASELINE_SPREAD`` baseline standard deviations, at least the project-text scale's fifth."""
        if len(replies) < 4:
            raise ConfigError("calibration needs at least 4 baseline replies")
        feats = reply_features(questions, replies)
        z = feats @ self.directions.T
        center = np.median(z, axis=0)
        spread = BASELINE_SPREAD * z.std(axis=0)
        scale = np.maximum(spread, self.scale / 5)
        return replace(self, center=center.astype(np.float32), scale=scale.astype(np.float32), calibration=label)

    # ------------------------------------------------------------------------------------------ files

    def save(self, path: str | Path) -> None:
        from safetensors.numpy import save_file

        meta = {"format": "traitlab-embedding-judge/1", "embedder": EMBEDDER, "traits": list(self.traits),
                "calibration": self.calibration, "source": self.source, "slope": SLOPE,
                "validity": self.validity}
        path = Path(path)
        tmp = path.with_name(f".{path.name}.tmp")
        try:  # renamed into place only when complete; a failure or Ctrl-C leaves no temporary file
            save_file({"directions": self.directions.astype(np.float32), "center": self.center.astype(np.float32),
                       "scale": self.scale.astype(np.float32)}, str(tmp),
                      metadata={"traitlab": json.dumps(meta, sort_keys=True)})
            tmp.chmod(0o644)
            tmp.replace(path)
        finally:
            tmp.unlink(missing_ok=True)

    @classmethod
    def load(cls, path: str | Path = WEIGHTS) -> EmbeddingJudge:
        from safetensors import safe_open

        path = Path(path)
        if not path.is_file():
            raise ConfigError(f"embedding judge weights {path} not found (make them with traitlab judges fit)")
        try:
            with safe_open(str(path), framework="numpy") as f:
                meta = json.loads((f.metadata() or {}).get("traitlab", "{}"))
                tensors = {k: f.get_tensor(k) for k in ("directions", "center", "scale")}
        except Exception as exc:  # safetensors raises its own types for a corrupt file
            raise ConfigError(f"{path} is not an embedding judge file: {exc}") from None
        if meta.get("embedder") != EMBEDDER:
            raise ConfigError(f"{path} was fitted on embedder {meta.get('embedder')}, not {EMBEDDER}")
        return cls(tuple(meta["traits"]), tensors["directions"], tensors["center"], tensors["scale"],
                   meta.get("validity", {}), meta.get("calibration", "project-text"), meta.get("source", "file"))


@functools.lru_cache(maxsize=1)
def default_judge() -> EmbeddingJudge:
    """The shipped Big Five judge."""
    return EmbeddingJudge.load(WEIGHTS)


@dataclass
class TraitView:
    """One trait of an ``EmbeddingJudge`` behind the ``Judge`` protocol (``100 −`` the score for ``low``)."""

    judge: EmbeddingJudge
    trait: str
    pole: str = "high"

    def __post_init__(self) -> None:
        if self.pole not in ("high", "low"):
            raise ConfigError(f"pole must be high or low, got '{self.pole}'")
        self.judge.index(self.trait)

    @property
    def name(self) -> str:
        return f"{self.judge.name}:{self.trait}/{self.pole}"

    def score(self, question: str, answer: str, rubric: str = "") -> float | None:
        return self.score_many([(question, answer, rubric)])[0]

    def score_many(self, triples: Sequence[tuple[str, str, str]]) -> list[float | None]:
        if not triples:
            return []
        col = self.judge.index(self.trait)
        values = self.judge.score_matrix([q for q, _, _ in triples], [a for _, a, _ in triples])[:, col]
        return [float(v) if self.pole == "high" else 100.0 - float(v) for v in values]
