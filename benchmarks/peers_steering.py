"""Peer side of ``persona_vectors_speed.py``: repeng and steering-vectors on the same checkpoint and pairs.

Runs in ``benchmarks/.venv-peers`` (transformers<5, numpy<2), or in traitlab's own environment with the peers
installed without dependencies into ``benchmarks/.venv-peers/lib-nodeps`` (``pip install --no-deps --target
benchmarks/.venv-peers/lib-nodeps repeng steering-vectors scikit-learn joblib threadpoolctl cloudpickle
narwhals``; repeng 0.4 names ``np.float_`` in an annotation, which NumPy 2 dropped, so it is aliased here before
the import). Reads a job JSON (model folder, layer, pairs as
full texts, rendered prompts, new tokens) and prints one JSON line of timings.
"""

import json
import sys
import time

import numpy as np
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer


def timed(fn, repeats=3):
    fn()
    best = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        best.append(time.perf_counter() - start)
    return sorted(best)[len(best) // 2]


def load_tokenizer(folder):
    """transformers < 5 does not know the ``TokenizersBackend`` class that transformers 5 writes (the organism's
    folder): read its ``tokenizer.json`` as a fast tokenizer with the same special tokens."""
    try:
        return AutoTokenizer.from_pretrained(folder)
    except ValueError:
        from pathlib import Path

        from transformers import PreTrainedTokenizerFast

        config = json.loads((Path(folder) / "tokenizer_config.json").read_text())
        return PreTrainedTokenizerFast(tokenizer_file=str(Path(folder) / "tokenizer.json"),
                                       eos_token=config.get("eos_token"), pad_token=config.get("pad_token"))


def main():
    with open(sys.argv[1]) as handle:
        job = json.load(handle)
    torch.set_num_threads(int(job.get("threads", 2)))
    tokenizer = load_tokenizer(job["model"])
    tokenizer.padding_side = "left"
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    model = AutoModelForCausalLM.from_pretrained(job["model"], torch_dtype=torch.float32).eval()
    positives, negatives = job["pairs"]
    layer, new_tokens = job["layer"], job["new_tokens"]
    batch = tokenizer(job["prompts"], return_tensors="pt", padding=True, add_special_tokens=False,
                      return_token_type_ids=False)
    generate = dict(max_new_tokens=new_tokens, min_new_tokens=new_tokens, do_sample=False,
                    pad_token_id=tokenizer.pad_token_id)
    tokens = len(job["prompts"]) * new_tokens
    figures = {}

    from steering_vectors import train_steering_vector

    samples = list(zip(positives, negatives, strict=True))
    box = {}

    def sv_train():
        box["sv"] = train_steering_vector(model, tokenizer, samples, layers=None, read_token_index=-1,
                                          show_progress=False, batch_size=64)

    sv_extract = timed(sv_train, repeats=1)
    single = train_steering_vector(model, tokenizer, samples, layers=[layer - 1], read_token_index=-1,
                                   show_progress=False, batch_size=64)

    def sv_generate():
        with single.apply(model, multiplier=1.0), torch.no_grad():
            model.generate(**batch, **generate)

    figures["steering_vectors"] = {"extract_s": round(sv_extract, 3),
                                   "steered_tokens_per_s": round(tokens / timed(sv_generate), 1)}

    if not hasattr(np, "float_"):  # repeng 0.4's annotations name the NumPy 1 alias
        np.float_ = np.float64
    from repeng import ControlModel, ControlVector, DatasetEntry

    dataset = [DatasetEntry(positive=p, negative=n) for p, n in samples]
    wrapped = ControlModel(model, [layer - 1])

    def rp_train():
        box["rp"] = ControlVector.train(wrapped, tokenizer, dataset, batch_size=64, method="pca_diff")

    rp_extract = timed(rp_train, repeats=1)
    wrapped.set_control(box["rp"], 1.0)

    def rp_generate():
        with torch.no_grad():
            wrapped.generate(**batch, **generate)

    figures["repeng"] = {"extract_s": round(rp_extract, 3),
                         "steered_tokens_per_s": round(tokens / timed(rp_generate), 1)}
    wrapped.reset()
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
