"""Recipes: how ``traitlab compare`` turns a method entry ``{name, params}`` into a fitted, cached Intervention.

``RECIPES`` is the static table (method name → ``Recipe``); a recipe's ``Params`` model checks the parameters
while the experiment is validated, before any model loads, and its ``build(context, params)`` fits the
Intervention with the run's model, trait spec, work folder and judges (``RecipeContext``). Fitted artifacts are
cached in the work folder by ``base.cached`` (keyed on the spec's content, the parameters and the model).

- ``prompts``: ``none``, ``prompt``, ``p2``, ``artifact`` (nothing to fit)
- ``persona``: ``persona_vectors``, ``personality_vector``
- ``npti``: ``npti``
- ``subnetwork``: ``subnetwork``

A new method is one ``Recipe`` in one of these modules (or a new one) and one entry in ``RECIPES``. Sweeps call
``intervention.scaled(s)`` on the built intervention, once per scale.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from traitlab.errors import ConfigError
from traitlab.evaluation.recipes import npti, persona, prompts, subnetwork
from traitlab.evaluation.recipes.base import Params, Recipe, RecipeContext, artifact_path, cached
from traitlab.interventions import Intervention

RECIPES: dict[str, Recipe[Any]] = {recipe.name: recipe for recipe in (
    prompts.NONE, prompts.PROMPT, prompts.P2, prompts.ARTIFACT, persona.PERSONA_VECTORS,
    persona.PERSONALITY_VECTOR, npti.NPTI, subnetwork.SUBNETWORK,
)}


def recipe(name: str) -> Recipe[Any]:
    if name not in RECIPES:
        raise ConfigError(f"unknown method '{name}'; known methods: {', '.join(sorted(RECIPES))}")
    return RECIPES[name]


def validate_method(name: str, params: Mapping[str, Any]) -> Params:
    """The typed parameters of method ``name``; ``ConfigError`` for unknown names and bad parameters."""
    return recipe(name).parse(params)


def build(name: str, context: RecipeContext, params: Mapping[str, Any]) -> Intervention | None:
    """Check ``params`` and build method ``name``'s Intervention in ``context``."""
    chosen = recipe(name)
    return chosen.build(context, chosen.parse(params))


__all__ = ["RECIPES", "Params", "Recipe", "RecipeContext", "artifact_path", "build", "cached", "recipe",
           "validate_method"]
