"""HTTP tests of ``traitlab serve`` (a subprocess on a free loopback port): routes, auth, limits, errors,
streaming, log-probs, stop strings, personas, the monitor, disconnects and the queue."""

from __future__ import annotations

import json
import time

import pytest

pytest.importorskip("fastapi")
pytest.importorskip("uvicorn")
httpx = pytest.importorskip("httpx")

from tests.serve.helpers import KEY  # noqa: E402

HELLO = [{"role": "user", "content": "Hello there, how are you?"}]


def sse_events(response: httpx.Response) -> list[object]:
    events: list[object] = []
    for line in response.iter_lines():
        if line.startswith("data: "):
            data = line[len("data: "):]
            events.append("[DONE]" if data == "[DONE]" else json.loads(data))
    return events


def test_models_and_personas(server):
    with server.client() as c:
        models = c.get("/v1/models").json()
        assert models["object"] == "list" and [m["id"] for m in models["data"]] == ["tiny"]
        personas = {p["name"]: p for p in c.get("/v1/personas").json()["data"]}
        health = c.get("/health").json()
    assert health["status"] == "ok"
    assert set(personas) == {"warmth", "bold", "heavy", "cheer"}
    assert personas["warmth"]["mechanism"] == "residual_steering" and personas["warmth"]["trait"] == "warmth"
    assert personas["bold"]["mechanism"] == "persona_vectors"
    assert personas["heavy"]["weight_space"] and personas["heavy"]["batching"] == "grouped"
    assert personas["cheer"]["mechanism"] == "prompt"
    assert all(p["default_scale"] == 0.0 for p in personas.values())
    assert personas["warmth"]["monitor"]["layer"] == 2 and personas["bold"]["monitor"]["layer"] == 1
    assert personas["warmth"]["monitor"]["norm"] > 0
    assert personas["heavy"]["monitor"] is None and personas["cheer"]["monitor"] is None
    assert "/" not in personas["warmth"]["artifact"]  # a file name, never the server's path


@pytest.mark.parametrize("method,path", [("get", "/v1/models"), ("get", "/v1/personas"), ("get", "/v1/stats"),
                                         ("get", "/health"), ("post", "/v1/chat/completions"),
                                         ("post", "/v1/monitor")])
def test_every_api_route_needs_the_key(server, method, path):
    body = {"json": {"messages": HELLO}} if method == "post" else {}
    for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": KEY}):
        response = getattr(httpx, method)(server.url + path, headers=headers, timeout=30, **body)
        assert response.status_code == 401, (path, headers, response.text)
        assert response.json()["error"]["type"] == "authentication_error"
        assert response.headers["www-authenticate"] == "Bearer"


def test_page_and_static_files_need_no_key(server):
    page = httpx.get(server.url + "/", timeout=30)
    assert page.status_code == 200 and "<title>traitlab serve</title>" in page.text
    for name in ("app.js", "style.css"):
        assert httpx.get(f"{server.url}/static/{name}", timeout=30).status_code == 200
    assert "http://" not in page.text and "https://" not in page.text  # no CDN: works offline


def test_chat_completion_shape(server):
    response = server.chat(messages=HELLO, temperature=0, max_tokens=12)
    assert response.status_code == 200, response.text
    data = response.json()
    assert data["object"] == "chat.completion" and data["model"] == "tiny" and data["id"].startswith("chatcmpl-")
    choice = data["choices"][0]
    assert choice["message"]["role"] == "assistant" and isinstance(choice["message"]["content"], str)
    assert choice["finish_reason"] in ("stop", "length") and choice["logprobs"] is None
    usage = data["usage"]
    assert usage["total_tokens"] == usage["prompt_tokens"] + usage["completion_tokens"]
    assert 1 <= usage["completion_tokens"] <= 12
    assert data["persona"] == {"warmth": 0.0, "bold": 0.0, "heavy": 0.0, "cheer": 0.0}
    assert set(data["persona_monitor"]) == {"warmth", "bold"}
    assert data["persona_monitor"]["warmth"]["layer"] == 2
    assert data["persona_monitor"]["warmth"]["last_prompt"] is not None


def test_stream_matches_non_stream(server):
    body = dict(messages=HELLO, temperature=0, max_tokens=16, ignore_eos=True, persona={"warmth": 1.5})
    whole = server.chat(**body).json()
    with server.client() as c, c.stream("POST", "/v1/chat/completions",
                                        json={**body, "model": "tiny", "stream": True,
                                              "stream_options": {"include_usage": True}}) as response:
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        events = sse_events(response)
    assert events[-1] == "[DONE]"
    chunks = events[:-1]
    assert all(c["object"] == "chat.completion.chunk" for c in chunks)
    assert chunks[0]["choices"][0]["delta"]["role"] == "assistant"
    text = "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks if c["choices"])
    assert text == whole["choices"][0]["message"]["content"]
    finals = [c for c in chunks if c["choices"] and c["choices"][0]["finish_reason"]]
    assert len(finals) == 1 and finals[0]["choices"][0]["finish_reason"] == "length"
    assert finals[0]["persona_monitor"]["summary"]["warmth"] == whole["persona_monitor"]["warmth"]
    assert chunks[-1]["usage"] == whole["usage"]
    live = [c["persona_monitor"] for c in chunks[1:-2]]
    assert len(live) == 16 and all(set(m) == {"warmth", "bold"} for m in live)
    assert all({"projection", "gauge"} <= set(m["warmth"]) for m in live)


