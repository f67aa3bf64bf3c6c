"""Merging of task/personality vectors, one tensor at a time (Ilharco et al. 2023; TIES, Yadav et al. 2023;
DARE, Yu et al. 2024; personality vectors, arXiv 2509.19727).

For a tensor with deltas δ_i (φ_i = θ_i − θ_base), weights w_i (the α of each vector) and densities d_i:

- ``task_arithmetic``: Δ = Σ w_i δ_i.
- ``ties``: δ_i ← top-d_i fraction of δ_i by |δ| (per tensor); τ_i = w_i δ_i; elected sign s = sign(Σ τ_i)
  (≥ 0 counts as +); m_i = [sign(τ_i) = s]; Δ = Σ τ_i m_i / Σ w_i m_i (the divisor only when ``normalize``;
  0 → 1).
- ``dare_linear``: δ_i ← δ_i ⊙ b_i with b_i ~ Bernoulli(d_i) (seeded per tensor and vector), rescaled; Δ = Σ w_i δ_i.
- ``dare_ties``: the DARE drop, then the TIES sign election and divisor.

Then θ = θ_base + λ·Δ. These are mergekit's semantics (sign election on weighted deltas, divisor Σ w·m, the
same per-method ``normalize`` defaults) with one documented difference: DARE rescales by 1/d_i as the paper
does (``rescale="inverse"``, default); mergekit matches the L1 norm of the kept values to the original's
(``rescale="l1"``), which agrees in expectation. With ``rescale="l1"`` and the same drop masks traitlab equals
mergekit to float precision (tested).
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from typing import Literal

import torch

from traitlab.errors import ConfigError

Method = Literal["task_arithmetic", "ties", "dare_linear", "dare_ties"]
METHODS: tuple[str, ...] = ("task_arithmetic", "ties", "dare_linear", "dare_ties")
NORMALIZE_DEFAULT = {"task_arithmetic": False, "ties": True, "dare_linear": False, "dare_ties": False}
Rescale = Literal["inverse", "l1", "none"]


def magnitude_mask(delta: torch.Tensor, density: float) -> torch.Tensor:
    """Keep the top k = max(1, ⌊density·n⌋) entries by magnitude (TIES's trim, Yadav et al. 2023).

    Entries of equal magnitude at the cut are chosen exactly as mergekit's ``sparsify.magnitude`` chooses them
    (the first k of ``argsort(|δ|, descending=True)``): finetuned deltas of bfloat16 weights hold many exact
    ties, and ``topk`` breaks them differently, which made TIES differ from mergekit on real checkpoints. For
    deltas with full float32 mantissas (e.g. a LoRA's B·A) where no tie straddles the cut, the kept set is
    {|δ| ≥ k-th largest}, found by a selection instead of the full sort; bfloat16-valued deltas go straight to
    the sort."""
    if density >= 1:
        return torch.ones_like(delta, dtype=torch.bool)
    flat = delta.abs().reshape(-1).float()
    keep = torch.zeros(flat.numel(), dtype=torch.bool)
    if density > 0 and flat.numel():
        k = max(1, int(density * flat.numel()))
        if bool((flat.view(torch.int32) & 0xFFFF).any()):  # full float32 mantissas: ties are rare
            cut = flat.kthvalue(flat.numel() - k + 1).values  # the k-th largest magnitude, in O(n)
            above = flat >= cut
            if int(above.sum()) == k:  # no tie straddles the cut: any sort's first k are this set
                return above.reshape(delta.shape)
        keep[torch.argsort(flat, descending=True)[:k]] = True
    return keep.reshape(delta.shape)


def drop_seed(seed: int, name: str, index: int) -> int:
    """Seed of the DARE drop mask of vector ``index`` at tensor ``name``: stable across runs and orderings."""
    return int.from_bytes(hashlib.sha256(f"{seed}:{name}:{index}".encode()).digest()[:8], "little") & (2**63 - 1)


def dare_mask(shape: torch.Size, density: float, seed: int, name: str, index: int) -> torch.Tensor:
    """Bernoulli(density) keep-mask, seeded per (seed, tensor name, vector index)."""
    if density >= 1:
        return torch.ones(shape, dtype=torch.bool)
    generator = torch.Generator().manual_seed(drop_seed(seed, name, index))
    return torch.rand(shape, generator=generator) < density


def rescaled(delta: torch.Tensor, keep: torch.Tensor, density: float, rescale: Rescale) -> torch.Tensor:
    kept = delta * keep
    if rescale == "inverse" and 0 < density < 1:
        return kept / density
    if rescale == "l1":
        before, after = delta.abs().sum(), kept.abs().sum()
        if before >= 1e-7 and after >= 1e-7:
            return kept * (before / after)
    return kept


def merge_deltas(deltas: Sequence[torch.Tensor], weights: Sequence[float], densities: Sequence[float],
                 method: Method, name: str = "", seed: int = 0, normalize: bool | None = None,
                 rescale: Rescale = "inverse", lambda_: float = 1.0) -> torch.Tensor:
    """The merged delta λ·Δ of one tensor (float32), per the module docstring."""
    if method not in METHODS:
        raise ConfigError(f"unknown merge method '{method}'; use one of {', '.join(METHODS)}")
    if not deltas:
        raise ConfigError("merging needs at least one vector")
    normalize = NORMALIZE_DEFAULT[method] if normalize is None else normalize
    prepared = []
    for index, (delta, density) in enumerate(zip(deltas, densities, strict=True)):
        delta = delta.float()
        if method == "ties":
            delta = delta * magnitude_mask(delta, density)
        elif method in ("dare_linear", "dare_ties"):
            delta = rescaled(delta, dare_mask(delta.shape, density, seed, name, index), density, rescale)
        prepared.append(delta)
    stacked = torch.stack(prepared)
    w = torch.tensor(list(weights), dtype=torch.float32).reshape(-1, *([1] * (stacked.dim() - 1)))
    stacked.mul_(w)
    if method in ("ties", "dare_ties"):
        elected = torch.where(stacked.sum(0) >= 0, 1.0, -1.0)
        mask = (stacked.sign() == elected).float()
        mixed = (stacked * mask).sum(0)
        divisor = (w * mask).sum(0)
        divisor[divisor == 0] = 1
    else:
        mixed = stacked.sum(0)
        divisor = w.sum(0).expand_as(mixed).clone()
        divisor[divisor.abs() < 1e-8] = 1
    if normalize:
        mixed = mixed / divisor
    return mixed * lambda_ if lambda_ != 1 else mixed
