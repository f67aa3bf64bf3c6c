"""Hooks are removed on exit and on exceptions; captures equal brute-force statistics; stop-early works."""

from __future__ import annotations

import pytest
import torch

from traitlab.errors import ConfigError, LayerError
from traitlab.model import (
    NeuronMoments,
    capture_linear_inputs,
    capture_residual,
    linear_modules,
    neuron_edit,
    residual_ablate,
    residual_add,
    residual_cap,
    stream_neurons,
    teacher_forced,
)


def _hook_count(model: torch.nn.Module) -> int:
    return sum(len(m._forward_hooks) + len(m._forward_pre_hooks) for m in model.modules())


def test_hooks_are_gone_after_exit_and_after_exceptions(llama):
    before = _hook_count(llama.model)
    with residual_add(llama, 1, torch.ones(llama.hidden_size)), capture_residual(llama, [0, 2]):
        assert _hook_count(llama.model) > before
    assert _hook_count(llama.model) == before
    with pytest.raises(RuntimeError, match="boom"), neuron_edit(llama, 0, [1], 1.0), \
            capture_linear_inputs(llama):
        raise RuntimeError("boom")
    assert _hook_count(llama.model) == before
    assert llama.hooks._state_handle is None


def test_layer_out_of_range_is_a_clear_error(llama):
    with pytest.raises(LayerError, match=r"this model has layers 0\.\.3"), \
            residual_add(llama, 4, torch.ones(llama.hidden_size)):
        pass
    with pytest.raises(ConfigError, match="NaN"), residual_add(llama, 1, torch.full((llama.hidden_size,), torch.nan)):
        pass


def _batch(llama):
    generation = llama.generate_chat(["hello there", "how are you today?"], max_new_tokens=6)
    return generation.batch()


def test_mean_capture_over_response_tokens_matches_brute_force(llama):
    input_ids, attention_mask, roles = _batch(llama)
    with capture_residual(llama, [1, 3], positions="response") as capture:
        teacher_forced(llama, input_ids, attention_mask, roles)
    with capture_residual(llama, [0, 1, 2, 3], positions="all", keep_tokens=True) as full:
        teacher_forced(llama, input_ids, attention_mask, roles)
    for layer in (1, 3):
        hidden, _ = full.tokens(layer)
        mask = (roles == 2).unsqueeze(-1).float()
        expected = (hidden * mask).sum(1) / mask.sum(1)
        torch.testing.assert_close(capture.mean(layer), expected, rtol=1e-5, atol=1e-6)


def test_stop_after_last_skips_the_rest_of_the_model(llama):
    input_ids, attention_mask, roles = _batch(llama)
    calls = []
    handle = llama.hooks.blocks[2].register_forward_hook(lambda *a: calls.append(1))
    try:
        with capture_residual(llama, [1], stop_after_last=True) as early:
            assert teacher_forced(llama, input_ids, attention_mask, roles) is None
        with capture_residual(llama, [1]) as full:
            teacher_forced(llama, input_ids, attention_mask, roles)
    finally:
        handle.remove()
    assert len(calls) == 1
    assert torch.equal(early.mean(1), full.mean(1))


def test_linear_input_stats_match_brute_force(llama):
    input_ids, attention_mask, roles = _batch(llama)
    name = f"{llama.family.layers}.1.mlp.down_proj"
    module = linear_modules(llama)[name]
    inputs: list[torch.Tensor] = []
    handle = module.register_forward_pre_hook(lambda m, a: inputs.append(a[0]))
    try:
        with capture_linear_inputs(llama, positions="response") as stats:
            teacher_forced(llama, input_ids, attention_mask, roles)
    finally:
        handle.remove()
    selected = inputs[0][roles == 2].double()
    assert stats[name].count == selected.shape[0]
    torch.testing.assert_close(stats[name].sum, selected.sum(0))
    torch.testing.assert_close(stats[name].norm, selected.norm(dim=0))
    assert len(stats) == 7 * llama.num_layers  # q k v o gate up down
    assert set(linear_modules(llama, "mlp")) < set(stats)
    assert all(".self_attn." in n for n in linear_modules(llama, "attention"))


def test_neuron_stream_and_moments_match_brute_force(llama):
    input_ids, attention_mask, roles = _batch(llama)
    moments = NeuronMoments()
    acts: list[torch.Tensor] = []
    handle = llama.hooks.neuron_module(0).register_forward_hook(lambda m, a, o: acts.append(o))
    try:
        with stream_neurons(llama, [0, 2], moments, positions="response"):
            teacher_forced(llama, input_ids, attention_mask, roles)
    finally:
        handle.remove()
    selected = acts[0][roles == 2].double()
    assert moments.tokens[0] == selected.shape[0]
    torch.testing.assert_close(moments.firing_rate(0), (selected > 0).double().mean(0))
    torch.testing.assert_close(moments.mean(0), selected.mean(0))
    torch.testing.assert_close(moments.variance(0), selected.var(0, unbiased=False))


def test_ablation_removes_the_direction_and_capping_clamps(llama):
    input_ids, attention_mask, roles = _batch(llama)
    direction = torch.randn(llama.hidden_size, generator=torch.Generator().manual_seed(3))
    unit = direction / direction.norm()
    with residual_ablate(llama, 2, direction, positions="all"), \
            capture_residual(llama, [2], keep_tokens=True) as ablated:
        teacher_forced(llama, input_ids, attention_mask, roles)
    hidden, mask = ablated.tokens(2)
    assert (hidden[mask] @ unit).abs().max() < 1e-4
    with residual_cap(llama, 2, direction, low=-0.1, high=0.1, positions="all"), \
            capture_residual(llama, [2], keep_tokens=True) as capped:
        teacher_forced(llama, input_ids, attention_mask, roles)
    hidden, mask = capped.tokens(2)
    projection = hidden[mask] @ unit
    assert projection.min() >= -0.1 - 1e-5 and projection.max() <= 0.1 + 1e-5
