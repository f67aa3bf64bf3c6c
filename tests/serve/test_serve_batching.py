"""Batching: concurrent requests with mixed personas are decoded together and each gets exactly what it gets
alone; weight-space personas never share a batch; batch-invariant decoding and cache surgery in-process."""

from __future__ import annotations

import concurrent.futures
import random

import pytest
import torch

pytest.importorskip("fastapi")
pytest.importorskip("uvicorn")

from traitlab.model.kvcache import cache_kwargs, output_cache
from traitlab.model.tiny import tiny_model
from traitlab.serve import batching
from traitlab.serve.engine import _find_stop, _holdback

QUESTIONS = ["Hello there!", "What do you do on weekends?", "Tell me about your friends.", "Plans for Friday?",
             "A friend is late. What now?", "Describe your ideal holiday in a few words.", "Hi", "How are you?"]


def mixed_requests(n: int, seed: int = 0) -> list[dict]:
    rng = random.Random(seed)
    bodies = []
    for i in range(n):
        persona = {"warmth": rng.choice([0.0, 1.5, -2.0]), "bold": rng.choice([0.0, 2.0]),
                   "heavy": rng.choice([0.0, 0.0, 1.0, -1.0]), "cheer": rng.choice([0.0, 1.0])}
        bodies.append({"messages": [{"role": "user", "content": QUESTIONS[i % len(QUESTIONS)] + " " * (i % 3)}],
                       "temperature": 0, "max_tokens": rng.choice([8, 16, 24, 32]), "ignore_eos": i % 4 != 0,
                       "persona": persona, "logprobs": i % 2 == 0, "top_logprobs": 3 if i % 2 == 0 else None})
    return bodies


def essence(data: dict) -> tuple:
    choice = data["choices"][0]
    logprobs = choice["logprobs"]["content"] if choice["logprobs"] else None
    return choice["message"]["content"], choice["finish_reason"], data["usage"]["completion_tokens"], logprobs


def test_32_concurrent_mixed_persona_requests_equal_alone(server):
    bodies = mixed_requests(32)
    with server.client() as c:
        alone = []
        for body in bodies:
            response = server.chat(c, **body)
            assert response.status_code == 200, response.text
            alone.append(essence(response.json()))
        before = c.get("/v1/stats").json()

    def one(body: dict) -> tuple:
        with server.client() as client:
            response = server.chat(client, **body)
        assert response.status_code == 200, response.text
        return essence(response.json())

    with concurrent.futures.ThreadPoolExecutor(max_workers=32) as pool:
        together = list(pool.map(one, bodies))
    with server.client() as c:
        after = c.get("/v1/stats").json()
    for i, (a, b) in enumerate(zip(alone, together, strict=True)):
        assert a == b, f"request {i} differs batched vs alone: {a[0]!r} vs {b[0]!r}"
    assert len({a[0] for a in alone}) > 8  # the personas really differ
    assert after["max_rows_seen"] > 4  # really batched
    assert after["weight_switches"] > before["weight_switches"]  # weight-space groups ran in turn
    assert after["completed"] - before["completed"] == 32


def test_persona_rows_do_not_leak_into_neighbours(server):
    """A steered request next to unsteered ones: the unsteered ones are unchanged, the steered one differs."""
    plain = {"messages": [{"role": "user", "content": "Hello there!"}], "temperature": 0, "max_tokens": 16,
             "ignore_eos": True}
    steered = {**plain, "persona": {"warmth": 3.0, "bold": -2.0}}
    with server.client() as c:
        alone_plain = essence(server.chat(c, **plain).json())
        alone_steered = essence(server.chat(c, **steered).json())

    def one(body: dict) -> tuple:
        with server.client() as client:
            return essence(server.chat(client, **body).json())

    with concurrent.futures.ThreadPoolExecutor(max_workers=6) as pool:
        results = list(pool.map(one, [plain, steered, plain, steered, plain, plain]))
    assert alone_plain != alone_steered
    assert results == [alone_plain, alone_steered, alone_plain, alone_steered, alone_plain, alone_plain]


@pytest.fixture
def invariant_llama(one_torch_thread):
    lm = tiny_model("llama")
    invariance = batching.BatchInvariance(lm.model)
    invariance.install()
    yield lm, invariance
    invariance.remove()


