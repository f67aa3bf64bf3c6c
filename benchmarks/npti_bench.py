"""NPTI speed and memory (issue 6), in one run:

1. collection throughput: generating answers with the statistics of every neuron of every block recorded during
   the generation (``collect_pole``) vs plain generation of the same answers (greedy, so the same tokens);
   target ≥ 0.8×;
2. peak memory of collection for two numbers of answers (8× apart): in fresh processes, the rise of peak RSS
   during generation (peak reset after loading) with collection minus without, and the accumulator's own
   bytes; the target is that neither grows with the number of tokens;
3. generation throughput with an NPTI induction active (its real selection, plus a dense one editing 10% of the
   neurons of every block) vs none: fixed-length generation (no stop token), target ≥ 0.95×.

Timings: one torch thread; per case the minimum over interleaved repeats of wall and CPU time, and the median
of the per-repeat CPU-time ratios of back-to-back runs (see ``timed``).

Run: ``nice -n 10 python -m benchmarks.npti_bench [--model traitlab/persona-tiny] [--smol] [--out f.json]``;
on SmolLM2 (docs/npti.md): ``--model smollm2-135m-instruct --answers 16 --new-tokens 32 --repeats 3
--parts collection,memory --memory-tokens 32,256 --memory-runs 2``.
Without the organism it uses a random Llama of the organism's shape. ``--smol`` adds the 135M-shaped Llama.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import random
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import torch

from benchmarks.common import organism_or_none, smol_shaped_llama
from traitlab.methods.neuron_stats import NeuronHistogram
from traitlab.methods.neurons import CollectionSettings, NeuronInduction, SelectionOptions, collect, collect_pole
from traitlab.model import LoadedModel, load_model, stream_neurons
from traitlab.model.generation import SamplingParams, generate_ids
from traitlab.model.tiny import tiny_tokenizer
from traitlab.traits import load_trait


def timed(cases: dict[str, Any], repeats: int) -> dict[str, dict[str, float]]:
    """Per case, the minimum over interleaved repeats of wall time and of this process's CPU time. On a shared
    machine the minimum (and CPU time, with one torch thread) is the least disturbed by other processes."""
    for fn in cases.values():
        fn()
    wall: dict[str, list[float]] = {name: [] for name in cases}
    cpu: dict[str, list[float]] = {name: [] for name in cases}
    for _ in range(repeats):
        for name, fn in cases.items():
            w, c = time.perf_counter(), time.process_time()
            fn()
            wall[name].append(time.perf_counter() - w)
            cpu[name].append(time.process_time() - c)
    out = {name: {"wall": min(wall[name]), "cpu": min(cpu[name])} for name in cases}
    first, *others = cases
    for name in others:  # per-repeat ratios of back-to-back runs: drift in the machine's load hits both alike
        out[name]["paired"] = statistics.median(a / b for a, b in zip(cpu[first], cpu[name], strict=True))
    return out


def organism_shaped() -> LoadedModel:
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    config = LlamaConfig(vocab_size=4096, hidden_size=256, intermediate_size=608, num_hidden_layers=5,
                         num_attention_heads=4, num_key_value_heads=4, max_position_embeddings=512)
    return LoadedModel(LlamaForCausalLM(config), tiny_tokenizer(), spec="random-organism-shaped-llama")


def rows(n: int, seed: int = 0) -> tuple[list[str], list[str]]:
    spec = load_trait("extraversion_high")
    rng = random.Random(seed)
    questions = [rng.choice(spec.questions) for _ in range(n)]
    systems = [rng.choice(spec.instruction).pos for _ in range(n)]
    return questions, systems


def collection_throughput(lm: LoadedModel, n: int, new_tokens: int, repeats: int) -> dict[str, Any]:
    questions, systems = rows(n)
    settings = CollectionSettings(max_new_tokens=new_tokens, temperature=0.0)
    plain = lm.generate_chat(questions, systems, max_new_tokens=new_tokens, progress=False)
    stats, collected = collect_pole(lm, questions, systems, settings, progress=False)
    assert collected.response_ids == plain.response_ids, "collection changed the answers"
    tokens = sum(len(r) for r in plain.response_ids)
    times = timed({
        "plain": lambda: lm.generate_chat(questions, systems, max_new_tokens=new_tokens, progress=False),
        "collect": lambda: collect_pole(lm, questions, systems, settings, progress=False),
    }, repeats)
    return {"answers": n, "generated_tokens": tokens, "recorded_tokens": stats.tokens,
            **_ratios(times, "plain", "collect", tokens), "target": 0.8}


def _ratios(times: dict[str, dict[str, float]], base: str, other: str, tokens: int) -> dict[str, float]:
    return {f"{base}_tok_s": round(tokens / times[base]["wall"], 1),
            f"{other}_tok_s": round(tokens / times[other]["wall"], 1),
            "ratio_wall": round(times[base]["wall"] / times[other]["wall"], 3),
            "ratio_cpu": round(times[base]["cpu"] / times[other]["cpu"], 3),
            "ratio_cpu_paired_median": round(times[other]["paired"], 3)}


def _rss_kib(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    return 0


def _memory_child(mode: str, n: int, new_tokens: int, model: str | None) -> None:
    """In a fresh process: the peak RSS while generating ``n`` answers (plainly or with collection) above the
    RSS after loading; the peak is reset after loading (``/proc/self/clear_refs``), so loading's transient
    memory does not hide the generation's."""
    torch.set_num_threads(1)
    lm = load_model(model) if model else (organism_or_none() or organism_shaped())
    questions, systems = rows(n, seed=n)
    lm.generate_chat(questions[:4], systems[:4], max_new_tokens=2, progress=False)  # warm the allocator
    histogram = NeuronHistogram(n_blocks=lm.num_layers)
    hooked = stream_neurons(lm, range(lm.num_layers), histogram, positions="response") if mode == "collect" \
        else contextlib.nullcontext()
    Path("/proc/self/clear_refs").write_text("5")
    before = _rss_kib("VmRSS")
    with hooked:
        generation = lm.generate_chat(questions, systems, max_new_tokens=new_tokens, progress=False)
    histogram.finalize()
    print(json.dumps({"tokens": sum(len(r) for r in generation.response_ids),
                      "recorded_tokens": histogram.tokens(0), "neurons": lm.num_layers * lm.intermediate_size,
                      "peak_kib": _rss_kib("VmHWM") - before, "accumulator_bytes": histogram.nbytes()}))


