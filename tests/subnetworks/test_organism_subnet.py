"""One small end-to-end run on the persona organism: calibrate on a pole, mask, generate, restore bit-exactly."""

from __future__ import annotations

import functools

import pytest

from tests.helpers import weights_hash
from traitlab.methods.subnet_calibration import GenerationSettings
from traitlab.methods.subnet_fit import FindSettings, find
from traitlab.methods.subnetworks import SubnetworkSet
from traitlab.traits import load_trait

pytestmark = pytest.mark.slow


@functools.cache
def _organism():
    from traitlab.model import load_model

    try:
        return load_model("traitlab/persona-tiny", device="cpu")
    except Exception as exc:  # absent, or still training
        pytest.skip(f"the persona organism is not available ({exc})")


def test_organism_poles_get_distinct_subnetworks_and_restore_exactly():
    lm = _organism()
    spec = load_trait("extraversion_high")
    small = spec.model_copy(update={"instruction": spec.instruction[:2], "questions": spec.questions[:4]})
    settings = FindSettings(contrastive=True, generation=GenerationSettings(max_new_tokens=24, temperature=0.0))
    high, low = find(lm, small, "high", settings, pair=True)
    assert high.pole == "high" and low.pole == "low"
    assert high.sparsity == pytest.approx(0.3, abs=0.01)
    before = weights_hash(lm.model)
    question = spec.eval_questions[:2]
    with SubnetworkSet(lm, {"high": high, "low": low}) as personas:
        personas.use("high")
        texts_high = lm.generate_chat(question, max_new_tokens=24, progress=False).texts
        personas.use("low")
        texts_low = lm.generate_chat(question, max_new_tokens=24, progress=False).texts
    assert weights_hash(lm.model) == before
    assert texts_high != texts_low and all(t.strip() for t in texts_high + texts_low)
