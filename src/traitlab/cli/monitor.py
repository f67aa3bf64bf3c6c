"""``traitlab monitor``: persona-vector projections of conversations (CSV), and the CSV and layer helpers that
``traitlab screen`` shares."""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Any

import typer

from traitlab.cli.common import MODEL, console
from traitlab.cli.vectors import _check_out, _load_vector
from traitlab.errors import ConfigError
from traitlab.model import load_model
from traitlab.model.chat import Conversation, check_conversation
from traitlab.readers import read_jsonl
from traitlab.validate import atomic_file


def read_conversations(path: Path) -> list[Conversation]:
    """JSONL of ``{"messages": [...]}`` (or a bare list of messages) per line."""
    rows = []
    for number, row in read_jsonl(path, "input"):
        messages = row.get("messages") if isinstance(row, dict) else row
        if not isinstance(messages, list) or not messages:
            raise ConfigError(f"{path}:{number} needs a non-empty 'messages' list")
        rows.append(check_conversation(messages, f"{path}:{number}"))
    if not rows:
        raise ConfigError(f"input {path} holds no conversations")
    return rows


def write_csv(rows: list[dict[str, Any]], out: Path) -> None:
    """Write rows atomically (temporary file, then rename; nothing is left on a failure or Ctrl-C)."""
    with atomic_file(out, newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)


def vector_on_model(vector_path: Path, model: str, layer: int | None) -> tuple[Any, Any, int]:
    """(persona vector, loaded model, layer): the vector checked against the model, at ``layer`` (default its
    steering layer), checked to exist."""
    vector = _load_vector(vector_path)
    lm = load_model(model)
    vector.check_model(lm)
    chosen = layer if layer is not None else next(iter(vector.vectors))
    lm.hooks.check_layer(chosen)
    return vector, lm, chosen


def monitor(
    vector_path: Path = typer.Option(..., "--vector", "-v", help="Persona-vector artifact."),
    input_path: Path = typer.Option(..., "--input", "-i", help="Conversations JSONL."),
    out: Path = typer.Option(..., "--out", "-o", help="CSV to write."),
    model: str = MODEL,
    layer: int | None = typer.Option(None, "--layer", help="Default: the vector's steering layer."),
    generate: bool = typer.Option(False, "--generate", help="Generate replies for conversations ending on a "
                                                              "user turn, and project them too."),
    max_new_tokens: int = typer.Option(96, "--max-new-tokens"),
) -> None:
    """Project each conversation's last prompt token and reply mean on a persona vector (CSV)."""
    from traitlab.monitor import project_conversations

    conversations = read_conversations(input_path)
    _check_out(out)
    vector, lm, chosen = vector_on_model(vector_path, model, layer)
    replies: dict[int, str] = {}
    if generate:
        open_rows = [i for i, c in enumerate(conversations) if c[-1].get("role") != "assistant"]
        texts = lm.generate_chat([conversations[i] for i in open_rows], max_new_tokens=max_new_tokens).texts
        replies = dict(zip(open_rows, texts, strict=True))
        conversations = [[*c, {"role": "assistant", "content": replies[i]}] if i in replies else c
                         for i, c in enumerate(conversations)]
    rows = project_conversations(lm, vector.direction(chosen), chosen, conversations)
    for row in rows:
        row["layer"] = chosen
        if generate:
            row["generated_reply"] = replies.get(row["index"], "")
    write_csv(rows, out)
    console.print(f"wrote {len(rows)} rows to {out} (layer {chosen})")
