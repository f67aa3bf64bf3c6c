"""Persona vectors (Chen et al. 2025, arXiv 2507.21509) measured on SmolLM2-135M-Instruct, all ten Big Five poles
(issue 22): pole prompts, extraction with the judge filter (three variants, all layers), the layer × coefficient
sweep with the coherence guard, the held-out steering table with dose–response, inhibition of a prompted persona,
and monitoring (last-prompt-token projection vs the judged reply).

Question sets (no question is in two of them; none is a judge-calibration question, which come from the project's
train corpus):

- extraction: per trait, the 20 distinct ``questions`` of ``<trait>_high`` ∪ ``<trait>_low``;
- sweep: 8 other library ``questions`` (from the other traits' files), per trait;
- held-out: 40 of the 99 distinct ``eval_questions`` of all ten pole files (seeded), the same for every pole;
- monitoring: 16 further ``eval_questions`` (disjoint from the held-out 40).

Pole prompts: ``SHORT_PROMPTS`` (three short, explicit paraphrases per pole, the same as the trait library's
``short`` instruction pairs); each pole's best paraphrase on the extraction questions is its prompt on the
held-out set. One vector per trait, v = mean(high) − mean(low) over kept pairs (all three paraphrase pairs),
serves both poles: +α for high, −α for low. Steering adds α·v_ℓ at response tokens (the paper's mode).

Everything is greedy, ``--max-new-tokens`` (48) new tokens, batched (every steered row in one generation with
per-row vectors); generations and coherence scores are cached in ``benchmarks/results/pv_smollm2_cache/`` so a
rerun or a crash redoes nothing. Stages: ``prompts``, ``extract``, ``sweep``, ``steer``, ``inhibit``,
``monitor`` (each needs the earlier ones; ``all`` runs them in order).

    OMP_NUM_THREADS=1 python -m benchmarks.persona_vectors_smollm2 [--stages all] [--model smollm2-135m-instruct]

Writes ``benchmarks/results/persona_vectors_smollm2.json`` (``--out``).
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import itertools
import json
import os
import random
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from benchmarks.common import save_results

TRAITS = ("openness", "conscientiousness", "extraversion", "agreeableness", "neuroticism")
POLES = tuple(f"{t}_{p}" for t in TRAITS for p in ("high", "low"))
N_EXTRACT, N_SWEEP, N_HELD_OUT, N_MONITOR = 20, 6, 40, 8
N_COHERENCE = 16  # held-out questions per condition whose replies get the (costly) Gemma coherence
SWEEP_LAYERS = (8, 14, 20)
SWEEP_COEFS = (1.0, 2.0, 4.0, 8.0)  # the sweep's magnitudes (signed: + for the high pole, − for the low)


def dose_coefs(chosen: float) -> tuple[float, ...]:
    """The held-out dose–response magnitudes: the chosen |α| and its neighbours on the sweep grid (three)."""
    k = SWEEP_COEFS.index(abs(chosen))
    start = min(max(k - 1, 0), len(SWEEP_COEFS) - 3)
    return SWEEP_COEFS[start:start + 3]


def short_prompts(pole: str) -> list[str]:
    """The pole's short prompts: the ``pos`` of the library spec's ``short_instruction`` pairs."""
    from traitlab.traits import load_trait

    return [pair.pos for pair in load_trait(pole).short_instruction]


def question_sets(seed: int = 0) -> dict[str, Any]:
    """The disjoint question sets described in the module docstring."""
    from traitlab.traits import load_trait

    rng = random.Random(seed)
    evals = list(dict.fromkeys(q for pole in POLES for q in load_trait(pole).eval_questions))
    rng.shuffle(evals)
    held_out, monitor = evals[:N_HELD_OUT], evals[N_HELD_OUT:N_HELD_OUT + N_MONITOR]
    extract: dict[str, list[str]] = {}
    sweep: dict[str, list[str]] = {}
    all_train = list(dict.fromkeys(q for pole in POLES for q in load_trait(pole).questions))
    for trait in TRAITS:
        own = list(dict.fromkeys(load_trait(f"{trait}_high").questions + load_trait(f"{trait}_low").questions))
        rng.shuffle(own)
        extract[trait] = own[:N_EXTRACT]
        others = [q for q in all_train if q not in own]
        rng.shuffle(others)
        sweep[trait] = others[:N_SWEEP]
    return {"held_out": held_out, "monitor": monitor, "extract": extract, "sweep": sweep,
            "eval_pool": len(evals)}


Row = tuple[str, str | None, str | None, int, float]  # question, system, vector key, layer, coef


class Generator:
    """Cached, batched greedy generation of rows ``(question, system, vector key, layer, coef)``: one
    generation per chunk, with a per-row ``coef · v`` added at each layer in use (zero for other rows)."""

    def __init__(self, lm: Any, folder: Path, max_new_tokens: int, batch_size: int, shard: str = "") -> None:
        self.lm, self.max_new_tokens, self.batch_size = lm, max_new_tokens, batch_size
        self.vectors: dict[str, torch.Tensor] = {}  # key -> [L+1, d]
        folder.mkdir(parents=True, exist_ok=True)
        stem = f"generations_{lm.spec.replace('/', '_')}_{max_new_tokens}"
        self.path = folder / f"{stem}{shard}.jsonl"
        self.cache: dict[str, dict[str, Any]] = {}
        for path in sorted(folder.glob(f"{stem}*.jsonl")):  # every shard's cache
            for line in path.read_text().splitlines():
                with contextlib.suppress(json.JSONDecodeError):
                    entry = json.loads(line)
                    self.cache[entry["key"]] = entry

    def key(self, row: Row) -> str:
        q, system, vec, layer, coef = row
        digest = "" if vec is None else hashlib.sha1(self.vectors[vec][layer].numpy().tobytes()).hexdigest()[:12]
        raw = json.dumps([q, system, vec, digest, layer if vec else 0, round(coef, 4) if vec else 0.0])
        return hashlib.sha1(raw.encode()).hexdigest()

    def run(self, rows: Sequence[Row], chunk: int = 192) -> list[dict[str, Any]]:
        from traitlab.model import residual_add

        keys = [self.key(r) for r in rows]
        todo = list(dict.fromkeys(k for k in keys if k not in self.cache))
        first = {k: rows[i] for i, k in reversed(list(enumerate(keys)))}
        d = self.lm.model.config.get_text_config().hidden_size
        for start in range(0, len(todo), chunk):
            part = [first[k] for k in todo[start:start + chunk]]
            t0 = time.perf_counter()
            layers = sorted({r[3] for r in part if r[2] is not None})
            with contextlib.ExitStack() as stack:
                for layer in layers:
                    table = torch.zeros(len(part), d)
                    for i, (_, _, vec, lay, coef) in enumerate(part):
                        if vec is not None and lay == layer:
                            table[i] = coef * self.vectors[vec][layer]
                    stack.enter_context(residual_add(self.lm, layer, table, 1.0, "response"))
                gen = self.lm.generate_chat([r[0] for r in part], [r[1] for r in part],
                                            max_new_tokens=self.max_new_tokens, batch_size=self.batch_size,
                                            progress=False)
            with self.path.open("a") as handle:
                for k, text, ids in zip(todo[start:start + chunk], gen.texts, gen.response_ids, strict=True):
                    entry = {"key": k, "text": text, "ids": list(map(int, ids))}
                    self.cache[k] = entry
                    handle.write(json.dumps(entry) + "\n")
            print(f"  generated {len(part)} rows ({start + len(part)}/{len(todo)}) in "
                  f"{time.perf_counter() - t0:.0f}s", flush=True)
        return [self.cache[k] for k in keys]

    def generation(self, rows: Sequence[Row]) -> Any:
        """A ``Generation`` (prompt and response ids) of cached rows, for teacher-forced activations."""
        from traitlab.model import Generation

        entries = self.run(rows)
        prompt_ids = self.lm.encode(self.lm.render([r[0] for r in rows], [r[1] for r in rows]))
        return Generation([e["text"] for e in entries], prompt_ids, [e["ids"] for e in entries],
                          [True] * len(rows), self.lm.tokenizer.pad_token_id)


class Judges:
    """The trait judge (embedding, calibrated on the model's own unsteered replies) and cached coherence."""

    def __init__(self, lm: Any, folder: Path, max_new_tokens: int, shard: str = "") -> None:
        from traitlab.evaluation.offline import offline_judges

        self.trait, self.coherence = offline_judges(lm, reference="gemma-3-270m", max_new_tokens=max_new_tokens)
        stem = f"coherence_{lm.spec.replace('/', '_')}"
        self.path = folder / f"{stem}{shard}.jsonl"
        self.cache: dict[str, float] = {}
        for path in sorted(folder.glob(f"{stem}*.jsonl")):
            for line in path.read_text().splitlines():
                with contextlib.suppress(json.JSONDecodeError):
                    entry = json.loads(line)
                    self.cache[entry["key"]] = entry["c"]

    def scores(self, trait: str, questions: Sequence[str], replies: Sequence[str]) -> np.ndarray:
        """High-pole judged score 0–100 of ``trait`` per reply."""
        return self.trait.score_matrix(list(questions), list(replies))[:, self.trait.index(trait)]

    def coherences(self, questions: Sequence[str], replies: Sequence[str]) -> np.ndarray:
        keys = [hashlib.sha1(json.dumps([q, r]).encode()).hexdigest() for q, r in zip(questions, replies,
                                                                                       strict=True)]
        todo = {k: (q, r) for k, q, r in zip(keys, questions, replies, strict=True) if k not in self.cache}
        if todo:
            items = list(todo.items())
            values = self.coherence.score_many([(q, r, "") for _, (q, r) in items])
            with self.path.open("a") as handle:
                for (k, _), v in zip(items, values, strict=True):
                    self.cache[k] = float(v or 0.0)
                    handle.write(json.dumps({"key": k, "c": self.cache[k]}) + "\n")
        return np.array([self.cache[k] for k in keys])


def paired(shift: np.ndarray) -> dict[str, float]:
    """Mean ± 95% CI of per-question shifts toward the pole and the one-sided Wilcoxon signed-rank p."""
    from scipy.stats import wilcoxon

    n = len(shift)
    ci = 1.96 * float(shift.std(ddof=1)) / np.sqrt(n) if n > 1 else float("nan")
    p = float(wilcoxon(shift, alternative="greater").pvalue) if np.any(shift != 0) else 1.0
    return {"shift": round(float(shift.mean()), 3), "ci95": round(ci, 3), "p": p,
            "on_side": round(float((shift > 0).mean()), 3), "n": n}


def stage_prompts(ctx: dict[str, Any]) -> dict[str, Any]:
    """Every pole's paraphrases on its trait's extraction questions vs the unprompted replies."""
    gen, judges, qs = ctx["gen"], ctx["judges"], ctx["questions"]
    gen.run([(q, system, None, 0, 0.0) for trait in ctx["traits"] for q in qs["extract"][trait]
             for system in [None, *(s for pole in ("high", "low") if f"{trait}_{pole}" in ctx["poles"]
                                    for s in short_prompts(f"{trait}_{pole}"))]])  # one batch
    out: dict[str, Any] = {}
    for trait in ctx["traits"]:
        questions = qs["extract"][trait]
        base = gen.run([(q, None, None, 0, 0.0) for q in questions])
        base_s = judges.scores(trait, questions, [e["text"] for e in base])
        for pole in [p for p in ("high", "low") if f"{trait}_{p}" in ctx["poles"]]:
            sign = 1.0 if pole == "high" else -1.0
            record = []
            for k, prompt in enumerate(short_prompts(f"{trait}_{pole}")):
                entries = gen.run([(q, prompt, None, 0, 0.0) for q in questions])
                texts = [e["text"] for e in entries]
                s = judges.scores(trait, questions, texts)
                record.append({"paraphrase": k, "prompt": prompt, **paired(sign * (s - base_s))})
            best = max(range(len(record)), key=lambda k: record[k]["shift"])
            out[f"{trait}_{pole}"] = {"paraphrases": record, "best": best}
            print(f"{trait}_{pole:5s} " + "  ".join(f"#{r['paraphrase']} {r['shift']:+.1f} (p={r['p']:.3f})"
                                                      for r in record), flush=True)
    return out


def stage_prompts_heldout(ctx: dict[str, Any]) -> dict[str, Any]:
    """Each pole's prompt (its best paraphrase on the extraction questions, stage ``prompts``) on the held-out
    questions vs the unprompted replies: the prompt's shift toward the pole, its one-sided Wilcoxon p, and its
    coherence ratio. The issue's test of whether a model can express a pole at all (run on the larger fallback
    model for the poles SmolLM2's prompts do not move)."""
    gen, judges = ctx["gen"], ctx["judges"]
    questions = ctx["questions"]["held_out"]
    poles = [p for p in POLES if p in ctx["poles"] and p.rsplit("_", 1)[0] in ctx["traits"]]
    gen.run([(q, system, None, 0, 0.0) for q in questions
             for system in [None, *(chosen_prompt(ctx, p) for p in poles)]])  # one batched pass
    base = [e["text"] for e in gen.run([(q, None, None, 0, 0.0) for q in questions])]
    cq = questions[:N_COHERENCE]
    base_c = judges.coherences(cq, base[:N_COHERENCE])
    out: dict[str, Any] = {"base_coherence": round(float(base_c.mean()), 2)}
    for pole in poles:
        trait, sign = pole.rsplit("_", 1)[0], 1.0 if pole.endswith("_high") else -1.0
        texts = [e["text"] for e in gen.run([(q, chosen_prompt(ctx, pole), None, 0, 0.0) for q in questions])]
        base_s, s = judges.scores(trait, questions, base), judges.scores(trait, questions, texts)
        c = judges.coherences(cq, texts[:N_COHERENCE])
        record = {**paired(sign * (s - base_s)), "prompt": chosen_prompt(ctx, pole),
                  "coherence_ratio": round(float(c.mean() / base_c.mean()), 3),
                  "example": {"question": questions[0], "unprompted": base[0], "prompted": texts[0]}}
        record["moves"] = bool(record["p"] < 0.01 and record["shift"] > 0)
        out[pole] = record
        print(f"{pole:26s} prompt {record['shift']:+5.1f} (p={record['p']:.4f}) coh×{record['coherence_ratio']:.2f}"
              f" moves={record['moves']}", flush=True)
    return out


def stage_extract(ctx: dict[str, Any]) -> dict[str, Any]:
    """Per trait: rollouts = every (high_k, low_k) paraphrase pair × extraction question; judge filter; the
    three variants at every layer, from traitlab's ``row_activations`` (batched hooked teacher forcing)."""
    from traitlab.methods.persona_vectors import VARIANTS, row_activations, separation

    gen, judges, qs, lm = ctx["gen"], ctx["judges"], ctx["questions"], ctx["lm"]
    out: dict[str, Any] = {}
    for trait in ctx["traits"]:
        questions = qs["extract"][trait]
        highs, lows = short_prompts(f"{trait}_high"), short_prompts(f"{trait}_low")
        pos_rows = [(q, h, None, 0, 0.0) for h in highs for q in questions]
        neg_rows = [(q, lo, None, 0, 0.0) for lo in lows for q in questions]
        pos, neg = gen.generation(pos_rows), gen.generation(neg_rows)
        qrows = [r[0] for r in pos_rows]
        ps, ns = judges.scores(trait, qrows, pos.texts), judges.scores(trait, qrows, neg.texts)
        ok = [i for i in range(len(qrows)) if pos.response_ids[i] and neg.response_ids[i]]
        candidates = [i for i in ok if ps[i] >= 50 and ns[i] < 50]  # coherence is judged for these only
        pc = judges.coherences([qrows[i] for i in candidates], [pos.texts[i] for i in candidates])
        nc = judges.coherences([qrows[i] for i in candidates], [neg.texts[i] for i in candidates])
        kept = [i for i, a, b in zip(candidates, pc, nc, strict=True) if min(a, b) >= 50]
        vectors: dict[str, dict[str, torch.Tensor]] = {}
        for label, rows in (("filtered", kept), ("unfiltered", ok)):
            p, n = row_activations(lm, pos, rows), row_activations(lm, neg, rows)
            vectors[label] = {v: p[v].mean(0) - n[v].mean(0) for v in VARIANTS}
            if label == "filtered":
                d = separation(p["response_avg"], n["response_avg"], vectors[label]["response_avg"])
        for label, table in vectors.items():
            for variant, v in table.items():
                ctx["gen"].vectors[f"{trait}/{label}/{variant}"] = v
        torch.save(vectors, ctx["folder"] / f"vectors_{trait}.pt")
        cos = torch.nn.functional.cosine_similarity(vectors["filtered"]["response_avg"],
                                                    vectors["unfiltered"]["response_avg"], dim=-1)
        out[trait] = {"pairs": len(qrows), "trait_filter_passed": len(candidates), "kept": len(kept),
                      "pos_mean": round(float(ps[kept].mean()), 2), "neg_mean": round(float(ns[kept].mean()), 2),
                      "separation_d": [round(float(x), 3) for x in d],
                      "norm_response_avg": [round(float(x), 2) for x in vectors["filtered"]["response_avg"].norm(
                          dim=-1)],
                      "cos_filtered_unfiltered": [round(float(x), 3) for x in cos],
                      "cos_response_vs_prompt_avg": [round(float(x), 3) for x in torch.nn.functional.cosine_similarity(
                          vectors["filtered"]["response_avg"], vectors["filtered"]["prompt_avg"], dim=-1)],
                      "cos_response_vs_prompt_last": [round(float(x), 3) for x in torch.nn.functional.cosine_similarity(
                          vectors["filtered"]["response_avg"], vectors["filtered"]["prompt_last"], dim=-1)]}
        best = int(np.argmax(out[trait]["separation_d"][1:lm.num_layers])) + 1
        print(f"{trait}: kept {len(kept)}/{len(qrows)} pairs; best-separating layer {best} "
              f"(d={out[trait]['separation_d'][best]:.2f}); |v_16|={out[trait]['norm_response_avg'][16]:.1f}",
              flush=True)
    return out


def load_vectors(ctx: dict[str, Any]) -> None:
    for trait in ctx["traits"]:
        path = ctx["folder"] / f"vectors_{trait}.pt"
        if not path.exists():
            raise SystemExit(f"run the extract stage first ({path} missing)")
        for label, table in torch.load(path).items():
            for variant, v in table.items():
                ctx["gen"].vectors[f"{trait}/{label}/{variant}"] = v


def stage_sweep(ctx: dict[str, Any], variant: str = "response_avg") -> dict[str, Any]:
    """Layers × signed coefficients on the sweep questions; per pole the cell with the largest judged shift
    toward the pole among cells whose coherence ≥ 0.9 × the unsteered replies' (the guard is checked in order
    of shift, so coherence is judged only for the cells tried: the same choice as judging every cell)."""
    gen, judges, qs = ctx["gen"], ctx["judges"], ctx["questions"]

    def signs(trait: str) -> list[tuple[str, float]]:
        return [(pole, sign) for pole, sign in (("high", 1.0), ("low", -1.0)) if f"{trait}_{pole}" in ctx["poles"]]

    def trait_cells(trait: str) -> list[tuple[int, float]]:
        return [(layer, sign * c) for layer in SWEEP_LAYERS for c in SWEEP_COEFS for _, sign in signs(trait)]

    def sweep_rows(trait: str) -> list[Row]:
        questions = qs["sweep"][trait]
        return ([(q, None, None, 0, 0.0) for q in questions]
                + [(q, None, f"{trait}/filtered/{variant}", layer, coef) for layer, coef in trait_cells(trait)
                   for q in questions])

    gen.run([row for trait in ctx["traits"] for row in sweep_rows(trait)])  # one batched pass over every trait
    out: dict[str, Any] = {}
    for trait in ctx["traits"]:
        questions, cells = qs["sweep"][trait], trait_cells(trait)
        texts = [e["text"] for e in gen.run(sweep_rows(trait))]
        n = len(questions)
        s = judges.scores(trait, questions * (len(cells) + 1), texts)
        base_s, base_c = s[:n], judges.coherences(questions, texts[:n])
        table = []
        for k, (layer, coef) in enumerate(cells):
            sl = slice(n * (k + 1), n * (k + 2))
            table.append({"layer": layer, "coef": coef, "trait": round(float(s[sl].mean()), 2),
                          "shift": round(float((s[sl] - base_s).mean()), 2), "coherence_ratio": None, "k": k})
        record: dict[str, Any] = {"base_trait": round(float(base_s.mean()), 2),
                                  "base_coherence": round(float(base_c.mean()), 2), "table": table}
        for pole, sign in signs(trait):
            mine = sorted((t for t in table if np.sign(t["coef"]) == sign),
                          key=lambda t: (-sign * t["shift"], abs(t["coef"])))
            best = None
            for t in mine:
                if t["coherence_ratio"] is None:
                    sl = slice(n * (t["k"] + 1), n * (t["k"] + 2))
                    t["coherence_ratio"] = round(float(judges.coherences(questions, texts[sl]).mean()
                                                       / base_c.mean()), 3)
                if t["coherence_ratio"] >= 0.9:
                    best = t
                    break
            guard_met = best is not None
            best = best or min(mine, key=lambda t: abs(t["coef"]))  # nothing passes: the mildest cell
            record[pole] = {"layer": best["layer"], "coef": best["coef"], "shift": round(sign * best["shift"], 2),
                            "coherence_ratio": best["coherence_ratio"], "guard_met": guard_met}
        for t in table:
            del t["k"]
        out[trait] = record
        print(f"{trait}: base {record['base_trait']:.1f}; " + "; ".join(
            f"{pole} → L{record[pole]['layer']} α={record[pole]['coef']:+g} shift {record[pole]['shift']:+.1f} "
            f"(coh ×{record[pole]['coherence_ratio']})" for pole, _ in signs(trait)), flush=True)
    return out


def chosen_prompt(ctx: dict[str, Any], pole: str) -> str:
    record = ctx["results"]["prompts"][pole]
    return record["paraphrases"][record["best"]]["prompt"]


def steer_conditions(ctx: dict[str, Any], trait: str, pole: str) -> dict[str, list[Row]]:
    """A pole's held-out rows: its prompt, and steering at its chosen layer with each sweep magnitude."""
    questions, sign = ctx["questions"]["held_out"], 1.0 if pole == "high" else -1.0
    cell = ctx["results"]["sweep"][trait][pole]
    layer = cell["layer"]
    prompt = chosen_prompt(ctx, f"{trait}_{pole}")
    conditions: dict[str, list[Row]] = {"prompt": [(q, prompt, None, 0, 0.0) for q in questions]}
    for c in dose_coefs(cell["coef"]):
        conditions[f"steer_{c:g}"] = [(q, None, f"{trait}/filtered/response_avg", layer, sign * c) for q in questions]
    return conditions


def inhibit_rows(ctx: dict[str, Any], trait: str, pole: str) -> list[Row]:
    """The pole's prompt with steering against the pole at its chosen cell's layer and magnitude."""
    questions, sign = ctx["questions"]["held_out"][:ctx["inhibit_questions"]], 1.0 if pole == "high" else -1.0
    cell = ctx["results"]["sweep"][trait][pole]
    prompt = chosen_prompt(ctx, f"{trait}_{pole}")
    return [(q, prompt, f"{trait}/filtered/response_avg", cell["layer"], -sign * abs(cell["coef"]))
            for q in questions]


def stage_steer(ctx: dict[str, Any]) -> dict[str, Any]:
    """Held-out table per pole: prompt, and steering at the chosen layer with the three sweep magnitudes."""
    gen, judges = ctx["gen"], ctx["judges"]
    questions = ctx["questions"]["held_out"]
    base = [e["text"] for e in gen.run([(q, None, None, 0, 0.0) for q in questions])]
    cq = questions[:N_COHERENCE]
    base_c = judges.coherences(cq, base[:N_COHERENCE])
    out: dict[str, Any] = {"base_coherence": round(float(base_c.mean()), 2), "coherence_questions": len(cq)}
    gen.run([row for trait in ctx["traits"] for pole in ("high", "low") if f"{trait}_{pole}" in ctx["poles"]
             for rows in steer_conditions(ctx, trait, pole).values() for row in rows])  # one batched pass
    for trait in ctx["traits"]:
        base_s = judges.scores(trait, questions, base)
        for pole, sign in [(p, sg) for p, sg in (("high", 1.0), ("low", -1.0)) if f"{trait}_{p}" in ctx["poles"]]:
            name = f"{trait}_{pole}"
            cell = ctx["results"]["sweep"][trait][pole]
            conditions = steer_conditions(ctx, trait, pole)
            record: dict[str, Any] = {"layer": cell["layer"], "chosen_coef": cell["coef"],
                                      "base_mean": round(float(base_s.mean()), 2)}
            for label, rows in conditions.items():
                texts = [e["text"] for e in gen.run(rows)]
                s, c = judges.scores(trait, questions, texts), judges.coherences(cq, texts[:N_COHERENCE])
                record[label] = {**paired(sign * (s - base_s)), "mean": round(float(s.mean()), 2),
                                 "coherence_ratio": round(float(c.mean() / base_c.mean()), 3),
                                 "example": {"question": questions[0], "reply": texts[0]}}
            prompt_shift = record["prompt"]["shift"]
            prompt_moves = record["prompt"]["p"] < 0.01 and prompt_shift > 0
            dose = dose_coefs(cell["coef"])
            record["dose_coefs"] = list(dose)
            for c in dose:
                r = record[f"steer_{c:g}"]
                r["fraction_of_prompt"] = round(r["shift"] / prompt_shift, 3) if prompt_shift > 0 else None
                r["moves"] = bool(r["p"] < 0.01 and (not prompt_moves or r["shift"] >= 0.5 * prompt_shift))
            chosen = record[f"steer_{abs(cell['coef']):g}"]
            record["chosen_moves"] = bool(chosen["moves"] and chosen["coherence_ratio"] >= 0.9)
            shifts = [record[f"steer_{c:g}"]["shift"] for c in dose]
            record["monotone"] = bool(all(a <= b for a, b in itertools.pairwise(shifts)))
            record["prompt_moves"] = prompt_moves
            out[name] = record
            print(f"{name:26s} prompt {prompt_shift:+5.1f} (p={record['prompt']['p']:.3f}) | "
                  + " | ".join(f"α{c:g}: {record[f'steer_{c:g}']['shift']:+5.1f} p={record[f'steer_{c:g}']['p']:.3f} "
                               f"coh×{record[f'steer_{c:g}']['coherence_ratio']:.2f}" for c in dose)
                  + f" | chosen L{cell['layer']} α{cell['coef']:+g} moves={record['chosen_moves']}", flush=True)
    return out


def stage_inhibit(ctx: dict[str, Any]) -> dict[str, Any]:
    """Pole prompt + steering against the pole at the chosen layer: the fraction of the prompted shift removed."""
    gen, judges = ctx["gen"], ctx["judges"]
    questions = ctx["questions"]["held_out"][:ctx["inhibit_questions"]]
    base = [e["text"] for e in gen.run([(q, None, None, 0, 0.0) for q in questions])]
    cq = questions[:N_COHERENCE]
    base_c = judges.coherences(cq, base[:N_COHERENCE])
    out: dict[str, Any] = {}
    gen.run([row for trait in ctx["traits"] for pole in ("high", "low") for row in inhibit_rows(ctx, trait, pole)])
    for trait in ctx["traits"]:
        base_s = judges.scores(trait, questions, base)
        for pole, sign in (("high", 1.0), ("low", -1.0)):
            name = f"{trait}_{pole}"
            cell = ctx["results"]["sweep"][trait][pole]
            prompt = chosen_prompt(ctx, name)
            prompted = [e["text"] for e in gen.run([(q, prompt, None, 0, 0.0) for q in questions])]
            prompt_shift = float((sign * (judges.scores(trait, questions, prompted) - base_s)).mean())
            prompted_c = judges.coherences(cq, prompted[:N_COHERENCE])
            record: dict[str, Any] = {"layer": cell["layer"], "n": len(questions),
                                      "prompt_shift": round(prompt_shift, 3),
                                      "prompt_coherence_ratio": round(float(prompted_c.mean() / base_c.mean()), 3)}
            for c in (abs(cell["coef"]),):
                rows = inhibit_rows(ctx, trait, pole)
                texts = [e["text"] for e in gen.run(rows)]
                s, coh = judges.scores(trait, questions, texts), judges.coherences(cq, texts[:N_COHERENCE])
                remaining = float((sign * (s - base_s)).mean())
                record[f"inhibit_{c:g}"] = {
                    "remaining_shift": round(remaining, 3),
                    "fraction_removed": round(1 - remaining / prompt_shift, 3) if prompt_shift > 0 else None,
                    "coherence_ratio": round(float(coh.mean() / base_c.mean()), 3)}
            out[name] = record
            print(f"{name:26s} prompted {prompt_shift:+5.1f} | " + " | ".join(
                f"−{c:g}: left {record[f'inhibit_{c:g}']['remaining_shift']:+5.1f} removed "
                f"{record[f'inhibit_{c:g}']['fraction_removed']} coh×{record[f'inhibit_{c:g}']['coherence_ratio']:.2f}"
                for c in (abs(cell["coef"]),)), flush=True)
    return out


def record_means(ctx: dict[str, Any], trait: str, layer: int, systems: list, conversations: list) -> np.ndarray:
    """Mean last-prompt projection per system prompt (rows grouped by prompt)."""
    from traitlab.monitor import project_conversations

    v = ctx["gen"].vectors[f"{trait}/filtered/response_avg"][layer]
    proj = np.array([r["last_prompt_projection"] for r in project_conversations(ctx["lm"], v, layer, conversations)])
    return proj.reshape(len(systems), -1).mean(1)


def stage_monitor(ctx: dict[str, Any]) -> dict[str, Any]:
    """Graded system prompts (three high paraphrases, none, three low) × monitoring questions, unsteered:
    Pearson r of the last prompt token's projection on v̂ at the chosen layer (what ``traitlab monitor``
    computes) and the judged score of the greedy reply; per reply and over the seven prompt means."""
    from traitlab.monitor import project_conversations

    gen, judges, lm = ctx["gen"], ctx["judges"], ctx["lm"]
    questions = ctx["questions"]["monitor"][:ctx["monitor_questions"]]
    gen.run([(q, system, None, 0, 0.0) for trait in ctx["traits"]
             for system in [*short_prompts(f"{trait}_high"), None, *short_prompts(f"{trait}_low")] for q in questions])
    held_out = ctx["questions"]["held_out"]
    out: dict[str, Any] = {}
    for trait in ctx["traits"]:
        layer = ctx["results"]["sweep"][trait]["high"]["layer"]
        systems = ([("high", p) for p in short_prompts(f"{trait}_high")] + [("none", None)]
                   + [("low", p) for p in short_prompts(f"{trait}_low")])
        rows = [(q, system, None, 0, 0.0) for _, system in systems for q in questions]
        texts = [e["text"] for e in gen.run(rows)]
        scores = judges.scores(trait, [r[0] for r in rows], texts) if rows else np.zeros((len(systems), 0))
        conversations = [([{"role": "system", "content": s}] if s else []) + [{"role": "user", "content": q}]
                         for q, s, *_ in rows]
        record: dict[str, Any] = {}
        for layer_used in sorted({layer, *SWEEP_LAYERS}) if questions else [layer]:
            if not questions:  # held-out replies only (below)
                record[str(layer_used)] = {"r_replies": None, "r_prompt_means": None}
                continue
            v = gen.vectors[f"{trait}/filtered/response_avg"][layer_used]
            proj = np.array([r["last_prompt_projection"] for r in project_conversations(lm, v, layer_used,
                                                                                        conversations)])
            means_p = proj.reshape(len(systems), -1).mean(1)
            means_s = scores.reshape(len(systems), -1).mean(1)
            record[str(layer_used)] = {"r_replies": round(float(np.corrcoef(proj, scores)[0, 1]), 3),
                                       "r_prompt_means": round(float(np.corrcoef(means_p, means_s)[0, 1]), 3)}
        # the held-out replies of the steering table (best high prompt, none, best low prompt: no new generation)
        wide = [(q, system, None, 0, 0.0) for system in (chosen_prompt(ctx, f"{trait}_high"), None,
                                                         chosen_prompt(ctx, f"{trait}_low")) for q in held_out]
        wide_scores = judges.scores(trait, [r[0] for r in wide], [e["text"] for e in gen.run(wide)])
        wide_conv = [([{"role": "system", "content": s}] if s else []) + [{"role": "user", "content": q}]
                     for q, s, *_ in wide]
        v = gen.vectors[f"{trait}/filtered/response_avg"][layer]
        wide_proj = np.array([r["last_prompt_projection"] for r in project_conversations(lm, v, layer, wide_conv)])
        out[trait] = {"layer": layer, **record[str(layer)], "per_layer": record,
                      "score_by_prompt": ([round(float(x), 2) for x in scores.reshape(len(systems), -1).mean(1)]
                                          if questions else []),
                      "projection_by_prompt": ([round(float(x), 3) for x in record_means(
                          ctx, trait, layer, systems, conversations)] if questions else []),
                      "held_out_3_prompts": {"n": len(wide),
                                             "r_replies": round(float(np.corrcoef(wide_proj, wide_scores)[0, 1]), 3)}}
        print(f"{trait}: L{layer} r over 120 held-out replies {out[trait]['held_out_3_prompts']['r_replies']:+.2f}; "
              "graded prompts (replies / prompt means) per layer: "
              + ", ".join(f"L{k}: {v['r_replies']}/{v['r_prompt_means']}" for k, v in record.items()), flush=True)
    return out


def stage_speed(ctx: dict[str, Any]) -> dict[str, Any]:
    """``benchmarks.persona_vectors_speed`` on the extraversion extraction pairs of this run (60 + 60 cached
    replies, no new rollouts): traitlab's batched hooked capture vs persona_vectors' one-example-per-forward loop
    with ``output_hidden_states=True`` (same vectors?), then extraction + steered generation vs repeng and
    steering-vectors when they are installed (``benchmarks/peers_steering.py``)."""
    from benchmarks.persona_vectors_speed import all_figures

    gen, qs = ctx["gen"], ctx["questions"]["extract"]["extraversion"]
    highs, lows = short_prompts("extraversion_high"), short_prompts("extraversion_low")
    pos = gen.generation([(q, h, None, 0, 0.0) for h in highs for q in qs])
    neg = gen.generation([(q, lo, None, 0, 0.0) for lo in lows for q in qs])
    load_before = os.getloadavg()[0]
    figures = all_figures(ctx["lm"], pos, neg, [q for _ in highs for q in qs], gen.max_new_tokens,
                          torch.get_num_threads())
    return {**figures, "pairs": len(pos.texts), "threads": torch.get_num_threads(), "cpus": os.cpu_count(),
            "loadavg_1min": [round(load_before, 2), round(os.getloadavg()[0], 2)]}


def guarded_doses(record: dict[str, Any]) -> list[float]:
    """The dose-response coefficients at which the pole moves (p < 0.01, ≥ half the prompt's significant shift)
    with coherence ≥ 0.9 × unsteered, on the held-out questions."""
    return [c for c in record["dose_coefs"] if record[f"steer_{c:g}"]["moves"]
            and record[f"steer_{c:g}"]["coherence_ratio"] >= 0.9]


def summary(results: dict[str, Any]) -> dict[str, Any]:
    """The issue's targets over the poles measured so far."""
    steer = {k: v for k, v in results.get("steer", {}).items() if k in POLES}
    out: dict[str, Any] = {"poles_steered": len(steer),
                           "poles_moving_at_chosen_cell": sum(r["chosen_moves"] for r in steer.values()),
                           "poles_monotone": sum(r["monotone"] for r in steer.values()),
                           "poles_prompt_moves": sum(r["prompt_moves"] for r in steer.values()),
                           "poles_moving_at_some_dose": sum(bool(guarded_doses(r)) for r in steer.values()),
                           "moving_doses": {k: guarded_doses(r) for k, r in steer.items()}}
    monitor = results.get("monitor", {})
    if monitor:
        out["monitor_r_replies"] = {t: m["r_replies"] for t, m in monitor.items()}
        out["monitor_r_prompt_means"] = {t: m["r_prompt_means"] for t, m in monitor.items()}
    return out


def markdown(results: dict[str, Any]) -> str:
    """The docs' tables from a results file."""
    lines: list[str] = []
    prompts, sweep, steer = results.get("prompts", {}), results.get("sweep", {}), results.get("steer", {})
    extract, inhibit, monitor = results.get("extract", {}), results.get("inhibit", {}), results.get("monitor", {})
    if prompts:
        lines += ["| pole | paraphrase #0 | #1 | #2 |", "|---|---|---|---|"]
        for pole in POLES:
            if pole in prompts:
                cells = [f"{r['shift']:+.1f} (p={r['p']:.3f})" + (" **best**" if k == prompts[pole]["best"] else "")
                         for k, r in enumerate(prompts[pole]["paraphrases"])]
                lines.append(f"| {pole} | " + " | ".join(cells) + " |")
        lines.append("")
    if extract:
        lines += ["| trait | pairs kept of 60: trait filter / + coherence | best-separating layer (d) | "
                  "d at L8 / L14 / L20 | ‖v‖ at L8 / L14 / L20 | cos(filtered, unfiltered) at L14 | "
                  "cos(response_avg, prompt_avg / prompt_last) at L14 |", "|---|---|---|---|---|---|---|"]
        for trait in TRAITS:
            if trait in extract:
                e = extract[trait]
                d = e["separation_d"]
                best = int(np.argmax(d[1:len(d) - 1])) + 1
                lines.append(f"| {trait} | {e['trait_filter_passed']} / {e['kept']} | {best} ({d[best]:.2f}) | "
                             f"{d[8]:.2f} / {d[14]:.2f} / {d[20]:.2f} | {e['norm_response_avg'][8]:.1f} / "
                             f"{e['norm_response_avg'][14]:.1f} / {e['norm_response_avg'][20]:.1f} | "
                             f"{e['cos_filtered_unfiltered'][14]:.2f} | {e['cos_response_vs_prompt_avg'][14]:.2f} / "
                             f"{e['cos_response_vs_prompt_last'][14]:.2f} |")
        lines.append("")
    if sweep:
        lines += ["| trait | pole | chosen layer, α | sweep shift | coherence × | guard met |",
                  "|---|---|---|---|---|---|"]
        for trait in TRAITS:
            for pole in ("high", "low"):
                if trait in sweep:
                    c = sweep[trait][pole]
                    lines.append(f"| {trait} | {pole} | L{c['layer']}, {c['coef']:+g} | {c['shift']:+.1f} | "
                                 f"{c['coherence_ratio']} | {c['guard_met']} |")
        lines.append("")
    if steer:
        lines += ["| pole | prompt: shift ± CI (p) coh× | sweep's cell | α₁ | α₂ | α₃ | chosen cell moves (fraction of "
                  "prompt) | moves at coh ≥ 0.9× | monotone |", "|---|---|---|---|---|---|---|---|---|"]
        for pole in POLES:
            if pole in steer:
                r = steer[pole]
                doses = [f"α={c:g}: {r[f'steer_{c:g}']['shift']:+.1f} ± {r[f'steer_{c:g}']['ci95']:.1f} "
                         f"(p={r[f'steer_{c:g}']['p']:.2g}) ×{r[f'steer_{c:g}']['coherence_ratio']:.2f}"
                         for c in r["dose_coefs"]]
                chosen = r[f"steer_{abs(r['chosen_coef']):g}"]
                lines.append(f"| {pole} | {r['prompt']['shift']:+.1f} ± {r['prompt']['ci95']:.1f} "
                             f"(p={r['prompt']['p']:.2g}) ×{r['prompt']['coherence_ratio']:.2f} | "
                             f"L{r['layer']}, α={abs(r['chosen_coef']):g} | " + " | ".join(doses)
                             + f" | {'yes' if r['chosen_moves'] else 'no'} ({chosen['fraction_of_prompt']}) | "
                             + (", ".join(f"α={c:g}" for c in guarded_doses(r)) or "none")
                             + f" | {'yes' if r['monotone'] else 'no'} |")
        lines.append("")
    if inhibit:
        lines += ["| pole | prompted shift | prompt coh× | α | shift left | fraction removed | coherence × |",
                  "|---|---|---|---|---|---|---|"]
        for pole in POLES:
            if pole in inhibit:
                r = inhibit[pole]
                key = next(k for k in r if k.startswith("inhibit_"))
                lines.append(f"| {pole} | {r['prompt_shift']:+.1f} | {r['prompt_coherence_ratio']:.2f} | "
                             f"−{key.split('_')[1]} | {r[key]['remaining_shift']:+.1f} | "
                             f"{r[key]['fraction_removed']} | {r[key]['coherence_ratio']:.2f} |")
        lines.append("")
    if monitor:
        lines += ["| trait | layer | r, 56 replies (7 prompts × 8) | r, 7 prompt means | r, 120 held-out replies "
                  "(3 prompts × 40) |", "|---|---|---|---|---|"]
        for trait in TRAITS:
            if trait in monitor:
                m = monitor[trait]
                lines.append(f"| {trait} | {m['layer']} | {m['r_replies']} | {m['r_prompt_means']} | "
                             f"{m['held_out_3_prompts']['r_replies']:+.2f} |")
    return "\n".join(lines)


STAGES = {"prompts": stage_prompts, "prompts_heldout": stage_prompts_heldout, "extract": stage_extract,
          "sweep": stage_sweep, "steer": stage_steer,
          "inhibit": stage_inhibit, "monitor": stage_monitor, "speed": stage_speed}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="smollm2-135m-instruct")
    parser.add_argument("--stages", default="all", help="comma-separated: " + ",".join(STAGES) + " or all")
    parser.add_argument("--max-new-tokens", type=int, default=48)
    parser.add_argument("--batch-size", type=int, default=48)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--traits", default=",".join(TRAITS), help="comma-separated Big Five traits")
    parser.add_argument("--poles", default="", help="comma-separated poles for the prompt, sweep and steer "
                        "stages (default: both poles of every trait in --traits)")
    parser.add_argument("--shard", default="", help="suffix of this process's cache files (parallel runs)")
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/persona_vectors_smollm2.json"))
    parser.add_argument("--inhibit-questions", type=int, default=N_HELD_OUT, help="held-out questions inhibited")
    parser.add_argument("--monitor-questions", type=int, default=N_MONITOR,
                        help="questions per graded prompt (0: monitor on the steering table's replies only)")
    parser.add_argument("--markdown", action="store_true", help="print the docs' tables from --out and exit")
    args = parser.parse_args()
    if args.markdown:  # also refreshes the summary (shards that ran older code wrote their own)
        results = json.loads(args.out.read_text())
        results["summary"] = summary(results)
        save_results(results, args.out)
        print(markdown(results) + "\n\n" + json.dumps(results["summary"]))
        return
    stages = ([s for s in STAGES if s not in ("speed", "prompts_heldout")] if args.stages == "all"
              else [s.strip() for s in args.stages.split(",")])
    unknown = [s for s in stages if s not in STAGES]
    if unknown:
        raise SystemExit(f"error: unknown stage {unknown[0]}; have {', '.join(STAGES)}")
    traits = [t.strip() for t in args.traits.split(",") if t.strip()]
    if not traits or any(t not in TRAITS for t in traits):
        raise SystemExit(f"error: --traits takes some of {', '.join(TRAITS)}")
    poles = ([p.strip() for p in args.poles.split(",") if p.strip()] if args.poles
             else [f"{t}_{p}" for t in traits for p in ("high", "low")])
    if any(p not in POLES or p.rsplit("_", 1)[0] not in traits for p in poles):
        raise SystemExit(f"error: --poles takes poles of the traits in --traits, e.g. {traits[0]}_high")
    torch.set_num_threads(args.threads)
    from traitlab import load_model

    start = time.perf_counter()
    lm = load_model(args.model)
    folder = args.out.parent / "pv_smollm2_cache"
    results = json.loads(args.out.read_text()) if args.out.exists() else {}
    if results.get("model", lm.spec) != lm.spec:
        results = {}
    ctx: dict[str, Any] = {"lm": lm, "folder": folder, "results": results,
                           "gen": Generator(lm, folder, args.max_new_tokens, args.batch_size, args.shard),
                           "judges": (Judges(lm, folder, args.max_new_tokens, args.shard)
                                      if set(stages) - {"speed"} else None),
                           "questions": question_sets(), "traits": traits, "poles": poles,
                           "inhibit_questions": args.inhibit_questions, "monitor_questions": args.monitor_questions}
    if ctx["judges"] is not None:
        results.update(judge=ctx["judges"].trait.name, coherence_judge=ctx["judges"].coherence.name)
    results.update(model=lm.spec,
                   max_new_tokens=args.max_new_tokens, sweep_layers=list(SWEEP_LAYERS),
                   sweep_coefs=list(SWEEP_COEFS), coherence_questions=N_COHERENCE,
                   question_sets={k: (len(v) if isinstance(v, list) else {t: len(x) for t, x in v.items()}
                                      if isinstance(v, dict) else v) for k, v in ctx["questions"].items()})
    if "extract" not in stages and any(s in stages for s in ("sweep", "steer", "inhibit", "monitor", "speed")):
        load_vectors(ctx)
    for stage in stages:
        t0 = time.perf_counter()
        print(f"== {stage}", flush=True)
        part = STAGES[stage](ctx)
        if args.out.exists():  # another shard may have written its traits meanwhile: merge per key
            results = {**json.loads(args.out.read_text()), **{k: v for k, v in results.items() if k not in STAGES}}
        results[stage] = {**results.get(stage, {}), **part}
        ctx["results"] = results
        results.setdefault("seconds", {})[f"{stage}{args.shard}"] = round(time.perf_counter() - t0, 1)
        results["summary"] = summary(results)
        save_results(results, args.out)
    print(f"wrote {args.out} ({time.perf_counter() - start:.0f}s)")


if __name__ == "__main__":
    main()
