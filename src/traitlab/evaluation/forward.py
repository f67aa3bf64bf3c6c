"""Batched teacher-forced forwards for evaluation: next-token distributions at the answer position, and
log-likelihoods of given continuations.

Both run under whatever Intervention is applied to the model. Token roles are the ones generation would
see: the rendered prompt is ``PROMPT`` (so the distribution at the answer position is exactly the one the
first generated token is drawn from) and a teacher-forced continuation is ``RESPONSE``.

Sequences are sorted by length and cut into batches of ``batch_size`` (less padding); the LM head runs on the
needed positions only (``logits_to_keep=1`` for the answer position), so a 150k-token vocabulary costs no
``batch × seq × vocab`` tensor. For continuations the head runs on exactly the positions that predict a
continuation token (a pre-hook on the output embeddings gathers them, ``Σ len(continuation)`` rows), not on the
last ``max len + 1`` positions of every row: with Gemma's 262k-token head that is half the forward's work, and
the left padding of the shorter continuations in a batch was a tenth of it. The logits are the same numbers
(the same head on the same hidden states; a matrix product over fewer rows rounds within 1e-6).
"""

from __future__ import annotations

import functools
import inspect
import re
from collections.abc import Sequence

import torch

from traitlab.model.generation import pack
from traitlab.model.loaded import LoadedModel
from traitlab.model.positions import RESPONSE
from traitlab.progress import track


def _chunks(lengths: Sequence[int], batch_size: int) -> list[list[int]]:
    order = sorted(range(len(lengths)), key=lambda i: lengths[i])
    return [order[i:i + batch_size] for i in range(0, len(order), batch_size)]


@functools.cache
def _accepts(model_cls: type, name: str) -> bool:
    return name in inspect.signature(model_cls.forward).parameters


def _forward(lm: LoadedModel, input_ids: torch.Tensor, attention_mask: torch.Tensor, roles: torch.Tensor,
             keep: int | None, select: torch.Tensor | None = None) -> torch.Tensor:
    """Logits ``[batch, keep or seq, vocab]`` (float32) of the last ``keep`` positions (all when ``None``) of one
    tracked forward with explicit roles; the LM head runs on those positions only where the model allows.
    With ``select`` (``[batch, seq]`` bool, true only within the last ``keep`` positions), the head runs on the
    selected positions only and the result is ``[n_selected, vocab]`` in row-major order of ``select``."""
    device = lm.device
    input_ids, attention_mask, roles = input_ids.to(device), attention_mask.to(device), roles.to(device)
    position_ids = (attention_mask.cumsum(-1) - 1).clamp(min=0)
    extra = {"logits_to_keep": keep} if keep is not None and _accepts(type(lm.model), "logits_to_keep") else {}
    head = lm.model.get_output_embeddings() if select is not None else None
    gathered: list[int] = []

    def gather(module: torch.nn.Module, args: tuple) -> tuple:
        hidden = args[0]  # [batch, positions the model kept, hidden]: the last hidden.shape[1] of select
        if hidden.dim() != 3 or hidden.shape[0] != select.shape[0]:
            return args
        rows = hidden[select[:, select.shape[1] - hidden.shape[1]:].to(hidden.device)]
        gathered.append(rows.shape[0])
        return (rows.unsqueeze(0), *args[1:])

    handle = head.register_forward_pre_hook(gather) if head is not None else None
    try:
        with torch.no_grad(), lm.hooks.tracking(), lm.hooks.token_roles(roles):
            out = lm.model(input_ids=input_ids, attention_mask=attention_mask, position_ids=position_ids,
                           use_cache=False, **extra)
    finally:
        if handle is not None:
            handle.remove()
    logits = out.logits
    if select is not None:
        n = int(select.sum())
        if gathered == [n] and tuple(logits.shape[:2]) == (1, n):
            return logits[0].float()
        # the model did not run its head once on [batch, positions, hidden]: select from the full logits
        full = logits if keep is None else logits[:, -keep:, :]
        return full[select[:, select.shape[1] - full.shape[1]:].to(full.device)].float()
    return (logits if keep is None else logits[:, -keep:, :]).float()


