"""The answer bank (``traitlab.methods.pole_answers``): one sampling per pole, shared by the fits of a run."""

from __future__ import annotations

import json
import types

from tests.conftest import cached_tiny
from traitlab.evaluation.recipes import RecipeContext, build
from traitlab.methods import pole_answers as bank
from traitlab.methods.pole_answers import Sampling
from traitlab.traits import load_trait

SAMPLING = Sampling(max_new_tokens=5, temperature=1.0, seed=0, batch_size=32)


def _counted(monkeypatch, lm):
    """Record every ``generate_chat`` call on ``lm``: (first question, first system prompt, rows)."""
    calls = []
    real = lm.generate_chat

    def counted(prompts, system=None, **kwargs):
        calls.append((prompts[0], system[0] if isinstance(system, list) else system, len(prompts)))
        return real(prompts, system, **kwargs)

    monkeypatch.setattr(lm, "generate_chat", counted)
    return calls


def test_the_bank_samples_once_reads_back_from_disk_and_matches_a_direct_call(tmp_path, monkeypatch):
    lm = cached_tiny("llama")
    high = load_trait("extraversion_high")
    spec = high.model_copy(update={"questions": high.questions[:2]})
    bank.clear_memory(lm)
    calls = _counted(monkeypatch, lm)
    first = bank.pole_answers(lm, spec, "pos", 1, SAMPLING, tmp_path)
    again = bank.pole_answers(lm, spec, "pos", 1, SAMPLING, tmp_path)
    assert len(calls) == 1 and again is first and len(first) == 2 * len(spec.instruction)
    stored = list(tmp_path.glob("*.json"))
    assert [p.stem for p in stored] == [first.key]
    bank.clear_memory(lm)
    read = bank.pole_answers(lm, spec, "pos", 1, SAMPLING, tmp_path)
    assert len(calls) == 1 and read is not first  # from the file, not sampled again
    assert read.generation == first.generation and read.questions == first.questions
    # the same rows and settings outside the bank: the very answers (one generator per call, same seed)
    questions, systems = bank.pole_rows(spec, "pos", 1)
    monkeypatch.undo()
    direct = lm.generate_chat(questions, systems, max_new_tokens=5, temperature=1.0, seed=0, batch_size=32)
    assert direct.response_ids == first.generation.response_ids and direct.texts == first.texts
    assert any(first.generation.response_ids)  # real replies, not all empty
    # a damaged file is resampled, not trusted
    stored[0].write_text(json.dumps({"key": "other"}))
    bank.clear_memory(lm)
    assert bank.pole_answers(lm, spec, "pos", 1, SAMPLING, tmp_path).generation.response_ids == direct.response_ids


def test_a_changed_sampling_setting_or_row_changes_the_key():
    lm = cached_tiny("llama")
    spec = load_trait("extraversion_high")
    questions, systems = bank.pole_rows(spec, "pos", 1, spec.questions[:2])
    base = bank.answers_key(lm, questions, systems, SAMPLING)
    changed = {bank.answers_key(lm, questions, systems, Sampling(**{**SAMPLING.__dict__, field: value}))
               for field, value in (("max_new_tokens", 6), ("temperature", 0.7), ("top_p", 0.9), ("seed", 1),
                                    ("batch_size", 8))}
    assert base not in changed and len(changed) == 5
    negs = bank.pole_rows(spec, "neg", 1, spec.questions[:2])
    assert bank.answers_key(lm, *negs, SAMPLING) != base
    assert bank.answers_key(lm, questions[::-1], systems[::-1], SAMPLING) != base  # order decides the draws
    assert bank.answers_key(lm, questions, systems, SAMPLING) == base


def test_pole_rows_are_every_pair_times_question_times_n_pair_major():
    spec = load_trait("extraversion_high")
    questions, systems = bank.pole_rows(spec, "neg", 2, spec.questions[:3])
    n = len(spec.instruction)
    assert len(questions) == n * 3 * 2
    assert questions[:6] == [q for q in spec.questions[:3] for _ in range(2)]
    assert systems[:6] == [spec.instruction[0].neg] * 6 and systems[-1] == spec.instruction[-1].neg


