"""Options and helpers shared by commands."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import typer
from rich.console import Console
from rich.table import Table

from traitlab.errors import ConfigError
from traitlab.validate import read_text

console = Console()

MODEL = typer.Option("traitlab/persona-tiny", "--model", "-m",
                     help="Built-in name (`traitlab models`: smollm2-135m-instruct, gemma-3-270m, ...), "
                     "a .gguf file, a local model folder, or a hub id.")
FAMILY = typer.Option(None, "--family", help="JSON file overriding family-table fields (layers, mlp, act, ...).")
DTYPE = typer.Option(None, "--dtype", help="auto, float32, bfloat16 or float16 (default: float32 on CPU).")
DEVICE = typer.Option(None, "--device", help="cpu, cuda, cuda:N or auto (device_map='auto' over GPUs).")


def read_family(path: Path | None) -> dict[str, Any] | None:
    if path is None:
        return None
    try:
        data = json.loads(read_text(path, "family override"))
    except json.JSONDecodeError as exc:
        raise ConfigError(f"family override {path} is not valid JSON: {exc}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"family override {path} must be a JSON object")
    return data


def key_value_table(rows: dict[str, Any], title: str | None = None) -> Table:
    table = Table(title=title, show_header=False)
    table.add_column(style="bold cyan")
    table.add_column()
    for key, value in rows.items():
        table.add_row(key, str(value))
    return table
