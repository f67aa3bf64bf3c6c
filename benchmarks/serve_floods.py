"""Issue-26 server floods, measured on a `traitlab serve` subprocess (tiny Llama, 127.0.0.1): RSS before/after a
flood of chunked 20 MiB bodies (each must be a 413 read no further than the 1 MiB limit), /health latency while
they arrive, and a flood of abandoned /v1/monitor calls under --max-queue 4 (429s, then how long the next chat
takes). Run: ``python -m benchmarks.serve_floods``; prints one JSON object and writes it to
``benchmarks/results/serve_floods.json`` with the 1-minute load average at start and end (timings on a shared
machine are measured under contention)."""

from __future__ import annotations

import concurrent.futures
import json
import tempfile
import time
from pathlib import Path

import httpx

from tests.helpers import save_model
from tests.serve.helpers import serve
from traitlab.model.tiny import tiny_model

MIB = 1 << 20


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def chunked(total: int):
    yield b'{"messages": [{"role": "user", "content": "'
    for _ in range(total // MIB):
        yield b"a" * MIB
    yield b'"}]}'


def main() -> None:
    import os

    load_start = os.getloadavg()[0]
    root = Path(tempfile.mkdtemp())
    model = save_model(tiny_model("llama"), root / "tiny")
    with serve(model, ["--max-queue", "4", "--max-batch", "2"], None, root) as server:
        pid, url, out = server.proc.pid, server.url, {}
        out["rss_idle_mb"] = rss_mb(pid)
        headers = {"content-type": "application/json"}

        def body_flood(_: int) -> int:
            try:
                return httpx.post(f"{url}/v1/chat/completions", content=chunked(20 * MIB), headers=headers,
                                  timeout=60).status_code
            except httpx.HTTPError:
                return -1  # the server may close the connection after its 413

        with concurrent.futures.ThreadPoolExecutor(8) as pool:
            flood = pool.map(body_flood, range(24))
            start = time.monotonic()
            health = httpx.get(f"{url}/health", timeout=60)
            out["health_during_body_flood_s"] = round(time.monotonic() - start, 3)
            codes = list(flood)
        out["body_flood_codes"] = {str(c): codes.count(c) for c in set(codes)}
        out["health_status"] = health.status_code
        out["rss_after_body_flood_mb"] = rss_mb(pid)

        body = {"messages": [{"role": "user", "content": "hello " * 150}]}

        def monitor_flood(_: int) -> int:
            try:
                return httpx.post(f"{url}/v1/monitor", json=body, timeout=0.3).status_code
            except httpx.ReadTimeout:
                return 0  # abandoned by its client
        with concurrent.futures.ThreadPoolExecutor(40) as pool:
            codes = list(pool.map(monitor_flood, range(40)))
        out["monitor_flood_codes"] = {str(c): codes.count(c) for c in set(codes)}
        out["rss_after_monitor_flood_mb"] = rss_mb(pid)
        start = time.monotonic()
        chat = httpx.post(f"{url}/v1/chat/completions", timeout=120,
                          json={"messages": [{"role": "user", "content": "hi"}], "max_tokens": 4})
        out["next_chat_s"] = round(time.monotonic() - start, 3)
        out["next_chat_status"] = chat.status_code
    out["loadavg_1min"] = [round(load_start, 2), round(os.getloadavg()[0], 2)]
    out["cpus"] = os.cpu_count()
    results = Path(__file__).resolve().parent / "results"
    results.mkdir(exist_ok=True)
    (results / "serve_floods.json").write_text(json.dumps(out, indent=1) + "\n")
    print(json.dumps(out))


if __name__ == "__main__":
    main()
