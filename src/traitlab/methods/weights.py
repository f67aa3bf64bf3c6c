"""Weight-space interventions: edit parameters in place for a ``with`` block and restore them bit-exactly.

``WeightEdit`` keeps a copy of exactly the entries it changes and writes them back on exit (also on
exceptions). ``WeightDelta`` is θ' = θ + α·Δ per tensor (task arithmetic, Ilharco et al. 2023; personality
vectors, arXiv 2509.19727), computed in float32 and cast to the parameter's dtype.
"""

from __future__ import annotations

import abc
import contextlib
from collections.abc import Iterator, Mapping
from typing import Any

import torch

from traitlab.errors import ArtifactError, ConfigError
from traitlab.interventions import Coef, Intervention, kwargs_from_meta
from traitlab.model.loaded import LoadedModel
from traitlab.validate import shielded


class WeightEdit(Intervention):
    """Base of in-place weight edits: subclasses say which parameters they touch and how."""

    weight_space = True

    @abc.abstractmethod
    def targets(self) -> list[str]:
        """Names (``model.named_parameters()``) of the parameters this edit changes."""

    @abc.abstractmethod
    def edit(self, name: str, weight: torch.Tensor, coef: float) -> None:
        """Change ``weight`` (the live parameter data) in place."""

    @contextlib.contextmanager
    def _apply(self, lm: LoadedModel, coef: Coef) -> Iterator[None]:
        if isinstance(coef, torch.Tensor):
            raise ConfigError(f"{self.name} edits weights and cannot take per-row scales")
        parameters = dict(lm.model.named_parameters())
        missing = [name for name in self.targets() if name not in parameters]
        if missing:
            raise ArtifactError(f"{self.name} targets parameters this model lacks: {', '.join(missing[:3])}")
        saved: dict[str, torch.Tensor] = {}
        try:
            with torch.no_grad():
                for name in self.targets():
                    data = parameters[name].data
                    saved[name] = data.clone()
                    self.edit(name, data, float(coef))
            yield
        finally:
            def restore() -> None:
                with torch.no_grad():
                    for name, original in saved.items():
                        parameters[name].data.copy_(original)

            shielded(restore)  # a second Ctrl-C must not leave weights half-restored


class WeightDelta(WeightEdit):
    """θ ← θ + α·Δ for each stored tensor Δ (named like the model's parameters)."""

    mechanism = "weight_delta"

    def __init__(self, deltas: Mapping[str, torch.Tensor], **kwargs: Any) -> None:
        super().__init__(**kwargs)
        if not deltas:
            raise ConfigError("a weight delta needs at least one tensor")
        self.deltas = dict(deltas)

    def targets(self) -> list[str]:
        return list(self.deltas)

    def edit(self, name: str, weight: torch.Tensor, coef: float) -> None:
        delta = self.deltas[name]
        if delta.shape != weight.shape:
            raise ArtifactError(f"delta for {name} has shape {tuple(delta.shape)}, the model's is "
                                f"{tuple(weight.shape)}")
        if coef != 0:
            weight.copy_((weight.float() + coef * delta.to(weight.device).float()).to(weight.dtype))

    def tensors(self) -> dict[str, torch.Tensor]:
        return dict(self.deltas)

    def params(self) -> dict[str, Any]:
        return {"parameters": len(self.deltas)}

    @classmethod
    def from_artifact(cls, meta: dict[str, Any], tensors: dict[str, torch.Tensor]) -> Intervention:
        return cls(tensors, **kwargs_from_meta(meta))