def test_logprobs(server):
    data = server.chat(messages=HELLO, temperature=0, max_tokens=6, ignore_eos=True, logprobs=True,
                       top_logprobs=5).json()
    content = data["choices"][0]["logprobs"]["content"]
    assert len(content) == 6
    for entry in content:
        assert entry["logprob"] <= 0 and len(entry["top_logprobs"]) == 5
        top = entry["top_logprobs"]
        assert top[0]["token"] == entry["token"] and top[0]["logprob"] == pytest.approx(entry["logprob"])
        assert [t["logprob"] for t in top] == sorted((t["logprob"] for t in top), reverse=True)
    assert "".join(e["token"] for e in content).startswith(data["choices"][0]["message"]["content"][:3])
    single = server.chat(messages=HELLO, temperature=0, max_tokens=1, logprobs=True, top_logprobs=20).json()
    assert len(single["choices"][0]["logprobs"]["content"][0]["top_logprobs"]) == 20


def test_stop_strings(server):
    full = server.chat(messages=HELLO, temperature=0, max_tokens=24, ignore_eos=True).json()
    text = full["choices"][0]["message"]["content"]
    stop = text[5:7]
    assert len(stop) == 2
    cut = server.chat(messages=HELLO, temperature=0, max_tokens=24, ignore_eos=True, stop=[stop, "\x00zz"]).json()
    assert cut["choices"][0]["finish_reason"] == "stop"
    assert cut["choices"][0]["message"]["content"] == text[:text.find(stop)]
    with server.client() as c, c.stream("POST", "/v1/chat/completions",
                                        json={"model": "tiny", "messages": HELLO, "temperature": 0, "max_tokens": 24,
                                              "ignore_eos": True, "stop": stop, "stream": True}) as response:
        streamed = "".join(c["choices"][0]["delta"].get("content") or ""
                           for c in sse_events(response)[:-1] if c["choices"])
    assert streamed == text[:text.find(stop)]


def test_seeded_sampling_is_reproducible(server):
    body = dict(messages=HELLO, temperature=1.0, top_p=0.9, max_tokens=16, ignore_eos=True)
    a = server.chat(seed=11, **body).json()["choices"][0]["message"]["content"]
    b = server.chat(seed=11, **body).json()["choices"][0]["message"]["content"]
    others = {server.chat(seed=s, **body).json()["choices"][0]["message"]["content"] for s in (12, 13, 14)}
    assert a == b
    assert others != {a}


def test_personas_change_replies_and_gauges(server):
    body = dict(messages=HELLO, temperature=0, max_tokens=16, ignore_eos=True)
    plain = server.chat(**body).json()
    warm = server.chat(persona={"warmth": 3.0}, **body).json()
    heavy = server.chat(persona={"heavy": 1.0}, **body).json()
    cheer = server.chat(persona={"cheer": 1.0}, **body).json()
    texts = {r["choices"][0]["message"]["content"] for r in (plain, warm, heavy, cheer)}
    assert len(texts) == 4
    assert cheer["usage"]["prompt_tokens"] > plain["usage"]["prompt_tokens"]  # the persona's system prompt
    # steering by α·v at the monitored layer moves the gauge (in units of |v|) by α on reply tokens
    shift = warm["persona_monitor"]["warmth"]["gauge_response_mean"] - \
        plain["persona_monitor"]["warmth"]["gauge_response_mean"]
    assert shift == pytest.approx(3.0, abs=0.5)
    # an explicit system message wins over prompt personas
    own = [{"role": "system", "content": "Be brief."}, *HELLO]
    a = server.chat(messages=own, persona={"cheer": 1.0}, temperature=0, max_tokens=8).json()
    b = server.chat(messages=own, temperature=0, max_tokens=8).json()
    assert a["choices"][0]["message"]["content"] == b["choices"][0]["message"]["content"]


