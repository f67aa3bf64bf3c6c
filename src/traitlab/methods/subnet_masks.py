"""Mask arithmetic of persona subnetworks (Ye et al. 2026, arXiv 2602.07164): scores, per-row selection,
disjointness, bit-packing and overlap counts. Pure tensor code, no model access.

Orientation: scores and selection work on ``[out, in]`` matrices (one row per output unit, as ``nn.Linear``
stores its weight). GPT-2's ``Conv1D`` stores ``[in, out]``; ``rows_view`` / ``to_parameter_layout`` convert.
Stored masks are in the parameter's own layout, so applying one is ``weight[~mask]``.

- Wanda score (Sun et al. 2023): ``S_ij = |W_ij| · ‖X_j‖₂``; keep the top ``(1 − sparsity)`` of each row.
- Contrastive score for a pair (seek, reject):
  ``z_j = (μ_seek,j − μ_reject,j) / sqrt(σ²_seek,j + σ²_reject,j + ε)`` and ``S_ij = |W_ij| · ReLU(z_j)``;
  keeping the top ``(1 − sparsity)`` of each row removes weights on channels the rejected persona drives.
  Many scores are exactly 0 (every channel with z ≤ 0: about half of them), so the choice *among* them needs a
  tie-break: traitlab removes the smallest weights among the zero scores first (ranks them by ``|W_ij|``, below
  every positive score), so the kept set is always a valid top-k of ``|W|·ReLU(z)`` and, among the ties, pruning
  is magnitude pruning. (An earlier tie-break by the signed ``|W_ij|·z_j`` — also a valid top-k — removed the
  *largest* weights on those channels first and broke SmolLM2-135M at sparsity 0.3: neutral perplexity 1e5–9e6;
  see docs/subnetworks.md.)
- Per row exactly ``floor(in · sparsity)`` weights are removed (``prune_count``), selected with one ``topk`` per
  matrix (no loop over rows); ``topk`` is deterministic on a given device, ties are broken arbitrarily.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch

from traitlab.errors import ConfigError

_SHIFTS = torch.tensor([7, 6, 5, 4, 3, 2, 1, 0], dtype=torch.uint8)
POPCOUNT = torch.tensor([bin(i).count("1") for i in range(256)], dtype=torch.int64)
DISJOINT = ("none", "kept", "removed")


def check_sparsity(sparsity: float, what: str = "sparsity") -> float:
    if isinstance(sparsity, bool) or not isinstance(sparsity, int | float) or not 0 <= sparsity < 1:
        raise ConfigError(f"{what} must be a number in [0, 1), got {sparsity!r}")
    return float(sparsity)


def prune_count(n_in: int, sparsity: float) -> int:
    """Weights removed per output row: ``floor(n_in · sparsity)`` (robust to float noise such as 0.29·100)."""
    return min(n_in, math.floor(n_in * sparsity + 1e-9))


def rows_view(weight: torch.Tensor, conv1d: bool) -> torch.Tensor:
    """The ``[out, in]`` view of a Linear's weight (``Conv1D`` stores ``[in, out]``)."""
    return weight.t() if conv1d else weight


def to_parameter_layout(mask_rows: torch.Tensor, conv1d: bool) -> torch.Tensor:
    return mask_rows.t().contiguous() if conv1d else mask_rows


def wanda_scores(weight_rows: torch.Tensor, norm: torch.Tensor) -> torch.Tensor:
    """``S_ij = |W_ij| · ‖X_j‖₂`` (float32, ``[out, in]``)."""
    return weight_rows.detach().abs().float() * norm.to(weight_rows.device, torch.float32).unsqueeze(0)


def contrastive_z(mean_seek: torch.Tensor, var_seek: torch.Tensor, mean_reject: torch.Tensor,
                  var_reject: torch.Tensor, eps: float = 1e-6) -> torch.Tensor:
    """``z_j = (μ_seek − μ_reject) / sqrt(σ²_seek + σ²_reject + ε)`` per input channel (float64)."""
    mean_seek, var_seek, mean_reject, var_reject = (t.double() for t in (mean_seek, var_seek, mean_reject,
                                                                           var_reject))
    return (mean_seek - mean_reject) / (var_seek + var_reject + eps).sqrt()


