"""Intervention protocol: round trips, scaling, composition, fingerprint checks, bit-exact weight restore."""

from __future__ import annotations

import json

import pytest
import torch

from tests.conftest import cached_tiny
from tests.helpers import weights_hash
from traitlab import compose, load_intervention
from traitlab.errors import ArtifactError, ConfigError
from traitlab.interventions import parse_apply_spec, read_artifact
from traitlab.methods import PromptIntervention, ResidualSteering, WeightDelta
from traitlab.model.tiny import tiny_model


def _steering(lm, coef_layers=(1, 2)):
    generator = torch.Generator().manual_seed(0)
    vectors = {layer: torch.randn(lm.hidden_size, generator=generator) for layer in coef_layers}
    return ResidualSteering(vectors, trait="extraversion", pole="high", fingerprint=lm.fingerprint,
                            hyperparameters={"coef": 4.0})


def test_artifact_round_trip_gives_identical_behaviour(llama, tmp_path):
    steering = _steering(llama).scaled(4.0)
    path = steering.save(tmp_path / "ev.tl.safetensors")
    loaded = load_intervention(path, llama)
    meta, _ = read_artifact(path)
    assert meta["mechanism"] == "residual_steering" and meta["trait"] == "extraversion"
    assert meta["fingerprint"]["weights_hash"] == llama.fingerprint.weights_hash
    assert "hidden_states" in meta["layer_convention"]
    assert loaded.scale == 4.0 and loaded.positions == "response"
    with steering.applied(llama):
        expected = llama.generate_chat(["hello", "hi there"], max_new_tokens=8).response_ids
    with loaded.applied(llama):
        assert llama.generate_chat(["hello", "hi there"], max_new_tokens=8).response_ids == expected
    assert expected != llama.generate_chat(["hello", "hi there"], max_new_tokens=8).response_ids


def test_scaled_zero_is_identity_and_scaling_composes(llama):
    steering = _steering(llama)
    assert steering.scaled(2).scaled(-0.5).scale == -1.0
    plain = llama.generate_chat(["hello"], max_new_tokens=8).response_ids
    with steering.scaled(0).applied(llama):
        assert llama.generate_chat(["hello"], max_new_tokens=8).response_ids == plain


def test_fingerprint_mismatch_is_a_clear_error(llama, tmp_path):
    path = _steering(llama).save(tmp_path / "a.tl.safetensors")
    with pytest.raises(ArtifactError, match=r"made for another model \(weights_hash [0-9a-f]+ != [0-9a-f]+\)"):
        load_intervention(path, tiny_model("llama", seed=1))
    reseeded = cached_tiny("qwen2")
    with pytest.raises(ArtifactError, match="model_type llama != qwen2"), _steering(llama).applied(reseeded):
        pass


@pytest.mark.parametrize("content", [b"", b"not a safetensors file at all", b"\x08\x00\x00\x00\x00\x00\x00\x00{}"])
def test_corrupt_files_are_clear_errors(tmp_path, content):
    path = tmp_path / "bad.tl.safetensors"
    path.write_bytes(content)
    with pytest.raises(ArtifactError):
        load_intervention(path)


def test_foreign_and_future_artifacts_are_rejected(tmp_path):
    from safetensors.torch import save_file

    save_file({"x": torch.zeros(2)}, tmp_path / "plain.safetensors")
    with pytest.raises(ArtifactError, match="not a traitlab artifact"):
        load_intervention(tmp_path / "plain.safetensors")
    save_file({"x": torch.zeros(2)}, tmp_path / "future.safetensors",
              metadata={"traitlab": json.dumps({"format_version": 99, "mechanism": "prompt"})})
    with pytest.raises(ArtifactError, match="format version 99"):
        load_intervention(tmp_path / "future.safetensors")
    with pytest.raises(ArtifactError, match="not found"):
        load_intervention(tmp_path / "missing.safetensors")


def test_writes_are_atomic(llama, tmp_path, monkeypatch):
    target = tmp_path / "ev.tl.safetensors"
    _steering(llama).save(target)
    before = target.read_bytes()

    def failing_save(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr("traitlab.interventions.save_file", failing_save)
    with pytest.raises(OSError):
        _steering(llama).scaled(3).save(target)
    assert target.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["ev.tl.safetensors"]
    with pytest.raises(ArtifactError, match="does not exist"):
        _steering(llama).save(tmp_path / "nope" / "x.safetensors")


def test_weight_delta_restores_bit_exactly(llama):
    before = weights_hash(llama.model)
    generator = torch.Generator().manual_seed(5)
    deltas = {name: torch.randn(p.shape, generator=generator) * 0.05
              for name, p in llama.model.named_parameters() if name.endswith("mlp.down_proj.weight")}
    delta = WeightDelta(deltas, fingerprint=llama.fingerprint)
    plain = llama.generate_chat(["hello"], max_new_tokens=8).response_ids
    with delta.scaled(3).applied(llama):
        assert weights_hash(llama.model) != before
        assert llama.generate_chat(["hello"], max_new_tokens=8).response_ids != plain
    assert weights_hash(llama.model) == before
    with pytest.raises(RuntimeError, match="inside"), delta.applied(llama):
        raise RuntimeError("inside")
    assert weights_hash(llama.model) == before
    name = next(iter(deltas))
    original = dict(llama.model.named_parameters())[name].detach().clone()
    with delta.applied(llama):
        assert torch.equal(dict(llama.model.named_parameters())[name].detach(), original + deltas[name])
    with pytest.raises(ConfigError, match="per-row"), delta.applied(llama, row_scale=torch.ones(2)):
        pass


def test_compose_applies_all_parts_and_round_trips(llama, tmp_path):
    steering = _steering(llama).scaled(3)
    prompt = PromptIntervention("You are a cheerful assistant.")
    combo = compose([steering, prompt])
    with combo.applied(llama):
        expected = llama.generate_chat(["hello"], max_new_tokens=8).response_ids
    with steering.applied(llama):
        steered_only = llama.generate_chat(["hello"], system="You are a cheerful assistant.",
                                           max_new_tokens=8).response_ids
    assert expected == steered_only
    loaded = load_intervention(combo.save(tmp_path / "combo.tl.safetensors"), llama)
    with loaded.applied(llama):
        assert llama.generate_chat(["hello"], max_new_tokens=8).response_ids == expected


def test_prompt_intervention_sets_the_default_system_prompt(llama):
    prompt = PromptIntervention("Speak like a pirate.")
    with prompt.applied(llama):
        rendered = llama.render(["hello"])[0]
        assert "Speak like a pirate." in rendered
        assert "Other." in llama.render(["hello"], system="Other.")[0]
    assert "pirate" not in llama.render(["hello"])[0]
    with prompt.scaled(0).applied(llama):
        assert "pirate" not in llama.render(["hello"])[0]


def test_apply_spec_parsing():
    assert parse_apply_spec("a.safetensors:1.5") == ("a.safetensors", 1.5)
    assert parse_apply_spec("a.safetensors") == ("a.safetensors", 1.0)
    assert parse_apply_spec("C:/x/a.safetensors:-2") == ("C:/x/a.safetensors", -2.0)
