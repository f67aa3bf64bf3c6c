"""The issue-26 probe kept as tests: bad inputs to every command end with exit code 2, exactly one ``error:`` line
on stderr that names the problem, no traceback and nothing left behind, and (all but one, which needs the
model's layer count) before any model loads. A sample of good inputs checks that the validation does not refuse
ordinary use and that writers leave no temporary files. Ctrl-C (a real SIGINT to a subprocess mid-write) ends
with exit 130, one ``error: interrupted`` line and no partial output."""

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
    bad_shape = PersonalityVector({delta_name: torch.zeros(weight.shape[0], weight.shape[1] + 1)},
                                  trait="t").save(root / "badshape.tl.safetensors")
    npti = NeuronInduction({1: (torch.tensor([0, 1]), torch.ones(2))},
                           {1: torch.tensor([3])}).save(root / "npti-good.tl.safetensors")
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
        "small_experiment": root / "small.yaml", "bad_shape": bad_shape, "npti": npti, "busy": root / "busy",
        "chats": root / "chats.jsonl", "replies": root / "replies.jsonl", "not_utf8_csv": root / "bad.csv",
        "bad_questions": root / "questions.json", "good_pt": root / "good.pt", "no_model": root / "no-model.yaml",
        "mixed_chats": root / "mixed.jsonl",
    }
    files["binary"].write_bytes(bytes(range(256)) * 4)
    files["folder"].mkdir()
    files["existing"].write_text("keep me")
    files["busy"].mkdir()
    (files["busy"] / "notes.txt").write_text("someone else's")
    files["chats"].write_text(json.dumps({"messages": [{"role": "user", "content": "Plans tonight?"},
                                                       {"role": "assistant", "content": "A big party!"}]}) + "\n")
    files["mixed_chats"].write_text(json.dumps({"messages": [{"role": "user", "content": "hi"}, 5,
                                                             {"role": "assistant", "content": "x"}]}) + "\n")
    files["replies"].write_text(json.dumps({"question": "Plans?", "reply": "A party!"}) + "\n")
    files["bad_questions"].write_text(json.dumps(["fine", 5, {"nope": 1}]))
    torch.save(table, files["good_pt"])
    for key in ("not_utf8", "not_utf8_yaml", "not_utf8_jsonl", "not_utf8_json", "not_utf8_csv"):
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
                                  "  - name: prompt\n    sweep: {scale: [.nan]}\n")
    files["experiment"].write_text(f"model: {model_dir}\ntraits: [extraversion_high]\nmethods:\n"
                                   "  - name: prompt\n")
    files["no_model"].write_text("model: ./no/such/model\ntraits: [extraversion_high]\nmethods:\n  - name: none\n"
                                 "evaluations: {questionnaire: {max_items_per_trait: 1}}\n")
    files["small_experiment"].write_text(f"model: {model_dir}\ntraits: [extraversion_high]\nmethods:\n"
                                         "  - name: none\n  - name: prompt\n"
                                         "evaluations: {questionnaire: {max_items_per_trait: 1}}\n"
                                         "judge: {kind: local}\n")
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
    # the rest of the writers' --out checks (before any model loads) and compare's results folder
    "compare-out-foreign-folder": ["compare", "{experiment}", "-o", "{busy}"],
    "compare-missing-experiment": ["compare", "{out}/nope.yaml", "-o", "{out}/run"],
    "compare-model-missing": ["compare", "{no_model}", "-o", "{out}/run"],
    "demo-out-is-file": ["demo", "--quick", "-o", "{existing}"],
    "monitor-out-folder": ["monitor", "-v", "{good}", "-i", "{chats}", "-m", "{model}", "-o", "{folder}"],
    "screen-out-folder": ["screen", "-v", "{good}", "-d", "{chats}", "-m", "{model}", "-o", "{folder}"],
    "merge-data-out-folder": ["merge", "data", "-t", "extraversion", "-m", "{model}", "-o", "{folder}"],
    "merge-data-out-no-parent": ["merge", "data", "-t", "extraversion", "-m", "{model}", "-o", "{out}/no/d.jsonl"],
    "merge-data-big5chat-not-utf8": ["merge", "data", "-t", "extraversion", "--from-big5chat", "{not_utf8_csv}",
                                     "-o", "{out}/d.jsonl"],
    "merge-vector-out-folder": ["merge", "vector", "--base", "{model}", "--tuned", "{model}", "-o", "{folder}"],
    "merge-wrong-shape": ["merge", "apply", "--base", "{model}", "--vector", "{bad_shape}", "-o", "{out}/merged"],
    "judges-score-output-folder": ["judges", "score", "-i", "{replies}", "--coherence", "none", "-o", "{folder}"],
    "judges-fit-out-folder": ["judges", "fit", "--out", "{folder}"],
    "traits-new-out-no-parent": ["traits", "new", "loud", "-d", "Talks loudly.", "-o", "{out}/no/loud.json"],
    "organism-check-json-folder": ["organism", "check", "-m", "{model}", "--json", "{folder}"],
    "finetune-out-is-file": ["finetune", "-d", "{chats}", "-m", "{model}", "-o", "{existing}"],
    "eval-out-parent-is-file": ["eval", "-m", "{model}", "--suite", "questionnaire", "-o", "{existing}/r.json"],
    # files that are not what they should be
    "import-gguf-binary": ["vectors", "import-gguf", "{binary}", "-m", "{model}", "-o", OUT],
    "import-pt-missing": ["vectors", "import-pt", "{out}/none.pt", "-m", "{model}", "-o", OUT],
    "neurons-questions-bad-items": ["neurons", "find", "-t", "extraversion_high", "--questions", "{bad_questions}",
                                    "-m", "{model}", "-o", OUT],
    "eval-inventory-not-utf8": ["eval", "-m", "{model}", "--suite", "questionnaire", "--inventory",
                                "{not_utf8_csv}"],
    "eval-capability-not-utf8": ["eval", "-m", "{model}", "--suite", "capability", "--capability-file",
                                 "{not_utf8_csv}"],
    "vectors-show-folder": ["vectors", "show", "{folder}"],
    "apply-folder": ["chat", "-m", "{model}", "-p", "hi", "--apply", "{folder}"],
    "family-missing": ["info", "-m", "{model}", "--family", "{out}/nope.json"],
    "monitor-input-missing": ["monitor", "-v", "{good}", "-i", "{out}/none.jsonl", "-o", "{out}/m.csv"],
    "combine-syntax": ["vectors", "combine", "2*", "-o", OUT],
    "eval-unknown-suite": ["eval", "-m", "{model}", "--suite", "charisma"],
    # numbers found by a second probe of the numeric options
    "finetune-epochs-nan": ["finetune", "-d", "{chats}", "-m", "{model}", "--epochs", "nan", "-o", "{out}/ft"],
    "finetune-lr-inf": ["finetune", "-d", "{chats}", "-m", "{model}", "--lr", "inf", "-o", "{out}/ft"],
    "merge-data-limit-zero": ["merge", "data", "-t", "extraversion", "-m", "{model}", "--limit", "0",
                              "-o", "{out}/d.jsonl"],
    "merge-data-no-samples": ["merge", "data", "-t", "extraversion", "-m", "{model}", "--n-per-question", "0",
                              "-o", "{out}/d.jsonl"],
    "merge-data-temperature-nan": ["merge", "data", "-t", "extraversion", "-m", "{model}", "--temperature", "nan",
                                   "-o", "{out}/d.jsonl"],
    "serve-threads-zero": ["serve", "-m", "{model}", "--threads", "0"],
    "merge-data-max-new-tokens-zero": ["merge", "data", "-t", "extraversion", "-m", "{model}", "--max-new-tokens",
                                       "0", "-o", "{out}/d.jsonl"],
    "merge-data-threshold-range": ["merge", "data", "-t", "extraversion", "-m", "{model}", "--threshold", "150",
                                   "-o", "{out}/d.jsonl"],
    "merge-data-unknown-judge": ["merge", "data", "-t", "extraversion", "-m", "{model}", "--judge", "psychic",
                                 "-o", "{out}/d.jsonl"],
    "merge-data-judge-big5chat": ["merge", "data", "-t", "extraversion", "--from-big5chat", "{not_utf8_csv}",
                                  "--judge", "embedding", "-o", "{out}/d.jsonl"],
    "finetune-lora-r-zero": ["finetune", "-d", "{chats}", "-m", "{model}", "--lora-r", "0", "-o", "{out}/ft"],
    "finetune-max-length-tiny": ["finetune", "-d", "{chats}", "-m", "{model}", "--max-length", "2",
                                 "-o", "{out}/ft"],
    "finetune-precision-unknown": ["finetune", "-d", "{chats}", "-m", "{model}", "--precision", "fp8",
                                   "-o", "{out}/ft"],
    "monitor-malformed-message": ["monitor", "-v", "{good}", "-i", "{mixed_chats}", "-m", "{model}",
                                  "-o", "{out}/m.csv"],
    "screen-malformed-message": ["screen", "-v", "{good}", "-d", "{mixed_chats}", "-m", "{model}",
                                 "-o", "{out}/m.csv"],
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

