"""NPTI (Deng et al., ICLR 2025, arXiv 2410.12327) on SmolLM2-135M-Instruct, as the paper defines it (issue 22).

1. **Statistics** per Big Five trait, on generated tokens under the pole prompts: NPTI's own ``description.json``
   personas (80 second-person descriptions per pole; ``/work/shared/data/npti_personalitybench``) answering the
   trait's extraction questions (``<trait>_high`` and ``<trait>_low`` ``questions``), ``--answers`` answers per
   pole, sampled at 0.7, ``--stat-tokens`` new tokens (``traitlab.methods.neurons.fit``; the CLI equivalent is
   ``traitlab neurons find --trait <trait>_high --description-json .../description.json``).
2. **Identification and induction** as the paper: δ = Pr(target) − Pr(opposite) ≥ τ (0.1), boost
   γ·a95·f(δ) on the target pole's neurons, clamp the opposite pole's at min(0, n), on generated tokens.
3. **γ** per pole, chosen on 8 tuning questions (NPTI's own PersonalityBench test questions of the trait, never
   used for statistics or evaluation) from ``GAMMAS``: the largest judged shift toward the pole whose mean
   coherence stays ≥ 0.9× the unsteered replies' on the same questions (the smallest γ when none does).
4. **Evaluation** on ``--n`` held-out questions (the union of the ten Big Five specs' ``eval_questions``,
   deduplicated, shuffled with seed 0; never used for statistics, γ choice or judge calibration), greedy,
   ``--max-new-tokens`` new tokens, no system prompt for NPTI: unsteered, the simple prompt ("You are a person
   who is <the pole's adjectives>. Answer as yourself, in the first person."), the P² portrait (the ``p2``
   recipe) and NPTI at its γ. Judge: the offline embedding judge calibrated on SmolLM2's unsteered replies to
   the train questions (``--judge auto``); coherence: the reference-LM judge on Gemma-3-270m. Per condition:
   judged score of the pole's trait, mean ± 95% CI, the shift toward the pole (paired over questions) with its
   paired t-test p, the fraction of the simple prompt's shift, the coherence ratio to unsteered and the SD of
   the judged score across questions (NPTI's stability claim).
   **Moves toward the pole**: shift > 0 with p < 0.01, at coherence ≥ 0.9× unsteered, and, where the simple
   prompt's own shift is significant (p < 0.01 in the pole's direction), ≥ half of it.
5. **Ablation** (the paper's γ and threshold) on ``--ablate`` poles over the first ``--ablate-n`` held-out questions:
   τ ∈ {0.05, 0.1, 0.2} × γ ∈ ``--ablate-gammas``.

Every generation and judgement is cached in ``--work`` (JSON), so a rerun or a crash redoes nothing; statistics
are cached as ``.safetensors`` artifacts. The results file is rewritten after each pole.

Run: ``OMP_NUM_THREADS=1 nice python -m benchmarks.npti_smollm2 [--n 48] [--poles extraversion_high,...]
[--model qwen2.5-coder-0.5b-instruct --out ...]``. Writes ``benchmarks/results/npti_smollm2.json``.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import random
import statistics
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from scipy import stats as sstats

from benchmarks.common import save_results

TRAITS = ("openness", "conscientiousness", "extraversion", "agreeableness", "neuroticism")
POLES = [f"{t}_{p}" for t in TRAITS for p in ("high", "low")]
GAMMAS = [0.5, 1.0, 2.0, 4.0]
THRESHOLDS = [0.05, 0.1, 0.2]
DATA = Path("/work/shared/data/npti_personalitybench")
TUNING_N = 8


# ---------------------------------------------------------------------------------------------- questions


def heldout_questions(n: int, seed: int = 0) -> list[str]:
    """The union of the ten Big Five specs' eval_questions, deduplicated in order, shuffled, first n."""
    from traitlab.traits import load_trait

    seen: dict[str, None] = {}
    for pole in POLES:
        for q in load_trait(pole).eval_questions:
            seen.setdefault(q, None)
    questions = list(seen)
    random.Random(seed).shuffle(questions)
    if n > len(questions):
        raise SystemExit(f"only {len(questions)} held-out questions")
    return questions[:n]


def tuning_questions(trait: str) -> list[str]:
    path = DATA / "test" / f"{trait.capitalize()}.json"
    rows = [json.loads(line)["question"] for line in path.read_text().splitlines() if line.strip()]
    return rows[:TUNING_N]


def simple_prompt(trait: str, pole: str) -> str:
    from traitlab.evaluation.judges import _BIG_FIVE_WORDS

    words = _BIG_FIVE_WORDS[trait][0 if pole == "high" else 1]
    return f"You are a person who is {words}. Answer as yourself, in the first person."


