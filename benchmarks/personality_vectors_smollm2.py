"""Personality vectors (arXiv 2509.19727) measured on SmolLM2-135M-Instruct, all ten Big Five poles (issue 23).

Per pole, in trait order (high then low), results written after each pole so a partial run still counts:

1. **Data**: self-distilled from the pole-prompted model — the spec's training ``questions`` (none of them a
   held-out question) answered ``--n-per-question`` times at temperature 1 under the pole's short, explicit
   prompts (``short_instruction``, cycled), ``--data-tokens`` new tokens each; the judge keeps the ``--rows``
   answers it scores furthest toward the pole (score ≥ 50; ``personality_data.judge_filter``). Training rows
   carry no system prompt.
2. **Finetune**: LoRA (``--lora-r``, α = 2r, every linear module), ``--epochs``, ``--lr``, batch ``--batch-size``,
   rows cut to ``--max-length`` tokens; loss on the reply only. φ = θ_tuned − θ_base (only the LoRA-touched
   tensors; the rest is exactly zero).
3. **Evaluation**: θ_base + α·φ for α ∈ ``--alphas`` (0, 0.5, 1, 1.5, 2), no system prompt, greedy, 48 new
   tokens, on the 40 held-out questions (the union of the ten specs' ``eval_questions``, deduplicated, shuffled
   with seed 0: ``benchmarks.persona_vectors_smollm2.question_sets``). Trait judge: the offline embedding judge
   calibrated on SmolLM2's unsteered replies, oriented toward the pole; coherence: the Gemma-3-270m
   reference-LM judge on the first 16 held-out questions. Pearson r(α, mean judged score) over the α grid (and
   over every (α, answer) point), the paired t-test of α = 1 vs α = 0, and the pole's short prompt (its first
   paraphrase) on the same questions as the prompting reference.

Composition (stage ``compose``): the five high-pole vectors merged at a common α ∈ {0, 0.5, 1} by task arithmetic,
TIES (density 0.5, no divisor: TIES's default divisor Σ weight·mask cancels a weight every vector shares), and
DARE (``dare_linear``, density 0.5, rescaled 1/d); per trait r(α, that trait's judged score), their mean, and the
coherence per α.

Generations and coherence scores are cached in ``--work`` (default ``out/pv23``), data and vectors too, so a rerun
or a crash redoes nothing.

    OMP_NUM_THREADS=1 python -m benchmarks.personality_vectors_smollm2 [--stages poles,compose] [--poles ...]
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import json
import math
import os
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from benchmarks.common import save_results
from benchmarks.persona_vectors_smollm2 import POLES, TRAITS, Judges, question_sets

MAX_NEW_TOKENS = 48
N_COHERENCE = 16
COMPOSE_ALPHAS = (0.0, 0.5, 1.0)


class Context:
    """The model, judges, held-out questions and the generation cache."""

    def __init__(self, args: argparse.Namespace) -> None:
        from traitlab.model import load_model

        self.args = args
        self.work: Path = args.work
        self.work.mkdir(parents=True, exist_ok=True)
        self.lm = load_model(args.model, device="cpu", dtype=torch.float32)
        self.held_out: list[str] = question_sets()["held_out"]
        self.judges = Judges(self.lm, self.work, MAX_NEW_TOKENS)
        self.cache_path = self.work / f"generations_{MAX_NEW_TOKENS}.jsonl"
        self.cache: dict[str, str] = {}
        if self.cache_path.is_file():
            for line in self.cache_path.read_text().splitlines():
                with contextlib.suppress(json.JSONDecodeError):
                    entry = json.loads(line)
                    self.cache[entry["key"]] = entry["text"]
        self.results: dict[str, Any] = json.loads(args.out.read_text()) if args.out.is_file() else {}
        self.results.setdefault("poles", {})
        self.results["settings"] = {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()}
        self.results["settings"]["threads"] = torch.get_num_threads()

    def generate(self, tag: str, intervention: Any, systems: list[str | None] | None = None) -> list[str]:
        """Greedy replies to the held-out questions under ``intervention`` (weights, or None), cached by ``tag``."""
        systems = systems or [None] * len(self.held_out)
        keys = [hashlib.sha1(json.dumps([tag, q, s, MAX_NEW_TOKENS]).encode()).hexdigest()
                for q, s in zip(self.held_out, systems, strict=True)]
        todo = [i for i, k in enumerate(keys) if k not in self.cache]
        if todo:
            with intervention.applied(self.lm) if intervention is not None else contextlib.nullcontext():
                texts = self.lm.generate_chat([self.held_out[i] for i in todo], [systems[i] for i in todo],
                                              max_new_tokens=MAX_NEW_TOKENS, batch_size=40, progress=False).texts
            with self.cache_path.open("a") as handle:
                for i, text in zip(todo, texts, strict=True):
                    self.cache[keys[i]] = text
                    handle.write(json.dumps({"key": keys[i], "text": text}) + "\n")
        return [self.cache[k] for k in keys]

    def save(self) -> None:
        save_results(self.results, self.args.out)


def pearson(x: np.ndarray, y: np.ndarray) -> float:
    if np.std(x) == 0 or np.std(y) == 0:
        return float("nan")
    return float(np.corrcoef(x, y)[0, 1])


def paired_t(shift: np.ndarray) -> dict[str, float]:
    """Mean shift toward the pole and the one-sided paired t-test p (shift > 0)."""
    from scipy.stats import ttest_1samp

    p = float(ttest_1samp(shift, 0.0, alternative="greater").pvalue) if np.any(shift != 0) else 1.0
    return {"shift": round(float(shift.mean()), 2), "p": p, "n": len(shift)}


def vector_digest(path: Path) -> str:
    return hashlib.sha1(path.read_bytes()[:1_000_000] + str(path.stat().st_size).encode()).hexdigest()[:12]


def make_data(ctx: Context, pole: str) -> tuple[list, dict[str, Any]]:
    from traitlab.finetune import load_chat_jsonl
    from traitlab.finetune.personality_data import judge_filter, self_distill, write_chat_jsonl
    from traitlab.traits import load_trait

    path = ctx.work / f"data_{pole}.jsonl"
    info_path = ctx.work / f"data_{pole}.json"
    if path.is_file() and info_path.is_file():
        return load_chat_jsonl(path), json.loads(info_path.read_text())
    trait, side = pole.rsplit("_", 1)
    spec = load_trait(pole).with_short_instructions()
    questions = [q for q in spec.questions if q not in ctx.held_out]
    spec = spec.model_copy(update={"questions": questions})
    start, cpu = time.perf_counter(), time.process_time()
    rows = self_distill(ctx.lm, spec, n_per_question=ctx.args.n_per_question, temperature=1.0,
                        max_new_tokens=ctx.args.data_tokens, seed=0, batch_size=64)
    kept, scores = judge_filter(rows, ctx.judges.trait.for_trait(trait, side), threshold=50.0, keep=ctx.args.rows)
    info = {"questions": len(questions), "sampled": len(rows), "kept": len(kept),
            "kept_mean_score": round(float(np.mean(scores)), 1) if scores else None,
            "distill_s": round(time.perf_counter() - start, 1), "distill_cpu_s": round(time.process_time() - cpu, 1)}
    write_chat_jsonl(kept, path)
    info_path.write_text(json.dumps(info))
    return kept, info


def make_vector(ctx: Context, pole: str, rows: list) -> tuple[Path, dict[str, Any]]:
    from traitlab.finetune import FinetuneSettings, finetune
    from traitlab.methods.merging import vector_from_models

    path = ctx.work / f"phi_{pole}.safetensors"
    timing = ctx.work / f"phi_{pole}.json"
    if path.is_file():
        return path, json.loads(timing.read_text()) if timing.is_file() else {}
    a = ctx.args
    settings = FinetuneSettings(method="lora", epochs=a.epochs, learning_rate=a.lr, batch_size=a.batch_size,
                                max_length=a.max_length, lora_r=a.lora_r, lora_alpha=2 * a.lora_r, seed=0)
    start, cpu = time.perf_counter(), time.process_time()
    tuned = finetune(ctx.lm, rows, settings, progress=True)
    seconds, cpu = time.perf_counter() - start, time.process_time() - cpu
    trait, side = pole.rsplit("_", 1)
    vector = vector_from_models(ctx.lm, tuned, trait, side)
    vector.save(path)
    timing.write_text(json.dumps({"finetune_s": round(seconds, 1), "finetune_cpu_s": round(cpu, 1),
                                  "steps": math.ceil(len(rows) * a.epochs / a.batch_size),
                                  "tensors": len(vector.deltas),
                                  "bytes": path.stat().st_size}))
    return path, json.loads(timing.read_text())


def run_pole(ctx: Context, pole: str) -> dict[str, Any]:
    from traitlab.methods.merging import load_vector
    from traitlab.traits import load_trait

    trait, side = pole.rsplit("_", 1)
    t0 = time.perf_counter()
    rows, data_info = make_data(ctx, pole)
    print(f"{pole}: data {data_info}", flush=True)
    path, finetune = make_vector(ctx, pole, rows)
    vector = load_vector(path)
    digest = vector_digest(path)
    print(f"{pole}: vector {len(vector.deltas)} tensors, finetune {finetune}", flush=True)
    oriented = (lambda s: s) if side == "high" else (lambda s: 100.0 - s)
    q = ctx.held_out
    per_alpha, scores, coherence = {}, {}, {}
    for alpha in ctx.args.alphas:
        texts = ctx.generate("base" if alpha == 0 else f"{digest}:{alpha}", vector.scaled(alpha) if alpha else None)
        scores[alpha] = oriented(ctx.judges.scores(trait, q, texts))
        coherence[alpha] = ctx.judges.coherences(q[:N_COHERENCE], texts[:N_COHERENCE])
    base_c = float(coherence[0.0].mean())
    for alpha in ctx.args.alphas:
        per_alpha[str(alpha)] = {"score": round(float(scores[alpha].mean()), 2),
                                 "coherence": round(float(coherence[alpha].mean()), 1),
                                 "coherence_ratio": round(float(coherence[alpha].mean()) / base_c, 3)}
    alphas = np.array(ctx.args.alphas, dtype=float)
    means = np.array([scores[a].mean() for a in ctx.args.alphas])
    points_x = np.concatenate([[a] * len(q) for a in ctx.args.alphas])
    points_y = np.concatenate([scores[a] for a in ctx.args.alphas])
    prompt = load_trait(pole).short_instruction[0].pos
    prompted = oriented(ctx.judges.scores(trait, q, ctx.generate(f"prompt:{prompt}", None, [prompt] * len(q))))
    prompt_c = ctx.judges.coherences(q[:N_COHERENCE], ctx.generate(f"prompt:{prompt}", None,
                                                                 [prompt] * len(q))[:N_COHERENCE])
    guarded = [a for a in ctx.args.alphas if a > 0 and per_alpha[str(a)]["coherence_ratio"] >= 0.9]
    best = max(guarded, key=lambda a: scores[a].mean()) if guarded else None
    record = {
        "data": data_info, "finetune": finetune, "vector_tensors": len(vector.deltas),
        "vector_mb": round(path.stat().st_size / 2**20, 1), "alphas": per_alpha,
        "r_alpha_mean_score": round(pearson(alphas, means), 3),
        "r_alpha_points": round(pearson(points_x, points_y), 3),
        "alpha1_vs_0": paired_t(scores[1.0] - scores[0.0]) if 1.0 in scores else None,
        "best_guarded_alpha": best,
        "best_guarded_vs_0": paired_t(scores[best] - scores[0.0]) if best is not None else None,
        "prompt": {"text": prompt, "score": round(float(prompted.mean()), 2),
                   "coherence_ratio": round(float(prompt_c.mean()) / base_c, 3),
                   **paired_t(prompted - scores[0.0])},
        "pole_s": round(time.perf_counter() - t0, 1),
    }
    return record


def stage_poles(ctx: Context) -> None:
    for pole in ctx.args.poles:
        if pole in ctx.results["poles"] and not ctx.args.redo:
            print(f"{pole}: done before", flush=True)
            continue
        record = run_pole(ctx, pole)
        ctx.results["poles"][pole] = record
        ctx.save()
        print(f"{pole}: r={record['r_alpha_mean_score']} scores "
              f"{[v['score'] for v in record['alphas'].values()]} coherence "
              f"{[v['coherence_ratio'] for v in record['alphas'].values()]} ({record['pole_s']}s)", flush=True)
        highs_done = all(f"{t}_high" in ctx.results["poles"] for t in TRAITS)
        if ctx.args.compose_early and highs_done and "compose" not in ctx.results:
            stage_compose(ctx)  # as soon as the five high-pole vectors exist, before the remaining poles


def stage_vectors(ctx: Context) -> None:
    """Data and vector of each pole in ``--poles`` without evaluating it (so ``compose`` can run first)."""
    for pole in ctx.args.poles:
        rows, info = make_data(ctx, pole)
        _, finetune = make_vector(ctx, pole, rows)
        print(f"{pole}: data {info}, vector {finetune}", flush=True)


def stage_compose(ctx: Context) -> None:
    from traitlab.methods.merging import load_vector, merge_vectors

    vectors = [load_vector(ctx.work / f"phi_{t}_high.safetensors") for t in TRAITS]
    digest = "".join(vector_digest(ctx.work / f"phi_{t}_high.safetensors") for t in TRAITS)[:24]
    q = ctx.held_out
    methods = {"task_arithmetic": ("task_arithmetic", 1.0, None),
               "ties": ("ties", 0.5, False),
               "dare": ("dare_linear", 0.5, None)}
    out: dict[str, Any] = {}
    base = ctx.generate("base", None)
    base_scores = {t: ctx.judges.scores(t, q, base) for t in TRAITS}
    base_c = float(ctx.judges.coherences(q[:N_COHERENCE], base[:N_COHERENCE]).mean())
    for label, (method, density, normalize) in methods.items():
        means = {t: [float(base_scores[t].mean())] for t in TRAITS}
        ratios = [1.0]
        for alpha in COMPOSE_ALPHAS[1:]:
            merged = merge_vectors([(v, alpha, density) for v in vectors], method, seed=0,  # type: ignore[arg-type]
                                   normalize=normalize)
            texts = ctx.generate(f"compose:{digest}:{label}:{alpha}", merged)
            for t in TRAITS:
                means[t].append(float(ctx.judges.scores(t, q, texts).mean()))
            ratios.append(float(ctx.judges.coherences(q[:N_COHERENCE], texts[:N_COHERENCE]).mean()) / base_c)
        rs = {t: round(pearson(np.array(COMPOSE_ALPHAS), np.array(means[t])), 3) for t in TRAITS}
        out[label] = {"r": rs, "mean_r": round(float(np.nanmean(list(rs.values()))), 3),
                      "scores": {t: [round(m, 1) for m in means[t]] for t in TRAITS},
                      "coherence_ratio": [round(r, 3) for r in ratios], "density": density}
        print(label, out[label], flush=True)
        ctx.results["compose"] = out
        ctx.save()


SHORT = {"openness": "O", "conscientiousness": "C", "extraversion": "E", "agreeableness": "A", "neuroticism": "N"}


def markdown(results: dict[str, Any]) -> str:
    """The docs tables: per pole, then the composition."""
    poles = results.get("poles", {})
    lines = ["| pole | rows kept (mean judge) | finetune s (CPU s) | score at α = 0 / 0.5 / 1 / 1.5 / 2 | "
             "r(α, score) | coherence × at α = 0.5 / 1 / 1.5 / 2 | α=1 shift (p) | short prompt: shift (p), coh × |",
             "|---|---|---|---|---|---|---|---|"]
    for pole in POLES:
        if pole not in poles:
            continue
        r = poles[pole]
        trait, side = pole.rsplit("_", 1)
        alphas = r["alphas"]
        scores = " / ".join(f"{v['score']:.1f}" for v in alphas.values())
        coherence = " / ".join(f"{v['coherence_ratio']:.2f}" for k, v in alphas.items() if k != "0.0")
        data, tune, shift, prompt = r["data"], r["finetune"], r["alpha1_vs_0"], r["prompt"]
        name = SHORT[trait] + ("+" if side == "high" else "−")
        lines.append(f"| {name} | {data['kept']}/{data['sampled']} ({data['kept_mean_score']}) | "
                     f"{tune.get('finetune_s')} ({tune.get('finetune_cpu_s')}) | {scores} | "
                     f"**{r['r_alpha_mean_score']:.2f}** | {coherence} | {shift['shift']:+.1f} ({shift['p']:.0e}) | "
                     f"{prompt['shift']:+.1f} ({prompt['p']:.0e}), {prompt['coherence_ratio']:.2f} |")
    compose = results.get("compose")
    if compose:
        lines += ["", "| composition | r O / C / E / A / N | mean r | coherence × at α = 0.5 / 1 |",
                  "|---|---|---|---|"]
        for label, c in compose.items():
            rs = " / ".join(f"{c['r'][t]:.2f}" for t in TRAITS)
            ratios = " / ".join(f"{x:.2f}" for x in c["coherence_ratio"][1:])
            lines.append(f"| {label} | {rs} | **{c['mean_r']:.2f}** | {ratios} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="smollm2-135m-instruct")
    parser.add_argument("--stages", default="poles,compose")
    parser.add_argument("--poles", nargs="+", default=list(POLES), choices=POLES)
    parser.add_argument("--alphas", nargs="+", type=float, default=[0.0, 0.5, 1.0, 1.5, 2.0])
    parser.add_argument("--n-per-question", type=int, default=3)
    parser.add_argument("--data-tokens", type=int, default=48)
    parser.add_argument("--rows", type=int, default=40)
    parser.add_argument("--epochs", type=float, default=2.0)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--max-length", type=int, default=96)
    parser.add_argument("--lora-r", type=int, default=8)
    parser.add_argument("--redo", action="store_true", help="Evaluate poles already in the results again.")
    parser.add_argument("--compose-early", action="store_true",
                        help="Run the composition as soon as the five high poles are done (with --poles in any order).")
    parser.add_argument("--work", type=Path, default=Path("out/pv23"))
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/personality_vectors_smollm2.json"))
    args = parser.parse_args()
    if args.stages == "report":
        print(markdown(json.loads(args.out.read_text())))
        return
    if 0.0 not in args.alphas:
        parser.error("--alphas must include 0 (the base model)")
    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", torch.get_num_threads())))
    ctx = Context(args)
    for stage in args.stages.split(","):
        if stage == "compose" and "compose" in ctx.results and args.compose_early:
            continue
        {"poles": stage_poles, "vectors": stage_vectors, "compose": stage_compose}[stage](ctx)


if __name__ == "__main__":
    main()
