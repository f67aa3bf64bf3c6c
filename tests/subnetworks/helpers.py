"""Helpers of the persona-subnetwork tests: a small trait spec with short prompts (tiny byte-level models have a
256-token context). The weight hash is in ``tests.helpers``."""

from __future__ import annotations

SMALL_SPEC = {
    "name": "chatty_high", "description": "test spec", "trait": "extraversion", "pole": "high",
    "instruction": [{"pos": "Be loud.", "neg": "Be shy."}, {"pos": "Love parties.", "neg": "Stay home."}],
    "questions": ["Plans?", "Weekend?", "Friends?"],
    "eval_questions": ["Party?"],
    "eval_prompt": "Q: {question} A: {answer} Score 0-100.",
}


