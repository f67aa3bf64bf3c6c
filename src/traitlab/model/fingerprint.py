"""Model fingerprint stored in every artifact, so loading an artifact against another model is an error.

The hash covers strided samples (4096 values each) of the token embeddings and of the first and last blocks'
down-projections, reduced to a form every load dtype keeps: the sign of each sampled value, with values under
fp16's smallest normal (2^-14) counted as zero. Rounding to bfloat16 (the former form) does not survive float16:
fp16 rounding of the weights changes their bf16 values, so the same checkpoint got another hash under
``--dtype float16``. The former hash is kept as ``legacy_hash`` so artifacts saved before still load.
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
    legacy_hash: str | None = None  # the former bf16-rounded hash, so older artifacts still match

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Fingerprint:
        return cls(**{f.name: data[f.name] for f in dataclasses.fields(cls) if f.name in data})

    def mismatches(self, other: Fingerprint) -> list[str]:
        """Names and values of the fields that differ, e.g. ``hidden_size 576 != 64``."""
        out = [f"{f.name} {getattr(self, f.name)} != {getattr(other, f.name)}"
               for f in dataclasses.fields(self) if f.name not in ("weights_hash", "legacy_hash")
               and getattr(self, f.name) != getattr(other, f.name)]
        mine, theirs = {self.weights_hash, self.legacy_hash} - {None}, {other.weights_hash, other.legacy_hash} - {None}
        if not mine & theirs:
            out.append(f"weights_hash {self.weights_hash} != {other.weights_hash}")
        return out


TINY = 2.0 ** -14  # float16's smallest normal: below it fp16 flushes toward zero


def _sample(tensor: torch.Tensor) -> torch.Tensor:
    flat = tensor.detach().reshape(-1)
    stride = max(1, flat.numel() // SAMPLE)
    return flat[::stride][:SAMPLE].to("cpu", torch.float32)


def _sample_bytes(tensor: torch.Tensor) -> bytes:
    """The dtype-robust form: sign of each sample, 0 for magnitudes under ``TINY``."""
    sample = _sample(tensor)
    signs = torch.sign(sample) * (sample.abs() >= TINY)
    return signs.to(torch.int8).numpy().tobytes()


def _legacy_bytes(tensor: torch.Tensor) -> bytes:
    return _sample(tensor).to(torch.bfloat16).view(torch.int16).numpy().tobytes()


def fingerprint_from_tensors(model_type: str, hidden_size: int, num_layers: int,
                             tensors: tuple[torch.Tensor, torch.Tensor, torch.Tensor]) -> Fingerprint:
    """Fingerprint from the embeddings and the first and last blocks' down-projection weights."""
    digest, legacy = hashlib.sha256(b"sign-v2"), hashlib.sha256()
    for tensor in tensors:
        digest.update(_sample_bytes(tensor))
        legacy.update(_legacy_bytes(tensor))
    return Fingerprint(model_type=model_type, hidden_size=int(hidden_size), num_layers=num_layers,
                       vocab_size=int(tensors[0].shape[0]), weights_hash=digest.hexdigest()[:16],
                       legacy_hash=legacy.hexdigest()[:16])


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
