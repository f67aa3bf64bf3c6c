"""The runnable examples (issue #25) with their ``--tiny`` switch. ``examples/quickstart.py --tiny`` runs in the
docs test (docs/python-api.md shows its output, compared line by line), so it is not run twice."""

from __future__ import annotations

import subprocess
import sys

from tests.usability.test_docs import ROOT, environment


def run_example(name: str, tmp_path) -> list[str]:
    done = subprocess.run([sys.executable, str(ROOT / "examples" / name), "--tiny", "--out", str(tmp_path / "run")],
                          cwd=tmp_path, env=environment(), capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    return done.stdout.splitlines()


def test_compare_mechanisms_ranks_the_prompt_above_no_intervention(tmp_path):
    """The prompt moves the organism's judged expression by more than 10 points. Its persona vectors do not move it
    on held-out questions (the organism's persona lives in attention to the system prompt, docs/organism.md): they
    scored 66.6 here only while compare's sweep chose its cell on the evaluation's own questions."""
    lines = run_example("compare_mechanisms.py", tmp_path)
    rows = {line.split()[0]: line.split() for line in lines[1:-1]}
    assert set(rows) == {"none", "prompt", "persona_vectors", "npti"}
    expression = {name: float(row[2]) for name, row in rows.items()}
    assert expression["none"] == 50.0
    assert expression["prompt"] > expression["none"] + 10
    assert expression["persona_vectors"] == expression["npti"] == expression["none"]
    assert (tmp_path / "run" / "results.jsonl").is_file()
