"""Does a cheaper personality-vector finetune still move the pole? The demo's fit (``data/demo.yaml``'s
``personality_vector`` params: 12 extraction questions × 2 self-distilled replies, LoRA r 8 on every linear
module, 2 epochs, lr 1e-3, batch 8) of both extraversion poles on SmolLM2-135M-Instruct, per variant
(``fp32``, ``bf16``: autocast, ``bf16-upN``: adapters on the upper N blocks only), measured on the project's
convention rather than the quick demo's 4 answers a cell:

- the 40 held-out questions (``benchmarks.persona_vectors_smollm2.question_sets``), greedy, 48 new tokens,
  θ_base + α·φ at α = 1 (the demo's fitted strength; ``--alphas 1 2`` adds the demo's sweep point 2) against
  α = 0;
- the trait judge: the offline embedding judge calibrated on SmolLM2's unsteered replies, oriented toward the
  pole; the one-sided paired t-test of the per-question shift; the pole's short prompt (its first paraphrase)
  on the same questions as the reference shift;
- coherence: the Gemma-3-270m reference-LM judge on the first 16 questions, as a ratio to α = 0 (guard ≥ 0.9);
- CPU seconds of each finetune (``time.process_time``, one thread) and the cosine of each variant's φ with the
  fp32 one (float64); with ``--reference DIR`` also whether the fp32 φ is bit for bit the artifact an earlier
  demo run stored under ``DIR/personality_vector/<pole>/`` (the same data, the code before ``precision``).

The self-distilled data comes from ``benchmarks.demo_fits_cost lora`` (``benchmarks/results/
demo_lora_data-<pole>.json``; generated here when absent). Generations and coherence scores are cached in
``--work``.

    OMP_NUM_THREADS=1 python -m benchmarks.demo_lora_effect fp32 bf16 bf16-up16 --reference RUN/work
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import json
import time
from pathlib import Path
from typing import Any

import torch

from benchmarks.common import save_results
from benchmarks.demo_fits_cost import variant_settings
from benchmarks.persona_vectors_smollm2 import Judges, question_sets
from benchmarks.personality_vectors_smollm2 import paired_t

MAX_NEW_TOKENS = 48
N_COHERENCE = 16
POLES = ("extraversion_high", "extraversion_low")


def demo_params() -> dict[str, Any]:
    import yaml

    from traitlab.evaluation.demo import DEMO_FILE

    return next(m["params"] for m in yaml.safe_load(DEMO_FILE.read_text())["methods"]
                if m["name"] == "personality_vector")


def data_for(lm: Any, pole: str, params: dict[str, Any]) -> list:
    from traitlab.finetune.personality_data import self_distill
    from traitlab.traits import load_trait

    cache = Path("benchmarks/results") / f"demo_lora_data-{pole}.json"
    if cache.is_file():
        return json.loads(cache.read_text())
    spec = load_trait(pole)
    spec = spec.model_copy(update={"questions": list(spec.questions[:params["n_questions"]])})
    data = self_distill(lm, spec, params["n_per_question"], 1.0, params["max_new_tokens"])
    cache.parent.mkdir(parents=True, exist_ok=True)
    cache.write_text(json.dumps(data))
    return data


def flat(deltas: dict[str, torch.Tensor], sizes: dict[str, int]) -> torch.Tensor:
    """The deltas as one float64 vector over ``sizes``' names (a parameter a vector lacks counts as zero)."""
    return torch.cat([deltas[n].flatten().double() if n in deltas else torch.zeros(size, dtype=torch.float64)
                      for n, size in sorted(sizes.items())])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("variants", nargs="+")
    parser.add_argument("--reference", type=Path, default=None)
    parser.add_argument("--alphas", type=float, nargs="+", default=[1.0], help="strengths α to evaluate")
    parser.add_argument("--work", type=Path, default=Path("out/demo_lora_effect"))
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/demo_lora_effect.json"))
    args = parser.parse_args()

    from traitlab.finetune import finetune
    from traitlab.methods.merging import vector_from_models
    from traitlab.model import load_model
    from traitlab.progress import set_quiet
    from traitlab.registry import load_intervention
    from traitlab.traits import load_trait

    torch.set_num_threads(1)
    set_quiet(True)
    args.work.mkdir(parents=True, exist_ok=True)
    params = demo_params()
    lm = load_model("smollm2-135m-instruct", device="cpu", dtype=torch.float32)
    held_out: list[str] = question_sets()["held_out"]
    judges = Judges(lm, args.work, MAX_NEW_TOKENS)
    cache_path = args.work / f"generations_{MAX_NEW_TOKENS}.jsonl"
    cache: dict[str, str] = {}
    if cache_path.is_file():
        for line in cache_path.read_text().splitlines():
            with contextlib.suppress(json.JSONDecodeError):
                entry = json.loads(line)
                cache[entry["key"]] = entry["text"]

    def generate(tag: str, intervention: Any, system: str | None = None) -> list[str]:
        keys = [hashlib.sha1(json.dumps([tag, q, system, MAX_NEW_TOKENS]).encode()).hexdigest() for q in held_out]
        if any(k not in cache for k in keys):
            with intervention.applied(lm) if intervention is not None else contextlib.nullcontext():
                texts = lm.generate_chat(held_out, [system] * len(held_out), max_new_tokens=MAX_NEW_TOKENS,
                                         batch_size=40, progress=False).texts
            with cache_path.open("a") as handle:
                for key, text in zip(keys, texts, strict=True):
                    cache[key] = text
                    handle.write(json.dumps({"key": key, "text": text}) + "\n")
        return [cache[k] for k in keys]

    results: dict[str, Any] = {"params": params, "variants": args.variants, "poles": {}}
    base_texts = generate("base", None)
    base_c = judges.coherences(held_out[:N_COHERENCE], base_texts[:N_COHERENCE])
    for pole in POLES:
        trait, side = pole.rsplit("_", 1)
        oriented = (lambda s: s) if side == "high" else (lambda s: 100.0 - s)
        base = oriented(judges.scores(trait, held_out, base_texts))
        prompt = load_trait(pole).short_instruction[0].pos
        prompted_texts = generate(f"prompt:{prompt}", None, prompt)
        prompted = oriented(judges.scores(trait, held_out, prompted_texts))
        prompt_c = judges.coherences(held_out[:N_COHERENCE], prompted_texts[:N_COHERENCE])
        record: dict[str, Any] = {"base_score": round(float(base.mean()), 2),
                                  "prompt": {"text": prompt, **paired_t(prompted - base),
                                             "coherence_ratio": round(float(prompt_c.mean() / base_c.mean()), 3)},
                                  "variants": {}}
        print(f"{pole}: base {base.mean():.2f}, prompt {record['prompt']}", flush=True)
        data = data_for(lm, pole, params)
        reference: dict[str, torch.Tensor] | None = None
        for variant in args.variants:
            settings = variant_settings(variant, params, lm.num_layers)
            start = time.process_time()
            tuned = finetune(lm, data, settings, progress=False)
            cpu = time.process_time() - start
            phi = vector_from_models(lm, tuned, trait, side)
            del tuned
            entry: dict[str, Any] = {"finetune_cpu_s": round(cpu, 1), "tensors": len(phi.deltas),
                                     "finite": all(bool(torch.isfinite(d).all()) for d in phi.deltas.values()),
                                     "dtype": str(next(iter(phi.deltas.values())).dtype)}
            if reference is None:
                reference = dict(phi.deltas)
                if args.reference is not None:
                    stored = sorted((args.reference / "personality_vector" / pole).glob("*.tl.safetensors"))
                    if stored:
                        old = load_intervention(stored[0], lm)
                        entry["bit_identical_to_reference"] = old.deltas.keys() == phi.deltas.keys() and all(
                            torch.equal(old.deltas[n], phi.deltas[n]) for n in phi.deltas)
            else:
                sizes = {n: t.numel() for n, t in (reference | phi.deltas).items()}
                a, b = flat(reference, sizes), flat(phi.deltas, sizes)
                entry["cosine_to_first"] = round(float(a @ b / (a.norm() * b.norm())), 4)
            digest = hashlib.sha1(b"".join(phi.deltas[n].flatten()[:4096].numpy().tobytes()
                                           for n in sorted(phi.deltas))).hexdigest()[:12]
            for alpha in args.alphas:
                texts = generate(f"{pole}:{variant}:{digest}:{alpha}", phi.scaled(alpha))
                scores = oriented(judges.scores(trait, held_out, texts))
                coherence = judges.coherences(held_out[:N_COHERENCE], texts[:N_COHERENCE])
                at = {"score": round(float(scores.mean()), 2), **paired_t(scores - base),
                      "coherence_ratio": round(float(coherence.mean() / base_c.mean()), 3)}
                entry.update(at if alpha == 1.0 else {f"alpha_{alpha}": at})
            record["variants"][variant] = entry
            print(f"{pole} {variant}: {entry}", flush=True)
            results["poles"][pole] = record
            save_results(results, args.out)


if __name__ == "__main__":
    main()
