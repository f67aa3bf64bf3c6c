"""``traitlab traits list|show|new``: the built-in trait library, one spec in detail, and new specs written by
an OpenAI-compatible LLM."""

from __future__ import annotations

from contextlib import nullcontext
from pathlib import Path

import typer
from rich import box
from rich.markup import escape
from rich.table import Table

from traitlab.cli.common import console
from traitlab.progress import is_quiet, stderr
from traitlab.traits import list_traits, load_trait
from traitlab.traits.generate import DEFAULT_MODEL, DEFAULT_URL, new_trait

app = typer.Typer(help="List, show and create trait specs (contrastive prompts, questions, judge rubric).",
                  no_args_is_help=True)


@app.command("list")
def list_() -> None:
    """The built-in trait library: name, trait, pole, counts of pairs and questions, description."""
    wide = console.width >= 110  # on narrow terminals the trait column (the name without _high/_low) is dropped
    table = Table(title="built-in traits", box=box.SIMPLE_HEAD, show_edge=False, padding=(0, 1), collapse_padding=True,
                  title_justify="left")
    table.add_column("name", no_wrap=True, style="bold")
    if wide:
        table.add_column("trait", no_wrap=True)
    table.add_column("pole", no_wrap=True)
    for column in ("pairs", "extract", "eval"):
        table.add_column(column, justify="right", no_wrap=True)
    table.add_column("description", ratio=1)
    for name in list_traits():
        spec = load_trait(name)
        counts = [str(len(spec.instruction)), str(len(spec.questions)), str(len(spec.eval_questions))]
        cells = [name, *([spec.trait_name] if wide else []), spec.pole or "-", *counts, escape(spec.description)]
        table.add_row(*cells)
    console.print(table)


def _numbered(items: list[str], limit: int) -> str:
    lines = [f"{i + 1:>2}. {escape(q)}" for i, q in enumerate(items[:limit])]
    if len(items) > limit:
        lines.append(f"    ... and {len(items) - limit} more")
    return "\n".join(lines)


@app.command("show")
def show(name_or_path: str = typer.Argument(..., metavar="NAME_OR_PATH",
                                            help="Built-in name, traitlab spec JSON or persona_vectors JSON."),
         as_json: bool = typer.Option(False, "--json", help="Print the whole spec as JSON."),
         questions: int = typer.Option(5, "--questions", "-n", min=0, help="How many questions of each set to show."),
         ) -> None:
    """One trait spec: instruction pairs, questions and the judge rubric."""
    spec = load_trait(name_or_path)
    if as_json:
        print(spec.model_dump_json(indent=2))
        return
    console.print(f"[bold]{escape(spec.name)}[/bold]  trait={escape(spec.trait_name)}  pole={spec.pole or '-'}")
    if spec.description:
        console.print(escape(spec.description))
    pairs = Table(title=f"instruction pairs ({len(spec.instruction)})", show_lines=True)
    pairs.add_column("#", justify="right")
    pairs.add_column("pos (shows the trait)")
    pairs.add_column("neg (shows the opposite)")
    for i, pair in enumerate(spec.instruction):
        pairs.add_row(str(i + 1), escape(pair.pos), escape(pair.neg))
    console.print(pairs)
    console.print(f"\n[bold]extraction questions[/bold] ({len(spec.questions)})")
    console.print(_numbered(spec.questions, questions))
    console.print(f"\n[bold]evaluation questions[/bold] ({len(spec.eval_questions)})")
    console.print(_numbered(spec.eval_questions, questions) if spec.eval_questions
                  else "    none (evaluation uses the extraction questions)")
    console.print("\n[bold]judge rubric[/bold]")
    console.print(escape(spec.eval_prompt))


@app.command("new")
def new(name: str = typer.Argument(..., help="Name of the new trait: lowercase letters, digits, '_'."),
        description: str = typer.Option(..., "--description", "-d", help="What the trait is, in a sentence."),
        generator_url: str = typer.Option(DEFAULT_URL, "--generator-url", envvar="TRAITLAB_GENERATOR_URL",
                                          help="Base URL of an OpenAI-compatible API (…/v1)."),
        generator_model: str = typer.Option(DEFAULT_MODEL, "--generator-model", envvar="TRAITLAB_GENERATOR_MODEL",
                                            help="Model name to ask."),
        out: Path | None = typer.Option(None, "--out", "-o",
                                        help="Output .json file or existing folder (default: ./NAME.json)."),
        api_key_env: str = typer.Option("OPENAI_API_KEY", "--api-key-env",
                                        help="Environment variable holding the bearer key (optional)."),
        force: bool = typer.Option(False, "--force", help="Overwrite an existing output file."),
        ) -> None:
    """Ask an LLM for a new trait spec (5 pairs, 20+20 questions, rubric), validate it and save it."""
    status = nullcontext() if is_quiet() else stderr.status(f"asking {generator_model} for a '{name}' spec ...")
    with status:
        spec, path = new_trait(name, description, out=out, url=generator_url, model=generator_model,
                               api_key_env=api_key_env, overwrite=force)
    console.print(f"wrote {escape(str(path))}: {len(spec.instruction)} pairs, {len(spec.questions)} extraction "
                  f"and {len(spec.eval_questions)} evaluation questions; see it with "
                  f"`traitlab traits show {escape(str(path))}`")
