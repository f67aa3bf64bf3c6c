"""Progress bars on stderr (rich), silenced globally by ``--quiet`` or ``traitlab.progress.set_quiet``."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import TypeVar

from rich.console import Console
from rich.progress import track as rich_track

T = TypeVar("T")
_state = {"quiet": False}
stderr = Console(stderr=True)


def set_quiet(quiet: bool) -> None:
    _state["quiet"] = quiet


def is_quiet() -> bool:
    return _state["quiet"]


def track(items: Iterable[T], description: str, total: int | None = None, enabled: bool = True) -> Iterator[T]:
    """Iterate with a transient progress bar on stderr unless quiet or disabled."""
    if is_quiet() or not enabled:
        yield from items
        return
    yield from rich_track(items, description=description, total=total, console=stderr, transient=True)
