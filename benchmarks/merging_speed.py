"""Merging three vectors into a 135M-parameter model (issues 8 and 23): wall time and peak RSS of
``traitlab merge apply`` vs ``mergekit-yaml`` on the same merge (task arithmetic and TIES), each run in its own
child process (peak RSS from ``os.wait4``), same machine, one run each, the two tools alternating.

Inputs: the base model (``--model``: a model spec such as ``smollm2-135m-instruct``, or ``random`` for a
random-init Llama of SmolLM2's shape) and three "finetunes" of it, each the base plus a seeded Gaussian delta
(σ = 1e-3) rounded to bfloat16 (so magnitudes tie, as deltas of real finetunes do), saved as float32 model
folders. traitlab is run twice: with the three model folders as ``models`` (exactly mergekit's input) and with the
three personality-vector artifacts taken from them. The two tools' outputs are compared tensor by tensor (max
|difference|; DARE's random drops differ between the tools, so it is compared in
``benchmarks/merging_numerics.py`` with shared masks instead).

With ``--vectors A B C`` the three finetunes are instead base + φ of three real personality vectors (LoRA deltas:
float32, no ties, only the adapted matrices change).

Run: ``python -m benchmarks.merging_speed --model smollm2-135m-instruct [--workdir DIR] [--out FILE]``
(needs ``mergekit`` from the dev extra; ~3 GB disk, ~5 min).
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch
import yaml

from benchmarks.common import save_results


def run_measured(command: list[str]) -> tuple[float, float]:
    """(wall seconds, peak RSS in MiB) of a child process."""
    start = time.perf_counter()
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    _, status, usage = os.wait4(process.pid, 0)
    wall = time.perf_counter() - start
    if os.waitstatus_to_exitcode(status) != 0:
        raise RuntimeError(f"{command[:3]} failed: {process.stderr.read().decode()[-500:]}")
    return wall, usage.ru_maxrss / 1024


def prepare(root: Path, model: str, copies: int = 3, vectors: list[Path] | None = None) -> None:
    """``root/base``, ``root/tuned{i}`` (float32 folders) and ``root/phi{i}.safetensors``; with ``vectors``
    (personality-vector artifacts of ``model``), tuned{i} = base + φ_i instead of the random deltas."""
    from traitlab.methods.merging import vector_from_checkpoints
    from traitlab.model import load_model

    if model == "random":
        from benchmarks.common import smol_shaped_llama

        lm = smol_shaped_llama()
    else:
        lm = load_model(model, device="cpu", dtype=torch.float32)
    lm.model.save_pretrained(root / "base")
    lm.tokenizer.save_pretrained(root / "base")
    state = {name: tensor.float() for name, tensor in lm.model.state_dict().items()
             if not name.startswith("lm_head") or not lm.model.config.tie_word_embeddings}
    for index in range(copies):
        generator = torch.Generator().manual_seed(index)
        if vectors:
            from traitlab.methods.merging import load_vector

            deltas = load_vector(vectors[index]).deltas
            tuned = {name: tensor + deltas[name] if name in deltas else tensor for name, tensor in state.items()}
        else:
            tuned = {name: tensor + (torch.randn(tensor.shape, generator=generator) * 1e-3).bfloat16().float()
                     for name, tensor in state.items()}
        lm.model.save_pretrained(root / f"tuned{index}", state_dict=tuned)
        vector_from_checkpoints(root / "base", root / f"tuned{index}", root / f"phi{index}.safetensors")


def config(root: Path, method: str, sources: list[str]) -> dict:
    return {"merge_method": method, "base_model": str(root / "base"), "dtype": "float32",
            "models": [{"model": source, "parameters": {"weight": w, "density": 0.5}}
                       for source, w in zip(sources, [0.5, 0.3, 0.2], strict=True)]}


def max_difference(a: Path, b: Path) -> float:
    """Largest |difference| over the tensors of two model folders (the same names required)."""
    from traitlab.checkpoints import CheckpointReader

    left, right = CheckpointReader(a), CheckpointReader(b)
    names = left.keys()
    if set(names) != set(right.keys()):
        raise RuntimeError(f"different tensors: {sorted(set(names) ^ set(right.keys()))[:4]}")
    return max(float((left.get(n).float() - right.get(n).float()).abs().max()) for n in names)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--model", default="smollm2-135m-instruct", help="model spec, or 'random'")
    parser.add_argument("--workdir", type=Path, default=None)
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/merging_speed.json"))
    parser.add_argument("--methods", nargs="+", default=["task_arithmetic", "ties"])
    parser.add_argument("--vectors", nargs=3, type=Path, default=None,
                        help="three personality vectors of --model: the finetunes are base + φ (real deltas)")
    args = parser.parse_args()
    root = args.workdir or Path(tempfile.mkdtemp(prefix="traitlab-merge-bench-"))
    root.mkdir(parents=True, exist_ok=True)
    if not (root / "phi2.safetensors").is_file():
        # in a child process: a forked child's peak RSS starts at its parent's, so the parent stays small
        import multiprocessing

        child = multiprocessing.get_context("spawn").Process(target=prepare, args=(root, args.model),
                                                             kwargs={"vectors": args.vectors})
        child.start()
        child.join()
        if child.exitcode != 0:
            raise RuntimeError("preparing the inputs failed")
    traitlab = [sys.executable, "-m", "traitlab", "--quiet", "merge", "apply"]
    mergekit = shutil.which("mergekit-yaml") or str(Path(sys.executable).parent / "mergekit-yaml")
    folders = [str(root / f"tuned{i}") for i in range(3)]
    vectors = [str(root / f"phi{i}.safetensors") for i in range(3)]
    figures: dict = {"model": args.model, "threads": torch.get_num_threads(),
                     "omp_num_threads": os.environ.get("OMP_NUM_THREADS")}
    for method in args.methods:
        runs = {
            "mergekit": (config(root, method, folders), lambda c, o: [mergekit, str(c), str(o), "--lazy-unpickle",
                                                                      "--no-copy-tokenizer"]),
            "traitlab (model folders)": (config(root, method, folders), lambda c, o: [*traitlab, str(c), "-o", str(o)]),
            "traitlab (vectors)": (config(root, method, vectors), lambda c, o: [*traitlab, str(c), "-o", str(o)]),
        }
        for label, (merge, command) in runs.items():
            path, out = root / "merge.yaml", root / f"out-{label.split()[0]}-{len(label)}"
            path.write_text(yaml.safe_dump(merge))
            shutil.rmtree(out, ignore_errors=True)
            wall, rss = run_measured(command(path, out))
            figures[f"{method} / {label}"] = {"wall_s": round(wall, 2), "peak_rss_mib": round(rss, 1)}
            print(label, method, figures[f"{method} / {label}"], flush=True)
        outs = sorted(root.glob("out-*"))
        theirs = next(o for o in outs if o.name.startswith("out-mergekit"))
        for mine in (o for o in outs if o != theirs):
            figures[f"{method} / max |traitlab − mergekit| ({mine.name})"] = max_difference(mine, theirs)
        print(method, {k: v for k, v in figures.items() if k.startswith(method) and "max" in k}, flush=True)
        for o in outs:
            shutil.rmtree(o)
        save_results(figures, args.out)


if __name__ == "__main__":
    main()
