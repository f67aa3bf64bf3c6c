"""Layer and coefficient selection for persona vectors (Chen et al. 2025, §3.2): steer held-out questions at
each candidate layer with each coefficient, judge trait expression and coherence, and pick the cell with the
highest trait score whose mean coherence stays ≥ the threshold.

The grid may also span vector variants (response-average, prompt-average, last prompt token, optimised) and
the positions steered (the paper steers response tokens; a model that reads its persona from the prompt
through attention is steered better at prompt positions). All coefficients of one layer run in a single
batched generation with per-row coefficients.
"""

from __future__ import annotations

import base64
import dataclasses
import io
from collections.abc import Sequence
from typing import Any

import torch

from traitlab.errors import ConfigError
from traitlab.judging import Judge, judge_all
from traitlab.methods.persona_vectors import PersonaVector
from traitlab.model import LoadedModel, residual_add
from traitlab.model.positions import check_positions
from traitlab.progress import track
from traitlab.traits import TraitSpec


@dataclasses.dataclass(frozen=True)
class SweepCell:
    layer: int
    coef: float
    trait: float
    coherence: float | None
    n: int
    variant: str = "response_avg"
    positions: str = "response"


@dataclasses.dataclass
class SweepResult:
    cells: list[SweepCell]
    best: SweepCell
    baseline_trait: float
    threshold: float

    def table(self) -> list[dict[str, Any]]:
        return [dataclasses.asdict(cell) for cell in self.cells]


def _mean(values: Sequence[float | None]) -> float | None:
    present = [v for v in values if v is not None]
    return sum(present) / len(present) if present else None


def sweep(lm: LoadedModel, vector: PersonaVector, spec: TraitSpec, judge: Judge, layers: Sequence[int],
          coefs: Sequence[float], coherence_judge: Judge | None = None, threshold: float = 50.0,
          questions: Sequence[str] | None = None, max_new_tokens: int = 64, batch_size: int = 64,
          positions: str | Sequence[str] | None = None, variants: Sequence[str] | None = None) -> SweepResult:
    """Steer ``questions`` (default: the spec's held-out eval questions) over ``variants`` × ``positions`` ×
    ``layers`` × ``coefs`` (variants and positions default to the vector's own)."""
    if not layers or not coefs:
        raise ConfigError("a sweep needs at least one layer and one coefficient")
    for layer in layers:
        lm.hooks.check_layer(layer)
    position_grid = [positions] if isinstance(positions, str) else list(positions or [vector.positions])
    variant_grid = list(variants or [vector.variant])
    unknown = [v for v in variant_grid if v not in vector.directions]
    if unknown:
        raise ConfigError(f"unknown persona-vector variant '{unknown[0]}'; have {', '.join(vector.directions)}")
    for where in position_grid:
        check_positions(where)
    qs = list(questions if questions is not None else spec.held_out_questions)
    grid = [0.0, *sorted(set(coefs) - {0.0})]
    rows = [q for q in qs for _ in grid]
    row_coefs = torch.tensor([c for _ in qs for c in grid])
    cells: list[SweepCell] = []
    baseline: list[float] = []
    runs = [(v, where, layer) for v in variant_grid for where in position_grid for layer in layers
            if vector.direction(layer, v).any()]  # an optimised variant is zero at layers it was not fitted at
    if not runs:
        raise ConfigError("every swept layer's direction is zero; sweep the layers the vector was optimised at")
    label = f"persona vectors: sweeping {spec.name}, {len(runs)} layer cells × {len(grid)} coefficients"
    for variant, where, layer in track(runs, label, total=len(runs)):
        with residual_add(lm, layer, vector.direction(layer, variant), row_coefs, where):
            texts = lm.generate_chat(rows, max_new_tokens=max_new_tokens, batch_size=batch_size,
                                     progress=False).texts
        trait = judge_all(judge, [(q, a, spec.eval_prompt) for q, a in zip(rows, texts, strict=True)])
        coherence = (judge_all(coherence_judge, [(q, a, "") for q, a in zip(rows, texts, strict=True)])
                     if coherence_judge else None)
        for k, coef in enumerate(grid):
            idx = range(k, len(rows), len(grid))
            trait_mean = _mean([trait[i] for i in idx])
            coherence_mean = _mean([coherence[i] for i in idx]) if coherence else None
            if coef == 0.0:
                baseline.append(trait_mean or 0.0)
                continue
            cells.append(SweepCell(layer, coef, round(trait_mean or 0.0, 3),
                                   None if coherence_mean is None else round(coherence_mean, 3), len(qs),
                                   variant, where))
    return SweepResult(cells, best_cell(cells, threshold), round(sum(baseline) / len(baseline), 3), threshold)


def best_cell(cells: Sequence[SweepCell], threshold: float) -> SweepCell:
    """The cell with the highest trait score among those whose coherence is ≥ ``threshold`` (all cells when
    none is); ties go to the smaller |coefficient|."""
    eligible = [c for c in cells if c.coherence is None or c.coherence >= threshold] or list(cells)
    return max(eligible, key=lambda c: (c.trait, -abs(c.coef)))


def plot_png(result: SweepResult) -> str:
    """The trait score per layer and coefficient as a small base64 PNG (for metadata and reports)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    best = result.best
    shown = [c for c in result.cells if (c.variant, c.positions) == (best.variant, best.positions)]
    figure, axis = plt.subplots(figsize=(4.5, 3), dpi=80)
    axis.set_title(f"{best.variant} at {best.positions} positions", fontsize=8)
    for coef in sorted({c.coef for c in shown}):
        points = sorted((c.layer, c.trait) for c in shown if c.coef == coef)
        axis.plot([p[0] for p in points], [p[1] for p in points], marker="o", label=f"α={coef:g}")
    axis.axhline(result.baseline_trait, color="grey", linestyle="--", label="unsteered")
    axis.set_xlabel("layer")
    axis.set_ylabel("trait score")
    axis.legend(fontsize=6)
    figure.tight_layout()
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png")
    plt.close(figure)
    return base64.b64encode(buffer.getvalue()).decode()


def apply_sweep(vector: PersonaVector, result: SweepResult, with_plot: bool = True) -> PersonaVector:
    """The vector steering at the chosen layer, variant and positions with the chosen coefficient as its scale;
    the table (and a plot) recorded in the artifact's metadata."""
    best = result.best
    chosen = vector.at(best.layer, variant=best.variant, positions=best.positions)
    chosen.scale = best.coef
    chosen.extra = {**vector.extra, "sweep": {
        "table": result.table(), "best_layer": best.layer, "best_coef": best.coef,
        "best_variant": best.variant, "best_positions": best.positions,
        "baseline_trait": result.baseline_trait, "coherence_threshold": result.threshold,
        **({"plot_png_base64": plot_png(result)} if with_plot else {}),
    }}
    return chosen
