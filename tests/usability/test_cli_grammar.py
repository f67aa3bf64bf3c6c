"""Issue #25: one CLI grammar — bare Big Five names, ``--judge KIND[:MODEL]``, artifacts that supply their trait,
``:SCALE`` errors, the effective scale printed, the sweep warning, ``--version``, fast ``--help`` and help
without ``<str>`` tags, progress lines off a terminal."""

from __future__ import annotations

import subprocess
import sys
import time

import pytest
import torch

from tests.core.test_cli import run_cli
from tests.helpers import save_model
from traitlab.cli.judging import JudgeChoice, parse_judge
from traitlab.errors import ConfigError
from traitlab.interventions import parse_apply_spec
from traitlab.methods.persona_vectors import PersonaVector
from traitlab.model.tiny import tiny_model
from traitlab.traits import load_trait


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    folder = tmp_path_factory.mktemp("grammar")
    lm = tiny_model("llama")
    save_model(lm, folder / "model")
    table = torch.randn(lm.num_layers + 1, lm.hidden_size, generator=torch.Generator().manual_seed(0))
    PersonaVector({"response_avg": table}, [2], trait="extraversion", pole="high", scale=1.5,
                  fingerprint=lm.fingerprint, extra={"spec": "extraversion_high"}).save(folder / "v.safetensors")
    return folder


def test_bare_big_five_names_are_the_high_pole_everywhere():
    assert load_trait("extraversion").name == "extraversion_high"
    assert load_trait("extraversion_low").pole == "low"
    with pytest.raises(ConfigError, match="unknown trait 'extraversionn'"):
        load_trait("extraversionn")


@pytest.mark.parametrize("judge, url, model_name, expected", [
    ("auto", None, None, JudgeChoice("oracle")),  # on the organism
    ("embedding", None, None, JudgeChoice("embedding")),
    ("local:gemma-3-270m", None, None, JudgeChoice("local", "gemma-3-270m")),
    ("local", None, "gemma-3-270m", JudgeChoice("local", "gemma-3-270m")),  # the old eval spelling still works
    ("endpoint:gpt-4.1-mini", "http://x/v1", None, JudgeChoice("endpoint", "gpt-4.1-mini")),
    ("endpoint", "http://x/v1", "gpt-4.1-mini", JudgeChoice("endpoint", "gpt-4.1-mini")),
])
def test_judge_kind_model_grammar(judge, url, model_name, expected):
    assert parse_judge(judge, url, model_name, "traitlab/persona-tiny") == expected
    assert parse_judge("auto", "http://x/v1", "m", "smollm2-135m-instruct") == JudgeChoice("endpoint", "m")
    assert parse_judge("auto", None, None, "smollm2-135m-instruct") == JudgeChoice("embedding")


@pytest.mark.parametrize("judge, url, message", [
    ("endpoint", None, "needs --judge-url URL and --judge endpoint:MODEL"),
    ("local", None, "--judge local:MODEL"),
    ("embedding:foo", None, "takes no model name"),
    ("gpt4", None, "unknown judge 'gpt4'"),
    ("none", None, "unknown judge 'none'"),  # only where a command can do without a judge
    ("oracle", "http://x/v1", "--judge-url is for an endpoint judge"),
])
def test_judge_grammar_errors(judge, url, message):
    with pytest.raises(ConfigError, match=message.replace("(", r"\(")):
        parse_judge(judge, url, None, "smollm2-135m-instruct")


def test_apply_scale_errors_name_the_scale(saved):
    artifact = saved / "v.safetensors"
    assert parse_apply_spec(f"{artifact}:2.5") == (str(artifact), 2.5)
    assert parse_apply_spec(str(artifact)) == (str(artifact), 1.0)
    with pytest.raises(ConfigError, match=f"bad scale 'abc' in --apply {artifact}:abc: not a number"):
        parse_apply_spec(f"{artifact}:abc")
    with pytest.raises(ConfigError, match="bad scale 'x'"):
        parse_apply_spec("missing.safetensors:x")


def test_chat_prints_the_effective_scale(saved, monkeypatch, capsys):
    code, out, err = run_cli(["chat", "--model", str(saved / "model"), "-p", "hi", "--max-new-tokens", "3",
                              "--apply", f"{saved / 'v.safetensors'}:2"], monkeypatch, capsys)
    assert code == 0 and out.strip()
    assert "effective scale 3 (stored 1.5 × --apply 2)" in err


def test_bad_scale_on_the_command_line_is_one_error_line(saved, monkeypatch, capsys):
    code, _, err = run_cli(["chat", "--model", str(saved / "model"), "-p", "hi",
                            "--apply", f"{saved / 'v.safetensors'}:abc"], monkeypatch, capsys)
    assert code == 2 and err.strip().splitlines() == [
        f"error: bad scale 'abc' in --apply {saved / 'v.safetensors'}:abc: not a number"]