AFTER_LOAD = {"extract-layers-out-of-range"}  # needs the loaded model's layer count; refused before generation
WHY: dict[str, str] = {  # each case must fail for its own reason: a part of its one error line
    "extract-short-prompts-missing": "no short_instruction",
    "apply-nan-scale": "finite", "apply-inf-scale": "finite", "apply-overflow-scale": "finite",
    "apply-nan-tensor": "NaN/inf", "apply-nan-scale-meta": "finite", "apply-inf-scale-meta": "finite",
    "apply-nan-npti": "NaN/inf", "show-nan-vector": "NaN/inf", "neurons-show-nan": "NaN/inf",
    "combine-nan-input": "NaN/inf", "combine-overflow-coef": "finite", "combine-widths": "cannot combine vectors",
    "import-pt-nan": "NaN/inf", "import-gguf-nan": "NaN/inf", "import-pt-binary": "not a readable",
    "subnet-export-nan-scale": "finite", "merge-lambda-nan": "finite", "merge-vector-nan-weight": "finite",
    "compare-sweep-nan": "finite", "sweep-coefs-nan": "finite", "serve-nan-persona": "NaN/inf",
    "serve-nan-scale-persona": "finite", "chat-list-meta": "corrupt", "chat-null-meta": "corrupt",
    "vectors-show-list-meta": "corrupt", "subnet-show-null-meta": "corrupt", "merge-show-list-meta": "corrupt",
    "family-folder": "is a folder", "family-binary": "not UTF-8", "family-int-field": "module paths",
    "family-not-a-list": "model.norm", "device-tpu": "unknown device", "seed-too-big": "64 bits",
    "compare-not-utf8": "not UTF-8", "merge-not-utf8": "not UTF-8", "traits-show-not-utf8": "not UTF-8",
    "monitor-not-utf8": "not UTF-8", "neurons-questions-not-utf8": "question file",
    "combine-out-folder": "is a folder", "combine-out-no-parent": "does not exist",
    "export-gguf-out-folder": "is a folder", "merge-out-is-file": "is a file", "subnet-export-out-is-file": "is a file",
    "compare-out-is-file": "is a file", "eval-out-folder": "is a folder", "neurons-find-out-folder": "is a folder",
    "axis-build-out-folder": "is a folder", "axis-show-null-meta": "corrupt", "axis-cap-nan-artifact": "NaN/inf",
    "serve-bad-host": "--host", "extract-layers-out-of-range": "out of range", "extract-min-pairs-impossible":
    "--min-pairs", "compare-out-foreign-folder": "no traitlab run", "compare-missing-experiment": "not found",
    "compare-model-missing": "not found",
    "demo-out-is-file": "is a file", "monitor-out-folder": "is a folder", "screen-out-folder": "is a folder",
    "merge-data-out-folder": "is a folder", "merge-data-out-no-parent": "does not exist",
    "merge-data-big5chat-not-utf8": "not UTF-8", "merge-vector-out-folder": "is a folder",
    "merge-wrong-shape": "the base model's is", "judges-score-output-folder": "is a folder",
    "judges-fit-out-folder": "is a folder", "traits-new-out-no-parent": "does not exist",
    "organism-check-json-folder": "is a folder", "finetune-out-is-file": "is a file",
    "eval-out-parent-is-file": "is a file", "import-gguf-binary": "not a readable GGUF",
    "import-pt-missing": "not found",
    "neurons-questions-bad-items": "item 1", "eval-inventory-not-utf8": "not UTF-8",
    "eval-capability-not-utf8": "not UTF-8", "vectors-show-folder": "folder", "apply-folder": "folder",
    "family-missing": "not found", "monitor-input-missing": "not found", "combine-syntax": "cannot parse",
    "eval-unknown-suite": "unknown suite", "finetune-epochs-nan": "finite", "finetune-lr-inf": "finite",
    "merge-data-limit-zero": "--limit", "merge-data-no-samples": "--n-per-question",
    "merge-data-temperature-nan": "finite", "serve-threads-zero": "--threads",
    "merge-data-max-new-tokens-zero": "--max-new-tokens", "merge-data-threshold-range": "--threshold",
    "merge-data-unknown-judge": "unknown judge", "merge-data-judge-big5chat": "not to --from-big5chat",
    "finetune-lora-r-zero": "--lora-r", "finetune-max-length-tiny": "--max-length",
    "finetune-precision-unknown": "unknown precision 'fp8'",
    "monitor-malformed-message": "malformed chat message", "screen-malformed-message": "malformed chat message",
    "unknown-trait": "unknown trait", "unknown-dtype": "unknown dtype",
    "bad-json-family": "not valid JSON", "apply-missing-file": "not found", "apply-binary-file": "not a readable",
    "negative-temperature": "temperature", "top-p-zero": "top_p", "model-not-found": "not found",
    "merge-no-config": "give a merge YAML", "merge-show-not-pv": "not a personality vector",
    "info-offline-hub-id": "offline", "missing-artifact": "not found",
}

