"""Prompting baseline: a persona given as a system prompt (the simple persona prompt of the papers).

It applies by setting the model's default system prompt for chats that give none. A scale of 0 turns it off;
any other scale applies the text as written (a prompt has no continuous strength).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

import torch

from traitlab.errors import ConfigError
from traitlab.interventions import Coef, Intervention, kwargs_from_meta
from traitlab.model.loaded import LoadedModel


class PromptIntervention(Intervention):
    mechanism = "prompt"

    def __init__(self, text: str, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        if not text.strip():
            raise ConfigError("a prompt intervention needs non-empty text")
        self.text = text

    @contextlib.contextmanager
    def _apply(self, lm: LoadedModel, coef: Coef) -> Iterator[None]:
        if isinstance(coef, torch.Tensor):
            raise ConfigError("a prompt intervention cannot take per-row scales; pass system prompts per row")
        if coef == 0:
            yield
            return
        with lm.default_system(self.text):
            yield

    def tensors(self) -> dict[str, torch.Tensor]:
        return {}

    def params(self) -> dict[str, Any]:
        return {"text": self.text}

    @classmethod
    def from_artifact(cls, meta: dict[str, Any], tensors: dict[str, torch.Tensor]) -> Intervention:
        return cls(meta["params"]["text"], **kwargs_from_meta(meta))
