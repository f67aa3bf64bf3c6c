"""Personality vectors: identities, merge math on hand cases, out-of-core checkpoints, LoRA, transfer, and
agreement with mergekit."""

from __future__ import annotations

import hashlib
import json

import pytest
import torch
import yaml

from tests.helpers import weights_hash
from traitlab import load_intervention
from traitlab.errors import ArtifactError, ConfigError
from traitlab.methods.merge_math import dare_mask, magnitude_mask, merge_deltas, rescaled
from traitlab.methods.merging import (
    MergeConfig,
    PersonalityVector,
    load_merge_config,
    merge_to_checkpoint,
    merge_vectors,
    vector_from_checkpoints,
    vector_from_lora,
    vector_from_models,
)
from traitlab.model import LoadedModel, load_model
from traitlab.model.tiny import tiny_model


def _perturbed(lm: LoadedModel, seed: int, scale: float = 0.02) -> LoadedModel:
    """A 'finetuned' copy of ``lm``: every weight moved by a seeded random delta."""
    import copy

    model = copy.deepcopy(lm.model)
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for parameter in model.parameters():
            parameter.add_(torch.randn(parameter.shape, generator=generator) * scale)
    return LoadedModel(model, lm.tokenizer, lm.family, spec=f"tuned-{seed}")


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory):
    root = tmp_path_factory.mktemp("merge")
    base = tiny_model("llama")
    for name, lm in [("base", base), *((f"tuned{i}", _perturbed(base, i)) for i in range(3))]:
        lm.model.save_pretrained(root / name)
        lm.tokenizer.save_pretrained(root / name)
    return root


def test_task_arithmetic_alpha_one_reproduces_the_tuned_model(checkpoints, tmp_path):
    base = load_model(str(checkpoints / "base"))
    tuned = load_model(str(checkpoints / "tuned0"))
    path = vector_from_checkpoints(checkpoints / "base", checkpoints / "tuned0", tmp_path / "phi.safetensors",
                                   trait="extraversion", pole="high")
    vector = load_intervention(path, base)
    assert isinstance(vector, PersonalityVector) and vector.trait == "extraversion"
    before = weights_hash(base.model)
    tuned_params = dict(tuned.model.named_parameters())
    with vector.applied(base):
        worst = max(float((p - tuned_params[n]).abs().max()) for n, p in base.model.named_parameters())
    assert worst <= 1e-6
    assert weights_hash(base.model) == before
    with vector.scaled(0.0).applied(base):
        assert weights_hash(base.model) == before
    ties = merge_vectors([(vector, 1.0, 1.0)], "ties")
    with ties.applied(base):
        worst = max(float((p - tuned_params[n]).abs().max()) for n, p in base.model.named_parameters())
    assert worst <= 1e-6


def test_in_memory_vector_equals_streamed(checkpoints, tmp_path):
    base = load_model(str(checkpoints / "base"))
    tuned = load_model(str(checkpoints / "tuned1"))
    in_memory = vector_from_models(base, tuned)
    streamed = load_intervention(vector_from_checkpoints(checkpoints / "base", checkpoints / "tuned1",
                                                         tmp_path / "p.safetensors"))
    for name, delta in in_memory.deltas.items():
        assert torch.equal(delta, streamed.deltas[name])


def test_ties_on_a_hand_case():
    a = torch.tensor([1.0, -2.0, 0.5, 0.0])
    b = torch.tensor([-3.0, 1.0, 0.5, 1.0])
    # weights 1 and 0.5: weighted deltas a, 0.5b; sums [-0.5, -1.5, 0.75, 0.5] → signs [-, -, +, +]
    merged = merge_deltas([a, b], [1.0, 0.5], [1.0, 1.0], "ties")
    # masks: a keeps [F, T, T, F(0)], b keeps [T, F, T, T]; divisor Σ w·m = [0.5, 1, 1.5, 0.5]
    expected = torch.tensor([-1.5 / 0.5, -2.0 / 1.0, (0.5 + 0.25) / 1.5, 0.5 / 0.5])
    torch.testing.assert_close(merged, expected)
    unnormalised = merge_deltas([a, b], [1.0, 0.5], [1.0, 1.0], "ties", normalize=False)
    torch.testing.assert_close(unnormalised, torch.tensor([-1.5, -2.0, 0.75, 0.5]))
    assert magnitude_mask(torch.tensor([0.1, -3.0, 2.0, 0.0]), 0.5).tolist() == [False, True, True, False]


