"""Compare mechanisms side by side on the persona organism (it has a ground-truth oracle, so no judge model is
needed): no intervention, a persona prompt, persona vectors (Chen et al. 2025) and NPTI neurons (Deng et al.
2025), each scored on the trait's situational questions and the questionnaire.

    python examples/compare_mechanisms.py              # ~1 min on a laptop CPU
    python examples/compare_mechanisms.py --tiny       # a few seconds (what the tests run)

The same experiment as YAML runs with ``traitlab compare``; ``traitlab demo`` runs every mechanism.
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

from traitlab.evaluation.runner import run_experiment


def experiment(tiny: bool) -> dict:
    answers = {"n_questions": 2 if tiny else 8, "samples": 1, "max_new_tokens": 16 if tiny else 48}
    return {
        "name": "compare mechanisms",
        "model": "traitlab/persona-tiny",
        "traits": ["extraversion"] if tiny else ["extraversion", "agreeableness_low"],
        "methods": [
            {"name": "none"},
            {"name": "prompt"},
            {"name": "persona_vectors",
             "params": {"n_per_question": 1, "coefs": [4.0] if tiny else [2.0, 4.0, 8.0],
                        "sweep_questions": 2 if tiny else 6, "max_new_tokens": 16 if tiny else 48}},
            {"name": "npti", "params": {"n_answers": 16 if tiny else 100, "max_new_tokens": 16 if tiny else 48}},
        ],
        "evaluations": {"questionnaire": {"inventory": "traitlab", "scoring": "logprob"}, "situational": answers},
        "judge": {"kind": "oracle"},
        "seeds": [0],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tiny", action="store_true", help="Few questions and short replies (tests).")
    parser.add_argument("--out", type=Path, default=None, help="Results folder (default: a temp dir).")
    args = parser.parse_args()
    out = args.out or Path(tempfile.mkdtemp())
    rows = run_experiment(experiment(args.tiny), out, progress=False, report=not args.tiny)
    print(f"{'method':<16} {'trait':<20} {'expression (0-100)':>18} {'questionnaire (1-5)':>19}")
    for row in rows:
        expression = row.get("trait_expression")
        score = row.get("questionnaire")
        print(f"{row['label']:<16} {row['spec']:<20} {'-' if expression is None else f'{expression:.1f}':>18} "
              f"{'-' if score is None else f'{score:.2f}':>19}")
    print(f"results: {out / 'results.jsonl'}")


if __name__ == "__main__":
    main()
