"""Validity of the shipped embedding trait judge on held-out public labelled sets, next to the naive floor.

Sets (``../shared/data`` or ``--data``): Big5-Chat eval pairs (pairwise accuracy, 20 pairs per trait, no
neuroticism file) and NPTI persona descriptions (AUROC, 80 + 80 per trait); see
``traitlab.evaluation.judge_validity``. The floor is the issue's naive judge: the mean embedding of the
organism's high-pole reply sentences minus the low ones, no question, no form factor. Both also score a
keyword list per pole (the content words of the pole's persona adjectives, no sentence around them): the floor
reads them as evidence, the shipped judge as none (50).

    python -m benchmarks.judge_validity [--data DIR]

Seconds. Writes ``benchmarks/results/judge_validity.json``.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from benchmarks.common import save_results

TRAITS = ("openness", "conscientiousness", "extraversion", "agreeableness", "neuroticism")


def naive_floor():
    """scorer(questions, texts, trait) of the naive mean-difference judge."""
    from traitlab.evaluation.embedding_judge import embedder
    from traitlab.organism.banks.replies import POLE_SENTENCES

    directions = {}
    for trait in TRAITS:
        hi = embedder().embed([s.replace("{topic}", "it") for s in POLE_SENTENCES[(trait, "high")]])
        lo = embedder().embed([s.replace("{topic}", "it") for s in POLE_SENTENCES[(trait, "low")]])
        directions[trait] = hi.mean(0) - lo.mean(0)
    return lambda qs, xs, t: embedder().embed(list(xs)) @ directions[t]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--data", type=Path, default=None)
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/judge_validity.json"))
    args = parser.parse_args()

    from traitlab.evaluation import judge_validity as jv
    from traitlab.evaluation.embedding_judge import FUNCTION_WORDS, default_judge, words
    from traitlab.organism.banks.personas import ADJECTIVES

    judge = default_judge()
    sets = jv.load_sets(args.data)
    if not sets:
        raise SystemExit(f"no labelled sets under {args.data or jv.default_data_dir()}")
    shipped = jv.validate(lambda qs, xs, t: judge.score_matrix(qs, xs)[:, judge.index(t)], sets, judge.traits)
    floor_scorer = naive_floor()
    floor = jv.validate(floor_scorer, sets, TRAITS)
    print(f"{'set':9s} {'trait':18s} {'n':>4s} {'metric':>9s} {'shipped':>8s} {'floor':>7s}  target")
    rows = []
    for ours, naive in zip(shipped, floor, strict=True):
        metric = "pairwise" if ours["set"] == "big5chat" else "auroc"
        row = {"set": ours["set"], "trait": ours["trait"], "n": ours["n"], "metric": metric,
               "shipped": ours[metric], "floor": naive[metric], "target": ours.get("target"), "met": ours.get("met")}
        rows.append(row)
        print(f"{row['set']:9s} {row['trait']:18s} {row['n']:4d} {metric:>9s} {row['shipped']:8.3f} "
              f"{row['floor']:7.3f}  {row['target'] or ''} {'met' if row['met'] else 'MISSED'}")
    keyword = {}
    for trait in TRAITS:
        for pole in ("high", "low"):
            content = [w for a in ADJECTIVES[(trait, pole)] for w in words(a) if w not in FUNCTION_WORDS]
            text = " ".join(dict.fromkeys(content))
            ours = float(judge.score_matrix([""], [text])[0, judge.index(trait)])
            base = float(floor_scorer([""], [text], trait)[0])
            keyword[f"{trait}_{pole}"] = {"text": text, "shipped": ours, "floor_raw": base}
    print("\nkeyword lists (content words of the pole's adjectives), trait score of the pole's trait:")
    for k, v in keyword.items():
        print(f"  {k:24s} shipped {v['shipped']:5.1f}   floor (raw projection) {v['floor_raw']:+.3f}")
    save_results({"judge": judge.name, "rows": rows, "keyword_lists": keyword}, args.out)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
