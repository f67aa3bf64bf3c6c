"""Core speed figures (issue 2), as ratios measured in one run:

1. greedy generation with an active zero-coefficient residual hook vs no hook (target ≥ 0.97);
2. one-layer mean capture during a batched forward vs the plain batched forward (target ≥ 0.95);
3. the same capture vs one-example-per-forward ``output_hidden_states=True`` (persona_vectors' way): speed-up.

Run: ``python benchmarks/core_bench.py [--model organism|smol|both]``.
"""

from __future__ import annotations

import argparse

import torch

from benchmarks.common import interleaved, organism_or_none, smol_shaped_llama
from traitlab.model import LoadedModel, capture_residual, residual_add, teacher_forced
from traitlab.model.generation import SamplingParams, generate_ids, pack


def bench(lm: LoadedModel, name: str, batch: int, prompt_len: int, new_tokens: int) -> dict[str, float]:
    """Print and return the hook and capture ratios on ``lm``."""
    torch.manual_seed(0)
    vocab = min(lm.model.config.vocab_size, 250)
    prompts = [torch.randint(3, vocab, (prompt_len - (i % 5),)).tolist() for i in range(batch)]
    params = SamplingParams(max_new_tokens=new_tokens)
    pad = lm.tokenizer.pad_token_id
    layer = lm.num_layers // 2

    def generate() -> None:
        generate_ids(lm.model, lm.hooks, prompts, pad, [-1], params, batch_size=batch, progress=False)

    def generate_hooked() -> None:
        with residual_add(lm, layer, torch.zeros(lm.hidden_size), 0.0, positions="response"):
            generate()

    gen = interleaved({"plain": generate, "hooked": generate_hooked}, repeats=5)
    tokens = batch * new_tokens
    print(f"[{name}] greedy generation batch {batch}, {new_tokens} new tokens: "
          f"plain {tokens / gen['plain']:.0f} tok/s, zero-coef hook {tokens / gen['hooked']:.0f} tok/s, "
          f"ratio {gen['plain'] / gen['hooked']:.3f} (target ≥ 0.97)")

    responses = [torch.randint(3, vocab, (new_tokens,)).tolist() for _ in range(batch)]
    input_ids, attention_mask, roles = pack(prompts, responses, pad)

    def forward() -> None:
        teacher_forced(lm, input_ids, attention_mask, roles)

    def forward_capture() -> None:
        with capture_residual(lm, [layer], positions="response"):
            teacher_forced(lm, input_ids, attention_mask, roles)

    def per_example_hidden_states() -> None:
        with torch.no_grad():
            for row in range(batch):
                keep = attention_mask[row].bool()
                out = lm.model(input_ids[row, keep].unsqueeze(0), output_hidden_states=True)
                response = roles[row, keep] == 2
                out.hidden_states[layer][0, response].mean(0)

    fwd = interleaved({"plain": forward, "capture": forward_capture, "per_example": per_example_hidden_states},
                      repeats=5)
    print(f"[{name}] batched forward of {batch}×{input_ids.shape[1]} tokens: one-layer capture / plain "
          f"throughput ratio {fwd['plain'] / fwd['capture']:.3f} (target ≥ 0.95); speed-up over per-example "
          f"output_hidden_states {fwd['per_example'] / fwd['capture']:.1f}×")
    return {"generation_tok_s": tokens / gen["plain"], "hooked_generation_ratio": gen["plain"] / gen["hooked"],
            "capture_forward_ratio": fwd["plain"] / fwd["capture"],
            "capture_speedup_over_per_example": fwd["per_example"] / fwd["capture"]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--model", choices=["organism", "smol", "both"], default="both")
    args = parser.parse_args()
    torch.set_num_threads(2)
    if args.model in ("smol", "both"):
        bench(smol_shaped_llama(), "random 135M-shaped llama", batch=8, prompt_len=32, new_tokens=32)
    if args.model in ("organism", "both"):
        organism = organism_or_none()
        if organism is None:
            print("[organism] not built yet; skipped")
        else:
            bench(organism, "traitlab/persona-tiny", batch=16, prompt_len=40, new_tokens=64)


if __name__ == "__main__":
    main()
