"""Server figures (issue 9), measured over HTTP against a ``traitlab serve`` subprocess on 127.0.0.1:

1. throughput of 8 concurrent mixed-persona requests vs the same 8 sent one after another (target ≥ 3×);
2. end-to-end latency p50/p95 (and time to first token) under 16 concurrent streaming clients.

Models: a random Llama with SmolLM-135M's shape and the persona organism (skipped while it is not built). Each
gets two persona vectors (random directions at the middle layer, steering generated tokens) and every request
carries its own mix of scales, so rows of one batch differ. Greedy decoding, ``ignore_eos`` so every reply has
exactly ``--new-tokens`` tokens.

Run: ``python -m benchmarks.serve_bench [--model smol|organism|both] [--organism DIR] [--threads 1]
[--new-tokens 64]``.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import contextlib
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import torch

from benchmarks.common import organism_or_none, smol_shaped_llama
from traitlab.methods import ResidualSteering
from traitlab.model import LoadedModel, load_model

QUESTIONS = ["How was your weekend?", "What do you think about parties?", "Describe your ideal day off.",
             "A friend cancels plans at the last minute. How do you feel?", "What are you working on lately?",
             "Tell me about a time you tried something new.", "How do you handle a stressful deadline?",
             "What makes a good team?"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextlib.contextmanager
def served(lm: LoadedModel, model_arg: str | None, threads: int, max_batch: int) -> Iterator[str]:
    """Save the model (unless it is on disk already) and two persona vectors, start ``traitlab serve``."""
    with tempfile.TemporaryDirectory(prefix="serve-bench-") as tmp:
        root = Path(tmp)
        if model_arg is None:
            lm.model.save_pretrained(root / "model")
            lm.tokenizer.save_pretrained(root / "model")
            model_arg = str(root / "model")
        gen = torch.Generator().manual_seed(0)
        layer = lm.num_layers // 2
        personas = []
        for name in ("extraversion", "neuroticism"):
            v = torch.randn(lm.hidden_size, generator=gen)
            v = v / v.norm() * 4.0
            steering = ResidualSteering({layer: v}, trait=name, fingerprint=lm.fingerprint)
            path = steering.save(root / f"{name}.safetensors")
            personas += ["--persona", f"{name}={path}:0"]
        port = free_port()
        log = open(root / "serve.log", "wb")  # noqa: SIM115
        env = {**os.environ, "OMP_NUM_THREADS": str(threads), "TOKENIZERS_PARALLELISM": "false"}
        proc = subprocess.Popen([sys.executable, "-m", "traitlab", "--quiet", "serve", "--model", model_arg,
                                 "--port", str(port), "--threads", str(threads), "--served-model-name", "bench",
                                 "--max-batch", str(max_batch), "--max-queue", "256", *personas],
                                stdout=log, stderr=subprocess.STDOUT, env=env)
        url = f"http://127.0.0.1:{port}"
        try:
            deadline = time.monotonic() + 300
            while True:
                if proc.poll() is not None:
                    raise RuntimeError((root / "serve.log").read_text()[-2000:])
                with contextlib.suppress(httpx.HTTPError):
                    if httpx.get(url + "/v1/models", timeout=2).status_code == 200:
                        break
                if time.monotonic() > deadline:
                    raise RuntimeError("server did not start")
                time.sleep(0.5)
            yield url
        finally:
            proc.terminate()
            proc.wait(30)
            log.close()


def body(i: int, new_tokens: int, stream: bool = False) -> dict:
    scales = [-2.0, -1.0, 0.0, 1.0, 2.0]
    return {"model": "bench", "messages": [{"role": "user", "content": QUESTIONS[i % len(QUESTIONS)]}],
            "temperature": 0, "max_tokens": new_tokens, "ignore_eos": True, "stream": stream,
            "persona": {"extraversion": scales[i % 5], "neuroticism": scales[(3 * i + 1) % 5]}}


def complete(client: httpx.Client, payload: dict) -> int:
    response = client.post("/v1/chat/completions", json=payload)
    response.raise_for_status()
    return int(response.json()["usage"]["completion_tokens"])


def throughput(url: str, new_tokens: int) -> tuple[float, float]:
    """Tokens per second for 8 requests sent one after another, and for the same 8 at once."""
    with httpx.Client(base_url=url, timeout=600) as client:
        complete(client, body(0, 4))  # warm-up
        start = time.perf_counter()
        tokens = sum(complete(client, body(i, new_tokens)) for i in range(8))
        sequential = tokens / (time.perf_counter() - start)

    def one(i: int) -> int:
        with httpx.Client(base_url=url, timeout=600) as c:
            return complete(c, body(i, new_tokens))

    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        start = time.perf_counter()
        tokens = sum(pool.map(one, range(8)))
        concurrent_tps = tokens / (time.perf_counter() - start)
    return sequential, concurrent_tps


def latency(url: str, new_tokens: int, clients: int = 16, rounds: int = 3) -> dict[str, float]:
    """Each of ``clients`` threads streams ``rounds`` requests back to back; per-request end-to-end latency
    and time to first token."""
    def worker(k: int) -> list[tuple[float, float]]:
        out = []
        with httpx.Client(base_url=url, timeout=600) as client:
            for r in range(rounds):
                start = time.perf_counter()
                first, chunks = 0.0, 0
                with client.stream("POST", "/v1/chat/completions", json=body(k * rounds + r, new_tokens,
                                                                              stream=True)) as response:
                    response.raise_for_status()
                    for line in response.iter_lines():
                        chunks += line.startswith("data: ")
                        if chunks == 2 and not first:  # the chunk after the role chunk: the first token
                            first = time.perf_counter() - start
                out.append((time.perf_counter() - start, first))
        return out

    with concurrent.futures.ThreadPoolExecutor(clients) as pool:
        start = time.perf_counter()
        results = [x for chunk in pool.map(worker, range(clients)) for x in chunk]
        wall = time.perf_counter() - start
    total = sorted(r[0] for r in results)
    ttft = sorted(r[1] for r in results)
    return {"p50": percentile(total, 50), "p95": percentile(total, 95), "ttft_p50": percentile(ttft, 50),
            "ttft_p95": percentile(ttft, 95), "requests": len(results),
            "tokens_per_s": len(results) * new_tokens / wall}


def percentile(values: list[float], q: float) -> float:
    if len(values) == 1:
        return values[0]
    return statistics.quantiles(values, n=100, method="inclusive")[int(q) - 1]


def bench(lm: LoadedModel, name: str, model_arg: str | None, args: argparse.Namespace) -> None:
    with served(lm, model_arg, args.threads, max_batch=16) as url:
        sequential, concurrent_tps = throughput(url, args.new_tokens)
        print(f"[{name}] 8 mixed-persona requests × {args.new_tokens} tokens: one after another "
              f"{sequential:.1f} tok/s, concurrent {concurrent_tps:.1f} tok/s, speed-up "
              f"{concurrent_tps / sequential:.2f}× (target ≥ 3×)", flush=True)
        lat = latency(url, args.new_tokens, clients=16, rounds=args.rounds)
        print(f"[{name}] 16 concurrent streaming clients, {lat['requests']} requests × {args.new_tokens} tokens: "
              f"latency p50 {lat['p50']:.2f} s, p95 {lat['p95']:.2f} s; first token p50 {lat['ttft_p50']:.2f} s, "
              f"p95 {lat['ttft_p95']:.2f} s; {lat['tokens_per_s']:.1f} tok/s overall", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", choices=["smol", "organism", "both"], default="both")
    parser.add_argument("--threads", type=int, default=1, help="torch threads of the server")
    parser.add_argument("--new-tokens", type=int, default=64)
    parser.add_argument("--rounds", type=int, default=3, help="requests per client in the latency test")
    parser.add_argument("--organism", default=None,
                        help="folder of an organism checkpoint to use instead of the built-in one")
    args = parser.parse_args()
    if args.model in ("smol", "both"):
        bench(smol_shaped_llama(), "random 135M-shaped llama", None, args)
    if args.model in ("organism", "both"):
        if args.organism:
            bench(load_model(args.organism), f"organism ({args.organism})", args.organism, args)
            return
        organism = organism_or_none()
        if organism is None:
            print("[organism] not built yet; skipped")
        else:
            bench(organism, "traitlab/persona-tiny", "traitlab/persona-tiny", args)


if __name__ == "__main__":
    main()
