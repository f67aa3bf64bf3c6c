"""The serving engine in-process: greedy output equals ``generate_chat`` for every tiny family (continuous
batching where the KV cache can be merged, one request at a time where it cannot), persona grouping, job
scheduling, cancellation and shutdown."""

from __future__ import annotations

import threading
import time

import pytest
import torch

from traitlab.methods import ResidualSteering, WeightDelta
from traitlab.model.tiny import tiny_model
from traitlab.serve.engine import DoneEvent, Engine, ErrorEvent, GenRequest, QueueFull, TokenEvent
from traitlab.serve.personas import PersonaSet

WAIT_S = 120
pytestmark = pytest.mark.usefixtures("one_torch_thread")


class Box:
    def __init__(self) -> None:
        self.events: list[object] = []
        self.done = threading.Event()

    def __call__(self, event: object) -> None:
        self.events.append(event)
        if isinstance(event, DoneEvent | ErrorEvent):
            self.done.set()

    @property
    def result(self) -> DoneEvent | ErrorEvent:
        assert self.done.wait(WAIT_S)
        return self.events[-1]  # type: ignore[return-value]


def request(engine: Engine, text: str, scales: dict[str, float] | None = None, **options: object) -> tuple:
    scales = engine.personas.resolve(scales)
    box = Box()
    req = GenRequest(engine.encode([{"role": "user", "content": text}], scales), scales, box,
                     key=engine.personas.shared_key(scales), **options)
    return req, box


PROMPTS = ["hi", "hello there", "what is up today?", "a", "tell me more about it, please"]


@pytest.mark.parametrize("family", ["llama", "qwen3", "gpt2", "gpt_neox", "gemma2"])
def test_engine_matches_generate_chat_alone_and_batched(family):
    lm = tiny_model(family)
    reference = lm.generate_chat(PROMPTS, max_new_tokens=10, batch_size=1, progress=False).texts
    engine = Engine(lm)
    engine.start()
    try:
        alone = []
        for text in PROMPTS:
            req, box = request(engine, text, max_tokens=10)
            engine.submit(req)
            alone.append(box.result)
        pending = [request(engine, text, max_tokens=10) for text in PROMPTS]
        for req, _ in pending:
            engine.submit(req)
        together = [box.result for _, box in pending]
    finally:
        engine.stop()
    assert [r.text.strip() for r in alone] == reference
    assert [r.text for r in together] == [r.text for r in alone]
    assert engine.max_rows_seen == (1 if family == "gemma2" else len(PROMPTS))  # gemma2: sliding-window cache


def test_streamed_text_adds_up_and_monitor_values_arrive():
    lm = tiny_model("llama")
    personas = PersonaSet.from_interventions(lm, {"v": (ResidualSteering({2: torch.ones(64)}), 0.0)})
    engine = Engine(lm, personas)
    engine.start()
    try:
        req, box = request(engine, "hello", {"v": 2.0}, max_tokens=8, ignore_eos=True)
        engine.submit(req)
        done = box.result
    finally:
        engine.stop()
    tokens = [e for e in box.events if isinstance(e, TokenEvent)]
    assert len(tokens) == 8 and "".join(t.text for t in tokens) == done.text
    assert all(set(t.monitor) == {"v"} for t in tokens)
    assert done.monitor["v"]["tokens"] == 7  # the last token is never fed back
    assert done.monitor["v"]["gauge_response_mean"] - done.monitor["v"]["gauge_last_prompt"] > 1.0


def test_weight_space_groups_run_in_turn_and_restore_weights():
    lm = tiny_model("llama")
    name = "model.layers.0.mlp.down_proj.weight"
    original = dict(lm.model.named_parameters())[name].detach().clone()
    delta = WeightDelta({name: torch.randn(original.shape)})
    personas = PersonaSet.from_interventions(lm, {"w": (delta, 0.0)})
    engine = Engine(lm, personas)
    engine.start()
    try:
        singles = {}
        for scale in (0.0, 1.0, -1.0):
            req, box = request(engine, "hello", {"w": scale}, max_tokens=6, ignore_eos=True)
            engine.submit(req)
            singles[scale] = box.result.text
        mixed = [request(engine, "hello", {"w": s}, max_tokens=6, ignore_eos=True) for s in (1.0, 0.0, -1.0, 1.0)]
        for req, _ in mixed:
            engine.submit(req)
        results = [box.result.text for _, box in mixed]
    finally:
        engine.stop()
    assert len(set(singles.values())) == 3
    assert results == [singles[1.0], singles[0.0], singles[-1.0], singles[1.0]]
    assert torch.equal(dict(lm.model.named_parameters())[name], original)  # restored bit-exactly


