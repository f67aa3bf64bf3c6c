"""CLI: success paths, and one-line errors with exit code 2 for user mistakes (never a traceback)."""

from __future__ import annotations

import shutil
import subprocess
import sys

import pytest
import torch

from traitlab.cli import main
from traitlab.methods import ResidualSteering
from traitlab.model.tiny import tiny_model


def run_cli(args: list[str], monkeypatch, capsys) -> tuple[int, str, str]:
    monkeypatch.setattr(sys, "argv", ["traitlab", *args])
    code = 0
    try:
        main()
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else 1
    out, err = capsys.readouterr()
    return code, out, err


def test_info_prints_the_family_row(model_dir, monkeypatch, capsys):
    code, out, _ = run_cli(["info", "--model", str(model_dir)], monkeypatch, capsys)
    assert code == 0
    for expected in ("model.layers", "mlp.act_fn", "self_attn.o_proj", "hidden_size", "64", "fingerprint"):
        assert expected in out


def test_chat_one_shot_is_greedy_and_reproducible(model_dir, monkeypatch, capsys):
    args = ["chat", "--model", str(model_dir), "-p", "hello", "--max-new-tokens", "6"]
    first = run_cli(args, monkeypatch, capsys)
    second = run_cli(args, monkeypatch, capsys)
    assert first[0] == 0 and first[1] == second[1] and first[1].strip()


def test_chat_applies_an_artifact(model_dir, tmp_path, monkeypatch, capsys):
    lm = tiny_model("llama")
    artifact = ResidualSteering({2: torch.randn(64, generator=torch.Generator().manual_seed(0))},
                                fingerprint=lm.fingerprint).save(tmp_path / "v.tl.safetensors")
    base = run_cli(["chat", "--model", str(model_dir), "-p", "hello", "--max-new-tokens", "8"], monkeypatch, capsys)
    steered = run_cli(["chat", "--model", str(model_dir), "-p", "hello", "--max-new-tokens", "8",
                       "--apply", f"{artifact}:6"], monkeypatch, capsys)
    assert steered[0] == 0 and steered[1] != base[1]


def test_interactive_chat_reads_stdin(model_dir, monkeypatch, capsys):
    import io

    monkeypatch.setattr(sys, "stdin", io.StringIO("hello\nagain\n\n"))
    code, out, _ = run_cli(["chat", "--model", str(model_dir), "--max-new-tokens", "4"], monkeypatch, capsys)
    assert code == 0 and len(out.strip().splitlines()) >= 2


@pytest.mark.parametrize("args, message", [
    (["info", "--model", "/no/such/folder"], "not found"),
    (["info", "--model", "not a model id"], "not found"),
    (["info", "--model", "{tmp}"], "has no config.json"),
    (["chat", "--model", "{model}", "-p", "hi", "--apply", "/missing.safetensors"], "artifact /missing"),
    (["chat", "--model", "{model}", "-p", "hi", "--apply", "{garbage}"], "not a readable safetensors"),
    (["chat", "--model", "{model}", "-p", "hi", "--apply", "{foreign}"], "made for another model"),
    (["chat", "--model", "{model}", "-p", "hi", "--temperature", "-1"], "temperature"),
    (["info", "--model", "{model}", "--family", "{badjson}"], "not valid JSON"),
    (["info", "--model", "{model}", "--family", "{badfamily}"], "missing mlp.nothing"),
])
def test_user_errors_exit_2_with_one_line(args, message, model_dir, tmp_path, monkeypatch, capsys):
    garbage = tmp_path / "garbage.safetensors"
    garbage.write_bytes(b"garbage")
    foreign = ResidualSteering({1: torch.ones(64)}, fingerprint=tiny_model("llama", seed=3).fingerprint).save(
        tmp_path / "foreign.safetensors")
    (tmp_path / "bad.json").write_text("{nope")
    (tmp_path / "family.json").write_text('{"act": "mlp.nothing"}')
    names = dict(tmp=tmp_path, model=model_dir, garbage=garbage, foreign=foreign, badjson=tmp_path / "bad.json",
                 badfamily=tmp_path / "family.json")
    code, out, err = run_cli([a.format(**names) for a in args], monkeypatch, capsys)
    assert code == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and message in lines[0]
    assert "Traceback" not in err + out


def test_usage_errors_exit_2(monkeypatch, capsys):
    code, _, err = run_cli(["chat", "--no-such-option"], monkeypatch, capsys)
    assert code == 2 and "No such option" in err


def test_console_script_runs(model_dir):
    exe = shutil.which("traitlab")
    assert exe, "the traitlab console script is not installed"
    ok = subprocess.run([exe, "--quiet", "info", "--model", str(model_dir)], capture_output=True, text=True)
    assert ok.returncode == 0 and "llama" in ok.stdout
    bad = subprocess.run([exe, "info", "--model", "/nope"], capture_output=True, text=True)
    assert bad.returncode == 2 and bad.stderr.count("\n") == 1 and "Traceback" not in bad.stderr
