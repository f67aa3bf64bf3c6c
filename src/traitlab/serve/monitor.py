"""The server's persona monitor: projections p = h_ℓ·v̂ of the residual stream on each loaded persona vector.

- During generation, ``StepMonitor`` (a ``ProjectionStream``) gives, after every forward, the projection of
  each row's newest position: the last prompt token after the prefill, then each generated token as it is fed
  back. Chat responses carry a ``persona_monitor`` summary per persona (``RowSummary``), stream chunks the
  newest value. The stream reads the residual after the personas' own edits at that layer, so a steered
  reply shows its steering.
- ``gauge`` maps a projection to persona units: (p − baseline) / ‖v‖, where the baseline is the mean
  projection of the unsteered model's replies to a few neutral prompts. Steering by α·v at the monitored
  layer moves it by α.
- ``project_conversation``: per-token projections of a whole conversation (``POST /v1/monitor``), in one
  teacher-forced forward with explicit roles.
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
from collections.abc import Iterator, Mapping
from typing import Any

import torch

from traitlab.model import LoadedModel, capture_residual, pack, teacher_forced
from traitlab.model.chat import Conversation
from traitlab.monitor.projection import ProjectionStream, split_reply, unit

NEUTRAL = ["Hello.", "What did you do today?", "Tell me something about yourself."]
BASELINE_TOKENS = 24


@dataclasses.dataclass
class Direction:
    layer: int
    unit: torch.Tensor
    norm: float
    baseline: float = 0.0

    def gauge(self, projection: float) -> float:
        return (projection - self.baseline) / self.norm if self.norm else 0.0

    def describe(self) -> dict[str, Any]:
        return {"layer": self.layer, "norm": round(self.norm, 6), "baseline": round(self.baseline, 6)}


def directions(lm: LoadedModel, monitored: Mapping[str, tuple[int, torch.Tensor]]) -> dict[str, Direction]:
    """Unit directions, norms and baselines of the monitored personas. The baseline is the mean projection
    over the reply tokens of the unsteered model's greedy replies to a few neutral prompts (the last prompt
    tokens when the replies are empty)."""
    out = {name: Direction(lm.hooks.check_layer(layer), unit(v).to(lm.device), float(v.float().norm()))
           for name, (layer, v) in monitored.items()}
    if not out:
        return out
    generation = lm.generate_chat(NEUTRAL, max_new_tokens=BASELINE_TOKENS, progress=False)
    input_ids, attention_mask, roles = (t.to(lm.device) for t in generation.batch())
    positions = "response" if any(generation.response_ids) else "last_prompt"
    layers = sorted({d.layer for d in out.values()})
    with capture_residual(lm, layers, positions) as capture:
        teacher_forced(lm, input_ids, attention_mask, roles)
    for d in out.values():
        means = capture.mean(d.layer).float()
        means = means[torch.isfinite(means).all(-1)]
        d.baseline = float((means.mean(0) @ d.unit.float()).item()) if len(means) else 0.0
    return out


class StepMonitor:
    """Per-forward projections of each row's newest position on every monitored direction."""

    def __init__(self, lm: LoadedModel, dirs: Mapping[str, Direction]) -> None:
        self.dirs = dict(dirs)
        self.stream = ProjectionStream(lm, {name: (d.layer, d.unit) for name, d in dirs.items()}) if dirs else None

    @contextlib.contextmanager
    def active(self) -> Iterator[None]:
        if self.stream is None:
            yield
            return
        self.stream.latest = {}
        with self.stream.active():
            yield
        for values in self.stream.history.values():
            values.clear()

    def rows(self, batch: int) -> list[dict[str, float]]:
        """``[{name: projection}]`` per row of the last forward."""
        if self.stream is None:
            return [{} for _ in range(batch)]
        columns = {name: values.tolist() for name, values in self.stream.latest.items()}
        return [{name: column[i] for name, column in columns.items()} for i in range(batch)]


@dataclasses.dataclass
class RowSummary:
    """Running summary of one reply's projections on one direction."""

    last_prompt: float | None = None
    total: float = 0.0
    count: int = 0
    last: float | None = None
    low: float = math.inf
    high: float = -math.inf

    def add(self, value: float, prompt: bool) -> None:
        if prompt:
            self.last_prompt = value
            return
        self.total += value
        self.count += 1
        self.last = value
        self.low, self.high = min(self.low, value), max(self.high, value)

    def to_dict(self, direction: Direction) -> dict[str, Any]:
        mean = self.total / self.count if self.count else None
        return {
            "layer": direction.layer,
            "last_prompt": _round(self.last_prompt), "response_mean": _round(mean),
            "response_last": _round(self.last),
            "response_min": _round(self.low if self.count else None),
            "response_max": _round(self.high if self.count else None),
            "tokens": self.count,
            "gauge_last_prompt": _round(None if self.last_prompt is None else direction.gauge(self.last_prompt)),
            "gauge_response_mean": _round(None if mean is None else direction.gauge(mean)),
        }


def _round(value: float | None) -> float | None:
    return None if value is None else round(float(value), 6)


def project_conversation(lm: LoadedModel, conversation: Conversation, system: str | None,
                         dirs: Mapping[str, Direction],
                         tokenizer_lock: contextlib.AbstractContextManager[Any] | None = None) -> dict[str, Any]:
    """Per-token projections of a conversation (a final assistant turn is the reply) on ``dirs``; run it inside
    whatever persona hooks should apply (they see the reply tokens as response positions)."""
    lock = tokenizer_lock or contextlib.nullcontext()
    prompt, reply = split_reply(conversation)
    with lock:
        prompt_ids = lm.encode(lm.render([prompt], system=[system]))
        reply_ids = [lm.tokenizer(reply, add_special_tokens=False)["input_ids"] if reply else []]
    input_ids, attention_mask, roles = pack(prompt_ids, reply_ids, lm.tokenizer.pad_token_id)
    layers = sorted({d.layer for d in dirs.values()})
    per_layer: dict[int, torch.Tensor] = {}
    if layers:
        with capture_residual(lm, layers, "all", keep_tokens=True) as capture:
            teacher_forced(lm, input_ids.to(lm.device), attention_mask.to(lm.device), roles.to(lm.device))
        per_layer = {layer: capture.tokens(layer)[0][0].float() for layer in layers}
    ids = input_ids[0].tolist()
    role_names = {1: "prompt", 2: "response"}
    projections = {name: (per_layer[d.layer] @ d.unit.float()).tolist() for name, d in dirs.items()}
    with lock:
        texts = [lm.tokenizer.decode([tok]) for tok in ids]
    tokens = [{"token": text, "id": tok, "role": role_names[int(r)],
               "projections": {name: round(values[i], 6) for name, values in projections.items()}}
              for i, (text, tok, r) in enumerate(zip(texts, ids, roles[0].tolist(), strict=True))]
    summary = {}
    n_prompt = len(prompt_ids[0])
    for name, d in dirs.items():
        values = projections[name]
        row = RowSummary()
        row.add(values[n_prompt - 1], prompt=True)
        for value in values[n_prompt:]:
            row.add(value, prompt=False)
        summary[name] = row.to_dict(d)
    return {"tokens": tokens, "summary": summary, "prompt_tokens": n_prompt,
            "response_tokens": len(reply_ids[0])}