def test_jobs_run_on_the_model_thread_between_steps():
    lm = tiny_model("llama")
    engine = Engine(lm)
    engine.start()
    try:
        future = engine.call(lambda model: (threading.current_thread().name, model is lm))
        assert future.result(WAIT_S) == ("traitlab-engine", True)
        failing = engine.call(lambda model: 1 / 0)
        with pytest.raises(ZeroDivisionError):
            failing.result(WAIT_S)
    finally:
        engine.stop()


def test_queue_limit_cancel_and_shutdown():
    lm = tiny_model("llama")
    engine = Engine(lm, max_batch=1, max_queue=2)
    engine.start()
    gate = threading.Event()
    engine.call(lambda model: gate.wait(WAIT_S))  # holds the model thread
    time.sleep(0.05)
    first, box1 = request(engine, "a", max_tokens=4)
    second, box2 = request(engine, "b", max_tokens=4)
    engine.submit(first)
    engine.submit(second)
    third, _ = request(engine, "c", max_tokens=4)
    with pytest.raises(QueueFull):
        engine.submit(third)
    engine.cancel(second)  # leaves the queue at once
    assert engine.snapshot()["waiting"] == 1
    engine.submit(third)
    gate.set()
    assert isinstance(box1.result, DoneEvent)
    assert not box2.done.is_set()
    late, late_box = request(engine, "d", max_tokens=200, ignore_eos=True)
    engine.submit(late)
    engine.stop()
    assert isinstance(late_box.result, DoneEvent | ErrorEvent)
    assert engine.snapshot()["running"] == 0


def test_npti_neurons_vary_per_row():
    from traitlab.methods.neurons import NeuronInduction

    lm = tiny_model("llama")
    npti = NeuronInduction({1: (torch.tensor([0, 1, 2, 3]), torch.full((4,), 3.0))}, {1: torch.tensor([5, 6])})
    engine = Engine(lm, PersonaSet.from_interventions(lm, {"n": (npti, 0.0)}))
    engine.start()
    try:
        alone = {}
        for scale in (0.0, 1.0, 4.0):
            req, box = request(engine, "hello", {"n": scale}, max_tokens=8, ignore_eos=True)
            engine.submit(req)
            alone[scale] = box.result.text
        mixed = [request(engine, "hello", {"n": s}, max_tokens=8, ignore_eos=True) for s in (4.0, 0.0, 1.0, 4.0)]
        for req, _ in mixed:
            engine.submit(req)
        together = [box.result.text for _, box in mixed]
    finally:
        engine.stop()
    assert engine.personas.personas["n"].describe()["batching"] == "per-row"
    assert len(set(alone.values())) == 3
    assert together == [alone[4.0], alone[0.0], alone[1.0], alone[4.0]]
    assert engine.max_rows_seen > 1


def test_non_streaming_client_that_disconnects_leaves_the_queue():
    """In-process app on a free port; the model thread is held by a job so the request stays queued."""
    pytest.importorskip("fastapi")
    uvicorn = pytest.importorskip("uvicorn")
    httpx = pytest.importorskip("httpx")
    from tests.serve.helpers import free_port
    from traitlab.serve.app import create_app

    engine = Engine(tiny_model("llama"), max_batch=1)
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(create_app(engine, "tiny"), host="127.0.0.1", port=port,
                                           log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + WAIT_S
        while not server.started:
            assert time.monotonic() < deadline and thread.is_alive()
            time.sleep(0.02)
        gate = threading.Event()
        engine.call(lambda model: gate.wait(WAIT_S))
        url = f"http://127.0.0.1:{port}/v1/chat/completions"
        body = {"messages": [{"role": "user", "content": "hi"}], "max_tokens": 4}
        with pytest.raises(httpx.ReadTimeout):
            httpx.post(url, json=body, timeout=0.5)
        while engine.snapshot().get("cancelled", 0) < 1:
            assert time.monotonic() < deadline, engine.snapshot()
            time.sleep(0.02)
        assert engine.snapshot()["waiting"] == 0
        gate.set()
        assert httpx.post(url, json=body, timeout=WAIT_S).status_code == 200
    finally:
        server.should_exit = True
        thread.join(WAIT_S)
    assert not engine.running
