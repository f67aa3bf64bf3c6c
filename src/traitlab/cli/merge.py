"""``traitlab merge``: personality vectors (arXiv 2509.19727) — data, vector, apply, show."""

from __future__ import annotations

from pathlib import Path

import torch
import typer
from rich.table import Table

from traitlab.cli.common import MODEL, console, key_value_table
from traitlab.cli.judging import JUDGE_CACHE, JUDGE_MODEL, JUDGE_URL, check_judge_options, make_judges
from traitlab.errors import ConfigError, validation_message
from traitlab.traits import BIG_FIVE, load_trait
from traitlab.validate import finite, output_file, output_folder

app = typer.Typer(help="Personality vectors: make training data, take φ = θ_tuned − θ_base, merge and apply.",
                  no_args_is_help=True)
DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


def _spec_name(trait: str, pole: str | None) -> str:
    return f"{trait}_{pole}" if trait in BIG_FIVE and pole else trait


@app.command()
def data(
    trait: str = typer.Option(..., "--trait", "-t", help="Big Five trait or a spec name/file."),
    pole: str = typer.Option("high", "--pole", help="high or low (Big Five traits)."),
    out: Path = typer.Option(..., "--out", "-o", help="Chat JSONL to write."),
    model: str = MODEL,
    big5chat: Path | None = typer.Option(None, "--from-big5chat", help="Big5-Chat CSV instead of self-distillation."),
    keep_instruction: bool = typer.Option(False, "--keep-instruction", help="Keep Big5-Chat's persona instruction."),
    limit: int | None = typer.Option(None, "--limit"),
    n_per_question: int = typer.Option(8, "--n-per-question"),
    temperature: float = typer.Option(1.0, "--temperature"),
    seed: int = typer.Option(0, "--seed"),
    self_report: str | None = typer.Option(
        None, "--self-report", help="Also distil the persona's answers to this inventory's items of the trait "
        "('traitlab', 'persona-tiny' or a file); use another instrument than the one you evaluate with."),
    short_prompts: bool = typer.Option(False, "--short-prompts", help="Distil under the spec's short, explicit "
                                       "pole prompts (short_instruction), which a small model follows."),
    max_new_tokens: int = typer.Option(96, "--max-new-tokens", help="Length of each distilled answer."),
    judge: str = typer.Option("none", "--judge", metavar="KIND[:MODEL]",
                              help="Keep only the answers this judge scores toward the pole (≥ --threshold): "
                                   "none (keep all), oracle, embedding, endpoint:MODEL, local:MODEL or auto."),
    judge_url: str | None = JUDGE_URL, judge_model: str | None = JUDGE_MODEL,
    judge_cache: str | None = JUDGE_CACHE,
    threshold: float = typer.Option(50.0, "--threshold", help="Judge score (0–100, toward the pole) to keep."),
) -> None:
    """Training data for a personality: self-distilled (default) or from a Big5-Chat CSV."""
    from traitlab.finetune.personality_data import judge_filter, load_big5chat, self_distill, write_chat_jsonl

    if pole not in ("high", "low"):
        raise ConfigError(f"--pole must be high or low, not '{pole}'")
    output_file(out)
    if limit is not None and limit < 1:
        raise ConfigError(f"--limit must be at least 1, got {limit}")
    if n_per_question < 1:
        raise ConfigError(f"--n-per-question must be at least 1, got {n_per_question}")
    finite(temperature, "--temperature")
    if temperature < 0:
        raise ConfigError(f"--temperature must be ≥ 0, got {temperature}")
    if max_new_tokens < 1:
        raise ConfigError(f"--max-new-tokens must be at least 1, got {max_new_tokens}")
    finite(threshold, "--threshold")
    if not 0 <= threshold <= 100:
        raise ConfigError(f"--threshold is a judge score from 0 to 100, got {threshold}")
    if big5chat is not None and self_report is not None:
        raise ConfigError("--self-report distils the model's own answers; it does not combine with --from-big5chat")
    if big5chat is not None and (short_prompts or judge != "none"):
        raise ConfigError("--short-prompts and --judge apply to self-distillation, not to --from-big5chat")
    choice = check_judge_options(judge, judge_url, judge_model, model, allow_none=True)
    if big5chat is not None:
        rows = load_big5chat(big5chat, trait, pole, keep_instruction, limit)
    else:
        from traitlab.evaluation.questionnaire import load_inventory
        from traitlab.model import load_model

        spec = load_trait(_spec_name(trait, pole))
        if short_prompts:
            if not spec.short_instruction:
                raise ConfigError(f"trait '{spec.name}' has no short_instruction pairs; drop --short-prompts")
            spec = spec.with_short_instructions()
        inventory = None
        if self_report is not None:
            inventory = load_inventory(self_report)
            if trait not in inventory.traits:
                raise ConfigError(f"inventory {inventory.name} has no items of '{trait}'; it covers "
                                  f"{', '.join(inventory.traits)}")
            inventory = inventory.subset([trait])
        lm = load_model(model)
        rows = self_distill(lm, spec, n_per_question, temperature, max_new_tokens=max_new_tokens, seed=seed,
                            self_report=inventory)
        if choice.kind != "none":
            trait_judge, _ = make_judges(choice, spec, lm, judge_url, judge_cache)
            total = len(rows)
            rows, _ = judge_filter(rows, trait_judge, spec.eval_prompt if choice.kind in ("endpoint", "local")
                                   else "", threshold, limit)
            console.print(f"the judge kept {len(rows)} of {total} answers (score ≥ {threshold:g})")
            if not rows:
                raise ConfigError("the judge kept no answer: sample more (--n-per-question), lower --threshold, "
                                  "or check the persona prompts (--short-prompts)")
        rows = rows[:limit]
    write_chat_jsonl(rows, out)
    console.print(f"wrote {len(rows)} conversations to {out}")


