"""The ``traitlab`` command: a typer app with one module per command group; ``main`` turns user errors into
one line on stderr and exit code 2."""

from __future__ import annotations

import sys

import typer

from traitlab.cli import chat, demo, info
from traitlab.errors import TraitlabError
from traitlab.progress import set_quiet

app = typer.Typer(help="Find, steer, monitor and edit the personality of language models.",
                  no_args_is_help=True, pretty_exceptions_enable=False, add_completion=False)


@app.callback()
def _options(quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress bars.")) -> None:
    from transformers.utils import logging as hf_logging

    set_quiet(quiet)
    if quiet or not sys.stderr.isatty():
        hf_logging.disable_progress_bar()


app.command("info")(info.info)
app.command("chat")(chat.chat)
app.command("demo")(demo.demo)


def _add_groups() -> None:
    import importlib.util

    if importlib.util.find_spec("traitlab.cli.organism") is None:  # TEMP until the organism lands
        return
    from traitlab.cli import organism

    app.add_typer(organism.app, name="organism", help="Build, train and check the persona model organism.")


_add_groups()


def main() -> None:
    """Console entry point: typer handles usage errors (exit 2); user errors print one line and exit 2."""
    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()
    try:
        app()
    except TraitlabError as exc:
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(2)
