"""Helpers of the persona-subnetwork tests: a small trait spec with short prompts (tiny byte-level models have a
256-token context) and a hash of all weights."""

from __future__ import annotations

import hashlib

import torch

SMALL_SPEC = {
    "name": "chatty_high", "description": "test spec", "trait": "extraversion", "pole": "high",
    "instruction": [{"pos": "Be loud.", "neg": "Be shy."}, {"pos": "Love parties.", "neg": "Stay home."}],
    "questions": ["Plans?", "Weekend?", "Friends?"],
    "eval_questions": ["Party?"],
    "eval_prompt": "Q: {question} A: {answer} Score 0-100.",
}


def weights_hash(model: torch.nn.Module) -> str:
    digest = hashlib.sha256()
    for name, tensor in sorted(model.state_dict().items()):
        digest.update(name.encode())
        digest.update(tensor.detach().contiguous().view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()
