"""Every family in the table: hook placement against output_hidden_states, capture, neuron edit, generation."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from tests.conftest import cached_tiny
from traitlab.errors import FamilyError
from traitlab.model import FAMILY_TABLE, capture_residual, neuron_edit, residual_add, resolve_family
from traitlab.model.family import get_path, guess_family
from traitlab.model.tiny import FAMILIES, tiny_config


def test_every_table_family_has_a_tiny_config():
    missing = set(FAMILY_TABLE) - set(FAMILIES) - {"olmo", "cohere", "smollm3"}
    assert not missing


@pytest.fixture(params=FAMILIES)
def lm(request):
    return cached_tiny(request.param)


def _ids(seed: int = 0) -> torch.Tensor:
    return torch.randint(0, 256, (2, 7), generator=torch.Generator().manual_seed(seed))


def test_capture_equals_output_hidden_states(lm):
    ids = _ids()
    with torch.no_grad():
        reference = lm.model(ids, output_hidden_states=True).hidden_states
        layers = list(range(lm.num_layers + 1))
        with capture_residual(lm, layers, positions="all", keep_tokens=True) as capture:
            lm.model(ids)
    for layer in layers[:-1]:
        assert torch.equal(capture.tokens(layer)[0], reference[layer])
        torch.testing.assert_close(capture.mean(layer), reference[layer].mean(1), rtol=1e-5, atol=1e-6)
    final_norm = get_path(lm.model, lm.family.final_norm)
    torch.testing.assert_close(final_norm(capture.tokens(lm.num_layers)[0]), reference[-1], rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("layer", [0, 1, 2])
def test_residual_add_changes_layer_by_exactly_coef_v(lm, layer):
    ids, v, coef = _ids(1), torch.randn(lm.hidden_size, generator=torch.Generator().manual_seed(2)), 2.5
    layers = list(range(lm.num_layers + 1))
    with torch.no_grad():
        base = lm.model(ids, output_hidden_states=True).hidden_states
        with residual_add(lm, layer, v, coef, positions="all"), \
                capture_residual(lm, layers, positions="all", keep_tokens=True) as capture:
            steered = lm.model(ids, output_hidden_states=True).hidden_states
    assert torch.equal(capture.tokens(layer)[0], base[layer] + coef * v)
    for earlier in range(layer):
        assert torch.equal(capture.tokens(earlier)[0], base[earlier])
        assert torch.equal(steered[earlier], base[earlier])
    assert not torch.allclose(steered[layer + 1], base[layer + 1])


def test_zero_vector_leaves_logits_bit_identical(lm):
    ids = _ids(3)
    with torch.no_grad():
        base = lm.model(ids).logits
        with residual_add(lm, 1, torch.zeros(lm.hidden_size), 7.0, positions="all"):
            steered = lm.model(ids).logits
    assert torch.equal(base, steered)


def test_neuron_edit_changes_down_projection_input_exactly(lm):
    ids, block = _ids(4), 1
    boost_index, clamp_index, boost = [0, 5, 9], [1, 2, 3, 40], torch.tensor([0.5, -1.0, 2.0])
    down = get_path(lm.hooks.blocks[block], lm.family.down)
    site = lm.hooks.neuron_module(block)
    seen: dict[str, torch.Tensor] = {}
    recorders = [down.register_forward_pre_hook(lambda m, a: seen.__setitem__("down", a[0])),
                 site.register_forward_hook(lambda m, a, o: seen.__setitem__("act", o))]
    try:
        with torch.no_grad():
            lm.model(ids)
            base_down, base_act = seen["down"], seen["act"]
            with neuron_edit(lm, block, boost_index, boost, clamp_index, coef=1.5, positions="all"):
                lm.model(ids)
    finally:
        for handle in recorders:
            handle.remove()
    expected_act = base_act.clone()
    expected_act[..., boost_index] += 1.5 * boost
    expected_act[..., clamp_index] = expected_act[..., clamp_index].clamp(max=0)
    if lm.family.gated:
        up = base_down / base_act  # down input = act(gate) * up
        expected_down = expected_act * up
    else:
        expected_down = expected_act
    torch.testing.assert_close(seen["down"], expected_down, rtol=1e-5, atol=1e-5)
    untouched = [i for i in range(base_act.shape[-1]) if i not in boost_index + clamp_index]
    torch.testing.assert_close(seen["down"][..., untouched], base_down[..., untouched], rtol=1e-6, atol=1e-6)


def test_generation_is_reproducible(lm):
    greedy = [lm.generate_chat(["hello", "tell me more"], system="be kind", max_new_tokens=6).response_ids
              for _ in range(2)]
    assert greedy[0] == greedy[1]
    sampled = [lm.generate_chat(["hello", "tell me more"], max_new_tokens=6, temperature=1.0, seed=7).response_ids
               for _ in range(2)]
    assert sampled[0] == sampled[1]


def test_structural_guess_recovers_known_families():
    from transformers import AutoModelForCausalLM

    for family in ("llama", "gpt2", "gpt_neox", "phi3"):
        with torch.device("meta"):
            model = AutoModelForCausalLM.from_config(tiny_config(family))
        guessed = guess_family(model)
        table = FAMILY_TABLE[family]
        assert guessed is not None
        assert (guessed.layers, guessed.down, guessed.act) == (table.layers, table.down, table.act)


class _Opaque(nn.Module):
    def __init__(self):
        super().__init__()
        self.stack = nn.Sequential(nn.Linear(4, 4), nn.Linear(4, 4))


def test_unfittable_architecture_gets_one_clear_error():
    with pytest.raises(FamilyError, match="not in the family table and its structure could not be guessed"):
        resolve_family(_Opaque(), "mystery")


def test_family_override_replaces_table_fields(llama):
    family = resolve_family(llama.model, "llama", {"act": "mlp.act_fn", "name": "custom"})
    assert family.name == "custom" and family.layers == "model.layers"
    with pytest.raises(FamilyError, match=r"missing mlp\.nope"):
        resolve_family(llama.model, "llama", {"act": "mlp.nope"})
    with pytest.raises(FamilyError, match="unknown family override field"):
        resolve_family(llama.model, "llama", {"bogus": 1})
