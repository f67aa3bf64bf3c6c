"""Training-data screening (Chen et al. 2025, §6): for each sample (x_i, y_i), the base model's own reply
y′_i to x_i, and the projection difference

    ΔP_i = (ā_ℓ(x_i, y_i) − ā_ℓ(x_i, y′_i)) · v̂,

with ā the mean residual over reply tokens. Large ΔP flags samples that would push the model toward the trait.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch

from traitlab.errors import ConfigError
from traitlab.model import LoadedModel
from traitlab.model.chat import Conversation
from traitlab.monitor.projection import project_conversations, split_reply


def screen(lm: LoadedModel, direction: torch.Tensor, layer: int, samples: Sequence[Conversation],
           max_new_tokens: int = 96, batch_size: int = 32) -> list[dict[str, Any]]:
    """ΔP per sample, in input order (``index``), with the projections it came from and the base reply."""
    prompts, replies = zip(*(split_reply(s) for s in samples), strict=True)
    if any(r is None for r in replies):
        raise ConfigError("every screened sample must end with an assistant reply")
    own = lm.generate_chat(list(prompts), max_new_tokens=max_new_tokens, batch_size=batch_size).texts
    given = project_conversations(lm, direction, layer, list(samples), batch_size)
    natural = project_conversations(
        lm, direction, layer, [[*p, {"role": "assistant", "content": r}] for p, r in zip(prompts, own,
                                                                                        strict=True)], batch_size)
    rows = []
    for i, (g, n) in enumerate(zip(given, natural, strict=True)):
        delta = None if n["response_projection"] is None else g["response_projection"] - n["response_projection"]
        rows.append({"index": i, "delta_p": delta, "sample_projection": g["response_projection"],
                     "base_reply_projection": n["response_projection"], "base_reply": own[i]})
    return rows


def auroc(scores: Sequence[float], labels: Sequence[bool]) -> float:
    """Area under the ROC curve: P(score of a positive > score of a negative), ties counting one half."""
    positives = [s for s, y in zip(scores, labels, strict=True) if y]
    negatives = [s for s, y in zip(scores, labels, strict=True) if not y]
    if not positives or not negatives:
        raise ConfigError("AUROC needs at least one positive and one negative sample")
    p, n = torch.tensor(positives).unsqueeze(1), torch.tensor(negatives).unsqueeze(0)
    return float(((p > n).float() + 0.5 * (p == n).float()).mean())
