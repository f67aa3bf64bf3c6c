"""``traitlab neurons find/show`` on a tiny saved model; user mistakes are one line with exit code 2, found
before any model loads."""

from __future__ import annotations

import json

import pytest

from tests.core.test_cli import run_cli
from tests.helpers import save_model
from traitlab import load_intervention
from traitlab.methods.neurons import NeuronInduction
from traitlab.model.tiny import tiny_model


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    folder = tmp_path_factory.mktemp("npti-cli")
    save_model(tiny_model("gpt2"), folder / "model")
    rows = [{"Extraversion": f"You love crowds {i}.", "Extraversion_reversed": f"You avoid crowds {i}."}
            for i in range(4)]
    (folder / "description.json").write_text("".join(json.dumps(r) + "\n" for r in rows))
    return folder


def test_find_and_show(model_dir, monkeypatch, capsys):
    out = model_dir / "n.safetensors"
    code, printed, err = run_cli(["-q", "neurons", "find", "--model", str(model_dir / "model"), "--trait",
                                  "extraversion_high", "--pole", "low", "--description-json",
                                  str(model_dir / "description.json"), "--n-answers", "4", "--max-new-tokens", "6",
                                  "--threshold", "0.05", "--top-k", "20", "--out", str(out)], monkeypatch, capsys)
    assert code == 0, err
    assert "generated tokens recorded" in printed
    induction = load_intervention(out)
    assert isinstance(induction, NeuronInduction) and induction.pole == "low" and induction.options.top_k == 20
    code, printed, err = run_cli(["neurons", "show", str(out), "-n", "3"], monkeypatch, capsys)
    assert code == 0, err
    for expected in ("neurons per block", "top 3 neurons", "█", "δ", "extraversion"):
        assert expected in printed


@pytest.mark.parametrize(("args", "message"), [
    (["--threshold", "0"], "threshold"),
    (["--pole", "middle"], "pole must be high or low"),
    (["--n-answers", "0"], "n_answers"),
    (["--description-json", "/nonexistent/description.json"], "not found"),
    (["--out", "/nonexistent/folder/x.safetensors"], "does not exist"),
    (["--trait", "no_such_trait"], "unknown trait"),
])
def test_find_rejects_mistakes_before_loading(args, message, monkeypatch, capsys, tmp_path):
    base = {"--model": "/nonexistent/model", "--trait": "extraversion_high", "--out": str(tmp_path / "x.st")}
    for flag, value in zip(args[::2], args[1::2], strict=True):
        base[flag] = value
    code, _, err = run_cli(["neurons", "find", *[x for kv in base.items() for x in kv]], monkeypatch, capsys)
    assert code == 2 and message in err and "Traceback" not in err and err.count("\n") == 1


def test_show_rejects_other_artifacts(tmp_path, monkeypatch, capsys):
    from traitlab.methods import PromptIntervention

    path = PromptIntervention("Be loud.").save(tmp_path / "p.safetensors")
    code, _, err = run_cli(["neurons", "show", str(path)], monkeypatch, capsys)
    assert code == 2 and "not an NPTI" in err
