"""``traitlab monitor``, ``traitlab screen`` and ``traitlab finetune``: persona-vector monitoring of
conversations, training-data screening, and SFT with optional preventative steering."""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Any

import typer

from traitlab.cli.common import MODEL, console
from traitlab.cli.vectors import _check_out, _load_vector
from traitlab.errors import ConfigError
from traitlab.model import load_model
from traitlab.model.chat import Conversation
from traitlab.readers import read_jsonl


def read_conversations(path: Path) -> list[Conversation]:
    """JSONL of ``{"messages": [...]}`` (or a bare list of messages) per line."""
    rows = []
    for number, row in read_jsonl(path, "input"):
        messages = row.get("messages") if isinstance(row, dict) else row
        if not isinstance(messages, list) or not messages:
            raise ConfigError(f"{path}:{number} needs a non-empty 'messages' list")
        rows.append(messages)
    if not rows:
        raise ConfigError(f"input {path} holds no conversations")
    return rows


def write_csv(rows: list[dict[str, Any]], out: Path) -> None:
    """Write rows atomically (temporary file, then rename)."""
    temporary = out.with_name(f".{out.name}.tmp")
    with temporary.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    temporary.replace(out)


def _layer(vector, layer: int | None) -> int:
    return layer if layer is not None else next(iter(vector.vectors))


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
    vector = _load_vector(vector_path)
    lm = load_model(model)
    vector.check_model(lm)
    chosen = _layer(vector, layer)
    lm.hooks.check_layer(chosen)
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


def screen(
    vector_path: Path = typer.Option(..., "--vector", "-v"),
    data: Path = typer.Option(..., "--data", "-d", help="Training chat JSONL (each ends with the reply)."),
    out: Path = typer.Option(..., "--out", "-o", help="Ranked CSV to write."),
    model: str = MODEL,
    layer: int | None = typer.Option(None, "--layer"),
    max_new_tokens: int = typer.Option(96, "--max-new-tokens"),
) -> None:
    """Rank training samples by ΔP, how far their replies sit along the trait beyond the model's own."""
    from traitlab.finetune import load_chat_jsonl
    from traitlab.monitor import screen as run_screen

    samples = load_chat_jsonl(data)
    _check_out(out)
    vector = _load_vector(vector_path)
    lm = load_model(model)
    vector.check_model(lm)
    chosen = _layer(vector, layer)
    rows = run_screen(lm, vector.direction(chosen), chosen, samples, max_new_tokens)
    ranked = sorted(rows, key=lambda r: -(r["delta_p"] if r["delta_p"] is not None else float("-inf")))
    for rank, row in enumerate(ranked, start=1):
        row["rank"] = rank
    write_csv(ranked, out)
    scores = [r["delta_p"] for r in rows if r["delta_p"] is not None]
    console.print(f"dataset mean ΔP {sum(scores) / max(len(scores), 1):.4f} over {len(scores)} samples; "
                  f"ranked list in {out}")


def finetune(
    data: Path = typer.Option(..., "--data", "-d", help="Chat JSONL."),
    out: Path = typer.Option(..., "--out", "-o", help="Folder for the finetuned HF checkpoint."),
    model: str = MODEL,
    method: str = typer.Option("lora", "--method", help="lora or full."),
    epochs: float = typer.Option(1.0, "--epochs"),
    learning_rate: float = typer.Option(2e-4, "--lr"),
    batch_size: int = typer.Option(8, "--batch-size"),
    seed: int = typer.Option(0, "--seed"),
    steer: str | None = typer.Option(None, "--steer", help="VECTOR[:COEF] — preventative steering during "
                                                            "training (all tokens, at the vector's layer)."),
    shift_vector: Path | None = typer.Option(None, "--shift-vector", help="Report the finetune-shift along "
                                                                          "this persona vector."),
    shift_trait: str | None = typer.Option(None, "--shift-trait", help="Trait whose eval questions are the "
                                                                        "shift prompts (default: the vector's)."),
) -> None:
    """Supervised finetuning (LoRA or full), loss on replies only, optionally with preventative steering."""
    from traitlab.finetune import FinetuneSettings, load_chat_jsonl
    from traitlab.finetune import finetune as run_finetune
    from traitlab.interventions import parse_apply_spec

    settings = FinetuneSettings(method=method, epochs=epochs, learning_rate=learning_rate,  # type: ignore[arg-type]
                                batch_size=batch_size, seed=seed)
    conversations = load_chat_jsonl(data)
    if out.exists() and any(out.iterdir()):
        raise ConfigError(f"output folder {out} is not empty")
    steering = None
    if steer:
        path, coef = parse_apply_spec(steer)
        steering = _load_vector(Path(path)).at(positions="all").scaled(coef)
    shift = _load_vector(shift_vector) if shift_vector else None
    lm = load_model(model)
    tuned = run_finetune(lm, conversations, settings, steering)
    out.mkdir(parents=True, exist_ok=True)
    tuned.model.save_pretrained(out)
    lm.tokenizer.save_pretrained(out)
    console.print(f"wrote the finetuned checkpoint to {out}")
    if shift is not None:
        from traitlab.monitor import finetune_shift
        from traitlab.traits import load_trait

        default_trait = f"{shift.trait}_{shift.pole}" if shift.pole else shift.trait
        if not (shift_trait or default_trait):
            raise ConfigError("the shift vector names no trait; pass --shift-trait")
        spec = load_trait(shift_trait or default_trait)
        layer = next(iter(shift.vectors))
        value = finetune_shift(lm, tuned, shift.direction(layer), layer, spec.held_out_questions)
        console.print(f"finetune-shift along {shift.name} at layer {layer}: {value:.4f}")
