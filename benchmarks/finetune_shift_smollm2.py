"""Persona vectors and finetuning on SmolLM2-135M-Instruct (Chen et al. 2025, §5-6; issue 22): finetune-shift,
preventative steering and data screening.

Per trait pole (``--traits``, each with a persona vector extracted by ``traitlab vectors extract --model
smollm2-135m-instruct --trait T --out DIR/T.safetensors``, read from ``--vectors``):

1. **Data, self-distilled** (``traitlab.finetune.personality_data.self_distill``): ``--per-question`` answers to
   each of the pole spec's extraction questions, sampled at 0.7, ``--data-tokens`` new tokens. *Trait-laden*:
   under the pole prompt ("You are a person who is <the pole's adjectives>. Answer as yourself, in the first
   person.", the prompt that moves SmolLM2's judge most, docs/judges.md); *neutral*: the same questions with no
   system prompt. The training rows carry no system prompt.
2. **Finetunes** (``traitlab.finetune.finetune``, LoRA r 8 on every linear module, ``--epochs``, ``--lr``, batch
   8, seed 0) at mixing fractions ``--fractions``: row i is the trait-laden answer for the first round(f·N)
   rows of a seeded order and the neutral answer otherwise (same questions, only the answers differ).
3. **Finetune-shift**: activation shift along the vector at its layer, (mean last-prompt-token residual of the
   tuned model − the base model's) · v̂ over the held-out prompts (``traitlab.monitor.finetune_shift``), against
   the judged score change (greedy replies, ``--max-new-tokens``; tuned − base, oriented to the pole) over the
   same ``--n`` held-out questions (the union of the ten Big Five specs' eval_questions, deduplicated,
   shuffled seed 0 — as ``npti_smollm2``). Pearson r per trait over the fractions (the paper: 0.76-0.97),
   over all of the trait's models (the fractions and the prevented finetunes) and pooled over every model.
4. **Preventative steering**: the f = 1 finetune again with h_ℓ += α·v at the vector's layer on all tokens
   during training (α in ``--prevent-coefs``); judged-shift cut = 1 − shift(prevented) / shift(plain f = 1),
   and the perplexity of neutral text (the base model's own greedy held-out replies) under the prevented model
   over that under the plain f = 1 model and under the base model (target cut ≥ 0.5 at ≤ 1.1×).
5. **Screening** (``traitlab.monitor.screen``): projection difference ΔP of each training sample against the base
   model's own reply; AUROC of ΔP for trait-laden (positive) vs neutral (negative) samples.

Judge: the offline embedding judge calibrated on SmolLM2's unsteered replies (``--judge auto``); coherence on
Gemma-3-270m. Data, per-model figures and judgements are cached in ``--work``; results are rewritten after each
model. Run: ``OMP_NUM_THREADS=1 python -m benchmarks.finetune_shift_smollm2``; writes
``benchmarks/results/finetune_shift_smollm2.json``.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from scipy import stats as sstats

from benchmarks.common import save_results
from benchmarks.npti_smollm2 import TRAITS, Store, heldout_questions, key, simple_prompt


def distilled(lm: Any, name: str, per_question: int, tokens: int, work: Path) -> tuple[list, list]:
    """(trait-laden, neutral) conversations of a pole, cached as chat JSONL."""
    from traitlab.finetune.data import load_chat_jsonl
    from traitlab.finetune.personality_data import self_distill, write_chat_jsonl
    from traitlab.traits import load_trait
    from traitlab.traits.spec import InstructionPair

    trait, pole = name.rsplit("_", 1)
    spec = load_trait(name)
    out = []
    for label, system in (("trait", simple_prompt(trait, pole)), ("neutral", None)):
        path = work / f"{name}.{label}.jsonl"
        if not path.is_file():
            if system is None:  # the same questions, no system prompt, same sampling
                questions = [q for q in spec.questions for _ in range(per_question)]
                answers = lm.generate_chat(questions, None, max_new_tokens=tokens, temperature=0.7, seed=0,
                                           batch_size=64, progress=False).texts
                rows = [[{"role": "user", "content": q}, {"role": "assistant", "content": a}]
                        for q, a in zip(questions, answers, strict=True) if a.strip()]
            else:
                copy = spec.model_copy(update={"instruction": [InstructionPair(pos=system, neg=system)]})
                rows = self_distill(lm, copy, n_per_question=per_question, temperature=0.7, max_new_tokens=tokens,
                                    seed=0, batch_size=64)
            write_chat_jsonl(rows, path)
        out.append(load_chat_jsonl(path))
    return out[0], out[1]


def paired(trait_rows: list, neutral_rows: list) -> list[tuple[Any, Any]]:
    """(trait-laden, neutral) answers to the same question, in order; a question whose answer came out empty
    on one side (``self_distill`` drops those) loses its pair instead of shifting every later one."""
    waiting: dict[str, list] = {}
    for row in neutral_rows:
        waiting.setdefault(row[0]["content"], []).append(row)
    return [(row, waiting[row[0]["content"]].pop(0)) for row in trait_rows if waiting.get(row[0]["content"])]


def mixed(trait_rows: list, neutral_rows: list, fraction: float, seed: int = 0) -> list:
    """Pair i (same question): the trait-laden answer for the first round(f·N) indices of a seeded order, the
    neutral one otherwise."""
    pairs = paired(trait_rows, neutral_rows)
    n = len(pairs)
    order = torch.randperm(n, generator=torch.Generator().manual_seed(seed)).tolist()
    chosen = set(order[:round(fraction * n)])
    return [pairs[i][0] if i in chosen else pairs[i][1] for i in range(n)]


class Evaluator:
    def __init__(self, base: Any, questions: list[str], max_new_tokens: int, work: Path) -> None:
        from traitlab.evaluation.judges import PerplexityCoherenceJudge
        from traitlab.evaluation.offline import offline_judges

        self.base, self.questions, self.max_new_tokens = base, questions, max_new_tokens
        self.judge, self.coherence = offline_judges(base, reference="gemma-3-270m", max_new_tokens=max_new_tokens)
        self.models = Store(work / "models.json")
        self.base_replies = self.replies(base)
        self.base_scores, self.base_coh = self.score(self.base_replies)
        self.ppl_judge = PerplexityCoherenceJudge

    def replies(self, lm: Any) -> list[str]:
        return list(lm.generate_chat(self.questions, None, max_new_tokens=self.max_new_tokens,
                                     batch_size=len(self.questions), progress=False).texts)

    def score(self, replies: list[str]) -> tuple[np.ndarray, np.ndarray]:
        matrix = self.judge.score_matrix(self.questions, replies)
        scores = np.stack([matrix[:, self.judge.index(t)] for t in TRAITS], axis=1)
        coh = np.array([np.nan if c is None else c for c in
                        self.coherence.score_many([(q, r, "") for q, r in zip(self.questions, replies, strict=True)])])
        return scores, coh

    def neutral_ppl(self, lm: Any) -> float:
        """Median perplexity of the base model's own greedy held-out replies under ``lm``."""
        values = [p for p in self.ppl_judge(lm).perplexities(self.questions, self.base_replies) if p is not None]
        return float(statistics.median(values))

    def model(self, tag: str, build: Any, name: str, vector: Any, layer: int) -> dict[str, Any]:
        if tag in self.models.data:
            return self.models.data[tag]
        from traitlab.monitor import finetune_shift

        trait, pole = name.rsplit("_", 1)
        sign = 1.0 if pole == "high" else -1.0
        col = TRAITS.index(trait)
        start = time.perf_counter()
        tuned = build()
        train_seconds = time.perf_counter() - start
        shift = finetune_shift(self.base, tuned, vector.direction(layer), layer, self.questions)
        replies = self.replies(tuned)
        scores, coh = self.score(replies)
        diffs = sign * (scores[:, col] - self.base_scores[:, col])
        row = {"activation_shift": round(shift, 4), "judged_change": round(float(diffs.mean()), 2),
               "judged_p": float(sstats.ttest_rel(scores[:, col], self.base_scores[:, col]).pvalue)
               if not np.allclose(diffs, 0) else 1.0,
               "judged_mean": round(float(scores[:, col].mean()), 2),
               "coherence": round(float(np.nanmean(coh)), 1),
               "neutral_ppl": round(self.neutral_ppl(tuned), 3), "train_seconds": round(train_seconds, 1),
               "example": replies[0]}
        self.models.data[tag] = row
        self.models.save()
        del tuned
        return row