def test_dare_masks_are_seeded_and_rescaled():
    delta = torch.ones(2000)
    keep = dare_mask(delta.shape, 0.3, seed=1, name="w", index=0)
    assert torch.equal(keep, dare_mask(delta.shape, 0.3, seed=1, name="w", index=0))
    assert not torch.equal(keep, dare_mask(delta.shape, 0.3, seed=1, name="w", index=1))
    assert abs(keep.float().mean() - 0.3) < 0.05
    torch.testing.assert_close(rescaled(delta, keep, 0.3, "inverse"), keep / 0.3)
    l1 = rescaled(delta, keep, 0.3, "l1")
    assert float(l1.abs().sum()) == pytest.approx(float(delta.abs().sum()))
    merged = merge_deltas([delta], [2.0], [0.3], "dare_linear", name="w", seed=1)
    torch.testing.assert_close(merged, 2.0 * keep / 0.3)


def _config(checkpoints, method, density, rescale="inverse", normalize=None):
    parameters = {"rescale": rescale}
    if normalize is not None:
        parameters["normalize"] = normalize
    return {"merge_method": method, "base_model": str(checkpoints / "base"),
            "models": [{"model": str(checkpoints / f"tuned{i}"), "parameters": {"weight": w, "density": density}}
                       for i, w in enumerate([0.6, -0.3, 0.5])], "parameters": parameters, "seed": 4}


def test_out_of_core_merge_equals_in_memory_and_shards(checkpoints, tmp_path):
    config = MergeConfig.model_validate(_config(checkpoints, "dare_ties", 0.5))
    out = merge_to_checkpoint(config, tmp_path / "merged", shard_bytes=40_000)
    assert (out / "model.safetensors.index.json").is_file() and (out / "tokenizer_config.json").is_file()
    merged = load_model(str(out))
    base = load_model(str(checkpoints / "base"))
    vectors = [vector_from_models(base, load_model(str(checkpoints / f"tuned{i}"))) for i in range(3)]
    in_memory = merge_vectors([(v, w, 0.5) for v, w in zip(vectors, [0.6, -0.3, 0.5], strict=True)], "dare_ties",
                              seed=4)
    merged_params = dict(merged.model.named_parameters())
    with in_memory.applied(base):
        worst = max(float((p - merged_params[n]).abs().max()) for n, p in base.model.named_parameters())
    assert worst <= 1e-6


@pytest.mark.parametrize("method, density, normalize", [
    ("task_arithmetic", 1.0, None), ("ties", 0.5, None), ("ties", 0.3, False), ("dare_linear", 0.5, None),
    ("dare_ties", 0.6, None),
])
def test_agreement_with_mergekit(checkpoints, tmp_path, monkeypatch, method, density, normalize):
    mergekit = pytest.importorskip("mergekit")
    from mergekit.config import MergeConfiguration
    from mergekit.merge import MergeOptions, run_merge
    from mergekit.merge_methods import generalized_task_arithmetic as gta
    from mergekit.sparsify import RescaleNorm, SparsificationMethod, rescaled_masked_tensor

    assert mergekit
    ours = _config(checkpoints, method, density, rescale="l1", normalize=normalize)
    base = load_model(str(checkpoints / "base"))
    base_params = dict(base.model.named_parameters())
    # traitlab's DARE masks, keyed by the delta each one belongs to, handed to mergekit's sparsify
    masks = {}
    for index in range(3):
        tuned = dict(load_model(str(checkpoints / f"tuned{index}")).model.named_parameters())
        for name, parameter in tuned.items():
            delta = (parameter - base_params[name]).detach()
            masks[hashlib.sha256(delta.numpy().tobytes()).hexdigest()] = dare_mask(delta.shape, density, 4, name,
                                                                                 index)
    original = gta.sparsify

    def shared_masks(tensor, density, method, rescale_norm=None, **kwargs):
        if method != SparsificationMethod.random:
            return original(tensor, density=density, method=method, rescale_norm=rescale_norm, **kwargs)
        keep = masks[hashlib.sha256(tensor.detach().numpy().tobytes()).hexdigest()]
        return rescaled_masked_tensor(tensor, keep.to(tensor.dtype), RescaleNorm.l1 if rescale_norm else None)

    monkeypatch.setattr(gta, "sparsify", shared_masks)
    mk_config = {"merge_method": method, "base_model": ours["base_model"], "dtype": "float32",
                 "models": ours["models"], "parameters": {"normalize": normalize} if normalize is not None else {}}
    run_merge(MergeConfiguration.model_validate(mk_config), str(tmp_path / "mergekit"),
              MergeOptions(copy_tokenizer=False, quiet=True))
    mine = merge_to_checkpoint(MergeConfig.model_validate(ours), tmp_path / "traitlab")
    from transformers import AutoModelForCausalLM

    theirs = AutoModelForCausalLM.from_pretrained(tmp_path / "mergekit", dtype=torch.float32)
    mine_params = dict(load_model(str(mine)).model.named_parameters())
    worst = max(float((p.detach() - mine_params[n]).abs().max()) for n, p in theirs.named_parameters())
    assert worst <= 1e-6