@torch.no_grad()
def decode(lm, invariance, prompts: list[list[int]], steps: int) -> torch.Tensor:
    """Per-request prefill, merged caches, batched greedy decode: ``[rows, steps + 1, vocab]`` logits."""
    cache, first = None, []
    for ids in prompts:
        x = torch.tensor([ids])
        out = lm.model(input_ids=x, attention_mask=torch.ones_like(x), use_cache=True)
        cache = batching.merge_caches(cache, output_cache(out))
        first.append(out.logits[0, -1])
    lengths = [len(p) for p in prompts]
    logits = [torch.stack(first)]
    for _ in range(steps):
        width = batching.cache_width(cache) + 1
        mask = torch.zeros(len(prompts), width, dtype=torch.long)
        for i, n in enumerate(lengths):
            mask[i, width - n - 1:] = 1
        with invariance.decoding([n + 1 for n in lengths]):
            out = lm.model(input_ids=logits[-1].argmax(-1, keepdim=True), attention_mask=mask,
                           position_ids=torch.tensor([[n] for n in lengths]), use_cache=True,
                           **cache_kwargs(lm.model, cache))
        lengths = [n + 1 for n in lengths]
        logits.append(out.logits[:, -1])
    return torch.stack(logits, dim=1)


def test_batch_invariant_decoding_is_bit_exact(invariant_llama):
    lm, invariance = invariant_llama
    gen = torch.Generator().manual_seed(0)
    prompts = [torch.randint(3, 250, (4 + 5 * i,), generator=gen).tolist() for i in range(7)]
    alone = [decode(lm, invariance, [p], 6)[0] for p in prompts]
    for subset in ([0, 1, 2, 3, 4, 5, 6], [6, 0, 3], [2, 5]):
        together = decode(lm, invariance, [prompts[i] for i in subset], 6)
        for row, i in enumerate(subset):
            assert torch.equal(together[row], alone[i]), (subset, i)


def test_select_rows_drops_rows_and_padding(invariant_llama):
    lm, _ = invariant_llama
    a, b = [5, 6, 7], [8, 9, 10, 11, 12, 13]
    caches = []
    for ids in (a, b):
        x = torch.tensor([ids])
        caches.append(output_cache(lm.model(input_ids=x, attention_mask=torch.ones_like(x), use_cache=True)))
    keys_a, keys_b = caches[0].layers[0].keys.clone(), caches[1].layers[0].keys.clone()
    merged = batching.merge_caches(caches[0], caches[1])
    assert batching.mergeable(merged) and batching.cache_width(merged) == 6
    assert torch.equal(merged.layers[0].keys[0:1, :, 3:], keys_a)
    assert torch.count_nonzero(merged.layers[0].keys[0, :, :3]) == 0  # left padding
    assert torch.equal(merged.layers[0].keys[1:2], keys_b)
    batching.select_rows(merged, [0], drop_columns=3)
    assert batching.cache_width(merged) == 3 and merged.layers[0].keys.shape[0] == 1
    assert torch.equal(merged.layers[0].keys, keys_a)


def test_attention_falls_back_outside_decoding(invariant_llama):
    lm, _ = invariant_llama
    plain = tiny_model("llama")
    ids = torch.tensor([[5, 6, 7, 8], [0, 0, 9, 10]])
    mask = torch.tensor([[1, 1, 1, 1], [0, 0, 1, 1]])
    with torch.no_grad():
        assert torch.equal(lm.model(input_ids=ids, attention_mask=mask).logits,
                           plain.model(input_ids=ids, attention_mask=mask).logits)


@pytest.mark.parametrize("text,stops,expected", [("hello wor", ["world"], 3), ("abc", ["x"], 0), ("abc", [], 0),
                                                  ("ab\ufffd", [], 1), ("say STO", ["STOP", "TOP!"], 3)])
def test_stop_string_holdback(text, stops, expected):
    assert _holdback(text, stops) == expected


def test_find_stop():
    assert _find_stop("one two three", ["two", "three"], 0) == 4
    assert _find_stop("one two", ["zzz"], 0) is None
