"""Helpers of the server tests: ``traitlab serve`` subprocesses on free loopback ports (one torch thread each,
so timings stay sane on a shared 2-core machine), and an HTTP handle to them."""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import torch

KEY = "test-key-123"
READY_TIMEOUT_S = 180.0


class Server:
    def __init__(self, url: str, key: str | None, proc: subprocess.Popen[bytes], log: Path, model: str) -> None:
        self.url, self.key, self.proc, self.log, self.model = url, key, proc, log, model

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.key}"} if self.key else {}

    def client(self, timeout: float = 120.0) -> httpx.Client:
        return httpx.Client(base_url=self.url, headers=self.headers, timeout=timeout)

    def chat(self, client: httpx.Client | None = None, **body: object) -> httpx.Response:
        body.setdefault("model", self.model)
        if client is not None:
            return client.post("/v1/chat/completions", json=body)
        with self.client() as c:
            return c.post("/v1/chat/completions", json=body)


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextlib.contextmanager
def serve(model_dir: Path, args: list[str], key: str | None, log_dir: Path) -> Server:
    port = free_port()
    log = log_dir / f"serve-{port}.log"
    command = [sys.executable, "-m", "traitlab", "--quiet", "serve", "--model", str(model_dir), "--port", str(port),
               "--threads", "1", "--served-model-name", "tiny", *args]
    if key:
        command += ["--api-key", key]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false"}
    with open(log, "wb") as sink:
        proc = subprocess.Popen(command, stdout=sink, stderr=subprocess.STDOUT, env=env)
    server = Server(f"http://127.0.0.1:{port}", key, proc, log, "tiny")
    try:
        deadline = time.monotonic() + READY_TIMEOUT_S
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"traitlab serve exited with {proc.returncode}:\n{log.read_text()[-3000:]}")
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(server.url + "/v1/models", headers=server.headers, timeout=2).status_code == 200:
                    break
            if time.monotonic() > deadline:
                raise RuntimeError(f"traitlab serve did not come up in {READY_TIMEOUT_S:.0f} s:\n"
                                   f"{log.read_text()[-3000:]}")
            time.sleep(0.25)
        yield server
    finally:
        proc.terminate()
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)


def digit_persona(lm):
    """A composite persona (runtime steering + weight delta) under which the digit tokens take nearly all the
    next-token probability, so a log-prob judge gets a score out of a random model."""
    from traitlab.interventions import compose
    from traitlab.methods import ResidualSteering, WeightDelta

    ids = lm.tokenizer.convert_tokens_to_ids([str(d) for d in range(10)])
    v = lm.model.lm_head.weight[ids].detach().mean(0)
    u = v / v.norm()
    delta = torch.zeros_like(lm.model.lm_head.weight.detach())
    delta[ids] = 2 * u
    return compose([ResidualSteering({lm.num_layers: 50 * u}, positions="all", fingerprint=lm.fingerprint),
                    WeightDelta({"lm_head.weight": delta}, fingerprint=lm.fingerprint)])


def persona_args(assets: dict[str, Path], *names: str, defaults: dict[str, float] | None = None) -> list[str]:
    args: list[str] = []
    for name in names:
        scale = (defaults or {}).get(name, 0.0)
        args += ["--persona", f"{name}={assets[name]}:{scale:g}"]
    return args
