"""``traitlab demo`` end to end (issue 10): wall times of the quick and the full demo from an empty folder and of a
rerun (every artifact and cell reused), then the full report opened in headless Chromium (screenshot) with its
method × trait table checked against ``results.jsonl``.

Targets on 2 cores: full ≤ 5 min, ``--quick`` ≤ 1 min.

Run: ``python -m benchmarks.demo_bench [--out DIR] [--skip-full]``; writes ``DIR/demo_bench.json`` and
``DIR/report.png``.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from tests.evaluation.test_eval_report import TableCells, expected_cells

CHROMIUM = os.environ.get("TRAITLAB_CHROMIUM") or shutil.which("chromium") or shutil.which("chromium-browser")


def timed_demo(out: Path, quick: bool) -> float:
    command = [sys.executable, "-m", "traitlab", "demo", "--out", str(out), *(["--quick"] if quick else [])]
    start = time.perf_counter()
    done = subprocess.run(command, capture_output=True, text=True)
    seconds = time.perf_counter() - start
    if done.returncode != 0:
        raise SystemExit(f"demo failed ({done.returncode}):\n{done.stderr[-3000:]}")
    print(done.stdout, flush=True)
    print(f"{'quick' if quick else 'full'} demo: {seconds:.1f} s", flush=True)
    return round(seconds, 1)


def check_table(folder: Path) -> dict[str, Any]:
    """The report's method × trait cells against values recomputed from ``results.jsonl``."""
    rows = [json.loads(line) for line in (folder / "results.jsonl").read_text().splitlines() if line.strip()]
    parser = TableCells()
    parser.feed((folder / "report.html").read_text())
    expected = expected_cells(rows)
    missing = [k for k in expected if k not in parser.cells]
    wrong = [k for k, v in expected.items() if k in parser.cells and not math.isclose(parser.cells[k], v,
                                                                                        abs_tol=1e-4)]
    return {"cells": len(parser.cells), "expected": len(expected), "missing": [list(k) for k in missing],
            "mismatched": [list(k) for k in wrong], "matches": not missing and not wrong}


def screenshot(report: Path, png: Path) -> dict[str, Any]:
    if CHROMIUM is None:
        return {"skipped": "no Chromium"}
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, headless=True,
                                    args=["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage"])
        page = browser.new_page(viewport={"width": 1280, "height": 900})
        page.goto(report.resolve().as_uri())
        first = page.locator("h2").first.inner_text()
        images = page.locator("img")
        count = images.count()
        loaded = sum(images.nth(i).evaluate("img => img.naturalWidth > 0") for i in range(count))
        page.screenshot(path=str(png), full_page=True)
        browser.close()
    return {"first_section": first, "images": count, "images_loaded": loaded, "png_bytes": png.stat().st_size}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/demo"))
    parser.add_argument("--skip-full", action="store_true")
    args = parser.parse_args()
    if args.out.exists():
        shutil.rmtree(args.out)
    args.out.mkdir(parents=True)
    result: dict[str, Any] = {"quick_seconds": timed_demo(args.out, quick=True)}
    result["quick_rerun_seconds"] = timed_demo(args.out, quick=True)
    folder = args.out / "quick"
    if not args.skip_full:
        result["full_seconds"] = timed_demo(args.out, quick=False)
        result["full_rerun_seconds"] = timed_demo(args.out, quick=False)
        folder = args.out / "full"
    result["table_check"] = check_table(folder)
    result["screenshot"] = screenshot(folder / "report.html", args.out / "report.png")
    (args.out / "demo_bench.json").write_text(json.dumps(result, indent=2))
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
