"""Applying subnetwork masks: bit-exact restore (also after exceptions), scale semantics, artifacts, switching,
export, calibration options and the comparison-runner hooks."""

from __future__ import annotations

import pytest
import torch

from tests.conftest import cached_tiny
from tests.helpers import weights_hash
from traitlab.errors import ArtifactError, ConfigError
from traitlab.methods import subnet_calibration as calib
from traitlab.methods.subnet_fit import FindSettings, find, wanda_masks
from traitlab.methods.subnetworks import AppliedMask, SubnetworkMask, SubnetworkSet, export_checkpoint
from traitlab.model import linear_modules
from traitlab.model.tiny import tiny_model
from traitlab.registry import load_intervention

GEN = calib.GenerationSettings(max_new_tokens=6, temperature=0.0)


def _stats_masks(lm, sparsity=0.5, seed=0, modules="all"):
    generator = torch.Generator().manual_seed(seed)
    stats = {}
    for name, module in linear_modules(lm, modules).items():
        width = module.weight.shape[0] if type(module).__name__ == "Conv1D" else module.weight.shape[1]
        x = torch.randn(20, width, generator=generator, dtype=torch.float64)
        stats[name] = calib.LinearInputStats(x.sum(0), x.square().sum(0), 20)
    return wanda_masks(lm, stats, sparsity, modules)


def _mask(lm, sparsity=0.5, seed=0, modules="all"):
    return SubnetworkMask.from_masks(_stats_masks(lm, sparsity, seed, modules), trait="extraversion", pole="high",
                                     fingerprint=lm.fingerprint)


@pytest.mark.parametrize("family", ["llama", "gpt2"])
def test_apply_zeroes_masked_weights_and_restores_bit_exactly(family):
    lm = cached_tiny(family)
    mask = _mask(lm)
    before = weights_hash(lm.model)
    plain = lm.generate_chat(["hi"], max_new_tokens=6, progress=False).response_ids
    parameters = dict(lm.model.named_parameters())
    with mask.applied(lm):
        assert weights_hash(lm.model) != before
        for name in mask.shapes:
            assert bool((parameters[name][~mask.mask(name)] == 0).all())
        assert lm.generate_chat(["hi"], max_new_tokens=6, progress=False).response_ids != plain
    assert weights_hash(lm.model) == before
    with pytest.raises(RuntimeError, match="inside"), mask.applied(lm):
        raise RuntimeError("inside")
    assert weights_hash(lm.model) == before
    with pytest.raises(ConfigError, match="per-row"), mask.applied(lm, row_scale=torch.ones(2)):
        pass
    assert weights_hash(lm.model) == before


def test_only_the_removed_values_are_kept():
    lm = cached_tiny("llama")
    mask = _mask(lm, 0.3)
    applied = AppliedMask(mask, lm, 1.0)
    try:
        covered = sum(torch.Size(s).numel() for s in mask.shapes.values())
        assert applied.removed_bytes == pytest.approx(covered * 4 * 0.3, rel=0.05)
    finally:
        applied.restore()
        applied.restore()  # idempotent


def test_scale_interpolates_the_removed_weights():
    lm = cached_tiny("llama")
    mask = _mask(lm)
    name = next(iter(mask.shapes))
    parameter = dict(lm.model.named_parameters())[name]
    original = parameter.detach().clone()
    removed = ~mask.mask(name)
    before = weights_hash(lm.model)
    with mask.scaled(0).applied(lm):
        assert weights_hash(lm.model) == before
    with mask.scaled(0.25).applied(lm):
        assert torch.equal(parameter[removed], original[removed] * 0.75)
        assert torch.equal(parameter[~removed], original[~removed])
    assert weights_hash(lm.model) == before


def test_artifact_round_trip_and_size(tmp_path):
    lm = cached_tiny("gpt2")
    mask = _mask(lm, 0.5)
    path = mask.save(tmp_path / "m.tl.safetensors")
    loaded = load_intervention(path, lm)
    assert isinstance(loaded, SubnetworkMask) and loaded.pole == "high"
    assert loaded.shapes == mask.shapes
    for name in mask.shapes:
        assert torch.equal(loaded.mask(name), mask.mask(name))
    covered = sum(torch.Size(s).numel() for s in mask.shapes.values())
    assert path.stat().st_size < covered * 4 / 30 + 16_384  # bit-packed: 1/32 of fp32, plus the header
    assert loaded.params()["layout"].startswith("parameter layout")
    with pytest.raises(ArtifactError, match="another model"):
        load_intervention(path, cached_tiny("llama"))


def test_mask_for_missing_parameters_is_an_artifact_error():
    lm = cached_tiny("llama")
    mask = SubnetworkMask.from_masks({"model.layers.9.mlp.up_proj.weight": torch.ones(4, 4, dtype=torch.bool)})
    before = weights_hash(lm.model)
    with pytest.raises(ArtifactError, match="lacks"), mask.applied(lm):
        pass
    assert weights_hash(lm.model) == before


