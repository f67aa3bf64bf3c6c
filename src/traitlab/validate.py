"""One validation layer shared by every command and the server: finite numbers and tensors, output paths checked
before any work, UTF-8 text with a clear error, and folders written atomically (temporary sibling, then rename).

Every check raises a ``TraitlabError`` subclass (the CLI prints one line and exits 2; the server answers 400).
"""

from __future__ import annotations

import contextlib
import math
import os
import shutil
import signal
import threading
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any, TypeVar

import torch

from traitlab.errors import ArtifactError, ConfigError, TraitlabError

T = TypeVar("T")


def finite(value: Any, what: str, error: type[TraitlabError] = ConfigError) -> float:
    """``value`` as a finite float; NaN, ±inf, overflowing numbers (``1e400``) and non-numbers are refused."""
    try:
        number = float(value)
    except (TypeError, ValueError, OverflowError):
        raise error(f"{what} must be a number, got {value!r}") from None
    if isinstance(value, bool) or not math.isfinite(number):
        raise error(f"{what} must be a finite number, got {value!r}")
    return number


def finite_tensors(tensors: Mapping[str, torch.Tensor], where: str,
                   error: type[TraitlabError] = ArtifactError) -> None:
    """Refuse any floating tensor holding NaN or ±inf, naming the first one."""
    for name, tensor in tensors.items():
        if tensor.is_floating_point() and tensor.numel() and not bool(torch.isfinite(tensor).all()):
            bad = int((~torch.isfinite(tensor)).sum())
            raise error(f"{where}: tensor '{name}' holds {bad} NaN/inf values; refit or fix it")


def bounded_int(value: Any, what: str, lo: int = -(2**63), hi: int = 2**63 - 1) -> int:
    """An integer within ``[lo, hi]`` (seeds: a torch generator takes 64 bits)."""
    if isinstance(value, bool) or not isinstance(value, int) or not lo <= value <= hi:
        raise ConfigError(f"{what} must be an integer in [{lo}, {hi}], got {value!r}")
    return value


def utf8_arg(text: str | None, what: str) -> str | None:
    """A command-line text argument that must be valid UTF-8 (Python hands over invalid bytes as surrogates)."""
    if text is not None:
        try:
            text.encode("utf-8")
        except UnicodeEncodeError:
            raise ConfigError(f"{what} is not valid UTF-8 text") from None
    return text


def read_text(path: str | os.PathLike[str], what: str = "file") -> str:
    """A text file as UTF-8, with one clear error for a missing, unreadable, folder or non-UTF-8 file."""
    source = Path(path)
    if source.is_dir():
        raise ConfigError(f"{what} {source} is a folder, not a file")
    try:
        return source.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"{what} {source} not found") from None
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{what} {source} is not UTF-8 text (byte {exc.start}): save it as UTF-8") from None
    except OSError as exc:
        raise ConfigError(f"cannot read {what} {source}: {exc.strerror or exc}") from None


def output_file(path: str | os.PathLike[str], what: str = "output", overwrite: bool = True,
                make_parents: bool = False) -> Path:
    """Check a file to be written, before any work: not a folder, its folder exists (or, with ``make_parents``,
    will be made) and is writable, and (unless ``overwrite``) it does not exist yet."""
    target = Path(path)
    if target.is_dir():
        raise ConfigError(f"{what} {target} is a folder; give a file name")
    if target.exists() and not overwrite:
        raise ConfigError(f"{what} {target} exists; remove it or choose another name")
    existing = target.parent
    while make_parents and not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if existing.exists() and not existing.is_dir():
        raise ConfigError(f"cannot write {what} {target}: {existing} is a file, not a folder")
    _writable_parent(existing / target.name if make_parents else target, what)
    if target.exists() and not os.access(target, os.W_OK):
        raise ConfigError(f"{what} {target} is not writable")
    return target


def output_folder(path: str | os.PathLike[str], what: str = "output folder") -> Path:
    """Check a folder to be written, before any work: not a file, empty if it exists, parent writable."""
    target = Path(path)
    if target.exists() and not target.is_dir():
        raise ConfigError(f"{what} {target} is a file; give a folder")
    if target.is_dir() and any(target.iterdir()):
        raise ConfigError(f"{what} {target} is not empty; remove it or choose another")
    _writable_parent(target, what)
    return target


def _writable_parent(target: Path, what: str) -> None:
    parent = target.parent
    if not parent.is_dir():
        raise ConfigError(f"cannot write {what} {target}: folder {parent} does not exist")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise ConfigError(f"cannot write {what} {target}: folder {parent} is not writable")


@contextlib.contextmanager
def atomic_folder(path: str | os.PathLike[str]) -> Iterator[Path]:
    """Write a multi-file output into a temporary sibling folder, renamed to ``path`` only on success; on any
    failure (or Ctrl-C) the partial folder is removed, so a rerun starts clean. An existing empty ``path`` is
    replaced."""
    target = Path(path)
    output_folder(target)
    temporary = target.parent / f".{target.name}.partial-{os.getpid()}"
    shutil.rmtree(temporary, ignore_errors=True)
    temporary.mkdir()
    try:
        yield temporary
        if target.is_dir():
            target.rmdir()  # empty (checked above)
        os.replace(temporary, target)
    finally:
        shielded(lambda: shutil.rmtree(temporary, ignore_errors=True))


@contextlib.contextmanager
def atomic_file(path: str | os.PathLike[str], mode: str = "w", encoding: str | None = "utf-8",
                newline: str | None = None) -> Iterator[Any]:
    """Write one file through a hidden temporary sibling (``.NAME.tmp``), renamed over ``path`` only when the
    block finishes; on any failure or Ctrl-C the temporary is removed and ``path`` is untouched."""
    target = Path(path)
    temporary = target.with_name(f".{target.name}.tmp")
    binary = "b" in mode
    try:
        with temporary.open(mode, encoding=None if binary else encoding,
                            newline=None if binary else newline) as handle:
            yield handle
        os.replace(temporary, target)
    finally:
        shielded(lambda: temporary.unlink(missing_ok=True))


def write_text_atomic(path: str | os.PathLike[str], text: str) -> Path:
    """``Path.write_text`` (UTF-8) through ``atomic_file``: ``path`` holds the old content or the whole new one."""
    with atomic_file(path) as handle:
        handle.write(text)
    return Path(path)


def shielded(fn: Callable[[], T]) -> T:
    """Run ``fn`` to the end even if Ctrl-C arrives meanwhile (a weight restore must not stop half-way); the
    interrupt is raised after it finishes. Only the main thread can defer SIGINT; elsewhere ``fn`` just runs."""
    if threading.current_thread() is not threading.main_thread():
        return fn()
    pending: list[Any] = []
    try:
        previous = signal.signal(signal.SIGINT, lambda *a: pending.append(a))
    except (ValueError, OSError):
        return fn()
    try:
        return fn()
    finally:
        signal.signal(signal.SIGINT, previous)
        if pending:
            raise KeyboardInterrupt
