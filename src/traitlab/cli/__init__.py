"""The ``traitlab`` command: a typer app with one module per command group; ``main`` turns user errors into
one line on stderr and exit code 2."""

from __future__ import annotations

import sys

import click
import typer

from traitlab.cli import chat, demo, info
from traitlab.errors import TraitlabError
from traitlab.progress import set_quiet

app = typer.Typer(help="Find, steer, monitor and edit the personality of language models.",
                  no_args_is_help=True, pretty_exceptions_enable=False, add_completion=False)


@app.callback()
def _options(quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress bars.")) -> None:
    set_quiet(quiet)


app.command("info")(info.info)
app.command("chat")(chat.chat)
app.command("demo")(demo.demo)


def _add_groups() -> None:
    from traitlab.cli import organism

    app.add_typer(organism.app, name="organism", help="Build, train and check the persona model organism.")


_add_groups()


def main() -> None:
    """Console entry point."""
    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()
    try:
        app(standalone_mode=False)
    except TraitlabError as exc:
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(2)
    except click.ClickException as exc:
        exc.show()
        sys.exit(exc.exit_code)
    except click.exceptions.Exit as exc:
        sys.exit(exc.exit_code)
    except (click.Abort, KeyboardInterrupt):
        print("aborted", file=sys.stderr)
        sys.exit(130)
