"""``traitlab subnet find/show/export`` on a tiny model, and one-line errors (exit 2) checked before loading."""

from __future__ import annotations

import json

import pytest

from tests.core.test_cli import run_cli
from tests.subnetworks.helpers import SMALL_SPEC
from traitlab.registry import load_intervention


@pytest.fixture
def spec_file(tmp_path):
    path = tmp_path / "chatty.json"
    path.write_text(json.dumps(SMALL_SPEC))
    return path


FAST = ["--max-new-tokens", "4", "--temperature", "0"]


def test_find_show_compare_and_export(model_dir, spec_file, tmp_path, monkeypatch, capsys):
    high, low = tmp_path / "high.tl.safetensors", tmp_path / "low.tl.safetensors"
    code, out, err = run_cli(["subnet", "find", "--model", str(model_dir), "--trait", str(spec_file), "--contrastive",
                              "--sparsity", "0.5", "--out", str(high), "--pair-out", str(low), "--disjoint", "kept",
                              "--modules", "mlp", "--layers", "1-2", *FAST], monkeypatch, capsys)
    assert code == 0, err
    assert "sparsity 0.500" in out and low.is_file()
    mask = load_intervention(high)
    assert mask.pole == "high" and mask.hyperparameters["disjoint"] == "kept"
    plot = tmp_path / "overlap.png"
    code, out, err = run_cli(["subnet", "show", str(high), "--compare", str(low), "--plot", str(plot)],
                             monkeypatch, capsys)
    assert code == 0, err
    assert "Jaccard" in out and "mlp.down_proj" in out and plot.stat().st_size > 1000
    assert "0.000" in out  # disjoint kept sets
    code, out, err = run_cli(["subnet", "show", str(high), "--plot", str(tmp_path / "sparsity.png")],
                             monkeypatch, capsys)
    assert code == 0 and (tmp_path / "sparsity.png").is_file()
    # as in a fresh process, where transformers is imported after the CLI quiets the libraries: bars enabled
    from transformers.utils import logging as hf_logging

    monkeypatch.setattr("traitlab.cli._quiet_libraries", lambda: None)
    bars = hf_logging.is_progress_bar_enabled()
    hf_logging.enable_progress_bar()
    try:
        code, out, err = run_cli(["subnet", "export", str(high), "--model", str(model_dir), "--out",
                                  str(tmp_path / "exported")], monkeypatch, capsys)
    finally:
        if not bars:
            hf_logging.disable_progress_bar()
    assert code == 0, err
    assert (tmp_path / "exported" / "config.json").is_file()
    assert "Writing model shards" not in err and "%|" not in err  # no transformers progress bar off a terminal


def test_find_from_texts_without_system(model_dir, tmp_path, monkeypatch, capsys):
    texts = tmp_path / "p.jsonl"
    texts.write_text('{"prompt": "Plans?", "response": "Party with everyone!"}\n{"text": "I love crowds."}\n')
    out = tmp_path / "t.tl.safetensors"
    code, _, err = run_cli(["subnet", "find", "--model", str(model_dir), "--texts", str(texts), "--no-system",
                            "--positions", "all", "--out", str(out)], monkeypatch, capsys)
    assert code == 0, err
    mask = load_intervention(out)
    assert mask.hyperparameters["with_system"] is False and mask.hyperparameters["positions"] == "all"


@pytest.mark.parametrize("args, message", [
    (["find", "--out", "{tmp}/a.safetensors"], "exactly one persona"),
    (["find", "--trait", "no_such_trait", "--out", "{tmp}/a.safetensors"], "no_such_trait"),
    (["find", "--trait", "{spec}", "--pole", "middle", "--out", "{tmp}/a.safetensors"], "high or low"),
    (["find", "--trait", "{spec}", "--sparsity", "1.5", "--out", "{tmp}/a.safetensors"], "sparsity"),
    (["find", "--trait", "{spec}", "--modules", "lm_head", "--out", "{tmp}/a.safetensors"], "module filter"),
    (["find", "--trait", "{spec}", "--layers", "a-b", "--out", "{tmp}/a.safetensors"], "blocks"),
    (["find", "--trait", "{spec}", "--layers", "7", "--out", "{tmp}/a.safetensors"], "out of range"),
    (["find", "--trait", "{spec}", "--positions", "prompt", "--out", "{tmp}/a.safetensors"], "response or all"),
    (["find", "--trait", "{spec}", "--out", "/no/such/dir/a.safetensors"], "does not exist"),
    (["find", "--trait", "{spec}", "--contrastive", "--disjoint", "kept", "--out", "{tmp}/a.safetensors",
      "--pair-out", "{tmp}/b.safetensors"], "sparsity ≥ 0.5"),
    (["find", "--description", "Be loud.", "--contrastive", "--out", "{tmp}/a.safetensors"],
     "--reject-description"),
    (["find", "--texts", "{tmp}/missing.jsonl", "--out", "{tmp}/a.safetensors"], "not found"),
    (["show", "{tmp}/missing.safetensors"], "not found"),
    (["export", "{tmp}/missing.safetensors", "--out", "{tmp}/x"], "not found"),
])
def test_user_errors_exit_2_with_one_line(args, message, model_dir, spec_file, tmp_path, monkeypatch, capsys):
    filled = [a.replace("{tmp}", str(tmp_path)).replace("{spec}", str(spec_file)) for a in args]
    code, _, err = run_cli(["subnet", *filled, "--model", str(model_dir)] if filled[0] != "show" else
                           ["subnet", *filled], monkeypatch, capsys)
    assert code == 2
    assert message in err and len(err.strip().splitlines()) == 1 and "Traceback" not in err
