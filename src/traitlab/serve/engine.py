"""The serving engine: one scheduler thread owns the model and batches concurrent requests at token steps.

Each round of the loop:

1. **Admit** waiting work in arrival order that shares the running batch's *shared key* (the weight-space
   personas and their scales: one weight state per batch) while the batch has room (``max_batch`` rows).
   When the batch is empty the loop switches weight state to the oldest waiting item's key (weight edits are
   restored bit-exactly on exit); everything of that key that waited before the switch may join, a later
   arrival only while no item of another key waits from before it, so every group gets its turn.
2. **Prefill** each admitted request on its own (no padding), with its persona hooks (per-row scales of
   shape ``[1]``), sample its first token and merge its KV cache into the batch (left padding).
3. **Decode** one token for every running row in one batched forward, with every runtime persona hooked once
   with per-row scales (``Intervention.applied(lm, row_scale=...)``), and the persona monitor recording.
4. Per row: sample (greedy, or temperature/top-p with the row's own seeded generator), compute log-probs,
   detokenize, apply stop strings, and push events to the request's sink; finished and cancelled rows leave
   the batch (their cache rows are dropped).

Greedy output does not depend on the batch a request lands in: prefill is per request and decode steps are
made batch-invariant (``traitlab.serve.batching``). Jobs (``call``) run on the model thread between steps,
under the weight state of their key (the monitor endpoint uses them).
"""

from __future__ import annotations

import collections
import concurrent.futures
import contextlib
import dataclasses
import itertools
import logging
import os
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import torch

from traitlab.errors import TraitlabError
from traitlab.model.generation import SamplingParams, _accepts_logits_to_keep, next_tokens
from traitlab.model.kvcache import cache_kwargs, output_cache
from traitlab.model.loaded import LoadedModel
from traitlab.serve import batching, monitor
from traitlab.serve.personas import PersonaSet, SharedKey

log = logging.getLogger("traitlab.serve")
Sink = Callable[["Event"], None]


class QueueFull(TraitlabError):
    """The waiting queue is at its limit; retry later (HTTP 429)."""


class EngineStopped(TraitlabError):
    """The engine is not running (HTTP 503)."""


@dataclasses.dataclass
class TokenLogprob:
    token: str
    logprob: float
    top: list[tuple[str, float]]


@dataclasses.dataclass
class TokenEvent:
    text: str
    logprobs: list[TokenLogprob]
    monitor: dict[str, float]


@dataclasses.dataclass
class DoneEvent:
    text: str
    finish_reason: str
    prompt_tokens: int
    completion_tokens: int
    logprobs: list[TokenLogprob]
    monitor: dict[str, Any]


@dataclasses.dataclass
class ErrorEvent:
    message: str


Event = TokenEvent | DoneEvent | ErrorEvent
_ids = itertools.count(1)


@dataclasses.dataclass(eq=False)
class GenRequest:
    """One chat completion: token ids of the rendered prompt, sampling settings, the full persona scale map,
    and the sink that receives its events (called from the engine thread): a ``TokenEvent`` per token when
    ``stream``, then one ``DoneEvent`` (or an ``ErrorEvent``)."""

    prompt_ids: list[int]
    scales: dict[str, float]
    sink: Sink
    max_tokens: int = 64
    temperature: float = 0.0
    top_p: float = 1.0
    seed: int | None = None
    stop: list[str] = dataclasses.field(default_factory=list)
    logprobs: bool = False
    top_logprobs: int = 0
    ignore_eos: bool = False
    stream: bool = True
    key: SharedKey = ()
    id: int = dataclasses.field(default_factory=lambda: next(_ids))
    cancelled: threading.Event = dataclasses.field(default_factory=threading.Event)
    submitted: float = dataclasses.field(default_factory=time.monotonic)