@app.command()
def vector(
    base: str = typer.Option(..., "--base", "-b", help="Base model folder (or traitlab/persona-tiny)."),
    tuned: Path = typer.Option(..., "--tuned", help="Finetuned model folder, or a LoRA adapter folder."),
    out: Path = typer.Option(..., "--out", "-o"),
    trait: str | None = typer.Option(None, "--trait"),
    pole: str | None = typer.Option(None, "--pole"),
    dtype: str = typer.Option("float32", "--dtype", help="Storage dtype of φ: float32, bfloat16, float16."),
) -> None:
    """φ = θ_tuned − θ_base, streamed tensor by tensor into one artifact."""
    from traitlab.methods.merging import vector_from_checkpoints, vector_from_lora

    if dtype not in DTYPES:
        raise ConfigError(f"unknown dtype '{dtype}'; use {', '.join(DTYPES)}")
    if not tuned.is_dir():
        raise ConfigError(f"tuned model folder {tuned} not found")
    output_file(out)
    make = vector_from_lora if (tuned / "adapter_config.json").is_file() else vector_from_checkpoints
    path = make(base, tuned, out, trait, pole, DTYPES[dtype])
    console.print(f"wrote {path}")


@app.command()
def apply(
    config: Path | None = typer.Argument(None, help="mergekit-style YAML (merge_method, base_model, models)."),
    out: Path = typer.Option(..., "--out", "-o", help="Folder for the merged HF checkpoint."),
    base: str | None = typer.Option(None, "--base", help="Without a YAML: the base model."),
    vectors: list[str] = typer.Option([], "--vector", "-v", help="Without a YAML: VECTOR[:WEIGHT[:DENSITY]]."),
    method: str = typer.Option("task_arithmetic", "--method"),
    seed: int = typer.Option(0, "--seed"),
    transfer: bool = typer.Option(False, "--transfer", help="Vectors from another model of the same "
                                                             "architecture: check shapes, not fingerprints."),
    shard_size: str = typer.Option("2GB", "--shard-size", help="Largest output shard, e.g. 500MB, 2GB."),
) -> None:
    """Merge personality vectors into a base model out of core and write a plain HF checkpoint."""
    from traitlab.methods.merging import MergeConfig, check_sources, load_merge_config, merge_to_checkpoint

    shard_bytes = _size(shard_size)
    output_folder(out)
    if config is not None:
        merge = load_merge_config(config)
    else:
        if not base or not vectors:
            raise ConfigError("give a merge YAML, or --base and at least one --vector")
        entries = []
        for spec in vectors:
            path, *numbers = spec.split(":")
            try:
                weight, density = (float(x) for x in [*numbers, "1", "1"][:2])
            except ValueError:
                raise ConfigError(f"cannot read '{spec}' as VECTOR[:WEIGHT[:DENSITY]]") from None
            entries.append({"model": path, "parameters": {"weight": weight, "density": density}})
        try:
            merge = MergeConfig.model_validate({"merge_method": method, "base_model": base, "models": entries,
                                                "seed": seed, "transfer": transfer})
        except ValueError as exc:
            raise ConfigError(f"invalid merge: {validation_message(exc)}") from None
        check_sources(merge)
    merge_to_checkpoint(merge, out, shard_bytes)
    console.print(f"wrote the merged checkpoint to {out}")


def _size(text: str) -> int:
    units = {"KB": 1024, "MB": 1024**2, "GB": 1024**3}
    for unit, factor in units.items():
        if text.upper().endswith(unit):
            try:
                return int(float(text[: -len(unit)]) * factor)
            except ValueError:
                break
    raise ConfigError(f"cannot read shard size '{text}'; write e.g. 500MB or 2GB")


@app.command()
def show(path: Path = typer.Argument(...)) -> None:
    """What a personality vector holds: trait, base model, per-tensor norms."""
    from traitlab.methods.merging import load_vector

    vector = load_vector(path)
    console.print(key_value_table({"trait": vector.trait, "pole": vector.pole, "scale": vector.scale,
                                   "tensors": len(vector.deltas),
                                   "parameters": sum(t.numel() for t in vector.deltas.values()),
                                   "base": vector.fingerprint.model_type if vector.fingerprint else None,
                                   **{k: v for k, v in vector.extra.items() if isinstance(v, str | int | float)}},
                                  title=str(path)))
    table = Table(title="largest deltas")
    for column in ("tensor", "shape", "‖φ‖", "max |φ|"):
        table.add_column(column)
    ranked = sorted(vector.deltas.items(), key=lambda item: -float(item[1].float().norm()))
    for name, delta in ranked[:12]:
        table.add_row(name, "×".join(map(str, delta.shape)), f"{float(delta.float().norm()):.4f}",
                      f"{float(delta.abs().max()):.4f}")
    console.print(table)
