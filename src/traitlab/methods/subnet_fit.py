"""Fitting persona subnetworks (see ``subnetworks`` for the method): Wanda and contrastive masks from the
calibration statistics, the settings that decide a subnetwork (``FindSettings``), and ``find`` from a TraitSpec
pole end to end. The masks become a ``subnetworks.SubnetworkMask``."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import torch

from traitlab.errors import ConfigError
from traitlab.methods.subnet_calibration import (
    CALIBRATION_POSITIONS,
    CalibrationSet,
    GenerationSettings,
    collect_stats,
    from_spec,
    opposite,
    spec_pole,
)
from traitlab.methods.subnet_masks import (
    DISJOINT,
    check_sparsity,
    contrastive_scores,
    contrastive_z,
    keep_mask,
    rows_view,
    to_parameter_layout,
    wanda_scores,
)
from traitlab.methods.subnetworks import BLOCK_CONVENTION, SubnetworkMask
from traitlab.model import Generation, LinearInputStats, LoadedModel, linear_modules
from traitlab.model.family import is_conv1d
from traitlab.progress import activity
from traitlab.readers import int_ranges
from traitlab.traits import TraitSpec

MODULE_FILTERS = ("all", "mlp", "attention")
WANDA_SPARSITY = 0.5
CONTRASTIVE_SPARSITY = 0.3


def check_blocks(lm: LoadedModel, blocks: Sequence[int] | None) -> list[int] | None:
    if blocks is None:
        return None
    bad = [b for b in blocks if not isinstance(b, int) or not 0 <= b < lm.num_layers]
    if bad or not blocks:
        raise ConfigError(f"blocks {list(blocks)} out of range: this model has blocks 0..{lm.num_layers - 1} "
                          f"({BLOCK_CONVENTION})")
    return sorted(set(blocks))


# ---------------------------------------------------------------------------------------------- mask fitting


def wanda_masks(lm: LoadedModel, stats: Mapping[str, LinearInputStats], sparsity: float = WANDA_SPARSITY,
                modules: str = "all", blocks: Sequence[int] | None = None) -> dict[str, torch.Tensor]:
    """Bool keep-masks (parameter layout) keyed by parameter name: top ``1 − sparsity`` of each output row by
    ``|W_ij|·‖X_j‖₂``."""
    check_sparsity(sparsity)
    out = {}
    for name, module in linear_modules(lm, modules, check_blocks(lm, blocks)).items():  # type: ignore[arg-type]
        if name not in stats:
            raise ConfigError(f"no calibration statistics for {name}; collect them with the same module filter")
        conv = is_conv1d(module)
        scores = wanda_scores(rows_view(module.weight, conv), stats[name].norm)
        out[f"{name}.weight"] = to_parameter_layout(keep_mask(scores, sparsity), conv)
    return out


def contrastive_masks(lm: LoadedModel, seek: Mapping[str, LinearInputStats],
                      reject: Mapping[str, LinearInputStats], sparsity: float = CONTRASTIVE_SPARSITY,
                      modules: str = "all", blocks: Sequence[int] | None = None, direction: str = "seek",
                      eps: float = 1e-6, pair: bool = False,
                      disjoint: str = "none") -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor] | None]:
    """Contrastive keep-masks: the ``direction`` persona's mask (``seek``: keep ranking ``|W|·ReLU(z)``;
    ``reject``: the opposite persona's, ``|W|·ReLU(−z)``), and with ``pair=True`` the other direction's mask too,
    made disjoint from the first (``disjoint='kept'`` or ``'removed'``) when asked."""
    check_sparsity(sparsity)
    if direction not in ("seek", "reject"):
        raise ConfigError(f"direction must be seek or reject, got '{direction}'")
    if disjoint not in DISJOINT:
        raise ConfigError(f"disjoint must be one of {', '.join(DISJOINT)}, got '{disjoint}'")
    sign = 1.0 if direction == "seek" else -1.0
    first, second = {}, {} if pair else None
    for name, module in linear_modules(lm, modules, check_blocks(lm, blocks)).items():  # type: ignore[arg-type]
        if name not in seek or name not in reject:
            raise ConfigError(f"no calibration statistics for {name}; collect them with the same module filter")
        s, r = seek[name], reject[name]
        z = contrastive_z(s.mean, s.variance, r.mean, r.variance, eps)
        conv = is_conv1d(module)
        weight = rows_view(module.weight, conv)
        mask = keep_mask(contrastive_scores(weight, sign * z), sparsity)
        first[f"{name}.weight"] = to_parameter_layout(mask, conv)
        if second is not None:
            exclude = None if disjoint == "none" else (mask if disjoint == "kept" else ~mask)
            other = keep_mask(contrastive_scores(weight, -sign * z), sparsity, exclude,
                              disjoint if disjoint != "none" else "kept")
            second[f"{name}.weight"] = to_parameter_layout(other, conv)
    return first, second


# ---------------------------------------------------------------------------------------------- high-level fit


@dataclasses.dataclass(frozen=True)
class FindSettings:
    """Everything that decides a subnetwork, validated before any model is loaded."""

    sparsity: float | None = None          # None: 0.5 (Wanda) or 0.3 (contrastive)
    contrastive: bool = False
    modules: str = "all"
    blocks: tuple[int, ...] | None = None
    with_system: bool = False
    positions: str = "response"
    eps: float = 1e-6
    disjoint: str = "none"
    generation: GenerationSettings = dataclasses.field(default_factory=GenerationSettings)
    batch_size: int = 16

    def __post_init__(self) -> None:
        if self.sparsity is not None:
            check_sparsity(self.sparsity)
        if self.modules not in MODULE_FILTERS:
            raise ConfigError(f"unknown module filter '{self.modules}'; use all, mlp or attention")
        if self.positions not in CALIBRATION_POSITIONS:
            raise ConfigError(f"positions must be response or all, got '{self.positions}'")
        if self.disjoint not in DISJOINT:
            raise ConfigError(f"disjoint must be one of {', '.join(DISJOINT)}, got '{self.disjoint}'")
        if self.blocks is not None and (not self.blocks or any(not isinstance(b, int) or b < 0 for b in self.blocks)):
            raise ConfigError(f"blocks must be non-negative integers, got {self.blocks}")
        if not self.eps > 0:
            raise ConfigError(f"eps must be > 0, got {self.eps}")

    @property
    def effective_sparsity(self) -> float:
        if self.sparsity is not None:
            return self.sparsity
        return CONTRASTIVE_SPARSITY if self.contrastive else WANDA_SPARSITY

    def hyperparameters(self) -> dict[str, Any]:
        return {"method": "contrastive" if self.contrastive else "wanda", "sparsity": self.effective_sparsity,
                "modules": self.modules, "blocks": list(self.blocks) if self.blocks else None,
                "with_system": self.with_system, "positions": self.positions,
                **({"eps": self.eps, "disjoint": self.disjoint} if self.contrastive else {}),
                **{f"generation_{k}": v for k, v in dataclasses.asdict(self.generation).items()}}


def _summary(stats: Mapping[str, LinearInputStats]) -> int:
    return max((entry.count for entry in stats.values()), default=0)


def find_from_stats(lm: LoadedModel, settings: FindSettings, seek: Mapping[str, LinearInputStats],
                    reject: Mapping[str, LinearInputStats] | None = None, *, trait: str | None = None,
                    pole: str | None = None, source: Mapping[str, Any] | None = None,
                    pair: bool = False) -> tuple[SubnetworkMask, SubnetworkMask | None]:
    """Masks from collected statistics: Wanda (``reject=None``) or contrastive; with ``pair=True`` also the
    opposite persona's mask (contrastive: ``−z`` from the same statistics; Wanda: from ``reject`` as its own
    calibration)."""
    blocks = list(settings.blocks) if settings.blocks else None
    sparsity = settings.effective_sparsity
    hyper = settings.hyperparameters()
    info = {"calibration": dict(source or {}), "calibration_tokens": _summary(seek)}
    common = dict(trait=trait, hyperparameters=hyper, fingerprint=lm.fingerprint)
    if settings.contrastive:
        if reject is None:
            raise ConfigError("contrastive pruning needs the rejected persona's statistics")
        first, second = contrastive_masks(lm, seek, reject, sparsity, settings.modules, blocks, "seek",
                                          settings.eps, pair, settings.disjoint)
        info["reject_tokens"] = _summary(reject)
    else:
        first = wanda_masks(lm, seek, sparsity, settings.modules, blocks)
        second = None
        if pair:
            if reject is None:
                raise ConfigError("a pair of Wanda masks needs the second persona's statistics")
            second = wanda_masks(lm, reject, sparsity, settings.modules, blocks)
            if settings.disjoint != "none":
                raise ConfigError("disjoint masks are made by contrastive pruning; add --contrastive")
    mask = SubnetworkMask.from_masks(first, {**info, "direction": "seek"}, pole=pole, **common)
    other = None
    if second is not None:
        other_pole = opposite(pole) if pole in ("high", "low") else None
        other = SubnetworkMask.from_masks(second, {**info, "direction": "reject"}, pole=other_pole, **common)
    return mask, other


PoleStatistics = tuple[dict[str, LinearInputStats], dict[str, Any]]
"""One pole's calibration statistics (module name → Σx, Σx² over its calibration tokens) and the description of
its calibration set (``CalibrationSet.source``)."""


def pole_statistics(lm: LoadedModel, spec: TraitSpec, pole: str, settings: FindSettings,
                    answers: Generation | None = None) -> PoleStatistics:
    """The calibration statistics of one pole of ``spec``: the model's answers under that pole's system prompts
    (``from_spec``; ``answers``: those replies already sampled), then Σx_j and Σx²_j of every selected Linear's
    input over their tokens (``collect_stats``)."""
    calibration = from_spec(lm, spec, pole, settings.with_system, settings.generation, answers=answers)
    return stats_for(lm, calibration, settings), calibration.source


def find(lm: LoadedModel, spec: TraitSpec, pole: str | None = None, settings: FindSettings | None = None,
         pair: bool = False, calibrate: Callable[[str], PoleStatistics] | None = None,
         ) -> tuple[SubnetworkMask, SubnetworkMask | None]:
    """The subnetwork of a TraitSpec pole (Wanda, or contrastive against the opposite pole), and with
    ``pair=True`` the opposite pole's mask as well.

    ``calibrate(pole)`` gives a pole's statistics (default ``pole_statistics``, computed afresh): a caller that
    fits both poles of a trait passes a cached one, so each pole is calibrated once and the two contrastive masks
    come from the same two statistics (``z`` of one direction is exactly ``−z`` of the other)."""
    settings = settings or FindSettings()
    chosen, _ = spec_pole(spec, pole)
    check_blocks(lm, settings.blocks)
    resolved = calibrate if calibrate is not None else (lambda which: pole_statistics(lm, spec, which, settings))
    with activity(f"{chosen} pole (kept)"):
        seek, seek_source = resolved(chosen)
    reject = None
    source: dict[str, Any] = {"seek": seek_source}
    if settings.contrastive or pair:
        with activity(f"{opposite(chosen)} pole (rejected)"):
            reject, source["reject"] = resolved(opposite(chosen))
    return find_from_stats(lm, settings, seek, reject, trait=spec.trait_name, pole=chosen, source=source,
                           pair=pair)


def stats_for(lm: LoadedModel, calibration: CalibrationSet, settings: FindSettings) -> dict[str, LinearInputStats]:
    blocks = list(settings.blocks) if settings.blocks else None
    return collect_stats(lm, calibration, settings.positions, settings.modules, blocks, settings.batch_size)


def parse_blocks(text: str | None) -> list[int] | None:
    """``"2-4"`` → [2, 3, 4]; ``"0,3"`` → [0, 3]; empty → None (all blocks)."""
    if text is None or not str(text).strip():
        return None
    try:
        out = int_ranges(text)
    except ValueError:
        raise ConfigError(f"cannot read blocks '{text}': use a range like 0-3 or a list like 0,2,4") from None
    if any(b < 0 for b in out) or not out:
        raise ConfigError(f"blocks '{text}' must be non-negative block indices")
    return sorted(set(out))
