"""Batched chat generation with left padding, KV cache, greedy or seeded sampling, and response-token masks.

Prompts are sorted by length and generated in chunks of ``batch_size`` (less padding), then returned in the
caller's order. Each step feeds one token per row; a row that produced an end-of-turn token is finished, and
the tokens fed after it are masked out (attention mask 0, role PAD), so hooks never see them as response.
"""

from __future__ import annotations

import contextlib
import dataclasses
import inspect
import math
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import torch

from traitlab.errors import ConfigError
from traitlab.model.kvcache import cache_kwargs, output_cache
from traitlab.model.positions import PAD, PROMPT, RESPONSE
from traitlab.progress import track

TokenCallback = Callable[[int, torch.Tensor, torch.Tensor, list[int]], None]
"""``on_token(step, token_ids[b], finished[b], rows)``: called after each decoding step of a chunk; ``rows``
are the caller's indices of the chunk's rows."""

END_OF_TURN_TOKENS = ("<|im_end|>", "<|eot_id|>", "<end_of_turn>", "<|end|>", "<|endoftext|>", "</s>",
                      "<|eot|>")


@dataclasses.dataclass
class Generation:
    """Texts and token ids of a batch of generated replies, in the caller's order."""

    texts: list[str]
    prompt_ids: list[list[int]]
    response_ids: list[list[int]]
    finished: list[bool]
    pad_token_id: int

    def batch(self, rows: Sequence[int] | None = None) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Left-padded ``(input_ids, attention_mask, roles)`` of prompt + response for teacher forcing;
        ``roles == RESPONSE`` is the response-token mask. End-of-turn tokens are not included."""
        chosen = range(len(self.texts)) if rows is None else rows
        return pack([self.prompt_ids[i] for i in chosen], [self.response_ids[i] for i in chosen],
                    self.pad_token_id)


def pack(prompts: Sequence[Sequence[int]], responses: Sequence[Sequence[int]],
         pad_token_id: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Left-pad prompt+response token lists into ``(input_ids, attention_mask, roles)``."""
    width = max(len(p) + len(r) for p, r in zip(prompts, responses, strict=True))
    batch = len(prompts)
    input_ids = torch.full((batch, width), pad_token_id, dtype=torch.long)
    roles = torch.full((batch, width), PAD, dtype=torch.long)
    for row, (prompt, response) in enumerate(zip(prompts, responses, strict=True)):
        start = width - len(prompt) - len(response)
        input_ids[row, start:] = torch.tensor([*prompt, *response], dtype=torch.long)
        roles[row, start:start + len(prompt)] = PROMPT
        roles[row, start + len(prompt):] = RESPONSE
    return input_ids, (roles != PAD).long(), roles


def stop_token_ids(tokenizer: Any, generation_config: Any) -> list[int]:
    """EOS ids from the generation config and tokenizer, plus known end-of-turn tokens in the vocabulary."""
    ids: set[int] = set()
    configured = getattr(generation_config, "eos_token_id", None)
    if isinstance(configured, int):
        ids.add(configured)
    elif configured:
        ids.update(configured)
    if tokenizer.eos_token_id is not None:
        ids.add(tokenizer.eos_token_id)
    vocab = tokenizer.get_vocab()
    ids.update(vocab[token] for token in END_OF_TURN_TOKENS if token in vocab)
    return sorted(ids)


@dataclasses.dataclass(frozen=True)
class SamplingParams:
    max_new_tokens: int = 64
    temperature: float = 0.0
    top_p: float = 1.0
    top_k: int = 0
    seed: int = 0

    def __post_init__(self) -> None:
        if self.max_new_tokens < 1:
            raise ConfigError(f"max_new_tokens must be ≥ 1, got {self.max_new_tokens}")
        if not all(math.isfinite(v) for v in (self.temperature, self.top_p)):
            raise ConfigError(f"temperature and top_p must be finite, got {self.temperature}, {self.top_p}")
        if not -(2**63) <= self.seed < 2**64:
            raise ConfigError(f"seed must fit in 64 bits, got {self.seed}")
        if self.temperature < 0:
            raise ConfigError(f"temperature must be ≥ 0, got {self.temperature}")
        if not 0 < self.top_p <= 1:
            raise ConfigError(f"top_p must be in (0, 1], got {self.top_p}")
        if self.top_k < 0:
            raise ConfigError(f"top_k must be ≥ 0, got {self.top_k}")


def next_tokens(logits: torch.Tensor, params: SamplingParams, generator: torch.Generator | None) -> torch.Tensor:
    """Greedy argmax at temperature 0; else temperature, top-k and nucleus (top-p) sampling."""
    if params.temperature == 0:
        return logits.argmax(-1)
    logits = logits.float() / params.temperature
    if params.top_k:
        kth = logits.topk(min(params.top_k, logits.shape[-1]), dim=-1).values[:, -1:]
        logits = logits.masked_fill(logits < kth, float("-inf"))
    if params.top_p < 1:
        sorted_logits, order = logits.sort(dim=-1, descending=True)
        probs = sorted_logits.softmax(-1)
        drop = probs.cumsum(-1) - probs > params.top_p
        logits = logits.scatter(-1, order, sorted_logits.masked_fill(drop, float("-inf")))
    return torch.multinomial(logits.softmax(-1), 1, generator=generator).squeeze(-1)


