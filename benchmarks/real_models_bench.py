"""Real models offline (issue 19), measured in one run on SmolLM2-135M-Instruct (and Gemma-3-270m if installed):

1. cold GGUF load (dequantize + write the cache folder + load) vs cached load, in seconds, and the ratio;
2. greedy generation with an active zero-coefficient residual hook vs none (target ≥ 0.97), and a one-layer
   capture during a batched forward vs the plain forward (target ≥ 0.95), via ``core_bench.bench``;
3. batched greedy generation throughput at batch 1, 8 and 32 (32 chat prompts, 32 new tokens each, no early
   stop), in generated tokens per second.

Cold loads use a fresh temporary ``TRAITLAB_CACHE``; the user's cache is not touched.
Run: ``python -m benchmarks.real_models_bench`` (about 5 minutes on 2 idle cores).
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

import torch

from benchmarks.common import save_results
from benchmarks.core_bench import bench
from traitlab.model import LoadedModel, load_model
from traitlab.model.builtins import BUILTIN_MODELS
from traitlab.model.generation import SamplingParams, generate_ids

PROMPTS = ["How was your weekend?", "What do you think about parties?", "Tell me about your favourite book.",
           "How do you handle stress?", "Describe your ideal holiday.", "What would you do with a free day?",
           "How do you make decisions?", "What is your morning routine?"]


def load_times(name: str) -> dict[str, float]:
    """Seconds for a cold load (empty cache) and a cached load of built-in ``name``."""
    previous = os.environ.get("TRAITLAB_CACHE")
    with tempfile.TemporaryDirectory() as cache:
        os.environ["TRAITLAB_CACHE"] = cache
        try:
            start = time.perf_counter()
            load_model(name, device="cpu")
            cold = time.perf_counter() - start
            start = time.perf_counter()
            load_model(name, device="cpu")
            cached = time.perf_counter() - start
        finally:
            if previous is None:
                os.environ.pop("TRAITLAB_CACHE")
            else:
                os.environ["TRAITLAB_CACHE"] = previous
    print(f"[{name}] cold GGUF load {cold:.1f} s, cached load {cached:.2f} s, ratio {cold / cached:.0f}× "
          f"(target cached ≤ 3 s)")
    return {"cold_s": cold, "cached_s": cached, "ratio": cold / cached}


def throughput(lm: LoadedModel, batch_sizes: tuple[int, ...], new_tokens: int = 32) -> dict[str, float]:
    """Generated tokens per second at each batch size, on 32 rendered chat prompts, every row to full length."""
    prompts = lm.encode(lm.render(PROMPTS * 4))
    params = SamplingParams(max_new_tokens=new_tokens)
    figures = {}
    for batch in batch_sizes:
        start = time.perf_counter()
        generate_ids(lm.model, lm.hooks, prompts, lm.tokenizer.pad_token_id, [-1], params, batch_size=batch,
                     progress=False)
        figures[f"batch_{batch}_tok_s"] = len(prompts) * new_tokens / (time.perf_counter() - start)
    print("[throughput] " + ", ".join(f"batch {b}: {figures[f'batch_{b}_tok_s']:.0f} tok/s" for b in batch_sizes))
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/real_models.json"))
    args = parser.parse_args()
    torch.set_num_threads(2)
    load_model("traitlab/persona-tiny")  # import transformers and torch before anything is timed
    results: dict[str, dict[str, float]] = {}
    for name in ("smollm2-135m-instruct", "gemma-3-270m"):
        if BUILTIN_MODELS[name].installed():
            results[f"load_{name}"] = load_times(name)
        else:
            print(f"[{name}] not installed; skipped ({BUILTIN_MODELS[name].install_command})")
    smollm2 = load_model("smollm2-135m-instruct", device="cpu")
    results["hooks_smollm2"] = bench(smollm2, "smollm2-135m-instruct", batch=8, prompt_len=32, new_tokens=32)
    results["throughput_smollm2"] = throughput(smollm2, (1, 8, 32))
    save_results(results, args.out)
    print(f"results: {args.out}")


if __name__ == "__main__":
    main()
