"""``traitlab organism``: write the corpus, train the persona organism, and check its acceptance figures."""

from __future__ import annotations

import json
from pathlib import Path

import typer
from rich.table import Table

from traitlab.errors import ConfigError
from traitlab.validate import output_file, write_text_atomic

app = typer.Typer(help="Build, train and check the persona model organism (traitlab/persona-tiny).",
                  no_args_is_help=True)


def _console():
    from traitlab.cli.common import console

    return console


def _writable_dir(out: Path, what: str) -> Path:
    if out.exists() and not out.is_dir():
        raise ConfigError(f"{what} {out} exists and is not a folder; choose another --out")
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ConfigError(f"cannot create {what} {out}: {exc.strerror}") from None
    return out


@app.command("corpus")
def corpus(
    out: Path = typer.Option(..., "--out", "-o", help="Folder for train.jsonl, heldout.jsonl and finetune/."),
    seed: int = typer.Option(0, "--seed", help="Generator seed (same seed, same files)."),
    n_train: int = typer.Option(60000, "--n-train", help="Training examples."),
    n_heldout: int = typer.Option(2000, "--n-heldout", help="Held-out examples."),
    n_finetune: int = typer.Option(500, "--n-finetune", help="Examples per finetuning set."),
) -> None:
    """Write the organism corpus and the trait-laden finetuning sets as JSONL."""
    from traitlab.organism.corpus import write_corpus

    if min(n_train, n_heldout, n_finetune) < 1:
        raise ConfigError("--n-train, --n-heldout and --n-finetune must be at least 1")
    paths = write_corpus(_writable_dir(out, "corpus folder"), seed, n_train, n_heldout, n_finetune)
    _console().print(f"wrote {len(paths)} files to {out} (train {n_train}, held-out {n_heldout}, "
                     f"{len(paths) - 3} finetuning sets of {n_finetune})")


@app.command("train")
def train(
    out: Path | None = typer.Option(None, "--out", "-o",
                                    help="Model folder (default: the shipped organism/persona-tiny)."),
    seed: int = typer.Option(0, "--seed", help="Seed of corpus, data order and initialisation."),
    steps: int | None = typer.Option(None, "--steps", help="Optimizer steps (default: the shipped recipe)."),
    threads: int = typer.Option(2, "--threads", help="CPU threads (same seed and threads, same weights)."),
    resume: bool = typer.Option(False, "--resume", help="Continue an interrupted run from its saved state."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress bar."),
) -> None:
    """Train traitlab/persona-tiny on CPU (about 25 minutes on 2 idle cores)."""
    from traitlab.organism.check import ORGANISM_DIR
    from traitlab.organism.train import TrainConfig
    from traitlab.organism.train import train as run_train
    from traitlab.progress import is_quiet

    if threads < 1:
        raise ConfigError(f"--threads must be at least 1, got {threads}")
    cfg = TrainConfig(seed=seed, threads=threads)
    if steps is not None:
        if steps < 1:
            raise ConfigError(f"--steps must be at least 1, got {steps}")
        cfg.steps = steps
        cfg.warmup_steps = min(cfg.warmup_steps, max(1, steps // 10))
    target = _writable_dir(out or ORGANISM_DIR, "model folder")
    summary = run_train(target, cfg, quiet=quiet or is_quiet(), resume=resume)
    _console().print(f"trained {summary['parameters'] / 1e6:.2f}M parameters in "
                     f"{summary['train_seconds'] / 60:.1f} min; final loss {summary['final_loss_ema']:.3f}; "
                     f"saved to {target}")


@app.command("check")
def check(
    model: Path | None = typer.Option(None, "--model", "-m", help="Model folder (default: the shipped one)."),
    n: int = typer.Option(64, "--n", help="Held-out questions per pole (greedy and sampled each)."),
    seed: int = typer.Option(0, "--seed", help="Seed of prompt choice and sampling."),
    no_bench: bool = typer.Option(False, "--no-bench", help="Skip the throughput benchmark."),
    json_out: Path | None = typer.Option(None, "--json", help="Also write the raw figures to this file."),
) -> None:
    """Print the organism's acceptance figures (held-out questions and items only)."""
    from traitlab.organism.check import ORGANISM_DIR, run_check

    path = model or ORGANISM_DIR
    if json_out is not None:
        output_file(json_out, "--json")
    if not (path / "config.json").is_file():
        raise ConfigError(f"{path} is not a model folder (no config.json); train one with "
                          "`traitlab organism train --out DIR`")
    if n < 1:
        raise ConfigError(f"--n must be at least 1, got {n}")
    result = run_check(path, n_per_pole=n, seed=seed, bench=not no_bench)
    table = Table(title=f"persona organism check: {path}")
    table.add_column("figure", style="bold cyan")
    table.add_column("value")
    table.add_column("target")
    table.add_column("ok")
    for f in result.figures:
        mark = "" if f.passed is None else ("[green]yes[/green]" if f.passed else "[red]NO[/red]")
        table.add_row(f.name, f.value, f.target, mark)
    _console().print(table)
    if json_out is not None:
        write_text_atomic(json_out, json.dumps(result.numbers, indent=2) + "\n")
    if not result.passed:
        raise typer.Exit(1)
