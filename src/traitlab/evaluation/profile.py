"""Linguistic profile of replies, the open stand-in for the LIWC-22 categories that personality-vector papers
report (arXiv 2509.19727): lexicon categories from ``empath`` (which ships its lexicon) and a few plain
measures.

Per reply: ``words``, ``words_per_sentence``, ``i_rate`` (first-person singular words per word), ``we_rate``,
``you_rate``, ``question_rate`` and ``exclaim_rate`` (per sentence), ``type_token``, ``sentiment`` (VADER's
compound score −1…1 from ``vaderSentiment``'s shipped lexicon) and, for each category in ``CATEGORIES``, the
share of words empath counts in it (``empath:<category>``). ``mean_profile`` averages a list of profiles; the
situational suite stores it per condition and the report shows it per method.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Sequence
from typing import Any

from traitlab.errors import ConfigError
from traitlab.evaluation.embedding_judge import words

CATEGORIES: tuple[str, ...] = (
    "positive_emotion", "negative_emotion", "joy", "sadness", "anger", "fear", "nervousness", "optimism",
    "trust", "affection", "friends", "family", "party", "celebration", "communication", "work", "order",
    "achievement", "art", "philosophy", "leisure", "help", "politeness", "dispute", "aggression", "timidity",
)
PLAIN = ("words", "words_per_sentence", "i_rate", "we_rate", "you_rate", "question_rate", "exclaim_rate",
         "type_token", "sentiment")
_I = frozenset({"i", "me", "my", "mine", "myself", "i'm", "i've", "i'd", "i'll"})
_WE = frozenset({"we", "us", "our", "ours", "ourselves", "we're", "we've", "we'd", "we'll"})
_YOU = frozenset({"you", "your", "yours", "yourself", "yourselves", "you're", "you've", "you'd", "you'll"})
_SENTENCE = re.compile(r"[^.!?]+[.!?]*")


@functools.lru_cache(maxsize=1)
def _lexicon() -> Any:
    try:
        from empath import Empath
    except ImportError:
        raise ConfigError("the linguistic profile needs the empath package: pip install empath") from None
    return Empath()


@functools.lru_cache(maxsize=1)
def _vader() -> Any:
    try:
        from vaderSentiment.vaderSentiment import SentimentIntensityAnalyzer
    except ImportError:
        return None
    return SentimentIntensityAnalyzer()


def profile(text: str, categories: Sequence[str] = CATEGORIES) -> dict[str, float]:
    """The profile of one reply (see the module docstring)."""
    ws = words(text)
    n = len(ws)
    sentences = [s for s in _SENTENCE.findall(text) if s.strip()] or [text]
    out: dict[str, float] = {
        "words": float(n),
        "words_per_sentence": n / len(sentences),
        "i_rate": sum(w in _I for w in ws) / n if n else 0.0,
        "we_rate": sum(w in _WE for w in ws) / n if n else 0.0,
        "you_rate": sum(w in _YOU for w in ws) / n if n else 0.0,
        "question_rate": sum(s.rstrip().endswith("?") for s in sentences) / len(sentences),
        "exclaim_rate": sum(s.rstrip().endswith("!") for s in sentences) / len(sentences),
        "type_token": len(set(ws)) / n if n else 0.0,
    }
    vader = _vader()
    if vader is not None:
        out["sentiment"] = float(vader.polarity_scores(text)["compound"]) if text.strip() else 0.0
    counts = _lexicon().analyze(text, categories=list(categories), normalize=False) or {}
    for cat in categories:
        out[f"empath:{cat}"] = float(counts.get(cat, 0.0)) / n if n else 0.0
    return out


def mean_profile(profiles: Sequence[dict[str, float]]) -> dict[str, float]:
    """Key-wise mean of profiles (rounded to 4 places)."""
    if not profiles:
        return {}
    keys = list(profiles[0])
    return {k: round(sum(p.get(k, 0.0) for p in profiles) / len(profiles), 4) for k in keys}


def profile_many(texts: Sequence[str], categories: Sequence[str] = CATEGORIES) -> list[dict[str, float]]:
    unknown = [c for c in categories if c not in _lexicon().cats]
    if unknown:
        raise ConfigError(f"unknown empath categories: {', '.join(unknown)}")
    return [profile(t, categories) for t in texts]
