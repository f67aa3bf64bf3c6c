"""Progress on stderr (rich): bars for loops, a status line for one long step. Silenced globally by
``--quiet`` (``set_quiet``), and shown only on a terminal, so logs and pipes get no blank progress lines.
``--verbose`` (``set_verbose``) lets the libraries' own logging and warnings through."""

from __future__ import annotations

import contextlib
from collections.abc import Iterable, Iterator
from typing import TypeVar

from rich.console import Console
from rich.progress import track as rich_track

T = TypeVar("T")
_state = {"quiet": False, "verbose": False}
stderr = Console(stderr=True)


def set_quiet(quiet: bool) -> None:
    _state["quiet"] = quiet


def is_quiet() -> bool:
    return _state["quiet"]


def set_verbose(verbose: bool) -> None:
    _state["verbose"] = verbose


def is_verbose() -> bool:
    return _state["verbose"]


def note(line: str) -> None:
    """One plain informational line on stderr (what runs, what was applied) unless ``--quiet``; stdout stays
    the command's result."""
    if not is_quiet():
        stderr.print(line, markup=False, highlight=False, soft_wrap=True)


def _shown(enabled: bool) -> bool:
    return enabled and not is_quiet() and stderr.is_terminal


def track(items: Iterable[T], description: str, total: int | None = None, enabled: bool = True) -> Iterator[T]:
    """Iterate with a transient progress bar on stderr unless quiet, disabled or off a terminal."""
    if not _shown(enabled):
        yield from items
        return
    yield from rich_track(items, description=description, total=total, console=stderr, transient=True)


@contextlib.contextmanager
def status(description: str, enabled: bool = True) -> Iterator[None]:
    """A transient spinner with ``description`` on stderr for one long step (same rules as ``track``)."""
    if not _shown(enabled):
        yield
        return
    with stderr.status(description):
        yield
