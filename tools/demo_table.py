"""Render the demo's method × pole table (Markdown) from a run's ``results.jsonl`` into README.md, between
``<!-- demo-table:start -->`` and ``<!-- demo-table:end -->``, so the README's figures are never typed by hand.

    python tools/demo_table.py                       # rewrite the README block from the checked-in full run
    python tools/demo_table.py --check               # exit 1 if the README block differs from the run
    python tools/demo_table.py --results runs/demo/smollm2-135m-instruct-full/results.jsonl

The default run is ``benchmarks/demo_smollm2_results.jsonl`` (``python -m benchmarks.demo_bench``
copies the full demo's results there); ``tests/evaluation/test_demo.py`` checks the README against it.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path

from traitlab.evaluation.demo import markdown_table, pole_cells

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "demo_smollm2_results.jsonl"
START, END = "<!-- demo-table:start -->", "<!-- demo-table:end -->"
NOTE = ("Measured by `traitlab demo{quick}` on SmolLM2-135M-Instruct ({poles} poles; rendered from its results by "
        "`python tools/demo_table.py`): judged expression of each Big Five pole (0-100, 50 = no evidence) on "
        "held-out questions, mean ± 95% CI half-width, best coherent cell per pole in bold; shift = paired "
        "difference to `none`, averaged over the poles; coherence 0-100. Details: [docs/demo.md](docs/demo.md).")


def block(results: Path) -> str:
    rows = [json.loads(line) for line in results.read_text(encoding="utf-8").splitlines() if line.strip()]
    quick = " --quick" if any("(quick)" in str(r.get("experiment")) for r in rows) else ""
    note = NOTE.format(quick=quick, poles=len({r["trait"] for r in rows}))
    return f"{START}\n{markdown_table(pole_cells(rows))}\n\n{note}\n{END}"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--results", type=Path, default=RESULTS)
    parser.add_argument("--readme", type=Path, default=ROOT / "README.md")
    parser.add_argument("--check", action="store_true")
    args = parser.parse_args()
    readme = args.readme.read_text(encoding="utf-8")
    pattern = re.compile(re.escape(START) + r".*?" + re.escape(END), re.S)
    if not pattern.search(readme):
        print(f"error: {args.readme} has no {START} ... {END} block", file=sys.stderr)
        return 2
    updated = pattern.sub(lambda _: block(args.results), readme)
    if args.check:
        return 0 if updated == readme else 1
    args.readme.write_text(updated, encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
