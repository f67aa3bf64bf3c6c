"""Evaluation: self-report questionnaires, LLM/oracle judges on situational answers, coherence and fluency,
capability retention, dose–response, and the experiment runner (with its recipes) and report.

Everything takes any ``LoadedModel`` and any ``Intervention`` (or none). The names below load their module on
first use, so importing one evaluation module (the questionnaire, say) does not import the runner, the
recipes and every mechanism behind them.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "config": ("Experiment", "load_experiment"),
    "dose": ("dose_response",),
    "judges": ("COHERENCE_RUBRIC", "EndpointJudge", "Judge", "LocalJudge", "OracleJudge", "PerplexityCoherenceJudge",
               "trait_rubric"),
    "questionnaire": ("Administration", "Inventory", "Item", "administer", "load_inventory"),
    "recipes": ("RECIPES", "Recipe", "RecipeContext"),
    "report": ("summary_table", "write_report"),
    "runner": ("run_experiment",),
    "situational": ("evaluate_situational", "load_personalitybench", "question_set"),
    "embedding_judge": ("EmbeddingJudge", "default_judge"),
    "coherence": ("ReferenceCoherenceJudge",),
    "judge_fit": ("judge_for_spec",),
}
_HOME = {name: module for module, names in _EXPORTS.items() for name in names}

__all__ = sorted(_HOME)


def __getattr__(name: str) -> Any:
    if name not in _HOME:
        raise AttributeError(f"module 'traitlab.evaluation' has no attribute '{name}'")
    return getattr(importlib.import_module(f"traitlab.evaluation.{_HOME[name]}"), name)
