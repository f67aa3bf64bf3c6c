"""The ``traitlab`` command: a typer app with one module per command group; ``main`` turns user errors into
one line on stderr and exit code 2."""

from __future__ import annotations

import sys
import warnings

import typer

from traitlab.cli import (
    axis,
    chat,
    demo,
    evaluate,
    finetune,
    info,
    judges,
    merge,
    models,
    monitor,
    neurons,
    organism,
    screen,
    serve,
    subnet,
    traits,
    vectors,
)
from traitlab.errors import TraitlabError
from traitlab.progress import set_quiet, set_verbose

app = typer.Typer(help="Find, steer, monitor and edit the personality of language models.",
                  no_args_is_help=True, pretty_exceptions_enable=False, add_completion=False)


@app.callback()
def _options(quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress bars."),
             verbose: bool = typer.Option(False, "--verbose", help="Let the libraries' own logs and warnings "
                                          "through (transformers, torch), for debugging.")) -> None:
    set_quiet(quiet)
    set_verbose(verbose)
    if verbose:
        from transformers.utils import logging as hf_logging

        hf_logging.set_verbosity_warning()
        hf_logging.enable_progress_bar()
        warnings.resetwarnings()


app.command("info")(info.info)
app.command("models")(models.models)
app.command("chat")(chat.chat)
app.command("demo")(demo.demo)
app.command("compare")(evaluate.compare)
app.command("eval")(evaluate.eval_)
app.command("monitor")(monitor.monitor)
app.command("screen")(screen.screen)
app.command("finetune")(finetune.finetune)
app.command("serve")(serve.serve)
app.add_typer(vectors.app, name="vectors")
app.add_typer(merge.app, name="merge")


app.add_typer(traits.app, name="traits", help="List, show and create trait specs (the built-in library).")
app.add_typer(subnet.app, name="subnet", help="Persona subnetworks: find, show and export weight masks.")
app.add_typer(neurons.app, name="neurons", help="NPTI trait neurons: find them, show an artifact.")
app.add_typer(organism.app, name="organism", help="Build, train and check the persona model organism.")
app.add_typer(judges.app, name="judges", help="Offline judges: score, validate, fit.")
app.add_typer(axis.app, name="axis")


def main() -> None:
    """Console entry point: typer handles usage errors (exit 2); user errors print one line and exit 2; Ctrl-C
    prints ``error: interrupted`` and exits 130."""
    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    warnings.simplefilter("ignore")  # library chatter; --verbose turns it back on
    try:
        app()
    except SystemExit as exc:  # typer turns Ctrl-C into a silent exit 130; say why in the one error line
        if exc.code == 130 and _interrupted(exc):
            _interrupt()
        raise
    except TraitlabError as exc:
        _fail(str(exc))
    except UnicodeError as exc:  # e.g. invalid UTF-8 in an argument or a file read without validate.read_text
        _fail(f"text is not valid UTF-8 ({exc.reason}); give UTF-8 text")
    except OSError as exc:  # a path the user gave: a folder, unwritable, full disk, ...
        where = f" {exc.filename}" if exc.filename else ""
        _fail(f"cannot use{where}: {exc.strerror or exc}")
    except KeyboardInterrupt:  # a Ctrl-C outside typer's own handler (e.g. while a result is printed)
        _interrupt()


def _interrupted(exc: BaseException) -> bool:
    """Whether a KeyboardInterrupt is somewhere in the cause/context chain of ``exc``."""
    seen: set[int] = set()
    link: BaseException | None = exc
    while link is not None and id(link) not in seen:
        if isinstance(link, KeyboardInterrupt):
            return True
        seen.add(id(link))
        link = link.__cause__ or link.__context__
    return False


def _interrupt() -> None:
    """Ctrl-C: one ``error: interrupted`` line and exit 130 (128 + SIGINT). Writers have already removed their
    partial output in their ``finally`` blocks (``validate.atomic_folder``, ``validate.atomic_file``)."""
    print("error: interrupted", file=sys.stderr)
    sys.exit(130)


def _fail(message: str) -> None:
    print(f"error: {' '.join(message.split())}", file=sys.stderr)
    sys.exit(2)