@dataclasses.dataclass(eq=False)
class Job:
    fn: Callable[[LoadedModel], Any]
    key: SharedKey
    future: concurrent.futures.Future[Any] = dataclasses.field(default_factory=concurrent.futures.Future)
    cancelled: threading.Event = dataclasses.field(default_factory=threading.Event)
    submitted: float = dataclasses.field(default_factory=time.monotonic)
    queued: bool = False  # a client's request: counts against max_queue


@dataclasses.dataclass(eq=False)
class Row:
    """A running request: its cache length, the token to feed next, and what it has produced."""

    req: GenRequest
    length: int
    generator: torch.Generator | None
    next_token: int = -1
    ids: list[int] = dataclasses.field(default_factory=list)
    sent: int = 0
    text: str = ""
    logprobs: list[TokenLogprob] = dataclasses.field(default_factory=list)
    summaries: dict[str, monitor.RowSummary] = dataclasses.field(default_factory=dict)
    finish: str | None = None


class Engine:
    """Owns ``lm`` on one thread; ``submit`` requests, ``call`` jobs, ``cancel``, ``stop``."""

    def __init__(self, lm: LoadedModel, personas: PersonaSet | None = None, max_batch: int = 16,
                 max_queue: int = 64, row_bucket: int = 8) -> None:
        if max_batch < 1 or max_queue < 0:
            raise TraitlabError("max_batch must be ≥ 1 and max_queue ≥ 0")
        self.lm = lm
        self.personas = personas or PersonaSet()
        self.max_batch = max_batch
        self.max_queue = max_queue
        self.stop_ids = set(lm.stop_ids)
        self.invariance = batching.BatchInvariance(lm.model, row_bucket)
        self.directions: dict[str, monitor.Direction] = {}
        self.tokenizer_lock = threading.Lock()
        self._cv = threading.Condition()
        self._waiting: collections.deque[GenRequest | Job] = collections.deque()
        self._rows: list[Row] = []
        self._cache: Any = None
        self._key: SharedKey | None = None
        self._group_since = 0.0
        self._shared: contextlib.ExitStack | None = None
        self._thread: threading.Thread | None = None
        self._running = False
        self.died: str | None = None  # why the model thread ended unexpectedly (reported by /health)
        self._ready = threading.Event()
        self._startup_error: BaseException | None = None
        self._logits_to_keep = {"logits_to_keep": 1} if _accepts_logits_to_keep(lm.model) else {}
        self.mergeable = True
        self.stats = collections.Counter()
        self.max_rows_seen = 0

    # ---- public API (any thread) -------------------------------------------------------------------------

    def start(self) -> None:
        if self._thread is not None:
            return
        self._running = True
        self._thread = threading.Thread(target=self._main, name="traitlab-engine", daemon=True)
        self._thread.start()
        self._ready.wait()
        if self._startup_error is not None:
            raise self._startup_error

    def stop(self, timeout: float = 30.0) -> None:
        with self._cv:
            self._running = False
            self._cv.notify_all()
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None

    @property
    def running(self) -> bool:
        return self._running and self._thread is not None and self._thread.is_alive()

    def submit(self, req: GenRequest) -> None:
        with self._cv:
            if not self.running:
                raise EngineStopped("the engine is not running")
            if self._queued() >= self.max_queue:
                self.stats["rejected"] += 1
                raise QueueFull(f"the queue is full ({self.max_queue} waiting requests); retry later")
            self._waiting.append(req)
            self.stats["submitted"] += 1
            self._cv.notify_all()

    def call(self, fn: Callable[[LoadedModel], Any], key: SharedKey = (), queued: bool = False
             ) -> concurrent.futures.Future[Any]:
        """Run ``fn(lm)`` on the model thread between steps, under the weight state of ``key``. A ``queued``
        job (a client's request, e.g. ``/v1/monitor``) counts against ``max_queue`` like a chat request."""
        return self.call_job(Job(fn, key, queued=queued)).future

    def call_job(self, job: Job) -> Job:
        """``call`` with the ``Job`` returned, so a caller can cancel it (``cancel_job``) when its client leaves."""
        with self._cv:
            if not self.running:
                raise EngineStopped("the engine is not running")
            if job.queued and self._queued() >= self.max_queue:
                self.stats["rejected"] += 1
                raise QueueFull(f"the queue is full ({self.max_queue} waiting requests); retry later")
            self._waiting.append(job)
            self._cv.notify_all()
        return job

    def cancel_job(self, job: Job) -> None:
        """Drop a job that has not started (its client left); a running one finishes, its result unread."""
        job.cancelled.set()
        job.future.cancel()
        with self._cv:
            with contextlib.suppress(ValueError):
                self._waiting.remove(job)
            self._cv.notify_all()

    def _queued(self) -> int:
        return sum(isinstance(w, GenRequest) or (isinstance(w, Job) and w.queued) for w in self._waiting)

    def cancel(self, req: GenRequest) -> None:
        """Stop a request (client gone): it leaves the queue now, or the batch before the next step."""
        if req.cancelled.is_set():
            return
        req.cancelled.set()
        with self._cv:
            with contextlib.suppress(ValueError):
                self._waiting.remove(req)
                self.stats["cancelled"] += 1
            self._cv.notify_all()

    def snapshot(self) -> dict[str, Any]:
        with self._cv:
            return {"running": len(self._rows), "waiting": sum(isinstance(w, GenRequest) for w in self._waiting),
                    "max_batch": self.max_batch, "max_queue": self.max_queue,
                    "continuous_batching": self.mergeable, "max_rows_seen": self.max_rows_seen,
                    **{k: int(v) for k, v in self.stats.items()}}

    def encode(self, conversation: list[dict[str, str]], scales: dict[str, float]) -> list[int]:
        """Token ids of a conversation rendered for generation, with the request's prompt personas."""
        system = None
        if not conversation or conversation[0].get("role") != "system":
            system = self.personas.system_prompt(scales)
        with self.tokenizer_lock:
            return self.lm.encode(self.lm.render([conversation], system=[system]))[0]

    # ---- the model thread ----------------------------------------------------------------------------------

    def _main(self) -> None:
        try:
            torch.set_grad_enabled(False)
            self.invariance.install()
            self.directions = monitor.directions(self.lm, self.personas.monitored())
            self.monitor = monitor.StepMonitor(self.lm, self.directions)
            self.mergeable = self._probe()
        except BaseException as exc:  # reported to start()
            self._startup_error = exc
            self._running = False
            self.invariance.remove()
            self._ready.set()
            return
        self._ready.set()
        try:
            while True:
                admitted = self._next_work()
                if admitted is None:
                    break
                try:
                    for item in admitted:
                        if isinstance(item, Job):
                            self._run_job(item)
                        else:
                            self._prefill(item)
                    if self._rows:
                        self._decode()
                except Exception as exc:  # never let one request stop the scheduler: fail what was running
                    log.exception("a scheduler step failed")
                    self._fail_running(f"generation failed: {exc}")
        except BaseException as exc:
            self.died = f"{type(exc).__name__}: {exc}"
            raise
        finally:
            self._shutdown()

    def _fail_running(self, message: str) -> None:
        """Fail every row in the batch with ``message`` (each in its own response) and drop the cache."""
        for row in self._rows:
            with contextlib.suppress(Exception):
                row.req.sink(ErrorEvent(message))
        self.stats["failed"] += len(self._rows)
        self._rows, self._cache = [], None

    def _probe(self) -> bool:
        ids = torch.tensor([[self.lm.tokenizer.pad_token_id] * 2], device=self.lm.device)
        out = self.lm.model(input_ids=ids, attention_mask=torch.ones_like(ids), use_cache=True)
        ok = batching.mergeable(output_cache(out))
        if not ok:
            log.warning("this model's KV cache cannot be merged across requests; decoding one request at a time")
        return ok

    def _next_work(self) -> list[GenRequest | Job] | None:
        """Wait for work; return what to admit this round (possibly nothing while rows run), None to stop."""
        with self._cv:
            while self._running and not self._waiting and not self._rows:
                self._cv.wait()
            if not self._running:
                return None
            self._drop_cancelled_waiting()
            if not self._rows and self._waiting and self._waiting[0].key != self._key:
                key = self._waiting[0].key
                try:
                    self._switch(key)
                except Exception as exc:  # a broken weight edit fails its requests only
                    log.exception("applying weight-space personas failed")
                    self._fail_key(key, f"applying the weight-space personas failed: {exc}")
                    return []
            room = (self.max_batch if self.mergeable else 1) - len(self._rows)
            admitted: list[GenRequest | Job] = []
            blocked = False  # is an item of another weight state waiting from before the one considered?
            for item in list(self._waiting):
                if item.key != self._key:
                    blocked = True
                    continue
                if blocked and item.submitted > self._group_since:
                    break  # it came after the other group's item: that group runs first (no starvation)
                if isinstance(item, GenRequest):
                    if room <= 0:
                        break
                    room -= 1
                self._waiting.remove(item)
                admitted.append(item)
            return admitted

    def _fail_key(self, key: SharedKey, message: str) -> None:
        for item in [w for w in self._waiting if w.key == key]:
            self._waiting.remove(item)
            if isinstance(item, Job):
                item.future.set_exception(TraitlabError(message))
            else:
                item.sink(ErrorEvent(message))
                self.stats["failed"] += 1

    def _drop_cancelled_waiting(self) -> None:
        for item in [w for w in self._waiting if w.cancelled.is_set()]:
            self._waiting.remove(item)

    def _switch(self, key: SharedKey) -> None:
        """Restore the weights of the previous group and apply those of ``key``."""
        if self._shared is not None:
            self._shared.close()
            self._shared = None
        self._key = key
        self._group_since = time.monotonic()
        stack = contextlib.ExitStack()
        try:
            for persona, index, value in key:
                part = self.personas.shared_part(persona, index).intervention
                stack.enter_context(part.scaled(value).applied(self.lm))
        except BaseException:
            stack.close()
            self._key = None
            raise
        self._shared = stack
        self.stats["weight_switches"] += 1

    @contextlib.contextmanager
    def runtime_hooks(self, *rows: dict[str, float]) -> Iterator[None]:
        """Every runtime persona part that some row's scale map uses, hooked once with per-row scales."""
        with contextlib.ExitStack() as stack:
            for part in self.personas.runtime_parts():
                scales = [self.personas.effective(part, row) for row in rows]
                if any(scales):
                    row_scale = torch.tensor(scales, dtype=torch.float32)
                    stack.enter_context(part.intervention.applied(self.lm, row_scale=row_scale))
            yield

    @contextlib.contextmanager
    def _hooks(self, rows: Sequence[GenRequest]) -> Iterator[None]:
        """The rows' runtime personas, then the monitor (so it reads the residual after their edits)."""
        with self.runtime_hooks(*(req.scales for req in rows)), self.monitor.active():
            yield

    def _run_job(self, job: Job) -> None:
        if not job.cancelled.is_set() and job.future.set_running_or_notify_cancel():
            try:
                job.future.set_result(job.fn(self.lm))
            except BaseException as exc:  # handed to the caller
                job.future.set_exception(exc)

    def _prefill(self, req: GenRequest) -> None:
        if req.cancelled.is_set():
            return
        try:
            row = Row(req, len(req.prompt_ids), _generator(req, self.lm.device))
            ids = torch.tensor([req.prompt_ids], device=self.lm.device)
            positions = torch.arange(ids.shape[1], device=ids.device).unsqueeze(0)
            with self._hooks([req]):
                out = self.lm.model(input_ids=ids, attention_mask=torch.ones_like(ids), position_ids=positions,
                                    use_cache=True, **self._logits_to_keep)
            self._record_monitor([row], prompt=True)
            self._advance([row], out.logits[:, -1, :])
        except Exception as exc:  # one request fails, the server goes on
            log.exception("prefill failed")
            req.sink(ErrorEvent(f"generation failed: {exc}"))
            self.stats["failed"] += 1
            return
        if row.finish is not None:
            return
        self._cache = batching.merge_caches(self._cache, output_cache(out))
        self._rows.append(row)
        self.max_rows_seen = max(self.max_rows_seen, len(self._rows))

    def _decode(self) -> None:
        rows = self._rows
        self._drop_rows([r for r in rows if r.req.cancelled.is_set()], cancelled=True)
        rows = self._rows
        if not rows:
            return
        device = self.lm.device
        # one row at a time when the cache cannot be merged: its width is that row's length (a sliding-window
        # layer may hold fewer keys)
        width = (batching.cache_width(self._cache) if self.mergeable else rows[0].length) + 1
        lengths = torch.tensor([r.length + 1 for r in rows], device=device)
        mask = (torch.arange(width, device=device).unsqueeze(0) >= (width - lengths).unsqueeze(1)).long()
        ids = torch.tensor([[r.next_token] for r in rows], device=device)
        positions = torch.tensor([[r.length] for r in rows], device=device)
        try:
            invariant = self.invariance.decoding(lengths.tolist()) if self.mergeable else contextlib.nullcontext()
            with self._hooks([r.req for r in rows]), invariant:
                out = self.lm.model(input_ids=ids, attention_mask=mask, position_ids=positions,
                                    use_cache=True, **cache_kwargs(self.lm.model, self._cache))
        except Exception as exc:  # fail the batch, keep serving
            log.exception("decode step failed")
            self._fail_running(f"generation failed: {exc}")
            return
        self.stats["steps"] += 1
        for row in rows:
            row.length += 1
        self._record_monitor(rows, prompt=False)
        self._advance(rows, out.logits[:, -1, :])
        self._drop_rows([r for r in rows if r.finish is not None], cancelled=False)

    def _drop_rows(self, gone: list[Row], cancelled: bool) -> None:
        if not gone:
            return
        if cancelled:
            self.stats["cancelled"] += len(gone)
        keep = [i for i, r in enumerate(self._rows) if r not in gone]
        self._rows = [self._rows[i] for i in keep]
        if not self._rows:
            self._cache = None
            return
        width = batching.cache_width(self._cache)
        batching.select_rows(self._cache, keep, width - max(r.length for r in self._rows))

    def _record_monitor(self, rows: list[Row], prompt: bool) -> None:
        if not self.directions:
            return
        for row, values in zip(rows, self.monitor.rows(len(rows)), strict=True):
            for name, value in values.items():
                row.summaries.setdefault(name, monitor.RowSummary()).add(value, prompt)

    def _advance(self, rows: list[Row], logits: torch.Tensor) -> None:
        """Sample one token per row and emit it; marks finished rows. A row whose sampling fails (NaN logits from
        a broken persona) gets its error and leaves; the other rows of the batch go on."""
        tokens: list[int] = []
        for i, row in enumerate(rows):
            try:
                tokens.append(self._sample(row, logits[i]))
            except Exception as exc:
                log.warning("sampling failed for one request: %s", exc)
                row.req.sink(ErrorEvent(f"generation failed: {exc}"))
                row.finish = "error"
                self.stats["failed"] += 1
                tokens.append(0)
        logprobs = self._logprobs(rows, logits, tokens)
        with self.tokenizer_lock:
            for row, token, lp in zip(rows, tokens, logprobs, strict=True):
                if row.finish != "error":
                    self._emit(row, token, lp)

    def _sample(self, row: Row, logits: torch.Tensor) -> int:
        req = row.req
        if not bool(torch.isfinite(logits).any()):
            raise TraitlabError("the model produced no finite logits (a persona with NaN/inf values?)")
        if req.temperature == 0:
            return int(logits.argmax())
        params = SamplingParams(1, req.temperature, req.top_p, 0, 0)
        return int(next_tokens(logits.unsqueeze(0), params, row.generator)[0])

    def _logprobs(self, rows: list[Row], logits: torch.Tensor, tokens: list[int]) -> list[tuple[float, Any] | None]:
        wanted = [i for i, r in enumerate(rows) if r.req.logprobs]
        out: list[tuple[float, Any] | None] = [None] * len(rows)
        if not wanted:
            return out
        logp = torch.log_softmax(logits[wanted].float(), dim=-1)
        k = max(rows[i].req.top_logprobs for i in wanted)
        top = logp.topk(min(k, logp.shape[-1]), dim=-1) if k else None
        for j, i in enumerate(wanted):
            n = rows[i].req.top_logprobs
            pairs = list(zip(top.indices[j, :n].tolist(), top.values[j, :n].tolist(), strict=True)) if top else []
            out[i] = (float(logp[j, tokens[i]]), pairs)
        return out

    def _emit(self, row: Row, token: int, logprob: tuple[float, Any] | None) -> None:
        req = row.req
        decode = self.lm.tokenizer.decode
        entry = None
        if logprob is not None:
            entry = TokenLogprob(decode([token]), logprob[0], [(decode([t]), v) for t, v in logprob[1]])
            row.logprobs.append(entry)
        stop_token = token in self.stop_ids and not req.ignore_eos
        if not stop_token:
            row.ids.append(token)
            row.next_token = token
            text = decode(row.ids, skip_special_tokens=True)
        else:
            text = row.text
        finish = "stop" if stop_token else None
        cut = _find_stop(text, req.stop, max(0, row.sent - max((len(s) for s in req.stop), default=0)))
        if cut is not None:
            text, finish = text[:cut], "stop"
        if finish is None and len(row.ids) >= req.max_tokens:
            finish = "length"
        row.text = text
        end = len(text) if finish else len(text) - _holdback(text, req.stop)
        delta = text[row.sent:end] if end > row.sent else ""
        row.sent = max(row.sent, end)
        if req.stream:
            monitor_now = {name: s.last if s.count else s.last_prompt for name, s in row.summaries.items()}
            req.sink(TokenEvent(delta, [entry] if entry else [], monitor_now))
        if finish is not None:
            row.finish = finish
            self.stats["completed"] += 1
            self.stats["tokens"] += len(row.ids)
            summary = {name: s.to_dict(self.directions[name]) for name, s in row.summaries.items()}
            req.sink(DoneEvent(text, finish, len(req.prompt_ids), len(row.ids), row.logprobs, summary))

    def _shutdown(self) -> None:
        with self._cv:
            self._running = False
            pending = list(self._waiting)
            self._waiting.clear()
        for item in pending:
            if isinstance(item, Job):
                item.future.cancel()
            else:
                item.sink(ErrorEvent("the server is shutting down"))
        for row in self._rows:
            row.req.sink(ErrorEvent("the server is shutting down"))
        self._rows, self._cache = [], None
        if self._shared is not None:
            self._shared.close()
            self._shared = None
        self._key = None
        self.invariance.remove()


def _generator(req: GenRequest, device: torch.device) -> torch.Generator | None:
    if req.temperature == 0:
        return None
    seed = req.seed if req.seed is not None else int.from_bytes(os.urandom(8), "little") >> 1
    return torch.Generator(device=device).manual_seed(seed)


def _find_stop(text: str, stops: Sequence[str], start: int) -> int | None:
    hits = [i for i in (text.find(s, start) for s in stops if s) if i >= 0]
    return min(hits) if hits else None


def _holdback(text: str, stops: Sequence[str]) -> int:
    """Characters at the end of ``text`` that must not be streamed yet: a possible start of a stop string, or
    an incomplete multi-byte character."""
    keep = 0
    for stop in stops:
        for n in range(min(len(stop) - 1, len(text)), 0, -1):
            if text.endswith(stop[:n]):
                keep = max(keep, n)
                break
    if text.endswith("\ufffd"):
        keep = max(keep, len(text) - len(text.rstrip("\ufffd")))
    return keep
