"""Tensor-at-a-time access to HF safetensors checkpoints, for out-of-core weight arithmetic.

``CheckpointReader`` opens a model folder (``model.safetensors`` or a sharded ``*.index.json``) and hands out one
tensor at a time. ``StreamingWriter`` writes a safetensors file tensor by tensor: the header (names, dtypes,
shapes, offsets) is known up front, so memory never holds more than the tensor being written — the
``safetensors`` library itself only saves whole dicts. ``PlannedShardedWriter`` writes an HF sharded checkpoint.
Writes are atomic (temporary file + rename).
"""

from __future__ import annotations

import json
import math
import os
import struct
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError, safe_open

from traitlab.errors import ConfigError
from traitlab.validate import finite_tensors

DTYPE_CODES = {torch.float32: "F32", torch.float16: "F16", torch.bfloat16: "BF16", torch.float64: "F64",
               torch.int64: "I64", torch.int32: "I32", torch.int16: "I16", torch.int8: "I8", torch.uint8: "U8",
               torch.bool: "BOOL"}
CODE_DTYPES = {code: dtype for dtype, code in DTYPE_CODES.items()}


def read_header(path: Path) -> dict[str, Any]:
    """A safetensors file's header (name → dtype, shape, data_offsets), with ``__data_start__`` added."""
    try:
        with path.open("rb") as handle:
            (length,) = struct.unpack("<Q", handle.read(8))
            header = json.loads(handle.read(length))
    except (OSError, struct.error, ValueError) as exc:
        raise ConfigError(f"cannot read {path}: {exc}") from None
    header.pop("__metadata__", None)
    header["__data_start__"] = 8 + length
    return header


def read_tensor(path: Path, header: dict[str, Any], name: str) -> torch.Tensor | None:
    """Tensor ``name`` of a safetensors file read with plain reads (no memory map); None for a dtype this
    reader does not know (the caller falls back to ``safe_open``)."""
    entry = header.get(name)
    if entry is None or entry["dtype"] not in CODE_DTYPES:
        return None
    start, end = entry["data_offsets"]
    tensor = torch.empty(entry["shape"], dtype=CODE_DTYPES[entry["dtype"]])
    if end > start:
        buffer = tensor.reshape(-1).view(torch.uint8).numpy()
        with path.open("rb") as handle:
            handle.seek(header["__data_start__"] + start)
            if handle.readinto(memoryview(buffer)) != end - start:
                raise ConfigError(f"{path} is truncated at tensor {name}")
    return tensor


class CheckpointReader:
    """Lazy reader of the safetensors weights of a model folder."""

    def __init__(self, folder: str | os.PathLike[str]) -> None:
        self.folder = Path(folder)
        index = self.folder / "model.safetensors.index.json"
        single = self.folder / "model.safetensors"
        if index.is_file():
            weight_map = json.loads(index.read_text())["weight_map"]
            self.files = {name: self.folder / shard for name, shard in weight_map.items()}
        elif single.is_file():
            self.files = {}
            with self._open(single) as handle:
                self.files = dict.fromkeys(handle.keys(), single)
        else:
            raise ConfigError(f"{self.folder} has no model.safetensors or model.safetensors.index.json")
        self._handles: dict[Path, Any] = {}
        self._headers: dict[Path, dict[str, Any]] = {}

    @staticmethod
    def _open(path: Path) -> Any:
        try:
            return safe_open(str(path), framework="pt")
        except (SafetensorError, OSError) as exc:
            raise ConfigError(f"cannot read {path}: {exc}") from None

    def _handle(self, name: str) -> Any:
        path = self.files[name]
        if path not in self._handles:
            self._handles[path] = self._open(path).__enter__()
        return self._handles[path]

    def keys(self) -> list[str]:
        return list(self.files)

    def shape(self, name: str) -> list[int]:
        return list(self._handle(name).get_slice(name).get_shape())

    def dtype(self, name: str) -> torch.dtype:
        return CODE_DTYPES[self._handle(name).get_slice(name).get_dtype()]

    def get(self, name: str) -> torch.Tensor:
        """The tensor ``name``, read with plain file reads into a fresh tensor (no memory map: the pages of a
        mapped checkpoint count toward the process's resident memory for as long as the map lives, which made
        a merge's peak RSS grow by every input checkpoint's size)."""
        path = self.files[name]
        if path not in self._headers:
            self._headers[path] = read_header(path)
        tensor = read_tensor(path, self._headers[path], name)
        return tensor if tensor is not None else self._handle(name).get_tensor(name)

    def __iter__(self) -> Iterator[tuple[str, torch.Tensor]]:
        for name in self.keys():
            yield name, self.get(name)


