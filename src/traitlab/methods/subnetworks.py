"""Persona subnetworks (Ye et al. 2026, "Your Language Model Secretly Contains Personality Subnetworks",
arXiv 2602.07164): training-free weight masks that isolate a persona inside the existing weights.

1. **Calibration** (``subnet_calibration``): a persona's calibration texts (a TraitSpec pole, a description or
   a JSONL of texts) go through the model once; every Linear inside the decoder blocks gets Σx_j, Σx²_j per input
   channel over the selected tokens, hence ‖X_j‖₂, μ_j and σ²_j.
2. **Persona mask** (Wanda-style, ``subnet_fit.wanda_masks``): ``S_ij = |W_ij|·‖X_j‖₂``; each output row keeps its top
   ``(1 − sparsity)`` weights (default sparsity 0.5); module filter ``all|mlp|attention`` and a block range.
3. **Contrastive pruning** (``subnet_fit.contrastive_masks``) for a pair (seek, reject):
   ``z_j = (μ_seek − μ_reject)/sqrt(σ²_seek + σ²_reject + ε)``, keep ranking ``|W_ij|·ReLU(z_j)`` (ties among zeros
   broken by ``|W_ij|·z_j``, see ``subnet_masks``), default sparsity 0.3. ``direction='reject'`` builds the
   opposite persona's mask from the same statistics (``−z``); ``disjoint`` forces a pair's kept sets (or removed
   sets) apart.
4. **Apply** (``SubnetworkMask``, mechanism ``subnetwork``, weight space): masked-out weights are set to 0 in place
   and only the removed values are kept (their positions come from the mask), to be written back on exit —
   bit-exact, also after an exception. Masks live bit-packed (1 bit per weight), in memory and in the artifact.
   ``SubnetworkSet`` switches personas on a live model by swapping masks; ``export_checkpoint`` writes a plain HF
   checkpoint with the mask applied.
5. **Fitting** end to end: ``subnet_fit.find`` (calibration, statistics, masks). **Analysis**
   (``subnet_analysis``): sparsity per module, Jaccard overlap of two masks per layer and module.

**Scale**: a mask has no natural strength, so the scale interpolates the removed weights:
``w ← (1 − scale)·w`` on the masked-out entries. Scale 1 (the default) is the subnetwork (removed weights are
exactly 0); scale 0 leaves the model unchanged; 0 < scale < 1 shrinks the removed weights part-way (what a
runner sweep over scales explores). Values outside [0, 1] extrapolate (> 1 flips the sign of the removed
weights) and are allowed but not meaningful for the paper's method.

**Blocks**: the ``blocks`` option takes 0-based decoder block indices (block k produces layer k+1 under the
layer convention); masks are keyed by parameter name (``model.layers.3.mlp.down_proj.weight``) and stored in the
parameter's own layout (GPT-2 ``Conv1D``: ``[in, out]``).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn

from traitlab.errors import ArtifactError, ConfigError
from traitlab.interventions import Coef, Intervention, kwargs_from_meta
from traitlab.methods.subnet_masks import pack_bits, popcount, unpack_bits
from traitlab.model import LoadedModel
from traitlab.validate import atomic_folder, finite, finite_tensors, output_folder, shielded

BLOCK_CONVENTION = "0-based decoder block index; block k produces layer k+1"
MASK_LAYOUT = "parameter layout (nn.Linear [out, in]; GPT-2 Conv1D [in, out]); bit 1 = kept; packbits big-endian"


# ---------------------------------------------------------------------------------------------- the intervention


_INT_VIEWS = {1: torch.uint8, 2: torch.int16, 4: torch.int32, 8: torch.int64}


def _bits(data: torch.Tensor) -> Any:
    """A flat integer view sharing ``data``'s memory (numpy on CPU, torch elsewhere): removed values move as raw
    bits, so restoring is bit-exact for every dtype (bfloat16 included) and zero is the all-zero pattern."""
    flat = data.view(_INT_VIEWS[data.element_size()]).reshape(-1)
    return flat.numpy() if flat.device.type == "cpu" else flat


def _removed_index(mask: SubnetworkMask, name: str, device: torch.device) -> Any:
    """Flat positions of the masked-out entries, recomputed from the packed bits whenever needed (never stored)."""
    if device.type == "cpu":
        import numpy as np

        kept = np.unpackbits(mask.packed[name].numpy(), count=torch.Size(mask.shapes[name]).numel())
        return np.flatnonzero(kept == 0)
    return (~mask.mask(name, device)).reshape(-1).nonzero().squeeze(1)


class AppliedMask:
    """A mask applied in place, keeping only the removed values (raw bits, row-major; their positions come from
    the mask itself); ``restore()`` writes them back. On CPU the moves run in numpy (single-threaded, fast for the
    scattered gathers involved); on accelerators in torch."""

    def __init__(self, mask: SubnetworkMask, lm: LoadedModel, coef: float) -> None:
        self.mask, self.lm, self.coef = mask, lm, float(coef)
        self._removed: list[tuple[str, nn.Parameter, torch.Tensor]] = []
        parameters = dict(lm.model.named_parameters())
        mask.check_parameters(parameters)
        noncontiguous = [n for n in mask.shapes if not parameters[n].data.is_contiguous()]
        if noncontiguous:
            raise ArtifactError(f"cannot mask non-contiguous parameters in place: {', '.join(noncontiguous[:3])}")
        if self.coef == 0:
            return
        try:
            with torch.no_grad():
                for name in mask.shapes:
                    data = parameters[name].data
                    index = _removed_index(mask, name, data.device)
                    bits = _bits(data)
                    values = torch.as_tensor(bits[index])
                    self._removed.append((name, parameters[name], values))
                    if self.coef == 1.0:
                        bits[index] = 0
                    else:
                        shrunk = (values.view(data.dtype).float() * (1.0 - self.coef)).to(data.dtype)
                        raw = shrunk.view(values.dtype)
                        bits[index] = raw.numpy() if data.device.type == "cpu" else raw
        except BaseException:
            self.restore()
            raise

    @property
    def removed_bytes(self) -> int:
        return sum(v.numel() * v.element_size() for _, _, v in self._removed)

    def restore(self) -> None:
        """Write the removed values back (bit-exact); idempotent."""
        with torch.no_grad():
            while self._removed:
                name, parameter, values = self._removed.pop()
                data = parameter.data
                bits = _bits(data)
                bits[_removed_index(self.mask, name, data.device)] = (
                    values.numpy() if data.device.type == "cpu" else values)


class SubnetworkMask(Intervention):
    """A persona subnetwork: per-Linear keep-masks, bit-packed. See the module docstring for scale semantics."""

    mechanism = "subnetwork"
    weight_space = True

    def __init__(self, packed: Mapping[str, torch.Tensor], shapes: Mapping[str, Sequence[int]],
                 info: Mapping[str, Any] | None = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        if not packed:
            raise ConfigError("a subnetwork mask needs at least one parameter")
        if set(packed) != set(shapes):
            raise ArtifactError("subnetwork mask tensors and shapes name different parameters")
        self.shapes = {name: tuple(int(x) for x in shapes[name]) for name in shapes}
        self.packed = {name: packed[name].to(torch.uint8).reshape(-1).cpu() for name in self.shapes}
        for name, shape in self.shapes.items():
            numel = 1
            for dim in shape:
                numel *= dim
            if self.packed[name].numel() != (numel + 7) // 8:
                raise ArtifactError(f"packed mask of {name} has {self.packed[name].numel()} bytes, its shape "
                                    f"{shape} needs {(numel + 7) // 8}")
        self.info = dict(info or {})

    @classmethod
    def from_masks(cls, masks: Mapping[str, torch.Tensor], info: Mapping[str, Any] | None = None,
                   **kwargs: Any) -> SubnetworkMask:
        """From bool keep-masks (parameter layout) keyed by parameter name."""
        return cls({n: pack_bits(m.cpu()) for n, m in masks.items()}, {n: tuple(m.shape) for n, m in masks.items()},
                   info, **kwargs)

    def mask(self, name: str, device: torch.device | str | None = None) -> torch.Tensor:
        """The bool keep-mask of parameter ``name`` (True = kept), unpacked."""
        return unpack_bits(self.packed[name].to(device) if device is not None else self.packed[name],
                           self.shapes[name])

    def kept(self, name: str) -> int:
        return popcount(self.packed[name])

    @property
    def numel(self) -> int:
        return sum(torch.Size(s).numel() for s in self.shapes.values())

    @property
    def sparsity(self) -> float:
        """Fraction of the covered weights that the mask removes."""
        return 1.0 - sum(self.kept(n) for n in self.shapes) / max(1, self.numel)

    def check_parameters(self, parameters: Mapping[str, nn.Parameter]) -> None:
        missing = [n for n in self.shapes if n not in parameters]
        if missing:
            raise ArtifactError(f"{self.name} masks parameters this model lacks: {', '.join(missing[:3])}")
        wrong = [f"{n} {tuple(parameters[n].shape)} != {s}" for n, s in self.shapes.items()
                 if tuple(parameters[n].shape) != s]
        if wrong:
            raise ArtifactError(f"{self.name} has masks of another shape: {'; '.join(wrong[:3])}")

    @contextlib.contextmanager
    def _apply(self, lm: LoadedModel, coef: Coef) -> Iterator[None]:
        if isinstance(coef, torch.Tensor):
            raise ConfigError(f"{self.name} edits weights and cannot take per-row scales")
        applied = AppliedMask(self, lm, float(coef))
        try:
            yield
        finally:
            shielded(applied.restore)  # a second Ctrl-C must not leave weights half-restored

    def tensors(self) -> dict[str, torch.Tensor]:
        return {f"mask/{name}": packed for name, packed in self.packed.items()}

    def params(self) -> dict[str, Any]:
        return {"shapes": {n: list(s) for n, s in self.shapes.items()}, "layout": MASK_LAYOUT,
                "block_convention": BLOCK_CONVENTION, **self.info}

    @classmethod
    def from_artifact(cls, meta: dict[str, Any], tensors: dict[str, torch.Tensor]) -> Intervention:
        params = dict(meta["params"])
        shapes = params.pop("shapes")
        for key in ("layout", "block_convention"):
            params.pop(key, None)
        packed = {name[len("mask/"):]: t for name, t in tensors.items() if name.startswith("mask/")}
        return cls(packed, shapes, params, **kwargs_from_meta(meta))


class SubnetworkSet:
    """Several personas' masks on one live model, switched by swapping masks without reloading. Use it as a
    context manager: on exit the model is restored bit-exactly.

    ``mode='copy'`` (default, fastest): keeps one copy of the original weights of the masked Linears (1× their
    size, however many personas) and switches with one pass per parameter, ``w = w_orig · keep`` on the raw bits.
    ``mode='values'`` (memory-frugal): keeps only the active persona's removed values (``sparsity``× the masked
    weights) and switches by restoring them and applying the next mask, as ``SubnetworkMask.applied`` does.

    >>> with SubnetworkSet(lm, {"introvert": low, "extravert": high}) as personas:  # doctest: +SKIP
    ...     personas.use("introvert"); personas.use("extravert"); personas.use(None)
    """

    def __init__(self, lm: LoadedModel, masks: Mapping[str, SubnetworkMask], mode: str = "copy") -> None:
        if mode not in ("copy", "values"):
            raise ConfigError(f"SubnetworkSet mode must be copy or values, got '{mode}'")
        self.lm, self.mode = lm, mode
        self.masks = dict(masks)
        self._parameters = dict(lm.model.named_parameters())
        for mask in self.masks.values():
            mask.check_model(lm)
            mask.check_parameters(self._parameters)
        self.active: str | None = None
        self._applied: AppliedMask | None = None
        self._originals: dict[str, torch.Tensor] = {}
        self._modified: set[str] = set()
        self._closed = False
        if mode == "copy":
            names = dict.fromkeys(n for mask in self.masks.values() for n in mask.shapes)
            self._originals = {n: self._parameters[n].data.clone() for n in names}

    def use(self, name: str | None, scale: float | None = None) -> None:
        """Make persona ``name`` active (``None``: the full model); ``scale`` overrides the mask's own."""
        if name is not None and name not in self.masks:
            raise ConfigError(f"unknown persona '{name}'; have {', '.join(self.masks)}")
        if self._closed and name is not None:
            raise ConfigError("this SubnetworkSet is closed; make a new one")
        if self.mode == "values":
            if self._applied is not None:
                self._applied.restore()
                self._applied, self.active = None, None
            if name is not None:
                mask = self.masks[name]
                self._applied = AppliedMask(mask, self.lm, mask.scale if scale is None else scale)
                self.active = name
            return
        self.active = None
        mask = self.masks[name] if name is not None else None
        coef = 0.0 if mask is None else float(mask.scale if scale is None else scale)
        targets = set(mask.shapes) if mask is not None and coef != 0 else set()
        with torch.no_grad():
            for parameter_name in self._modified - targets:
                self._parameters[parameter_name].data.copy_(self._originals[parameter_name])
            self._modified -= self._modified - targets
            for parameter_name in targets:
                self._modified.add(parameter_name)
                self._masked_copy(mask, parameter_name, coef)  # type: ignore[arg-type]
        self.active = name

    def _masked_copy(self, mask: SubnetworkMask, name: str, coef: float) -> None:
        data, original = self._parameters[name].data, self._originals[name]
        if coef != 1.0:
            data.copy_(original)
            removed = ~mask.mask(name, data.device)
            data[removed] = (original[removed].float() * (1.0 - coef)).to(data.dtype)
            return
        if data.device.type == "cpu":
            import numpy as np

            kept = np.unpackbits(mask.packed[name].numpy(), count=data.numel())
            np.multiply(_bits(original), kept, out=_bits(data))
        else:
            torch.mul(_bits(original), mask.mask(name, data.device).reshape(-1), out=_bits(data))

    def close(self) -> None:
        """Restore the full model and drop the copies."""
        self.use(None)
        self._originals = {}
        self._closed = True

    def __enter__(self) -> SubnetworkSet:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def export_checkpoint(lm: LoadedModel, mask: Intervention, out: str | Path) -> Path:
    """Write a plain HF checkpoint (config, safetensors weights, tokenizer) of ``lm`` with ``mask`` applied.
    transformers' "Writing model shards" progress bar and save-time warnings are silenced (``library_quiet``)."""
    from traitlab.model.quiet import library_quiet

    target = output_folder(out, "export folder")
    finite(mask.scale, f"scale of {mask.name}")
    mask.check_model(lm)
    with atomic_folder(target) as partial, mask.applied(lm):  # a failure or Ctrl-C leaves nothing behind
        finite_tensors(dict(lm.model.state_dict()), f"refusing to export {target}")
        with library_quiet():
            lm.model.save_pretrained(partial)
            lm.tokenizer.save_pretrained(partial)
    return target
