"""``traitlab demo``: every mechanism, side by side, on the built-in persona organism, offline.

Fits persona vectors, NPTI neurons, persona subnetworks and personality vectors for the Big Five (high poles),
evaluates them with the prompting baselines through the comparison runner (oracle judge, questionnaire,
coherence), writes ``results.jsonl``, ``summary.csv`` and ``report.html``, and prints the summary table. Fitted
artifacts and finished cells are reused on rerun.
"""

from __future__ import annotations

from pathlib import Path

import typer

from traitlab.cli.common import console


def demo(
    out: Path = typer.Option(Path("traitlab-demo"), "--out", "-o", help="Folder for results and the report."),
    quick: bool = typer.Option(False, "--quick", help="Two traits, no dose-response sweeps (about a minute)."),
) -> None:
    """Run every mechanism on the persona organism and write a comparison report."""
    from traitlab.evaluation.demo import demo_experiment
    from traitlab.evaluation.report import summary_table
    from traitlab.evaluation.runner import run_experiment
    from traitlab.progress import is_quiet

    experiment = demo_experiment(quick)
    folder = out / ("quick" if quick else "full")
    rows = run_experiment(experiment, folder, progress=not is_quiet())
    console.print(summary_table(rows, title=experiment["name"]))
    console.print(f"report: {folder / 'report.html'}\nresults: {folder / 'results.jsonl'}")
