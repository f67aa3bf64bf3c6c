"""Dose–response: how a score follows the scale of an Intervention.

``dose_response(scales, scores, coherence, threshold)`` gives Pearson's r and Spearman's ρ between scale and
score, the monotonicity (share of consecutive steps, in increasing scale, that move with the overall trend;
1.0 is monotone), and the breakdown scale: the smallest ``|scale|`` at which coherence falls below
``threshold`` (``None`` when it never does).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from traitlab.evaluation import scoring


def dose_response(scales: Sequence[float], scores: Sequence[float | None],
                  coherence: Sequence[float | None] | None = None, threshold: float = 50.0) -> dict[str, Any]:
    points = [(float(s), float(v)) for s, v in zip(scales, scores, strict=True) if v is not None]
    xs, ys = [p[0] for p in points], [p[1] for p in points]
    breakdown = None
    if coherence is not None:
        below = [float(s) for s, c in zip(scales, coherence, strict=True) if c is not None and c < threshold]
        if below:
            breakdown = min(below, key=abs)
    return {
        "scales": [float(s) for s in scales], "scores": list(scores),
        "coherence": list(coherence) if coherence is not None else None,
        "pearson_r": scoring.pearson(xs, ys), "spearman_rho": scoring.spearman(xs, ys),
        "monotonicity": scoring.monotonicity(xs, ys), "coherence_threshold": threshold,
        "breakdown_scale": breakdown,
    }
