"""The monitoring suite: does a persona vector's projection predict the trait before the model answers?

Persona vectors (Chen et al. 2025, §4.1) monitor persona shifts in deployment: the projection of the
last-prompt-token activation at layer ℓ on v̂, p = h_ℓ[last]·v̂, is read before any reply token exists. Across
system prompts that range from suppressing the trait (the spec's ``neg`` instructions) through none to
promoting it (``pos``), p should track the judged trait expression of the reply that follows; the suite reports
every (prompt, question) point and Pearson r. The model runs un-intervened: this monitors a deployed model.
"""

from __future__ import annotations

from typing import Any

from traitlab.evaluation import scoring
from traitlab.evaluation.config import MonitorConfig
from traitlab.interventions import Intervention
from traitlab.methods.steering import ResidualSteering
from traitlab.model.loaded import LoadedModel


def monitor_direction(intervention: Intervention | None) -> tuple[int, Any] | None:
    """(layer, vector) of an additive residual steering (a persona vector), else ``None``."""
    if not isinstance(intervention, ResidualSteering) or intervention.mode != "add":
        return None
    layer = min(intervention.vectors)
    return layer, intervention.vectors[layer]


def run_monitor(lm: LoadedModel, intervention: Intervention | None, spec: Any, judge: Any, rubric_of: Any,
                config: MonitorConfig) -> dict[str, Any] | None:
    """Projection and judged score per (system prompt, question); ``None`` when ``intervention`` has no
    direction to monitor. ``rubric_of(question, answer)`` gives the judge's rubric."""
    from traitlab.judging import judge_all
    from traitlab.monitor import project_conversations

    found = monitor_direction(intervention)
    if found is None:
        return None
    layer, vector = found
    questions = spec.held_out_questions[: config.n_questions]
    systems = ([("suppress", p.neg) for p in spec.instruction] + [("none", None)]
               + [("promote", p.pos) for p in spec.instruction])
    rows = [(label, system, q) for label, system in systems for q in questions]
    prompts = [q for _, _, q in rows]
    answers = lm.generate_chat(prompts, [s for _, s, _ in rows], max_new_tokens=config.max_new_tokens,
                               batch_size=config.batch_size, progress=False).texts
    scores = judge_all(judge, [(q, a, rubric_of(q, a)) for q, a in zip(prompts, answers, strict=True)])
    conversations = [([{"role": "system", "content": s}] if s else []) + [{"role": "user", "content": q}]
                     for _, s, q in rows]
    projections = [r["last_prompt_projection"]
                   for r in project_conversations(lm, vector, layer, conversations, config.batch_size)]
    points = [{"condition": label, "projection": round(p, 4), "score": None if s is None else round(s, 2)}
              for (label, _, _), p, s in zip(rows, projections, scores, strict=True)]
    kept = [pt for pt in points if pt["score"] is not None]
    r = scoring.pearson([pt["projection"] for pt in kept], [pt["score"] for pt in kept]) if len(kept) > 2 else None
    return {"layer": layer, "points": points, "pearson_r": r}
