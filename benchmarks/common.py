"""Helpers shared by benchmarks: the 135M-shaped random Llama, timing by interleaved repeats."""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable

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