GOOD: dict[str, list[str]] = {
    "show": ["vectors", "show", "{good}"],
    "apply-scale": ["chat", "-m", "{model}", "-p", "hi", "--max-new-tokens", "2", "--apply", "{good}:0.5"],
    "combine": ["vectors", "combine", "2*{good} - 0.5*{good}", "-o", OUT],
    "info": ["info", "-m", "{model}"],
    "neurons-show": ["neurons", "show", "{npti}"],
    "merge-show": ["merge", "show", "{pv}"],
    "subnet-show": ["subnet", "show", "{mask}"],
    "traits-show": ["traits", "show", "extraversion_high"],
    "export-gguf": ["vectors", "export-gguf", "{good}", "-o", "{out}/v.gguf"],
    "import-pt": ["vectors", "import-pt", "{good_pt}", "-m", "{model}", "-o", OUT],
    "combine-overwrites": ["vectors", "combine", "{good}", "-o", "{out}/existing.tl.safetensors"],
    "monitor": ["monitor", "-v", "{good}", "-i", "{chats}", "-m", "{model}", "-o", "{out}/m.csv"],
    "merge-apply": ["merge", "apply", "--base", "{model}", "--vector", "{pv}:0.5", "-o", "{out}/merged"],
    "subnet-export": ["subnet", "export", "{mask}", "-m", "{model}", "--scale", "0.5", "-o", "{out}/ckpt"],
    "compare": ["--quiet", "compare", "{small_experiment}", "-o", "{out}/run"],
    "eval-out-new-folders": ["--quiet", "eval", "-m", "{model}", "--suite", "capability", "-o", "{out}/a/b/r.json"],
}


