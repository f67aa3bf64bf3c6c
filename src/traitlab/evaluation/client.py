"""A small client for OpenAI-compatible chat-completions endpoints, for judges and API-only models.

- ``POST {url}/chat/completions`` with ``model``, ``messages``, ``max_tokens``, ``temperature`` and, when asked,
  ``logprobs: true, top_logprobs: k``; the key comes from ``OPENAI_API_KEY`` (or the variable named).
- Bounded concurrency: ``complete_many`` runs at most ``concurrency`` requests at once (a thread pool).
- Retries with exponential backoff (``backoff · 2^attempt``, honouring ``Retry-After`` up to 30 s) on
  connection errors, timeouts, 408, 409, 429 and 5xx. Other 4xx answers are a ``JudgeError`` naming the
  status and the endpoint's message. An endpoint that rejects ``logprobs`` (400 mentioning logprobs) is asked
  again without them, and remembered as such.
- On-disk cache (SQLite, ``cache=PATH``) keyed by a hash of (model, messages, request settings): a repeated
  prompt is answered from disk without a request, across runs.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import dataclasses
import hashlib
import json
import os
import sqlite3
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import httpx

from traitlab.errors import TraitlabError

RETRY_STATUS = {408, 409, 429, 500, 502, 503, 504}
Messages = list[dict[str, str]]


class JudgeError(TraitlabError):
    """An endpoint answered with an error that retrying cannot fix (bad model name, bad key, bad URL)."""


@dataclasses.dataclass
class Completion:
    """The first choice of a chat completion: its text and, when given, the first token's top log-probs."""

    text: str
    top_logprobs: list[tuple[str, float]] | None = None
    cached: bool = False

    def to_json(self) -> str:
        return json.dumps({"text": self.text, "top_logprobs": self.top_logprobs})

    @classmethod
    def from_json(cls, text: str) -> Completion:
        data = json.loads(text)
        top = data.get("top_logprobs")
        return cls(data.get("text") or "", [tuple(t) for t in top] if top is not None else None,  # type: ignore[misc]
                   cached=True)


