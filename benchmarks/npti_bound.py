"""How far NPTI's own neurons can move the organism at best (issue 6): NPTI selects neurons from its statistics
(default threshold 0.1, boost + clamp at generated tokens); here the boost sizes of exactly those neurons are
fitted by gradient descent (kept ≥ 0 through a softplus, clamps kept, model frozen) to maximise the likelihood
of the persona-prompted model's own answers with no system prompt. If even fitted boosts cannot reach half of
the prompted shift, no γ, f(δ) or boost fraction of NPTI's formula can. For contrast, the optimised persona
vector (one unrestricted residual vector at one layer, ``vectors extract --optimize-layers``) reaches extraversion
high .69–.88 and conscientiousness low .74 on the same organism.

Run: ``python -m benchmarks.npti_bound [--poles extraversion_high,...] [--out results.json]`` (about 1 min a pole
on 2 idle cores).
"""

from __future__ import annotations

import argparse
import random
import statistics
import time
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from benchmarks.common import save_results
from traitlab.evaluation.judges import PerplexityCoherenceJudge
from traitlab.methods.neurons import NeuronInduction, fit
from traitlab.methods.persona_optimize import answer_nll, bare_batch
from traitlab.model import ORGANISM, LoadedModel, load_model
from traitlab.organism import OracleScorer
from traitlab.organism.corpus import fill_question, heldout_questions, question_templates
from traitlab.traits import load_trait


def with_boosts(npti: NeuronInduction, boosts: dict[int, torch.Tensor]) -> NeuronInduction:
    """NPTI's edit at its own neurons and clamps, with other boost sizes per block."""
    return NeuronInduction({b: (index, boosts[b]) for b, (index, _) in npti.boosts.items()}, npti.clamps,
                           options=npti.options)


def fitted_boosts(lm: LoadedModel, npti: NeuronInduction, questions: list[str], answers: list[str],
                  steps: int = 150, lr: float = 0.1) -> tuple[dict[int, torch.Tensor], float]:
    """Boost sizes of NPTI's neurons (softplus of a free parameter, started at NPTI's γ = 1 sizes) fitted to the
    answers; returns them and the final loss."""
    answer_ids = [lm.tokenizer(a, add_special_tokens=False)["input_ids"] for a in answers]
    raw = {b: torch.log(torch.expm1(v.clamp(min=1e-3))).requires_grad_(True) for b, (_, v) in npti.boosts.items()}
    optimizer = torch.optim.Adam(list(raw.values()), lr=lr)
    generator = torch.Generator().manual_seed(0)
    for parameter in lm.model.parameters():
        parameter.requires_grad_(False)
    for _ in range(steps):
        rows = torch.randint(len(questions), (32,), generator=generator).tolist()
        batch = bare_batch(lm, [questions[i] for i in rows], [answer_ids[i] for i in rows])
        loss = answer_nll(lm, batch, with_boosts(npti, {b: F.softplus(v) for b, v in raw.items()}).applied(lm))
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    return {b: F.softplus(v).detach() for b, v in raw.items()}, round(float(loss.detach()), 3)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--poles", default="extraversion_high,conscientiousness_low,neuroticism_high,openness_high")
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/npti_bound.json"))
    args = parser.parse_args()
    torch.set_num_threads(2)
    lm, scorer = load_model(ORGANISM), OracleScorer()
    judge = PerplexityCoherenceJudge(lm)
    held_out = heldout_questions(seed=11)[:40]
    base_ppl = statistics.median(p for p in judge.perplexities(
        held_out, lm.generate_chat(held_out, max_new_tokens=80, progress=False).texts) if p)
    rng = random.Random(0)
    train = [fill_question(rng.choice(question_templates("train")), rng)[0] for _ in range(192)]
    results: dict[str, Any] = {}
    for name in args.poles.split(","):
        start = time.perf_counter()
        trait, pole = name.rsplit("_", 1)
        spec = load_trait(name)

        def oriented(texts: list[str], trait: str = trait, pole: str = pole) -> float:
            scores = [scorer.trait_score(t, trait) for t in texts]
            return statistics.fmean(s if pole == "high" else 100 - s for s in scores)

        npti = fit(lm, spec, progress=False)
        answers = lm.generate_chat(train, spec.positive_prompts(len(train)), max_new_tokens=80, temperature=1.0,
                                   progress=False).texts
        prompted = oriented(lm.generate_chat(held_out, spec.positive_prompts(len(held_out)), max_new_tokens=80,
                                             progress=False).texts)
        fitted, loss = fitted_boosts(lm, npti, train, answers)
        rows = {}
        for label, boosts in (("npti, γ = 1", {b: v for b, (_, v) in npti.boosts.items()}), ("fitted", fitted),
                              ("fitted × 0.5", {b: 0.5 * v for b, v in fitted.items()})):
            with with_boosts(npti, boosts).applied(lm):
                texts = lm.generate_chat(held_out, max_new_tokens=80, progress=False).texts
            ppl = statistics.median(p for p in judge.perplexities(held_out, texts) if p) / base_ppl
            rows[label] = {"fraction_of_prompt_shift": round((oriented(texts) - 50) / (prompted - 50), 2),
                           "ppl_ratio": round(ppl, 2)}
        results[name] = {"boosted": sum(len(i) for i, _ in npti.boosts.values()),
                         "clamped": sum(len(i) for i in npti.clamps.values()), "final_loss": loss, **rows,
                         "seconds": round(time.perf_counter() - start, 1)}
        print(name, results[name], flush=True)
    save_results(results, args.out)


if __name__ == "__main__":
    main()
