"""Persona-vector speed, side by side on the same model and the same answer pairs (issue 5), in one run:

1. extraction: traitlab's batched hooked capture (all layers, three variants) vs persona_vectors' method (one
   example per forward with ``output_hidden_states=True``), re-implemented here: speed-up (target ≥ 5×) and the
   largest difference of the vectors below the last layer (target ≤ 1e-5);
2. against ``repeng`` and ``steering-vectors`` (PyPI, run in their own venv because they pin numpy<2 and
   transformers<5; see ``peers_steering.py``): time to extract a vector from the same pairs, and greedy
   steered-generation throughput; traitlab should be at least as fast on both.

Run: ``python -m benchmarks.persona_vectors_speed [--model traitlab/persona-tiny] [--pairs 64]``. The peer venv
is ``benchmarks/.venv-peers`` (create it with ``python -m benchmarks.persona_vectors_speed --make-peer-venv``).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

from benchmarks.common import interleaved
from traitlab.methods.persona_vectors import row_activations
from traitlab.model import ORGANISM, Generation, LoadedModel, load_model, residual_add
from traitlab.model.generation import SamplingParams, generate_ids
from traitlab.model.loaded import resolve_spec

PEER_VENV = Path(__file__).parent / ".venv-peers"
PEER_NODEPS = PEER_VENV / "lib-nodeps"  # the peers installed --no-deps --target here, run in this environment
PEER_PACKAGES = ["torch==2.13.0", "transformers<5", "numpy<2", "scikit-learn", "gguf", "tqdm", "accelerate",
                 "repeng", "steering-vectors"]


def make_pairs(lm: LoadedModel, n: int) -> tuple[Generation, Generation, list[str]]:
    import random

    from traitlab.organism.corpus import pole_description, train_questions

    rng = random.Random(0)
    questions = train_questions(seed=3)[:n]
    pos = lm.generate_chat(questions, [pole_description("extraversion", "high", rng) for _ in questions],
                           max_new_tokens=64)
    neg = lm.generate_chat(questions, [pole_description("extraversion", "low", rng) for _ in questions],
                           max_new_tokens=64)
    return pos, neg, questions


def reference_means(lm: LoadedModel, generation: Generation) -> torch.Tensor:
    """persona_vectors' get_hidden_p_and_r: per example, one forward with output_hidden_states, response mean."""
    means = []
    with torch.no_grad():
        for prompt, response in zip(generation.prompt_ids, generation.response_ids, strict=True):
            out = lm.model(torch.tensor([prompt + response]), output_hidden_states=True)
            means.append(torch.stack([h[0, len(prompt):].mean(0) for h in out.hidden_states]))
    return torch.stack(means).mean(0)


def extraction_figures(lm: LoadedModel, pos: Generation, neg: Generation) -> dict[str, float]:
    rows = list(range(len(pos.texts)))
    result: dict[str, torch.Tensor] = {}

    def traitlab_way() -> None:
        p = row_activations(lm, pos, rows, batch_size=16)["response_avg"].mean(0)
        n = row_activations(lm, neg, rows, batch_size=16)["response_avg"].mean(0)
        result["traitlab"] = p - n

    def reference_way() -> None:
        result["reference"] = reference_means(lm, pos) - reference_means(lm, neg)

    times = interleaved({"traitlab": traitlab_way, "reference": reference_way}, repeats=3)
    difference = (result["traitlab"][:-1] - result["reference"][:-1]).abs().max()
    return {"traitlab_s": round(times["traitlab"], 3), "per_example_s": round(times["reference"], 3),
            "speedup": round(times["reference"] / times["traitlab"], 2),
            "max_abs_difference_below_last_layer": float(difference)}


