"""``traitlab info``: the model's family-table row, sizes, neuron site and fingerprint."""

from __future__ import annotations

from pathlib import Path

from traitlab.cli.common import DEVICE, DTYPE, FAMILY, MODEL, console, key_value_table, read_family
from traitlab.model import load_model


def info(model: str = MODEL, family: Path | None = FAMILY, dtype: str | None = DTYPE,
         device: str | None = DEVICE) -> None:
    """Show how traitlab sees a model: family, layers, hidden size, neuron site, fingerprint."""
    lm = load_model(model, dtype=dtype, device=device, family=read_family(family))
    console.print(key_value_table(lm.describe(), title=model))
