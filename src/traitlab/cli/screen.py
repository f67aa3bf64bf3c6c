"""``traitlab screen``: rank training samples by how far their replies sit along a persona vector (Chen et al.
2025, §6)."""

from __future__ import annotations

from pathlib import Path

import typer

from traitlab.cli.common import MODEL, console
from traitlab.cli.monitor import vector_on_model, write_csv
from traitlab.cli.vectors import _check_out


def screen(
    vector_path: Path = typer.Option(..., "--vector", "-v"),
    data: Path = typer.Option(..., "--data", "-d", help="Training chat JSONL (each ends with the reply)."),
    out: Path = typer.Option(..., "--out", "-o", help="Ranked CSV to write."),
    model: str = MODEL,
    layer: int | None = typer.Option(None, "--layer"),
    max_new_tokens: int = typer.Option(96, "--max-new-tokens"),
) -> None:
    """Rank training samples by ΔP, how far their replies sit along the trait beyond the model's own."""
    from traitlab.finetune import load_chat_jsonl
    from traitlab.monitor import screen as run_screen

    samples = load_chat_jsonl(data)
    _check_out(out)
    vector, lm, chosen = vector_on_model(vector_path, model, layer)
    rows = run_screen(lm, vector.direction(chosen), chosen, samples, max_new_tokens)
    ranked = sorted(rows, key=lambda r: -(r["delta_p"] if r["delta_p"] is not None else float("-inf")))
    for rank, row in enumerate(ranked, start=1):
        row["rank"] = rank
    write_csv(ranked, out)
    scores = [r["delta_p"] for r in rows if r["delta_p"] is not None]
    console.print(f"dataset mean ΔP {sum(scores) / max(len(scores), 1):.4f} over {len(scores)} samples; "
                  f"ranked list in {out}")
