"""What the demo's fits cost, in CPU seconds (issue 24).

``subnet``: the demo's subnetwork fit (``data/demo.yaml``'s params) of both extraversion poles on SmolLM2, with
``mirror`` off (each pole's contrastive fit calibrates both poles: four calibrations) and on (each pole calibrated
once: two; the low pole's mask comes from the cached statistics), CPU seconds of the process
(``time.process_time``) per pole.

``lora [VARIANT...]``: the demo's personality-vector LoRA finetune alone (``data/demo.yaml``'s params) of both
extraversion poles on SmolLM2, on the same self-distilled data (generated once, cached in
``benchmarks/results/demo_lora_data-<pole>.json``), per variant: CPU seconds of ``finetune`` and the cosine of
each variant's φ = θ_tuned − θ_base with the first variant's (a weight-space check of one precision against
another; an ``-upN`` variant draws other LoRA initialisations, so its cosine says nothing about its effect).
Variants: ``fp32``, ``bf16``, ``bf16-upN`` (adapters on the upper N blocks only), ``fp32-upN``.

``profile OUT.prof ARGS...``: ``traitlab ARGS...`` (e.g. ``demo --quick --out FRESH``) under
``cProfile.Profile(time.process_time)``, so the profile's times are CPU seconds even on a shared machine, then
the CPU seconds of each recipe's build and of its main steps.

Run (one thread, beside other jobs): ``OMP_NUM_THREADS=1 python -m benchmarks.demo_fits_cost subnet``,
``OMP_NUM_THREADS=1 python -m benchmarks.demo_fits_cost lora fp32 bf16 bf16-up16`` and
``OMP_NUM_THREADS=1 python -m benchmarks.demo_fits_cost profile /tmp/q.prof demo --quick --out /tmp/fresh``.
Figures in docs/demo.md ("Cost of the fits").
"""

from __future__ import annotations

import argparse
import cProfile
import pstats
import runpy
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

STEPS = {  # function name -> label; build_* only from the recipes
    "build_persona_vectors": "persona_vectors (recipe)", "build_npti": "npti (recipe)",
    "build_subnetwork": "subnetwork (recipe)", "build_personality_vector": "personality_vector (recipe)",
    "self_distill": "  personality vector: self-distillation", "finetune": "  personality vector: LoRA finetune",
    "pole_statistics": "  subnetwork: pole calibrations", "collect_stats": "  subnetwork: statistics passes",
    "extract": "  persona vectors: extraction", "collect_pole": "  npti: collection",
    "evaluate": "cells (evaluate)", "load_model": "model loading",
}


def subnet() -> None:
    import torch
    import yaml

    from traitlab.evaluation.demo import DEMO_FILE
    from traitlab.evaluation.recipes import RecipeContext, build
    from traitlab.model import load_model
    from traitlab.progress import set_quiet
    from traitlab.traits import load_trait

    torch.set_num_threads(1)
    set_quiet(True)
    params = next(m["params"] for m in yaml.safe_load(DEMO_FILE.read_text())["methods"] if m["name"] == "subnetwork")
    lm = load_model("smollm2-135m-instruct")
    for mirror in (False, True):
        with tempfile.TemporaryDirectory() as tmp:
            start = time.process_time()
            for name in ("extraversion_high", "extraversion_low"):
                mask = build("subnetwork", RecipeContext(lm, load_trait(name), Path(tmp) / name),
                             {**params, "mirror": mirror})
                print(f"mirror {mirror}: {name} done at {time.process_time() - start:.1f} CPU-s "
                      f"(removes {mask.sparsity:.4f})", flush=True)


def variant_settings(variant: str, params: dict[str, Any], num_layers: int) -> Any:
    """The demo's LoRA settings for a variant name: ``fp32``, ``bf16`` or ``auto``, with ``-upN`` for adapters on
    the last N blocks only."""
    from traitlab.finetune import FinetuneSettings

    precision, _, up = variant.partition("-up")
    layers = tuple(range(num_layers - int(up), num_layers)) if up else None
    return FinetuneSettings(method=params["method"], epochs=params["epochs"], learning_rate=params["learning_rate"],
                            batch_size=params["batch_size"], precision=precision,  # type: ignore[arg-type]
                            lora_layers=layers)