# ---------------------------------------------------------------------------------------------- caches


class Store:
    """A JSON dict on disk, written atomically after each update."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.data: dict[str, Any] = json.loads(path.read_text()) if path.is_file() else {}

    def save(self) -> None:
        tmp = self.path.with_name(f".{self.path.name}.tmp")
        tmp.write_text(json.dumps(self.data))
        tmp.replace(self.path)


def key(*parts: Any) -> str:
    return hashlib.sha1("\x1f".join(map(str, parts)).encode()).hexdigest()


class Bench:
    def __init__(self, lm: Any, work: Path, max_new_tokens: int, batch_size: int) -> None:
        self.lm, self.work = lm, work
        self.max_new_tokens, self.batch_size = max_new_tokens, batch_size
        self.replies = Store(work / "replies.json")
        self.judged = Store(work / "judged.json")
        self._judges: tuple[Any, Any] | None = None
        self.gen_seconds = 0.0
        self.gen_rows = 0

    @property
    def judges(self) -> tuple[Any, Any]:
        if self._judges is None:
            from traitlab.evaluation.offline import offline_judges

            self._judges = offline_judges(self.lm, reference="gemma-3-270m", max_new_tokens=self.max_new_tokens)
        return self._judges

    def generate(self, condition: str, questions: list[str], system: str | None = None,
                 induction: Any = None, gammas: list[float] | None = None) -> dict[float, list[str]]:
        """Greedy replies per γ (``gammas``; one batch with per-row scales) or plain / system-prompted."""
        grid = gammas or [0.0]
        keys = {(g, q): key(self.lm.spec, self.max_new_tokens, condition, g, q) for g in grid for q in questions}
        missing = [q for q in questions if any(keys[(g, q)] not in self.replies.data for g in grid)]
        if missing:
            start = time.perf_counter()
            for i in range(0, len(missing), max(1, self.batch_size // len(grid))):
                chunk = missing[i:i + max(1, self.batch_size // len(grid))]
                rows = [q for q in chunk for _ in grid]
                systems = [system] * len(rows) if system else None
                if induction is None:
                    texts = self.lm.generate_chat(rows, systems, max_new_tokens=self.max_new_tokens,
                                                  batch_size=len(rows), progress=False).texts
                else:
                    # generation sorts rows by prompt length, which keeps each question's len(grid) rows
                    # together, so row k still carries grid[k % len(grid)]
                    scales = torch.tensor([g for _ in chunk for g in grid]) / induction.scale
                    with induction.applied(self.lm, row_scale=scales):
                        texts = self.lm.generate_chat(rows, systems, max_new_tokens=self.max_new_tokens,
                                                      batch_size=len(rows), progress=False).texts
                for j, q in enumerate(chunk):
                    for k, g in enumerate(grid):
                        self.replies.data[keys[(g, q)]] = texts[j * len(grid) + k]
                self.replies.save()
                self.gen_rows += len(rows)
            self.gen_seconds += time.perf_counter() - start
        return {g: [self.replies.data[keys[(g, q)]] for q in questions] for g in grid}

    def judge(self, questions: list[str], replies: list[str]) -> tuple[np.ndarray, np.ndarray]:
        """(scores [n, 5 Big Five traits], coherence [n]) with caching."""
        keys = [key(q, r) for q, r in zip(questions, replies, strict=True)]
        todo = [i for i, k in enumerate(keys) if k not in self.judged.data]
        if todo:
            judge, coherence = self.judges
            matrix = judge.score_matrix([questions[i] for i in todo], [replies[i] for i in todo])
            cols = [judge.index(t) for t in TRAITS]
            coh = coherence.score_many([(questions[i], replies[i], "") for i in todo])
            for row, i in enumerate(todo):
                self.judged.data[keys[i]] = {"scores": [float(matrix[row, c]) for c in cols],
                                             "coherence": None if coh[row] is None else float(coh[row])}
            self.judged.save()
        scores = np.array([self.judged.data[k]["scores"] for k in keys])
        coh = np.array([np.nan if self.judged.data[k]["coherence"] is None else self.judged.data[k]["coherence"]
                        for k in keys])
        return scores, coh


# ---------------------------------------------------------------------------------------------- statistics


def summary(scores: np.ndarray, base: np.ndarray, sign: float, coh: np.ndarray, base_coh: np.ndarray
            ) -> dict[str, Any]:
    """Judged score mean ± 95% CI, SD across questions, shift toward the pole (paired) and its p."""
    n = len(scores)
    half = float(sstats.t.ppf(0.975, n - 1) * scores.std(ddof=1) / np.sqrt(n))
    diffs = sign * (scores - base)
    out = {"mean": round(float(scores.mean()), 2), "ci95": round(half, 2), "sd": round(float(scores.std(ddof=1)), 2),
           "coherence": round(float(np.nanmean(coh)), 1),
           "coherence_ratio": round(float(np.nanmean(coh) / np.nanmean(base_coh)), 3)}
    if np.allclose(diffs, 0):
        out.update(shift=0.0, p=1.0)
    else:
        out.update(shift=round(float(diffs.mean()), 2), p=float(sstats.ttest_rel(sign * scores, sign * base).pvalue),
                   on_side=round(float((diffs > 0).mean()), 2))
    return out


def moves(npti: dict[str, Any], prompt: dict[str, Any], alpha: float = 0.01) -> bool:
    if not (npti["shift"] > 0 and npti["p"] < alpha and npti["coherence_ratio"] >= 0.9):
        return False
    prompt_sig = prompt["shift"] > 0 and prompt["p"] < alpha
    return (not prompt_sig) or npti["shift"] >= 0.5 * prompt["shift"]


# ---------------------------------------------------------------------------------------------- steps


def fitted(bench: Bench, trait: str, answers: int, stat_tokens: int) -> tuple[Any, float | None]:
    """Both poles' statistics of a trait (cached artifact)."""
    from traitlab.methods import neurons
    from traitlab.methods.neurons import CollectionSettings
    from traitlab.registry import load_intervention
    from traitlab.traits import load_trait

    path = bench.work / f"{trait}.npti.safetensors"
    if path.is_file():
        return load_intervention(path, bench.lm), None
    spec = load_trait(f"{trait}_high")
    pairs = neurons.description_pairs(neurons.load_npti_descriptions(DATA / "description.json", trait), spec)
    questions = list(dict.fromkeys(spec.questions + load_trait(f"{trait}_low").questions))
    start = time.perf_counter()
    induction = neurons.fit(bench.lm, spec, settings=CollectionSettings(n_answers=answers, max_new_tokens=stat_tokens,
                                                                        temperature=0.7),
                            pairs=pairs, questions=questions, progress=False)
    seconds = time.perf_counter() - start
    induction.save(path)
    return induction, seconds