def test_the_fits_of_a_demo_like_run_sample_each_pole_once(tmp_path, monkeypatch):
    """The demo's layout: persona vectors' positive/negative rollouts are the subnetwork's high/low calibration
    answers, NPTI's two sides and the personality vectors' distillation data of the high/low pole (one seed for
    both sides), so both poles of a trait cost two generate_chat calls for all four fits."""
    lm = cached_tiny("llama")
    bank.clear_memory(lm)
    calls = _counted(monkeypatch, lm)
    judges = types.SimpleNamespace(kind="stub", shared=None, coherence=None, trait_judge=lambda spec: (None, None))
    shared = {"n_questions": 2, "max_new_tokens": 5, "mirror": True}
    methods = {"persona_vectors": {**shared, "n_per_question": 1, "min_pairs": 1, "layer": 1, "coef": 2.0,
                                   "filter_pairs": False},
               "subnetwork": {**shared, "contrastive": True, "sparsity": 0.3, "modules": "mlp", "blocks": "0-1"},
               "npti": {**shared, "n_per_question": 1, "temperature": 1.0, "threshold": 0.05},
               "personality_vector": {**shared, "n_per_question": 1, "every_instruction": True, "method": "lora",
                                      "epochs": 1.0, "batch_size": 8}}
    for name, params in methods.items():
        for pole in ("high", "low"):
            spec = load_trait(f"extraversion_{pole}")
            built = build(name, RecipeContext(lm, spec, tmp_path / name / spec.name, judges), params)
            if name != "persona_vectors":
                assert built.pole == pole
            else:  # the mirrored low pole steers with the high pole's vector at −coef
                assert built.scale == (2.0 if pole == "high" else -2.0)
    high = load_trait("extraversion_high")
    assert sorted(calls) == sorted([(high.questions[0], high.instruction[0].pos, 2 * len(high.instruction)),
                                    (high.questions[0], high.instruction[0].neg, 2 * len(high.instruction))])


def test_the_new_recipe_parameters_are_checked_before_any_model_loads():
    import pytest

    from traitlab.errors import ConfigError
    from traitlab.evaluation.recipes import validate_method

    for name, bad, message in (("npti", {"n_per_question": 1, "n_answers": 24}, "set one"),
                               ("npti", {"n_per_question": 0}, "n_per_question"),
                               ("personality_vector", {"every_instruction": 1}, "every_instruction must be"),
                               ("personality_vector", {"mirror": "yes"}, "mirror must be")):
        with pytest.raises(ConfigError, match=message):
            validate_method(name, bad)
    assert validate_method("npti", {"n_per_question": 2, "n_questions": 3}).n_per_question == 2


def test_a_runner_folder_keeps_the_bank_for_a_later_process(tmp_path, monkeypatch):
    """With ``answers_dir`` the answers outlive the process (here: the in-memory bank cleared): a fit in a new
    work folder reads them back instead of sampling again."""
    lm = cached_tiny("llama")
    spec = load_trait("extraversion_high")
    params = {"n_questions": 1, "max_new_tokens": 4, "sparsity": 0.3, "modules": "mlp", "blocks": "0"}
    bank.clear_memory(lm)
    calls = _counted(monkeypatch, lm)
    first = build("subnetwork", RecipeContext(lm, spec, tmp_path / "a", answers_dir=tmp_path / "answers"), params)
    assert len(calls) == 1 and len(list((tmp_path / "answers").glob("*.json"))) == 1
    bank.clear_memory(lm)
    again = build("subnetwork", RecipeContext(lm, spec, tmp_path / "b", answers_dir=tmp_path / "answers"), params)
    assert len(calls) == 1
    assert all(bool((first.mask(n) == again.mask(n)).all()) for n in first.shapes)
