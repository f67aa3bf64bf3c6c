"""Server faults from the issue-26 probe, in-process on 127.0.0.1: a request that breaks inside a decode step fails
alone and the scheduler goes on; a dead engine makes /health non-200; a chunked body over the limit is refused
with 413 without being read to the end; /v1/monitor waits in the same bounded queue (429) and leaves it when its
client goes; a 2**70 seed is a 400 (field validation), never a 500."""

from __future__ import annotations

import concurrent.futures
import threading
import time
from collections.abc import Iterator

import pytest
import torch

from tests.serve.test_serve_engine import WAIT_S, request
from traitlab.methods.neurons import NeuronInduction
from traitlab.model.tiny import tiny_model
from traitlab.serve.engine import DoneEvent, Engine, ErrorEvent
from traitlab.serve.personas import PersonaSet

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def test_a_nan_persona_fails_its_own_request_and_the_scheduler_goes_on():
    lm = tiny_model("llama")  # the probe's case: an NPTI artifact with NaN boosts, built in memory past the checks
    broken = NeuronInduction({1: (torch.tensor([0, 1, 2, 3]), torch.full((4,), float("nan")))},
                             {1: torch.tensor([5, 6])})
    engine = Engine(lm, PersonaSet.from_interventions(lm, {"broken": (broken, 0.0)}))
    engine.start()
    try:
        bad, bad_box = request(engine, "hi", {"broken": 1.0}, max_tokens=4, temperature=1.0, seed=1)
        good, good_box = request(engine, "hello", max_tokens=4, ignore_eos=True)
        engine.submit(bad)
        assert isinstance(bad_box.result, ErrorEvent)
        engine.submit(good)
        assert isinstance(good_box.result, DoneEvent)
        # concurrently: long-running good rows share the batch with the broken one and finish anyway
        rows = [request(engine, "hello", max_tokens=6, ignore_eos=True) for _ in range(3)]
        rows.insert(1, request(engine, "hi", {"broken": 1.0}, max_tokens=6, temperature=1.0, seed=2))
        for req, _ in rows:
            engine.submit(req)
        kinds = [type(box.result) for _, box in rows]
        assert kinds == [DoneEvent, ErrorEvent, DoneEvent, DoneEvent], kinds
        assert engine.running
    finally:
        engine.stop()


@pytest.fixture(scope="module")
def app_server() -> Iterator[tuple[str, Engine]]:
    pytest.importorskip("fastapi")
    uvicorn = pytest.importorskip("uvicorn")
    from tests.serve.helpers import free_port
    from traitlab.serve.app import ServeLimits, create_app

    engine = Engine(tiny_model("llama"), max_batch=1, max_queue=2)
    port = free_port()
    limits = ServeLimits(max_body_bytes=64 * 1024)
    server = uvicorn.Server(uvicorn.Config(create_app(engine, "tiny", limits=limits), host="127.0.0.1", port=port,
                                           log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + WAIT_S
    while not server.started:
        assert time.monotonic() < deadline and thread.is_alive()
        time.sleep(0.02)
    yield f"http://127.0.0.1:{port}", engine
    server.should_exit = True
    thread.join(WAIT_S)


def test_a_chunked_body_over_the_limit_is_413(app_server):
    httpx = pytest.importorskip("httpx")
    url, _ = app_server

    def chunks() -> Iterator[bytes]:
        yield b'{"messages": [{"role": "user", "content": "'
        for _ in range(64):  # 4 MiB in 64 KiB pieces, without a Content-Length
            yield b"a" * 65536
        yield b'"}]}'

    response = httpx.post(f"{url}/v1/chat/completions", content=chunks(), timeout=WAIT_S,
                          headers={"content-type": "application/json"})
    assert response.status_code == 413
    assert response.json()["error"]["code"] == "body_too_large"
    small = httpx.post(f"{url}/v1/chat/completions", timeout=WAIT_S, headers={"content-type": "application/json"},
                       content=iter([b'{"messages": [{"role": "user", "content": "hi"}], ', b'"max_tokens": 2}']))
    assert small.status_code == 200


def test_a_seed_beyond_64_bits_is_refused(app_server):
    httpx = pytest.importorskip("httpx")
    url, _ = app_server
    body = {"messages": [{"role": "user", "content": "hi"}], "max_tokens": 2, "seed": 2**70, "temperature": 1}
    response = httpx.post(f"{url}/v1/chat/completions", json=body, timeout=WAIT_S)
    assert response.status_code == 400 and response.json()["error"]["param"] == "seed"


def test_monitor_is_queued_like_chat_and_leaves_when_its_client_goes(app_server):
    httpx = pytest.importorskip("httpx")
    url, engine = app_server
    gate = threading.Event()
    engine.call(lambda model: gate.wait(WAIT_S))  # hold the model thread
    body = {"messages": [{"role": "user", "content": "hi"}]}
    try:
        with concurrent.futures.ThreadPoolExecutor(6) as pool:
            def post() -> int:
                try:
                    return httpx.post(f"{url}/v1/monitor", json=body, timeout=1.5).status_code
                except httpx.ReadTimeout:
                    return 0  # queued, then abandoned by this client
            codes = list(pool.map(lambda _: post(), range(6)))
        assert codes.count(429) >= 4, codes  # max_queue=2
        deadline = time.monotonic() + WAIT_S
        while engine.snapshot()["waiting"] or any(getattr(w, "queued", False) for w in engine._waiting):
            assert time.monotonic() < deadline, engine.snapshot()
            time.sleep(0.05)
    finally:
        gate.set()
    assert httpx.post(f"{url}/v1/monitor", json=body, timeout=WAIT_S).status_code == 200


def test_health_is_503_when_the_engine_is_gone(app_server):
    httpx = pytest.importorskip("httpx")
    url, engine = app_server
    assert httpx.get(f"{url}/health", timeout=WAIT_S).status_code == 200
    engine.stop()
    response = httpx.get(f"{url}/health", timeout=WAIT_S)
    assert response.status_code == 503 and response.json()["status"] == "stopped"
