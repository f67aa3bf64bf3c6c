"""Token roles and position selection.

Every forward pass through a hooked model carries a ``roles`` tensor ``[batch, seq]``: ``PAD`` (0) for padding,
``PROMPT`` (1) for prefill tokens, ``RESPONSE`` (2) for generated tokens. Roles come from the phase of the
forward (a call with an empty KV cache is the prefill, one with a filled cache decodes), never from absolute
indices, and padding is never selected. A teacher-forced forward over prompt+response sets roles explicitly.
"""

from __future__ import annotations

from typing import Literal, get_args

import torch

from traitlab.errors import ConfigError

PAD, PROMPT, RESPONSE = 0, 1, 2

Positions = Literal["all", "prompt", "response", "response+last_prompt", "last_prompt"]
POSITIONS: tuple[str, ...] = get_args(Positions)


def check_positions(positions: str) -> Positions:
    if positions not in POSITIONS:
        raise ConfigError(f"unknown positions '{positions}'; use one of {', '.join(POSITIONS)}")
    return positions  # type: ignore[return-value]


def last_prompt_mask(roles: torch.Tensor) -> torch.Tensor:
    """True at each row's last prompt token: a prompt token whose successor is not a prompt token."""
    is_prompt = roles == PROMPT
    next_is_prompt = torch.zeros_like(is_prompt)
    next_is_prompt[:, :-1] = is_prompt[:, 1:]
    return is_prompt & ~next_is_prompt


def select_positions(roles: torch.Tensor, positions: Positions) -> torch.Tensor:
    """Boolean ``[batch, seq]`` mask of the positions a hook acts on.

    ``response+last_prompt`` is persona_vectors' own steering mode: the generated tokens plus the last prompt
    token, whose hidden state produces the first generated token. ``last_prompt`` alone is the position the
    persona-vector monitor projects before generation.
    """
    if positions == "all":
        return roles != PAD
    if positions == "prompt":
        return roles == PROMPT
    if positions == "response":
        return roles == RESPONSE
    if positions == "last_prompt":
        return last_prompt_mask(roles)
    return (roles == RESPONSE) | last_prompt_mask(roles)


def roles_from_phase(attention_mask: torch.Tensor | None, shape: tuple[int, int], past_length: int,
                     device: torch.device) -> torch.Tensor:
    """Roles of the tokens of one forward pass: prefill tokens are prompt, tokens after a cache are response."""
    role = RESPONSE if past_length > 0 else PROMPT
    if attention_mask is None or attention_mask.dim() != 2:
        return torch.full(shape, role, dtype=torch.long, device=device)
    return attention_mask[:, -shape[1]:].to(device=device, dtype=torch.long) * role
