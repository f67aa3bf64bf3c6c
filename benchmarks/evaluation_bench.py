"""Evaluation speed figures (issue 4):

1. questionnaire administration throughput (item prompts scored per second: items × option orders × wordings)
   with batched log-prob scoring vs one item per forward, on the organism and/or a SmolLM-135M-shaped random
   Llama;
2. the organism's full default suite (``traitlab eval --model traitlab/persona-tiny``: questionnaire,
   situational + oracle judge, coherence + fluency, capability + neutral perplexity) as a subprocess, wall
   time including start-up (target: under 2 minutes on 2 cores).

Run: ``python -m benchmarks.evaluation_bench [--model organism|smol|both] [--no-suite]``.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time

from benchmarks.common import interleaved, organism_or_none, smol_shaped_llama
from traitlab.evaluation.questionnaire import administer, load_inventory
from traitlab.model import LoadedModel


def questionnaire_throughput(lm: LoadedModel, name: str, repeats: int, max_per_trait: int | None) -> None:
    inventory = load_inventory().subset(max_per_trait=max_per_trait)
    prompts = len(inventory.items) * 4  # 2 wordings × 2 option orders

    def batched() -> None:
        administer(lm, inventory, batch_size=64)

    def one_by_one() -> None:
        administer(lm, inventory, batch_size=1)

    times = interleaved({"batched": batched, "single": one_by_one}, repeats=repeats)
    print(f"[{name}] questionnaire, {len(inventory.items)} items × 4 administrations = {prompts} prompts: "
          f"batched (64) {prompts / times['batched']:.0f} items/s, one per forward "
          f"{prompts / times['single']:.0f} items/s, speed-up {times['single'] / times['batched']:.1f}×")


def default_suite() -> None:
    start = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", "traitlab", "--quiet", "eval", "--model", "traitlab/persona-tiny"],
                          capture_output=True, text=True)
    wall = time.perf_counter() - start
    if done.returncode != 0:
        print(f"[organism] default suite failed ({done.returncode}): {done.stderr.strip()[-300:]}")
        return
    print(done.stdout)
    print(f"[organism] full default suite (traitlab eval, 4 suites × 5 traits): {wall:.1f} s wall "
          f"(target < 120 s)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", choices=("organism", "smol", "both"), default="both")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--no-suite", action="store_true", help="Skip the organism's default-suite timing.")
    args = parser.parse_args()
    if args.model in ("organism", "both"):
        organism = organism_or_none()
        if organism is None:
            print("[organism] not trained yet: skipped")
        else:
            questionnaire_throughput(organism, "organism", args.repeats, None)
            if not args.no_suite:
                default_suite()
    if args.model in ("smol", "both"):
        questionnaire_throughput(smol_shaped_llama(), "random-135M-llama", max(1, args.repeats - 2), 2)


if __name__ == "__main__":
    main()
