"""Assistant-Axis capping in the serving engine: a runtime persona with per-row scales (capped and uncapped
requests share a batch and each equals its reply alone), and its axis is monitored per token."""

from __future__ import annotations

import pytest
import torch

from tests.serve.test_serve_engine import request
from traitlab.methods.axis_capping import AxisCapping
from traitlab.model.tiny import tiny_model
from traitlab.serve.engine import Engine, TokenEvent
from traitlab.serve.personas import PersonaSet

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def test_axis_capping_is_served_per_row_and_monitored():
    lm = tiny_model("llama")
    direction = torch.randn(lm.hidden_size, generator=torch.Generator().manual_seed(3))
    cap = AxisCapping({2: direction}, {2: (4.0, None)})  # a floor above the tiny model's projections: it bites
    personas = PersonaSet.from_interventions(lm, {"axis": (cap, 0.0)})
    assert personas.personas["axis"].describe()["batching"] == "per-row"
    assert set(personas.monitored()) == {"axis"}
    engine = Engine(lm, personas)
    engine.start()
    try:
        singles = {}
        for scale in (0.0, 1.0):
            req, box = request(engine, "hello", {"axis": scale}, max_tokens=6, ignore_eos=True)
            engine.submit(req)
            singles[scale] = box.result
        mixed = [request(engine, "hello", {"axis": s}, max_tokens=6, ignore_eos=True) for s in (1.0, 0.0, 1.0)]
        for req, _ in mixed:
            engine.submit(req)
        results = [box.result for _, box in mixed]
    finally:
        engine.stop()
    assert singles[0.0].text != singles[1.0].text
    assert [r.text for r in results] == [singles[1.0].text, singles[0.0].text, singles[1.0].text]
    assert engine.max_rows_seen >= 2
    tokens = [e for _, box in mixed for e in box.events if isinstance(e, TokenEvent)]
    assert tokens and all(set(t.monitor) == {"axis"} for t in tokens)
    # the capped reply's projections at the capped layer sit at or above the floor
    assert singles[1.0].monitor["axis"]["response_min"] >= 4.0 - 1e-4
