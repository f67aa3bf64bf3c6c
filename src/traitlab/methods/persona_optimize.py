"""Optimised persona vectors: a steering vector fitted by gradient descent to the persona's own answers.

The mean difference of activations (``persona_vectors``) is the direction along which the prompted persona's
states differ; it need not be the direction a model *reads* its persona from. Following optimised steering
vectors (Subramani et al. 2022, "Extracting Latent Steering Vectors from Pretrained Language Models"; Dunefsky
& Cohan 2025, "One-shot Optimized Steering Vectors"), with the positive answers of the kept extraction pairs
and **no system prompt**, we fit one vector per layer ℓ:

    v_ℓ* = argmin_v  − mean_i log p(y_i^+ | x_i; h_ℓ + v),

where x_i is the bare question and h_ℓ + v adds v at the steered positions of layer ℓ: the vector that makes
the unprompted model speak as the persona did. Only v is trained (Adam); the model stays frozen. (A
bidirectional fit in the manner of BiPO, Cao et al. 2024, adding −log p(y_i^− | x_i; h_ℓ − v), left the
organism's extraversion unsteered where this fit moved it 0.88 of the way to the prompted persona.)
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from contextlib import AbstractContextManager

import torch

from traitlab.errors import ConfigError
from traitlab.model import RESPONSE, Generation, LoadedModel, pack, residual_add, teacher_forced
from traitlab.model.positions import check_positions
from traitlab.progress import track

OPTIMIZED = "optimized"


@dataclasses.dataclass(frozen=True)
class OptimizeSettings:
    """Layers to fit, positions the vector is added at, and the Adam schedule (steps × answers per step)."""

    layers: tuple[int, ...]
    positions: str = "response"
    steps: int = 100
    learning_rate: float = 0.3
    answers_per_step: int = 16
    seed: int = 0

    def __post_init__(self) -> None:
        if not self.layers:
            raise ConfigError("optimising a persona vector needs at least one layer")
        if self.steps < 1 or self.answers_per_step < 1 or self.learning_rate <= 0:
            raise ConfigError("optimisation needs steps ≥ 1, answers_per_step ≥ 1 and a positive learning rate")
        check_positions(self.positions)


def bare_batch(lm: LoadedModel, questions: Sequence[str], answers: Sequence[Sequence[int]]) -> tuple[torch.Tensor, ...]:
    """``(input_ids, attention_mask, roles)`` of each answer's token ids after its bare question."""
    prompt_ids = lm.encode(lm.render([[{"role": "user", "content": q}] for q in questions]))
    return tuple(t.to(lm.device) for t in pack(prompt_ids, answers, lm.tokenizer.pad_token_id))


def answer_nll(lm: LoadedModel, batch: tuple[torch.Tensor, ...], edit: AbstractContextManager) -> torch.Tensor:
    """Mean negative log-likelihood of a ``bare_batch``'s answer tokens with ``edit`` (hooks) active, with
    gradients."""
    input_ids, attention_mask, roles = batch
    with edit:
        logits = teacher_forced(lm, input_ids, attention_mask, roles, grad=True).logits
    targets, answer = input_ids[:, 1:], roles[:, 1:] == RESPONSE
    logp = torch.log_softmax(logits[:, :-1].float(), dim=-1).gather(-1, targets.unsqueeze(-1)).squeeze(-1)
    return -(logp * answer).sum() / answer.sum().clamp(min=1)


def optimize_directions(lm: LoadedModel, questions: Sequence[str], answers: Generation, rows: Sequence[int],
                        settings: OptimizeSettings) -> tuple[torch.Tensor, dict[int, float]]:
    """Fit v_ℓ* for each of ``settings.layers`` on the persona's answers ``rows``; returns ``[L+1, d]`` (zero rows
    at layers not fitted) and the final objective per fitted layer."""
    for layer in settings.layers:
        lm.hooks.check_layer(layer)
    hidden = lm.model.config.get_text_config().hidden_size
    table = torch.zeros(lm.num_layers + 1, hidden)
    losses: dict[int, float] = {}
    rows = list(rows)
    frozen = [p for p in lm.model.parameters() if p.requires_grad]
    for p in frozen:
        p.requires_grad_(False)
    try:
        for layer in track(settings.layers, "optimising persona vectors", total=len(settings.layers)):
            generator = torch.Generator().manual_seed(settings.seed + layer)
            vector = torch.zeros(hidden, device=lm.device, requires_grad=True)
            optimizer = torch.optim.Adam([vector], lr=settings.learning_rate)
            for _ in range(settings.steps):
                picked = [rows[int(k)] for k in torch.randint(len(rows), (settings.answers_per_step,),
                                                              generator=generator)]
                batch = bare_batch(lm, [questions[i] for i in picked], [answers.response_ids[i] for i in picked])
                loss = answer_nll(lm, batch, residual_add(lm, layer, vector, 1.0, settings.positions))
                optimizer.zero_grad()
                loss.backward()
                optimizer.step()
            table[layer] = vector.detach().float().cpu()
            losses[layer] = round(float(loss.detach()), 4)
    finally:
        for p in frozen:
            p.requires_grad_(True)
    return table, losses
