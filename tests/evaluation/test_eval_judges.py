"""Judges: the endpoint judge against a local HTTP server that speaks chat completions with logprobs (the
< 0.25-mass, no-logprobs, rejected-logprobs, retry and cache paths), the local judge, the coherence judge."""

from __future__ import annotations

import json
import math
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from traitlab.errors import TraitlabError
from traitlab.evaluation.client import ChatClient, JudgeError
from traitlab.evaluation.judges import (
    COHERENCE_RUBRIC,
    EndpointJudge,
    LocalJudge,
    PerplexityCoherenceJudge,
    repetition_factor,
    trait_rubric,
)
from traitlab.evaluation.questionnaire import EndpointResponder, Inventory, Item, administer

RUBRIC = "Rate this. Q: {question} A: {answer}"


class Server:
    """A chat-completions endpoint; what it answers depends on markers in the last user message."""

    def __init__(self):
        self.requests: list[dict] = []
        self.flaky_left = 1
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_POST(self):
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                outer.requests.append(body)
                status, payload = outer.answer(self.path, body)
                data = json.dumps(payload).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/v1"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def answer(self, path, body):
        if path != "/v1/chat/completions":
            return 404, {"error": {"message": "no such route"}}
        if body["model"] != "judge-1":
            return 404, {"error": {"message": f"model {body['model']} does not exist"}}
        prompt = body["messages"][-1]["content"]
        if "FLAKY" in prompt and self.flaky_left:
            self.flaky_left -= 1
            return 503, {"error": {"message": "overloaded"}}
        if "NOLP400" in prompt and body.get("logprobs"):
            return 400, {"error": {"message": "logprobs are not supported by this model"}}
        if "describe" in prompt:  # a questionnaire item
            return 200, _choice("4" if "from 1 (very inaccurate)" in prompt else "2", None)
        if "MASSLOW" in prompt:
            top = [("Sure", 0.8), ("7", 0.1), ("8", 0.05), ("x", 0.05)]
        elif "NOLOGPROBS" in prompt or "NOLP400" in prompt:
            return 200, _choice("Score: 42" if body["max_tokens"] > 1 else "Sc", None)
        else:
            top = [("80", 0.5), (" 90", 0.3), ("Hello", 0.2)]
        if not body.get("logprobs"):
            return 200, _choice("80", None)
        assert body["max_tokens"] == 1 and body["top_logprobs"] == 20
        return 200, _choice(top[0][0], [{"token": t, "logprob": math.log(p)} for t, p in top])

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()


def _choice(text, top):
    logprobs = None if top is None else {"content": [{"token": top[0]["token"], "logprob": top[0]["logprob"],
                                                      "top_logprobs": top}]}
    return {"choices": [{"index": 0, "message": {"role": "assistant", "content": text}, "logprobs": logprobs}]}


@pytest.fixture
def server():
    srv = Server()
    yield srv
    srv.close()


def test_endpoint_judge_weighted_mean_low_mass_and_text_fallback(server, tmp_path):
    client = ChatClient(server.url, "judge-1", concurrency=3, backoff=0.01, cache=tmp_path / "cache.sqlite")
    judge = EndpointJudge(client)
    assert judge.score("q", "a", RUBRIC) == pytest.approx((80 * 0.5 + 90 * 0.3) / 0.8)
    assert judge.score("q", "MASSLOW", RUBRIC) is None  # integers carry 0.15 < 0.25
    assert judge.score("q", "NOLOGPROBS", RUBRIC) == 42.0  # no logprobs → asked again for text, parsed
    assert judge.text_fallbacks == 1
    assert server.requests[0]["messages"][0]["content"] == "Rate this. Q: q A: a"


def test_endpoint_rejecting_logprobs_falls_back_to_text(server):
    judge = EndpointJudge(ChatClient(server.url, "judge-1", backoff=0.01))
    assert judge.score("q", "NOLP400", RUBRIC) == 42.0
    assert judge.client.logprobs_supported is False


def test_retries_cache_and_concurrency(server, tmp_path):
    cache = tmp_path / "judge.sqlite"
    judge = EndpointJudge(ChatClient(server.url, "judge-1", concurrency=4, backoff=0.01, cache=cache))
    triples = [("q", f"FLAKY answer {i}", RUBRIC) for i in range(10)]
    first = judge.score_many(triples)
    assert all(v == pytest.approx(83.75) for v in first)
    assert len(server.requests) == 11  # one 503 retried
    again = EndpointJudge(ChatClient(server.url, "judge-1", cache=cache)).score_many(triples)
    assert again == first and len(server.requests) == 11  # all from the on-disk cache


def test_endpoint_errors_are_clean(server):
    with pytest.raises(JudgeError, match="does not exist"):
        EndpointJudge(ChatClient(server.url, "nope")).score("q", "a", RUBRIC)
    with pytest.raises(TraitlabError, match="failed after 2 attempts"):
        ChatClient("http://127.0.0.1:9/v1", "judge-1", retries=1, backoff=0.01, timeout=1).complete("hi")
    with pytest.raises(JudgeError, match="http"):
        ChatClient("localhost:8000", "judge-1")


def test_questionnaire_through_an_endpoint(server):
    inv = Inventory("api", [Item("I like parties.", "extraversion", 1), Item("I like quiet.", "extraversion", -1)])
    result = administer(EndpointResponder(ChatClient(server.url, "judge-1")), inv, scoring_mode="generate")
    # forward order → 4, reversed listing → 2: averaged per item 3.0
    assert result.parse_failure_rate == 0 and result.item_means() == [pytest.approx(3.0), pytest.approx(3.0)]


def test_local_judge_scores_in_batches(llama):
    judge = LocalJudge(llama, batch_size=2)
    triples = [("Q?", f"answer {i}", RUBRIC) for i in range(5)]
    scores = judge.score_many(triples)
    assert len(scores) == 5 and all(s is None or 0 <= s <= 100 for s in scores)
    assert scores[0] == judge.score(*triples[0])


def test_perplexity_coherence_judge(llama):
    judge = PerplexityCoherenceJudge(llama, good_ppl=10, bad_ppl=1000)
    assert judge.from_perplexity(10, "a fine answer here") == pytest.approx(100.0)
    assert judge.from_perplexity(100, "a fine answer here") == pytest.approx(50.0)
    assert judge.from_perplexity(5000, "x y z w") == 0.0
    assert judge.from_perplexity(10, "") == 0.0
    assert repetition_factor("go go go go go go go go") == pytest.approx(1 / 7 / 0.5)
    values = judge.score_many([("Q?", "hello there friend", ""), ("Q?", "", "")])
    assert 0 <= values[0] <= 100 and values[1] == 0.0


def test_rubrics():
    assert "{question}" in trait_rubric("extraversion", "low") and "reserved" in trait_rubric("extraversion", "low")
    assert "0 means the text is not language" in COHERENCE_RUBRIC and "50 means" in COHERENCE_RUBRIC
    with pytest.raises(TraitlabError):
        trait_rubric("charisma")
