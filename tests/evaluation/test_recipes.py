"""The recipes of the fitted mechanisms (moved here from the mechanisms' own tests with the runner glue):
parameters checked by each recipe's params model, artifacts cached in the work folder."""

from __future__ import annotations

import pytest

from tests.conftest import cached_tiny
from tests.subnetworks.conftest import SMALL_SPEC
from traitlab.errors import ConfigError
from traitlab.evaluation.recipes import RecipeContext, build, validate_method
from traitlab.traits import TraitSpec, load_trait


def _recipe(name):
    """(build(lm, spec, params, workdir), validate(params)) of recipe ``name``, with no judges."""

    def builder(lm, spec, params, workdir):
        return build(name, RecipeContext(lm, spec, workdir), params)

    return builder, lambda params: validate_method(name, params)


def test_npti_recipe_caches_statistics(tmp_path, monkeypatch):
    runner_builder, validate_runner_params = _recipe("npti")
    lm = cached_tiny("llama")
    spec = load_trait("extraversion_high")
    params = {"n_answers": 4, "max_new_tokens": 6, "threshold": 0.05, "scale": 1.3}
    first = runner_builder(lm, spec, dict(params), tmp_path)
    assert first.scale == pytest.approx(1.3) and list(tmp_path.glob("npti-stats-*.safetensors"))
    import traitlab.methods.neurons as module

    monkeypatch.setattr(module, "fit", lambda *a, **k: pytest.fail("statistics were collected again"))
    again = runner_builder(lm, spec, {**params, "threshold": 0.2, "use_f": False}, tmp_path)
    assert again.options.threshold == 0.2 and not again.options.use_f
    assert runner_builder(lm, spec, {**params, "pole": "low"}, tmp_path).pole == "low"
    for bad, message in (({"gamma": 1}, "no parameter gamma"), ({"threshold": "x"}, "threshold must be"),
                         ({"pole": "mid"}, "pole must be"), ({"bins": 100}, "power of two"),
                         ({"boost_fraction": 2.0}, "boost_fraction"), ({"use_f": 1}, "use_f must be")):
        with pytest.raises(ConfigError, match=message):
            validate_runner_params(bad)


def test_subnetwork_recipe_caches_the_artifact(tmp_path):
    runner_builder, validate_runner_params = _recipe("subnetwork")
    small_spec = TraitSpec.model_validate(SMALL_SPEC)
    lm = cached_tiny("llama")
    params = {"sparsity": 0.3, "modules": "mlp", "blocks": "0-1", "max_new_tokens": 4, "temperature": 0.0}
    validate_runner_params(params)
    built = runner_builder(lm, small_spec, params, tmp_path)
    cached = list(tmp_path.glob("subnetwork-chatty_high-high-*.tl.safetensors"))
    assert len(cached) == 1 and built.weight_space
    again = runner_builder(lm, small_spec, params, tmp_path)
    assert again.shapes == built.shapes
    for bad, message in [({"spars": 0.3}, "no parameter spars"), ({"sparsity": 2}, "sparsity"),
                         ({"modules": "lm_head"}, "module filter"), ({"contrastive": "yes"}, "true or false"),
                         ({"blocks": "x-y"}, "blocks"), ({"pole": "middle"}, "pole")]:
        with pytest.raises(ConfigError, match=message):
            validate_runner_params(bad)


def test_a_mirrored_subnetwork_calibrates_each_pole_once_and_keeps_the_separate_masks(tmp_path, monkeypatch):
    """``mirror``: the low pole's contrastive fit reuses the two pole statistics the high pole's fit collected
    (two calibrations for the trait, not four), and both masks are bit for bit the ones ``find`` fits for each
    pole of the high spec on its own."""
    import torch

    from traitlab.methods import subnet_fit

    lm = cached_tiny("llama")
    high, low = load_trait("extraversion_high"), load_trait("extraversion_low")
    params = {"contrastive": True, "sparsity": 0.3, "modules": "mlp", "blocks": "0-1", "max_new_tokens": 4,
              "n_questions": 2, "mirror": True}
    calls = []
    real = subnet_fit.pole_statistics

    def counted(lm, spec, pole, settings, **kwargs):
        calls.append((spec.name, pole))
        return real(lm, spec, pole, settings, **kwargs)

    monkeypatch.setattr(subnet_fit, "pole_statistics", counted)
    mirrored = {spec.pole: build("subnetwork", RecipeContext(lm, spec, tmp_path / spec.name), params)
                for spec in (high, low)}
    assert sorted(calls) == [("extraversion_high", "high"), ("extraversion_high", "low")]
    assert len(list((tmp_path / "extraversion_high").glob("subnet-stats-*.safetensors"))) == 2
    assert not (tmp_path / "extraversion_low").exists() or not any((tmp_path / "extraversion_low").iterdir())
    again = build("subnetwork", RecipeContext(lm, low, tmp_path / "extraversion_low"), params)
    assert len(calls) == 2 and again.pole == "low"  # the cached mask, no calibration
    monkeypatch.undo()
    settings = validate_method("subnetwork", params).find_settings()
    trimmed = high.model_copy(update={"questions": high.questions[:2]})
    for pole, mask in mirrored.items():
        alone, _ = subnet_fit.find(lm, trimmed, pole, settings)
        assert mask.pole == alone.pole == pole and mask.shapes == alone.shapes and len(mask.shapes) == 6
        for name in alone.shapes:
            assert torch.equal(mask.mask(name), alone.mask(name)), name
    high_mask, low_mask = mirrored["high"], mirrored["low"]
    assert any(not torch.equal(high_mask.mask(n), low_mask.mask(n)) for n in high_mask.shapes)
    assert 0.29 < high_mask.sparsity < 0.31 and 0.29 < low_mask.sparsity < 0.31


