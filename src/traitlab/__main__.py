"""``python -m traitlab`` runs the CLI."""

from traitlab.cli import main

main()
