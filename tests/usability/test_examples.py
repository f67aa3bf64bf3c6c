"""The two runnable examples (issue #25) run with their ``--tiny`` switch and print what they promise."""

from __future__ import annotations

import subprocess
import sys

import pytest

from tests.usability.test_docs import ROOT, environment
from traitlab.model import BUILTIN_MODELS


def run_example(name: str, tmp_path) -> list[str]:
    done = subprocess.run([sys.executable, str(ROOT / "examples" / name), "--tiny", "--out", str(tmp_path)],
                          cwd=tmp_path, env=environment(), capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    return done.stdout.splitlines()


def test_quickstart_steers_smollm2_both_ways(tmp_path):
    if not BUILTIN_MODELS["smollm2-135m-instruct"].installed():
        pytest.skip(f"SmolLM2 is not installed: {BUILTIN_MODELS['smollm2-135m-instruct'].install_command}")
    lines = run_example("quickstart.py", tmp_path)
    by_label = {line[:14].strip(): line[14:] for line in lines}
    assert by_label["vector:"].startswith("layer [17] of 30")
    unsteered, up, down = by_label["unsteered:"], by_label["steered +2:"], by_label["steered -2:"]
    assert len({unsteered, up, down}) == 3  # steering changes the reply, differently each way
    assert by_label["HF model +2:"] == up  # the same vector on the plain transformers model: the same reply
    assert (tmp_path / "extraversion.tl.safetensors").is_file()


def test_compare_mechanisms_ranks_the_prompt_and_the_vector_above_no_intervention(tmp_path):
    lines = run_example("compare_mechanisms.py", tmp_path)
    rows = {line.split()[0]: line.split() for line in lines[1:-1]}
    assert set(rows) == {"none", "prompt", "persona_vectors", "npti"}
    expression = {name: float(row[2]) for name, row in rows.items()}
    assert expression["prompt"] > expression["none"] + 10
    assert expression["persona_vectors"] > expression["none"] + 5
    assert (tmp_path / "results.jsonl").is_file()