def lora(variants: list[str]) -> None:
    import json

    import torch
    import yaml

    from traitlab.evaluation.demo import DEMO_FILE
    from traitlab.finetune import finetune
    from traitlab.finetune.personality_data import self_distill
    from traitlab.methods.merging import vector_from_models
    from traitlab.model import load_model
    from traitlab.progress import set_quiet
    from traitlab.traits import load_trait

    torch.set_num_threads(1)
    set_quiet(True)
    params = next(m["params"] for m in yaml.safe_load(DEMO_FILE.read_text())["methods"]
                  if m["name"] == "personality_vector")
    lm = load_model("smollm2-135m-instruct")
    results = Path("benchmarks/results")
    results.mkdir(parents=True, exist_ok=True)
    report: dict[str, dict[str, float]] = {}
    for name in ("extraversion_high", "extraversion_low"):
        spec = load_trait(name)
        cache = results / f"demo_lora_data-{name}.json"
        if cache.is_file():
            data = json.loads(cache.read_text())
        else:
            start = time.process_time()
            trimmed = spec.model_copy(update={"questions": list(spec.questions[:params["n_questions"]])})
            data = self_distill(lm, trimmed, params["n_per_question"], 1.0, params["max_new_tokens"])
            print(f"{name}: self-distillation {time.process_time() - start:.1f} CPU-s ({len(data)} replies)")
            cache.write_text(json.dumps(data))
        reference = None
        for variant in variants:
            settings = variant_settings(variant, params, lm.num_layers)
            start = time.process_time()
            tuned = finetune(lm, data, settings, progress=False)
            seconds = time.process_time() - start
            phi = vector_from_models(lm, tuned, spec.trait_name, spec.pole)
            flat = torch.cat([d.flatten() for _, d in sorted(phi.deltas.items())])
            finite = bool(torch.isfinite(flat).all())
            line = f"{name} {variant}: {seconds:.1f} CPU-s, |phi| {flat.norm():.4f}, finite {finite}"
            if reference is None:
                reference = dict(phi.deltas)
            else:  # compare on the union of parameters (a missing one counts as zero)
                keys = sorted(set(reference) | set(phi.deltas))
                a = torch.cat([reference[k].flatten() if k in reference else torch.zeros(phi.deltas[k].numel())
                               for k in keys])
                b = torch.cat([phi.deltas[k].flatten() if k in phi.deltas else torch.zeros(reference[k].numel())
                               for k in keys])
                a, b = a.double(), b.double()  # a float32 dot product of 10⁸ terms drifts past 1
                line += f", cosine to {variants[0]} {float(a @ b / (a.norm() * b.norm())):.4f}"
            print(line, flush=True)
            report.setdefault(name, {})[variant] = seconds
    (results / "demo_lora_cost.json").write_text(json.dumps(report, indent=1))


def profile(out: str, args: list[str]) -> None:
    sys.argv = ["traitlab", *args]
    prof = cProfile.Profile(time.process_time)
    prof.enable()
    try:
        runpy.run_module("traitlab", run_name="__main__", alter_sys=True)
    except SystemExit:
        pass
    finally:
        prof.disable()
        prof.dump_stats(out)
    summarize(out)


def summarize(path: str) -> None:
    totals: dict[str, float] = {}
    for (filename, _, name), entry in pstats.Stats(path).stats.items():  # type: ignore[attr-defined]
        if name not in STEPS or "traitlab" not in filename:
            continue
        if name.startswith("build_") and "recipes" not in filename:
            continue
        totals[STEPS[name]] = totals.get(STEPS[name], 0.0) + entry[3]
    for label in sorted(totals, key=lambda k: -totals[k]):
        print(f"{totals[label]:8.1f} CPU-s  {label}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="what", required=True)
    sub.add_parser("subnet")
    variants = sub.add_parser("lora")
    variants.add_argument("variants", nargs="*", default=["fp32", "bf16"])
    run = sub.add_parser("profile")
    run.add_argument("out")
    run.add_argument("args", nargs=argparse.REMAINDER)
    summary = sub.add_parser("summary")
    summary.add_argument("out")
    chosen = parser.parse_args()
    if chosen.what == "subnet":
        subnet()
    elif chosen.what == "lora":
        lora(chosen.variants)
    elif chosen.what == "profile":
        profile(chosen.out, chosen.args)
    else:
        summarize(chosen.out)


if __name__ == "__main__":
    main()
