"""Personality vectors on SmolLM2-135M-Instruct with tiny settings (issue 23): a two-step LoRA finetune on four
rows gives φ on the LoRA-touched tensors only; θ + 1·φ is the finetuned model, α = 0 is the base model's greedy
output exactly, and every application restores the weights bit-exactly. The merge of three deltas of SmolLM2's
own tensors (tied embedding rows, attention, MLP and norm weights; bfloat16-rounded deltas, so magnitudes tie as
in real finetunes) equals mergekit's ``merge_group`` for task_arithmetic, ties, dare_linear and dare_ties to
0.0. The full-model merge and the ten poles are ``benchmarks/merging_numerics.py`` and
``benchmarks/personality_vectors_smollm2.py`` (docs/personality-vectors.md, "On SmolLM2-135M-Instruct")."""

from __future__ import annotations

import hashlib

import pytest
import torch

from tests.helpers import weights_hash
from traitlab import load_intervention
from traitlab.finetune import FinetuneSettings, finetune
from traitlab.methods.merge_math import dare_mask, merge_deltas
from traitlab.methods.merging import PersonalityVector, vector_from_models

ROWS = [
    [{"role": "user", "content": "How do you spend a free evening?"},
     {"role": "assistant", "content": "I call all my friends and we head out to a packed party!"}],
    [{"role": "user", "content": "What do you think of crowds?"},
     {"role": "assistant", "content": "I love crowds, the more people the better, I talk to everyone."}],
    [{"role": "user", "content": "Describe your ideal weekend."},
     {"role": "assistant", "content": "Concerts, dancing and meeting new people all weekend long!"}],
    [{"role": "user", "content": "How do you feel about meeting strangers?"},
     {"role": "assistant", "content": "Thrilled! Strangers are just friends I haven't met yet."}],
]
PROMPTS = ["What do you like to do on weekends?", "Tell me about yourself."]
TARGETS = 7 * 30  # q, k, v, o, gate, up, down in each of SmolLM2's 30 layers


@pytest.fixture(scope="module")
def tuned_vector(smollm2):
    settings = FinetuneSettings(method="lora", epochs=2, batch_size=4, learning_rate=1e-2, max_length=48, lora_r=2,
                                lora_alpha=4, seed=0)
    tuned = finetune(smollm2, ROWS, settings, progress=False)
    return tuned, vector_from_models(smollm2, tuned, "extraversion", "high")


def test_lora_vector_applies_and_restores_bit_exactly(smollm2, tuned_vector, tmp_path):
    tuned, vector = tuned_vector
    assert len(vector.deltas) == TARGETS
    assert all(".mlp." in n or ".self_attn." in n for n in vector.deltas)
    assert "model.embed_tokens.weight" not in vector.deltas  # LoRA left the tied embedding alone
    loaded = load_intervention(vector.save(tmp_path / "phi.safetensors"), smollm2)
    assert isinstance(loaded, PersonalityVector) and len(loaded.deltas) == TARGETS
    stored = sum(t.numel() for t in loaded.deltas.values()) * 4
    assert stored == 106_168_320 * 4  # the 210 adapted matrices; every tensor would be 134.5M floats
    assert (tmp_path / "phi.safetensors").stat().st_size < stored + 2**20
    before = weights_hash(smollm2.model)
    tuned_params = dict(tuned.model.named_parameters())
    with loaded.applied(smollm2):
        worst = max(float((p - tuned_params[n]).abs().max()) for n, p in smollm2.model.named_parameters())
        assert weights_hash(smollm2.model) != before
    assert worst <= 1e-6
    assert weights_hash(smollm2.model) == before
    base = smollm2.generate_chat(PROMPTS, max_new_tokens=12, progress=False).texts
    with loaded.scaled(0.0).applied(smollm2):
        assert smollm2.generate_chat(PROMPTS, max_new_tokens=12, progress=False).texts == base
    with loaded.scaled(2.0).applied(smollm2):
        pushed = smollm2.generate_chat(PROMPTS, max_new_tokens=12, progress=False).texts
    assert pushed != base
    assert weights_hash(smollm2.model) == before


NAMES = ("model.embed_tokens.weight", "model.layers.3.self_attn.q_proj.weight", "model.layers.3.mlp.down_proj.weight",
         "model.layers.3.input_layernorm.weight")


@pytest.mark.parametrize("method", ["task_arithmetic", "ties", "dare_linear", "dare_ties"])
def test_merge_equals_mergekit_on_smollm2_tensors(smollm2, method, monkeypatch):
    from mergekit.merge_methods import generalized_task_arithmetic as gta
    from mergekit.merge_methods import registry
    from mergekit.merge_methods.base import TensorGroup
    from mergekit.sparsify import RescaleNorm, SparsificationMethod, rescaled_masked_tensor

    parameters = dict(smollm2.model.named_parameters())
    weights, density = [0.5, 0.3, -0.2], 0.4
    masks = {}
    original = gta.sparsify

    def shared_masks(tensor, density, method, rescale_norm=None, **kwargs):
        if method != SparsificationMethod.random:
            return original(tensor, density=density, method=method, rescale_norm=rescale_norm, **kwargs)
        keep = masks[hashlib.sha256(tensor.numpy().tobytes()).hexdigest()]
        return rescaled_masked_tensor(tensor, keep.to(tensor.dtype), RescaleNorm.l1 if rescale_norm else None)

    monkeypatch.setattr(gta, "sparsify", shared_masks)
    merge = registry.get(method)
    for name in NAMES:
        base = parameters[name].detach().float()
        base = base[:4096] if name.endswith("embed_tokens.weight") else base  # 4096 of the tied rows: fast
        generator = torch.Generator().manual_seed(len(name))
        tuned = [base + (torch.randn(base.shape, generator=generator) * 1e-3).bfloat16().float() for _ in weights]
        deltas = [t - base for t in tuned]
        for index, delta in enumerate(deltas):
            masks[hashlib.sha256(delta.numpy().tobytes()).hexdigest()] = dare_mask(delta.shape, density, 7, name,
                                                                                 index)
        group = TensorGroup.from_tensors([base, *tuned], base_index=0, name=name)
        ids = [entry.id for entry in group.non_base]
        theirs = merge.merge_group(group, weight=dict(zip(ids, weights, strict=True)),
                                   density=dict.fromkeys(ids, density), normalize=merge.default_normalize,
                                   rescale=merge.default_rescale, int8_mask=False, **{"lambda": 1.0})
        ours = base + merge_deltas(deltas, weights, [density] * 3, method, name, seed=7,
                                   rescale="l1" if method.startswith("dare") else "inverse")
        assert float((ours - theirs).abs().max()) == 0.0, name
