"""CLI of persona vectors, monitoring, screening and finetuning on a tiny saved model."""

from __future__ import annotations

import csv
import json

import pytest
import torch

from tests.core.test_cli import run_cli
from tests.helpers import save_model
from traitlab import load_intervention
from traitlab.methods.persona_vectors import PersonaVector
from traitlab.model.tiny import tiny_model


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    folder = tmp_path_factory.mktemp("cli")
    lm = tiny_model("llama")
    save_model(lm, folder / "model")
    table = torch.randn(lm.num_layers + 1, lm.hidden_size, generator=torch.Generator().manual_seed(0))
    PersonaVector({"response_avg": table}, [2], trait="extraversion", pole="high",
                  fingerprint=lm.fingerprint).save(folder / "v.safetensors")
    chats = [{"messages": [{"role": "user", "content": f"q{i}"}, {"role": "assistant", "content": "yes!"}]}
             for i in range(4)]
    (folder / "chats.jsonl").write_text("".join(json.dumps(c) + "\n" for c in chats))
    open_chat = {"messages": [{"role": "user", "content": "tell me"}]}
    (folder / "mixed.jsonl").write_text(json.dumps(chats[0]) + "\n" + json.dumps(open_chat) + "\n")
    return folder


def test_monitor_writes_projections(setup, monkeypatch, capsys):
    out = setup / "monitor.csv"
    code, _, err = run_cli(["monitor", "--model", str(setup / "model"), "-v", str(setup / "v.safetensors"),
                            "-i", str(setup / "mixed.jsonl"), "-o", str(out), "--generate", "--max-new-tokens", "4"],
                           monkeypatch, capsys)
    assert code == 0, err
    rows = list(csv.DictReader(out.open()))
    assert len(rows) == 2 and rows[0]["layer"] == "2" and rows[1]["generated_reply"] != ""
    assert all(float(r["last_prompt_projection"]) == float(r["last_prompt_projection"]) for r in rows)


def test_screen_ranks_samples(setup, monkeypatch, capsys):
    out = setup / "screen.csv"
    code, printed, err = run_cli(["screen", "--model", str(setup / "model"), "-v", str(setup / "v.safetensors"),
                                  "-d", str(setup / "chats.jsonl"), "-o", str(out), "--max-new-tokens", "4"],
                                 monkeypatch, capsys)
    assert code == 0, err
    rows = list(csv.DictReader(out.open()))
    assert [r["rank"] for r in rows] == ["1", "2", "3", "4"]
    deltas = [float(r["delta_p"]) for r in rows]
    assert deltas == sorted(deltas, reverse=True) and "dataset mean ΔP" in printed


def test_finetune_with_preventative_steering_writes_a_checkpoint(setup, monkeypatch, capsys):
    out = setup / "tuned"
    code, printed, err = run_cli(["finetune", "--model", str(setup / "model"), "-d", str(setup / "chats.jsonl"),
                                  "-o", str(out), "--epochs", "1", "--batch-size", "2",
                                  "--steer", f"{setup / 'v.safetensors'}:2", "--shift-vector",
                                  str(setup / "v.safetensors"), "--shift-trait", "extraversion_high"],
                                 monkeypatch, capsys)
    assert code == 0, err
    assert (out / "config.json").is_file() and (out / "model.safetensors").is_file()
    assert "finetune-shift along" in printed


def test_show_combine_and_gguf(setup, monkeypatch, capsys):
    code, printed, _ = run_cli(["vectors", "show", str(setup / "v.safetensors")], monkeypatch, capsys)
    assert code == 0 and "extraversion" in printed and "per layer" in printed
    code, _, _ = run_cli(["vectors", "combine", f"2*{setup / 'v.safetensors'} - {setup / 'v.safetensors'}",
                          "-o", str(setup / "c.safetensors")], monkeypatch, capsys)
    combined = load_intervention(setup / "c.safetensors")
    original = load_intervention(setup / "v.safetensors")
    assert code == 0 and torch.allclose(combined.direction(2), original.direction(2))
    code, _, _ = run_cli(["vectors", "export-gguf", str(setup / "v.safetensors"), "-o", str(setup / "v.gguf")],
                         monkeypatch, capsys)
    assert code == 0
    code, _, _ = run_cli(["vectors", "import-gguf", str(setup / "v.gguf"), "--model", str(setup / "model"),
                          "-o", str(setup / "g.safetensors")], monkeypatch, capsys)
    assert code == 0 and torch.equal(load_intervention(setup / "g.safetensors").direction(2), original.direction(2))


