"""The persona model organism ``traitlab/persona-tiny``: corpus generator, oracle scorer, tokenizer, training
and acceptance check. The trained model folder ships in ``ORGANISM_DIR``.

Heavy parts (training, the check) are imported lazily from their modules.
"""

from pathlib import Path

from traitlab.organism.corpus import (
    POLES,
    TRAITS,
    Persona,
    build_corpus,
    finetune_set,
    heldout_questions,
    likert_items,
    pole_description,
    system_prompt,
    train_questions,
)
from traitlab.organism.scorer import OracleScorer

ORGANISM_DIR: Path = Path(__file__).resolve().parent / "persona-tiny"
"""The shipped model folder (config.json, model.safetensors, tokenizer files, generation_config.json)."""

__all__ = [
    "ORGANISM_DIR", "POLES", "TRAITS", "OracleScorer", "Persona", "build_corpus", "finetune_set",
    "heldout_questions", "likert_items", "pole_description", "system_prompt", "train_questions",
]