def _args(template: list[str], inputs: dict[str, Path], out: Path) -> list[str]:
    values = {k: str(v) for k, v in inputs.items()} | {"out": str(out)}
    return [part.format(**values) for part in template]


def _listing(*folders: Path) -> set[str]:
    return {str(p) for folder in folders for p in folder.rglob("*")}


def _count_model_loads(monkeypatch) -> list[str]:
    """Record every model load (the weights, not the config) of the command about to run."""
    from transformers import AutoModelForCausalLM

    loads: list[str] = []
    real = AutoModelForCausalLM.from_pretrained

    def counting(source, *args, **kwargs):
        loads.append(str(source))
        return real(source, *args, **kwargs)

    monkeypatch.setattr(AutoModelForCausalLM, "from_pretrained", counting)
    return loads


def _said(err: str) -> list[str]:
    """stderr's lines less the plain progress lines a step prints off a terminal (``... ...``, ``[k/n] ...``,
    ``...: done in ...``): what is left is what the command said about the failure."""
    return [line for line in err.splitlines() if line.strip() and not (
        line.endswith(" ...") or line.startswith("[") or ": done in " in line)]


@pytest.mark.parametrize("case", sorted(BAD))
def test_bad_input_is_one_error_line(case, inputs, tmp_path, monkeypatch, capsys):
    monkeypatch.delenv("TRAITLAB_ONLINE", raising=False)
    inputs_root = Path(inputs["good"]).parent
    before = _listing(inputs_root, tmp_path)
    loads = _count_model_loads(monkeypatch)
    code, out, err = run_cli(_args(BAD[case], inputs, tmp_path), monkeypatch, capsys)
    lines = _said(err)
    assert not loads or case in AFTER_LOAD, f"{case} loaded the model before refusing"
    assert code == 2, (code, out, err)
    assert "Traceback" not in err + out
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    assert WHY[case] in lines[0], (WHY[case], lines[0])
    assert _listing(inputs_root, tmp_path) == before, "a failed command left files behind"