def counts(induction: Any) -> tuple[int, int]:
    c = induction.counts()
    return sum(v[0] for v in c.values()), sum(v[1] for v in c.values())


def choose_gamma(bench: Bench, induction: Any, trait: str, pole: str, tag: str) -> tuple[float, list[dict]]:
    questions = tuning_questions(trait)
    sign = 1.0 if pole == "high" else -1.0
    col = TRAITS.index(trait)
    base_replies = bench.generate("none", questions)[0.0]
    base, base_coh = bench.judge(questions, base_replies)
    table = []
    for gamma, replies in bench.generate(tag, questions, induction=induction, gammas=GAMMAS).items():
        scores, coh = bench.judge(questions, replies)
        table.append({"gamma": gamma, **summary(scores[:, col], base[:, col], sign, coh, base_coh)})
    eligible = [row for row in table if row["coherence_ratio"] >= 0.9]
    if not eligible:
        return GAMMAS[0], table
    return max(eligible, key=lambda row: (row["shift"], -row["gamma"]))["gamma"], table


def evaluate_pole(bench: Bench, name: str, induction: Any, questions: list[str]) -> dict[str, Any]:
    from traitlab.evaluation.recipes.prompts import p2_portrait
    from traitlab.traits import load_trait

    trait, pole = name.rsplit("_", 1)
    sign = 1.0 if pole == "high" else -1.0
    col = TRAITS.index(trait)
    variant = induction.with_options(target=pole)
    tag = f"npti:{name}:tau0.1"
    gamma, tuning = choose_gamma(bench, variant, trait, pole, tag)
    base, base_coh = bench.judge(questions, bench.generate("none", questions)[0.0])
    systems = {"simple prompt": simple_prompt(trait, pole), "P2 prompt": p2_portrait(load_trait(name))}
    row: dict[str, Any] = {"gamma": gamma, "gamma_tuning": tuning, "neurons": dict(zip(("boosted", "clamped"),
                                                                                       counts(variant),
                                                                                       strict=True)),
                           "prompts": systems}
    conditions = {"unsteered": bench.generate("none", questions)[0.0]}
    for label, system in systems.items():
        conditions[label] = bench.generate(f"system:{system}", questions, system=system)[0.0]
    conditions["npti"] = bench.generate(tag, questions, induction=variant, gammas=[gamma])[gamma]
    for label, replies in conditions.items():
        scores, coh = bench.judge(questions, replies)
        row[label] = summary(scores[:, col], base[:, col], sign, coh, base_coh)
    prompt_shift = row["simple prompt"]["shift"]
    for label in ("P2 prompt", "npti"):
        row[label]["fraction_of_prompt_shift"] = round(row[label]["shift"] / prompt_shift, 2) if prompt_shift else None
    row["prompt_significant"] = bool(row["simple prompt"]["shift"] > 0 and row["simple prompt"]["p"] < 0.01)
    row["npti_moves"] = moves(row["npti"], row["simple prompt"])
    row["examples"] = [{"question": questions[i], **{k: v[i] for k, v in conditions.items()}} for i in range(2)]
    return row


