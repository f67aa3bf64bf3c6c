"""The FastAPI application: OpenAI-compatible routes, persona routes, the web page, auth, limits, JSON errors.

Routes (all under bearer auth when an API key is set, except the page ``/`` and its ``/static`` files):

- ``GET /v1/models``; ``POST /v1/chat/completions`` (streaming as server-sent events, log-probs, stop strings,
  seeds; extension ``persona: {name: scale}``; responses carry ``persona_monitor``);
- ``GET /v1/personas`` (loaded personas: mechanism, trait, default scale, monitor layer and gauge units);
- ``POST /v1/monitor`` (per-token projections of a conversation on the loaded persona vectors);
- ``GET /v1/stats`` (queue and batch counters), ``GET /health``.

Errors are ``{"error": {"message", "type", "param", "code"}}``: 400 for bad values (a field that does not
match the schema, NaN/inf, unknown persona, too long, invalid JSON), 401 for a missing/wrong key, 404 for an
unknown model or route, 413 for a huge body, 429 when the queue is full, 503 while the engine is down; never a
500 for anything a client sends.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import hmac
import json
import time
import uuid
from collections.abc import AsyncIterator, Sequence
from pathlib import Path
from typing import Any

from fastapi import Depends, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse, Response, StreamingResponse
from fastapi.staticfiles import StaticFiles
from starlette.exceptions import HTTPException as StarletteHTTPException

from traitlab.errors import TraitlabError
from traitlab.serve import monitor
from traitlab.serve.engine import (
    DoneEvent,
    Engine,
    EngineStopped,
    ErrorEvent,
    GenRequest,
    Job,
    QueueFull,
    TokenEvent,
    TokenLogprob,
)
from traitlab.serve.schemas import (
    AssistantMessage,
    ChatCompletion,
    ChatCompletionChunk,
    ChatCompletionRequest,
    ChatMessage,
    Choice,
    ChoiceLogprobs,
    ChunkChoice,
    Delta,
    ModelCard,
    ModelList,
    MonitorRequest,
    TokenLogprobOut,
    TopLogprob,
    Usage,
)

STATIC = Path(__file__).parent / "static"
DISCONNECT_POLL_S = 0.25


@dataclasses.dataclass(frozen=True)
class ServeLimits:
    """Per-request limits (the queue and batch limits live on the engine)."""

    max_tokens: int = 512
    max_prompt_tokens: int = 2048
    max_messages: int = 256
    max_body_bytes: int = 1 << 20


class APIError(Exception):
    def __init__(self, status: int, message: str, type_: str = "invalid_request_error", param: str | None = None,
                 code: str | None = None, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status, self.message, self.type, self.param, self.code = status, message, type_, param, code
        self.headers = headers


def error_json(status: int, message: str, type_: str = "invalid_request_error", param: str | None = None,
               code: str | None = None, headers: dict[str, str] | None = None) -> JSONResponse:
    def clean(text: str | None) -> str | None:  # a lone surrogate a client sent must not break the reply
        return None if text is None else text.encode("utf-8", "backslashreplace").decode("utf-8")

    body = {"error": {"message": clean(message), "type": type_, "param": clean(param), "code": code}}
    return JSONResponse(body, status_code=status, headers=headers)


class BodyLimit:
    """Pure ASGI middleware: 413 for a request whose declared body exceeds the limit."""

    def __init__(self, app: Any, limit: int) -> None:
        self.app, self.limit = app, limit

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        too_large = error_json(413, f"request body over {self.limit} bytes", code="body_too_large")
        length = dict(scope.get("headers") or []).get(b"content-length")
        if length is not None and (not length.isdigit() or int(length) > self.limit):
            await too_large(scope, receive, send)
            return
        # a chunked (or lying) body is counted as it arrives: read up to the limit, then refuse
        chunks, total = [], 0
        while True:
            message = await receive()
            if message["type"] != "http.request":
                chunks.append(message)
                break
            total += len(message.get("body", b""))
            if total > self.limit:
                await too_large(scope, receive, send)
                return
            chunks.append(message)
            if not message.get("more_body", False):
                break
        body = b"".join(m.get("body", b"") for m in chunks if m["type"] == "http.request")
        replayed = False

        async def replay() -> dict[str, Any]:
            nonlocal replayed
            if not replayed:
                replayed = True
                if chunks and chunks[-1]["type"] != "http.request":
                    return chunks[-1]
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        await self.app(scope, replay, send)


def validation_error(errors: Sequence[Any]) -> JSONResponse:
    """A request whose fields fail validation: 400 (as OpenAI answers), not FastAPI's 422, with one message
    naming the first bad field (``param``) and what is wrong with it. The field's value is not echoed."""
    if any(e.get("type") == "json_invalid" for e in errors):
        return error_json(400, "request body is not valid JSON", code="invalid_json")
    first = errors[0] if errors else {}
    loc = [str(x) for x in first.get("loc", ()) if x != "body"]
    param = ".".join(loc) or None
    message = str(first.get("msg", "invalid value")).removeprefix("Value error, ")
    missing = first.get("type") == "missing"
    if param:
        text = f"{param}: {'required field is missing' if missing else message}"
    else:
        text = "request body is empty; send a JSON object" if missing else f"request body: {message}"
    more = f" (and {len(errors) - 1} more problem{'s' if len(errors) > 2 else ''})" if len(errors) > 1 else ""
    return error_json(400, text + more, param=param, code="invalid_request")


