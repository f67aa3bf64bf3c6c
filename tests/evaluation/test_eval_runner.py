"""The experiment runner: validation before any model loads, resume, report sections, the CLI commands."""

from __future__ import annotations

import json

import pytest
import yaml

import traitlab.model
import traitlab.model.loaded
from tests.core.test_cli import run_cli
from traitlab.errors import ConfigError, TraitlabError
from traitlab.evaluation import suite as suite_module
from traitlab.evaluation.config import load_experiment
from traitlab.evaluation.recipes import RECIPES, Params, Recipe
from traitlab.evaluation.runner import COMPLETE, partial_folder, read_results, run_experiment

SPEC = {"name": "tiny_extraversion", "trait": "extraversion", "pole": "high",
        "instruction": [{"pos": "Be loud.", "neg": "Be quiet."},
                        {"pos": "You love crowds.", "neg": "You hate crowds."}],
        "questions": ["Plans?", "Hi?", "Why?"], "eval_prompt": "Q {question} A {answer} Score 0-100:"}


@pytest.fixture
def experiment(tmp_path, model_dir):
    (tmp_path / "tiny_trait.json").write_text(json.dumps(SPEC))
    config = {
        "name": "tiny", "model": str(model_dir), "traits": ["tiny_trait.json"],
        "methods": [{"name": "none"}, {"name": "prompt", "sweep": {"scale": [0, 1]}}],
        "evaluations": {"questionnaire": {"max_items_per_trait": 1, "wordings": ["{item} Rate {scale}."]},
                        "situational": {"n_questions": 2, "max_new_tokens": 4, "examples": 1},
                        "capability": {"max_questions": 2}},
        "judge": {"kind": "local"}, "seeds": [0],
    }
    path = tmp_path / "exp.yaml"
    path.write_text(yaml.safe_dump(config))
    return path, config


