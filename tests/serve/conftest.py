"""Fixtures for the server tests: a tiny Llama saved to disk, persona artifacts of every serving kind, and the
main test server (a ``traitlab serve`` subprocess)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from tests.helpers import save_model
from tests.serve.helpers import KEY, Server, digit_persona, persona_args, serve
from traitlab.methods import PersonaVector, PromptIntervention, ResidualSteering, WeightDelta
from traitlab.model import LoadedModel
from traitlab.model.tiny import tiny_model


@pytest.fixture
def one_torch_thread():
    """In-process engine tests run torch on one thread (and restore the setting): on a small shared machine
    two OpenMP threads can be many times slower than one."""
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


def readable(lm: LoadedModel) -> LoadedModel:
    """The random tiny model with its output rows zeroed for every token that is not one printable character
    (end-of-turn included), so greedy replies are readable ASCII and run to max_tokens (the page test needs
    text to look at)."""
    with torch.no_grad():
        for token in range(lm.model.lm_head.weight.shape[0]):
            text = lm.tokenizer.decode([token])
            if not (len(text) == 1 and text.isprintable() and text.isascii()):
                lm.model.lm_head.weight[token] = 0
    return LoadedModel(lm.model, lm.tokenizer, spec=lm.spec)  # fresh fingerprint


@pytest.fixture(scope="session")
def serve_assets(tmp_path_factory) -> dict[str, Path]:
    """The tiny model on disk and one artifact per serving kind (runtime, persona vector, weight-space,
    prompt, and a digit-boosting composite for the judge test)."""
    root = tmp_path_factory.mktemp("serve")
    lm = readable(tiny_model("llama"))
    model_dir = save_model(lm, root / "tiny-llama")
    fp = lm.fingerprint
    gen = torch.Generator().manual_seed(7)
    d = lm.hidden_size
    paths = {"model": model_dir, "logs": root}
    paths["warmth"] = ResidualSteering({2: torch.randn(d, generator=gen)}, trait="warmth", pole="high",
                                       fingerprint=fp).save(root / "warmth.tl.safetensors")
    table = torch.randn(lm.num_layers + 1, d, generator=gen)
    paths["bold"] = PersonaVector({"response_avg": table}, layers=[1], trait="boldness", pole="high",
                                  fingerprint=fp).save(root / "bold.tl.safetensors")
    down = "model.layers.1.mlp.down_proj.weight"
    weight = dict(lm.model.named_parameters())[down]
    paths["heavy"] = WeightDelta({down: 0.5 * torch.randn(weight.shape, generator=gen)}, trait="heaviness",
                                 fingerprint=fp).save(root / "heavy.tl.safetensors")
    paths["cheer"] = PromptIntervention("You are cheerful and upbeat.", trait="cheer").save(
        root / "cheer.tl.safetensors")
    paths["digits"] = digit_persona(lm).save(root / "digits.tl.safetensors")
    return paths


@pytest.fixture(scope="session")
def server(serve_assets) -> Server:
    """The main test server: four personas (all off by default), bearer key, small limits."""
    pytest.importorskip("fastapi")
    pytest.importorskip("uvicorn")
    args = persona_args(serve_assets, "warmth", "bold", "heavy", "cheer")
    args += ["--max-tokens", "48", "--max-prompt-tokens", "200", "--max-batch", "32", "--max-queue", "64"]
    with serve(serve_assets["model"], args, KEY, serve_assets["logs"]) as handle:
        yield handle
