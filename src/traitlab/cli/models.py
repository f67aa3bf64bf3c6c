"""``traitlab models``: the built-in models, whether each is installed and cached, and what it is for."""

from __future__ import annotations

import json
from typing import Any

import typer
from rich import box
from rich.table import Table

from traitlab.cli.common import console
from traitlab.model.builtins import BUILTIN_MODELS, BuiltinModel
from traitlab.model.gguf import SOURCE_FILE, cache_root, cached_folder


def model_row(model: BuiltinModel) -> dict[str, Any]:
    """One built-in model as plain data: installed, cached (and where), size, family, use, install command."""
    paths = model.part_paths() if model.parts else None
    folder = cached_folder(model.sha256) if model.sha256 else None
    return {
        "name": model.name, "title": model.title, "family": model.family, "parameters": model.parameters,
        "installed": not model.parts or paths is not None,
        "size_mb": round(sum(p.stat().st_size for p in paths) / 2**20) if paths else model.download_mb,
        "cached": bool(folder and (folder / SOURCE_FILE).is_file()) if model.parts else None,
        "cache_folder": str(folder) if folder else None,
        "good_for": model.good_for, "install": model.install_command,
    }


def models(as_json: bool = typer.Option(False, "--json", help="Print one JSON object per model.")) -> None:
    """The built-in models: installed or not, size, cached or not, family, and what each is good for.
    Load one with ``--model NAME``; the first load dequantizes its GGUF once into $TRAITLAB_CACHE."""
    rows = [model_row(model) for model in BUILTIN_MODELS.values()]
    if as_json:
        for row in rows:
            print(json.dumps(row))
        return
    table = Table(box=box.SIMPLE_HEAD, show_edge=False, padding=(0, 1), title_justify="left",
                  title=f"built-in models (cache: {cache_root()})")
    table.add_column("name · good for", ratio=1)
    for column in ("state", "size", "family"):
        table.add_column(column, no_wrap=True)
    for row in rows:
        state = ("ships with traitlab" if row["cached"] is None else "installed, cached" if row["cached"]
                 else "installed" if row["installed"] else "not installed")
        size = f"{row['parameters']} {row['size_mb']}MB" if row["size_mb"] else row["parameters"]
        table.add_row(f"[bold]{row['name']}[/]\n[dim]{row['good_for']}[/]", state, size, row["family"])
    console.print(table)
    for row in rows:
        if not row["installed"]:
            console.print(f"install {row['name']}: {row['install']}", soft_wrap=True)