def _answer_logprobs(lm: LoadedModel, prompt_ids: Sequence[Sequence[int]], batch_size: int, progress: bool,
                     description: str):
    """Yield ``(rows, log_softmax [len(rows), vocab])`` chunk by chunk (sorted by length)."""
    chunks = _chunks([len(p) for p in prompt_ids], batch_size)
    pad = lm.tokenizer.pad_token_id
    for rows in track(chunks, description, total=len(chunks), enabled=progress and len(chunks) > 1):
        ids, mask, roles = pack([prompt_ids[i] for i in rows], [[] for _ in rows], pad)
        yield rows, torch.log_softmax(_forward(lm, ids, mask, roles, keep=1)[:, -1, :], dim=-1)


def next_token_logprobs(lm: LoadedModel, prompt_ids: Sequence[Sequence[int]], batch_size: int = 64,
                        progress: bool = False, description: str = "scoring",
                        columns: Sequence[int] | None = None) -> torch.Tensor:
    """Log-probabilities of the token that follows each prompt (the answer position): ``[n, vocab]``, or only
    the given token ids, ``[n, len(columns)]`` (what a scale needs, without an ``n × vocab`` tensor)."""
    width = len(lm.tokenizer) if columns is None else len(columns)
    out = torch.full((len(prompt_ids), width), float("-inf"), dtype=torch.float32)
    index = None if columns is None else torch.tensor(list(columns), dtype=torch.long)
    for rows, lp in _answer_logprobs(lm, prompt_ids, batch_size, progress, description):
        if index is None:
            vocab = min(lp.shape[-1], width)  # a tokenizer larger than the head: extra tokens stay -inf
            out[rows, :vocab] = lp[:, :vocab].cpu()
        else:
            out[rows] = lp[:, index.to(lp.device)].cpu()
    return out


def next_token_top(lm: LoadedModel, prompt_ids: Sequence[Sequence[int]], k: int = 20, batch_size: int = 16,
                   progress: bool = False, description: str = "judging") -> tuple[torch.Tensor, torch.Tensor]:
    """The ``k`` most likely next tokens per prompt: ``(logprobs [n, k], token ids [n, k])``."""
    values = torch.empty(len(prompt_ids), k, dtype=torch.float32)
    indices = torch.empty(len(prompt_ids), k, dtype=torch.long)
    for rows, lp in _answer_logprobs(lm, prompt_ids, batch_size, progress, description):
        top = lp.topk(min(k, lp.shape[-1]), dim=-1)
        values[rows, : top.values.shape[-1]] = top.values.cpu()
        indices[rows, : top.indices.shape[-1]] = top.indices.cpu()
    return values, indices


def continuation_logprobs(lm: LoadedModel, prompt_ids: Sequence[Sequence[int]],
                          continuation_ids: Sequence[Sequence[int]], batch_size: int = 32,
                          progress: bool = False, description: str = "scoring") -> list[list[float]]:
    """Per-token log-probabilities of each continuation given its prompt (teacher forced, roles RESPONSE)."""
    results: list[list[float]] = [[] for _ in prompt_ids]
    chunks = _chunks([len(p) + len(c) for p, c in zip(prompt_ids, continuation_ids, strict=True)], batch_size)
    pad = lm.tokenizer.pad_token_id
    for rows in track(chunks, description, total=len(chunks), enabled=progress and len(chunks) > 1):
        ids, mask, roles = pack([prompt_ids[i] for i in rows], [continuation_ids[i] for i in rows], pad)
        # left-padded: every continuation sits in the last `width` positions, each predicted by the position
        # before it; the model keeps the last width + 1 positions and the head runs on the predicting ones
        width = max(len(continuation_ids[i]) for i in rows)
        keep = min(width + 1, ids.shape[1])
        start = ids.shape[1] - keep + 1
        is_response = roles[:, start:] == RESPONSE  # the targets
        select = torch.zeros_like(ids, dtype=torch.bool)
        select[:, start - 1:ids.shape[1] - 1] = is_response  # the positions that predict them
        logits = _forward(lm, ids, mask, roles, keep=keep, select=select)  # [n targets, vocab]
        target = ids[:, start:][is_response].to(logits.device)
        token_lp = (logits.gather(-1, target.unsqueeze(-1)).squeeze(-1) - logits.logsumexp(-1)).cpu()
        for row, values in zip(rows, token_lp.split(is_response.sum(1).tolist()), strict=True):
            results[row] = values.tolist()
    return results