def ablation(bench: Bench, name: str, induction: Any, questions: list[str], gammas: list[float]
             ) -> list[dict[str, Any]]:
    trait, pole = name.rsplit("_", 1)
    sign = 1.0 if pole == "high" else -1.0
    col = TRAITS.index(trait)
    base, base_coh = bench.judge(questions, bench.generate("none", questions)[0.0])
    settings: list[tuple[str, dict[str, Any]]] = [(f"tau {t}", {"threshold": t}) for t in THRESHOLDS]
    table = []
    for label, options in settings:
        variant = induction.with_options(target=pole, **options)
        tag = f"npti:{name}:" + ",".join(f"{k}={v}" for k, v in options.items())
        if options == {"threshold": 0.1}:
            tag = f"npti:{name}:tau0.1"
        boosted, clamped = counts(variant)
        for gamma, replies in bench.generate(tag, questions, induction=variant, gammas=gammas).items():
            scores, coh = bench.judge(questions, replies)
            table.append({"setting": label, "gamma": gamma, "boosted": boosted, "clamped": clamped,
                          **summary(scores[:, col], base[:, col], sign, coh, base_coh)})
            print(f"ablation {name} {json.dumps(table[-1])}", flush=True)
    return table


def markdown(results: dict[str, Any]) -> str:
    lines = ["| pole | γ | neurons +/− | unsteered | simple prompt: shift (p) | P²: shift (p) | NPTI: shift (p) | "
             "NPTI / prompt | NPTI coherence ratio | SD none / simple / P² / NPTI | moves |",
             "|---|---|---|---|---|---|---|---|---|---|---|"]
    for name, row in results["poles"].items():
        u, s, p2, n = row["unsteered"], row["simple prompt"], row["P2 prompt"], row["npti"]
        lines.append(f"| {name} | {row['gamma']:g} | {row['neurons']['boosted']}/{row['neurons']['clamped']} | "
                     f"{u['mean']} ± {u['ci95']} | {s['shift']:+} ({s['p']:.2g}) | {p2['shift']:+} ({p2['p']:.2g}) | "
                     f"{n['shift']:+} ({n['p']:.2g}) | {n['fraction_of_prompt_shift']} | {n['coherence_ratio']} | "
                     f"{u['sd']} / {s['sd']} / {p2['sd']} / {n['sd']} | {'yes' if row['npti_moves'] else 'no'} |")
    if results.get("ablation"):
        lines += ["", "| pole | setting | γ | boosted/clamped | shift (p) | coherence ratio |",
                  "|---|---|---|---|---|---|"]
        for name, table in results["ablation"].items():
            for r in table:
                lines.append(f"| {name} | {r['setting']} | {r['gamma']:g} | {r['boosted']}/{r['clamped']} | "
                             f"{r['shift']:+} ({r['p']:.2g}) | {r['coherence_ratio']} |")
    return "\n".join(lines)


def acceptance(results: dict[str, Any]) -> dict[str, Any]:
    judged = list(results["poles"].values())
    return {"npti_moves": sum(r["npti_moves"] for r in judged), "of": len(judged), "target": 6,
            "prompt_significant": sum(r["prompt_significant"] for r in judged),
            "mean_sd": {label: round(statistics.fmean(r[label]["sd"] for r in judged), 2)
                        for label in ("unsteered", "simple prompt", "P2 prompt", "npti")} if judged else {}}


