"""traitlab's merge vs mergekit's on a real model's tensors (issue 23): task_arithmetic, ties, dare_linear and
dare_ties, three "finetunes" of the base (``benchmarks.merging_speed.prepare``: base + seeded bfloat16-rounded
Gaussian deltas, so magnitudes tie as in real finetunes), weights 0.5/0.3/0.2, density 0.5, both tools in this
process. DARE's random drops are shared: mergekit's ``sparsify`` is handed traitlab's mask of each delta, and
traitlab runs with ``rescale: l1`` (mergekit's rescaling). Output: max |traitlab − mergekit| over every tensor
of the written checkpoints, per method (target ≤ 1e-6); with tied embeddings, which tensors each tool wrote.

Run: ``python -m benchmarks.merging_numerics --model smollm2-135m-instruct [--workdir DIR] [--out FILE]``
(needs ``mergekit``; ~5 min on 2 cores).
"""

from __future__ import annotations

import argparse
import hashlib
import shutil
import tempfile
import time
from pathlib import Path

import torch

from benchmarks.common import save_results
from benchmarks.merging_speed import prepare

METHODS = ("task_arithmetic", "ties", "dare_linear", "dare_ties")
WEIGHTS = (0.5, 0.3, 0.2)


def compare(mine: Path, theirs: Path) -> dict:
    """Max |difference| over mergekit's tensors; a tensor only mergekit wrote (a tied ``lm_head.weight``) is
    compared with the one it is tied to."""
    from traitlab.checkpoints import CheckpointReader

    left, right = CheckpointReader(mine), CheckpointReader(theirs)
    mine_names, their_names = set(left.keys()), set(right.keys())
    worst, tied = 0.0, []
    for name in sorted(their_names):
        source = name
        if name not in mine_names and name == "lm_head.weight":
            source = "model.embed_tokens.weight"
            tied.append(name)
        worst = max(worst, float((left.get(source).float() - right.get(name).float()).abs().max()))
    return {"max_abs_diff": worst, "tensors": len(their_names), "only_traitlab": sorted(mine_names - their_names),
            "only_mergekit_compared_as_tied": tied}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--model", default="smollm2-135m-instruct", help="model spec, or 'random'")
    parser.add_argument("--workdir", type=Path, default=None)
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/merging_numerics.json"))
    parser.add_argument("--methods", nargs="+", default=list(METHODS))
    args = parser.parse_args()
    from mergekit.config import MergeConfiguration
    from mergekit.merge import MergeOptions, run_merge
    from mergekit.merge_methods import generalized_task_arithmetic as gta
    from mergekit.sparsify import RescaleNorm, SparsificationMethod, rescaled_masked_tensor

    from traitlab.checkpoints import CheckpointReader
    from traitlab.methods.merge_math import dare_mask
    from traitlab.methods.merging import MergeConfig, merge_to_checkpoint

    root = args.workdir or Path(tempfile.mkdtemp(prefix="traitlab-merge-numerics-"))
    root.mkdir(parents=True, exist_ok=True)
    if not (root / "phi2.safetensors").is_file():
        prepare(root, args.model)
    density, seed = 0.5, 4
    masks: dict[str, torch.Tensor] = {}
    if any(m.startswith("dare") for m in args.methods):
        base = CheckpointReader(root / "base")
        for index in range(3):
            tuned = CheckpointReader(root / f"tuned{index}")
            for name in tuned.files:
                delta = tuned.get(name).float() - base.get(name).float()
                masks[hashlib.sha256(delta.numpy().tobytes()).hexdigest()] = dare_mask(delta.shape, density, seed,
                                                                                     name, index)
    original = gta.sparsify

    def shared_masks(tensor, density, method, rescale_norm=None, **kwargs):
        if method != SparsificationMethod.random:
            return original(tensor, density=density, method=method, rescale_norm=rescale_norm, **kwargs)
        keep = masks[hashlib.sha256(tensor.detach().numpy().tobytes()).hexdigest()]
        return rescaled_masked_tensor(tensor, keep.to(tensor.dtype), RescaleNorm.l1 if rescale_norm else None)

    gta.sparsify = shared_masks
    figures: dict = {"model": args.model, "weights": WEIGHTS, "density": density}
    models = [{"model": str(root / f"tuned{i}"), "parameters": {"weight": w, "density": density}}
              for i, w in enumerate(WEIGHTS)]
    for method in args.methods:
        theirs, mine = root / f"mergekit-{method}", root / f"traitlab-{method}"
        for folder in (theirs, mine):
            shutil.rmtree(folder, ignore_errors=True)
        start = time.perf_counter()
        run_merge(MergeConfiguration.model_validate({"merge_method": method, "base_model": str(root / "base"),
                                                     "dtype": "float32", "models": models}),
                  str(theirs), MergeOptions(copy_tokenizer=False, quiet=True, lazy_unpickle=True))
        their_s = time.perf_counter() - start
        ours = {"merge_method": method, "base_model": str(root / "base"), "models": models, "seed": seed,
                "dtype": "float32", "parameters": {"rescale": "l1" if method.startswith("dare") else "inverse"}}
        start = time.perf_counter()
        merge_to_checkpoint(MergeConfig.model_validate(ours), mine)
        our_s = time.perf_counter() - start
        figures[method] = {**compare(mine, theirs), "mergekit_s": round(their_s, 1), "traitlab_s": round(our_s, 1)}
        print(method, figures[method], flush=True)
        shutil.rmtree(theirs)
        shutil.rmtree(mine)
        save_results(figures, args.out)


if __name__ == "__main__":
    main()
