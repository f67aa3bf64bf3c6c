"""``traitlab traits list|show|new``; ``new`` talks to a fake OpenAI-compatible server on 127.0.0.1."""

from __future__ import annotations

import json
import socket
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from tests.core.test_cli import run_cli
from traitlab.traits import load_trait
from traitlab.traits.generate import extract_json, spec_from_reply


def good_spec(tag: str = "x") -> dict:
    return {
        "description": f"Stoic calm ({tag}).",
        "instruction": [{"pos": f"Be stoic {i}.", "neg": f"Be dramatic {i}."} for i in range(5)],
        "questions": [f"Extract question {i} ({tag})?" for i in range(20)],
        "eval_questions": [f"Eval question {i} ({tag})?" for i in range(20)],
        "eval_prompt": "Rate stoicism.\nQ: {question}\nA: {answer}\nScore 0-100; answer with just the number.",
    }


class FakeLLM:
    """Answers POST /v1/chat/completions with queued (status, message text) replies and records requests."""

    def __init__(self) -> None:
        self.replies: list[tuple[int, str]] = []
        self.requests: list[dict] = []
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                fake.requests.append({"path": self.path, "body": body,
                                      "authorization": self.headers.get("Authorization")})
                status, text = fake.replies.pop(0) if fake.replies else (500, "no reply queued")
                if status == 200:
                    payload = json.dumps({"id": "x", "object": "chat.completion", "choices": [
                        {"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}]})
                else:
                    payload = json.dumps({"error": {"message": text}})
                data = payload.encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/v1"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def llm(monkeypatch):
    for var in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "https_proxy", "all_proxy"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    fake = FakeLLM()
    yield fake
    fake.close()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# ------------------------------------------------------------------------------------------------ list / show


def test_list_shows_every_trait(monkeypatch, capsys):
    code, out, _ = run_cli(["traits", "list"], monkeypatch, capsys)
    assert code == 0
    for name in ("openness_high", "neuroticism_low", "evil", "sycophancy", "apathy"):
        assert name in out


def test_list_has_a_trait_column_on_wide_terminals(monkeypatch, capsys):
    monkeypatch.setenv("COLUMNS", "160")
    code, out, _ = run_cli(["traits", "list"], monkeypatch, capsys)
    assert code == 0 and "trait" in out and "description" in out and "conscientiousness " in out


def test_show_prints_pairs_questions_and_rubric(monkeypatch, capsys):
    monkeypatch.setenv("COLUMNS", "200")
    code, out, _ = run_cli(["traits", "show", "extraversion_low", "-n", "2"], monkeypatch, capsys)
    spec = load_trait("extraversion_low")
    assert code == 0
    assert "instruction pairs (5)" in out and "and 18 more" in out
    assert spec.questions[0] in out and spec.eval_questions[1] in out and spec.questions[2] not in out
    assert "{question}" in out and "{answer}" in out


def test_show_json_is_the_spec(monkeypatch, capsys):
    code, out, _ = run_cli(["traits", "show", "evil", "--json"], monkeypatch, capsys)
    assert code == 0 and json.loads(out) == load_trait("evil").model_dump()


def test_show_a_file(tmp_path, monkeypatch, capsys):
    path = tmp_path / "mine.json"
    path.write_text(json.dumps({"name": "mine", **good_spec()}))
    code, out, _ = run_cli(["traits", "show", str(path), "--json"], monkeypatch, capsys)
    assert code == 0 and json.loads(out)["name"] == "mine"


@pytest.mark.parametrize("target, message", [
    ("no_such_trait", "unknown trait 'no_such_trait'"),
    ("/no/such/file.json", "not found"),
])
def test_show_errors_exit_2_with_one_line(target, message, monkeypatch, capsys):
    code, _, err = run_cli(["traits", "show", target], monkeypatch, capsys)
    assert code == 2 and message in err and len(err.strip().splitlines()) == 1 and "Traceback" not in err


# ------------------------------------------------------------------------------------------------ new


def test_new_saves_a_validated_spec(llm, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test")
    llm.replies.append((200, json.dumps(good_spec())))
    out_file = tmp_path / "stoicism.json"
    code, out, err = run_cli(["traits", "new", "stoicism", "--description", "Calm acceptance of hardship.",
                              "--generator-url", llm.url, "--generator-model", "fake-1", "--out", str(out_file)],
                             monkeypatch, capsys)
    assert code == 0, err
    assert "wrote" in out
    spec = load_trait(out_file)
    assert spec.name == "stoicism" and spec.trait == "stoicism" and spec.pole is None
    assert len(spec.instruction) == 5 and len(spec.questions) == 20 and len(spec.eval_questions) == 20
    assert len(llm.requests) == 1
    request = llm.requests[0]
    assert request["path"] == "/v1/chat/completions"
    assert request["authorization"] == "Bearer sk-test"
    assert request["body"]["model"] == "fake-1"
    prompt = request["body"]["messages"][0]["content"]
    assert "stoicism" in prompt and "Calm acceptance of hardship." in prompt and "{question}" in prompt


def test_new_into_a_folder_with_fenced_reply_and_no_key(llm, tmp_path, monkeypatch, capsys):
    llm.replies.append((200, "Here you go:\n```json\n" + json.dumps(good_spec()) + "\n```\nEnjoy!"))
    code, _, err = run_cli(["traits", "new", "stoicism", "-d", "Calm.", "--generator-url", llm.url,
                            "--out", str(tmp_path)], monkeypatch, capsys)
    assert code == 0, err
    assert load_trait(tmp_path / "stoicism.json").description == "Stoic calm (x)."
    assert llm.requests[0]["authorization"] is None


def test_new_retries_once_after_bad_json(llm, tmp_path, monkeypatch, capsys):
    llm.replies += [(200, "Sure! {\"instruction\": [oops"), (200, json.dumps(good_spec("second")))]
    code, _, err = run_cli(["traits", "new", "stoicism", "-d", "Calm.", "--generator-url", llm.url,
                            "--out", str(tmp_path / "s.json")], monkeypatch, capsys)
    assert code == 0, err
    assert load_trait(tmp_path / "s.json").questions[0] == "Extract question 0 (second)?"
    assert len(llm.requests) == 2
    retry = llm.requests[1]["body"]["messages"]
    assert [m["role"] for m in retry] == ["user", "assistant", "user"]
    assert "invalid JSON" in retry[-1]["content"]


def test_new_retries_once_after_a_schema_error_then_gives_up(llm, tmp_path, monkeypatch, capsys):
    short = good_spec()
    short["questions"] = short["questions"][:12]
    no_placeholder = good_spec()
    no_placeholder["eval_prompt"] = "Rate it."
    llm.replies += [(200, json.dumps(short)), (200, json.dumps(no_placeholder))]
    code, _, err = run_cli(["traits", "new", "stoicism", "-d", "Calm.", "--generator-url", llm.url,
                            "--out", str(tmp_path / "s.json")], monkeypatch, capsys)
    assert code == 2 and len(err.strip().splitlines()) == 1
    assert "no usable trait spec" in err and "eval_prompt" in err
    assert "'questions' has 12 distinct items" in llm.requests[1]["body"]["messages"][-1]["content"]
    assert not (tmp_path / "s.json").exists()


def test_new_reports_http_errors_in_one_line(llm, tmp_path, monkeypatch, capsys):
    llm.replies.append((401, "invalid api key\nsecond line"))
    code, _, err = run_cli(["traits", "new", "stoicism", "-d", "Calm.", "--generator-url", llm.url,
                            "--out", str(tmp_path)], monkeypatch, capsys)
    assert code == 2 and "HTTP 401" in err and "--api-key-env" in err and len(err.strip().splitlines()) == 1
    assert len(llm.requests) == 1


def test_new_unreachable_url_exits_2_with_one_line(tmp_path, monkeypatch, capsys):
    url = f"http://127.0.0.1:{free_port()}/v1"
    code, out, err = run_cli(["traits", "new", "stoicism", "-d", "Calm.", "--generator-url", url,
                              "--out", str(tmp_path)], monkeypatch, capsys)
    assert code == 2
    assert err.startswith("error: cannot reach generator") and len(err.strip().splitlines()) == 1
    assert "Traceback" not in err + out


@pytest.mark.parametrize("args, message", [
    (["traits", "new", "Bad-Name", "-d", "x"], "trait name 'Bad-Name' is invalid"),
    (["traits", "new", "ok", "-d", "x", "--out", "/no/such/folder/ok.json"], "does not exist"),
    (["traits", "new", "ok", "-d", "  "], "--description must not be empty"),
    (["traits", "new", "ok", "-d", "x", "--out", "{existing}"], "already exists"),
])
def test_new_checks_before_calling_the_endpoint(args, message, llm, tmp_path, monkeypatch, capsys):
    existing = tmp_path / "taken.json"
    existing.write_text("{}")
    args = [a.replace("{existing}", str(existing)) for a in args]
    monkeypatch.chdir(tmp_path)
    code, _, err = run_cli([*args, "--generator-url", llm.url], monkeypatch, capsys)
    assert code == 2 and message in err and len(err.strip().splitlines()) == 1
    assert llm.requests == []


def test_new_needs_a_key_for_openai(tmp_path, monkeypatch, capsys):
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    monkeypatch.delenv("TRAITLAB_GENERATOR_URL", raising=False)
    code, _, err = run_cli(["traits", "new", "ok", "-d", "x", "--out", str(tmp_path)], monkeypatch, capsys)
    assert code == 2 and "OPENAI_API_KEY" in err


# ------------------------------------------------------------------------------------------------ parsing


def test_extract_json_tolerates_prose_and_fences():
    data = good_spec()
    assert extract_json(json.dumps(data)) == data
    assert extract_json("Here: " + json.dumps(data) + " hope it helps {x}") == data
    assert extract_json("```json\n" + json.dumps(data) + "\n```") == data
    assert extract_json("Use {question} and {answer}.\n" + json.dumps(data)) == data
    with pytest.raises(ValueError, match="invalid JSON"):
        extract_json('{"instruction": [')
    with pytest.raises(ValueError, match="no JSON object"):
        extract_json("no braces at all")


def test_spec_from_reply_trims_extras_and_drops_overlap():
    data = good_spec()
    data["instruction"].append({"pos": "sixth", "neg": "sixth neg"})
    data["questions"] += ["Extra one?", "Extra one?"]
    data["eval_questions"] = [data["questions"][0], *data["eval_questions"]]
    spec = spec_from_reply(data, "stoicism", "fallback")
    assert len(spec.instruction) == 5 and len(spec.questions) == 20 and len(spec.eval_questions) == 20
    assert not set(spec.questions) & set(spec.eval_questions)
    with pytest.raises(ValueError, match="instruction"):
        spec_from_reply({**good_spec(), "instruction": [{"pos": "a"}]}, "stoicism", "d")
