"""Residual-stream steering with one direction per layer: add (activation addition, Turner et al. 2023; persona
vectors, Chen et al. 2025: h_ℓ ← h_ℓ + α·v_ℓ), directional ablation (h ← h − α(h·v̂)v̂, CAFT / Arditi et al.
2024) or projection capping (h·v̂ clamped to [low, high]). The scale α is the steering coefficient; negative
α inhibits the trait."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Mapping
from typing import Any, Literal

import torch

from traitlab.errors import ConfigError
from traitlab.interventions import Coef, Intervention, kwargs_from_meta
from traitlab.model.edits import residual_ablate, residual_add, residual_cap
from traitlab.model.loaded import LoadedModel
from traitlab.model.positions import check_positions

Mode = Literal["add", "ablate", "cap"]


class ResidualSteering(Intervention):
    mechanism = "residual_steering"

    def __init__(self, vectors: Mapping[int, torch.Tensor], mode: Mode = "add", positions: str = "response",
                 cap: tuple[float | None, float | None] = (None, None), **kwargs: Any) -> None:
        super().__init__(**kwargs)
        if not vectors:
            raise ConfigError("residual steering needs at least one layer vector")
        if mode not in ("add", "ablate", "cap"):
            raise ConfigError(f"unknown steering mode '{mode}'; use add, ablate or cap")
        self.vectors = {int(layer): torch.as_tensor(v).float() for layer, v in vectors.items()}
        self.mode: Mode = mode
        self.positions = check_positions(positions)
        self.cap = cap

    @contextlib.contextmanager
    def _apply(self, lm: LoadedModel, coef: Coef) -> Iterator[None]:
        with contextlib.ExitStack() as stack:
            for layer, vector in self.vectors.items():
                if self.mode == "add":
                    edit = residual_add(lm, layer, vector, coef, self.positions)
                elif self.mode == "ablate":
                    edit = residual_ablate(lm, layer, vector, coef, self.positions)
                else:
                    if isinstance(coef, torch.Tensor):
                        raise ConfigError("projection capping takes no per-row scale")
                    low, high = self.cap
                    edit = residual_cap(lm, layer, vector, low, high, self.positions)
                stack.enter_context(edit)
            yield

    def tensors(self) -> dict[str, torch.Tensor]:
        return {f"layer.{layer}": v for layer, v in self.vectors.items()}

    def params(self) -> dict[str, Any]:
        return {"layers": sorted(self.vectors), "mode": self.mode, "positions": self.positions,
                "cap": list(self.cap)}

    @classmethod
    def from_artifact(cls, meta: dict[str, Any], tensors: dict[str, torch.Tensor]) -> Intervention:
        params = meta["params"]
        vectors = {layer: tensors[f"layer.{layer}"] for layer in params["layers"]}
        return cls(vectors, params["mode"], params["positions"], tuple(params["cap"]), **kwargs_from_meta(meta))
