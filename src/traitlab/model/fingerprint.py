"""Model fingerprint stored in every artifact, so loading an artifact against another model is an error.

The hash covers strided samples (4096 values each) of the token embeddings and of the first and last blocks'
down-projections, rounded to bfloat16 so the same checkpoint loaded in fp32, bf16 or fp16 matches.
"""

from __future__ import annotations

import dataclasses
import hashlib
from typing import Any

import torch
from torch import nn

from traitlab.model.family import Family, get_path

SAMPLE = 4096


@dataclasses.dataclass(frozen=True)
class Fingerprint:
    model_type: str
    hidden_size: int
    num_layers: int
    vocab_size: int
    weights_hash: str

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Fingerprint:
        return cls(**{f.name: data[f.name] for f in dataclasses.fields(cls)})

    def mismatches(self, other: Fingerprint) -> list[str]:
        """Names and values of the fields that differ, e.g. ``hidden_size 576 != 64``."""
        return [f"{f.name} {getattr(self, f.name)} != {getattr(other, f.name)}"
                for f in dataclasses.fields(self) if getattr(self, f.name) != getattr(other, f.name)]


def _sample_bytes(tensor: torch.Tensor) -> bytes:
    flat = tensor.detach().reshape(-1)
    stride = max(1, flat.numel() // SAMPLE)
    sample = flat[::stride][:SAMPLE].to("cpu", torch.bfloat16)
    return sample.view(torch.int16).numpy().tobytes()


def fingerprint_from_tensors(model_type: str, hidden_size: int, num_layers: int,
                             tensors: tuple[torch.Tensor, torch.Tensor, torch.Tensor]) -> Fingerprint:
    """Fingerprint from the embeddings and the first and last blocks' down-projection weights."""
    digest = hashlib.sha256()
    for tensor in tensors:
        digest.update(_sample_bytes(tensor))
    return Fingerprint(model_type=model_type, hidden_size=int(hidden_size), num_layers=num_layers,
                       vocab_size=int(tensors[0].shape[0]), weights_hash=digest.hexdigest()[:16])


def fingerprint_names(family: Family, num_layers: int) -> tuple[str, str, str]:
    """State-dict names of the tensors the fingerprint hashes."""
    return (f"{family.embed}.weight", f"{family.layers}.0.{family.down}.weight",
            f"{family.layers}.{num_layers - 1}.{family.down}.weight")


def compute_fingerprint(model: nn.Module, family: Family) -> Fingerprint:
    config = model.config.get_text_config()
    blocks = get_path(model, family.layers)
    tensors = (get_path(model, family.embed).weight, get_path(blocks[0], family.down).weight,
               get_path(blocks[-1], family.down).weight)
    return fingerprint_from_tensors(config.model_type, config.hidden_size, len(blocks), tensors)
