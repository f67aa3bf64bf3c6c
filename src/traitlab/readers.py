"""Small text readers every layer shares: JSON lines and integer ranges. User mistakes are ``ConfigError``s
that name the file and line (or the text) to fix."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from traitlab.errors import ConfigError
from traitlab.validate import read_text


def jsonl_rows(text: str, source: str | Path) -> list[tuple[int, Any]]:
    """``(line number, value)`` of every non-blank line of JSON-lines ``text`` read from ``source``."""
    rows = []
    for number, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        try:
            rows.append((number, json.loads(line)))
        except json.JSONDecodeError as exc:
            raise ConfigError(f"{source} line {number} is not valid JSON: {exc.msg}") from None
    return rows


def read_jsonl(path: str | Path, what: str = "file") -> list[tuple[int, Any]]:
    """``jsonl_rows`` of a file; ``what`` names it in the error when it is missing."""
    source = Path(path)
    if not source.is_file():
        raise ConfigError(f"{what} {source} not found")
    return jsonl_rows(read_text(source, what), source)


def int_ranges(text: str) -> list[int]:
    """``"2-4"`` → [2, 3, 4]; ``"0,3"`` → [0, 3]; ``"0-1,5"`` → [0, 1, 5], in the order written. ``ValueError``
    on anything else (the caller words the error)."""
    out: list[int] = []
    for part in str(text).split(","):
        part = part.strip()
        if "-" in part:
            low, high = (int(x) for x in part.split("-"))
            if high < low:
                raise ValueError(f"empty range {part}")
            out.extend(range(low, high + 1))
        elif part:
            out.append(int(part))
    return out
