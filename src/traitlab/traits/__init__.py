"""Trait specs: the schema, the built-in library, and loaders for external formats."""

from traitlab.traits.load import from_persona_vectors, list_traits, load_trait, save_trait, trait_name
from traitlab.traits.spec import BIG_FIVE, POLES, InstructionPair, TraitSpec

__all__ = ["BIG_FIVE", "POLES", "InstructionPair", "TraitSpec", "from_persona_vectors", "list_traits",
           "load_trait", "save_trait", "trait_name"]
