"""The built-in trait library: every spec loads and meets the counts; the Big Five poles are exactly what
``tools/build_big_five_library.py`` makes from the organism's generator; the persona_vectors loader."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import pytest

from traitlab.errors import ConfigError
from traitlab.traits import BIG_FIVE, POLES, TraitSpec, from_persona_vectors, list_traits, load_trait, save_trait
from traitlab.traits.load import LIBRARY

ROOT = Path(__file__).resolve().parents[2]
BEHAVIOURAL = ("evil", "sycophancy", "hallucination", "humor", "optimism", "impoliteness", "apathy")
BIG_FIVE_POLES = tuple(f"{t}_{p}" for t in BIG_FIVE for p in POLES)


def _build_tool():
    path = ROOT / "tools" / "build_big_five_library.py"
    spec = importlib.util.spec_from_file_location("build_big_five_library", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def built() -> dict[str, TraitSpec]:
    return _build_tool().build_specs()


def test_the_library_has_the_seventeen_traits():
    assert set(list_traits()) == set(BIG_FIVE_POLES) | set(BEHAVIOURAL)
    assert len(list(LIBRARY.glob("*.json"))) == 17


@pytest.mark.parametrize("name", sorted(BIG_FIVE_POLES + BEHAVIOURAL))
def test_every_library_spec_meets_the_counts(name):
    spec = load_trait(name)
    assert spec.name == name
    assert spec.description
    assert len(spec.instruction) == 5
    assert len({p.pos for p in spec.instruction}) == 5 and len({p.neg for p in spec.instruction}) == 5
    assert all(p.pos != p.neg for p in spec.instruction)
    assert len(spec.questions) == 20 and len(set(spec.questions)) == 20
    assert len(spec.eval_questions) == 20 and len(set(spec.eval_questions)) == 20
    assert not set(spec.questions) & set(spec.eval_questions), "extract and eval questions must be disjoint"
    assert spec.eval_prompt.count("{question}") == 1 and spec.eval_prompt.count("{answer}") == 1
    assert "0" in spec.eval_prompt and "100" in spec.eval_prompt
    assert "nothing else" in spec.eval_prompt.strip().splitlines()[-1]
    rubric = spec.rubric("Q?", "A.")
    assert "Q?" in rubric and "A." in rubric and "{question}" not in rubric
    # the file is exactly what save_trait writes
    assert (LIBRARY / f"{name}.json").read_text() == spec.model_dump_json(indent=2) + "\n"


@pytest.mark.parametrize("name", BEHAVIOURAL)
def test_behavioural_traits_have_no_pole(name):
    spec = load_trait(name)
    assert spec.trait == name and spec.pole is None
    assert "REFUSAL" in spec.eval_prompt


@pytest.mark.parametrize("name", BIG_FIVE_POLES)
def test_big_five_specs_match_the_build_script(name, built):
    spec = load_trait(name)
    trait, pole = name.rsplit("_", 1)
    assert spec.trait == trait and spec.pole == pole
    assert spec == built[name], "library is stale: run python tools/build_big_five_library.py"


def test_build_script_check_mode_passes():
    assert _build_tool().main(["--check"]) == 0


@pytest.mark.parametrize("name", BIG_FIVE_POLES)
def test_big_five_pairs_use_the_organism_prompts_in_five_styles(name):
    import random

    from traitlab.organism.corpus import heldout_questions, pole_description, train_questions

    tool = _build_tool()
    trait, pole = name.rsplit("_", 1)
    other = "low" if pole == "high" else "high"
    spec = load_trait(name)
    styles = {tool.prompt_style(p.pos) for p in spec.instruction}
    assert len(styles) == 5 and "other" not in styles
    seeds = [f"{trait}-{pole}-{k}" for k in range(200)]
    made = {(pole_description(trait, pole, random.Random(s)), pole_description(trait, other, random.Random(s)))
            for s in seeds}
    assert all((p.pos, p.neg) in made for p in spec.instruction)
    seed = BIG_FIVE.index(trait) + 1
    assert set(spec.questions) <= set(train_questions(seed))
    assert set(spec.eval_questions) <= set(heldout_questions(seed))


@pytest.mark.parametrize("name", BIG_FIVE_POLES)
def test_big_five_rubrics_score_the_pole(name):
    tool = _build_tool()
    trait, pole = name.rsplit("_", 1)
    other = "low" if pole == "high" else "high"
    lines = load_trait(name).eval_prompt.splitlines()
    top = next(line for line in lines if line.startswith("- 100:"))
    bottom = next(line for line in lines if line.startswith("- 0:"))
    assert tool.LABELS[(trait, pole)] in top and tool.LABELS[(trait, other)] in bottom
    assert any(line.startswith("- 50:") and "no evidence" in line for line in lines)


def test_extraversion_low_rubric_gives_100_to_introversion():
    top = next(line for line in load_trait("extraversion_low").eval_prompt.splitlines() if line.startswith("- 100"))
    assert "introversion" in top


def test_save_and_load_roundtrip(tmp_path):
    spec = load_trait("humor")
    path = save_trait(spec, tmp_path / "mine.json")
    assert load_trait(path) == spec
    with pytest.raises(ConfigError, match="does not exist"):
        save_trait(spec, tmp_path / "missing" / "x.json")


def test_persona_vectors_loader(shared_data):
    root = shared_data / "persona_vectors"
    files = sorted((root / "trait_data_extract").glob("*.json"))
    if not files:
        pytest.skip(f"no persona_vectors trait files under {root}")
    for path in files:
        spec = from_persona_vectors(path)
        raw = json.loads(path.read_text())
        assert spec.name == path.stem
        assert len(spec.instruction) == len(raw["instruction"]) >= 1
        assert spec.questions == raw["questions"]
        twin = root / "trait_data_eval" / path.name
        if twin.is_file():
            assert spec.eval_questions == json.loads(twin.read_text())["questions"]
        assert "{question}" in spec.eval_prompt and "{answer}" in spec.eval_prompt
        assert load_trait(path) == spec  # dispatch on the layout


def test_persona_vectors_loader_errors(tmp_path):
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    with pytest.raises(ConfigError, match="not valid JSON"):
        from_persona_vectors(bad)
    bad.write_text(json.dumps({"questions": ["q"]}))
    with pytest.raises(ConfigError, match="not a persona_vectors trait file"):
        from_persona_vectors(bad)
    with pytest.raises(ConfigError, match="unknown trait"):
        load_trait("no_such_trait")
