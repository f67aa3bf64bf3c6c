"""``traitlab finetune``: supervised finetuning (LoRA or full) with optional preventative steering, and the
finetune-shift along a persona vector."""

from __future__ import annotations

from pathlib import Path

import typer

from traitlab.cli.common import MODEL, console
from traitlab.cli.vectors import _load_vector
from traitlab.errors import ConfigError
from traitlab.model import load_model
from traitlab.validate import atomic_folder, finite_tensors, output_folder


def finetune(
    data: Path = typer.Option(..., "--data", "-d", help="Chat JSONL."),
    out: Path = typer.Option(..., "--out", "-o", help="Folder for the finetuned HF checkpoint."),
    model: str = MODEL,
    method: str = typer.Option("lora", "--method", help="lora or full."),
    epochs: float = typer.Option(1.0, "--epochs"),
    learning_rate: float = typer.Option(2e-4, "--lr"),
    batch_size: int = typer.Option(8, "--batch-size"),
    seed: int = typer.Option(0, "--seed"),
    lora_r: int = typer.Option(8, "--lora-r", help="LoRA rank (--method lora)."),
    lora_alpha: int | None = typer.Option(None, "--lora-alpha", help="LoRA scale α (default 2·r)."),
    max_length: int = typer.Option(256, "--max-length", help="Tokens per training row (prompt + reply)."),
    precision: str = typer.Option("fp32", "--precision", help="fp32, bf16 (autocast; weights, optimizer and "
                                                              "loss stay fp32) or auto (bf16 where the "
                                                              "hardware has it natively)."),
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

    if lora_r < 1 or (lora_alpha is not None and lora_alpha < 1):
        raise ConfigError("--lora-r and --lora-alpha must be at least 1")
    if max_length < 8:
        raise ConfigError(f"--max-length must be at least 8 tokens, got {max_length}")
    settings = FinetuneSettings(method=method, epochs=epochs, learning_rate=learning_rate,  # type: ignore[arg-type]
                                batch_size=batch_size, seed=seed, lora_r=lora_r,
                                lora_alpha=lora_alpha if lora_alpha is not None else 2 * lora_r,
                                max_length=max_length, precision=precision)  # type: ignore[arg-type]
    conversations = load_chat_jsonl(data)
    output_folder(out)
    steering = None
    if steer:
        path, coef = parse_apply_spec(steer)
        steering = _load_vector(Path(path)).at(positions="all").scaled(coef)
    shift = _load_vector(shift_vector) if shift_vector else None
    lm = load_model(model)
    tuned = run_finetune(lm, conversations, settings, steering)
    finite_tensors(dict(tuned.model.state_dict()), f"finetuning diverged; refusing to write {out}")
    with atomic_folder(out) as partial:  # a failure or Ctrl-C while saving leaves no half checkpoint
        tuned.model.save_pretrained(partial)
        lm.tokenizer.save_pretrained(partial)
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