class StreamingWriter:
    """Write a safetensors file tensor by tensor, in the order of ``entries`` (name, dtype, shape)."""

    def __init__(self, path: str | os.PathLike[str], entries: Sequence[tuple[str, torch.dtype, Sequence[int]]],
                 metadata: dict[str, str] | None = None) -> None:
        self.path = Path(path)
        if not self.path.parent.is_dir():
            raise ConfigError(f"cannot write {self.path}: folder {self.path.parent} does not exist")
        header: dict[str, Any] = {"__metadata__": metadata} if metadata else {}
        offset = 0
        self.expected: list[tuple[str, torch.dtype, tuple[int, ...]]] = []
        for name, dtype, shape in entries:
            size = math.prod(shape) * torch.empty((), dtype=dtype).element_size()
            header[name] = {"dtype": DTYPE_CODES[dtype], "shape": list(shape), "data_offsets": [offset, offset + size]}
            offset += size
            self.expected.append((name, dtype, tuple(shape)))
        raw = json.dumps(header, separators=(",", ":")).encode()
        raw += b" " * (-len(raw) % 8)
        self.temporary = self.path.with_name(f".{self.path.name}.tmp")
        self.handle = self.temporary.open("wb")
        self.handle.write(struct.pack("<Q", len(raw)) + raw)
        self.position = 0

    def write(self, name: str, tensor: torch.Tensor) -> None:
        expected = self.expected[self.position]
        if (name, tensor.dtype, tuple(tensor.shape)) != expected:
            raise ValueError(f"expected {expected}, got {(name, tensor.dtype, tuple(tensor.shape))}")
        self.handle.write(memoryview(tensor.detach().cpu().contiguous().reshape(-1).view(torch.uint8).numpy()))
        self.position += 1

    def close(self) -> Path:
        self.handle.close()
        if self.position != len(self.expected):
            self.temporary.unlink()
            raise ValueError(f"wrote {self.position} of {len(self.expected)} tensors")
        self.temporary.replace(self.path)
        return self.path

    def abort(self) -> None:
        self.handle.close()
        self.temporary.unlink(missing_ok=True)


class PlannedShardedWriter:
    """An HF sharded checkpoint written tensor by tensor in the order of ``entries`` (name, dtype, shape): the
    shards are planned up front (a new shard starts when the next tensor would pass ``shard_bytes``), so memory
    holds only the tensor being written, not a whole shard."""

    def __init__(self, folder: str | os.PathLike[str], entries: Sequence[tuple[str, torch.dtype, Sequence[int]]],
                 shard_bytes: int = 2 * 1024**3) -> None:
        self.folder = Path(folder)
        self.folder.mkdir(parents=True, exist_ok=True)
        self.plan: list[list[tuple[str, torch.dtype, Sequence[int]]]] = [[]]
        size = 0
        for name, dtype, shape in entries:
            nbytes = math.prod(shape) * torch.empty((), dtype=dtype).element_size()
            if self.plan[-1] and size + nbytes > shard_bytes:
                self.plan.append([])
                size = 0
            self.plan[-1].append((name, dtype, shape))
            size += nbytes
        total = len(self.plan)
        self.names = ["model.safetensors"] if total == 1 else [f"model-{i + 1:05d}-of-{total:05d}.safetensors"
                                                               for i in range(total)]
        self.index, self.written, self.writer = 0, 0, self._open(0)

    def _open(self, index: int) -> StreamingWriter:
        return StreamingWriter(self.folder / self.names[index], self.plan[index], {"format": "pt"})

    def add(self, name: str, tensor: torch.Tensor) -> None:
        finite_tensors({name: tensor}, f"refusing to write the checkpoint {self.folder}")
        if self.written == len(self.plan[self.index]):
            self.writer.close()
            self.index, self.written = self.index + 1, 0
            self.writer = self._open(self.index)
        self.writer.write(name, tensor)
        self.written += 1

    def close(self) -> list[Path]:
        self.writer.close()
        if self.index != len(self.plan) - 1:
            raise ValueError(f"wrote {self.index + 1} of {len(self.plan)} shards")
        if len(self.plan) > 1:
            weight_map = {name: self.names[i] for i, shard in enumerate(self.plan) for name, _, _ in shard}
            (self.folder / "model.safetensors.index.json").write_text(
                json.dumps({"metadata": {}, "weight_map": weight_map}, indent=2))
        return [self.folder / name for name in self.names]

    def abort(self) -> None:
        self.writer.abort()