def test_extract_takes_a_bare_name_and_no_judge_on_the_organism(tmp_path, monkeypatch, capsys):
    out = tmp_path / "v.safetensors"
    code, printed, _ = run_cli(["-q", "vectors", "extract", "--trait", "extraversion", "--judge", "none",
                                "--max-new-tokens", "8", "--min-pairs", "3", "-o", str(out)], monkeypatch, capsys)
    assert code == 0 and "no judge: every pair kept" in printed
    vector = PersonaVector.load(out)
    assert vector.extra["spec"] == "extraversion_high" and vector.hyperparameters["judged"] is False
    assert vector.extra["pairs_kept"] == vector.extra["pairs_total"]


def test_sweep_needs_no_trait_and_warns_when_it_barely_steers(saved, monkeypatch, capsys):
    from traitlab.cli.vectors import artifact_trait, warn_small_gain
    from traitlab.methods.persona_sweep import SweepCell, SweepResult

    assert artifact_trait(PersonaVector.load(saved / "v.safetensors"), saved / "v.safetensors") == "extraversion_high"
    cell = SweepCell(layer=2, coef=4.0, trait=52.0, coherence=80.0, n=10)
    assert warn_small_gain(SweepResult([cell], cell, 50.0, 50.0)) == pytest.approx(2.0)
    err = capsys.readouterr().err
    assert "moves 10 answers' trait score by +2.0 points over the unsteered 50.0 (less than 5)" in " ".join(err.split())
    strong = SweepCell(layer=2, coef=4.0, trait=70.0, coherence=80.0, n=10)
    warn_small_gain(SweepResult([strong], strong, 50.0, 50.0))
    assert capsys.readouterr().err == ""


def test_version_and_help_are_fast_and_plain():
    start = time.perf_counter()
    version = subprocess.run([sys.executable, "-m", "traitlab", "--version"], capture_output=True, text=True)
    assert version.returncode == 0 and version.stdout.startswith("traitlab 0.")
    helped = subprocess.run([sys.executable, "-X", "importtime", "-m", "traitlab", "--help"], capture_output=True,
                            text=True)
    elapsed = time.perf_counter() - start
    assert helped.returncode == 0 and "vectors" in helped.stdout and "--version" in helped.stdout
    imported = {line.split("|")[-1].strip() for line in helped.stderr.splitlines() if "|" in line}
    assert "torch" not in imported and "transformers" not in imported  # what made --help take 5.5 s
    assert elapsed < 10  # two interpreters; the figure the issue asks for (< 1 s) is measured in docs/cli.md
    sub = subprocess.run([sys.executable, "-m", "traitlab", "vectors", "extract", "--help"], capture_output=True,
                         text=True, env={"COLUMNS": "200", "PATH": "", "PYTHONPATH": ":".join(sys.path)})
    assert sub.returncode == 0 and "KIND[:MODEL]" in sub.stdout
    assert "<str>" not in sub.stdout and "<bool>" not in sub.stdout and "<int>" not in sub.stdout


def test_progress_off_a_terminal_is_plain_labelled_lines(capsys):
    from traitlab.progress import activity, set_lines, set_quiet, track

    set_quiet(False)  # a CLI test before may have run with -q
    set_lines(False)
    assert list(track(range(3), "library use", total=3)) == [0, 1, 2]
    assert capsys.readouterr().err == ""  # library code off a terminal stays silent
    set_lines(True)  # as the CLI sets it
    with activity("persona vectors extraversion_high"):
        assert list(track(range(3), "layer 4", total=3)) == [0, 1, 2]
    set_lines(False)
    lines = capsys.readouterr().err.splitlines()
    assert lines[0] == "persona vectors extraversion_high: layer 4 (3 steps) ..."
    assert lines[1].startswith("persona vectors extraversion_high: layer 4: done in ")


def test_sweep_of_a_custom_spec_artifact_asks_for_its_file(saved, monkeypatch, capsys):
    vector = PersonaVector.load(saved / "v.safetensors")
    vector.extra = {"spec": "my_persona"}
    vector.save(saved / "custom.safetensors")
    code, _, err = run_cli(["vectors", "sweep", str(saved / "custom.safetensors"), "--model", str(saved / "model"),
                            "-o", str(saved / "s.safetensors")], monkeypatch, capsys)
    assert code == 2 and err.strip().splitlines() == [
        f"error: {saved / 'custom.safetensors'} was made for trait spec 'my_persona', which is not built in; give "
        "its JSON file with --trait"]