def test_every_bad_case_says_why():
    assert set(WHY) == set(BAD)


@pytest.mark.parametrize("case", sorted(GOOD))
def test_good_input_still_works(case, inputs, tmp_path, monkeypatch, capsys):
    (tmp_path / "existing.tl.safetensors").write_bytes(Path(inputs["good"]).read_bytes())
    code, _, err = run_cli(_args(GOOD[case], inputs, tmp_path), monkeypatch, capsys)
    assert code == 0, err
    assert not [p for p in tmp_path.rglob(".*")], "temporary files were left behind"


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
    assert code == 130 and "Traceback" not in err and _said(err) == ["error: interrupted"]
    assert list(tmp_path.iterdir()) == []
    monkeypatch.setattr(merging, "merge_deltas", real)
    code, _, err = run_cli(args, monkeypatch, capsys)
    assert code == 0, err
    assert (out / "model.safetensors").is_file() and not list(out.glob(".*"))


# ---- Ctrl-C: a real SIGINT to a subprocess mid-write ------------------------------------------------------------

# The child takes Ctrl-C as an interactive `traitlab` does, even when pytest itself was started in the background
# by a non-interactive shell (which starts it with SIGINT ignored, an inheritance the child would keep).
PAUSE = '''
import os, signal, sys, time, importlib
signal.signal(signal.SIGINT, signal.default_int_handler)
def _pause(module, attr, calls_before, after):
    owner = importlib.import_module(module)
    *path, name = attr.split(".")
    for part in path:
        owner = getattr(owner, part)
    real, seen = getattr(owner, name), [0]
    def paused(*args, **kwargs):
        seen[0] += 1
        if seen[0] > calls_before and not after:
            open(os.environ["TRAITLAB_TEST_READY"], "w").close()
            time.sleep(300)
        result = real(*args, **kwargs)
        if seen[0] > calls_before and after:
            open(os.environ["TRAITLAB_TEST_READY"], "w").close()
            time.sleep(300)
        return result
    setattr(owner, name, paused)
'''


