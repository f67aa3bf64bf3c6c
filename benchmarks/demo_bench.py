"""``traitlab demo`` end to end (issue 24): wall and CPU time of the full demo on SmolLM2-135M-Instruct from an
empty folder (the model cached), of ``--quick`` from an empty folder, and of a rerun of each (every artifact
and cell reused); then the full report's method × pole table checked against ``results.jsonl`` and the page
rendered in headless Chromium (a screenshot; skipped without Chromium).

Budgets on 2 idle cores: full ≤ 10 min, ``--quick`` ≤ 2 min, a rerun ≤ 10 s. The load average before and after
each run is recorded: a run beside other jobs is labelled ``contended`` and its wall time is not the idle
figure; its CPU time (user + system of the demo process) is the better guide then.

Run: ``python -m benchmarks.demo_bench [--out DIR] [--skip-full] [--threads N]``; writes
``benchmarks/results/demo_bench.json`` (not committed) and ``DIR/report.png``, and copies the full run's
``results.jsonl`` to ``benchmarks/demo_smollm2_results.jsonl`` (committed: the README's table is rendered from
it by ``python tools/demo_table.py``).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import resource
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

CHROMIUM = os.environ.get("TRAITLAB_CHROMIUM") or shutil.which("chromium") or shutil.which("chromium-browser")
RESULTS = Path("benchmarks/results")
BUDGETS = {"full": 600.0, "quick": 120.0, "rerun": 10.0}


def timed_demo(out: Path, quick: bool, threads: int) -> dict[str, Any]:
    """One ``traitlab demo`` in a subprocess: wall seconds, CPU seconds of the child, load before/after."""
    command = [sys.executable, "-m", "traitlab", "demo", "--out", str(out), *(["--quick"] if quick else [])]
    env = {**os.environ, "OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads)}
    load_before = os.getloadavg()[0]
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    done = subprocess.run(command, capture_output=True, text=True, env=env)
    seconds = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if done.returncode != 0:
        raise SystemExit(f"demo failed ({done.returncode}):\n{done.stderr[-3000:]}")
    print(done.stdout, flush=True)
    load_after = os.getloadavg()[0]
    cpu = (after.ru_utime - usage.ru_utime) + (after.ru_stime - usage.ru_stime)
    record = {"wall_seconds": round(seconds, 1), "cpu_seconds": round(cpu, 1), "threads": threads,
              "load_before": round(load_before, 2), "load_after": round(load_after, 2),
              "contended": max(load_before, load_after) > threads + 0.5,
              "stdout_widest_line": max((len(line) for line in done.stdout.splitlines()), default=0)}
    print(f"{'quick' if quick else 'full'} demo: {json.dumps(record)}", flush=True)
    return record


def check_table(folder: Path) -> dict[str, Any]:
    """The report's method × pole cells against the rows of ``results.jsonl`` at scale 1 (or their only one)."""
    from tests.evaluation.test_demo import Cells

    rows = [json.loads(line) for line in (folder / "results.jsonl").read_text().splitlines() if line.strip()]
    expected = {}
    for row in rows:
        if row["scale"] in (None, 1.0):
            expected[(row["label"], row["trait"], "trait_expression")] = row["trait_expression"]
            if row.get("coherence") is not None:
                expected[(row["label"], row["trait"], "coherence")] = row["coherence"]
    parser = Cells()
    parser.feed((folder / "report.html").read_text())
    missing = [k for k in expected if k not in parser.cells]
    wrong = [k for k, v in expected.items()
             if k in parser.cells and v is not None and not math.isclose(parser.cells[k], v, abs_tol=1e-4)]
    return {"cells": len(parser.cells), "expected": len(expected), "missing": [list(k) for k in missing],
            "mismatched": [list(k) for k in wrong], "matches": not missing and not wrong}


def screenshot(report: Path, png: Path) -> dict[str, Any]:
    if CHROMIUM is None:
        return {"skipped": "no Chromium"}
    done = subprocess.run([CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                           "--window-size=1280,2400", f"--screenshot={png}", report.resolve().as_uri()],
                          capture_output=True, text=True, timeout=180)
    return {"returncode": done.returncode, "png_bytes": png.stat().st_size if png.is_file() else 0}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/demo"))
    parser.add_argument("--skip-full", action="store_true")
    parser.add_argument("--threads", type=int, default=2, help="OMP/MKL threads of the demo process")
    args = parser.parse_args()
    if args.out.exists():
        shutil.rmtree(args.out)
    args.out.mkdir(parents=True)
    result: dict[str, Any] = {"budgets_seconds": BUDGETS, "cpus": os.cpu_count()}

    def save() -> None:  # after every step, so a run cut short keeps what it measured
        (RESULTS / "demo_bench.json").write_text(json.dumps(result, indent=2) + "\n")

    folder = args.out / "smollm2-135m-instruct-quick"
    if not args.skip_full:
        result["full"] = timed_demo(args.out, quick=False, threads=args.threads)
        save()
        result["full_rerun"] = timed_demo(args.out, quick=False, threads=args.threads)
        save()
        shutil.copyfile(args.out / "smollm2-135m-instruct-full" / "results.jsonl",
                        Path("benchmarks") / "demo_smollm2_results.jsonl")
    result["quick"] = timed_demo(args.out, quick=True, threads=args.threads)
    save()
    result["quick_rerun"] = timed_demo(args.out, quick=True, threads=args.threads)
    save()
    if not args.skip_full:
        folder = args.out / "smollm2-135m-instruct-full"
    result["table_check"] = check_table(folder)
    result["screenshot"] = screenshot(folder / "report.html", args.out / "report.png")
    save()
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
