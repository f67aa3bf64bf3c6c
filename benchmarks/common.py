"""Helpers shared by benchmarks: the 135M-shaped random Llama, timing by interleaved repeats, organism
fine-tunes, and writing a results file."""

from __future__ import annotations

import json
import statistics
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from traitlab.model import LoadedModel, load_model
from traitlab.model.tiny import tiny_tokenizer

SMOL_SHAPE = dict(vocab_size=49152, hidden_size=576, intermediate_size=1536, num_hidden_layers=30,
                  num_attention_heads=9, num_key_value_heads=3, max_position_embeddings=2048,
                  tie_word_embeddings=True)


def smol_shaped_llama(seed: int = 0) -> LoadedModel:
    """A random-init Llama with SmolLM-135M's shape (hidden 576, 30 layers, intermediate 1536, vocab 49152)."""
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(seed)
    return LoadedModel(LlamaForCausalLM(LlamaConfig(**SMOL_SHAPE)), tiny_tokenizer(), spec="random-135M-llama")


def organism_or_none() -> LoadedModel | None:
    try:
        return load_model("traitlab/persona-tiny")
    except Exception:
        return None


def interleaved(cases: dict[str, Callable[[], object]], repeats: int = 5, warmup: int = 1) -> dict[str, float]:
    """Median wall time of each case, running the cases round-robin so drift hits all of them alike."""
    for _ in range(warmup):
        for fn in cases.values():
            fn()
    times: dict[str, list[float]] = {name: [] for name in cases}
    for _ in range(repeats):
        for name, fn in cases.items():
            start = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - start)
    return {name: statistics.median(values) for name, values in times.items()}


def organism_rows(lm: LoadedModel, chats: list[tuple[list[dict[str, str]], int, bool]],
                  max_len: int = 256) -> list[tuple]:
    """Training rows ``(ids, mask, repeat negatives, is_likert)`` for the organism's loss from
    ``(messages, context_replies, is_likert)``: the first ``context_replies`` assistant turns are context, not
    targets."""
    from itertools import groupby

    from traitlab.organism.tokenizer import encode_chat
    from traitlab.organism.train import repeat_negatives, sentence_markers

    tok = lm.tokenizer.backend_tokenizer
    ends, first = sentence_markers(tok)
    rows = []
    for messages, context_replies, likert in chats:
        ids, mask = encode_chat(tok, messages)
        if context_replies:
            runs = [(target, len(list(group))) for target, group in groupby(mask)]
            mask, seen = [], 0
            for target, length in runs:
                seen += target
                mask += [target and seen > context_replies] * length
        ids, mask = ids[:max_len], mask[:max_len]
        rows.append((ids, mask, repeat_negatives(ids, mask, ends, first), likert))
    return rows


def finetune_organism(lm: LoadedModel, rows: list[tuple], steps: int, lr: float, seed: int) -> None:
    """``steps`` steps of the organism's training loss (assistant cross-entropy, unlikelihood and the Likert
    mean, bf16 autocast, batch 48, 50 warm-up steps, cosine to 5% of ``lr``) on ``rows``, in place."""
    import math

    from traitlab.organism.tokenizer import PAD, special_ids
    from traitlab.organism.train import _batches, _collate, assistant_loss

    pad = special_ids(lm.tokenizer.backend_tokenizer)[PAD]
    model = lm.model
    model.requires_grad_(True)
    opt = torch.optim.AdamW(model.parameters(), lr=lr, betas=(0.9, 0.95), weight_decay=0.05)
    model.train()
    for step, batch in enumerate(_batches([len(r[0]) for r in rows], 48, steps, seed)):
        for group in opt.param_groups:
            group["lr"] = lr * min(1, (step + 1) / 50) * (0.05 + 0.475 * (1 + math.cos(math.pi * step / steps)))
        with torch.autocast("cpu", dtype=torch.bfloat16):
            loss = assistant_loss(model, *_collate([rows[i] for i in batch], pad), 1.0, 2.0)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        opt.zero_grad(set_to_none=True)
    model.eval()
    model.requires_grad_(False)


def save_results(results: dict[str, Any], out: Path) -> None:
    """Write ``results`` as indented JSON to ``out``, creating its folder."""
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=2))
