"""Every field of ``/v1/chat/completions`` and ``/v1/monitor`` with bad values: a 400 with one message that
starts with the field's name (``param`` set), never FastAPI's 422 and never a 500. In-process (Starlette's test
client) on the random tiny Llama with one persona vector, so the suite stays fast."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import torch

pytest.importorskip("fastapi")

from fastapi.testclient import TestClient

from traitlab.methods import PersonaVector
from traitlab.model.tiny import tiny_model
from traitlab.serve.app import ServeLimits, create_app
from traitlab.serve.engine import Engine
from traitlab.serve.personas import PersonaSet

pytestmark = pytest.mark.usefixtures("one_torch_thread")
HI = [{"role": "user", "content": "hi"}]


@pytest.fixture(scope="module")
def client() -> Iterator[TestClient]:
    lm = tiny_model("llama")
    table = torch.randn(lm.num_layers + 1, lm.hidden_size, generator=torch.Generator().manual_seed(3))
    bold = PersonaVector({"response_avg": table}, layers=[1], trait="boldness", fingerprint=lm.fingerprint)
    engine = Engine(lm, PersonaSet.from_interventions(lm, {"bold": (bold, 0.0)}), max_batch=2, max_queue=4)
    with TestClient(create_app(engine, "tiny", limits=ServeLimits(max_tokens=8)),
                    raise_server_exceptions=False) as test_client:
        yield test_client


CHAT_FIELDS: list[tuple[str, object]] = [
    ("model", 5), ("model", ["tiny"]),
    ("messages", None), ("messages", []), ("messages", "hi"), ("messages", [1]), ("messages", [{"content": "x"}]),
    ("messages", [{"role": "robot", "content": "hi"}]), ("messages", [{"role": "user", "content": 5}]),
    ("messages", [{"role": "user", "content": [{"type": "image_url", "text": "x"}]}]),
    ("messages", [{"role": "user", "content": [{"type": "text"}]}]),
    ("messages", [{"role": "user", "content": "hi", "name": 7}]),
    ("temperature", -1), ("temperature", 2.5), ("temperature", "hot"), ("temperature", [1]),
    ("top_p", 0), ("top_p", 1.5), ("top_p", "x"),
    ("max_tokens", 0), ("max_tokens", -3), ("max_tokens", 1.5), ("max_tokens", "ten"), ("max_tokens", 10**30),
    ("max_completion_tokens", 0), ("max_completion_tokens", "x"),
    ("n", 0), ("n", "two"), ("n", 2),
    ("seed", 2**70), ("seed", -(2**70)), ("seed", 1.5), ("seed", "x"),
    ("stop", ["a", "b", "c", "d", "e"]), ("stop", ""), ("stop", "x" * 65), ("stop", [1]), ("stop", 5),
    ("stream", "maybe"), ("stream", [True]),
    ("stream_options", 5), ("stream_options", {"include_usage": "sometimes"}),
    ("logprobs", "x"), ("top_logprobs", -1), ("top_logprobs", 21), ("top_logprobs", "x"),
    ("persona", []), ("persona", "bold"), ("persona", {"bold": "lots"}), ("persona", {"bold": None}),
    ("persona", {"nope": 1.0}), ("persona", {"bold": 1e6}),
    ("ignore_eos", "x"), ("user", 5),
]


@pytest.mark.parametrize("field, value", CHAT_FIELDS, ids=[f"{f}={v!r}"[:40] for f, v in CHAT_FIELDS])
def test_every_chat_field_with_a_bad_value_is_a_400(client, field, value):
    body = {"messages": HI, "max_tokens": 2, **({"top_logprobs": 2, "logprobs": True} if field == "top_logprobs"
                                                 else {}), field: value}
    if value is None:
        body.pop(field)
    response = client.post("/v1/chat/completions", json=body)
    assert response.status_code == 400, response.text
    error = response.json()["error"]
    assert error["message"].startswith(field) or error["param"] == field, error
    assert "\n" not in error["message"] and len(error["message"]) < 300


MONITOR_FIELDS: list[tuple[str, object]] = [
    ("model", 5), ("messages", None), ("messages", []), ("messages", [{"role": "robot", "content": "x"}]),
    ("messages", [{"role": "user", "content": {"text": "x"}}]),
    ("persona", [1]), ("persona", {"bold": "x"}), ("persona", {"nope": 1.0}),
    ("personas", "bold"), ("personas", [5]), ("personas", ["nope"]),
]


@pytest.mark.parametrize("field, value", MONITOR_FIELDS, ids=[f"{f}={v!r}"[:40] for f, v in MONITOR_FIELDS])
def test_every_monitor_field_with_a_bad_value_is_a_400(client, field, value):
    body = {"messages": HI, field: value}
    if value is None:
        body.pop(field)
    response = client.post("/v1/monitor", json=body)
    assert response.status_code == 400, response.text
    error = response.json()["error"]
    assert error["message"].startswith(field) or error["param"] == field, error


@pytest.mark.parametrize("raw", [b'{"messages": [{"role": "user", "content": "x"}], "temperature": NaN}',
                                 b'{"messages": [{"role": "user", "content": "x"}], "top_p": Infinity}',
                                 b'{"messages": [{"role": "user", "content": "x"}], "persona": {"bold": 1e400}}',
                                 b'{"messages": [{"role": "user", "content": "x"}], "persona": {"bold": -Infinity}}',
                                 b"", b"[1, 2]", b'"hello"', b"null", b"{not json", b"\xff\xfe",
                                 b"[" * 100000 + b"]" * 100000,
                                 b'{"messages": [{"role": "user", "content": "\\ud800"}]}',
                                 b'{"messages": [{"role": "user", "content": "x"}], "model": "\\udfff"}',
                                 b'{"messages": [{"role": "user", "content": "x"}], "persona": {"\\ud800": 1}}'])
@pytest.mark.parametrize("route", ["/v1/chat/completions", "/v1/monitor"])
def test_bodies_that_are_not_a_valid_object_are_a_400(client, raw, route):
    if route == "/v1/monitor" and (b"temperature" in raw or b"top_p" in raw):
        raw = raw.replace(b'"temperature": NaN', b'"persona": {"bold": NaN}')  # monitor has no sampling fields
        raw = raw.replace(b'"top_p": Infinity', b'"persona": {"bold": Infinity}')
    response = client.post(route, content=raw, headers={"Content-Type": "application/json"})
    assert response.status_code == 400, response.text
    assert response.json()["error"]["type"] == "invalid_request_error"


def test_a_good_request_still_answers(client):
    response = client.post("/v1/chat/completions", json={"messages": HI, "max_tokens": 2, "temperature": 0,
                                                         "persona": {"bold": 0.5}})
    assert response.status_code == 200, response.text
    assert response.json()["usage"]["completion_tokens"] <= 2
    monitor = client.post("/v1/monitor", json={"messages": [*HI, {"role": "assistant", "content": "yo"}]})
    assert monitor.status_code == 200 and set(monitor.json()["monitors"]) == {"bold"}