def collection_memory(model: str | None, sizes: list[tuple[int, int]], runs: int = 3) -> list[dict[str, Any]]:
    """Peak RSS rise during generation with collection, and during plain generation, in fresh processes, for
    each size ``(answers, new_tokens)`` (the minimum of ``runs`` processes each). ``store_all_mib`` is what
    keeping every token's activations would take."""
    out = []
    for n, new_tokens in sizes:
        peaks: dict[str, list[dict[str, Any]]] = {"plain": [], "collect": []}
        for _ in range(runs):
            for mode in peaks:
                command = [sys.executable, "-m", "benchmarks.npti_bench", "--memory-child", mode, str(n),
                           str(new_tokens)]
                if model:
                    command += ["--model", model]
                env = {**os.environ, "MALLOC_ARENA_MAX": "1"}
                done = subprocess.run(command, capture_output=True, text=True, check=True, env=env)
                peaks[mode].append(json.loads(done.stdout.strip().splitlines()[-1]))
        plain = min(r["peak_kib"] for r in peaks["plain"]) / 1024
        collect = min(r["peak_kib"] for r in peaks["collect"]) / 1024
        first = peaks["collect"][0]
        out.append({"answers": n, "new_tokens": new_tokens, "tokens": first["tokens"],
                    "plain_peak_rise_mib": round(plain, 1),
                    "collect_peak_rise_mib": round(collect, 1), "extra_peak_mib": round(collect - plain, 1),
                    "accumulator_mib": round(first["accumulator_bytes"] / 2**20, 2),
                    "store_all_mib": round(first["recorded_tokens"] * first["neurons"] * 4 / 2**20, 1)})
    return out


def _fixed_length(lm: LoadedModel, prompt_ids: list[list[int]], new_tokens: int) -> None:
    params = SamplingParams(max_new_tokens=new_tokens)
    generate_ids(lm.model, lm.hooks, prompt_ids, lm.tokenizer.pad_token_id, [-1], params, batch_size=32,
                 progress=False)


def dense_induction(lm: LoadedModel, share: float = 0.1) -> NeuronInduction:
    g = torch.Generator().manual_seed(0)
    width = lm.intermediate_size
    k = int(share * width)
    boosts, clamps = {}, {}
    for block in range(lm.num_layers):
        order = torch.randperm(width, generator=g)
        boosts[block] = (order[:k], torch.rand(k, generator=g))
        clamps[block] = order[k:2 * k]
    return NeuronInduction(boosts, clamps, fingerprint=lm.fingerprint)


