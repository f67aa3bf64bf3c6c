"""Evaluation: self-report questionnaires, LLM/oracle judges on situational answers, coherence and fluency,
capability retention, dose–response, and the experiment runner with its report.

Everything takes any ``LoadedModel`` and any ``Intervention`` (or none). Heavy parts import lazily.
"""

from traitlab.evaluation.config import Experiment, load_experiment
from traitlab.evaluation.dose import dose_response
from traitlab.evaluation.judges import (
    COHERENCE_RUBRIC,
    EndpointJudge,
    Judge,
    LocalJudge,
    OracleJudge,
    PerplexityCoherenceJudge,
    trait_rubric,
)
from traitlab.evaluation.methods import METHODS, register_method
from traitlab.evaluation.questionnaire import Administration, Inventory, Item, administer, load_inventory
from traitlab.evaluation.report import summary_table, write_report
from traitlab.evaluation.runner import run_experiment
from traitlab.evaluation.situational import evaluate_situational, load_personalitybench, question_set

__all__ = [
    "COHERENCE_RUBRIC", "METHODS", "Administration", "EndpointJudge", "Experiment", "Inventory", "Item", "Judge",
    "LocalJudge", "OracleJudge", "PerplexityCoherenceJudge", "administer", "dose_response", "evaluate_situational",
    "load_experiment", "load_inventory", "load_personalitybench", "question_set", "register_method",
    "run_experiment", "summary_table", "trait_rubric", "write_report",
]

# offline judges (#21)
from traitlab.evaluation.coherence import ReferenceCoherenceJudge
from traitlab.evaluation.embedding_judge import EmbeddingJudge, default_judge
from traitlab.evaluation.judge_fit import judge_for_spec

__all__ += ["EmbeddingJudge", "ReferenceCoherenceJudge", "default_judge", "judge_for_spec"]
