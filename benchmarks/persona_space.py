"""Persona space on SmolLM2-135M-Instruct: does the Assistant Axis organise its personas, does pressure move
it, does capping reduce judged drift at no cost, and how do the Big Five poles sit in the space.

    python -m benchmarks.persona_space [--questions 2] [--tokens 24] [--turn-tokens 32] [--cap-layers 8-14]

Steps (all greedy, seed 0; one batched generation per step):

1. ``build``: the shipped 75 roles × the first ``--questions`` neutral questions, ``--tokens`` reply tokens;
   PCA + Assistant Axis at every layer (figures at the middle layer 15 and a few others).
2. Big Five: the 10 pole specs' first positive instructions as roles, same questions; pole vectors
   (pole mean − the roles' mean) against the axis and PC1, and trait vectors (high − low) against each other.
3. Drift: the shipped conversations (4 types × 6 × 3 user turns), per turn the reply's mean projection on the
   axis at layer 15; Cohen's d of each type against bounded tasks. Then the same under ``AxisCapping`` at
   ``--cap-layers`` (floor = 25th percentile of the default assistant's per-token projections).
   Judged drift (judge ``assistant-likeness``, this benchmark's): replies embedded with the static wordllama
   embedder (issue-21's ``StaticEmbedder``), projected on the direction from the mean of the roles' replies
   (step 1) to the default assistant's replies; 1 = like the default assistant, 0 = like the average role;
   drift = 1 − that.
   Coherence: ``ReferenceCoherenceJudge`` (Gemma-3-270m reference LM), calibrated on the uncapped replies.
   Capability: ``mcq_accuracy`` on the shipped 40-question set, uncapped vs capped.
4. Off-target: each trait vector (high − low, layer 15) added at ``--steer-coef`` on reply tokens to the
   neutral questions; all five traits judged by issue-21's ``EmbeddingJudge`` (calibrated on the unsteered
   replies); the change of each trait against the unsteered replies.

Writes ``benchmarks/results/persona_space.json`` and ``persona_space.png``; prints the tables.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch

from traitlab.evaluation.capability import mcq_accuracy
from traitlab.methods.axis_capping import from_space
from traitlab.methods.persona_space import (
    Role,
    RoleSet,
    build,
    cosine_table,
    load_conversations,
    load_roles,
    role_generation,
)
from traitlab.methods.persona_vectors import row_activations
from traitlab.model import load_model, residual_add
from traitlab.monitor.axis import run_conversations, summarize
from traitlab.traits import load_trait

RESULTS = Path(__file__).resolve().parent / "results"
TRAITS = ("openness", "conscientiousness", "extraversion", "agreeableness", "neuroticism")


def layers_arg(text: str) -> list[int]:
    if "-" in text:
        low, high = (int(x) for x in text.split("-"))
        return list(range(low, high + 1))
    return [int(x) for x in text.split(",")]


def assistant_likeness(gen_texts: list[str], roleset: RoleSet, default_texts: list[str]):
    """(score function, name): projection of a reply's static embedding on default − roles, 0..1 scaled."""
    from traitlab.evaluation.embedding_judge import embedder

    emb = embedder()
    n_q = len(roleset.questions)
    d = roleset.default_index
    role_texts = [t for i, t in enumerate(gen_texts) if i // n_q != d]
    roles_c = emb.embed(role_texts).mean(0)
    default_c = emb.embed(default_texts).mean(0)
    w = default_c - roles_c

    def score(texts: list[str]) -> np.ndarray:
        return (emb.embed(texts) - roles_c) @ w / float(w @ w)

    return score


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--questions", type=int, default=2)
    parser.add_argument("--tokens", type=int, default=24)
    parser.add_argument("--turn-tokens", type=int, default=32)
    parser.add_argument("--layer", type=int, default=15)
    parser.add_argument("--cap-layers", default="8-14")
    parser.add_argument("--percentile", type=float, default=25.0)
    parser.add_argument("--steer-coef", type=float, default=2.0)
    parser.add_argument("--skip-offtarget", action="store_true")
    args = parser.parse_args()
    RESULTS.mkdir(exist_ok=True)
    torch.manual_seed(0)
    out: dict = {"settings": vars(args)}
    timings = {}
    lm = load_model("smollm2-135m-instruct")

    # 1. persona space ----------------------------------------------------------------------------------------
    t = time.time()
    full = load_roles()
    roleset = RoleSet(full.roles, full.questions[:args.questions], full.default)
    space, gen = build(lm, roleset, args.layer, args.tokens, progress=False)
    space.save(RESULTS / "persona_space.tl.safetensors")
    timings["build"] = time.time() - t
    ell = args.layer
    proj = space.role_projections(ell)
    order = sorted(range(len(space.names)), key=lambda i: -float(proj[i]))
    cats = sorted(set(space.categories))
    out["space"] = {
        "roles": len(space.names), "questions": len(roleset.questions), "tokens": args.tokens,
        "variance_pc1_5": space.variance[ell, :5].tolist(),
        "cos_axis_pc1_per_layer": {x: round(space.axis_pc1_cosine(x), 3) for x in range(0, space.num_layers + 1, 3)},
        "variance_pc1_per_layer": {x: round(float(space.variance[x, 0]), 3)
                                   for x in range(0, space.num_layers + 1, 3)},
        "top_roles": [(space.names[i], round(float(proj[i]), 2)) for i in order[:8]],
        "bottom_roles": [(space.names[i], round(float(proj[i]), 2)) for i in order[-8:]],
        "category_mean_axis": {c: round(float(np.mean([float(proj[i]) for i, x in enumerate(space.categories)
                                                       if x == c])), 2) for c in cats},
        "default_projection_mean_sd": space.default_stats(ell),
    }
    print(json.dumps(out["space"], indent=1))
    from traitlab.cli.axis import plot_space
    plot_space(space, ell, RESULTS / "persona_space.png")

    # 2. Big Five poles -----------------------------------------------------------------------------------------
    t = time.time()
    poles = [Role(f"{trait}_{pole}", "big5", load_trait(f"{trait}_{pole}").instruction[0].pos)
             for trait in TRAITS for pole in ("high", "low")]
    pole_set = RoleSet(poles, roleset.questions, poles[0].name)
    pole_gen = role_generation(lm, pole_set, args.tokens, progress=False)
    acts = row_activations(lm, pole_gen, range(len(pole_gen.texts)))["response_avg"][:, ell]
    pole_means = torch.nan_to_num(acts).reshape(len(poles), len(roleset.questions), -1).mean(1).double()
    pole_vecs = {p.name: pole_means[i] - space.mean[ell].double() for i, p in enumerate(poles)}
    axis_u, pc1 = space.unit_axis(ell).double(), space.components[ell, 0].double()
    out["big5_poles"] = {name: {"cos_axis": round(float(v @ axis_u / v.norm()), 3),
                                "cos_pc1": round(float(v @ pc1 / v.norm()), 3)} for name, v in pole_vecs.items()}
    trait_vecs = {tr: pole_vecs[f"{tr}_high"] - pole_vecs[f"{tr}_low"] for tr in TRAITS}
    names, cos = cosine_table({**trait_vecs, "assistant_axis": space.axis[ell].double(), "PC1": pc1})
    out["big5_cosines"] = {"names": names, "matrix": [[round(float(x), 3) for x in row] for row in cos]}
    timings["big5"] = time.time() - t
    print(json.dumps(out["big5_poles"], indent=1))
    print("trait-vector cosines:", names)
    for n, row in zip(names, cos, strict=True):
        print(f"{n:>18}", " ".join(f"{float(x):+.2f}" for x in row))

    # 3. drift, capping ------------------------------------------------------------------------------------------
    t = time.time()
    convs = load_conversations()
    flat = [c for kind in convs.values() for c in kind]
    cap = from_space(space, layers_arg(args.cap_layers), args.percentile)
    cap.save(RESULTS / "axis_cap.tl.safetensors")
    runs = {}
    for label, iv in (("uncapped", None), ("capped", cap)):
        readings = run_conversations(lm, flat, space, ell, iv, args.turn_tokens)
        by_type, start = {}, 0
        for kind, kind_convs in convs.items():
            by_type[kind] = readings[start:start + len(kind_convs)]
            start += len(kind_convs)
        runs[label] = by_type
    timings["drift"] = time.time() - t
    default_texts = lm.generate_chat(full.questions, max_new_tokens=args.tokens, progress=False).texts
    likeness = assistant_likeness(gen.texts, roleset, default_texts)
    from traitlab.evaluation.coherence import ReferenceCoherenceJudge, load_reference

    t = time.time()
    reference = ReferenceCoherenceJudge(load_reference())
    base_q = [r["user"] for conv in (c for k in runs["uncapped"].values() for c in k) for r in conv]
    base_r = [r["reply"] for conv in (c for k in runs["uncapped"].values() for c in k) for r in conv]
    coherence = reference.calibrate(base_q, base_r, "uncapped")
    drift_rows = {}
    for label, by_type in runs.items():
        summary = summarize(by_type)
        for row in summary:
            turns = [r for conv in by_type[row["type"]] for r in conv]
            replies = [r["reply"] for r in turns]
            row["judged_drift"] = float(np.mean(1 - likeness(replies)))
            row["coherence"] = float(np.mean([c or 0.0 for c in coherence.score_many(
                [(r["user"], r["reply"], "") for r in turns])]))
        drift_rows[label] = summary
    timings["judges"] = time.time() - t
    t = time.time()
    mcq = {"uncapped": mcq_accuracy(lm), "capped": mcq_accuracy(lm, intervention=cap)}
    timings["mcq"] = time.time() - t
    out["drift"] = drift_rows
    out["capping"] = {"layers": sorted(cap.ranges), "ranges": {k: v for k, v in cap.ranges.items()},
                      "mcq": mcq, "judges": {"drift": "assistant-likeness (wordllama static embeddings)",
                                             "coherence": coherence.name}}
    out["examples"] = {label: {k: [c[-1]["reply"] for c in v[:2]] for k, v in by_type.items()}
                       for label, by_type in runs.items()}
    print(f"{'type':>14} {'run':>9} {'drift':>7} {'per turn':>20} {'d_vs_task':>9} {'judged':>7} {'coher':>6}")
    for label, rows in drift_rows.items():
        for row in rows:
            per_turn = " ".join(f"{v:+.2f}" for v in row["drift_per_turn"])
            print(f"{row['type']:>14} {label:>9} {row['mean_drift']:+7.2f} {per_turn:>20} "
                  f"{row['d_vs_reference']:+9.2f} {row['judged_drift']:7.3f} {row['coherence']:6.1f}")
    print("MCQ accuracy uncapped / capped:", mcq["uncapped"]["accuracy"], mcq["capped"]["accuracy"])

    # 4. off-target steering ------------------------------------------------------------------------------------
    if not args.skip_offtarget:
        from traitlab.evaluation.embedding_judge import default_judge

        t = time.time()
        qs = full.questions
        settings = ["none", *TRAITS]
        vectors = torch.stack([torch.zeros(lm.hidden_size), *(trait_vecs[tr].float() for tr in TRAITS)])
        rows_v = vectors.repeat_interleave(len(qs), 0)
        with residual_add(lm, ell, rows_v, args.steer_coef, "response"):
            steered = lm.generate_chat([q for _ in settings for q in qs], max_new_tokens=args.turn_tokens,
                                       progress=False)
        judge = default_judge()
        base = steered.texts[:len(qs)]
        judge = judge.calibrate(qs, base, "unsteered")
        matrix = judge.score_matrix([q for _ in settings for q in qs], steered.texts)
        per = matrix.reshape(len(settings), len(qs), -1).mean(1)
        delta = per[1:] - per[0]
        out["offtarget"] = {"judge": judge.name, "coef": args.steer_coef, "traits": list(judge.traits),
                            "delta": {tr: dict(zip(judge.traits, map(float, delta[i]), strict=True))
                                      for i, tr in enumerate(TRAITS)},
                            "examples": {s: steered.texts[i * len(qs)] for i, s in enumerate(settings)}}
        timings["offtarget"] = time.time() - t
        print("off-target: rows = steered trait, columns = judged change", judge.traits)
        for i, tr in enumerate(TRAITS):
            print(f"{tr:>18}", " ".join(f"{x:+6.1f}" for x in delta[i]))
    out["timings"] = timings
    (RESULTS / "persona_space.json").write_text(json.dumps(out, indent=1, default=str))
    print("timings", {k: round(v, 1) for k, v in timings.items()})


if __name__ == "__main__":
    main()
