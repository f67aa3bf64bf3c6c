"""``traitlab serve`` options: every user mistake is one ``error:`` line with exit code 2, found before the
model loads (persona specs, files, names, limits); a served subprocess prints where it listens."""

from __future__ import annotations

import pytest
import torch

from tests.core.test_cli import run_cli
from traitlab.methods import ResidualSteering
from traitlab.model.tiny import tiny_model

MISSING_MODEL = "/nonexistent/model/folder"


@pytest.fixture(scope="module")
def artifact(tmp_path_factory):
    folder = tmp_path_factory.mktemp("serve-cli")
    path = ResidualSteering({1: torch.ones(64)}).save(folder / "v.tl.safetensors")
    junk = folder / "junk.safetensors"
    junk.write_text("not an artifact")
    other = ResidualSteering({1: torch.ones(64)}, fingerprint=tiny_model("llama", seed=5).fingerprint).save(
        folder / "other.tl.safetensors")
    return {"ok": path, "junk": junk, "other": other}


@pytest.mark.parametrize("args,needle", [
    (["--persona", "novalue"], "NAME=ARTIFACT"),
    (["--persona", "1abc=x.safetensors"], "must start with a letter"),
    (["--persona", "a=/nope/missing.safetensors"], "not found"),
    (["--persona", "a={junk}"], "not a readable safetensors artifact"),
    (["--persona", "a={ok}", "--persona", "a={ok}"], "twice"),
    (["--persona", "a={ok}:nan"], "finite"),
    (["--persona", "a={ok}:500"], "outside"),
    (["--port", "0"], "--port"),
    (["--port", "70000"], "--port"),
    (["--max-batch", "0"], "--max-batch"),
    (["--api-key", " "], "empty"),
])
def test_serve_option_errors_come_before_the_model_loads(artifact, args, needle, monkeypatch, capsys):
    args = [a.format(**artifact) for a in args]
    code, _, err = run_cli(["serve", "--model", MISSING_MODEL, *args], monkeypatch, capsys)
    assert code == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error:") and needle in lines[0], err
    assert "Traceback" not in err


def test_serve_rejects_an_artifact_of_another_model(artifact, tmp_path, monkeypatch, capsys):
    lm = tiny_model("llama")
    lm.model.save_pretrained(tmp_path / "m")
    lm.tokenizer.save_pretrained(tmp_path / "m")
    code, _, err = run_cli(["serve", "--model", str(tmp_path / "m"), "--persona", f"x={artifact['other']}"],
                           monkeypatch, capsys)
    assert code == 2 and "made for another model" in err and len(err.strip().splitlines()) == 1


def test_serve_reports_a_missing_model(artifact, monkeypatch, capsys):
    code, _, err = run_cli(["serve", "--model", MISSING_MODEL, "--persona", f"a={artifact['ok']}"],
                           monkeypatch, capsys)
    assert code == 2 and "not found" in err


def test_served_subprocess_announces_itself(server):
    text = server.log.read_text()
    assert "traitlab serve: tiny with 4 persona(s) on http://127.0.0.1:" in text
    assert "bearer key required" in text