def induction_throughput(lm: LoadedModel, induction: NeuronInduction, n: int, new_tokens: int,
                         repeats: int) -> dict[str, Any]:
    questions, _ = rows(n)
    prompt_ids = lm.encode(lm.render(questions))

    def steered() -> None:
        with induction.applied(lm):
            _fixed_length(lm, prompt_ids, new_tokens)

    times = timed({"none": lambda: _fixed_length(lm, prompt_ids, new_tokens), "npti": steered}, repeats)
    counts = induction.counts()
    return {"blocks_edited": len(counts), "boosted": sum(c[0] for c in counts.values()),
            "clamped": sum(c[1] for c in counts.values()), **_ratios(times, "none", "npti", n * new_tokens),
            "target": 0.95}


def figures(lm: LoadedModel, args: argparse.Namespace) -> dict[str, Any]:
    parts = set(args.parts.split(","))
    result: dict[str, Any] = {"model": lm.spec, "blocks": lm.num_layers, "neurons": lm.intermediate_size}
    start = time.perf_counter()
    if "collection" in parts:
        result["collection"] = collection_throughput(lm, args.answers, args.new_tokens, args.repeats)
        print(json.dumps(result["collection"]), flush=True)
    if "memory" in parts and lm.spec != "random-135M-llama":
        sizes = [(args.answers, t) for t in args.memory_tokens] if args.memory_tokens \
            else [(args.answers, args.new_tokens), (8 * args.answers, args.new_tokens)]
        result["memory"] = collection_memory(args.model, sizes, args.memory_runs)
        print(json.dumps(result["memory"]), flush=True)
    if "induction" in parts:
        if lm.spec == "traitlab/persona-tiny":
            spec = load_trait("extraversion_high")
            stats = collect(lm, [(p.pos, p.neg) for p in spec.instruction], spec.questions,
                            CollectionSettings(n_answers=100), {"pos": "high", "neg": "low"}, progress=False)
            fitted = NeuronInduction.from_stats(stats, SelectionOptions(), fingerprint=lm.fingerprint)
            result["induction_fitted"] = induction_throughput(lm, fitted, args.answers, args.new_tokens,
                                                              args.repeats)
            print(json.dumps(result["induction_fitted"]), flush=True)
        result["induction_dense_10pct"] = induction_throughput(lm, dense_induction(lm), args.answers,
                                                               args.new_tokens, args.repeats)
        print(json.dumps(result["induction_dense_10pct"]), flush=True)
    result["seconds"] = round(time.perf_counter() - start, 1)
    return result


def _int_list(text: str) -> list[int]:
    values = [int(v) for v in text.split(",") if v.strip()]
    if not values or min(values) < 1:
        raise argparse.ArgumentTypeError(f"expected positive integers separated by commas, got {text!r}")
    return values


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default=None, help="Model spec (default: the organism, else its shape).")
    parser.add_argument("--smol", action="store_true", help="Also run on the 135M-shaped random Llama.")
    parser.add_argument("--answers", type=int, default=64)
    parser.add_argument("--new-tokens", type=int, default=48)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--parts", default="collection,memory,induction", help="Comma-separated subset.")
    parser.add_argument("--memory-tokens", type=_int_list, default=None,
                        help="Comma-separated new-token counts for the memory part, at --answers answers each "
                             "(default: --answers and 8x as many answers at --new-tokens).")
    parser.add_argument("--memory-runs", type=int, default=3, help="Fresh processes per memory case (minimum).")
    parser.add_argument("--memory-child", nargs=3, default=None, help=argparse.SUPPRESS)
    parser.add_argument("--threads", type=int, default=1, help="torch threads (1: least disturbed timings).")
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    if args.memory_child:
        mode, n, new_tokens = args.memory_child
        _memory_child(mode, int(n), int(new_tokens), args.model)
        return
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    lm = load_model(args.model) if args.model else (organism_or_none() or organism_shaped())
    results = [figures(lm, args)]
    if args.smol:
        small = argparse.Namespace(**{**vars(args), "answers": 32, "new_tokens": 32, "repeats": 3})
        results.append(figures(smol_shaped_llama(), small))
    text = json.dumps(results, indent=1)
    print(text)
    if args.out:
        args.out.write_text(text)


if __name__ == "__main__":
    main()