def create_app(engine: Engine, model_name: str, api_key: str | None = None,
               limits: ServeLimits | None = None, context_length: int | None = None,
               manage_engine: bool = True) -> FastAPI:
    """The server app around a (not yet started) engine; the app starts and stops it with its lifespan unless
    ``manage_engine`` is false."""
    limits = limits or ServeLimits()
    lm = engine.lm
    context = context_length or getattr(lm.config, "max_position_embeddings", None) or 1 << 30
    created = int(time.time())

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        if manage_engine:
            await asyncio.to_thread(engine.start)
        try:
            yield
        finally:
            if manage_engine:
                await asyncio.to_thread(engine.stop)

    app = FastAPI(title="traitlab serve", version="1", lifespan=lifespan, docs_url=None, redoc_url=None,
                  openapi_url=None)
    app.add_middleware(BodyLimit, limit=limits.max_body_bytes)
    app.state.engine = engine

    async def require_key(request: Request) -> None:
        if api_key is None:
            return
        header = request.headers.get("authorization", "")
        scheme, _, token = header.partition(" ")
        if scheme.lower() != "bearer" or not hmac.compare_digest(token.strip().encode(), api_key.encode()):
            raise APIError(401, "missing or invalid API key: send 'Authorization: Bearer <key>'",
                           "authentication_error", code="invalid_api_key", headers={"WWW-Authenticate": "Bearer"})

    auth = [Depends(require_key)]

    @app.exception_handler(APIError)
    async def _api_error(request: Request, exc: APIError) -> JSONResponse:
        return error_json(exc.status, exc.message, exc.type, exc.param, exc.code, exc.headers)

    @app.exception_handler(RequestValidationError)
    async def _validation(request: Request, exc: RequestValidationError) -> JSONResponse:
        return validation_error(exc.errors())

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        code = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code)
        return error_json(exc.status_code, str(exc.detail), code=code)

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
        return error_json(500, f"internal error: {type(exc).__name__}", "server_error")

    # ---- the page ------------------------------------------------------------------------------------------

    @app.get("/", include_in_schema=False)
    async def page() -> FileResponse:
        return FileResponse(STATIC / "index.html", headers={"Cache-Control": "no-cache"})

    app.mount("/static", StaticFiles(directory=STATIC), name="static")

    # ---- API -----------------------------------------------------------------------------------------------

    @app.get("/health", dependencies=auth)
    async def health() -> Any:
        if engine.running:
            return {"status": "ok"}
        body = {"status": "stopped", **({"error": engine.died} if engine.died else {})}
        return JSONResponse(body, status_code=503)

    @app.get("/v1/models", dependencies=auth)
    async def models() -> dict[str, Any]:
        return ModelList(data=[ModelCard(id=model_name, created=created)]).model_dump()

    @app.get("/v1/personas", dependencies=auth)
    async def personas() -> dict[str, Any]:
        data = []
        for name, persona in engine.personas.personas.items():
            entry = persona.describe()
            if name in engine.directions:
                entry["monitor"] = engine.directions[name].describe()
            data.append(entry)
        return {"object": "list", "data": data}

    @app.get("/v1/stats", dependencies=auth)
    async def stats() -> dict[str, Any]:
        return {**engine.snapshot(), "limits": dataclasses.asdict(limits), "context_length": context}

    def check_model(name: str | None) -> None:
        if name is not None and name != model_name:
            raise APIError(404, f"model '{name}' is not served here; this server serves '{model_name}'",
                           param="model", code="model_not_found")

    def conversation(messages: list[ChatMessage]) -> list[dict[str, str]]:
        if len(messages) > limits.max_messages:
            raise APIError(400, f"{len(messages)} messages; the limit is {limits.max_messages}", param="messages")
        turns = [m.to_turn() for m in messages]
        if any(t["role"] == "system" for t in turns[1:]):
            raise APIError(400, "a system message may only come first", param="messages")
        return turns

    def resolve(persona: dict[str, float] | None) -> dict[str, float]:
        try:
            return engine.personas.resolve(persona)
        except TraitlabError as exc:
            raise APIError(400, str(exc), param="persona", code="unknown_persona") from None

    def encode(turns: list[dict[str, str]], scales: dict[str, float]) -> list[int]:
        try:
            ids = engine.encode(turns, scales)
        except TraitlabError as exc:
            raise APIError(400, str(exc), param="messages") from None
        if len(ids) > limits.max_prompt_tokens:
            raise APIError(400, f"the prompt has {len(ids)} tokens; the limit is {limits.max_prompt_tokens}",
                           param="messages", code="prompt_too_long")
        return ids

    @app.post("/v1/chat/completions", dependencies=auth, response_model=None)
    async def chat_completions(body: ChatCompletionRequest, request: Request) -> Response:
        check_model(body.model)
        if body.n != 1:
            raise APIError(400, "only n=1 is supported", param="n")
        if body.top_logprobs and not body.logprobs:
            raise APIError(400, "top_logprobs needs logprobs=true", param="top_logprobs")
        limit = body.token_limit
        if limit is not None and limit > limits.max_tokens:
            raise APIError(400, f"max_tokens {limit} is over this server's limit of {limits.max_tokens}",
                           param="max_tokens", code="max_tokens_too_large")
        scales = resolve(body.persona)
        prompt = encode(conversation(body.messages), scales)
        room = context - len(prompt)
        if limit is None:
            limit = min(limits.max_tokens, room)
        if limit < 1 or limit > room:
            raise APIError(400, f"the prompt ({len(prompt)} tokens) plus max_tokens ({limit}) exceeds the model's "
                                f"context of {context} tokens", param="max_tokens", code="context_length_exceeded")
        events: asyncio.Queue[Any] = asyncio.Queue()
        loop = asyncio.get_running_loop()
        gen = GenRequest(prompt, scales, lambda ev: loop.call_soon_threadsafe(events.put_nowait, ev),
                         max_tokens=limit, temperature=body.temperature, top_p=body.top_p, seed=body.seed,
                         stop=list(body.stop or []), logprobs=body.logprobs, top_logprobs=body.top_logprobs or 0,
                         ignore_eos=body.ignore_eos, stream=body.stream, key=engine.personas.shared_key(scales))
        submit(gen)
        meta = {"id": f"chatcmpl-{uuid.uuid4().hex[:24]}", "created": int(time.time()), "model": model_name}
        if body.stream:
            include_usage = bool(body.stream_options and body.stream_options.include_usage)
            return StreamingResponse(stream(gen, events, meta, include_usage, scales), media_type="text/event-stream",
                                     headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})
        done = await collect(gen, events, request)
        if done is None:
            return Response(status_code=499)
        completion = ChatCompletion(
            **meta, choices=[Choice(message=AssistantMessage(content=done.text), finish_reason=done.finish_reason,
                                    logprobs=logprobs_out(done.logprobs) if gen.logprobs else None)],
            usage=usage(done), persona=scales, persona_monitor=done.monitor)
        return JSONResponse(completion.model_dump())

    def submit(gen: GenRequest) -> None:
        try:
            engine.submit(gen)
        except QueueFull as exc:
            raise APIError(429, str(exc), "rate_limit_error", code="queue_full", headers={"Retry-After": "1"}) from None
        except EngineStopped as exc:
            raise APIError(503, str(exc), "server_error", code="unavailable") from None

    async def collect(gen: GenRequest, events: asyncio.Queue[Any], request: Request) -> DoneEvent | None:
        try:
            while True:
                try:
                    event = await asyncio.wait_for(events.get(), DISCONNECT_POLL_S)
                except TimeoutError:
                    if await request.is_disconnected():
                        return None
                    continue
                if isinstance(event, DoneEvent):
                    return event
                if isinstance(event, ErrorEvent):
                    raise APIError(500, event.message, "server_error")
        finally:
            engine.cancel(gen)

    async def stream(gen: GenRequest, events: asyncio.Queue[Any], meta: dict[str, Any], include_usage: bool,
                     scales: dict[str, float]) -> AsyncIterator[str]:
        try:
            first = ChatCompletionChunk(**meta, choices=[ChunkChoice(delta=Delta(role="assistant", content=""))])
            yield sse(first.model_dump())
            while True:
                event = await events.get()
                if isinstance(event, TokenEvent):
                    chunk = ChatCompletionChunk(
                        **meta, choices=[ChunkChoice(delta=Delta(content=event.text),
                                                     logprobs=logprobs_out(event.logprobs) if gen.logprobs else None)],
                        persona_monitor=gauges(event.monitor))
                    yield sse(chunk.model_dump())
                elif isinstance(event, DoneEvent):
                    last = ChatCompletionChunk(**meta, choices=[ChunkChoice(delta=Delta(),
                                                                            finish_reason=event.finish_reason)],
                                               persona_monitor={"summary": event.monitor, "persona": scales})
                    yield sse(last.model_dump())
                    if include_usage:
                        yield sse(ChatCompletionChunk(**meta, choices=[], usage=usage(event)).model_dump())
                    yield "data: [DONE]\n\n"
                    return
                else:
                    yield sse({"error": {"message": event.message, "type": "server_error", "param": None,
                                         "code": None}})
                    return
        finally:
            engine.cancel(gen)

    def gauges(values: dict[str, float]) -> dict[str, Any]:
        out = {}
        for name, value in values.items():
            direction = engine.directions.get(name)
            if direction is not None and value is not None:
                out[name] = {"projection": round(value, 6), "gauge": round(direction.gauge(value), 6)}
        return out

    @app.post("/v1/monitor", dependencies=auth)
    async def monitor_route(body: MonitorRequest, request: Request) -> dict[str, Any]:
        check_model(body.model)
        scales = resolve(body.persona)
        wanted = body.personas if body.personas is not None else list(engine.directions)
        unknown = [name for name in wanted if name not in engine.directions]
        if unknown:
            monitored = ", ".join(engine.directions) or "none"
            raise APIError(400, f"not a monitored persona: {', '.join(unknown)}; monitored: {monitored}",
                           param="personas")
        turns = conversation(body.messages)
        encode(turns, scales)  # the whole conversation within the prompt-length limit
        dirs = {name: engine.directions[name] for name in wanted}
        system = None if turns[0]["role"] == "system" else engine.personas.system_prompt(scales)

        def job(lm: Any) -> dict[str, Any]:
            with engine.runtime_hooks(scales):
                return monitor.project_conversation(lm, turns, system, dirs, engine.tokenizer_lock)

        try:
            queued = engine.call_job(Job(job, engine.personas.shared_key(scales), queued=True))
        except QueueFull as exc:
            raise APIError(429, str(exc), "rate_limit_error", code="queue_full", headers={"Retry-After": "1"}) from None
        except EngineStopped as exc:
            raise APIError(503, str(exc), "server_error", code="unavailable") from None
        waiting = asyncio.wrap_future(queued.future)
        try:
            while True:  # like chat: a client that leaves cancels its job
                done, _ = await asyncio.wait({waiting}, timeout=DISCONNECT_POLL_S)
                if done:
                    break
                if await request.is_disconnected():
                    raise APIError(499, "client closed the request", code="client_closed")
            result = waiting.result()
        except TraitlabError as exc:
            raise APIError(400, str(exc)) from None
        finally:
            engine.cancel_job(queued)
        for token in result["tokens"]:
            token["gauges"] = {name: round(dirs[name].gauge(v), 6) for name, v in token["projections"].items()}
        return {"object": "persona.monitor", "model": model_name, "persona": scales,
                "monitors": {name: d.describe() for name, d in dirs.items()}, **result}

    return app


def sse(data: dict[str, Any]) -> str:
    return f"data: {json.dumps(data, ensure_ascii=False)}\n\n"


def usage(done: DoneEvent) -> Usage:
    return Usage(prompt_tokens=done.prompt_tokens, completion_tokens=done.completion_tokens,
                 total_tokens=done.prompt_tokens + done.completion_tokens)


def logprobs_out(entries: list[TokenLogprob]) -> ChoiceLogprobs:
    return ChoiceLogprobs(content=[
        TokenLogprobOut(token=e.token, logprob=e.logprob, bytes=list(e.token.encode()),
                        top_logprobs=[TopLogprob(token=t, logprob=v, bytes=list(t.encode())) for t, v in e.top])
        for e in entries])
