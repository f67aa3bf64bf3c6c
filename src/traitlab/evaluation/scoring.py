"""The arithmetic of evaluation, kept free of models so it can be checked by hand.

- ``expected_label``: the expected answer under a distribution over scale labels (probabilities renormalised
  over the labels, so mass on other tokens does not drag the answer toward 0);
- ``keyed``: reverse keying on a ``low..high`` scale (``low + high − x`` for items keyed −1);
- ``cronbach_alpha``: α = k/(k−1) · (1 − Σ var(item) / var(total)) over respondents × items;
- ``weighted_integer_score``: the judge score of persona_vectors / PersonalityBench practice: the
  probability-weighted mean over the integer tokens 0–100 among the top log-probs, ``None`` when those tokens
  carry less than ``min_mass`` of the probability;
- ``pearson``, ``spearman``, ``monotonicity``: the statistics of a dose–response curve.
"""

from __future__ import annotations

import itertools
import math
import re
import statistics
from collections.abc import Iterable, Mapping, Sequence

MIN_JUDGE_MASS = 0.25
_INTEGER = re.compile(r"^\s*(\d{1,3})\s*$")
_FIRST_NUMBER = re.compile(r"(?<![\d.])(\d{1,3})(?:\.\d+)?(?![\d])")


def expected_label(probs: Mapping[int, float]) -> tuple[float | None, float]:
    """``(Σ p_v·v / Σ p_v, Σ p_v)`` for a distribution over numeric labels ``v``; ``None`` when no mass."""
    mass = float(sum(probs.values()))
    if mass <= 0:
        return None, 0.0
    return float(sum(v * p for v, p in probs.items()) / mass), mass


def keyed(value: float, key: int, low: int = 1, high: int = 5) -> float:
    """Reverse keying: the raw answer for key +1, ``low + high − value`` for key −1."""
    if key not in (1, -1):
        raise ValueError(f"item key must be +1 or -1, got {key}")
    return value if key == 1 else low + high - value


def mean(values: Iterable[float]) -> float | None:
    values = [v for v in values if v is not None and not math.isnan(v)]
    return float(sum(values) / len(values)) if values else None


def sd(values: Iterable[float]) -> float | None:
    """Sample standard deviation (n − 1); ``None`` below two values."""
    values = [v for v in values if v is not None and not math.isnan(v)]
    return float(statistics.stdev(values)) if len(values) > 1 else None


def variance(values: Iterable[float]) -> float | None:
    values = [v for v in values if v is not None and not math.isnan(v)]
    return float(statistics.variance(values)) if len(values) > 1 else None


def cronbach_alpha(matrix: Sequence[Sequence[float]], min_total_sd: float = 0.05) -> float | None:
    """Cronbach's α of a ``respondents × items`` matrix of (keyed) scores, with sample variances.
    ``None`` with fewer than two respondents or items, or when the total score hardly varies across
    respondents (SD below ``min_total_sd`` scale points per item): α is then a ratio of noise."""
    rows = [list(r) for r in matrix]
    if len(rows) < 2 or not rows[0] or len(rows[0]) < 2:
        return None
    k = len(rows[0])
    if any(len(r) != k for r in rows):
        raise ValueError("cronbach_alpha needs a rectangular respondents × items matrix")
    item_var = sum(statistics.variance([r[j] for r in rows]) for j in range(k))
    total_var = statistics.variance([sum(r) for r in rows])
    if total_var <= 1e-12 or math.sqrt(total_var) < min_total_sd * k:
        return None
    return float(k / (k - 1) * (1 - item_var / total_var))


def parse_integer_token(token: str, low: int = 0, high: int = 100) -> int | None:
    """The integer a token stands for (surrounding whitespace ignored), or ``None``."""
    match = _INTEGER.match(token)
    if not match:
        return None
    value = int(match.group(1))
    return value if low <= value <= high else None


def weighted_integer_score(top_logprobs: Iterable[tuple[str, float]], low: int = 0, high: int = 100,
                           min_mass: float = MIN_JUDGE_MASS) -> tuple[float | None, float]:
    """``(score, mass)`` from ``(token, logprob)`` pairs: Σ p·v / Σ p over tokens that are integers in
    ``low..high`` (several tokens of one integer add up), ``None`` when Σ p < ``min_mass``."""
    probs: dict[int, float] = {}
    for token, logprob in top_logprobs:
        value = parse_integer_token(token, low, high)
        if value is not None and logprob is not None:
            probs[value] = probs.get(value, 0.0) + math.exp(logprob)
    score, mass = expected_label(probs)
    if mass < min_mass:
        return None, mass
    return score, mass


def parse_first_integer(text: str, low: int = 0, high: int = 100) -> int | None:
    """The first number in ``text`` if it lies in ``low..high`` (``"Score: 85/100"`` → 85), else ``None``."""
    match = _FIRST_NUMBER.search(text or "")
    if not match:
        return None
    value = int(match.group(1))
    return value if low <= value <= high else None


def _ranks(values: Sequence[float]) -> list[float]:
    order = sorted(range(len(values)), key=lambda i: values[i])
    ranks = [0.0] * len(values)
    i = 0
    while i < len(order):
        j = i
        while j + 1 < len(order) and values[order[j + 1]] == values[order[i]]:
            j += 1
        for m in range(i, j + 1):
            ranks[order[m]] = (i + j) / 2 + 1
        i = j + 1
    return ranks


def pearson(x: Sequence[float], y: Sequence[float]) -> float | None:
    """Pearson's r; ``None`` with fewer than two points or a constant series."""
    if len(x) != len(y):
        raise ValueError("pearson needs two series of the same length")
    if len(x) < 2:
        return None
    mx, my = sum(x) / len(x), sum(y) / len(y)
    sxy = sum((a - mx) * (b - my) for a, b in zip(x, y, strict=True))
    sxx = sum((a - mx) ** 2 for a in x)
    syy = sum((b - my) ** 2 for b in y)
    if sxx <= 0 or syy <= 0:
        return None
    return float(sxy / math.sqrt(sxx * syy))


def spearman(x: Sequence[float], y: Sequence[float]) -> float | None:
    """Spearman's ρ: Pearson's r of the ranks (ties get their mean rank)."""
    return pearson(_ranks(x), _ranks(y))


def monotonicity(x: Sequence[float], y: Sequence[float]) -> float | None:
    """Share of consecutive steps (in increasing x) whose change in y has the sign of the overall trend
    (last − first); 1.0 is a monotone curve. ``None`` with fewer than two points."""
    pairs = sorted(zip(x, y, strict=True))
    if len(pairs) < 2:
        return None
    trend = pairs[-1][1] - pairs[0][1]
    sign = 1.0 if trend >= 0 else -1.0
    steps = [b[1] - a[1] for a, b in itertools.pairwise(pairs)]
    return float(sum(1 for s in steps if s * sign >= 0) / len(steps))