def test_monitor_route(server):
    conversation = [*HELLO, {"role": "assistant", "content": "I am fine, thanks."}]
    with server.client() as c:
        data = c.post("/v1/monitor", json={"messages": conversation}).json()
        steered = c.post("/v1/monitor", json={"messages": conversation, "persona": {"warmth": 2.0},
                                              "personas": ["warmth"]}).json()
        bad = c.post("/v1/monitor", json={"messages": conversation, "personas": ["heavy"]})
        unknown = c.post("/v1/monitor", json={"messages": conversation, "persona": {"nope": 1}})
    assert data["object"] == "persona.monitor" and set(data["summary"]) == {"warmth", "bold"}
    roles = [t["role"] for t in data["tokens"]]
    assert roles.count("response") == data["response_tokens"] > 0
    assert roles[: data["prompt_tokens"]] == ["prompt"] * data["prompt_tokens"]
    assert all(set(t["projections"]) == {"warmth", "bold"} for t in data["tokens"])
    assert set(steered["summary"]) == {"warmth"}
    delta = steered["summary"]["warmth"]["gauge_response_mean"] - data["summary"]["warmth"]["gauge_response_mean"]
    assert delta == pytest.approx(2.0, abs=1e-3)  # teacher-forced: the reply tokens are the same
    assert steered["summary"]["warmth"]["last_prompt"] == pytest.approx(data["summary"]["warmth"]["last_prompt"])
    assert bad.status_code == 400 and "monitored" in bad.json()["error"]["message"]
    assert unknown.status_code == 400


@pytest.mark.parametrize("body,status,needle", [
    ({"messages": []}, 400, "messages"),
    ({}, 400, "messages"),
    ({"messages": [{"role": "robot", "content": "hi"}]}, 400, "role"),
    ({"messages": HELLO, "temperature": -1}, 400, "temperature"),
    ({"messages": HELLO, "top_p": 0}, 400, "top_p"),
    ({"messages": HELLO, "max_tokens": 0}, 400, "max_tokens"),
    ({"messages": HELLO, "top_logprobs": 50, "logprobs": True}, 400, "top_logprobs"),
    ({"messages": HELLO, "stop": ["a", "b", "c", "d", "e"]}, 400, "stop"),
    ({"messages": HELLO, "persona": {"warmth": "lots"}}, 400, "persona"),
    ({"messages": HELLO, "max_tokens": 49}, 400, "limit of 48"),
    ({"messages": [{"role": "user", "content": "word " * 300}]}, 400, "limit is 200"),
    ({"messages": HELLO, "persona": {"nope": 1.0}}, 400, "loaded personas: warmth, bold, heavy, cheer"),
    ({"messages": HELLO, "persona": {"/etc/passwd": 1.0}}, 400, "unknown persona"),
    ({"messages": HELLO, "persona": {"../warmth.tl.safetensors": 1.0}}, 400, "unknown persona"),
    ({"messages": HELLO, "persona": {"warmth": 1000}}, 400, "outside"),
    ({"messages": HELLO, "n": 2}, 400, "n=1"),
    ({"messages": HELLO, "top_logprobs": 3}, 400, "logprobs=true"),
    ({"messages": HELLO, "model": "gpt-4"}, 404, "not served"),
    ({"messages": [*HELLO, {"role": "system", "content": "late"}]}, 400, "system"),
])
def test_malformed_requests_get_json_errors(server, body, status, needle):
    with server.client() as c:
        response = c.post("/v1/chat/completions", json=body)
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert needle in error["message"] and error["type"]


def test_transport_level_errors(server):
    with server.client() as c:
        bad_json = c.post("/v1/chat/completions", content=b"{not json",
                          headers={"Content-Type": "application/json"})
        nan = c.post("/v1/chat/completions", content=b'{"messages": [{"role": "user", "content": "x"}], '
                                                     b'"persona": {"warmth": NaN}}',
                     headers={"Content-Type": "application/json"})
        huge = c.post("/v1/chat/completions", content=b"x" * ((1 << 20) + 1),
                      headers={"Content-Type": "application/json"})
        missing = c.get("/v1/nothing")
        wrong_method = c.get("/v1/chat/completions")
    assert bad_json.status_code == 400 and bad_json.json()["error"]["code"] == "invalid_json"
    assert nan.status_code == 400 and nan.json()["error"]["param"] == "persona.warmth"
    assert huge.status_code == 413
    assert missing.status_code == 404 and "error" in missing.json()
    assert wrong_method.status_code == 405 and "error" in wrong_method.json()


def test_disconnect_mid_stream_frees_the_slot(server):
    with server.client() as c:
        before = c.get("/v1/stats").json()
        with c.stream("POST", "/v1/chat/completions",
                      json={"model": "tiny", "messages": HELLO, "max_tokens": 48, "ignore_eos": True,
                            "temperature": 0, "stream": True}) as response:
            lines = response.iter_lines()
            seen = 0
            for line in lines:
                seen += line.startswith("data: ")
                if seen >= 3:
                    break
        # the connection is closed here, mid-stream
        deadline = time.monotonic() + 30
        while True:
            stats = c.get("/v1/stats").json()
            if stats["running"] == 0 and stats.get("cancelled", 0) > before.get("cancelled", 0):
                break
            assert time.monotonic() < deadline, stats
            time.sleep(0.1)
        assert stats.get("completed", 0) == before.get("completed", 0)
        # the server keeps serving
        assert server.chat(c, messages=HELLO, temperature=0, max_tokens=4).status_code == 200
