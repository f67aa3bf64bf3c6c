"""The Assistant-Axis drift monitor: per turn of multi-turn conversations, the projection on the axis.

For each conversation (a list of user turns), the model replies turn by turn (all conversations batched per
turn, greedy unless a temperature is given, under an optional Intervention such as ``AxisCapping``); each reply
is read back teacher-forced (``monitor.projection.project_conversations``) and gives, at layer ℓ with unit
axis â_ℓ: the projection of the last prompt token (before the reply) and the mean over the reply's tokens.
``drift`` = p − μ_default, where μ_default is the default assistant's mean per-token projection when the space
was built (negative: away from the assistant). The reading is taken after any edit at ℓ itself, so measure at a
layer above the capped ones to see what capping did downstream.

Live, per token: load a capping artifact in ``traitlab serve`` (``--persona axis=cap.tl.safetensors:0`` to
only watch); the server's monitor projects every new token on its axis and the page shows the gauge.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Mapping, Sequence
from typing import Any

import torch

from traitlab.errors import ConfigError
from traitlab.interventions import Intervention
from traitlab.methods.persona_space import PersonaSpace
from traitlab.model.chat import Conversation
from traitlab.model.loaded import LoadedModel
from traitlab.monitor.projection import project_conversations


def run_conversations(lm: LoadedModel, conversations: Sequence[Sequence[str]], space: PersonaSpace,
                      layer: int | None = None, intervention: Intervention | None = None,
                      max_new_tokens: int = 48, temperature: float = 0.0, seed: int = 0, batch_size: int = 32,
                      progress: bool = False) -> list[list[dict[str, Any]]]:
    """Per conversation, per turn: ``{"turn", "user", "reply", "last_prompt", "response", "drift"}``."""
    space.check_model(lm)
    layer = space.layer if layer is None else space.check_layer(layer)
    lm.hooks.check_layer(layer)
    if not conversations or any(not c for c in conversations):
        raise ConfigError("every conversation needs at least one user turn")
    axis = space.unit_axis(layer)
    mu, _ = space.default_stats(layer)
    histories: list[Conversation] = [[] for _ in conversations]
    out: list[list[dict[str, Any]]] = [[] for _ in conversations]
    applied = intervention.applied(lm) if intervention is not None else contextlib.nullcontext()
    with applied:
        for turn in range(max(len(c) for c in conversations)):
            active = [i for i, c in enumerate(conversations) if turn < len(c)]
            prompts = [[*histories[i], {"role": "user", "content": conversations[i][turn]}] for i in active]
            generation = lm.generate_chat(prompts, max_new_tokens=max_new_tokens, temperature=temperature,
                                          seed=seed + turn, batch_size=batch_size, progress=progress)
            full = [[*p, {"role": "assistant", "content": text or " "}]
                    for p, text in zip(prompts, generation.texts, strict=True)]
            readings = project_conversations(lm, axis, layer, full, batch_size)
            for i, conv, text, reading in zip(active, full, generation.texts, readings, strict=True):
                histories[i] = conv
                response = reading["response_projection"]
                out[i].append({"turn": turn, "user": conversations[i][turn], "reply": text,
                               "last_prompt": reading["last_prompt_projection"], "response": response,
                               "drift": None if response is None else response - mu})
    return out


def cohens_d(a: Sequence[float], b: Sequence[float]) -> float:
    """(mean a − mean b) / pooled standard deviation (sample variances)."""
    x, y = torch.tensor(list(a), dtype=torch.float64), torch.tensor(list(b), dtype=torch.float64)
    if len(x) < 2 or len(y) < 2:
        return math.nan
    pooled = (((len(x) - 1) * x.var() + (len(y) - 1) * y.var()) / (len(x) + len(y) - 2)).sqrt()
    return float((x.mean() - y.mean()) / pooled) if pooled > 0 else math.nan


def summarize(readings: Mapping[str, list[list[dict[str, Any]]]], reference: str | None = None
              ) -> list[dict[str, Any]]:
    """Per conversation type: mean reply projection and drift per turn, and Cohen's d of its reply
    projections against the ``reference`` type (the first type by default: bounded tasks)."""
    if not readings:
        return []
    reference = reference or next(iter(readings))
    if reference not in readings:
        raise ConfigError(f"unknown reference conversation type '{reference}'")

    def values(kind: str, key: str = "response") -> list[float]:
        return [t[key] for conv in readings[kind] for t in conv if t[key] is not None]

    rows = []
    for kind, convs in readings.items():
        turns = max(len(c) for c in convs)
        per_turn = [[c[t]["drift"] for c in convs if t < len(c) and c[t]["drift"] is not None]
                    for t in range(turns)]
        drifts = values(kind, "drift")
        rows.append({"type": kind, "conversations": len(convs),
                     "mean_projection": sum(values(kind)) / max(1, len(values(kind))),
                     "mean_drift": sum(drifts) / max(1, len(drifts)),
                     "drift_per_turn": [sum(v) / len(v) if v else None for v in per_turn],
                     "last_prompt_mean": sum(values(kind, "last_prompt")) / max(1, len(values(kind, "last_prompt"))),
                     "d_vs_reference": cohens_d(values(kind), values(reference)),
                     "d_last_prompt_vs_reference": cohens_d(values(kind, "last_prompt"),
                                                            values(reference, "last_prompt"))})
    return rows