def merge(paths: list[Path], out: Path) -> None:
    """One results file from runs over disjoint poles (e.g. two processes sharing a busy machine)."""
    parts = [json.loads(p.read_text()) for p in paths]
    results = dict(parts[0])
    for key_ in ("poles", "fit_seconds", "ablation", "tokens"):
        results[key_] = {k: v for part in parts for k, v in part.get(key_, {}).items()}
    results["poles"] = {name: results["poles"][name] for name in POLES if name in results["poles"]}
    for key_ in ("generation_rows", "generation_seconds", "wall_seconds"):
        results[key_] = [part.get(key_) for part in parts]
    results["merged_from"] = [str(p) for p in paths]
    results["acceptance"] = acceptance(results)
    results["markdown"] = markdown(results)
    save_results(results, out)
    print(results["markdown"])
    print(json.dumps(results["acceptance"]))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="smollm2-135m-instruct")
    parser.add_argument("--n", type=int, default=40, help="held-out questions per pole")
    parser.add_argument("--max-new-tokens", type=int, default=48)
    parser.add_argument("--answers", type=int, default=64, help="statistics answers per pole")
    parser.add_argument("--stat-tokens", type=int, default=48, help="new tokens per statistics answer")
    parser.add_argument("--batch-size", type=int, default=48)
    parser.add_argument("--poles", default=",".join(POLES))
    parser.add_argument("--ablate", default="extraversion_high,agreeableness_low")
    parser.add_argument("--ablate-n", type=int, default=20, help="held-out questions of the ablation")
    parser.add_argument("--ablate-gammas", default=",".join(f"{g:g}" for g in GAMMAS))
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--work", type=Path, default=None, help="cache folder (default out/npti_<model>)")
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/npti_smollm2.json"))
    parser.add_argument("--merge", type=Path, nargs="+", default=None,
                        help="combine the results files of runs over disjoint poles into --out and stop")
    args = parser.parse_args()
    if args.merge:
        merge(args.merge, args.out)
        return
    poles = [p for p in args.poles.split(",") if p]
    bad = [p for p in poles + [a for a in args.ablate.split(",") if a] if p not in POLES]
    if bad:
        raise SystemExit(f"error: unknown pole(s) {', '.join(bad)}")
    torch.set_num_threads(args.threads)
    from traitlab.model import load_model

    start = time.perf_counter()
    lm = load_model(args.model)
    work = args.work or Path("out") / f"npti_{args.model.replace('/', '_')}"
    work.mkdir(parents=True, exist_ok=True)
    bench = Bench(lm, work, args.max_new_tokens, args.batch_size)
    questions = heldout_questions(args.n)
    results: dict[str, Any] = {
        "model": args.model, "held_out": f"{args.n} of the union of the ten Big Five specs' eval_questions "
        "(deduplicated, shuffled seed 0)", "tuning": f"first {TUNING_N} NPTI PersonalityBench test questions of "
        "the trait", "statistics": {"personas": "NPTI description.json (80 per pole)", "answers_per_pole": args.answers,
                                    "new_tokens": args.stat_tokens, "temperature": 0.7,
                                    "questions": "<trait>_high + <trait>_low extraction questions"},
        "generation": {"greedy": True, "max_new_tokens": args.max_new_tokens}, "gammas": GAMMAS,
        "threshold": 0.1, "poles": {}, "fit_seconds": {}, "ablation": {}}
    out_path = args.out
    for name in poles:
        trait = name.rsplit("_", 1)[0]
        induction, seconds = fitted(bench, trait, args.answers, args.stat_tokens)
        if seconds is not None:
            results["fit_seconds"][trait] = round(seconds, 1)
        stats = induction.stats
        results.setdefault("tokens", {})[trait] = {"pos": stats.pos.tokens, "neg": stats.neg.tokens}
        results["poles"][name] = evaluate_pole(bench, name, induction, questions)
        row = results["poles"][name]
        print(f"{name}: γ {row['gamma']} " + json.dumps({k: row[k] for k in ("unsteered", "simple prompt",
                                                                               "P2 prompt", "npti", "npti_moves")}),
              flush=True)
        results["markdown"] = markdown(results)
        save_results(results, out_path)
    for name in [a for a in args.ablate.split(",") if a]:
        induction, _ = fitted(bench, name.rsplit("_", 1)[0], args.answers, args.stat_tokens)
        results["ablation"][name] = ablation(bench, name, induction, questions[:args.ablate_n],
                                            [float(g) for g in args.ablate_gammas.split(",")])
        results["markdown"] = markdown(results)
        save_results(results, out_path)
    results["acceptance"] = acceptance(results)
    results["generation_rows"] = bench.gen_rows
    results["generation_seconds"] = round(bench.gen_seconds, 1)
    results["wall_seconds"] = round(time.perf_counter() - start, 1)
    results["markdown"] = markdown(results)
    save_results(results, out_path)
    print(results["markdown"])
    print(json.dumps(results["acceptance"]))


if __name__ == "__main__":
    main()
