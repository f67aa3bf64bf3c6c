"""Persona subnetworks (Ye et al. 2026, arXiv 2602.07164) measured on SmolLM2-135M-Instruct, all ten Big Five
poles (issue 23). Every mask runs **without** a system prompt.

Stages (each needs the earlier ones' caches; ``--stages`` takes a comma-separated list):

- ``calibrate``: per pole, calibration answers from the pole's three short explicit prompts (the spec's
  ``short_instruction`` pairs, as ``traitlab vectors extract --short-prompts``) on the spec's extraction
  ``questions`` (never an evaluation question), sampled at temperature 1, 64 tokens, seed 0; the replies are the
  calibration texts (prompt context without the system prompt, the paper's and traitlab's default). Statistics
  from the first 8, 16 and 32 answers (nested, seeded order). Calibration-size study: Jaccard of the kept and of
  the removed weights of Wanda masks (sparsity 0.3 and 0.5, all modules) between 8 / 16 answers and 32, and
  between the two poles of a trait at 32 answers; plus each pole's mask vs a mask calibrated on the unprompted
  model's own answers (the persona-free reference).
- ``mechanics``: tied embeddings (``lm_head`` is ``embed_tokens``; masks cover the Linears inside the decoder
  blocks only, so the shared tensor is never touched: its bytes are hashed during and after the mask), bit-exact
  restore of every parameter after Wanda and contrastive masks, ``export_checkpoint`` → reload → greedy replies
  identical to the in-place masked model (8 questions × 48 tokens), mask swap in a ``SubnetworkSet`` vs reloading
  the exported checkpoint (median of 5 interleaved).
- ``screen``: per pole, Wanda masks at sparsity 0.1 (all modules) and {0.3, 0.5} × modules {all, mlp, attention}
  (0.1 on mlp or attention alone dropped to fit the CPU budget) and the contrastive mask (vs the opposite pole)
  at 0.3 (all modules), from 32 answers, on ``--screen-n`` screening
  questions (8; evaluation questions disjoint from the held-out 40), greedy, 48 tokens: judged trait score,
  neutral perplexity (24 held-out neutral replies of the organism corpus), and coherence (Gemma-3-270m reference
  judge), judged for the cells in decreasing order of their shift until one passes the guard (the choice is the
  same as judging every cell; the others show '–'). Chosen cell per pole: the largest judged shift toward the pole
  among cells with coherence ≥ 0.9 × unmasked (the mildest cell, Wanda 0.1 all, when none passes).
  Contrastive at 0.3 is also measured with the old tie-break (signed ``|W|·z``) for neutral perplexity only, to
  document the fix.
- ``heldout``: the chosen cell per pole on the 40 held-out questions (the union of the ten specs'
  ``eval_questions``, deduplicated, shuffled with seed 0) vs unmasked, the simple prompt and the P² portrait
  (``benchmarks.npti_smollm2``'s). Paired t-test over questions; coherence on the first 16 questions for the
  unmasked and masked replies (as ``benchmarks.persona_vectors_smollm2``), the first 8 for the two prompts
  (descriptive: the guard applies to the masks), each against the unmasked replies to the same questions;
  **moves** = shift > 0, p < 0.01, coherence ≥ 0.9× and,
  where the simple prompt's shift is significant, ≥ half of it.
- ``pairs``: per trait, contrastive masks (high vs low, the two directions from the same statistics) at 0.3 when
  both poles' 0.3 masks keep coherence ≥ 0.9× on the screening questions, else at 0.1,
  on the 40 held-out questions (coherence on the first 16 of them, as in ``heldout``): separation = judged score
  under the high mask − under the low mask (paired over questions); the unmasked model's separation is 0 by
  construction; the simple prompts' separation for comparison.

Every generation and judgement is cached in ``--work`` (JSON stores of ``benchmarks.npti_smollm2.Bench``),
statistics as ``.pt`` files, so a rerun redoes nothing. ``--markdown`` prints the docs' tables from ``--out``.

    OMP_NUM_THREADS=1 python -m benchmarks.subnet_smollm2 --stages calibrate,mechanics,screen,heldout,pairs

Writes ``benchmarks/results/subnet_smollm2.json``.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import random
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from benchmarks.common import interleaved, save_results
from benchmarks.npti_smollm2 import Bench, Store, heldout_questions, key, moves, simple_prompt

TRAITS = ("openness", "conscientiousness", "extraversion", "agreeableness", "neuroticism")
POLES = [f"{t}_{p}" for t in TRAITS for p in ("high", "low")]
SIZES = (8, 16, 32)
CAL_QUESTIONS = 11  # 3 short prompts × 11 extraction questions = 33 answers ≥ 32
SPARSITIES = (0.1, 0.3, 0.5)
MODULES = ("all", "mlp", "attention")
CONTRASTIVE = (0.1, 0.3)  # the pairs' sparsities; the screen has 0.3 (0.1 is generated only where 0.3 fails)
NEUTRAL_N = 24  # held-out neutral replies of the organism corpus for the neutral perplexity
MILDEST = "wanda:0.1:all"
N_COHERENCE = 16  # held-out questions per condition whose replies get the (costly) Gemma coherence
N_PROMPT_COHERENCE = 8  # ... for the two prompt conditions (descriptive only: the guard is on the masks)


# The screen: Wanda at 0.1 (all modules), 0.3 and 0.5 × {all, mlp, attention}, contrastive at 0.3 (all); Wanda
# 0.1 on mlp or attention alone was dropped to fit the CPU budget (0.1 on all modules barely moves). ``--cells``
# narrows it.
ALL_CELLS = (["wanda:0.1:all"] + [f"wanda:{s:g}:{m}" for s in SPARSITIES[1:] for m in MODULES]
             + ["contrastive:0.3:all"])


def reuse_caches(ctx: dict[str, Any], other: Path) -> int:
    """Seed this run's reply and coherence caches from another bench folder of the same model
    (``benchmarks.npti_smollm2``'s: the unsteered, simple-prompt and P² replies to the same held-out questions
    carry the same keys, model spec, token budget, condition and question); entries already here win."""
    added = 0
    replies = other / "replies.json"
    if replies.is_file():
        for k, v in json.loads(replies.read_text()).items():
            if k not in ctx["bench"].replies.data:
                ctx["bench"].replies.data[k] = v
                added += 1
        ctx["bench"].replies.save()
    judged_file = other / "judged.json"
    if judged_file.is_file():
        for k, v in json.loads(judged_file.read_text()).items():
            if k not in ctx["coherence"].data and isinstance(v, dict) and "coherence" in v:
                ctx["coherence"].data[k] = v["coherence"]
        ctx["coherence"].save()
    return added


def screening_questions(n: int) -> list[str]:
    """Evaluation questions after the held-out 40 in the same seeded order (disjoint from them)."""
    pool = heldout_questions(99)
    return pool[40:40 + n]


# ---------------------------------------------------------------------------------------------- statistics


def stats_path(work: Path, name: str, size: int) -> Path:
    return work / "stats" / f"{name}_{size}.pt"


def save_stats(stats: dict[str, Any], path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save({k: (v.sum, v.sum_sq, v.count) for k, v in stats.items()}, path)


def load_stats(path: Path) -> dict[str, Any]:
    from traitlab.model import LinearInputStats

    return {k: LinearInputStats(s, q, c) for k, (s, q, c) in torch.load(path).items()}


def calibration_set(lm: Any, name: str | None, seed: int = 0) -> Any:
    """32 answers: the pole's short prompts × the spec's first extraction questions (``name=None``: no system
    prompt, the unprompted model's answers to the same extraversion questions), in a seeded order."""
    from traitlab.methods.subnet_calibration import CalibrationSet, GenerationSettings, from_spec
    from traitlab.traits import load_trait

    settings = GenerationSettings(n_answers=1, temperature=1.0, max_new_tokens=64, seed=seed, batch_size=48)
    if name is None:
        spec = load_trait("extraversion_high")
        questions = (spec.questions * 2)[:max(SIZES)]
        gen = lm.generate_chat(questions, None, max_new_tokens=64, temperature=1.0, seed=seed, batch_size=48,
                               progress=False)
        from traitlab.methods.subnet_calibration import _render_prompts

        prompts = _render_prompts(lm, questions)
        full = CalibrationSet(prompts, gen.response_ids, lm.tokenizer.pad_token_id, {"kind": "unprompted"},
                              gen.texts)
    else:
        spec = load_trait(name).with_short_instructions()
        full = from_spec(lm, spec, None, False, settings, spec.questions[:CAL_QUESTIONS])
    order = list(range(len(full)))
    random.Random(seed).shuffle(order)
    order = order[:max(SIZES)]
    return CalibrationSet([full.prompts[i] for i in order], [full.responses[i] for i in order],
                          full.pad_token_id, full.source, [full.texts[i] for i in order])


def answer_rows(calibration: Any, lo: int, hi: int) -> Any:
    """Answers ``lo:hi`` of a calibration set."""
    from traitlab.methods.subnet_calibration import CalibrationSet

    return CalibrationSet(calibration.prompts[lo:hi], calibration.responses[lo:hi], calibration.pad_token_id,
                          {**calibration.source, "texts": hi - lo}, calibration.texts[lo:hi])


def mask_jaccard(a: Any, b: Any) -> dict[str, float]:
    from traitlab.methods.subnet_masks import jaccard, overlap_counts

    totals = {"kept_both": 0, "kept_either": 0, "removed_both": 0, "removed_either": 0}
    for name in a.shapes:
        counts = overlap_counts(a.packed[name], b.packed[name], torch.Size(a.shapes[name]).numel())
        for k in totals:
            totals[k] += counts[k]
    return {"kept": round(jaccard(totals["kept_both"], totals["kept_either"]), 4),
            "removed": round(jaccard(totals["removed_both"], totals["removed_either"]), 4)}


def stage_calibrate(ctx: dict[str, Any]) -> dict[str, Any]:
    from traitlab.methods.subnet_calibration import collect_stats
    from traitlab.methods.subnet_fit import wanda_masks
    from traitlab.methods.subnetworks import SubnetworkMask
    from traitlab.model import LinearInputStats

    lm, work = ctx["lm"], ctx["work"]
    out: dict[str, Any] = {"sizes": list(SIZES), "poles": {}}
    traits = [t for t in TRAITS if any(p.startswith(f"{t}_") for p in ctx["poles"])]
    poles = [f"{t}_{side}" for t in traits for side in ("high", "low")]  # --poles and their opposites
    for name in [*poles, None]:
        label = name or "unprompted"
        if all(stats_path(work, label, n).exists() for n in SIZES):
            continue
        t0 = time.perf_counter()
        cache = work / "calibration" / f"{label}.json"
        if cache.is_file():
            from traitlab.methods.subnet_calibration import CalibrationSet

            saved = json.loads(cache.read_text())
            calibration = CalibrationSet(saved["prompts"], saved["responses"], lm.tokenizer.pad_token_id,
                                         saved["source"], saved["texts"])
        else:
            calibration = calibration_set(lm, name)
            cache.parent.mkdir(parents=True, exist_ok=True)
            cache.write_text(json.dumps({"texts": calibration.texts, "prompts": calibration.prompts,
                                         "responses": [list(map(int, r)) for r in calibration.responses],
                                         "source": calibration.source}))
        total: dict[str, Any] = {}
        for lo, hi in zip((0, *SIZES[:-1]), SIZES, strict=True):  # Σx, Σx² add up: 8, then +8, then +16
            part = answer_rows(calibration, lo, hi)
            t1 = time.perf_counter()
            for name_, entry in collect_stats(lm, part, "response", "all", None, 16).items():
                if name_ in total:
                    entry = LinearInputStats(total[name_].sum + entry.sum, total[name_].sum_sq + entry.sum_sq,
                                             total[name_].count + entry.count)
                total[name_] = entry
            save_stats(total, stats_path(work, label, hi))
            ctx["timing"][f"stats_{label}_{lo}_{hi}"] = round(time.perf_counter() - t1, 2)
        print(f"calibrated {label}: {len(calibration)} answers, {calibration.tokens()} tokens "
              f"({time.perf_counter() - t0:.0f}s)", flush=True)
    for label in [*poles, "unprompted"]:
        tokens = {n: max(v.count for v in load_stats(stats_path(work, label, n)).values()) for n in SIZES}
        out["poles"][label] = {"response_tokens": tokens}
    masks: dict[tuple[str, int, float], Any] = {}

    def mask(label: str, n: int, sparsity: float) -> Any:
        if (label, n, sparsity) not in masks:
            masks[(label, n, sparsity)] = SubnetworkMask.from_masks(
                wanda_masks(lm, load_stats(stats_path(work, label, n)), sparsity, "all"))
        return masks[(label, n, sparsity)]

    study: dict[str, Any] = {}
    for sparsity in (0.3, 0.5):
        rows: dict[str, Any] = {}
        for name in poles:
            rows[name] = {f"{n}_vs_32": mask_jaccard(mask(name, n, sparsity), mask(name, 32, sparsity))
                          for n in SIZES[:-1]}
            rows[name]["vs_unprompted"] = mask_jaccard(mask(name, 32, sparsity), mask("unprompted", 32, sparsity))
        for trait in traits:
            rows[f"{trait}_high"]["vs_opposite"] = rows[f"{trait}_low"]["vs_opposite"] = mask_jaccard(
                mask(f"{trait}_high", 32, sparsity), mask(f"{trait}_low", 32, sparsity))
        study[f"{sparsity:g}"] = rows
        masks.clear()
        for name in poles:
            r = rows[name]
            print(f"s={sparsity:g} {name:26s} removed-J 8v32 {r['8_vs_32']['removed']:.3f} 16v32 "
                  f"{r['16_vs_32']['removed']:.3f} vs opposite {r['vs_opposite']['removed']:.3f} vs unprompted "
                  f"{r['vs_unprompted']['removed']:.3f}", flush=True)
    out["jaccard"] = study
    return out


# ---------------------------------------------------------------------------------------------- masks


def legacy_contrastive_scores(weight_rows: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
    """The previous tie-break: rank by the signed ``|W|·z`` (removes the largest weights among zero scores)."""
    return weight_rows.detach().abs().float() * z.to(weight_rows.device, torch.float32).unsqueeze(0)


def build_mask(ctx: dict[str, Any], name: str, cell: str, legacy: bool = False) -> Any:
    """A cell's mask for pole ``name`` (from 32 answers)."""
    from traitlab.methods import subnet_fit
    from traitlab.methods.subnetworks import SubnetworkMask

    lm, work = ctx["lm"], ctx["work"]
    method, sparsity, modules = cell.split(":")
    seek = load_stats(stats_path(work, name, 32))
    if method == "wanda":
        masks = subnet_fit.wanda_masks(lm, seek, float(sparsity), modules)
    else:
        trait, pole = name.rsplit("_", 1)
        reject = load_stats(stats_path(work, f"{trait}_{'low' if pole == 'high' else 'high'}", 32))
        original = subnet_fit.contrastive_scores
        try:
            if legacy:
                subnet_fit.contrastive_scores = legacy_contrastive_scores  # type: ignore[assignment]
            masks, _ = subnet_fit.contrastive_masks(lm, seek, reject, float(sparsity), modules)
        finally:
            subnet_fit.contrastive_scores = original  # type: ignore[assignment]
    return SubnetworkMask.from_masks(masks, {"cell": cell, "legacy": legacy}, pole=name.rsplit("_", 1)[1])


def masked_ppl(ctx: dict[str, Any], name: str, cell: str, mask: Any, legacy: bool = False) -> float:
    from traitlab.evaluation.capability import neutral_perplexity

    store = ctx["ppl"]
    k = f"{name}|{cell}|{'legacy' if legacy else 'new'}"
    if k not in store.data:
        store.data[k] = neutral_perplexity(ctx["lm"], n=NEUTRAL_N, intervention=mask)
        store.save()
    return float(store.data[k])


def masked_replies(ctx: dict[str, Any], name: str, cell: str, questions: list[str], mask: Any | None) -> list[str]:
    """Greedy replies with the mask applied (cached by pole and cell); ``mask=None`` builds it only if needed."""
    bench: Bench = ctx["bench"]
    tag = f"subnet:{name}:{cell}"
    from benchmarks.npti_smollm2 import key

    if any(key(bench.lm.spec, bench.max_new_tokens, tag, 0.0, q) not in bench.replies.data for q in questions):
        mask = mask if mask is not None else build_mask(ctx, name, cell)
        with mask.applied(ctx["lm"]):
            return bench.generate(tag, questions)[0.0]
    return bench.generate(tag, questions)[0.0]


# ---------------------------------------------------------------------------------------------- mechanics


def param_hashes(lm: Any) -> dict[str, str]:
    return {n: hashlib.sha1(p.detach().cpu().numpy().tobytes()).hexdigest() for n, p in lm.model.named_parameters()}


def stage_mechanics(ctx: dict[str, Any]) -> dict[str, Any]:
    from traitlab import load_model
    from traitlab.methods.subnetworks import export_checkpoint

    lm = ctx["lm"]
    model = lm.model
    embed = model.model.embed_tokens.weight
    before = param_hashes(lm)
    embed_hash = hashlib.sha1(embed.detach().numpy().tobytes()).hexdigest()
    masks = {"wanda 0.5 all": build_mask(ctx, "extraversion_high", "wanda:0.5:all"),
             "contrastive 0.3 all": build_mask(ctx, "extraversion_low", "contrastive:0.3:all")}
    out: dict[str, Any] = {"tied": bool(model.lm_head.weight is embed),
                           "mask_parameters": len(masks["wanda 0.5 all"].shapes),
                           "masks_touch_embedding": any("embed" in n or "lm_head" in n
                                                        for m in masks.values() for n in m.shapes)}
    questions = heldout_questions(8)
    results: dict[str, Any] = {}
    work = Path(tempfile.mkdtemp(prefix="subnet_export_"))
    for label, mask in masks.items():
        with mask.applied(lm):
            during = hashlib.sha1(embed.detach().numpy().tobytes()).hexdigest()
            still_tied = model.lm_head.weight is model.model.embed_tokens.weight
            masked_weights = {n: model.get_parameter(n).detach().clone() for n in mask.shapes}
            masked = lm.generate_chat(questions, max_new_tokens=48, batch_size=8, progress=False).texts
        after = param_hashes(lm)
        folder = work / label.replace(" ", "_")
        t0 = time.perf_counter()
        export_checkpoint(lm, mask, folder)
        export_s = time.perf_counter() - t0
        reloaded = load_model(str(folder), device="cpu")
        again = reloaded.generate_chat(questions, max_new_tokens=48, batch_size=8, progress=False).texts
        results[label] = {
            "embedding_unchanged_during": during == embed_hash, "tied_during": bool(still_tied),
            "bit_exact_restore": after == before, "sparsity": round(mask.sparsity, 4),
            "export_s": round(export_s, 2),
            "reload_tied": bool(reloaded.model.lm_head.weight is reloaded.model.model.embed_tokens.weight),
            "export_weights_equal_masked": all(torch.equal(w, reloaded.model.get_parameter(n))
                                               for n, w in masked_weights.items()),
            "greedy_identical": again == masked, "greedy_rows": len(questions)}
        print(f"{label}: {results[label]}", flush=True)
    from traitlab.methods.subnetworks import SubnetworkSet

    folder = work / "wanda_0.5_all"
    with SubnetworkSet(lm, {"a": masks["wanda 0.5 all"], "b": masks["contrastive 0.3 all"]}) as personas:
        state = {"i": 0}

        def swap() -> None:
            state["i"] += 1
            personas.use("a" if state["i"] % 2 else "b")

        timing = interleaved({"swap": swap, "reload": lambda: load_model(str(folder), device="cpu")},
                             repeats=5, warmup=1)
    out["restored_after_set"] = param_hashes(lm) == before
    out["swap_s"], out["reload_s"] = round(timing["swap"], 4), round(timing["reload"], 3)
    out["reload_over_swap"] = round(timing["reload"] / timing["swap"], 1)
    out["masks"] = results
    print(f"swap {out['swap_s']} s vs reload {out['reload_s']} s; restored after the set: "
          f"{out['restored_after_set']}", flush=True)
    import shutil

    shutil.rmtree(work, ignore_errors=True)
    return out


# ---------------------------------------------------------------------------------------------- screen


def judged(ctx: dict[str, Any], name: str, questions: list[str], replies: list[str]) -> np.ndarray:
    """The pole's trait score (0-100, high pole) of each reply, from the offline embedding judge."""
    trait_judge, _ = ctx["bench"].judges
    matrix = trait_judge.score_matrix(list(questions), list(replies))
    return matrix[:, trait_judge.index(name.rsplit("_", 1)[0])]


def coherences(ctx: dict[str, Any], questions: list[str], replies: list[str]) -> np.ndarray:
    """Gemma-3-270m reference-LM coherence (0-100) per reply, cached by (question, reply)."""
    store: Store = ctx["coherence"]
    keys = [key(q, r) for q, r in zip(questions, replies, strict=True)]
    todo = [i for i, k in enumerate(keys) if k not in store.data]
    if todo:
        _, judge = ctx["bench"].judges
        values = judge.score_many([(questions[i], replies[i], "") for i in todo])
        for i, v in zip(todo, values, strict=True):
            store.data[keys[i]] = None if v is None else float(v)
        store.save()
    return np.array([np.nan if store.data[k] is None else store.data[k] for k in keys])


def shift_stats(scores: np.ndarray, base: np.ndarray, sign: float) -> dict[str, Any]:
    """Judged score mean, the shift toward the pole (paired over questions) ± 95% CI and its paired t-test p."""
    from scipy import stats as sstats

    diffs = sign * (scores - base)
    n = len(diffs)
    half = float(sstats.t.ppf(0.975, n - 1) * diffs.std(ddof=1) / np.sqrt(n))
    p = 1.0 if np.allclose(diffs, 0) else float(sstats.ttest_rel(sign * scores, sign * base).pvalue)
    return {"mean": round(float(scores.mean()), 2), "sd": round(float(scores.std(ddof=1)), 2),
            "shift": round(float(diffs.mean()), 2), "ci95": round(half, 2), "p": p,
            "on_side": round(float((diffs > 0).mean()), 2), "n": n}


def cached(ctx: dict[str, Any], name: str, cell: str, questions: list[str]) -> bool:
    bench: Bench = ctx["bench"]
    tag = f"subnet:{name}:{cell}"
    return all(key(bench.lm.spec, bench.max_new_tokens, tag, 0.0, q) in bench.replies.data for q in questions)


def stage_screen(ctx: dict[str, Any]) -> dict[str, Any]:
    """Every cell's replies, judged score and neutral perplexity; coherence is judged for the cells in order of
    their shift toward the pole until one passes the guard (the same choice as judging every cell)."""
    from traitlab.evaluation.capability import neutral_perplexity

    bench: Bench = ctx["bench"]
    questions = screening_questions(ctx["screen_n"])
    base_replies = bench.generate("none", questions)[0.0]
    base_coh = coherences(ctx, questions, base_replies)
    if "base" not in ctx["ppl"].data:
        ctx["ppl"].data["base"] = neutral_perplexity(ctx["lm"], n=NEUTRAL_N)
        ctx["ppl"].save()
    out: dict[str, Any] = {"questions": len(questions), "base_ppl": round(ctx["ppl"].data["base"], 3),
                           "base_coherence": round(float(np.nanmean(base_coh)), 2), "poles": {}}
    for name in ctx["poles"]:
        sign = 1.0 if name.endswith("high") else -1.0
        base = judged(ctx, name, questions, base_replies)
        table, replies_of = [], {}
        for cell in ctx["cells"]:
            t0 = time.perf_counter()
            if f"{name}|{cell}|new" not in ctx["ppl"].data or not cached(ctx, name, cell, questions):
                with build_mask(ctx, name, cell).applied(ctx["lm"]):  # one application for both measurements
                    ctx["ppl"].data[f"{name}|{cell}|new"] = neutral_perplexity(ctx["lm"], n=NEUTRAL_N)
                    bench.generate(f"subnet:{name}:{cell}", questions)
                ctx["ppl"].save()
            ppl = masked_ppl(ctx, name, cell, None)
            replies_of[cell] = masked_replies(ctx, name, cell, questions, None)
            row = {"cell": cell, **shift_stats(judged(ctx, name, questions, replies_of[cell]), base, sign),
                   "coherence_ratio": None, "ppl": round(ppl, 2)}
            if cell == "contrastive:0.3:all":
                legacy = build_mask(ctx, name, cell, legacy=True) if f"{name}|{cell}|legacy" not in ctx["ppl"].data \
                    else None
                row["ppl_old_tiebreak"] = round(masked_ppl(ctx, name, cell, legacy, legacy=True), 1)
            table.append(row)
            print(f"{name:26s} {cell:22s} shift {row['shift']:+6.1f} (p={row['p']:.2g}) ppl {ppl:9.2f}"
                  + (f" (old tie-break {row['ppl_old_tiebreak']})" if "ppl_old_tiebreak" in row else "")
                  + f"  {time.perf_counter() - t0:.0f}s", flush=True)
        chosen = None
        for row in sorted(table, key=lambda r: -r["shift"]):
            c = coherences(ctx, questions, replies_of[row["cell"]])
            row["coherence_ratio"] = round(float(np.nanmean(c) / np.nanmean(base_coh)), 3)
            if row["coherence_ratio"] >= 0.9:
                chosen = row["cell"]
                break
        out["poles"][name] = {"base_mean": round(float(base.mean()), 2), "table": table,
                              "chosen": chosen or MILDEST, "guard_met": chosen is not None}
        print(f"{name}: chosen {chosen or MILDEST} (guard met: {chosen is not None}); coherence judged for "
              f"{sum(r['coherence_ratio'] is not None for r in table)} cells", flush=True)
    return out


# ---------------------------------------------------------------------------------------------- held-out


def prompt_conditions(trait: str, pole: str) -> dict[str, str]:
    from traitlab.evaluation.recipes.prompts import p2_portrait
    from traitlab.traits import load_trait

    return {"simple prompt": simple_prompt(trait, pole), "P2 prompt": p2_portrait(load_trait(f"{trait}_{pole}"))}


def stage_heldout(ctx: dict[str, Any]) -> dict[str, Any]:
    bench: Bench = ctx["bench"]
    questions = heldout_questions(40)
    cq = questions[:N_COHERENCE]
    screen = ctx["results"]["screen"]["poles"]
    base_replies = bench.generate("none", questions)[0.0]
    base_coh = coherences(ctx, cq, base_replies[:N_COHERENCE])
    out: dict[str, Any] = {"questions": len(questions), "coherence_questions": len(cq),
                           "base_coherence": round(float(np.nanmean(base_coh)), 2), "poles": {}}
    for name in ctx["poles"]:
        trait, pole = name.rsplit("_", 1)
        sign = 1.0 if pole == "high" else -1.0
        base = judged(ctx, name, questions, base_replies)
        cell = screen[name]["chosen"]
        conditions = {"unmasked": base_replies}
        for label, system in prompt_conditions(trait, pole).items():
            conditions[label] = bench.generate(f"system:{system}", questions, system=system)[0.0]
        conditions["subnetwork"] = masked_replies(ctx, name, cell, questions, None)
        row: dict[str, Any] = {"cell": cell, "guard_met_in_screen": screen[name]["guard_met"]}
        for label, replies in conditions.items():
            n_coh = N_PROMPT_COHERENCE if label.endswith("prompt") else N_COHERENCE
            c = coherences(ctx, cq[:n_coh], replies[:n_coh])
            row[label] = {**shift_stats(judged(ctx, name, questions, replies), base, sign),
                          "coherence_ratio": round(float(np.nanmean(c) / np.nanmean(base_coh[:n_coh])), 3),
                          "coherence_n": n_coh}
        prompt_shift = row["simple prompt"]["shift"]
        row["subnetwork"]["fraction_of_prompt_shift"] = round(row["subnetwork"]["shift"] / prompt_shift, 2) \
            if prompt_shift else None
        row["prompt_significant"] = bool(prompt_shift > 0 and row["simple prompt"]["p"] < 0.01)
        row["moves"] = moves(row["subnetwork"], row["simple prompt"])
        row["example"] = {"question": questions[0], **{k: v[0] for k, v in conditions.items()}}
        out["poles"][name] = row
        sub = row["subnetwork"]
        print(f"{name:26s} {cell:22s} subnet {sub['shift']:+6.1f} (p={sub['p']:.2g}) coh×{sub['coherence_ratio']:.2f}"
              f" | simple {prompt_shift:+6.1f} (p={row['simple prompt']['p']:.2g})"
              f" | P² {row['P2 prompt']['shift']:+6.1f} | moves {row['moves']}", flush=True)
        ctx["save"]("heldout", out)  # pole by pole: a run stopped part-way keeps the poles done
    out["moves"] = sum(r["moves"] for r in out["poles"].values())
    return out


# ---------------------------------------------------------------------------------------------- pairs


def pair_sparsity(ctx: dict[str, Any], trait: str) -> float:
    """0.3 when both poles' contrastive 0.3 masks keep coherence ≥ 0.9× on the screening questions, else 0.1
    (not screened itself: its coherence is measured on the held-out questions like every other condition)."""
    questions = screening_questions(ctx["screen_n"])
    base_coh = coherences(ctx, questions, ctx["bench"].generate("none", questions)[0.0])
    cell = "contrastive:0.3:all"
    ratios = [float(np.nanmean(coherences(ctx, questions, masked_replies(ctx, f"{trait}_{p}", cell, questions, None)))
                    / np.nanmean(base_coh)) for p in ("high", "low")]
    return 0.3 if min(ratios) >= 0.9 else 0.1


def stage_pairs(ctx: dict[str, Any]) -> dict[str, Any]:
    from scipy import stats as sstats

    bench: Bench = ctx["bench"]
    questions = heldout_questions(40)
    cq = questions[:N_COHERENCE]
    base_replies = bench.generate("none", questions)[0.0]
    base_coh = coherences(ctx, cq, base_replies[:N_COHERENCE])
    out: dict[str, Any] = {"questions": len(questions), "coherence_questions": len(cq), "traits": {}}
    for trait in sorted({p.rsplit("_", 1)[0] for p in ctx["poles"]}, key=TRAITS.index):
        sparsity = pair_sparsity(ctx, trait)
        cell = f"contrastive:{sparsity:g}:all"
        base = judged(ctx, f"{trait}_high", questions, base_replies)
        scores, ratio, prompt_scores = {}, {}, {}
        for pole in ("high", "low"):
            replies = masked_replies(ctx, f"{trait}_{pole}", cell, questions, None)
            scores[pole] = judged(ctx, f"{trait}_high", questions, replies)
            ratio[pole] = round(float(np.nanmean(coherences(ctx, cq, replies[:N_COHERENCE])) / np.nanmean(base_coh)), 3)
            system = prompt_conditions(trait, pole)["simple prompt"]
            prompt_scores[pole] = judged(ctx, f"{trait}_high", questions,
                                         bench.generate(f"system:{system}", questions, system=system)[0.0])

        def separation(high: np.ndarray, low: np.ndarray) -> dict[str, float]:
            diff = high - low
            p = 1.0 if np.allclose(diff, 0) else float(sstats.ttest_rel(high, low).pvalue)
            half = float(sstats.t.ppf(0.975, len(diff) - 1) * diff.std(ddof=1) / np.sqrt(len(diff)))
            return {"separation": round(float(diff.mean()), 2), "ci95": round(half, 2), "p": p}

        masked = separation(scores["high"], scores["low"])
        prompted = separation(prompt_scores["high"], prompt_scores["low"])
        record = {"cell": cell, "mask": masked, "prompt": prompted, "coherence_ratio": ratio,
                  "high_mean": round(float(scores["high"].mean()), 2),
                  "low_mean": round(float(scores["low"].mean()), 2),
                  "base_mean": round(float(base.mean()), 2),
                  "separates": bool(masked["separation"] > 0 and masked["p"] < 0.01 and min(ratio.values()) >= 0.9),
                  "prompt_separates": bool(prompted["separation"] > 0 and prompted["p"] < 0.01)}
        out["traits"][trait] = record
        ctx["save"]("pairs", out)
        print(f"{trait:18s} {cell}: mask separation {masked['separation']:+.1f} (p={masked['p']:.2g}) coh× "
              f"{ratio['high']:.2f}/{ratio['low']:.2f} | prompts {prompted['separation']:+.1f} (p={prompted['p']:.2g})",
              flush=True)
    out["separating"] = sum(r["separates"] for r in out["traits"].values())
    out["prompt_separating"] = sum(r["prompt_separates"] for r in out["traits"].values())
    return out


# ---------------------------------------------------------------------------------------------- report


def markdown(results: dict[str, Any]) -> str:
    lines: list[str] = []
    cal = results.get("calibrate")
    if cal:
        for sparsity, rows in cal["jaccard"].items():
            lines += [f"Wanda masks at sparsity {sparsity}, all modules: Jaccard of the removed weights "
                      "(kept weights in brackets)", "",
                      "| pole | 8 vs 32 answers | 16 vs 32 | high vs low pole (32) | pole vs unprompted (32) |",
                      "|---|---|---|---|---|"]
            for name, r in rows.items():
                lines.append(f"| {name} | " + " | ".join(
                    f"{r[k]['removed']:.3f} ({r[k]['kept']:.3f})"
                    for k in ("8_vs_32", "16_vs_32", "vs_opposite", "vs_unprompted")) + " |")
            lines.append("")
    mech = results.get("mechanics")
    if mech:
        lines += ["| mask | sparsity | embedding bytes unchanged / still tied | bit-exact restore | export → reload "
                  "greedy identical (8 × 48 tok) | reloaded weights = masked | reload tied |",
                  "|---|---|---|---|---|---|---|"]
        for label, r in mech["masks"].items():
            lines.append(f"| {label} | {r['sparsity']} | {r['embedding_unchanged_during']} / {r['tied_during']} | "
                         f"{r['bit_exact_restore']} | {r['greedy_identical']} | {r['export_weights_equal_masked']} | "
                         f"{r['reload_tied']} |")
        lines += ["", f"Mask swap in a SubnetworkSet {mech['swap_s']} s vs reloading the exported checkpoint "
                  f"{mech['reload_s']} s (×{mech['reload_over_swap']}); restored bit-exactly after the set: "
                  f"{mech['restored_after_set']}", ""]
    screen = results.get("screen")
    if screen:
        shown = [c for c in ALL_CELLS if any(r["cell"] == c for rec in screen["poles"].values() for r in rec["table"])]
        lines += [f"Screen ({screen['questions']} questions; unmasked neutral perplexity {screen['base_ppl']}): "
                  "shift toward the pole (p) / coherence × / neutral perplexity", "",
                  "| pole | " + " | ".join(shown) + " | chosen |", "|---" * (len(shown) + 2) + "|"]
        for name, rec in screen["poles"].items():
            by = {r["cell"]: r for r in rec["table"]}
            lines.append(f"| {name} | " + " | ".join(
                f"{by[c]['shift']:+.1f} ({by[c]['p']:.2g}) / {_ratio(by[c])} / {by[c]['ppl']:.3g}"
                for c in shown) + f" | {rec['chosen']}{'' if rec['guard_met'] else ' (no cell passes)'} |")
        old = {n: next(r for r in rec["table"] if r["cell"] == "contrastive:0.3:all")
               for n, rec in screen["poles"].items()}
        lines += ["", "| pole | contrastive 0.3: neutral ppl, old tie-break (signed abs(W)·z) | new tie-break (abs(W) "
                  "among zero scores) |", "|---|---|---|"]
        lines += [f"| {n} | {r.get('ppl_old_tiebreak', float('nan')):.4g} | {r['ppl']:.4g} |" for n, r in old.items()]
        lines += ["", "Pairs on the screening questions, contrastive 0.3 (high mask − low mask = the high pole's "
                  "shift + the low pole's shift, both toward their own pole; coherence × where judged)", "",
                  "| trait | high-mask shift | low-mask shift | separation | coherence × high / low |",
                  "|---|---|---|---|---|"]
        for trait in TRAITS:
            if f"{trait}_high" in old and f"{trait}_low" in old:
                h, lo = old[f"{trait}_high"], old[f"{trait}_low"]
                lines.append(f"| {trait} | {h['shift']:+.1f} | {lo['shift']:+.1f} | {h['shift'] + lo['shift']:+.1f} | "
                             f"{_ratio(h)} / {_ratio(lo)} |")
        lines.append("")
    held = results.get("heldout")
    if held:
        lines += ["| pole | cell | unmasked score | simple prompt: shift (p) coh× | P²: shift (p) coh× | "
                  "subnetwork: shift ± CI (p) | coh× | subnet / prompt | moves |",
                  "|---|---|---|---|---|---|---|---|---|"]
        for name, r in held["poles"].items():
            u, s, p2, n = r["unmasked"], r["simple prompt"], r["P2 prompt"], r["subnetwork"]
            lines.append(f"| {name} | {r['cell']} | {u['mean']} (SD {u['sd']}) | {s['shift']:+} ({s['p']:.2g}) "
                         f"×{s['coherence_ratio']} | {p2['shift']:+} ({p2['p']:.2g}) ×{p2['coherence_ratio']} | "
                         f"{n['shift']:+} ± {n['ci95']} ({n['p']:.2g}) | {n['coherence_ratio']} | "
                         f"{n['fraction_of_prompt_shift']} | {'yes' if r['moves'] else 'no'} |")
        lines += ["", f"Poles moved: {sum(r['moves'] for r in held['poles'].values())} of {len(held['poles'])}", ""]
    pairs = results.get("pairs")
    if pairs:
        lines += ["| trait | cell | high-mask − low-mask separation ± CI (p) | coh× high / low | simple prompts' "
                  "separation (p) | separates at coh ≥ 0.9× |", "|---|---|---|---|---|---|"]
        for trait, r in pairs["traits"].items():
            m, p = r["mask"], r["prompt"]
            lines.append(f"| {trait} | {r['cell']} | {m['separation']:+} ± {m['ci95']} ({m['p']:.2g}) | "
                         f"{r['coherence_ratio']['high']} / {r['coherence_ratio']['low']} | {p['separation']:+} "
                         f"({p['p']:.2g}) | {'yes' if r['separates'] else 'no'} |")
        lines += ["", f"Pairs separated by the masks: {sum(r['separates'] for r in pairs['traits'].values())} of "
                  f"{len(pairs['traits'])} (prompts: {sum(r['prompt_separates'] for r in pairs['traits'].values())})"]
    return "\n".join(lines)


def _ratio(row: dict[str, Any]) -> str:
    """Coherence ratio of a screen cell, '–' where it was not judged (a cell with a larger shift passed)."""
    return "–" if row["coherence_ratio"] is None else f"{row['coherence_ratio']:.2f}"


STAGES = {"calibrate": stage_calibrate, "mechanics": stage_mechanics, "screen": stage_screen,
          "heldout": stage_heldout, "pairs": stage_pairs}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="smollm2-135m-instruct")
    parser.add_argument("--stages", default="calibrate,mechanics,screen,heldout,pairs")
    parser.add_argument("--poles", default=",".join(POLES))
    parser.add_argument("--screen-n", type=int, default=8)
    parser.add_argument("--max-new-tokens", type=int, default=48)
    parser.add_argument("--batch-size", type=int, default=48)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--work", type=Path, default=Path("out/subnet_smollm2"))
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/subnet_smollm2.json"))
    parser.add_argument("--markdown", action="store_true", help="print the docs' tables from --out and exit")
    parser.add_argument("--cells", default=",".join(ALL_CELLS), help="the screen's cells (comma-separated)")
    parser.add_argument("--reuse", type=Path, default=None,
                        help="seed the reply/coherence caches from this npti_smollm2 work folder (same model)")
    args = parser.parse_args()
    if args.markdown:
        print(markdown(json.loads(args.out.read_text())))
        return
    stages = [s.strip() for s in args.stages.split(",") if s.strip()]
    unknown = [s for s in stages if s not in STAGES]
    if unknown:
        raise SystemExit(f"error: unknown stage {unknown[0]}; have {', '.join(STAGES)}")
    screen_cells = [c.strip() for c in args.cells.split(",") if c.strip()]
    if not screen_cells or any(c not in ALL_CELLS for c in screen_cells):
        raise SystemExit(f"error: --cells takes some of {', '.join(ALL_CELLS)}")
    poles = [p.strip() for p in args.poles.split(",") if p.strip()]
    if not poles or any(p not in POLES for p in poles):
        raise SystemExit(f"error: --poles takes some of {', '.join(POLES)}")
    torch.set_num_threads(args.threads)
    from traitlab import load_model

    start = time.perf_counter()
    lm = load_model(args.model, device="cpu")
    args.work.mkdir(parents=True, exist_ok=True)
    results = json.loads(args.out.read_text()) if args.out.exists() else {}
    ctx: dict[str, Any] = {"lm": lm, "work": args.work, "results": results, "poles": poles,
                           "screen_n": args.screen_n, "cells": screen_cells, "timing": {},
                           "bench": Bench(lm, args.work, args.max_new_tokens, args.batch_size),
                           "ppl": Store(args.work / "ppl.json"), "coherence": Store(args.work / "coherence.json")}
    results.update(model=lm.spec, max_new_tokens=args.max_new_tokens)

    def save_partial(stage: str, part: dict[str, Any]) -> None:
        previous = dict(results.get(stage, {}))
        for key_ in ("poles", "traits"):
            if key_ in part:
                part = {**part, key_: {**previous.get(key_, {}), **part[key_]}}
        save_results({**results, stage: {**previous, **part}}, args.out)

    ctx["save"] = save_partial
    if args.reuse is not None:
        print(f"reused {reuse_caches(ctx, args.reuse)} replies from {args.reuse}", flush=True)
    for stage in stages:
        t0 = time.perf_counter()
        print(f"== {stage}", flush=True)
        part = STAGES[stage](ctx)
        if stage in ("screen", "heldout", "pairs") and stage in results:  # per-pole merge across partial runs
            merged = results[stage]
            for key_ in ("poles", "traits"):
                if key_ in part:
                    merged.setdefault(key_, {}).update(part[key_])
                    part = {**part, key_: merged[key_]}
            if stage == "heldout":
                part["moves"] = sum(r["moves"] for r in part["poles"].values())
            if stage == "pairs":
                part["separating"] = sum(r["separates"] for r in part["traits"].values())
                part["prompt_separating"] = sum(r["prompt_separates"] for r in part["traits"].values())
        results[stage] = part
        results.setdefault("seconds", {})[stage] = round(time.perf_counter() - t0, 1)
        results.setdefault("timing", {}).update(ctx["timing"])
        save_results(results, args.out)
    print(f"wrote {args.out} ({time.perf_counter() - start:.0f}s)")


if __name__ == "__main__":
    main()