def _accepts_logits_to_keep(model: torch.nn.Module) -> bool:
    return "logits_to_keep" in inspect.signature(model.forward).parameters


@contextlib.contextmanager
def _rows_in_flight(tracker: Any, total: int) -> Iterator[Callable[[list[int]], None]]:
    """Publish each chunk's row indices on ``tracker.state.rows`` so per-row edits follow the sorted,
    chunked batches (a tracker without a state, as in plain tests, is left alone)."""
    state = getattr(tracker, "state", None)
    if state is not None:
        state.total_rows = total

    def set_rows(rows: list[int]) -> None:
        if state is not None:
            state.rows = torch.tensor(rows)

    try:
        yield set_rows
    finally:
        if state is not None:
            state.rows = None


def generate_ids(model: torch.nn.Module, tracker: Any, prompt_ids: Sequence[Sequence[int]], pad_token_id: int,
                 stop_ids: Sequence[int], params: SamplingParams, on_token: TokenCallback | None = None,
                 batch_size: int = 32, progress: bool = True,
                 limits: Sequence[int] | None = None) -> tuple[list[list[int]], list[bool]]:
    """Generate from token-id prompts; returns per-row response ids (without the stop token) and whether
    each row stopped on a stop token. ``tracker`` is the model's ``HookEngine`` (phase tracking). ``limits``
    gives each row its own number of new tokens (at most ``params.max_new_tokens``): a row past its limit is
    masked like a finished one, and a chunk stops when all its rows are done, so rows that want fewer tokens
    share a batch with longer ones at no cost to them (greedy: the tokens they get are the same)."""
    if limits is not None and (len(limits) != len(prompt_ids) or any(not 1 <= n <= params.max_new_tokens
                                                                       for n in limits)):
        raise ConfigError(f"limits must give each of the {len(prompt_ids)} rows 1..{params.max_new_tokens} tokens")
    device = next(model.parameters()).device
    order = sorted(range(len(prompt_ids)), key=lambda i: len(prompt_ids[i]))
    chunks = [order[i:i + batch_size] for i in range(0, len(order), batch_size)]
    responses: list[list[int]] = [[] for _ in prompt_ids]
    finished = [False] * len(prompt_ids)
    generator = torch.Generator(device=device).manual_seed(params.seed) if params.temperature > 0 else None
    stops = torch.tensor(list(stop_ids), dtype=torch.long, device=device)
    extra = {"logits_to_keep": 1} if _accepts_logits_to_keep(model) else {}
    with torch.no_grad(), tracker.tracking(), _rows_in_flight(tracker, len(prompt_ids)) as set_rows:
        label = f"generating {len(prompt_ids)} replies"
        for rows in track(chunks, label, total=len(chunks), enabled=progress and len(chunks) > 1):
            set_rows(rows)
            input_ids, attention_mask, _ = pack([prompt_ids[i] for i in rows], [[] for _ in rows], pad_token_id)
            input_ids, attention_mask = input_ids.to(device), attention_mask.to(device)
            position_ids = (attention_mask.cumsum(-1) - 1).clamp(min=0)
            out = model(input_ids=input_ids, attention_mask=attention_mask, position_ids=position_ids,
                        use_cache=True, **extra)
            done = torch.zeros(len(rows), dtype=torch.bool, device=device)
            row_limits = [params.max_new_tokens if limits is None else limits[i] for i in rows]
            ends = torch.tensor(row_limits, device=device) - 1  # the step after which a row is exhausted
            last = max(row_limits) - 1
            steps: list[torch.Tensor] = []
            for step in range(params.max_new_tokens):
                token = next_tokens(out.logits[:, -1, :], params, generator).masked_fill(done, pad_token_id)
                done = done | torch.isin(token, stops)
                if limits is not None:
                    done = done | (ends == step)
                steps.append(token)
                if on_token is not None:
                    on_token(step, token, done, rows)
                if bool(done.all()) or step == last:
                    break
                attention_mask = torch.cat([attention_mask, (~done).long().unsqueeze(-1)], dim=-1)
                position_ids = position_ids[:, -1:] + 1
                out = model(input_ids=token.unsqueeze(-1), attention_mask=attention_mask,
                            position_ids=position_ids, use_cache=True, **cache_kwargs(model, output_cache(out)))
            tokens = torch.stack(steps, dim=1).tolist()
            _collect([ids[:n] for ids, n in zip(tokens, row_limits, strict=True)], rows, set(stop_ids), responses,
                     finished)
    return responses, finished


def _collect(tokens: list[list[int]], rows: list[int], stops: set[int], responses: list[list[int]],
             finished: list[bool]) -> None:
    for row, ids in zip(rows, tokens, strict=True):
        end = next((i for i, token in enumerate(ids) if token in stops), None)
        responses[row] = ids if end is None else ids[:end]
        finished[row] = end is not None
