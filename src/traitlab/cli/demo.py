"""``traitlab demo``: what traitlab does, on the built-in organism, offline.

Today it loads ``traitlab/persona-tiny``, prints its family-table row, and shows greedy replies to held-out
questions with no persona and under each pole's persona prompt (a prompt Intervention), scored by the
organism's oracle. Each mechanism adds its own section as it lands.
"""

from __future__ import annotations

import json
import random
from pathlib import Path

import typer
from rich.table import Table

from traitlab.cli.common import console, key_value_table
from traitlab.model import ORGANISM, load_model


def demo(
    out: Path = typer.Option(Path("traitlab-demo"), "--out", "-o", help="Folder for the demo's results."),
    quick: bool = typer.Option(False, "--quick", help="Fewer questions and traits."),
) -> None:
    """Run the tour on the built-in persona organism and write results to --out."""
    from traitlab.methods.prompting import PromptIntervention
    from traitlab.organism import TRAITS, OracleScorer
    from traitlab.organism.corpus import heldout_questions, pole_description

    lm = load_model(ORGANISM)
    console.print(key_value_table(lm.describe(), title=f"{ORGANISM}: family table row"))
    questions = heldout_questions()[: 2 if quick else 6]
    traits = TRAITS[:2] if quick else TRAITS
    scorer = OracleScorer()
    rng = random.Random(0)
    conditions = [("no persona", None, None)] + [
        (f"{trait} {pole}", trait, PromptIntervention(pole_description(trait, pole, rng), trait=trait, pole=pole))
        for trait in traits for pole in ("high", "low")
    ]
    table = Table(title="persona prompts on the organism (oracle score of the prompted trait, 0-100)")
    for column in ("condition", "trait score", "example reply"):
        table.add_column(column)
    out.mkdir(parents=True, exist_ok=True)
    rows = []
    for label, trait, intervention in conditions:
        if intervention is None:
            texts = lm.generate_chat(questions, max_new_tokens=96).texts
        else:
            with intervention.applied(lm):
                texts = lm.generate_chat(questions, max_new_tokens=96).texts
        scores = [scorer.score(text) for text in texts]
        shown = traits if trait is None else [trait]
        means = {t: sum(s[t] for s in scores) / len(scores) for t in shown}
        table.add_row(label, ", ".join(f"{t} {m:.0f}" for t, m in means.items()), texts[0][:90])
        rows.append({"condition": label, "trait": trait, "mean_scores": means, "replies": texts})
    console.print(table)
    results = out / "demo.jsonl"
    results.write_text("".join(json.dumps(row) + "\n" for row in rows))
    console.print(f"results: {results}")