def test_lora_adapter_vector_matches_the_merged_adapter(checkpoints, tmp_path):
    from peft import LoraConfig

    from traitlab.finetune.sft import lora_model

    base = load_model(str(checkpoints / "base"))
    import copy

    peft_model = lora_model(copy.deepcopy(base.model), LoraConfig(r=4, lora_alpha=8,
                                                                  target_modules=["q_proj", "down_proj"]))
    generator = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for name, parameter in peft_model.named_parameters():
            if "lora_B" in name:
                parameter.copy_(torch.randn(parameter.shape, generator=generator) * 0.1)
    peft_model.save_pretrained(tmp_path / "adapter")
    merged_model = peft_model.merge_and_unload()
    merged = dict(merged_model.named_parameters())
    vector = load_intervention(vector_from_lora(checkpoints / "base", tmp_path / "adapter",
                                                tmp_path / "lora.safetensors"), base)
    assert len(vector.deltas) == 2 * base.num_layers
    with vector.applied(base):
        worst = max(float((p - merged[n]).abs().max()) for n, p in base.model.named_parameters())
    assert worst <= 1e-6
    # the merged LoRA finetune saved as a full checkpoint: φ keeps only the tensors LoRA touched
    merged_model.save_pretrained(tmp_path / "tuned")
    from_folder = load_intervention(vector_from_checkpoints(checkpoints / "base", tmp_path / "tuned",
                                                            tmp_path / "full.safetensors"), base)
    assert sorted(from_folder.deltas) == sorted(vector.deltas)
    before = weights_hash(base.model)
    with from_folder.applied(base):
        worst = max(float((p - merged[n]).abs().max()) for n, p in base.model.named_parameters())
    assert worst <= 1e-6 and weights_hash(base.model) == before
    with pytest.raises(ConfigError, match="no personality vector"):
        vector_from_checkpoints(checkpoints / "base", checkpoints / "base", tmp_path / "none.safetensors")


def test_transfer_checks_shapes():
    source, target = tiny_model("llama"), tiny_model("llama", seed=1)
    vector = vector_from_models(source, _perturbed(source, 7))
    with pytest.raises(ArtifactError, match="made for another model"), vector.applied(target):
        pass
    moved = vector.transfer_to(target)
    before = weights_hash(target.model)
    with moved.applied(target):
        assert weights_hash(target.model) != before
    assert weights_hash(target.model) == before
    wider = tiny_model("llama", hidden_size=32, intermediate_size=64)
    with pytest.raises(ArtifactError, match="cannot transfer"):
        vector.transfer_to(wider)


def test_merge_config_is_validated_before_reading_tensors(checkpoints, tmp_path):
    good = _config(checkpoints, "ties", 0.5)
    path = tmp_path / "merge.yaml"
    path.write_text(yaml.safe_dump(good))
    assert load_merge_config(path).merge_method == "ties"
    cases = [
        ({**good, "merge_method": "slerp"}, "merge_method"),
        ({**good, "models": []}, "models"),
        ({**good, "models": [{"model": str(tmp_path / "missing.safetensors")}]}, "not found"),
        ({**good, "models": [{"model": str(path)}]}, "not a personality-vector artifact"),
        ({**good, "models": [{"model": good["models"][0]["model"], "parameters": {"density": 1.5}}]}, "density"),
        ({**good, "bogus": 1}, "bogus"),
    ]
    for data, message in cases:
        path.write_text(yaml.safe_dump(data))
        with pytest.raises(ConfigError, match=message):
            load_merge_config(path)
    path.write_text("merge_method: [unclosed")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_merge_config(path)
    assert json.loads(MergeConfig.model_validate(good).model_dump_json(by_alias=True))["parameters"]["lambda"] == 1


def test_magnitude_trim_breaks_ties_as_mergekit():
    """Deltas of bfloat16 finetunes hold many equal magnitudes; the kept set at the cut must be mergekit's
    (``topk`` picks another subset of the tied entries here)."""
    from mergekit.sparsify import magnitude

    generator = torch.Generator().manual_seed(0)
    for n, density in [(20, 0.5), (1000, 0.5), (5000, 0.3)]:
        delta = torch.randint(-3, 4, (n,), generator=generator).float()
        keep = magnitude_mask(delta, density)
        theirs = magnitude(delta, density) != 0
        nonzero = delta != 0
        assert torch.equal(keep & nonzero, theirs)
        assert int(keep.sum()) == max(1, int(density * n))
        assert torch.equal(merge_deltas([delta], [1.0], [density], "ties"), magnitude(delta, density))
    # no ties (float32 deltas, e.g. a LoRA's B·A): the selection path, still mergekit's set
    for n, density in [(1, 0.5), (7, 0.5), (10_000, 0.3), (10_000, 0.999)]:
        delta = torch.randn(n, generator=generator)
        assert torch.equal(merge_deltas([delta], [1.0], [density], "ties"), magnitude(delta, density))