def test_the_artifact_cache_keys_on_the_specs_content(tmp_path):
    """An edited trait file that keeps its name gets a new artifact, not the stale one."""
    from traitlab.evaluation.recipes import cached
    from traitlab.methods import PromptIntervention

    lm = cached_tiny("llama")
    spec = load_trait("extraversion_high")
    edited = spec.model_copy(update={"questions": [*spec.questions, "One more question?"]})
    fits = []

    def fit():
        fits.append(len(fits))
        return PromptIntervention(f"Be loud {len(fits)}.")

    first = cached(RecipeContext(lm, spec, tmp_path), "prompt", {"a": 1}, fit)
    again = cached(RecipeContext(lm, spec, tmp_path), "prompt", {"a": 1}, fit)
    other = cached(RecipeContext(lm, edited, tmp_path), "prompt", {"a": 1}, fit)
    assert len(fits) == 2 and again.text == first.text != other.text
    assert len(list(tmp_path.glob("prompt-extraversion_high-*.tl.safetensors"))) == 2


def test_the_persona_vector_sweep_never_sees_the_questions_the_evaluation_asks(tmp_path, monkeypatch):
    """The recipe's layer × coefficient sweep picks its cell on extraction questions; the held-out questions
    are left to the evaluation that scores the cell (a sweep on them would choose on the test set)."""
    import types

    import traitlab.evaluation.recipes.persona as recipe

    seen: dict[str, list[str]] = {}

    class Chosen(Exception):
        pass

    def sweep(*args, questions, **kwargs):
        seen["sweep"] = list(questions)
        raise Chosen

    monkeypatch.setattr(recipe, "extract", lambda *args, **kwargs: object())
    monkeypatch.setattr(recipe, "sweep", sweep)
    judges = types.SimpleNamespace(kind="stub", shared=None, coherence=None, trait_judge=lambda spec: (None, None))
    spec = load_trait("extraversion_high")
    with pytest.raises(Chosen):
        build("persona_vectors", RecipeContext(cached_tiny("llama"), spec, tmp_path, judges), {"sweep_questions": 6})
    assert seen["sweep"] == spec.questions[-6:]
    assert not set(seen["sweep"]) & set(spec.held_out_questions)


def test_the_personality_vector_key_keeps_fp32_fits_and_separates_bf16(tmp_path, monkeypatch):
    """An fp32 fit (also "auto" without native bf16) keeps the key it had before ``precision`` existed, so its
    stored artifacts still load; a bf16 fit or an upper-blocks LoRA gets its own."""
    import traitlab.evaluation.recipes.persona as persona
    from traitlab.finetune import sft

    keys = []
    monkeypatch.setattr(persona, "cached", lambda context, method, key, fit: keys.append(key))
    lm, spec = cached_tiny("llama"), load_trait("extraversion_high")
    before = {"n_per_question": 4, "temperature": 1.0, "max_new_tokens": 80, "method": "full", "epochs": 2.0,
              "learning_rate": 3e-4, "batch_size": 8, "self_report": None, "n_questions": None}
    monkeypatch.setattr(sft, "native_bf16", lambda device: False)
    for params in ({}, {"precision": "fp32"}, {"precision": "auto"}, {"precision": "bf16"},
                   {"method": "lora", "lora_top_blocks": 1}):
        build("personality_vector", RecipeContext(lm, spec, tmp_path), params)
    assert keys[0] == keys[1] == keys[2] == before
    assert keys[3] == [before, "bf16"] and keys[4] == {**before, "method": "lora", "lora_top_blocks": 1}
    with pytest.raises(ConfigError, match="precision"):
        validate_method("personality_vector", {"precision": "fp16"})
    with pytest.raises(ConfigError, match="lora_top_blocks needs method: lora"):
        validate_method("personality_vector", {"method": "full", "lora_top_blocks": 4})