def test_extract_sweeps_variants_and_positions_on_the_organism(tmp_path, monkeypatch, capsys):
    """Openness low on the organism: the response-position steering of the paper leaves its answers near 50,
    steering the prompt with the prompt-average vector reaches ≥ 70 (pole-oriented) with coherence ≥ 50, and
    the sweep keeps that cell."""
    out = tmp_path / "o.safetensors"
    code, printed, err = run_cli(["vectors", "extract", "--trait", "openness_low", "-o", str(out), "--sweep",
                                  "--layers", "1", "--coefs", "8", "--variants", "response_avg,prompt_avg",
                                  "--positions", "response,prompt", "--max-new-tokens", "64"], monkeypatch, capsys)
    assert code == 0, err
    chosen = load_intervention(out)
    cells = {(c["variant"], c["positions"]): c for c in chosen.extra["sweep"]["table"]}
    assert (chosen.variant, chosen.positions, chosen.scale) == ("prompt_avg", "prompt", 8.0)
    assert cells[("prompt_avg", "prompt")]["trait"] >= 70 and cells[("prompt_avg", "prompt")]["coherence"] >= 50
    assert cells[("response_avg", "response")]["trait"] <= 60, cells
    assert "prompt_avg @ prompt" in printed
    code, shown, _ = run_cli(["vectors", "show", str(out)], monkeypatch, capsys)
    assert code == 0 and "sweep (unsteered" in shown and "*" in shown.split("prompt_avg @ prompt")[1].splitlines()[0]


def test_optimized_variant_steers_extraversion_on_the_organism(tmp_path, monkeypatch, capsys):
    """Extraversion high on the organism: the paper's mean-difference vector at layer 1 leaves the answers at
    the unsteered 50, the vector fitted to the persona's own answers reaches ≥ 70 (measured 81) at full
    coherence, and the sweep keeps it."""
    out = tmp_path / "e.safetensors"
    code, printed, err = run_cli(["vectors", "extract", "--trait", "extraversion_high", "-o", str(out), "--sweep",
                                  "--layers", "1", "--coefs", "1", "--variants", "response_avg,optimized",
                                  "--optimize-layers", "1", "--max-new-tokens", "64"], monkeypatch, capsys)
    assert code == 0, err
    chosen = load_intervention(out)
    cells = {c["variant"]: c for c in chosen.extra["sweep"]["table"]}
    assert (chosen.variant, chosen.scale) == ("optimized", 1.0)
    assert cells["optimized"]["trait"] >= 70 and cells["optimized"]["coherence"] >= 90, cells
    assert cells["response_avg"]["trait"] <= 55, cells
    assert chosen.extra["optimized"]["layers"] == [1] and "optimized @ response" in printed


@pytest.mark.parametrize("args, message", [
    (["vectors", "extract", "--trait", "nope", "-o", "{d}/x.safetensors"], "unknown trait 'nope'"),
    (["vectors", "extract", "--trait", "evil", "-o", "{d}/x.safetensors", "--model", "{d}/model", "--judge",
      "endpoint"], "endpoint judge needs --judge-url"),
    (["vectors", "extract", "--trait", "evil", "-o", "{d}/x.safetensors", "--judge", "telepathy"],
     "unknown judge 'telepathy'"),
    (["vectors", "extract", "--trait", "extraversion_high", "-o", "{d}/no/x.safetensors"], "does not exist"),
    (["vectors", "extract", "--trait", "extraversion_high", "-o", "{d}/x.safetensors", "--layers", "a-b",
      "--sweep"], "comma-separated list"),
    (["monitor", "-v", "{d}/v.safetensors", "-i", "{d}/missing.jsonl", "-o", "{d}/m.csv"], "not found"),
    (["screen", "-v", "{d}/v.safetensors", "-d", "{d}/mixed.jsonl", "-o", "{d}/s.csv"], "ending with an assistant"),
    (["vectors", "combine", "2*", "-o", "{d}/c.safetensors"], "cannot parse"),
    (["vectors", "sweep", "{d}/v.safetensors", "--trait", "extraversion_high", "-o", "{d}/s.safetensors",
      "--variants", "nope"], "unknown variant 'nope'"),
    (["vectors", "extract", "--trait", "extraversion_high", "-o", "{d}/x.safetensors", "--sweep", "--positions",
      "middle"], "unknown positions 'middle'"),
    (["vectors", "extract", "--trait", "extraversion_high", "-o", "{d}/x.safetensors", "--sweep", "--variants",
      "optimized"], "needs --optimize-layers"),
    (["vectors", "extract", "--trait", "extraversion_high", "-o", "{d}/x.safetensors", "--optimize-layers", "9"],
     "layer 9 is out of range"),
    (["vectors", "sweep", "{d}/v.safetensors", "--trait", "extraversion_high", "-o", "{d}/s.safetensors",
      "--variants", "optimized"], "has no 'optimized' variant"),
])
def test_vector_cli_errors(args, message, setup, monkeypatch, capsys):
    code, _, err = run_cli([a.format(d=setup) for a in args], monkeypatch, capsys)
    assert code == 2 and message in err and err.count("\n") == 1