@pytest.mark.parametrize("mode", ["copy", "values"])
def test_switching_personas_equals_applying_each_and_restores(mode):
    lm = cached_tiny("llama")
    first, second = _mask(lm, 0.5, seed=1), _mask(lm, 0.5, seed=2)
    before = weights_hash(lm.model)
    with first.applied(lm):
        hash_first = weights_hash(lm.model)
    with second.applied(lm):
        hash_second = weights_hash(lm.model)
    with SubnetworkSet(lm, {"a": first, "b": second}, mode=mode) as personas:
        personas.use("a")
        assert weights_hash(lm.model) == hash_first
        personas.use("b")
        assert weights_hash(lm.model) == hash_second and personas.active == "b"
        personas.use(None)
        assert weights_hash(lm.model) == before
        personas.use("a")
        with pytest.raises(ConfigError, match="unknown persona"):
            personas.use("c")
        personas.use("b", scale=0.5)
        name = next(iter(second.shapes))
        removed = ~second.mask(name)
        parameter = dict(lm.model.named_parameters())[name]
        assert personas.active == "b" and bool((parameter[removed] != 0).any())
    assert weights_hash(lm.model) == before
    with second.scaled(0.5).applied(lm):
        half = weights_hash(lm.model)
    with SubnetworkSet(lm, {"b": second}, mode=mode) as personas:
        personas.use("b", scale=0.5)
        assert weights_hash(lm.model) == half
    assert weights_hash(lm.model) == before


def test_bfloat16_weights_restore_bit_exactly():
    lm = tiny_model("llama")
    lm.model.to(torch.bfloat16)
    mask = _mask(lm, 0.3)
    before = weights_hash(lm.model)
    with mask.applied(lm):
        assert weights_hash(lm.model) != before
    with mask.scaled(0.5).applied(lm):
        pass
    with SubnetworkSet(lm, {"a": mask}) as personas:
        personas.use("a")
    assert weights_hash(lm.model) == before


@pytest.mark.parametrize("family", ["llama", "gpt2"])
def test_export_reloads_and_reproduces_greedy_outputs(family, tmp_path):
    from traitlab.model import load_model

    lm = tiny_model(family)
    mask = _mask(lm, 0.5)
    before = weights_hash(lm.model)
    prompts = ["hi", "plans for today?"]
    with mask.applied(lm):
        expected = lm.generate_chat(prompts, max_new_tokens=8, progress=False).response_ids
    out = export_checkpoint(lm, mask, tmp_path / "masked")
    assert weights_hash(lm.model) == before
    assert (out / "config.json").is_file() and any(out.glob("*.safetensors"))
    reloaded = load_model(str(out), device="cpu")
    assert reloaded.generate_chat(prompts, max_new_tokens=8, progress=False).response_ids == expected
    with pytest.raises(ConfigError, match="not empty"):
        export_checkpoint(lm, mask, out)


def test_find_on_a_spec_records_its_settings(small_spec):
    lm = cached_tiny("llama")
    before = weights_hash(lm.model)
    settings = FindSettings(modules="mlp", blocks=(1, 2), with_system=False, generation=GEN)
    mask, other = find(lm, small_spec, "low", settings, pair=True)
    assert weights_hash(lm.model) == before
    assert mask.pole == "low" and other.pole == "high" and mask.trait == "extraversion"
    assert set(mask.shapes) == {f"model.layers.{b}.mlp.{p}.weight" for b in (1, 2)
                                for p in ("gate_proj", "up_proj", "down_proj")}
    assert mask.sparsity == pytest.approx(0.5)
    hyper = mask.hyperparameters
    assert hyper["with_system"] is False and hyper["positions"] == "response" and hyper["blocks"] == [1, 2]
    assert mask.info["calibration"]["seek"]["instructions"] == "neg"
    assert mask.info["calibration"]["reject"]["instructions"] == "pos"
    contrastive, _ = find(lm, small_spec, "high", FindSettings(contrastive=True, generation=GEN))
    assert contrastive.sparsity == pytest.approx(0.3, abs=0.01)
    assert contrastive.hyperparameters["method"] == "contrastive"


def test_calibration_context_with_and_without_system(small_spec):
    lm = cached_tiny("llama")
    with_sys = calib.from_spec(lm, small_spec, "high", True, GEN)
    without = calib.from_spec(lm, small_spec, "high", False, GEN)
    assert with_sys.responses == without.responses
    assert all(len(a) > len(b) for a, b in zip(with_sys.prompts, without.prompts, strict=True))
    assert "Be loud." in lm.tokenizer.decode(with_sys.prompts[0])
    assert "Be loud." not in lm.tokenizer.decode(without.prompts[0])
    response = calib.collect_stats(lm, with_sys, "response", "mlp", [0])
    everything = calib.collect_stats(lm, with_sys, "all", "mlp", [0])
    name = "model.layers.0.mlp.up_proj"
    assert response[name].count == sum(len(r) for r in with_sys.responses)
    assert everything[name].count == with_sys.tokens()
    with pytest.raises(ConfigError, match="response or all"):
        calib.collect_stats(lm, with_sys, "prompt")


def test_persona_texts_jsonl(tmp_path):
    lm = cached_tiny("llama")
    path = tmp_path / "texts.jsonl"
    path.write_text('{"text": "I love parties."}\n\n'
                    '{"prompt": "Plans?", "response": "A big party!"}\n'
                    '{"messages": [{"role": "system", "content": "Be loud."}, {"role": "user", "content": "Hi"},'
                    ' {"role": "assistant", "content": "Hello all!"}]}\n')
    calibration = calib.from_texts(lm, path, with_system=False)
    assert len(calibration) == 3 and calibration.prompts[0] == []
    assert "Be loud." not in lm.tokenizer.decode(calibration.prompts[2])
    assert "Be loud." in lm.tokenizer.decode(calib.from_texts(lm, path, with_system=True).prompts[2])
    for bad, message in [("not json", "not valid JSON"), ('{"foo": 1}', "needs 'messages'"),
                         ('{"messages": [{"role": "user", "content": "x"}]}', "ending with the assistant")]:
        path.write_text(bad + "\n")
        with pytest.raises(ConfigError, match=message):
            calib.read_persona_jsonl(path)
