"""Progress on stderr (rich): bars for loops, a status line for one long step, each labelled with what runs
(method, trait, layer). On a terminal they are transient bars; off one (logs, pipes, CI) the CLI prints
one plain line when a loop starts and one when it ends (``set_lines``), never a bar's blank lines.
Silenced globally by ``--quiet`` (``set_quiet``). ``--verbose`` (``set_verbose``) lets the libraries' own
logging and warnings through."""

from __future__ import annotations

import contextlib
import sys
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import TypeVar

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn
from rich.progress import track as rich_track

T = TypeVar("T")
_state = {"quiet": False, "verbose": False, "lines": False}
_activity: list[str] = []
stderr = Console(stderr=True)


def set_quiet(quiet: bool) -> None:
    _state["quiet"] = quiet


def is_quiet() -> bool:
    return _state["quiet"]


def set_lines(lines: bool) -> None:
    """Off a terminal, print a plain line where a bar would be (the CLI turns this on; library code stays
    silent off a terminal)."""
    _state["lines"] = lines


def set_verbose(verbose: bool) -> None:
    _state["verbose"] = verbose


def is_verbose() -> bool:
    return _state["verbose"]


def note(line: str) -> None:
    """One plain informational line on stderr (what runs, what was applied) unless ``--quiet``; stdout stays
    the command's result."""
    if not is_quiet():
        stderr.print(line, markup=False, highlight=False, soft_wrap=True)


@contextlib.contextmanager
def activity(label: str) -> Iterator[None]:
    """Name what runs inside the block (``"persona vectors extraversion_high"``, ``"layer 12"``): every bar and
    line inside is prefixed with the open labels, so a generic loop ("generating") says whose it is."""
    _activity.append(label)
    try:
        yield
    finally:
        _activity.pop()


def _label(description: str) -> str:
    return ": ".join([*_activity, description])


def _shown(enabled: bool) -> bool:
    return enabled and not is_quiet() and stderr.is_terminal


def _plain(enabled: bool) -> bool:
    return enabled and _state["lines"] and not is_quiet() and not stderr.is_terminal


def track(items: Iterable[T], description: str, total: int | None = None, enabled: bool = True) -> Iterator[T]:
    """Iterate with a transient progress bar on stderr (a terminal), or a plain start and end line (off one);
    nothing when quiet or disabled."""
    description = _label(description)
    if _plain(enabled):
        count = f" ({total} steps)" if total else ""
        note(f"{description}{count} ...")
        start = time.perf_counter()
        yield from items
        note(f"{description}: done in {time.perf_counter() - start:.1f} s")
        return
    if not _shown(enabled):
        yield from items
        return
    yield from rich_track(items, description=description, total=total, console=stderr, transient=True)


@contextlib.contextmanager
def status(description: str, enabled: bool = True) -> Iterator[None]:
    """A transient spinner with ``description`` on stderr for one long step (a terminal), or one plain line
    (off one); nothing when quiet or disabled."""
    description = _label(description)
    if _plain(enabled):
        note(f"{description} ...")
        yield
        return
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
