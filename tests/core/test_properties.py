"""Property tests (hypothesis) for the arithmetic issue 26 leans on: a weight edit restores bit-exactly on exit,
also when the block raises and when a Ctrl-C arrives during the restore; finite merge inputs give finite merged
deltas, task arithmetic is λ·Σ wᵢΔᵢ, and a single vector at weight 1 merges to itself under every method with
density 1; non-finite scales never get past ``finite``."""

from __future__ import annotations

import math
import os
import signal

import pytest
import torch

hypothesis = pytest.importorskip("hypothesis")
from hypothesis import given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

from traitlab.errors import ConfigError  # noqa: E402
from traitlab.methods.merge_math import merge_deltas  # noqa: E402
from traitlab.methods.weights import WeightDelta  # noqa: E402
from traitlab.model.tiny import tiny_model  # noqa: E402
from traitlab.validate import finite, shielded  # noqa: E402

LM = tiny_model("llama")
NAME = "model.layers.0.mlp.down_proj.weight"
WEIGHT = dict(LM.model.named_parameters())[NAME]
SCALES = st.floats(min_value=-1e3, max_value=1e3, allow_nan=False, allow_infinity=False)
FAST = settings(max_examples=40, deadline=None)


@FAST
@given(scale=SCALES, seed=st.integers(0, 2**31 - 1), raise_inside=st.booleans())
def test_weight_edits_restore_bit_exactly(scale, seed, raise_inside):
    before = WEIGHT.detach().clone()
    delta = torch.randn(WEIGHT.shape, generator=torch.Generator().manual_seed(seed))
    edit = WeightDelta({NAME: delta}).scaled(scale)
    try:
        with edit.applied(LM):
            if raise_inside:
                raise RuntimeError("boom")
    except RuntimeError:
        pass
    assert torch.equal(WEIGHT.detach(), before)


def test_a_ctrl_c_during_the_restore_still_restores():
    params = dict(LM.model.named_parameters())
    names = [NAME, "model.layers.1.mlp.down_proj.weight", "model.layers.1.mlp.up_proj.weight"]
    before = {n: params[n].detach().clone() for n in names}
    edit = WeightDelta({n: torch.ones_like(params[n]) for n in names})
    original = torch.Tensor.copy_
    calls = {"n": 0}

    def interrupting_copy(self, src, *args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 1:
            os.kill(os.getpid(), signal.SIGINT)  # a second Ctrl-C arriving mid-restore
        return original(self, src, *args, **kwargs)

    with pytest.raises(KeyboardInterrupt), edit.applied(LM):
        torch.Tensor.copy_ = interrupting_copy  # type: ignore[method-assign]
        try:
            raise KeyboardInterrupt
        finally:
            pass
    torch.Tensor.copy_ = original  # type: ignore[method-assign]
    assert all(torch.equal(params[n].detach(), before[n]) for n in names)
    assert shielded(lambda: 3) == 3


VALUES = st.lists(st.floats(-1e3, 1e3, allow_nan=False, allow_infinity=False), min_size=6, max_size=6)


@FAST
@given(a=VALUES, b=VALUES, wa=st.floats(-4, 4), wb=st.floats(-4, 4), lam=st.floats(-4, 4))
def test_task_arithmetic_is_a_weighted_sum(a, b, wa, wb, lam):
    da, db = torch.tensor(a), torch.tensor(b)
    mixed = merge_deltas([da, db], [wa, wb], [1.0, 1.0], "task_arithmetic", lambda_=lam)
    assert torch.isfinite(mixed).all()
    torch.testing.assert_close(mixed, lam * (wa * da + wb * db), rtol=1e-4, atol=1e-3)


@FAST
@given(a=VALUES, method=st.sampled_from(["task_arithmetic", "ties", "dare_linear", "dare_ties"]))
def test_one_vector_at_weight_one_merges_to_itself(a, method):
    delta = torch.tensor(a)
    torch.testing.assert_close(merge_deltas([delta], [1.0], [1.0], method), delta)


@given(st.sampled_from([math.nan, math.inf, -math.inf, "1e400", "nan", None, "x"]))
def test_finite_refuses_what_is_not_a_finite_number(value):
    with pytest.raises(ConfigError):
        finite(value, "scale")


@FAST
@given(seed=st.integers(0, 2**31 - 1), scale=st.floats(-2, 2, allow_nan=False))
def test_mask_edits_restore_bit_exactly(seed, scale):
    from traitlab.methods.subnetworks import SubnetworkMask

    before = WEIGHT.detach().clone()
    keep = torch.rand(WEIGHT.shape, generator=torch.Generator().manual_seed(seed)) > 0.5
    mask = SubnetworkMask.from_masks({NAME: keep}).scaled(scale)
    with pytest.raises(RuntimeError), mask.applied(LM):
        raise RuntimeError("boom")
    assert torch.equal(WEIGHT.detach(), before)
