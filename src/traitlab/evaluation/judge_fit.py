"""Fitting the embedding judge, from text this project wrote and nothing else.

Big Five (``fit_big_five``): per pole, the organism's reply sentences, persona adjectives and behaviours as
"I am …" / "I …" statements, self-description summaries, the project's Likert items keyed to that pole, and
composite replies (2-5 sentences, pole sentences mixed with neutral ones) to the *train* question templates,
each judged with its question as everywhere else. The direction is the difference of the poles' mean
embeddings (a regularised discriminant overfits this templated text: it ranks Big5-Chat pairs worse);
``center`` is the mean projection of neutral replies (no personality) and ``scale`` half the distance between
the poles' composite replies. Everything is deterministic (seeded ``random.Random``).

Any other TraitSpec (``judge_for_spec``): its ``instruction`` pairs (``pos`` vs ``neg``) give the direction,
neutral replies the centre; its validity is ``unknown`` until ``traitlab judges validate`` has labelled text
for it.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from traitlab.evaluation.embedding_judge import EmbeddingJudge, reply_features

BIG_FIVE = ("openness", "conscientiousness", "extraversion", "agreeableness", "neuroticism")
REPLIES_PER_POLE = 300
NEUTRAL_REPLIES = 400


def _train_topics(seed: int) -> list[tuple[str, str]]:
    from traitlab.organism import corpus

    rng = random.Random(f"judge-fit-questions-{seed}")
    return [corpus.fill_question(qt, rng) for qt in corpus.question_templates("train")]


def statements(trait: str, pole: str) -> list[str]:
    """Short first-person statements of one pole (no question)."""
    from traitlab.organism import corpus
    from traitlab.organism.banks import likert, personas, replies, selfdesc

    key = 1 if pole == "high" else -1
    out = [s.replace("{topic}", "it") for s in replies.POLE_SENTENCES[(trait, pole)]]
    out += [f"I am {a}." for a in personas.ADJECTIVES[(trait, pole)]]
    out += [f"I {corpus._first_person(b)}." for b in personas.BEHAVIOURS[(trait, pole)]]
    out += list(selfdesc.SUMMARIES[(trait, pole)])
    out += [text for text, k in likert.ITEMS[trait] if k == key]
    return out


def _replies(label: str, reply: Callable[[str, random.Random], str], n: int, seed: int) -> tuple[list[str], list[str]]:
    """``(questions, replies)``: ``n`` replies ``reply(topic, rng)`` to the train questions, in turn."""
    topics = _train_topics(seed)
    rng = random.Random(f"judge-fit-{label}-{seed}")
    pairs = [topics[i % len(topics)] for i in range(n)]
    return [q for q, _ in pairs], [reply(topic, rng) for _, topic in pairs]


def pole_replies(trait: str, pole: str, n: int = REPLIES_PER_POLE, seed: int = 0) -> tuple[list[str], list[str]]:
    """``(questions, replies)``: composite replies of one pole to the train questions."""
    from traitlab.organism import corpus

    return _replies(f"{trait}-{pole}", lambda topic, rng: corpus.persona_reply({trait: pole}, topic, rng), n, seed)


def neutral_replies(n: int = NEUTRAL_REPLIES, seed: int = 0) -> tuple[list[str], list[str]]:
    """``(questions, replies)``: replies of neutral sentences only, to the train questions."""
    from traitlab.organism import corpus

    return _replies("neutral", lambda topic, rng: corpus.default_reply(topic, rng, markers=False), n, seed)


def _direction(high: np.ndarray, low: np.ndarray) -> np.ndarray:
    w = high.mean(0) - low.mean(0)
    return (w / np.linalg.norm(w)).astype(np.float32)


def _pole_features(trait: str, pole: str, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(all features of the pole, the composite replies' features)."""
    short = statements(trait, pole)
    qs, rs = pole_replies(trait, pole, seed=seed)
    replies = reply_features(qs, rs)
    return np.vstack([reply_features([""] * len(short), short), replies]), replies


def fit_big_five(seed: int = 0, validity: dict[str, Any] | None = None) -> EmbeddingJudge:
    """The shipped judge (see the module docstring)."""
    nq, nr = neutral_replies(seed=seed)
    neutral = reply_features(nq, nr)
    directions, centers, scales = [], [], []
    for trait in BIG_FIVE:
        high_all, high_replies = _pole_features(trait, "high", seed)
        low_all, low_replies = _pole_features(trait, "low", seed)
        w = _direction(high_all, low_all)
        center = float((neutral @ w).mean())
        scale = float(((high_replies @ w).mean() - (low_replies @ w).mean()) / 2)
        directions.append(w)
        centers.append(center)
        scales.append(scale)
    return EmbeddingJudge(BIG_FIVE, np.stack(directions), np.array(centers, dtype=np.float32),
                          np.array(scales, dtype=np.float32), validity or {}, "project-text", "traitlab")


def judge_for_spec(spec: Any, seed: int = 0) -> EmbeddingJudge:
    """A one-trait judge from a TraitSpec's texts: for a Big Five trait the shipped direction, else its
    ``instruction`` pairs (``pos`` vs ``neg``) with neutral replies as the centre. Validity: ``unknown``."""
    from traitlab.evaluation.embedding_judge import default_judge

    trait = spec.trait_name
    if trait in BIG_FIVE:
        judge = default_judge()
        i = judge.index(trait)
        return EmbeddingJudge((trait,), judge.directions[i:i + 1], judge.center[i:i + 1], judge.scale[i:i + 1],
                              {trait: judge.validity.get(trait, "unknown")}, judge.calibration, judge.source)
    pos = [p.pos for p in spec.instruction]
    neg = [p.neg for p in spec.instruction]
    return direction_judge(trait, pos, neg, source=f"spec:{spec.name}", seed=seed)


def direction_judge(trait: str, high_texts: Sequence[str], low_texts: Sequence[str], source: str,
                    seed: int = 0) -> EmbeddingJudge:
    """A one-trait judge from two lists of texts; validity ``unknown``."""
    high = reply_features([""] * len(high_texts), list(high_texts))
    low = reply_features([""] * len(low_texts), list(low_texts))
    w = _direction(high, low)
    nq, nr = neutral_replies(seed=seed)
    center = float((reply_features(nq, nr) @ w).mean())
    scale = max(float(((high @ w).mean() - (low @ w).mean()) / 2), 1e-6)
    return EmbeddingJudge((trait,), w[None, :], np.array([center], dtype=np.float32),
                          np.array([scale], dtype=np.float32), {trait: "unknown"}, "project-text", source)
