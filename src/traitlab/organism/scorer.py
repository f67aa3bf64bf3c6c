"""The oracle scorer of the persona organism.

The scorer knows the generator's pole markers: the word unigrams and bigrams that occur in exactly one pole's
reply bank (reply and self-description sentences) and nowhere in the neutral material (neutral sentences,
questions, slot fillers). A text is split into sentences; each sentence gives every pole evidence
``min(1, (hits - 1) / 3)`` where ``hits`` counts the distinct marker features of that pole it contains, so one
stray word is no evidence and a full (or mostly intact) bank sentence is one unit. Per trait,
``score = 50 + 50 * tanh(0.8 * (E_high - E_low))``: 50 means no evidence, one clear sentence moves the score
to about 83 (or 17), two to about 95 (or 5).

Features are words, so garbled model text (a missing or changed word, a truncated sentence) still scores.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable
from dataclasses import dataclass
from functools import lru_cache
from itertools import pairwise

from traitlab.organism.banks import likert as likert_bank
from traitlab.organism.banks import questions as question_bank
from traitlab.organism.banks import replies as reply_bank
from traitlab.organism.banks import selfdesc as self_bank
from traitlab.organism.corpus import POLES, TRAITS

_WORD = re.compile(r"[a-z]+(?:'[a-z]+)?")
_SLOT = re.compile(r"\{\w+\}")
_SENTENCE = re.compile(r"[^.!?\n]+[.!?\n]*")

Features = frozenset[str]


def _segment_features(text: str) -> set[str]:
    words = _WORD.findall(text.lower().replace("\u2019", "'"))
    feats = set(words)
    feats.update(f"{a} {b}" for a, b in pairwise(words))
    return feats


def _template_features(template: str) -> set[str]:
    """Features of a template; bigrams never span a slot."""
    feats: set[str] = set()
    for segment in _SLOT.split(template):
        feats |= _segment_features(segment)
    return feats


@dataclass(frozen=True)
class Lexicon:
    """Marker features per pole, ``markers[(trait, pole)]``."""

    markers: dict[tuple[str, str], Features]


@lru_cache(maxsize=1)
def lexicon() -> Lexicon:
    """Derive the marker lexicon from the banks (cached)."""
    background: set[str] = set()
    neutral_texts: list[str] = reply_bank.NEUTRAL + reply_bank.NEUTRAL_OPENERS + reply_bank.NEUTRAL_CLOSERS
    for templates in question_bank.TEMPLATES.values():
        neutral_texts += templates
    for fillers in question_bank.SLOTS.values():
        neutral_texts += fillers
    neutral_texts += question_bank.PERSONS + question_bank.DAYS + likert_bank.PROMPTS
    neutral_texts += self_bank.PROMPTS + self_bank.DEFAULT
    for t in neutral_texts:
        background |= _template_features(t)
    per_pole: dict[tuple[str, str], set[str]] = {}
    for key, sentences in reply_bank.POLE_SENTENCES.items():
        feats: set[str] = set()
        for s in sentences + self_bank.SUMMARIES[key]:
            feats |= _template_features(s)
        per_pole[key] = feats - background
    markers: dict[tuple[str, str], Features] = {}
    for key, feats in per_pole.items():
        others: set[str] = set()
        for other, of in per_pole.items():
            if other != key:
                others |= of
        markers[key] = frozenset(feats - others)
    return Lexicon(markers)


def sentences(text: str) -> list[str]:
    """Split text into sentence-like chunks (robust to missing final punctuation)."""
    return [s.strip() for s in _SENTENCE.findall(text) if _WORD.search(s.lower())]


class OracleScorer:
    """Scores text per Big Five trait, 0-100, 50 = no evidence, from the generator's pole markers.

    >>> OracleScorer().trait_score("I love meeting new faces, the more the merrier!", "extraversion") > 60
    True
    """

    def __init__(self, scale: float = 0.8) -> None:
        self.scale = scale
        self._markers = lexicon().markers

    def evidence(self, text: str) -> dict[tuple[str, str], float]:
        """Summed sentence evidence per ``(trait, pole)``."""
        ev = {key: 0.0 for key in self._markers}
        for sent in sentences(text):
            feats = _segment_features(sent)
            for key, markers in self._markers.items():
                hits = len(feats & markers)
                if hits > 1:
                    ev[key] += min(1.0, (hits - 1) / 3.0)
        return ev

    def _from_evidence(self, ev: dict[tuple[str, str], float], trait: str) -> float:
        diff = ev[(trait, "high")] - ev[(trait, "low")]
        return 50.0 + 50.0 * math.tanh(self.scale * diff)

    def score(self, text: str) -> dict[str, float]:
        """Scores of all five traits for ``text``."""
        ev = self.evidence(text)
        return {t: self._from_evidence(ev, t) for t in TRAITS}

    def trait_score(self, text: str, trait: str) -> float:
        """The score of one trait for ``text``."""
        if trait not in TRAITS:
            raise ValueError(f"unknown trait {trait!r}; expected one of {', '.join(TRAITS)}")
        return self._from_evidence(self.evidence(text), trait)

    def score_many(self, texts: Iterable[str]) -> list[dict[str, float]]:
        """Scores of many texts."""
        return [self.score(t) for t in texts]

    @staticmethod
    def pole_of(score: float, margin: float = 0.0) -> str | None:
        """``"high"`` / ``"low"`` when the score lies beyond 50 +/- margin, else None."""
        if score > 50.0 + margin:
            return POLES[0]
        if score < 50.0 - margin:
            return POLES[1]
        return None
