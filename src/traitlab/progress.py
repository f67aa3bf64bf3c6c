"""Progress on stderr (rich): bars for loops, a status line for one long step. Silenced globally by
``--quiet`` (``set_quiet``), and shown only on a terminal, so logs and pipes get no blank progress lines.
``--verbose`` (``set_verbose``) lets the libraries' own logging and warnings through."""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import TypeVar

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn
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


def steps(items: Sequence[T], describe: Callable[[T], str], enabled: bool = True) -> Iterator[T]:
    """Iterate with a bar whose label names the current item (``describe(item)``: what is being fitted or
    evaluated). On a terminal the bar is transient; off a terminal (a log, a pipe) each item gets one plain
    line ``[k/n] label`` on stderr instead, so a log says what ran without blank progress lines. Nothing when
    quiet or disabled."""
    if not enabled or is_quiet() or not items:
        yield from items
        return
    total = len(items)
    if not stderr.is_terminal:
        for index, item in enumerate(items, 1):
            print(f"[{index}/{total}] {describe(item)}", file=sys.stderr, flush=True)
            yield item
        return
    columns = (SpinnerColumn(), TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
               TimeElapsedColumn())
    with Progress(*columns, console=stderr, transient=True) as bar:
        task = bar.add_task(describe(items[0]), total=total)
        for item in items:
            bar.update(task, description=describe(item))
            yield item
            bar.advance(task)