class DiskCache:
    """A thread-safe SQLite key → JSON store."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._db = sqlite3.connect(str(self.path), check_same_thread=False)
        self._db.execute("CREATE TABLE IF NOT EXISTS cache (key TEXT PRIMARY KEY, value TEXT NOT NULL)")
        self._db.commit()

    def get(self, key: str) -> str | None:
        with self._lock:
            row = self._db.execute("SELECT value FROM cache WHERE key = ?", (key,)).fetchone()
        return row[0] if row else None

    def put(self, key: str, value: str) -> None:
        with self._lock:
            self._db.execute("INSERT OR REPLACE INTO cache (key, value) VALUES (?, ?)", (key, value))
            self._db.commit()

    def __len__(self) -> int:
        with self._lock:
            return int(self._db.execute("SELECT COUNT(*) FROM cache").fetchone()[0])

    def close(self) -> None:
        with self._lock:
            self._db.close()


def endpoint_url(url: str) -> str:
    url = url.rstrip("/")
    if url.endswith("/chat/completions"):
        return url
    if not url.startswith(("http://", "https://")):
        raise JudgeError(f"endpoint URL '{url}' must start with http:// or https:// (e.g. http://127.0.0.1:8000/v1)")
    return f"{url}/chat/completions"


class ChatClient:
    """OpenAI-compatible chat completions with bounded concurrency, retries and an on-disk cache."""

    def __init__(self, url: str, model: str, api_key: str | None = None, api_key_env: str = "OPENAI_API_KEY",
                 concurrency: int = 4, retries: int = 4, backoff: float = 0.5, timeout: float = 60.0,
                 cache: str | os.PathLike[str] | DiskCache | None = None) -> None:
        if concurrency < 1:
            raise JudgeError(f"concurrency must be ≥ 1, got {concurrency}")
        self.url = endpoint_url(url)
        self.model = model
        self.api_key = api_key if api_key is not None else os.environ.get(api_key_env)
        self.concurrency = concurrency
        self.retries = retries
        self.backoff = backoff
        self.cache = cache if isinstance(cache, DiskCache) or cache is None else DiskCache(cache)
        headers = {"Authorization": f"Bearer {self.api_key}"} if self.api_key else {}
        self._http = httpx.Client(timeout=timeout, headers=headers)
        self.logprobs_supported = True
        self.requests = 0

    def close(self) -> None:
        self._http.close()

    def _key(self, messages: Messages, settings: dict[str, Any]) -> str:
        blob = json.dumps([self.model, messages, settings], sort_keys=True, ensure_ascii=False)
        return hashlib.sha256(blob.encode()).hexdigest()

    def complete(self, messages: Messages | str, max_tokens: int = 1, logprobs: bool = False,
                 top_logprobs: int = 20, temperature: float = 0.0, seed: int | None = None) -> Completion:
        """One completion (from the cache when the same request was answered before)."""
        if isinstance(messages, str):
            messages = [{"role": "user", "content": messages}]
        logprobs = logprobs and self.logprobs_supported
        settings: dict[str, Any] = {"max_tokens": max_tokens, "temperature": temperature}
        if logprobs:
            settings.update(logprobs=True, top_logprobs=top_logprobs)
        if seed is not None:
            settings["seed"] = seed
        key = self._key(messages, settings)
        if self.cache is not None:
            hit = self.cache.get(key)
            if hit is not None:
                return Completion.from_json(hit)
        try:
            data = self._post({"model": self.model, "messages": messages, **settings})
        except _LogprobsRejected:
            self.logprobs_supported = False
            return self.complete(messages, max_tokens, False, top_logprobs, temperature, seed)
        completion = _parse(data, self.url)
        if self.cache is not None:
            self.cache.put(key, completion.to_json())
        return completion

    def complete_many(self, prompts: Sequence[Messages | str], **kwargs: Any) -> list[Completion]:
        """Completions of many prompts, at most ``concurrency`` in flight, in the prompts' order."""
        if self.concurrency == 1 or len(prompts) <= 1:
            return [self.complete(p, **kwargs) for p in prompts]
        with concurrent.futures.ThreadPoolExecutor(max_workers=self.concurrency) as pool:
            return list(pool.map(lambda p: self.complete(p, **kwargs), prompts))

    def _post(self, body: dict[str, Any]) -> dict[str, Any]:
        last = ""
        for attempt in range(self.retries + 1):
            try:
                self.requests += 1
                response = self._http.post(self.url, json=body)
            except httpx.TransportError as exc:
                last = f"{type(exc).__name__}: {exc}"
                self._sleep(attempt, None)
                continue
            if response.status_code == 200:
                try:
                    return response.json()
                except ValueError:
                    raise JudgeError(f"{self.url} answered 200 with a body that is not JSON") from None
            detail = _error_detail(response)
            if response.status_code in RETRY_STATUS:
                last = f"HTTP {response.status_code}: {detail}"
                self._sleep(attempt, response.headers.get("retry-after"))
                continue
            if response.status_code == 400 and body.get("logprobs") and "logprob" in detail.lower():
                raise _LogprobsRejected
            raise JudgeError(f"{self.url} answered HTTP {response.status_code}: {detail}")
        raise JudgeError(f"{self.url} failed after {self.retries + 1} attempts ({last}); check that the endpoint "
                         "is up, or raise retries")

    def _sleep(self, attempt: int, retry_after: str | None) -> None:
        if attempt >= self.retries:
            return
        delay = self.backoff * 2 ** attempt
        if retry_after:
            with contextlib.suppress(ValueError):
                delay = max(delay, min(30.0, float(retry_after)))
        time.sleep(delay)


class _LogprobsRejected(Exception):
    pass


def _error_detail(response: httpx.Response) -> str:
    try:
        data = response.json()
        error = data.get("error", data) if isinstance(data, dict) else data
        message = error.get("message") if isinstance(error, dict) else error
        return str(message)[:300]
    except ValueError:
        return response.text[:300]


def _parse(data: dict[str, Any], url: str) -> Completion:
    try:
        choice = data["choices"][0]
    except (KeyError, IndexError, TypeError):
        raise JudgeError(f"{url} answered without choices: {str(data)[:200]}") from None
    message = choice.get("message") or {}
    text = message.get("content") or choice.get("text") or ""
    top: list[tuple[str, float]] | None = None
    logprobs = choice.get("logprobs")
    if isinstance(logprobs, dict) and logprobs.get("content"):
        first = logprobs["content"][0]
        entries = first.get("top_logprobs") or [{"token": first.get("token"), "logprob": first.get("logprob")}]
        top = [(str(e.get("token", "")), float(e["logprob"])) for e in entries if e.get("logprob") is not None]
    return Completion(text, top)