def _interrupt(args: list[str], hook: tuple[str, str, int, bool], cwd: Path) -> tuple[int, str, str]:
    """Run the CLI in a subprocess that pauses inside ``module:attr`` (after ``calls_before`` calls; before or
    after the real call), send it SIGINT there, and return (exit code, stdout, stderr)."""
    import signal
    import subprocess
    import sys
    import time

    ready = cwd / ".ready"
    code = (PAUSE + f"_pause(*{hook!r})\nsys.argv[0] = 'traitlab'\n"
            "from traitlab.cli import main\nmain()\n")
    src = str(Path(__file__).resolve().parents[2] / "src")
    env = {**os.environ, "TRAITLAB_TEST_READY": str(ready), "OMP_NUM_THREADS": "1",
           "PYTHONPATH": os.pathsep.join([src, os.environ.get("PYTHONPATH", "")])}
    env.pop("TRAITLAB_ONLINE", None)
    proc = subprocess.Popen([sys.executable, "-c", code, *args], cwd=cwd, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 180
        while not ready.exists():
            if proc.poll() is not None:
                out, err = proc.communicate()
                raise AssertionError(f"ended before the pause ({proc.returncode}): {err}")
            assert time.monotonic() < deadline, "never reached the pause"
            time.sleep(0.05)
        ready.unlink()
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
    return proc.returncode, out, err


INTERRUPTS = {
    # a sharded HF checkpoint: Ctrl-C between two tensors of the merge
    "merge-apply": (["merge", "apply", "--base", "{model}", "--vector", "{pv}:0.5", "-o", "{out}/merged"],
                    ("traitlab.methods.merging", "merge_deltas", 2, False)),
    # an HF checkpoint: weights written, tokenizer not yet; the mask is applied to the model meanwhile
    "subnet-export": (["subnet", "export", "{mask}", "-m", "{model}", "--scale", "0.5", "-o", "{out}/ckpt"],
                      ("transformers", "PreTrainedTokenizerBase.save_pretrained", 0, True)),
}


@pytest.mark.parametrize("case", sorted(INTERRUPTS))
def test_ctrl_c_is_one_error_line_exit_130_and_leaves_nothing(case, inputs, tmp_path):
    template, hook = INTERRUPTS[case]
    before = _listing(Path(inputs["good"]).parent, tmp_path)
    code, out, err = _interrupt(_args(template, inputs, tmp_path), hook, tmp_path)
    assert code == 130, (code, out, err)
    assert "Traceback" not in err + out
    assert _said(err) == ["error: interrupted"], err
    assert _listing(Path(inputs["good"]).parent, tmp_path) == before, "Ctrl-C left files behind"


def test_ctrl_c_in_compare_leaves_an_unfinished_run_that_the_rerun_completes(inputs, tmp_path, monkeypatch, capsys):
    experiment = tmp_path / "exp.yaml"
    experiment.write_text(f"model: {inputs['model']}\ntraits: [extraversion_high]\nmethods:\n  - name: none\n"
                          "  - name: prompt\n"
                          "evaluations: {questionnaire: {max_items_per_trait: 1}}\njudge: {kind: local}\n")
    out = tmp_path / "run"
    code, _, err = _interrupt(["compare", str(experiment), "-o", str(out)],
                              ("traitlab.evaluation.suite", "evaluate", 1, False), tmp_path)
    assert code == 130 and _said(err) == ["error: interrupted"], err
    partial = tmp_path / ".run.partial"
    assert not out.exists() and len((partial / "results.jsonl").read_text().splitlines()) == 1
    assert not (partial / "run.json").exists()
    code, _, err = run_cli(["--quiet", "compare", str(experiment), "-o", str(out), "--no-report"], monkeypatch,
                           capsys)
    assert code == 0, err
    assert json.loads((out / "run.json").read_text())["cells"] == 2 and not partial.exists()
    assert len((out / "results.jsonl").read_text().splitlines()) == 2


def _processes_with_env(key: str, value: str) -> list[int]:
    """Pids of live processes whose environment has ``key=value`` (this machine's /proc)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            environ = (entry / "environ").read_bytes().split(b"\0")
            state = (entry / "stat").read_text().split(") ")[-1].split()[0]
        except OSError:
            continue
        if f"{key}={value}".encode() in environ and state != "Z":
            found.append(int(entry.name))
    return found


@pytest.mark.skipif(not Path("/proc/self/environ").exists(), reason="needs /proc")
def test_ctrl_c_in_compare_stops_its_fit_helper(inputs, tmp_path):
    experiment = tmp_path / "exp.yaml"
    experiment.write_text(f"model: {inputs['model']}\ntraits: [extraversion_high]\nmethods:\n  - name: none\n"
                          "  - name: subnetwork\n    params: {max_new_tokens: 4, n_questions: 2}\n"
                          "evaluations: {situational: {n_questions: 1, max_new_tokens: 4}}\njudge: {kind: local}\n")
    code, _, err = _interrupt(["compare", str(experiment), "-o", str(tmp_path / "run"), "--workers", "2"],
                              ("traitlab.evaluation.suite", "evaluate", 0, False), tmp_path)
    assert code == 130 and _said(err) == ["error: interrupted"], err
    assert _processes_with_env("TRAITLAB_TEST_READY", str(tmp_path / ".ready")) == []  # the helper is gone


def test_an_interrupted_single_file_write_keeps_the_old_file_and_leaves_no_temporary(tmp_path):
    from traitlab.validate import atomic_file, write_text_atomic

    target = write_text_atomic(tmp_path / "report.csv", "old\n")
    with pytest.raises(KeyboardInterrupt), atomic_file(target) as handle:
        handle.write("half of the new")
        raise KeyboardInterrupt
    assert target.read_text() == "old\n" and sorted(p.name for p in tmp_path.iterdir()) == ["report.csv"]
    write_text_atomic(target, "new\n")
    assert target.read_text() == "new\n" and sorted(p.name for p in tmp_path.iterdir()) == ["report.csv"]