def pearson(x: list[float], y: list[float]) -> float | None:
    if len(x) < 3 or np.std(x) == 0 or np.std(y) == 0:
        return None
    return round(float(np.corrcoef(x, y)[0, 1]), 3)


def layer_map(text: str) -> dict[str, int]:
    """``name=layer,name=layer`` → ``{name: layer}`` (argparse type of ``--layers``)."""
    out: dict[str, int] = {}
    for item in filter(None, (part.strip() for part in text.split(","))):
        name, sep, value = item.partition("=")
        if not sep or not name.strip() or not value.strip().isdigit():
            raise argparse.ArgumentTypeError(f"expected POLE=LAYER pairs separated by commas, got {item!r}")
        out[name.strip()] = int(value)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--traits", default="agreeableness_low,openness_high,conscientiousness_low")
    parser.add_argument("--vectors", type=Path, default=Path("out/22b/vectors"))
    parser.add_argument("--layers", type=layer_map, default={},
                        help="Per-pole layer of the vector to use, e.g. openness_high=14,agreeableness_low=20 "
                             "(default: the artifact's own layer, the best-separating one).")
    parser.add_argument("--fractions", default="0,0.5,1",
                        help="Mixing fractions to finetune at; empty: no finetunes (the base model's figures and the "
                             "screening only).")
    parser.add_argument("--prevent-coefs", default="1")
    parser.add_argument("--per-question", type=int, default=1)
    parser.add_argument("--data-tokens", type=int, default=48)
    parser.add_argument("--epochs", type=float, default=3.0)
    parser.add_argument("--lr", type=float, default=2e-3)
    parser.add_argument("--n", type=int, default=40, help="held-out questions")
    parser.add_argument("--max-new-tokens", type=int, default=48)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--work", type=Path, default=Path("out/finetune_shift_smollm2"))
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/finetune_shift_smollm2.json"))
    parser.add_argument("--merge", type=Path, nargs="+", default=None,
                        help="Merge these results files into --out (pooled r and table recomputed) and exit.")
    args = parser.parse_args()
    if args.merge:
        merge(args.merge, args.out)
        return
    names = [t for t in args.traits.split(",") if t]
    fractions = [float(f) for f in args.fractions.split(",") if f]
    coefs = [float(c) for c in args.prevent_coefs.split(",") if c]
    unknown = sorted(set(args.layers) - set(names))
    if unknown:
        raise SystemExit(f"error: --layers names {', '.join(unknown)}, not in --traits")
    missing = [n for n in names if not (args.vectors / f"{n}.safetensors").is_file()]
    if missing:
        raise SystemExit(f"error: no persona vector for {', '.join(missing)} in {args.vectors}")
    torch.set_num_threads(args.threads)
    from traitlab.finetune import FinetuneSettings, finetune
    from traitlab.model import load_model
    from traitlab.monitor import auroc, screen
    from traitlab.registry import load_intervention

    start = time.perf_counter()
    args.work.mkdir(parents=True, exist_ok=True)
    base = load_model("smollm2-135m-instruct")
    questions = heldout_questions(args.n)
    ev = Evaluator(base, questions, args.max_new_tokens, args.work)
    settings = FinetuneSettings(method="lora", epochs=args.epochs, learning_rate=args.lr, batch_size=8, seed=0)
    results: dict[str, Any] = {
        "model": "smollm2-135m-instruct", "finetune": {"method": "lora", "r": 8, "epochs": args.epochs,
                                                       "lr": args.lr, "batch_size": 8, "seed": 0},
        "data": {"per_question": args.per_question, "new_tokens": args.data_tokens, "temperature": 0.7},
        "held_out": args.n, "base_neutral_ppl": round(ev.neutral_ppl(base), 3),
        "base": {"coherence": round(float(np.nanmean(ev.base_coh)), 1),
                 "judged_mean": {t: round(float(ev.base_scores[:, i].mean()), 2) for i, t in enumerate(TRAITS)}},
        "traits": {}}
    screens = Store(args.work / "screens.json")
    for name in names:
        vector = load_intervention(args.vectors / f"{name}.safetensors", base)
        layer = args.layers.get(name, next(iter(vector.vectors)))
        vector = vector.at(layers=layer)
        trait_rows, neutral_rows = distilled(base, name, args.per_question, args.data_tokens, args.work)
        row: dict[str, Any] = {"layer": layer, "rows": [len(trait_rows), len(neutral_rows)],
                               "vector": {k: vector.extra.get(k) for k in ("pairs_kept", "pairs_total",
                                                                          "pos_mean_score", "neg_mean_score")},
                               "fractions": {}}
        for f in fractions:
            data = mixed(trait_rows, neutral_rows, f)
            row["fractions"][str(f)] = ev.model(key(name, "f", f, settings, layer, args.n), lambda d=data: finetune(
                base, d, settings, progress=False), name, vector, layer)
            print(f"{name} f={f}: {json.dumps(row['fractions'][str(f)])}", flush=True)
            results["traits"][name] = row
            save_results(results, args.out)
        xs = [row["fractions"][str(f)]["activation_shift"] for f in fractions]
        ys = [row["fractions"][str(f)]["judged_change"] for f in fractions]
        row["r"] = pearson(xs, ys)
        row["prevention"] = {}
        for coef in coefs if fractions else ():  # no fractions: screening only
            plain = row["fractions"][str(max(fractions))]
            data = mixed(trait_rows, neutral_rows, max(fractions))
            steer = vector.at(positions="all").scaled(coef)
            cell = ev.model(key(name, "prevent", coef, settings, layer, args.n), lambda s=steer, d=data: finetune(
                base, d, settings, steering=s, progress=False), name, vector, layer)
            cut = 1 - cell["judged_change"] / plain["judged_change"] if plain["judged_change"] else None
            row["prevention"][str(coef)] = {**cell, "cut": None if cut is None else round(cut, 3),
                                            "ppl_vs_plain": round(cell["neutral_ppl"] / plain["neutral_ppl"], 3),
                                            "ppl_vs_base": round(cell["neutral_ppl"] / results["base_neutral_ppl"], 3)}
            print(f"{name} prevent α={coef}: {json.dumps(row['prevention'][str(coef)])}", flush=True)
        models = list(row["fractions"].values()) + list(row["prevention"].values())
        row["r_all_models"] = pearson([m["activation_shift"] for m in models], [m["judged_change"] for m in models])
        tag = key(name, "screen", len(trait_rows), len(neutral_rows), layer)
        if tag not in screens.data:
            samples = trait_rows + neutral_rows
            rows = screen(base, vector.direction(layer), layer, samples, max_new_tokens=args.max_new_tokens)
            screens.data[tag] = [r["delta_p"] for r in rows]
            screens.save()
        deltas = screens.data[tag]
        labels = [True] * len(trait_rows) + [False] * len(neutral_rows)
        kept = [(d, y) for d, y in zip(deltas, labels, strict=True) if d is not None]
        row["screening_auroc"] = round(auroc([d for d, _ in kept], [y for _, y in kept]), 3)
        row["screening_mean_delta_p"] = {"trait": round(float(np.mean([d for d, y in kept if y])), 3),
                                         "neutral": round(float(np.mean([d for d, y in kept if not y])), 3)}
        results["traits"][name] = row
        results["wall_seconds"] = round(time.perf_counter() - start, 1)
        save_results(results, args.out)
        print(f"{name}: r {row['r']}, screening AUROC {row['screening_auroc']}", flush=True)
    summarize(results)
    results["wall_seconds"] = round(time.perf_counter() - start, 1)
    save_results(results, args.out)
    print(results["markdown"])


