"""Issue-26 closing figures: the bad-input probe, rerun from the tests that keep it. Runs the bad-input suite
(CLI), the Ctrl-C subprocess tests, the server field and fault tests and the property tests under pytest, and
counts per group how many inputs were tried and how many kept the promise (a passing test). Writes
``benchmarks/results/bad_input_probe.json``. Run: ``python -m benchmarks.bad_input_probe`` (about 2-3 min on
two idle cores)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
import xml.etree.ElementTree as ET
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
FILES = ["tests/core/test_bad_inputs.py", "tests/serve/test_serve_fields.py", "tests/serve/test_serve_faults.py",
         "tests/core/test_properties.py"]
GROUPS = {  # (file stem, test-name prefix) -> group
    ("test_bad_inputs", "test_bad_input_is_one_error_line"): "cli bad inputs (exit 2, one error line, nothing left)",
    ("test_bad_inputs", "test_invalid_utf8"): "cli bad inputs (exit 2, one error line, nothing left)",
    ("test_bad_inputs", "test_good_input_still_works"): "cli good inputs (exit 0, no temporary files)",
    ("test_bad_inputs", "test_ctrl_c"): "Ctrl-C (mid-write: exit 130, one line, nothing left)",
    ("test_bad_inputs", "test_a_failed_merge"): "Ctrl-C (mid-write: exit 130, one line, nothing left)",
    ("test_serve_fields", "test_"): "server fields and bodies (400, never 500)",
    ("test_serve_faults", "test_"): "server faults survived",
    ("test_properties", "test_"): "property tests (hypothesis: restore and merge arithmetic)",
}


def group_of(classname: str, name: str) -> str | None:
    stem = classname.rsplit(".", 1)[-1]
    for (file_stem, prefix), group in GROUPS.items():
        if stem == file_stem and name.startswith(prefix):
            return group
    return None


def main() -> None:
    load_start = os.getloadavg()[0]
    report = Path(tempfile.mkdtemp()) / "probe.xml"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    start = time.monotonic()
    subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", f"--junitxml={report}", *FILES],
                   cwd=ROOT, env=env, check=False)
    seconds = time.monotonic() - start
    counts: dict[str, dict[str, int]] = {}
    failed: list[str] = []
    for case in ET.parse(report).getroot().iter("testcase"):
        group = group_of(case.get("classname", ""), case.get("name", ""))
        if group is None:
            continue
        entry = counts.setdefault(group, {"tried": 0, "kept": 0})
        skipped = case.find("skipped") is not None
        bad = case.find("failure") is not None or case.find("error") is not None
        if skipped:
            continue
        entry["tried"] += 1
        entry["kept"] += not bad
        if bad:
            failed.append(f"{case.get('classname')}::{case.get('name')}")
    total = {"tried": sum(c["tried"] for c in counts.values()), "kept": sum(c["kept"] for c in counts.values())}
    out = {"groups": counts, "total": total, "kept_fraction": round(total["kept"] / max(total["tried"], 1), 4),
           "failed": failed, "seconds": round(seconds, 1),
           "loadavg_1min": [round(load_start, 2), round(os.getloadavg()[0], 2)], "cpus": os.cpu_count()}
    results = Path(__file__).resolve().parent / "results"
    results.mkdir(exist_ok=True)
    (results / "bad_input_probe.json").write_text(json.dumps(out, indent=1) + "\n")
    print(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
