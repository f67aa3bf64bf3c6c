"""``traitlab demo``: every mechanism, side by side, on SmolLM2-135M-Instruct (or ``--model``), offline.

Fits persona vectors, NPTI neurons, persona subnetworks and personality vectors for both poles of each Big
Five trait, evaluates them with the prompting baselines through the comparison runner (offline judges: the
embedding trait judge and the reference-LM coherence judge; on the organism its oracle), writes
``results.jsonl``, ``summary.csv`` and ``report.html``, and prints a short summary that fits the terminal.
Fitted artifacts and finished cells are reused on rerun. ``--markdown`` prints the method × pole table in
Markdown instead (the README's table is made with it).
"""

from __future__ import annotations

from pathlib import Path

import typer

from traitlab.cli.common import console
from traitlab.evaluation.fit_workers import default_workers


def demo(
    out: Path = typer.Option(Path("traitlab-demo"), "--out", "-o", help="Folder for results and the report."),
    quick: bool = typer.Option(False, "--quick", help="Both extraversion poles, no dose-response sweeps, fewer "
                               "questions (about 3 minutes on 2 cores)."),
    model: str = typer.Option("smollm2-135m-instruct", "--model", "-m",
                              help="The model (traitlab/persona-tiny runs the organism's demo)."),
    markdown: bool = typer.Option(False, "--markdown", help="Print the method × pole table in Markdown."),
    workers: int = typer.Option(default_workers(), "--workers", min=1, max=64,
                                help="Processes: the run plus helpers that fit the judge-free mechanisms "
                                     "meanwhile (default: 2 where there are 2 cores or more)."),
) -> None:
    """Run every mechanism on both poles of the Big Five and write a comparison report."""
    from traitlab.errors import ConfigError
    from traitlab.evaluation.config import load_experiment
    from traitlab.evaluation.demo import console_summary, demo_experiment, is_organism_name, markdown_table, run_demo
    from traitlab.progress import is_quiet

    experiment = demo_experiment(quick, model)
    load_experiment(experiment)  # the whole experiment is checked before any model loads
    name = "organism" if is_organism_name(model) else model.replace("/", "--")
    folder = out / f"{name}-{'quick' if quick else 'full'}"
    if out.exists() and not out.is_dir():
        raise ConfigError(f"--out {out} is a file; give a folder")
    done = run_demo(experiment, folder, progress=not is_quiet(), workers=workers)
    if markdown:
        print(markdown_table(done["cells"], done["threshold"]))
        return
    width = min(console.width, 80) if console.is_terminal else 80
    for line in console_summary(done["cells"], done["threshold"], width):
        print(line)
    print(f"report: {done['report']}")
