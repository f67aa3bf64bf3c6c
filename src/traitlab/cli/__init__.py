"""The ``traitlab`` command: a typer app with one module per command or command group, imported only when that
command runs, so ``traitlab --help`` and ``--version`` answer without importing torch or transformers; ``main``
turns user errors into one line on stderr and exit code 2."""

from __future__ import annotations

import importlib
import sys
import warnings

import click
import typer
from typer.core import TyperArgument, TyperGroup, TyperOption

from traitlab.errors import TraitlabError
from traitlab.progress import set_lines, set_quiet, set_verbose

# name: (module under traitlab.cli, attribute, one-line help shown by ``traitlab --help``); order is help order
COMMANDS: dict[str, tuple[str, str, str]] = {
    "models": ("models", "models", "The built-in models: installed or not, cached or not, size, family, use."),
    "info": ("info", "info", "Show how traitlab sees a model: family, layers, hidden size, neuron site, fingerprint."),
    "chat": ("chat", "chat", "Chat with a model, optionally steered by saved interventions."),
    "demo": ("demo", "demo", "Run every mechanism on SmolLM2 (or --model) and write a comparison report."),
    "compare": ("evaluate", "compare", "Run (or resume) an experiment comparing methods: results, summary, report."),
    "eval": ("evaluate", "eval_", "Evaluate one model, optionally under interventions or a persona prompt."),
    "vectors": ("vectors", "app", "Persona vectors (Chen et al. 2025): extract, sweep, show, combine, convert."),
    "neurons": ("neurons", "app", "NPTI trait neurons (Deng et al. 2025): find them, show an artifact."),
    "subnet": ("subnet", "app", "Persona subnetworks (Ye et al. 2026): find, show and export weight masks."),
    "merge": ("merge", "app", "Personality vectors: training data, φ = θ_tuned − θ_base, merges, apply."),
    "axis": ("axis", "app", "Persona space and the Assistant Axis (Lu et al. 2026): build, show, cap, drift."),
    "monitor": ("monitor", "monitor", "Project conversations on a persona vector (CSV)."),
    "screen": ("screen", "screen", "Rank training samples by how far their replies sit along a trait (ΔP)."),
    "finetune": ("finetune", "finetune", "Supervised finetuning (LoRA or full), optionally with preventative "
                 "steering."),
    "serve": ("serve", "serve", "OpenAI-compatible server with per-request personas, a monitor and a web page."),
    "traits": ("traits", "app", "List, show and create trait specs (the built-in library)."),
    "judges": ("judges", "app", "Offline judges: score, validate, fit."),
    "organism": ("organism", "app", "Build, train and check the persona model organism."),
}


_TYPE_WORDS = {"str": "TEXT", "int": "INTEGER", "float": "FLOAT", "Path": "PATH", "bool": None}


def _type_label(self: TyperOption | TyperArgument, ctx: click.Context) -> str | None:
    """Help's type column in click's words (TEXT, INTEGER, PATH, or the metavar), nothing for flags: not typer's
    ``<str>``/``<bool>`` tags."""
    if getattr(self, "is_flag", False) or getattr(self, "count", False):
        return None
    if self.metavar:
        return self.metavar
    bare = self.bare_type()
    bare = bare.removeprefix("list[").removesuffix("]")
    return _TYPE_WORDS.get(bare, bare.upper())


TyperOption.display_type_rich = _type_label  # type: ignore[method-assign]
TyperArgument.display_type_rich = _type_label  # type: ignore[method-assign]


class LazyGroup(TyperGroup):
    """The top-level group: commands come from ``COMMANDS`` and their modules load on use; the help listing uses
    the table's one-line help and loads nothing."""

    listing = False

    def list_commands(self, ctx: click.Context) -> list[str]:
        return list(COMMANDS)

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name not in COMMANDS:
            return None
        module, attribute, text = COMMANDS[cmd_name]
        if self.listing:
            return click.Command(cmd_name, help=text, short_help=text)
        target = getattr(importlib.import_module(f"traitlab.cli.{module}"), attribute)
        if isinstance(target, typer.Typer):
            command: click.Command = typer.main.get_group(target)
        else:
            single = typer.Typer(add_completion=False, pretty_exceptions_enable=False)
            single.command(cmd_name)(target)
            command = typer.main.get_command(single)
        command.name = cmd_name
        return command

    def format_help(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        self.listing = True
        try:
            super().format_help(ctx, formatter)
        finally:
            self.listing = False


def _version(value: bool) -> None:
    if value:
        from traitlab import __version__

        print(f"traitlab {__version__}")
        raise typer.Exit()


app = typer.Typer(cls=LazyGroup, help="Find, steer, monitor and edit the personality of language models.",
                  no_args_is_help=True, pretty_exceptions_enable=False, add_completion=False)


@app.callback()
def _options(quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress output."),
             verbose: bool = typer.Option(False, "--verbose", help="Let the libraries' own logs and warnings "
                                          "through (transformers, torch), for debugging."),
             version: bool = typer.Option(False, "--version", callback=_version, is_eager=True,
                                          help="Print the version and exit.")) -> None:
    set_quiet(quiet)
    set_lines(True)
    set_verbose(verbose)
    if verbose:
        from transformers.utils import logging as hf_logging

        hf_logging.set_verbosity_warning()
        hf_logging.enable_progress_bar()
        warnings.resetwarnings()


def _quiet_libraries() -> None:
    """transformers' own logging and progress bars off, once it is imported (it is not imported for --help)."""
    if "transformers" in sys.modules:
        from transformers.utils import logging as hf_logging

        hf_logging.set_verbosity_error()
        hf_logging.disable_progress_bar()


def main(args: list[str] | None = None) -> None:
    """Console entry point: typer handles usage errors (exit 2); user errors print one line and exit 2; Ctrl-C
    prints ``error: interrupted`` and exits 130."""
    import os

    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    _quiet_libraries()
    warnings.simplefilter("ignore")  # library chatter; --verbose turns it back on
    try:
        app(args=args)
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

