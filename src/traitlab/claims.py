"""Claim files: one process at a time computes a thing that several processes of a run may need.

``claimed(folder, name)`` holds ``<folder>/<name>.claim`` (created with ``O_CREAT | O_EXCL``, holding the pid)
for a block; another process asking for the same name waits until it is released, and a claim whose process
has died is taken over. What the block computes is read back through the caller's own cache (an artifact file),
so the second process finds it done. ``<name>.done`` marks a finished claim for callers that skip done work.
"""

from __future__ import annotations

import contextlib
import errno
import os
import time
from collections.abc import Iterator
from pathlib import Path

_POLL_S = 0.2
_held: set[Path] = set()  # claims this process holds: a nested claim on the same name is already held


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except OSError as exc:
        return exc.errno == errno.EPERM
    return True


def _holder(claim: Path) -> int | None:
    """The pid holding ``claim``; ``None`` when the file is gone or unreadable (being written)."""
    try:
        return int(claim.read_text().strip() or "0") or None
    except (OSError, ValueError):
        return None


def _try_claim(claim: Path) -> bool:
    try:
        handle = os.open(claim, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
    except FileExistsError:
        return False
    with os.fdopen(handle, "w") as file:
        file.write(str(os.getpid()))
    return True


@contextlib.contextmanager
def claimed(folder: Path, name: str, *, wait: bool = True, mark_done: bool = True) -> Iterator[bool]:
    """Hold the claim on ``name`` for the block. Yields ``True`` once this process holds it; with ``wait``, a live
    holder is waited for first (a dead one's claim is taken over). Without ``wait`` it yields ``False`` at once
    when another process holds the claim or the slot is done. The claim is released when the block ends, and
    ``<name>.done`` is written (``mark_done``) when it ends without an exception."""
    folder.mkdir(parents=True, exist_ok=True)
    claim, done = folder / f"{name}.claim", folder / f"{name}.done"
    if claim in _held:
        yield True
        return
    if not wait and done.exists():
        yield False
        return
    while not _try_claim(claim):
        holder = _holder(claim)
        if holder is not None and not _alive(holder):
            with contextlib.suppress(FileNotFoundError):
                claim.unlink()  # its process is gone: take the slot over
            continue
        if not wait:
            yield False
            return
        time.sleep(_POLL_S)
    _held.add(claim)
    try:
        yield True
        if mark_done:
            done.touch()
    finally:
        _held.discard(claim)
        with contextlib.suppress(FileNotFoundError):
            claim.unlink()