def continuation_nll(lm: LoadedModel, prompt_ids: Sequence[Sequence[int]],
                     continuation_ids: Sequence[Sequence[int]], batch_size: int = 32,
                     progress: bool = False) -> list[tuple[float, int]]:
    """``(Σ −log p, n_tokens)`` of each continuation; empty continuations give ``(0.0, 0)``."""
    keep = [i for i, c in enumerate(continuation_ids) if c]
    out = [(0.0, 0)] * len(prompt_ids)
    if keep:
        lps = continuation_logprobs(lm, [prompt_ids[i] for i in keep], [continuation_ids[i] for i in keep],
                                    batch_size, progress, "perplexity")
        for i, lp in zip(keep, lps, strict=True):
            out[i] = (-float(sum(lp)), len(lp))
    return out


# ---------------------------------------------------------------------------------------- label tokens

_SHORT = re.compile(r"\d")


@functools.lru_cache(maxsize=8)
def _numeric_tokens(tok: object) -> dict[str, tuple[int, ...]]:
    """Map the stripped text of every short vocabulary token that decodes to digits → its token ids."""
    vocab: dict[str, int] = tok.get_vocab()  # type: ignore[attr-defined]
    found: dict[str, list[int]] = {}
    for raw, index in vocab.items():
        if len(raw) > 8 or not _SHORT.search(raw):
            continue
        text = tok.convert_tokens_to_string([raw]).strip()  # type: ignore[attr-defined]
        if text.isdigit() and len(text) <= 3:
            found.setdefault(text, []).append(index)
    return {k: tuple(sorted(v)) for k, v in found.items()}


def numeric_tokens(tokenizer: object) -> dict[str, tuple[int, ...]]:
    """Token ids per number string: every single vocabulary token whose text, without surrounding whitespace,
    is that number (``"4"``, ``" 4"``, ``"Ġ4"``, ``"▁4"``, ``"\\n4"`` ...). These are the tokenisation
    variants of a label; their probabilities add up."""
    return _numeric_tokens(tokenizer)


def label_token_ids(tokenizer: object, labels: Sequence[int]) -> dict[int, tuple[int, ...]]:
    """Token ids of each numeric label (its tokenisation variants). Labels with no single-token variant get
    the first token of their plain encoding when no other label shares it."""
    table = numeric_tokens(tokenizer)
    out: dict[int, tuple[int, ...]] = {}
    for label in labels:
        ids = table.get(str(label))
        if not ids:
            first = tokenizer(str(label), add_special_tokens=False)["input_ids"][:1]  # type: ignore[operator]
            ids = tuple(first)
        out[label] = ids
    seen: dict[int, int] = {}
    for label, ids in out.items():
        for i in ids:
            if i in seen and seen[i] != label:
                raise ValueError(f"labels {seen[i]} and {label} share token {i}; the log-prob method cannot "
                                 "tell them apart with this tokenizer (use scoring='generate')")
            seen[i] = label
    return out


def integer_token_values(tokenizer: object, low: int = 0, high: int = 100) -> dict[int, int]:
    """token id → integer value for every single token that is an integer in ``low..high``."""
    out: dict[int, int] = {}
    for text, ids in numeric_tokens(tokenizer).items():
        value = int(text)
        if low <= value <= high and (text == "0" or not text.startswith("0")):
            for i in ids:
                out[i] = value
    return out
