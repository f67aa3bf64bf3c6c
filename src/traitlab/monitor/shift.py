"""Finetune-shift (Chen et al. 2025, §5): how far finetuning moved the model along a persona direction,

    shift = (mean_x a_ℓ^tuned(x) − mean_x a_ℓ^base(x)) · v̂,

with a the activation at the last prompt token of evaluation prompts x (before any reply)."""

from __future__ import annotations

from collections.abc import Sequence

import torch

from traitlab.model import LoadedModel, capture_residual, pack, teacher_forced
from traitlab.model.chat import Conversation
from traitlab.monitor.projection import unit


def last_prompt_means(lm: LoadedModel, prompts: Sequence[str | Conversation], layer: int,
                      batch_size: int = 32) -> torch.Tensor:
    """Mean over prompts of the last-prompt-token residual at ``layer`` (``[d]``, float32)."""
    prompt_ids = lm.encode(lm.render(list(prompts)))
    total = torch.zeros(lm.hidden_size)
    for start in range(0, len(prompt_ids), batch_size):
        chunk = prompt_ids[start:start + batch_size]
        input_ids, attention_mask, roles = pack(chunk, [[] for _ in chunk], lm.tokenizer.pad_token_id)
        with capture_residual(lm, [layer], "last_prompt", stop_after_last=True) as capture:
            teacher_forced(lm, input_ids.to(lm.device), attention_mask.to(lm.device), roles.to(lm.device))
        total += capture.sums[layer].sum(0).cpu()
    return total / len(prompt_ids)


def finetune_shift(base: LoadedModel, tuned: LoadedModel, direction: torch.Tensor, layer: int,
                   prompts: Sequence[str | Conversation], batch_size: int = 32) -> float:
    """Projection on v̂ of the tuned-minus-base mean last-prompt activation."""
    difference = last_prompt_means(tuned, prompts, layer, batch_size) - last_prompt_means(base, prompts, layer,
                                                                                           batch_size)
    return float(difference @ unit(direction))
