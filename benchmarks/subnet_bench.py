"""Persona-subnetwork speed and size figures (issue 7), measured in one run:

1. mask computation (Wanda scores, per-row top-k, bit-packing, all block Linears; and the contrastive variant)
   vs one calibration forward pass over the same texts — both the plain batched teacher-forced pass and the
   capturing pass that collects the statistics (target ≤ 1.5×);
2. persona switch by mask swap on the live model (restore A's removed values, apply B) vs reloading the model
   from disk (target ≥ 10× faster);
3. artifact size vs the fp32 size of the masked weights and of the whole model (target ≤ 1/30 of fp32).

Run: ``python -m benchmarks.subnet_bench [--model traitlab/persona-tiny] [--smol]``; ``--smol`` adds figures 2–3
(random statistics) on a random Llama with SmolLM-135M's shape.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import torch

from benchmarks.common import interleaved, smol_shaped_llama
from traitlab.methods.subnet_calibration import GenerationSettings, collect_stats, from_spec
from traitlab.methods.subnet_fit import contrastive_masks, wanda_masks
from traitlab.methods.subnetworks import SubnetworkMask, SubnetworkSet
from traitlab.model import LinearInputStats, LoadedModel, linear_modules, load_model, teacher_forced
from traitlab.model.family import in_features
from traitlab.progress import set_quiet
from traitlab.traits import load_trait


def _median(fn, repeats: int = 5) -> float:
    return interleaved({"x": fn}, repeats=repeats)["x"]


def mask_vs_forward(lm: LoadedModel, batch_size: int = 16) -> None:
    spec = load_trait("extraversion_high")
    settings = GenerationSettings(max_new_tokens=64, temperature=1.0)
    high = from_spec(lm, spec, "high", True, settings)
    low = from_spec(lm, spec, "low", True, settings)
    chunks = high.chunks(batch_size)
    batches = [tuple(t.to(lm.device) for t in high.batch(rows)) for rows in chunks]

    def forward() -> None:
        for input_ids, attention_mask, roles in batches:
            teacher_forced(lm, input_ids, attention_mask, roles)

    def capture() -> None:
        collect_stats(lm, high, "response", "all", None, batch_size)

    seek = collect_stats(lm, high, "response", "all", None, batch_size)
    reject = collect_stats(lm, low, "response", "all", None, batch_size)

    def wanda() -> None:
        SubnetworkMask.from_masks(wanda_masks(lm, seek, 0.5))

    def contrastive() -> None:
        SubnetworkMask.from_masks(contrastive_masks(lm, seek, reject, 0.3)[0])

    times = interleaved({"forward": forward, "capture": capture, "wanda": wanda, "contrastive": contrastive},
                        repeats=5)
    weights = sum(m.weight.numel() for m in linear_modules(lm).values())
    print(f"[{lm.spec}] calibration set: {len(high)} answers, {high.tokens()} tokens; {weights / 1e6:.2f}M weights "
          "in block Linears")
    print(f"  plain forward {times['forward'] * 1e3:.0f} ms, capturing forward {times['capture'] * 1e3:.0f} ms")
    for kind in ("wanda", "contrastive"):
        print(f"  {kind} mask {times[kind] * 1e3:.0f} ms: {times[kind] / times['forward']:.2f}× the plain pass, "
              f"{times[kind] / times['capture']:.2f}× the capturing pass (target ≤ 1.5×)")


def random_stats(lm: LoadedModel, seed: int) -> dict[str, LinearInputStats]:
    generator = torch.Generator().manual_seed(seed)
    stats = {}
    for name, module in linear_modules(lm).items():
        width = in_features(module)
        x = torch.rand(width, generator=generator, dtype=torch.float64)
        stats[name] = LinearInputStats(x * 10, x.square() * 10, 10)
    return stats


def switch_and_size(lm: LoadedModel, folder: str | None, name: str, repeats: int = 5) -> None:
    first = SubnetworkMask.from_masks(wanda_masks(lm, random_stats(lm, 1), 0.5), fingerprint=lm.fingerprint)
    second = SubnetworkMask.from_masks(wanda_masks(lm, random_stats(lm, 2), 0.5), fingerprint=lm.fingerprint)
    with tempfile.TemporaryDirectory() as tmp:
        if folder is None:
            folder = str(Path(tmp) / "model")
            lm.model.save_pretrained(folder)
            lm.tokenizer.save_pretrained(folder)
        swap_time = {}
        for mode in ("copy", "values"):
            with SubnetworkSet(lm, {"a": first, "b": second}, mode=mode) as personas:
                personas.use("a")
                state = {"next": "b"}

                def swap(personas=personas, state=state) -> None:
                    personas.use(state["next"])
                    state["next"] = "a" if state["next"] == "b" else "b"

                swap_time[mode] = _median(swap, repeats * 3)
        reload_time = _median(lambda: load_model(folder, device="cpu"), max(3, repeats // 2))
        path = first.save(Path(tmp) / "mask.tl.safetensors")
        size = path.stat().st_size
    covered = sum(torch.Size(s).numel() for s in first.shapes.values())
    total = sum(p.numel() for p in lm.model.parameters())
    for mode, seconds in swap_time.items():
        print(f"[{name}] persona switch by mask swap ({mode} mode) {seconds * 1e3:.1f} ms vs reloading the model "
              f"{reload_time * 1e3:.0f} ms: {reload_time / seconds:.1f}× faster (target ≥ 10×)")
    print(f"[{name}] artifact {size / 1024:.1f} KiB vs fp32 masked weights {covered * 4 / 1024:.0f} KiB "
          f"(1/{covered * 4 / size:.1f}) and the whole fp32 model {total * 4 / 1024:.0f} KiB "
          f"(1/{total * 4 / size:.1f}); target ≤ 1/30")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="traitlab/persona-tiny")
    parser.add_argument("--smol", action="store_true", help="Also switch/size figures on a 135M-shaped Llama.")
    args = parser.parse_args()
    set_quiet(True)
    torch.manual_seed(0)
    lm = load_model(args.model, device="cpu")
    started = time.perf_counter()
    mask_vs_forward(lm)
    from traitlab.model.loaded import resolve_spec

    switch_and_size(lm, resolve_spec(args.model), lm.spec)
    if args.smol:
        switch_and_size(smol_shaped_llama(), None, "random-135M-llama", repeats=3)
    print(f"total {time.perf_counter() - started:.0f}s")


if __name__ == "__main__":
    main()