def contrastive_scores(weight_rows: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
    """The keep ranking of ``S_ij = |W_ij| · ReLU(z_j)`` with ties among the zero scores broken by magnitude.

    Positive scores are ``|W_ij|·z_j``; a zero score gets ``−1/(|W_ij| + 1e-12)`` (negative, larger for larger
    weights), so every positive score ranks above every zero score and, among the zeros, the smallest weights are
    removed first. Its top-k is therefore a top-k of ``|W|·ReLU(z)`` (see the module doc). Float32, ``[out, in]``.
    """
    magnitude = weight_rows.detach().abs().float()
    score = magnitude * z.to(weight_rows.device, torch.float32).unsqueeze(0)
    return torch.where(score > 0, score, -1.0 / (magnitude + 1e-12))


def keep_mask(scores: torch.Tensor, sparsity: float, exclude: torch.Tensor | None = None,
              exclude_mode: str = "kept") -> torch.Tensor:
    """Boolean ``[out, in]`` mask keeping the highest-scoring ``in − floor(in·sparsity)`` entries of each row.

    ``exclude`` (bool, same shape) with ``exclude_mode='kept'``: those entries may not be kept (for masks whose
    kept sets must be disjoint); with ``'removed'``: those entries may not be removed (disjoint removed sets).
    Vectorised: one ``topk`` per matrix, no loop over rows.
    """
    n_out, n_in = scores.shape
    n_prune = prune_count(n_in, sparsity)
    mask = torch.ones(n_out, n_in, dtype=torch.bool, device=scores.device)
    if n_prune == 0:
        if exclude is not None and exclude_mode == "kept" and bool(exclude.any()):
            raise ConfigError("disjoint kept sets need a sparsity of at least 0.5 on both masks")
        return mask
    ranked = scores.float()
    if exclude is not None:
        if exclude_mode == "kept":
            free = n_in - exclude.sum(1)
            if bool((free < n_in - n_prune).any()):
                raise ConfigError(f"cannot keep {n_in - n_prune} of {n_in} weights per row outside the other "
                                  "mask: disjoint kept sets need sparsity ≥ 1 − the other mask's keep fraction")
            ranked = ranked.masked_fill(exclude, float("-inf"))
        elif exclude_mode == "removed":
            allowed = n_in - exclude.sum(1)
            if bool((allowed < n_prune).any()):
                raise ConfigError(f"cannot remove {n_prune} of {n_in} weights per row outside the other mask's "
                                  "removed set: lower the sparsity")
            ranked = ranked.masked_fill(exclude, float("inf"))
        else:
            raise ConfigError(f"unknown disjoint mode '{exclude_mode}'; use kept or removed")
    if n_prune <= n_in - n_prune:
        mask.scatter_(1, ranked.topk(n_prune, dim=1, largest=False, sorted=False).indices, False)
        return mask
    kept = torch.zeros_like(mask)
    kept.scatter_(1, ranked.topk(n_in - n_prune, dim=1, largest=True, sorted=False).indices, True)
    return kept


# ------------------------------------------------------------------------------------------------ bit-packing


def pack_bits(mask: torch.Tensor) -> torch.Tensor:
    """Flatten a bool mask (row-major) and pack 8 entries per byte, most significant bit first
    (``numpy.packbits`` order); the last byte is zero-padded. Returns a CPU ``uint8`` tensor."""
    import numpy as np

    flat = mask.detach().reshape(-1).to("cpu", torch.bool).numpy()
    return torch.from_numpy(np.packbits(flat))


def unpack_bits(packed: torch.Tensor, shape: Sequence[int], device: torch.device | str | None = None) -> torch.Tensor:
    """Inverse of ``pack_bits``: a bool tensor of ``shape`` on ``device`` (default the packed tensor's). CPU
    tensors unpack with numpy; tensors on an accelerator unpack there with bit shifts."""
    numel = math.prod(shape)
    if packed.numel() != (numel + 7) // 8:
        raise ConfigError(f"packed mask has {packed.numel()} bytes; shape {tuple(shape)} needs {(numel + 7) // 8}")
    target = torch.device(device) if device is not None else packed.device
    if target.type == "cpu":
        import numpy as np

        bits = np.unpackbits(packed.detach().to("cpu", torch.uint8).reshape(-1).numpy(), count=numel)
        return torch.from_numpy(bits.view(np.bool_)).reshape(tuple(shape))
    return _unpack_with_shifts(packed.to(target, torch.uint8).reshape(-1), numel).reshape(tuple(shape))


def _unpack_with_shifts(data: torch.Tensor, numel: int) -> torch.Tensor:
    bits = (data.unsqueeze(-1) >> _SHIFTS.to(data.device)) & 1
    return bits.reshape(-1)[:numel].bool()


def popcount(packed: torch.Tensor) -> int:
    """Number of set bits (kept weights) of a packed mask; padding bits are zero."""
    return int(POPCOUNT.to(packed.device)[packed.long()].sum())


def overlap_counts(a: torch.Tensor, b: torch.Tensor, numel: int) -> dict[str, int]:
    """Kept/removed intersection and union sizes of two packed masks of ``numel`` weights, straight from the
    bytes (no unpacking)."""
    both = popcount(a & b)
    either = popcount(a | b)
    return {"kept_both": both, "kept_either": either, "removed_both": numel - either,
            "removed_either": numel - both, "numel": numel}


def jaccard(inter: int, union: int) -> float:
    return inter / union if union else 1.0
