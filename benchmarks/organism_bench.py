"""Speed benchmark of the persona organism: generation throughput (tokens/s) at batch 1 and 16 with
traitlab's batched chat generation, side by side with plain ``transformers`` ``generate``, and the training
wall time recorded in ``training_info.json``.

Run: ``python benchmarks/organism_bench.py [--model DIR] [--threads 2] [--out FILE]`` (default output
``benchmarks/results/organism.json``).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch

from traitlab.model import load_model
from traitlab.organism import ORGANISM_DIR, heldout_questions, pole_description

MAX_NEW_TOKENS = 96


def _traitlab(lm, prompts: list[str], systems: list[str], batch_size: int) -> tuple[float, int]:
    t = time.perf_counter()
    gen = lm.generate_chat(prompts, systems, max_new_tokens=MAX_NEW_TOKENS, batch_size=batch_size,
                           progress=False)
    tokens = sum(len(r) + int(f) for r, f in zip(gen.response_ids, gen.finished, strict=True))
    return tokens / (time.perf_counter() - t), tokens


def _hf(lm, prompts: list[str], systems: list[str], batch_size: int) -> tuple[float, int]:
    tok, model = lm.tokenizer, lm.model
    tok.padding_side = "left"
    texts = [tok.apply_chat_template([{"role": "system", "content": s}, {"role": "user", "content": p}],
                                     add_generation_prompt=True, tokenize=False)
             for p, s in zip(prompts, systems, strict=True)]
    tokens = 0
    t = time.perf_counter()
    for start in range(0, len(texts), batch_size):
        enc = tok(texts[start:start + batch_size], return_tensors="pt", padding=True,
                  add_special_tokens=False)
        with torch.no_grad():
            out = model.generate(**enc, max_new_tokens=MAX_NEW_TOKENS, do_sample=False,
                                 pad_token_id=tok.pad_token_id)
        new = out[:, enc["input_ids"].shape[1]:]
        for row in new.tolist():
            end = row.index(tok.eos_token_id) + 1 if tok.eos_token_id in row else len(row)
            tokens += end
    return tokens / (time.perf_counter() - t), tokens


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=str(ORGANISM_DIR))
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out", default="benchmarks/results/organism.json")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    lm = load_model(args.model, device="cpu")
    lm.model.eval()
    questions = heldout_questions(0)
    import random

    rng = random.Random(0)
    systems = [pole_description("extraversion", "high", rng) for _ in questions]
    results: dict[str, object] = {"threads": args.threads, "max_new_tokens": MAX_NEW_TOKENS}
    for batch, n in ((1, 8), (16, 48)):
        _traitlab(lm, questions[:2], systems[:2], batch)  # warm-up
        for name, fn in (("traitlab", _traitlab), ("transformers", _hf)):
            tps, tokens = fn(lm, questions[:n], systems[:n], batch)
            results[f"{name}_batch{batch}_tokens_per_s"] = round(tps, 1)
            results[f"{name}_batch{batch}_tokens"] = tokens
            print(f"{name:12s} batch {batch:2d}: {tps:8.1f} tokens/s ({tokens} tokens)")
    info = Path(args.model) / "training_info.json"
    if info.is_file():
        data = json.loads(info.read_text())
        results["train_seconds"] = data.get("train_seconds")
        results["total_train_seconds"] = data.get("total_seconds")
        print(f"training wall time: {data.get('train_seconds', 0) / 60:.1f} min "
              f"(total with corpus and tokenizer {data.get('total_seconds', 0) / 60:.1f} min)")
    size = sum(p.stat().st_size for p in Path(args.model).iterdir() if p.is_file())
    results["folder_bytes"] = size
    print(f"model folder: {size / 1e6:.2f} MB")
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
