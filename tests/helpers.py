"""Helpers shared by tests (and benchmarks): saving a model as a loadable folder, hashing all its weights."""

from __future__ import annotations

import hashlib
from pathlib import Path

import torch

from traitlab.model import LoadedModel


def save_model(lm: LoadedModel, folder: Path) -> Path:
    """Write ``lm``'s weights and tokenizer to ``folder``, a path ``load_model`` and the CLI accept."""
    lm.model.save_pretrained(folder)
    lm.tokenizer.save_pretrained(folder)
    return folder


def weights_hash(model: torch.nn.Module) -> str:
    """SHA-256 over every parameter and buffer, by name: equal hashes mean bit-identical weights."""
    digest = hashlib.sha256()
    for name, tensor in sorted(model.state_dict().items()):
        digest.update(name.encode())
        digest.update(tensor.detach().contiguous().view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()