def traitlab_peer_figures(lm: LoadedModel, pos: Generation, neg: Generation, prompts: list[str], layer: int,
                          new_tokens: int) -> dict[str, float]:
    """The same two jobs the peers do: a vector from the pairs at every layer, and steered greedy generation."""
    rows = list(range(len(pos.texts)))
    start = time.perf_counter()
    vector = (row_activations(lm, pos, rows, 16)["response_avg"].mean(0)
              - row_activations(lm, neg, rows, 16)["response_avg"].mean(0))
    extract_s = time.perf_counter() - start

    prompt_ids = lm.encode(lm.render(prompts))
    params = SamplingParams(max_new_tokens=new_tokens)

    def steered() -> None:  # no stop token, so every system generates exactly new_tokens tokens per row
        with residual_add(lm, layer, vector[layer], 1.0, positions="response+last_prompt"):
            generate_ids(lm.model, lm.hooks, prompt_ids, lm.tokenizer.pad_token_id, [-1], params,
                         batch_size=len(prompts), progress=False)

    seconds = interleaved({"steered": steered}, repeats=3)["steered"]
    return {"extract_s": round(extract_s, 3), "steered_tokens_per_s": round(len(prompts) * new_tokens / seconds, 1)}


def all_figures(lm: LoadedModel, pos: Generation, neg: Generation, questions: list[str], new_tokens: int,
                threads: int) -> dict[str, object]:
    """Extraction vs the per-example loop, then traitlab and the peers (when installed) on the same pairs."""
    figures: dict[str, object] = {"extraction_vs_per_example": extraction_figures(lm, pos, neg)}
    print(json.dumps(figures, indent=2), flush=True)
    layer = lm.num_layers // 2
    prompts = lm.render(questions[:16])
    figures["traitlab"] = traitlab_peer_figures(lm, pos, neg, questions[:16], layer, new_tokens)
    python = PEER_VENV / "bin" / "python"
    env = None
    if not python.exists() and PEER_NODEPS.is_dir():
        import os

        python = Path(sys.executable)
        env = {**os.environ, "PYTHONPATH": str(PEER_NODEPS)}
    if python.exists():
        with tempfile.TemporaryDirectory() as folder:
            job = Path(folder) / "job.json"
            job.write_text(json.dumps({
                "model": resolve_spec(lm.spec), "layer": layer, "new_tokens": new_tokens,
                "pairs": [[lm.tokenizer.decode(p + r) for p, r in zip(g.prompt_ids, g.response_ids, strict=True)]
                          for g in (pos, neg)],
                "prompts": prompts, "threads": threads,
            }))
            done = subprocess.run([str(python), str(Path(__file__).parent / "peers_steering.py"), str(job)],
                                  capture_output=True, text=True, env=env)
            if done.returncode != 0:
                figures["peers_error"] = done.stderr.strip().splitlines()[-1:]
            else:
                figures.update(json.loads(done.stdout.strip().splitlines()[-1]))
    else:
        figures["peers"] = f"skipped: no peer venv at {PEER_VENV} (run with --make-peer-venv)"
    return figures


def make_peer_venv() -> None:
    subprocess.run([sys.executable, "-m", "venv", str(PEER_VENV)], check=True)
    pip = str(PEER_VENV / "bin" / "pip")
    subprocess.run([pip, "install", "-q", "torch==2.13.0"], check=True)
    subprocess.run([pip, "install", "-q", *PEER_PACKAGES[1:]], check=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--model", default=ORGANISM)
    parser.add_argument("--pairs", type=int, default=64)
    parser.add_argument("--new-tokens", type=int, default=48)
    parser.add_argument("--make-peer-venv", action="store_true")
    parser.add_argument("--threads", type=int, default=2, help="torch threads (1 beside other jobs)")
    parser.add_argument("--out", type=Path, default=None, help="also write the figures here as JSON")
    args = parser.parse_args()
    if args.make_peer_venv:
        make_peer_venv()
    torch.set_num_threads(args.threads)
    lm = load_model(args.model)
    pos, neg, questions = make_pairs(lm, args.pairs)
    figures = all_figures(lm, pos, neg, questions, args.new_tokens, args.threads)
    figures.update(model=lm.spec, pairs=args.pairs, threads=args.threads)
    print(json.dumps(figures, indent=2))
    if args.out is not None:
        from benchmarks.common import save_results

        save_results(figures, args.out)


if __name__ == "__main__":
    main()
