"""``traitlab chat``: one-shot or interactive chat, optionally under interventions."""

from __future__ import annotations

import contextlib
import sys
from pathlib import Path

import typer

from traitlab.cli.common import DEVICE, DTYPE, FAMILY, MODEL, console, read_family
from traitlab.model import load_model
from traitlab.model.generation import SamplingParams
from traitlab.progress import note
from traitlab.registry import load_applied
from traitlab.validate import utf8_arg


def chat(
    model: str = MODEL,
    message: str | None = typer.Option(None, "--message", "-p", help="One message; omit for interactive chat."),
    system: str | None = typer.Option(None, "--system", "-s", help="System prompt."),
    apply: list[str] = typer.Option([], "--apply", "-a", help="ARTIFACT[:SCALE], repeatable."),
    max_new_tokens: int = typer.Option(128, "--max-new-tokens"),
    temperature: float = typer.Option(0.0, "--temperature", "-t", help="0 = greedy."),
    top_p: float = typer.Option(1.0, "--top-p"),
    seed: int = typer.Option(0, "--seed"),
    family: Path | None = FAMILY,
    dtype: str | None = DTYPE,
    device: str | None = DEVICE,
) -> None:
    """Chat with a model, optionally steered by saved interventions."""
    SamplingParams(max_new_tokens, temperature, top_p, 0, seed)
    utf8_arg(message, "--message")
    utf8_arg(system, "--system")
    family_override = read_family(family)
    applied_lines: list[str] = []
    intervention = load_applied(apply, report=applied_lines.append)
    lm = load_model(model, dtype=dtype, device=device, family=family_override)
    if intervention is not None:
        intervention.check_model(lm)
    for line in applied_lines:  # once the artifacts are known to fit the model
        note(line)
    options = dict(max_new_tokens=max_new_tokens, temperature=temperature, top_p=top_p, seed=seed)
    with intervention.applied(lm) if intervention else contextlib.nullcontext():
        if message is not None:
            print(lm.chat(message, system=system, **options))
            return
        history: list[dict[str, str]] = []
        if sys.stdin.isatty():
            console.print("[dim]Chatting; an empty line or Ctrl-D ends.[/dim]")
        while True:
            try:
                text = input("> " if sys.stdin.isatty() else "").strip()
            except EOFError:
                break
            if not text:
                break
            history.append({"role": "user", "content": text})
            reply = lm.chat(history, system=system, **options)
            history.append({"role": "assistant", "content": reply})
            print(reply, flush=True)
