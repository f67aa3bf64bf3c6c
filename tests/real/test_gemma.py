"""Gemma-3-270m base from its PyPI chunk packages: assembled, checked against its sha256, converted once and
cached; a capture on it matches ``output_hidden_states`` (another family: gemma3_text, 18 layers)."""

from __future__ import annotations

import pytest
import torch

from tests.conftest import require_builtin
from traitlab.model import capture_residual, load_model


@pytest.mark.slow
def test_gemma_loads_from_the_cache_and_captures():
    require_builtin("gemma-3-270m")
    lm = load_model("gemma-3-270m", device="cpu")
    assert (lm.config.model_type, lm.num_layers, lm.hidden_size) == ("gemma3_text", 18, 640)
    assert not lm.renderer.has_template  # a base model: traitlab uses its plain layout
    ids = torch.tensor([lm.tokenizer("The cat sat on the mat because it was tired.")["input_ids"]])
    with torch.no_grad():
        reference = lm.model(ids, output_hidden_states=True).hidden_states
        with capture_residual(lm, [0, 9, 17], positions="all", keep_tokens=True) as capture:
            lm.model(ids)
    for layer in (0, 9, 17):
        assert torch.equal(capture.tokens(layer)[0], reference[layer])
