"""``python -m traitlab`` runs the CLI."""

import sys

try:
    from traitlab.cli import main
except KeyboardInterrupt:  # Ctrl-C while the CLI is still importing
    print("error: interrupted", file=sys.stderr)
    sys.exit(130)

main()