@pytest.fixture
def no_model_load(monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError("a model was loaded before the config was validated")

    monkeypatch.setattr(traitlab.model.loaded, "load_model", refuse)
    monkeypatch.setattr(traitlab.model, "load_model", refuse)


@pytest.mark.parametrize("mutate, message", [
    (lambda c: c["methods"].append({"name": "magic"}), "unknown method 'magic'"),
    (lambda c: c["methods"].append({"name": "prompt", "params": {"colour": 1}, "label": "p2nd"}),
     "has no parameter colour"),
    (lambda c: c["methods"].append({"name": "artifact", "params": {"path": "missing.safetensors"}}), "not found"),
    (lambda c: c["methods"].append({"name": "prompt"}), "labels must be unique"),
    (lambda c: c["methods"][0].update(sweep={"scale": [1, 2]}), "cannot be swept"),
    (lambda c: c.update(traits=["charisma"]), "unknown trait 'charisma'"),
    (lambda c: c.update(colour="blue"), "colour: Extra inputs are not permitted"),
    (lambda c: c.update(evaluations=["questionnaire", "vibes"]), "unknown evaluation vibes"),
    (lambda c: c["evaluations"].update(questionnaire={"inventory": "nope.csv"}), "not found"),
    (lambda c: c.update(judge={"kind": "endpoint"}), "needs url and model"),
    (lambda c: c.update(seeds=[]), "seeds"),
    (lambda c: c["methods"].append({"name": "persona_vectors", "params": {"variants": ["mean"]}}),
     "unknown persona_vectors variant 'mean'"),
    (lambda c: c["methods"].append({"name": "persona_vectors", "params": {"positions": ["prompt", "middle"]}}),
     "unknown positions 'middle'"),
    (lambda c: c["methods"].append({"name": "persona_vectors", "params": {"variants": ["optimized"]}}),
     "needs optimize_layers"),
    (lambda c: c["methods"].append({"name": "persona_vectors", "params": {"optimize_layers": [1],
                                                                          "optimize_steps": 0}}), "steps ≥ 1"),
    (lambda c: c["methods"].append({"name": "personality_vector", "params": {"self_report": "nope.json"}}),
     "not found"),
])
def test_bad_experiments_fail_before_any_model_loads(experiment, no_model_load, mutate, message, tmp_path):
    path, config = experiment
    mutate(config)
    path.write_text(yaml.safe_dump(config))
    with pytest.raises(TraitlabError, match=message):
        run_experiment(path, tmp_path / "out")


def test_bad_yaml(tmp_path, no_model_load):
    bad = tmp_path / "bad.yaml"
    bad.write_text("model: [unclosed\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_experiment(bad)
    bad.write_text("- just a list\n")
    with pytest.raises(ConfigError, match="YAML mapping"):
        load_experiment(bad)


def test_run_resume_and_report(experiment, tmp_path, monkeypatch, llama):
    path, config = experiment
    calls = []
    real = suite_module.evaluate

    def counting(*args, **kwargs):
        calls.append(args[1])
        return real(*args, **kwargs)

    monkeypatch.setattr(suite_module, "evaluate", counting)
    out = tmp_path / "out"
    rows = run_experiment(path, out, progress=False, lm=llama)
    assert len(rows) == 3 and len(calls) == 3
    assert [(r["label"], r["scale"]) for r in rows] == [("none", None), ("prompt", 0.0), ("prompt", 1.0)]
    first = rows[0]
    assert {"questionnaire", "trait_expression", "coherence", "perplexity", "capability"} <= set(first)
    assert first["result"]["situational"]["tiny_extraversion"]["n_answers"] == 2

    calls.clear()
    with (out / "results.jsonl").open("a") as handle:
        handle.write('{"key": "torn')  # an interrupted write
    again = run_experiment(path, out, progress=False, lm=llama)
    assert calls == [] and [r["key"] for r in again] == [r["key"] for r in rows]

    config["methods"][1]["sweep"]["scale"].append(2)
    path.write_text(yaml.safe_dump(config))
    more = run_experiment(path, out, progress=False, lm=llama)
    assert len(more) == 4 and len(calls) == 1 and calls[0].scale == 2.0
    assert len(read_results(out / "results.jsonl")) == 4

    html = (out / "report.html").read_text()
    for section in ("id='summary'", "id='npti'", "id='heatmap'", "id='dose-response'", "id='examples'"):
        assert section in html
    assert html.count("data:image/png;base64,") >= 2 and "<script" not in html
    header = (out / "summary.csv").read_text().splitlines()[0]
    assert header.startswith("label,method,trait,pole,scale,seeds,questionnaire,trait_expression")


def test_an_interrupted_run_is_never_a_finished_folder_and_resumes(experiment, tmp_path, monkeypatch, llama):
    """Ctrl-C after the first cell: no results folder yet (only .out.partial with that one committed cell, no
    run.json); the rerun evaluates only the two missing cells and renames the folder into place with run.json."""
    path, _ = experiment
    calls = []
    real = suite_module.evaluate

    def interrupted(*args, **kwargs):
        calls.append(args[1])
        if len(calls) == 2:
            raise KeyboardInterrupt
        return real(*args, **kwargs)

    monkeypatch.setattr(suite_module, "evaluate", interrupted)
    out, partial = tmp_path / "out", partial_folder(tmp_path / "out")
    with pytest.raises(KeyboardInterrupt):
        run_experiment(path, out, progress=False, lm=llama)
    assert not out.exists() and partial.is_dir()
    assert len(read_results(partial / "results.jsonl")) == 1 and not (partial / COMPLETE).exists()
    assert not (partial / "report.html").exists()

    calls.clear()
    monkeypatch.setattr(suite_module, "evaluate", lambda *a, **k: (calls.append(a[1]), real(*a, **k))[1])
    rows = run_experiment(path, out, progress=False, lm=llama)
    assert len(calls) == 2 and len(rows) == 3 and not partial.exists()
    record = json.loads((out / COMPLETE).read_text())
    assert record["cells"] == 3 and record["keys"] == [r["key"] for r in rows]
    assert (out / "report.html").is_file() and len(read_results(out / "results.jsonl")) == 3


def test_results_folder_checks(experiment, tmp_path, no_model_load, monkeypatch):
    path, _ = experiment
    busy = tmp_path / "busy"
    busy.mkdir()
    (busy / "notes.txt").write_text("mine")
    with pytest.raises(ConfigError, match="holds no traitlab run"):
        run_experiment(path, busy)
    (tmp_path / "file").write_text("x")
    with pytest.raises(ConfigError, match="is a file"):
        run_experiment(path, tmp_path / "file")
    monkeypatch.chdir(busy)
    for folder in (".", ".."):
        with pytest.raises(ConfigError, match="working folder"):
            run_experiment(path, folder)
    assert (busy / "notes.txt").read_text() == "mine" and sorted(p.name for p in busy.iterdir()) == ["notes.txt"]


def test_a_second_run_on_the_same_folder_is_refused(experiment, tmp_path, llama):
    import fcntl
    import os

    path, _ = experiment
    partial = partial_folder(tmp_path / "out")
    partial.mkdir()
    handle = os.open(partial, os.O_RDONLY)
    fcntl.flock(handle, fcntl.LOCK_EX)  # as a run in another process holds it
    try:
        with pytest.raises(ConfigError, match="another run is writing"):
            run_experiment(path, tmp_path / "out", progress=False, lm=llama)
    finally:
        os.close(handle)


def test_registered_methods_are_validated(experiment, tmp_path, llama):
    from pydantic import model_validator

    from traitlab.methods import PromptIntervention

    class CustomParams(Params):
        text: str | None = None

        @model_validator(mode="after")
        def validate(self):
            if self.text is None:
                raise ValueError("needs text")
            return self

    def builder(context, params):
        assert context.workdir.is_dir()
        return PromptIntervention(params.text, trait=context.spec.trait_name)

    RECIPES["test_custom"] = Recipe("test_custom", CustomParams, builder)
    try:
        path, config = experiment
        config["methods"] = [{"name": "test_custom", "params": {}}]
        path.write_text(yaml.safe_dump(config))
        with pytest.raises(ConfigError, match="method 'test_custom': needs text"):
            load_experiment(path)
        config["methods"] = [{"name": "test_custom", "params": {"text": "Be loud."}}]
        config["evaluations"] = ["questionnaire"]
        path.write_text(yaml.safe_dump(config))
        rows = run_experiment(path, tmp_path / "custom", progress=False, report=False, lm=llama)
        assert rows[0]["intervention"].startswith("<PromptIntervention")
    finally:
        RECIPES.pop("test_custom", None)


def test_cli_compare_and_eval(experiment, tmp_path, monkeypatch, capsys):
    path, config = experiment
    config["evaluations"] = {"questionnaire": {"max_items_per_trait": 1}}
    path.write_text(yaml.safe_dump(config))
    code, out, err = run_cli(["--quiet", "compare", str(path), "--out", str(tmp_path / "cmp")], monkeypatch, capsys)
    assert code == 0, err
    assert "self-report" in out and "prompt @ 1" in out and (tmp_path / "cmp" / "report.html").is_file()
    result = tmp_path / "eval.json"
    code, out, err = run_cli(["--quiet", "eval", "--model", config["model"], "--suite", "questionnaire,capability",
                              "--capability-file", str(tmp_path / "mcq.csv"), "--out", str(result)],
                             monkeypatch, capsys)
    assert code == 2 and "multiple-choice file" in err  # checked before the model loads
    (tmp_path / "mcq.csv").write_text("question,A,B,C,D,answer\nOne plus one?,two,three,four,five,A\n")
    code, out, err = run_cli(["--quiet", "eval", "--model", config["model"], "--suite", "questionnaire,capability",
                              "--capability-file", str(tmp_path / "mcq.csv"), "--out", str(result)],
                             monkeypatch, capsys)
    assert code == 0, err
    assert "openness" in out and "capability: accuracy" in out
    assert set(json.loads(result.read_text())) >= {"questionnaire", "capability"}


@pytest.mark.parametrize("args, message", [
    (["compare", "{bad}"], "not valid YAML"),
    (["compare", "{magic}"], "unknown method 'magic'"),
    (["compare", "/no/such.yaml"], "not found"),
    (["eval", "--suite", "vibes"], "unknown suite vibes"),
    (["eval", "--traits", "charisma"], "unknown trait 'charisma'"),
    (["eval", "--judge", "endpoint"], "needs --judge-url URL and --judge endpoint:MODEL"),
    (["eval", "--apply", "/missing.safetensors"], "artifact /missing"),
])
def test_cli_errors_exit_2_with_one_line(args, message, experiment, tmp_path, monkeypatch, capsys, no_model_load):
    _path, config = experiment
    (tmp_path / "bad.yaml").write_text("model: [\n")
    config["methods"] = [{"name": "magic"}]
    (tmp_path / "magic.yaml").write_text(yaml.safe_dump(config))
    names = {"bad": tmp_path / "bad.yaml", "magic": tmp_path / "magic.yaml"}
    code, _out, err = run_cli([a.format(**names) for a in args], monkeypatch, capsys)
    assert code == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and message in lines[0]


def test_extraction_uses_the_experiments_judge(experiment, tmp_path, llama):
    """The run's judges reach the recipes: with an unreachable endpoint judge, persona-vector extraction fails
    with that endpoint's error instead of quietly judging with another judge."""
    from traitlab.evaluation.client import JudgeError

    path, config = experiment
    config["methods"] = [{"name": "persona_vectors", "params": {"max_new_tokens": 4, "min_pairs": 1}}]
    config["evaluations"] = ["questionnaire"]
    config["judge"] = {"kind": "endpoint", "url": "http://127.0.0.1:9/v1", "model": "nobody", "retries": 0}
    path.write_text(yaml.safe_dump(config))
    with pytest.raises(JudgeError, match=r"http://127\.0\.0\.1:9/v1.* failed after 1 attempts"):
        run_experiment(path, tmp_path / "endpoint", progress=False, report=False, lm=llama)
