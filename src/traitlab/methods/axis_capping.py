"""Activation capping along the Assistant Axis (Lu et al. 2026, "The Assistant Axis").

At each chosen layer ℓ with unit axis â_ℓ (``persona_space``: a_ℓ = m_default,ℓ − mean of the other roles,
pointing towards the default assistant) and range [low_ℓ, high_ℓ]:

    p = h_ℓ·â_ℓ,   h_ℓ ← h_ℓ + c·(clamp(p, low_ℓ, high_ℓ) − p)·â_ℓ

at every selected position (``all`` by default: prompt and reply tokens alike). The range comes from the
default assistant's own per-token projections: low = its ``low_percentile``-th percentile (25 by default; the
paper floors at a low percentile of typical assistant projections), high = its ``high_percentile``-th (none by
default: drifting *away* from the assistant lowers p, so one side is what matters). Rows already inside the
range are left bit-identical.

The scale c (``scaled``, per-row in the server) is the fraction of the clamp applied: 1 caps, 0 leaves the
model alone, so one batch can carry capped and uncapped rows. It is a runtime Intervention: hooks, composable
with every other mechanism. Its ``vectors`` (unit axis per layer) are what the server's monitor projects on.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import torch

from traitlab.errors import ConfigError
from traitlab.interventions import Coef, Intervention, kwargs_from_meta
from traitlab.methods.persona_space import PersonaSpace
from traitlab.model.edits import residual_cap
from traitlab.model.loaded import LoadedModel
from traitlab.model.positions import check_positions

Bound = float | None
DEFAULT_LOW_PERCENTILE = 25.0


class AxisCapping(Intervention):
    mechanism = "axis_capping"

    def __init__(self, vectors: Mapping[int, torch.Tensor], ranges: Mapping[int, tuple[Bound, Bound]],
                 positions: str = "all", **kwargs: Any) -> None:
        super().__init__(**kwargs)
        if not vectors:
            raise ConfigError("axis capping needs at least one layer")
        if set(map(int, vectors)) != set(map(int, ranges)):
            raise ConfigError("axis capping needs one range per layer vector")
        self.vectors: dict[int, torch.Tensor] = {}
        self.ranges: dict[int, tuple[Bound, Bound]] = {}
        for layer, v in vectors.items():
            v = torch.as_tensor(v).float()
            norm = v.norm()
            if not torch.isfinite(v).all() or norm == 0:
                raise ConfigError(f"axis at layer {layer} is zero or not finite")
            low, high = (None if b is None else float(b) for b in ranges[layer])
            if any(b is not None and not math.isfinite(b) for b in (low, high)):
                raise ConfigError(f"capping range at layer {layer} is not finite")
            if low is None and high is None:
                raise ConfigError(f"capping range at layer {layer} has no bound")
            if low is not None and high is not None and low > high:
                raise ConfigError(f"capping range at layer {layer} is empty: {low} > {high}")
            self.vectors[int(layer)] = v / norm
            self.ranges[int(layer)] = (low, high)
        self.positions = check_positions(positions)

    @contextlib.contextmanager
    def _apply(self, lm: LoadedModel, coef: Coef) -> Iterator[None]:
        for layer in self.vectors:
            lm.hooks.check_layer(layer)
        if not isinstance(coef, torch.Tensor) and coef == 0:
            yield
            return
        with contextlib.ExitStack() as stack:
            for layer, vector in self.vectors.items():
                low, high = self.ranges[layer]
                stack.enter_context(residual_cap(lm, layer, vector, low, high, self.positions, coef))
            yield

    def tensors(self) -> dict[str, torch.Tensor]:
        return {f"layer.{layer}": v for layer, v in self.vectors.items()}

    def params(self) -> dict[str, Any]:
        return {"layers": sorted(self.vectors), "positions": self.positions,
                "ranges": {str(layer): list(r) for layer, r in self.ranges.items()}}

    @classmethod
    def from_artifact(cls, meta: dict[str, Any], tensors: dict[str, torch.Tensor]) -> Intervention:
        params = meta["params"]
        vectors = {int(layer): tensors[f"layer.{layer}"] for layer in params["layers"]}
        ranges = {int(layer): tuple(r) for layer, r in params["ranges"].items()}
        return cls(vectors, ranges, params["positions"], **kwargs_from_meta(meta))


def from_space(space: PersonaSpace, layers: Sequence[int] | None = None,
               low_percentile: float | None = DEFAULT_LOW_PERCENTILE, high_percentile: float | None = None,
               positions: str = "all") -> AxisCapping:
    """Capping at ``layers`` (default: the space's layer) to the default assistant's percentile range."""
    if low_percentile is None and high_percentile is None:
        raise ConfigError("give a low percentile, a high percentile, or both")
    if low_percentile is not None and high_percentile is not None and low_percentile > high_percentile:
        raise ConfigError(f"low percentile {low_percentile} is above high percentile {high_percentile}")
    chosen = [space.layer] if not layers else [space.check_layer(int(layer)) for layer in layers]
    ranges = {layer: (None if low_percentile is None else space.percentile(layer, low_percentile),
                      None if high_percentile is None else space.percentile(layer, high_percentile))
              for layer in chosen}
    hyper = {"low_percentile": low_percentile, "high_percentile": high_percentile, "roles": len(space.names),
             "default_role": space.default}
    return AxisCapping({layer: space.unit_axis(layer) for layer in chosen}, ranges, positions,
                       trait="assistant_axis", pole="assistant", hyperparameters=hyper,
                       fingerprint=space.fingerprint)