def summarize(results: dict[str, Any]) -> None:
    """Pooled r over every trait's models (``r_pooled``: fractions and prevented finetunes; ``r_pooled_fractions``:
    the fractions only) and the markdown table, into ``results``."""
    rows = results["traits"].values()
    for label, models in (("r_pooled", [m for row in rows for m in [*row["fractions"].values(),
                                                                      *row.get("prevention", {}).values()]]),
                          ("r_pooled_fractions", [m for row in rows for m in row["fractions"].values()])):
        results[label] = pearson([m["activation_shift"] for m in models], [m["judged_change"] for m in models])
    table = ["| trait | layer | f: activation shift / judged change | r | prevention α: cut, ppl vs plain | AUROC |",
             "|---|---|---|---|---|---|"]
    for name, row in results["traits"].items():
        cells = ", ".join(f"{f}: {v['activation_shift']:+.3f} / {v['judged_change']:+.1f}"
                          for f, v in row["fractions"].items())
        prev = ", ".join(f"{c}: {v['cut']}, {v['ppl_vs_plain']}" for c, v in row.get("prevention", {}).items())
        table.append(f"| {name} | {row['layer']} | {cells} | {row.get('r')} | {prev} | {row.get('screening_auroc')} |")
    results["markdown"] = "\n".join(table)


def merge(paths: list[Path], out: Path) -> None:
    """Union of the traits of several results files (runs split over processes or stopped early) into ``out``,
    with the pooled r and the table recomputed; the other fields come from the first file."""
    results = json.loads(paths[0].read_text())
    for path in paths[1:]:
        results["traits"].update(json.loads(path.read_text())["traits"])
    summarize(results)
    save_results(results, out)
    print(results["markdown"])
    print(f"r pooled: {results['r_pooled']} (fractions only: {results['r_pooled_fractions']})")

if __name__ == "__main__":
    main()
