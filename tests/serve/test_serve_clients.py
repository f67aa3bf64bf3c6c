"""Real clients against ``traitlab serve``: the ``openai`` package (streaming and not), the evaluation
harness's endpoint judge, and a full queue (429) on a server with one batch slot and one queue slot."""

from __future__ import annotations

import concurrent.futures
import time

import pytest

pytest.importorskip("fastapi")
pytest.importorskip("uvicorn")
openai = pytest.importorskip("openai")
httpx = pytest.importorskip("httpx")

from tests.serve.helpers import KEY, persona_args, serve  # noqa: E402
from traitlab.evaluation.client import ChatClient  # noqa: E402
from traitlab.evaluation.judges import EndpointJudge, LocalJudge  # noqa: E402
from traitlab.model import load_model  # noqa: E402
from traitlab.registry import load_intervention  # noqa: E402

HELLO = [{"role": "user", "content": "Hello there, how are you?"}]


@pytest.fixture
def client(server):
    with openai.OpenAI(base_url=server.url + "/v1", api_key=KEY, max_retries=0, timeout=120) as c:
        yield c


def test_openai_client_non_streaming(server, client):
    assert [m.id for m in client.models.list()] == ["tiny"]
    completion = client.chat.completions.create(model="tiny", messages=HELLO, temperature=0, max_tokens=12,
                                                extra_body={"persona": {"warmth": 1.5}})
    raw = server.chat(messages=HELLO, temperature=0, max_tokens=12, persona={"warmth": 1.5}).json()
    assert completion.choices[0].message.content == raw["choices"][0]["message"]["content"]
    assert completion.choices[0].finish_reason in ("stop", "length")
    assert completion.usage.completion_tokens == raw["usage"]["completion_tokens"]
    assert completion.model_extra["persona"]["warmth"] == 1.5
    assert "warmth" in completion.model_extra["persona_monitor"]
    scored = client.chat.completions.create(model="tiny", messages=HELLO, temperature=0, max_tokens=3,
                                            logprobs=True, top_logprobs=4)
    tokens = scored.choices[0].logprobs.content
    assert len(tokens) == scored.usage.completion_tokens and all(len(t.top_logprobs) == 4 for t in tokens)


def test_openai_client_streaming(server, client):
    body = dict(model="tiny", messages=HELLO, temperature=0, max_tokens=20, extra_body={"ignore_eos": True})
    whole = client.chat.completions.create(**body).choices[0].message.content
    stream = client.chat.completions.create(stream=True, stream_options={"include_usage": True}, **body)
    pieces, finish, usage = [], None, None
    for chunk in stream:
        if chunk.usage is not None:
            usage = chunk.usage
        for choice in chunk.choices:
            pieces.append(choice.delta.content or "")
            finish = choice.finish_reason or finish
    assert "".join(pieces) == whole
    assert finish == "length" and usage.completion_tokens == 20


def test_openai_client_errors(server):
    with openai.OpenAI(base_url=server.url + "/v1", api_key="wrong", max_retries=0) as bad, \
            pytest.raises(openai.AuthenticationError):
        bad.models.list()
    with openai.OpenAI(base_url=server.url + "/v1", api_key=KEY, max_retries=0) as good:
        with pytest.raises(openai.BadRequestError, match="unknown persona"):
            good.chat.completions.create(model="tiny", messages=HELLO, extra_body={"persona": {"nope": 1}})
        with pytest.raises(openai.NotFoundError):
            good.chat.completions.create(model="gpt-4o", messages=HELLO)


@pytest.fixture(scope="module")
def limited(serve_assets):
    """One batch slot, one queue slot; the ``digits`` persona on by default (it makes digits likely, so a
    log-prob judge gets scores out of a random model)."""
    pytest.importorskip("fastapi")
    args = persona_args(serve_assets, "digits", defaults={"digits": 1.0})
    args += ["--max-batch", "1", "--max-queue", "1", "--max-tokens", "240"]
    with serve(serve_assets["model"], args, KEY, serve_assets["logs"]) as handle:
        yield handle


def test_endpoint_judge_scores_through_the_server(limited, serve_assets):
    rubric = "Q: {question}\nA: {answer}\nScore 0-100:"  # short: the tiny model's context is 256 tokens
    triples = [("How are you?", "Great, let's party!", rubric), ("Plans?", "Stay home and read.", rubric)]
    client = ChatClient(limited.url + "/v1", "tiny", api_key=KEY, concurrency=2)
    judge = EndpointJudge(client)
    try:
        scores = judge.score_many(triples)
    finally:
        client.close()
    assert judge.text_fallbacks == 0  # scored from the server's log-probs
    assert all(s is not None and 0 <= s <= 9 for s in scores)
    # the same method in-process, on the same weights under the same persona
    lm = load_model(str(serve_assets["model"]))
    with load_intervention(serve_assets["digits"], lm).applied(lm):
        local = LocalJudge(lm).score_many(triples)
    assert scores == pytest.approx(local, abs=1e-3)


def test_full_queue_answers_429(limited):
    long = {"model": "tiny", "messages": HELLO, "max_tokens": 200, "ignore_eos": True, "temperature": 0}
    for _attempt in range(3):
        with limited.client() as c, c.stream("POST", "/v1/chat/completions", json={**long, "stream": True}) as first:
            lines = first.iter_lines()  # keep the iterator: dropping it closes the connection
            next(lines)  # the first request now holds the only batch slot
            with concurrent.futures.ThreadPoolExecutor(1) as pool:
                queued = pool.submit(limited.chat, **{**long, "max_tokens": 2})
                deadline = time.monotonic() + 10
                while c.get("/v1/stats").json()["waiting"] < 1 and time.monotonic() < deadline and \
                        not queued.done():
                    time.sleep(0.01)
                rejected = limited.chat(c, **long)
                if queued.done() and rejected.status_code == 200:
                    continue  # the long request finished too soon on this machine: try again
                assert rejected.status_code == 429, rejected.text
                assert rejected.headers["retry-after"] == "1"
                assert rejected.json()["error"]["type"] == "rate_limit_error"
                assert queued.result().status_code == 200  # the queued one is served once the slot frees
            return
    pytest.fail("could not fill the queue")
