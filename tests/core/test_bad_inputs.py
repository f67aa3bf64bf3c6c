"""The issue-26 probe kept as tests: bad inputs to every command end with exit code 2, exactly one ``error:`` line
on stderr, no traceback and nothing left behind; most fail before any model loads. A sample of good inputs checks
that the validation does not refuse ordinary use."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

from tests.core.test_cli import run_cli
from traitlab.interventions import artifact_header
from traitlab.methods.merging import PersonalityVector
from traitlab.methods.neurons import NeuronInduction
from traitlab.methods.persona_vectors import PersonaVector
from traitlab.methods.subnetworks import SubnetworkMask
from traitlab.model.tiny import tiny_model

NOT_UTF8 = b"name: \xff\xfe broken \xc3\x28\n"


def _raw_artifact(path: Path, tensors: dict[str, torch.Tensor], meta: object) -> Path:
    """An artifact written past the checks (as another tool or a corrupted disk would)."""
    save_file({k: v.contiguous() for k, v in tensors.items()}, str(path),
              metadata={"traitlab": json.dumps(meta)})
    return path


@pytest.fixture(scope="module")
def inputs(tmp_path_factory, model_dir) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("bad-inputs")
    lm = tiny_model("llama")
    d, n = lm.hidden_size, lm.num_layers
    table = torch.randn(n + 1, d, generator=torch.Generator().manual_seed(0))
    good = PersonaVector({"response_avg": table}, [1], trait="t").save(root / "good.tl.safetensors")
    meta = json.loads(__import__("safetensors").safe_open(str(good), "pt").metadata()["traitlab"])
    nan_table = table.clone()
    nan_table[1, 0] = float("nan")
    npti_meta = NeuronInduction({1: (torch.tensor([0, 1]), torch.ones(2))}, {1: torch.tensor([3])}).metadata()
    npti_tensors = NeuronInduction({1: (torch.tensor([0, 1]), torch.full((2,), float("nan")))},
                                   {1: torch.tensor([3])}).tensors()
    wide = PersonaVector({"response_avg": torch.randn(n + 1, d * 2)}, [1]).save(root / "wide.tl.safetensors")
    delta_name = "model.layers.0.mlp.down_proj.weight"
    weight = dict(lm.model.named_parameters())[delta_name]
    pv = PersonalityVector({delta_name: torch.zeros_like(weight)}, trait="t").save(root / "pv.tl.safetensors")
    mask = SubnetworkMask.from_masks({delta_name: torch.ones_like(weight, dtype=torch.bool)},
                                     fingerprint=lm.fingerprint).save(root / "mask.tl.safetensors")
    files = {
        "model": model_dir, "good": good, "wide": wide, "pv": pv, "mask": mask,
        "nan_vec": _raw_artifact(root / "nan.tl.safetensors", {"directions.response_avg": nan_table}, meta),
        "nan_scale": _raw_artifact(root / "nanscale.tl.safetensors", {"directions.response_avg": table},
                                   {**meta, "scale": float("nan")}),
        "inf_scale": _raw_artifact(root / "infscale.tl.safetensors", {"directions.response_avg": table},
                                   {**meta, "scale": float("inf")}),
        "list_meta": _raw_artifact(root / "list.tl.safetensors", {"x": table}, [1, 2]),
        "null_meta": _raw_artifact(root / "null.tl.safetensors", {"x": table}, None),
        "nan_npti": _raw_artifact(root / "npti.tl.safetensors", npti_tensors, npti_meta),
        "binary": root / "binary.bin", "folder": root / "a-folder", "existing": root / "existing.txt",
        "not_utf8": root / "bad.txt", "not_utf8_yaml": root / "bad.yaml", "not_utf8_jsonl": root / "bad.jsonl",
        "not_utf8_json": root / "bad.json", "family_int": root / "family-int.json",
        "family_norm": root / "family-norm.json", "nan_pt": root / "nan.pt", "nan_gguf": root / "nan.gguf",
        "lambda_nan": root / "lambda.yaml", "sweep_nan": root / "sweep.yaml", "experiment": root / "ok.yaml",
    }
    files["binary"].write_bytes(bytes(range(256)) * 4)
    files["folder"].mkdir()
    files["existing"].write_text("keep me")
    for key in ("not_utf8", "not_utf8_yaml", "not_utf8_jsonl", "not_utf8_json"):
        files[key].write_bytes(NOT_UTF8)
    files["family_int"].write_text(json.dumps({"layers": 5}))
    files["family_norm"].write_text(json.dumps({"layers": "model.norm"}))
    torch.save(nan_table, files["nan_pt"])
    import gguf
    import numpy as np

    writer = gguf.GGUFWriter(str(files["nan_gguf"]), "controlvector")
    writer.add_tensor("direction.1", np.full(d, np.nan, dtype=np.float32))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    files["lambda_nan"].write_text(f"merge_method: task_arithmetic\nbase_model: {model_dir}\nmodels:\n"
                                   f"  - model: {pv}\nparameters:\n  lambda: .nan\n")
    files["sweep_nan"].write_text(f"model: {model_dir}\ntraits: [extraversion_high]\nmethods:\n"
                                  "  - name: prompting\n    sweep: {scale: [.nan]}\n")
    files["experiment"].write_text(f"model: {model_dir}\ntraits: [extraversion_high]\nmethods:\n"
                                   "  - name: prompting\n")
    return files


OUT = "{out}/result.tl.safetensors"
BAD: dict[str, list[str]] = {
    # NaN / inf never accepted
    "apply-nan-scale": ["chat", "-m", "{model}", "-p", "hi", "--apply", "{good}:nan"],
    "apply-inf-scale": ["chat", "-m", "{model}", "-p", "hi", "--apply", "{good}:inf"],
    "apply-overflow-scale": ["chat", "-m", "{model}", "-p", "hi", "--apply", "{good}:1e400"],
    "apply-nan-tensor": ["chat", "-m", "{model}", "-p", "hi", "--apply", "{nan_vec}"],
    "apply-nan-scale-meta": ["chat", "-m", "{model}", "-p", "hi", "--apply", "{nan_scale}"],
    "apply-inf-scale-meta": ["chat", "-m", "{model}", "-p", "hi", "--apply", "{inf_scale}"],
    "apply-nan-npti": ["chat", "-m", "{model}", "-p", "hi", "--apply", "{nan_npti}:0"],
    "show-nan-vector": ["vectors", "show", "{nan_vec}"],
    "neurons-show-nan": ["neurons", "show", "{nan_npti}"],
    "combine-nan-input": ["vectors", "combine", "{nan_vec}", "-o", OUT],
    "combine-overflow-coef": ["vectors", "combine", "9e999*{good}", "-o", OUT],
    "combine-widths": ["vectors", "combine", "{good} + {wide}", "-o", OUT],
    "import-pt-nan": ["vectors", "import-pt", "{nan_pt}", "-m", "{model}", "-o", OUT],
    "import-gguf-nan": ["vectors", "import-gguf", "{nan_gguf}", "-m", "{model}", "-o", OUT],
    "import-pt-binary": ["vectors", "import-pt", "{binary}", "-m", "{model}", "-o", OUT],
    "subnet-export-nan-scale": ["subnet", "export", "{mask}", "-m", "{model}", "--scale", "nan", "-o", "{out}/ckpt"],
    "merge-lambda-nan": ["merge", "apply", "{lambda_nan}", "-o", "{out}/merged"],
    "merge-vector-nan-weight": ["merge", "apply", "--base", "{model}", "--vector", "{pv}:nan", "-o", "{out}/m"],
    "compare-sweep-nan": ["compare", "{sweep_nan}", "-o", "{out}/run"],
    "sweep-coefs-nan": ["vectors", "sweep", "{good}", "-t", "extraversion_high", "--coefs", "1,nan", "-o", OUT],
    "serve-nan-persona": ["serve", "-m", "{model}", "--persona", "p={nan_vec}"],
    "serve-nan-scale-persona": ["serve", "-m", "{model}", "--persona", "p={nan_scale}"],
    # metadata that is not an object
    "chat-list-meta": ["chat", "-m", "{model}", "-p", "hi", "--apply", "{list_meta}"],
    "chat-null-meta": ["chat", "-m", "{model}", "-p", "hi", "--apply", "{null_meta}"],
    "vectors-show-list-meta": ["vectors", "show", "{list_meta}"],
    "subnet-show-null-meta": ["subnet", "show", "{null_meta}"],
    "merge-show-list-meta": ["merge", "show", "{list_meta}"],
    # --family, --device
    "family-folder": ["info", "-m", "{model}", "--family", "{folder}"],
    "family-binary": ["info", "-m", "{model}", "--family", "{binary}"],
    "family-int-field": ["info", "-m", "{model}", "--family", "{family_int}"],
    "family-not-a-list": ["info", "-m", "{model}", "--family", "{family_norm}"],
    "device-tpu": ["chat", "-m", "{model}", "-p", "hi", "--device", "tpu"],
    "seed-too-big": ["chat", "-m", "{model}", "-p", "hi", "--seed", "100000000000000000000000", "-t", "1"],
    # text that is not UTF-8
    "compare-not-utf8": ["compare", "{not_utf8_yaml}", "-o", "{out}/run"],
    "merge-not-utf8": ["merge", "apply", "{not_utf8_yaml}", "-o", "{out}/merged"],
    "traits-show-not-utf8": ["traits", "show", "{not_utf8_json}"],
    "monitor-not-utf8": ["monitor", "-v", "{good}", "-i", "{not_utf8_jsonl}", "-o", "{out}/m.csv"],
    "neurons-questions-not-utf8": ["neurons", "find", "-t", "extraversion_high", "--questions", "{not_utf8}",
                                   "-m", "{model}", "-o", OUT],
    # output paths
    "combine-out-folder": ["vectors", "combine", "{good}", "-o", "{folder}"],
    "combine-out-no-parent": ["vectors", "combine", "{good}", "-o", "{out}/no/such/x.safetensors"],
    "export-gguf-out-folder": ["vectors", "export-gguf", "{good}", "-o", "{folder}"],
    "merge-out-is-file": ["merge", "apply", "--base", "{model}", "--vector", "{pv}", "-o", "{existing}"],
    "subnet-export-out-is-file": ["subnet", "export", "{mask}", "-m", "{model}", "-o", "{existing}"],
    "compare-out-is-file": ["compare", "{experiment}", "-o", "{existing}"],
    "eval-out-folder": ["eval", "-m", "{model}", "--suite", "questionnaire", "-o", "{folder}"],
    "neurons-find-out-folder": ["neurons", "find", "-t", "extraversion_high", "-m", "{model}", "-o", "{folder}"],
    "axis-build-out-folder": ["axis", "build", "-m", "{model}", "-o", "{folder}"],
    "axis-show-null-meta": ["axis", "show", "{null_meta}"],
    "axis-cap-nan-artifact": ["axis", "cap", "{nan_vec}", "-o", OUT],
    "serve-bad-host": ["serve", "-m", "{model}", "--host", "999.1.1.1", "--port", "8765"],
    "extract-layers-out-of-range": ["vectors", "extract", "-t", "extraversion_high", "--sweep", "--layers", "0-99",
                                    "-o", OUT],
    "extract-min-pairs-impossible": ["vectors", "extract", "-t", "extraversion_high", "--min-pairs", "1000000",
                                     "-o", OUT],
    "extract-short-prompts-missing": ["vectors", "extract", "-t", "evil", "--short-prompts", "-m", "{model}",
                                      "-o", OUT],
    # a sample of the probe's cases that already kept the promise
    "unknown-trait": ["neurons", "find", "-t", "no_such_trait", "-m", "{model}", "-o", OUT],
    "unknown-dtype": ["chat", "-m", "{model}", "-p", "hi", "--dtype", "float8"],
    "bad-json-family": ["info", "-m", "{model}", "--family", "{existing}"],
    "apply-missing-file": ["chat", "-m", "{model}", "-p", "hi", "--apply", "{out}/missing.safetensors:2"],
    "apply-binary-file": ["chat", "-m", "{model}", "-p", "hi", "--apply", "{binary}"],
    "negative-temperature": ["chat", "-m", "{model}", "-p", "hi", "-t", "-1"],
    "top-p-zero": ["chat", "-m", "{model}", "-p", "hi", "--top-p", "0"],
    "model-not-found": ["info", "-m", "./no/such/folder"],
    "merge-no-config": ["merge", "apply", "-o", "{out}/merged"],
    "merge-show-not-pv": ["merge", "show", "{good}"],
    "info-offline-hub-id": ["info", "-m", "nosuchorg/nosuchmodel"],
    "missing-artifact": ["vectors", "show", "{out}/nope.safetensors"],
}

GOOD: dict[str, list[str]] = {
    "show": ["vectors", "show", "{good}"],
    "apply-scale": ["chat", "-m", "{model}", "-p", "hi", "--max-new-tokens", "2", "--apply", "{good}:0.5"],
    "combine": ["vectors", "combine", "2*{good} - 0.5*{good}", "-o", OUT],
    "info": ["info", "-m", "{model}"],
}


def _args(template: list[str], inputs: dict[str, Path], out: Path) -> list[str]:
    values = {k: str(v) for k, v in inputs.items()} | {"out": str(out)}
    return [part.format(**values) for part in template]


def _listing(*folders: Path) -> set[str]:
    return {str(p) for folder in folders for p in folder.rglob("*")}


@pytest.mark.parametrize("case", sorted(BAD))
def test_bad_input_is_one_error_line(case, inputs, tmp_path, monkeypatch, capsys):
    monkeypatch.delenv("TRAITLAB_ONLINE", raising=False)
    inputs_root = Path(inputs["good"]).parent
    before = _listing(inputs_root, tmp_path)
    code, out, err = run_cli(_args(BAD[case], inputs, tmp_path), monkeypatch, capsys)
    lines = [line for line in err.splitlines() if line.strip()]
    assert code == 2, (code, out, err)
    assert "Traceback" not in err + out
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    assert _listing(inputs_root, tmp_path) == before, "a failed command left files behind"


@pytest.mark.parametrize("case", sorted(GOOD))
def test_good_input_still_works(case, inputs, tmp_path, monkeypatch, capsys):
    code, _, err = run_cli(_args(GOOD[case], inputs, tmp_path), monkeypatch, capsys)
    assert code == 0, err


def test_invalid_utf8_in_a_message_is_one_error_line(inputs, monkeypatch, capsys):
    message = os.fsdecode(b"hi \xff there")  # what Python hands over for invalid UTF-8 in argv
    code, _, err = run_cli(["chat", "-m", str(inputs["model"]), "-p", message, "--max-new-tokens", "2"],
                           monkeypatch, capsys)
    assert code == 2 and "Traceback" not in err
    assert err.strip().startswith("error: ") and len(err.strip().splitlines()) == 1


def test_artifact_writes_refuse_nan(tmp_path):
    from traitlab.errors import ArtifactError

    bad = PersonaVector({"response_avg": torch.full((3, 4), float("nan"))}, [1])
    with pytest.raises(ArtifactError, match="NaN"):
        bad.save(tmp_path / "x.tl.safetensors")
    assert not list(tmp_path.iterdir())
    assert artifact_header("x")["scale"] == 1.0


def test_a_failed_merge_leaves_nothing_and_a_rerun_works(inputs, tmp_path, monkeypatch, capsys):
    """A wrong-shaped tensor mid-merge (or Ctrl-C) used to leave .shard-N.tmp files and block the rerun."""
    import traitlab.methods.merging as merging

    out = tmp_path / "merged"
    args = ["merge", "apply", "--base", str(inputs["model"]), "--vector", f"{inputs['pv']}:0.5", "-o", str(out)]
    real = merging.merge_deltas
    calls = {"n": 0}

    def interrupted(*a, **k):
        calls["n"] += 1
        if calls["n"] == 3:
            raise KeyboardInterrupt
        return real(*a, **k)

    monkeypatch.setattr(merging, "merge_deltas", interrupted)
    code, _, err = run_cli(args, monkeypatch, capsys)
    assert code == 130 and "Traceback" not in err  # typer ends a Ctrl-C with 130
    assert list(tmp_path.iterdir()) == []
    monkeypatch.setattr(merging, "merge_deltas", real)
    code, _, err = run_cli(args, monkeypatch, capsys)
    assert code == 0, err
    assert (out / "model.safetensors").is_file() and not list(out.glob(".*"))
