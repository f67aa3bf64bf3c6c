"""Mask arithmetic: Wanda scores against brute force, exact per-row keep counts, contrastive z on a hand-made case,
disjointness, bit-packing and overlap counts."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from tests.conftest import cached_tiny
from traitlab.errors import ConfigError
from traitlab.methods.subnet_fit import contrastive_masks, wanda_masks
from traitlab.methods.subnet_masks import (
    _unpack_with_shifts,
    contrastive_scores,
    contrastive_z,
    keep_mask,
    overlap_counts,
    pack_bits,
    popcount,
    prune_count,
    unpack_bits,
    wanda_scores,
)
from traitlab.model import LinearInputStats, linear_modules
from traitlab.model.family import is_conv1d


def _random_stats(lm, seed=0, shift=0.0):
    generator = torch.Generator().manual_seed(seed)
    stats = {}
    for name, module in linear_modules(lm).items():
        width = module.weight.shape[0] if is_conv1d(module) else module.weight.shape[1]
        x = torch.randn(50, width, generator=generator, dtype=torch.float64) + shift * torch.linspace(-1, 1, width,
                                                                                                      dtype=torch.float64)
        stats[name] = LinearInputStats(x.sum(0), x.square().sum(0), 50)
    return stats


def test_wanda_scores_match_brute_force():
    generator = torch.Generator().manual_seed(1)
    weight, norm = torch.randn(5, 7, generator=generator), torch.rand(7, generator=generator, dtype=torch.float64)
    scores = wanda_scores(weight, norm)
    for i in range(5):
        for j in range(7):
            assert math.isclose(float(scores[i, j]), abs(float(weight[i, j])) * float(norm[j]), rel_tol=1e-6)


@pytest.mark.parametrize("family", ["llama", "gpt2"])
@pytest.mark.parametrize("sparsity", [0.1, 0.5])
def test_wanda_masks_are_the_per_row_top_k_of_brute_force_scores(family, sparsity):
    lm = cached_tiny(family)
    stats = _random_stats(lm)
    masks = wanda_masks(lm, stats, sparsity)
    modules = linear_modules(lm)
    assert set(masks) == {f"{name}.weight" for name in modules}
    for name, module in modules.items():
        weight = module.weight.detach()
        rows = weight.t() if is_conv1d(module) else weight          # [out, in]
        mask = masks[f"{name}.weight"]
        assert mask.shape == weight.shape                           # stored in the parameter's layout
        mask_rows = mask.t() if is_conv1d(module) else mask
        norm = stats[name].sum_sq.sqrt()
        n_in = rows.shape[1]
        keep = n_in - math.floor(n_in * sparsity)
        for i in range(rows.shape[0]):
            brute = sorted(range(n_in), key=lambda j, i=i: -abs(float(rows[i, j])) * float(norm[j]))[:keep]
            assert set(torch.nonzero(mask_rows[i]).flatten().tolist()) == set(brute)


@pytest.mark.parametrize("n_in", [1, 7, 64, 100, 129])
@pytest.mark.parametrize("sparsity", [0.0, 0.1, 0.29, 0.3, 0.5, 0.7, 0.99])
def test_per_row_keep_counts_are_exact(n_in, sparsity):
    scores = torch.rand(13, n_in, generator=torch.Generator().manual_seed(n_in))
    mask = keep_mask(scores, sparsity)
    expected = n_in - math.floor(n_in * sparsity + 1e-9)
    assert prune_count(n_in, sparsity) == n_in - expected
    assert mask.sum(1).tolist() == [expected] * 13
    assert prune_count(100, 0.29) == 29  # not 28 from 100 * 0.29 = 28.999...


def test_keep_counts_hold_with_ties():
    scores = torch.zeros(4, 10)
    scores[:, :3] = 1.0
    mask = keep_mask(scores, 0.5)
    assert mask.sum(1).tolist() == [5] * 4
    assert bool(mask[:, :3].all())


def test_contrastive_z_on_a_hand_made_case():
    mean_seek = torch.tensor([1.0, 0.0, 2.0, -1.0])
    var_seek = torch.tensor([1.0, 0.5, 0.0, 2.0])
    mean_reject = torch.tensor([0.0, 1.0, 2.0, 1.0])
    var_reject = torch.tensor([3.0, 0.5, 0.0, 2.0])
    z = contrastive_z(mean_seek, var_seek, mean_reject, var_reject, eps=1e-6)
    expected = [1 / math.sqrt(4 + 1e-6), -1 / math.sqrt(1 + 1e-6), 0.0, -2 / math.sqrt(4 + 1e-6)]
    assert z.dtype == torch.float64
    assert z.tolist() == pytest.approx(expected, abs=1e-12)
    # |W|·ReLU(z): channel 0 is the only one the seek persona drives more; with 50% sparsity each row keeps 2:
    # channel 0 and, among the zero scores (channels 1-3), the largest weight (the smallest ones go first).
    weight = torch.tensor([[1.0, 2.0, 3.0, 4.0], [0.5, 0.3, 0.1, 0.2]])
    mask = keep_mask(contrastive_scores(weight, z), 0.5)
    assert mask.tolist() == [[True, False, False, True], [True, True, False, False]]
    relu = weight.abs() * z.float().clamp(min=0)
    for row in range(2):  # the kept set is a valid top-k of the ReLU score
        kept_min = relu[row][mask[row]].min()
        removed_max = relu[row][~mask[row]].max()
        assert kept_min >= removed_max
    # every positive score outranks every zero score, however small: at 75% only channel 0 stays
    mask75 = keep_mask(contrastive_scores(weight * torch.tensor([1e-6, 1.0, 1.0, 1.0]), z), 0.75)
    assert mask75.tolist() == [[True, False, False, False], [True, False, False, False]]
    # a weight of exactly 0 ranks below every other zero score (and stays finite for topk)
    zeros = contrastive_scores(torch.tensor([[0.0, 1e-8, 2.0]]), torch.tensor([-1.0, -1.0, -1.0]))
    assert bool(torch.isfinite(zeros).all()) and zeros.argsort().tolist() == [[0, 1, 2]]


def test_contrastive_masks_direction_and_disjointness():
    lm = cached_tiny("llama")
    seek, reject = _random_stats(lm, 1, shift=1.0), _random_stats(lm, 2, shift=-1.0)
    first, second = contrastive_masks(lm, seek, reject, 0.3, pair=True)
    flipped, _ = contrastive_masks(lm, reject, seek, 0.3)
    reverse, _ = contrastive_masks(lm, seek, reject, 0.3, direction="reject")
    for name in first:
        assert torch.equal(second[name], reverse[name])
        assert torch.equal(flipped[name], reverse[name])
    kept_a, kept_b = contrastive_masks(lm, seek, reject, 0.5, pair=True, disjoint="kept")
    for name in kept_a:
        assert not bool((kept_a[name] & kept_b[name]).any())
        assert kept_b[name].sum() == kept_a[name].sum()
    rem_a, rem_b = contrastive_masks(lm, seek, reject, 0.3, pair=True, disjoint="removed")
    for name in rem_a:
        assert not bool((~rem_a[name] & ~rem_b[name]).any())
    with pytest.raises(ConfigError, match="disjoint kept sets"):
        contrastive_masks(lm, seek, reject, 0.3, pair=True, disjoint="kept")
    with pytest.raises(ConfigError, match="direction"):
        contrastive_masks(lm, seek, reject, 0.3, direction="sideways")


def test_bad_sparsity_is_a_config_error():
    lm = cached_tiny("llama")
    for bad in (1.0, -0.1, "half", True):
        with pytest.raises(ConfigError, match="sparsity"):
            wanda_masks(lm, _random_stats(lm), bad)


@pytest.mark.parametrize("shape", [(1,), (3, 5), (8, 8), (37, 29)])
def test_bit_packing_round_trips_in_numpy_order(shape):
    mask = torch.rand(shape, generator=torch.Generator().manual_seed(3)) > 0.4
    packed = pack_bits(mask)
    assert packed.dtype == torch.uint8 and packed.numel() == (mask.numel() + 7) // 8
    assert np.array_equal(packed.numpy(), np.packbits(mask.numpy().reshape(-1)))
    assert torch.equal(unpack_bits(packed, shape), mask)
    assert torch.equal(_unpack_with_shifts(packed, mask.numel()).reshape(shape), mask)  # accelerator path
    assert popcount(packed) == int(mask.sum())
    with pytest.raises(ConfigError, match="bytes"):
        unpack_bits(packed, (mask.numel() + 9,))


def test_overlap_counts_match_brute_force():
    generator = torch.Generator().manual_seed(4)
    a, b = torch.rand(11, 13, generator=generator) > 0.5, torch.rand(11, 13, generator=generator) > 0.3
    counts = overlap_counts(pack_bits(a), pack_bits(b), a.numel())
    assert counts["kept_both"] == int((a & b).sum()) and counts["kept_either"] == int((a | b).sum())
    assert counts["removed_both"] == int((~a & ~b).sum()) and counts["removed_either"] == int((~a | ~b).sum())
