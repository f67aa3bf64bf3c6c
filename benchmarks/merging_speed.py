"""Merging three vectors into a 135M-parameter-shaped Llama (issue 8): wall time and peak RSS of
``traitlab merge apply`` vs ``mergekit-yaml`` on the same merge (task arithmetic and TIES), each run in its own
process (peak RSS from ``os.wait4``), same machine, one run.

traitlab is run twice: with the three finetuned model folders as ``models`` (exactly mergekit's input) and with
the three personality-vector artifacts taken from them.

Run: ``python -m benchmarks.merging_speed [--workdir DIR]`` (needs ``mergekit`` from the dev extra; ~3 GB disk).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch
import yaml

from benchmarks.common import smol_shaped_llama


def run_measured(command: list[str]) -> tuple[float, float]:
    """(wall seconds, peak RSS in MiB) of a child process."""
    start = time.perf_counter()
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    _, status, usage = os.wait4(process.pid, 0)
    wall = time.perf_counter() - start
    if os.waitstatus_to_exitcode(status) != 0:
        raise RuntimeError(f"{command[:3]} failed: {process.stderr.read().decode()[-500:]}")
    return wall, usage.ru_maxrss / 1024


def prepare(root: Path) -> None:
    lm = smol_shaped_llama()
    lm.model.save_pretrained(root / "base")
    lm.tokenizer.save_pretrained(root / "base")
    for index in range(3):
        generator = torch.Generator().manual_seed(index)
        state = {name: tensor + torch.randn(tensor.shape, generator=generator) * 1e-3
                 for name, tensor in lm.model.state_dict().items()}
        lm.model.save_pretrained(root / f"tuned{index}", state_dict=state)
    from traitlab.methods.merging import vector_from_checkpoints

    for index in range(3):
        vector_from_checkpoints(root / "base", root / f"tuned{index}", root / f"phi{index}.safetensors")


def config(root: Path, method: str, sources: list[str]) -> dict:
    return {"merge_method": method, "base_model": str(root / "base"), "dtype": "float32",
            "models": [{"model": source, "parameters": {"weight": w, "density": 0.5}}
                       for source, w in zip(sources, [0.5, 0.3, 0.2], strict=True)]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--workdir", type=Path, default=None)
    args = parser.parse_args()
    root = args.workdir or Path(tempfile.mkdtemp(prefix="traitlab-merge-bench-"))
    if not (root / "phi2.safetensors").is_file():
        prepare(root)
    traitlab = [sys.executable, "-m", "traitlab", "--quiet", "merge", "apply"]
    mergekit = shutil.which("mergekit-yaml") or str(Path(sys.executable).parent / "mergekit-yaml")
    figures = {}
    for method in ("task_arithmetic", "ties"):
        folders = [str(root / f"tuned{i}") for i in range(3)]
        vectors = [str(root / f"phi{i}.safetensors") for i in range(3)]
        runs = {
            "mergekit": (config(root, method, folders), lambda c, o: [mergekit, str(c), str(o), "--lazy-unpickle",
                                                                      "--no-copy-tokenizer"]),
            "traitlab (model folders)": (config(root, method, folders), lambda c, o: [*traitlab, str(c), "-o", str(o)]),
            "traitlab (vectors)": (config(root, method, vectors), lambda c, o: [*traitlab, str(c), "-o", str(o)]),
        }
        for label, (merge, command) in runs.items():
            path, out = root / "merge.yaml", root / "out"
            path.write_text(yaml.safe_dump(merge))
            shutil.rmtree(out, ignore_errors=True)
            wall, rss = run_measured(command(path, out))
            figures[f"{method} / {label}"] = {"wall_s": round(wall, 2), "peak_rss_mib": round(rss, 1)}
            print(label, method, figures[f"{method} / {label}"], flush=True)
    print(json.dumps(figures, indent=2))


if __name__ == "__main__":
    main()
