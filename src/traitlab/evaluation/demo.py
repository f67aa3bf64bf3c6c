"""The demo experiment: every mechanism on the persona organism (``data/demo.yaml``, mirrored in
``examples/demo.yaml``), and its quick variant for a first look in about a minute."""

from __future__ import annotations

from importlib import resources
from pathlib import Path
from typing import Any

import yaml

DEMO_FILE = Path(str(resources.files("traitlab.evaluation"))) / "data" / "demo.yaml"
QUICK_TRAITS = ["extraversion", "agreeableness"]


def demo_experiment(quick: bool = False) -> dict[str, Any]:
    """The demo's experiment as a dict; ``quick`` keeps two traits, drops the sweeps and asks fewer questions."""
    experiment = yaml.safe_load(DEMO_FILE.read_text())
    if quick:
        experiment["name"] += " (quick)"
        experiment["traits"] = QUICK_TRAITS
        for method in experiment["methods"]:
            method.pop("sweep", None)
        experiment["evaluations"]["situational"]["n_questions"] = 4
        experiment["evaluations"]["questionnaire"]["max_items_per_trait"] = 4
    return experiment
