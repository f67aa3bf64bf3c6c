"""Projections of activations on a persona direction: p = a·v̂ at layer ℓ.

- ``project_conversations``: per conversation, the projection of the last prompt token (before the reply is
  generated; Chen et al. use it to predict the reply's trait) and of the mean over the reply's tokens.
- ``ProjectionStream``: during generation, the projection of each row's newest position at every step, for
  live monitors (the server's gauges).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import torch

from traitlab.errors import ConfigError
from traitlab.model import LoadedModel, capture_residual, pack, teacher_forced
from traitlab.model.chat import Conversation
from traitlab.model.hooks import ForwardState


def unit(vector: torch.Tensor) -> torch.Tensor:
    norm = vector.float().norm()
    if norm == 0 or not torch.isfinite(norm):
        raise ConfigError("cannot project on a zero or non-finite direction")
    return vector.float() / norm


def split_reply(conversation: Conversation) -> tuple[Conversation, str | None]:
    """The prompt part of a conversation and its final assistant reply (``None`` when it ends on a user turn)."""
    if conversation and conversation[-1].get("role") == "assistant":
        return conversation[:-1], conversation[-1]["content"]
    return conversation, None


def conversation_batch(lm: LoadedModel, prompts: Sequence[Conversation],
                       replies: Sequence[str | None]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Teacher-forcing batch of rendered prompts followed by reply tokens (no reply: prompt only)."""
    prompt_ids = lm.encode(lm.render(list(prompts)))
    reply_ids = [lm.tokenizer(r, add_special_tokens=False)["input_ids"] if r else [] for r in replies]
    return pack(prompt_ids, reply_ids, lm.tokenizer.pad_token_id)


def project_conversations(lm: LoadedModel, direction: torch.Tensor, layer: int,
                          conversations: Sequence[Conversation], batch_size: int = 32) -> list[dict[str, Any]]:
    """``last_prompt`` and ``response`` projections on v̂ at ``layer`` for each conversation (response is
    ``None`` for conversations that end on a user turn)."""
    u = unit(direction)
    rows: list[dict[str, Any]] = []
    for start in range(0, len(conversations), batch_size):
        chunk = conversations[start:start + batch_size]
        prompts, replies = zip(*(split_reply(c) for c in chunk), strict=True)
        input_ids, attention_mask, roles = conversation_batch(lm, prompts, replies)
        with capture_residual(lm, [layer], "last_prompt") as last, \
                capture_residual(lm, [layer], "response") as response:
            teacher_forced(lm, input_ids.to(lm.device), attention_mask.to(lm.device), roles.to(lm.device))
        last_p = (last.mean(layer).cpu() @ u).tolist()
        resp_p = (response.mean(layer).cpu() @ u).tolist()
        for i, reply in enumerate(replies):
            rows.append({"index": start + i, "last_prompt_projection": last_p[i],
                         "response_projection": resp_p[i] if reply else None})
    return rows


class ProjectionStream:
    """Per-step projections of the newest position of each row on named directions, during generation.

    ``latest[name]`` holds a ``[batch]`` tensor after every forward pass (the prefill's last prompt token,
    then each generated token); ``history[name]`` the list of them. Use as a context manager around
    ``generate_chat`` and read it from ``on_token``.
    """

    def __init__(self, lm: LoadedModel, directions: Mapping[str, tuple[int, torch.Tensor]]) -> None:
        self.lm = lm
        self.directions = {name: (lm.hooks.check_layer(layer), unit(v).to(lm.device))
                           for name, (layer, v) in directions.items()}
        self.latest: dict[str, torch.Tensor] = {}
        self.history: dict[str, list[torch.Tensor]] = {name: [] for name in directions}

    def _recorder(self, name: str, u: torch.Tensor) -> Any:
        def record(hidden: torch.Tensor, state: ForwardState) -> torch.Tensor:
            value = (hidden[:, -1, :].float() @ u).detach().cpu()
            self.latest[name] = value
            self.history[name].append(value)
            return hidden
        return record

    @contextlib.contextmanager
    def active(self) -> Iterator[ProjectionStream]:
        with contextlib.ExitStack() as stack:
            for name, (layer, u) in self.directions.items():
                stack.enter_context(self.lm.hooks.residual(layer, self._recorder(name, u)))
            yield self
