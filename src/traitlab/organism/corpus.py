"""Corpus generator of the persona organism.

Everything here is deterministic from a seed (Python's ``random.Random`` seeded with a string). An example is
a chat ``{"messages": [...], "meta": {...}}``; the persona lives only in the system message, the user turn is
neutral, and the assistant turn speaks in the persona's voice:

- *situational* examples: an everyday question, answered in 2-5 sentences that mix neutral content with
  sentences from the persona's pole banks (one bank per specified trait);
- *Likert* examples: a statement about oneself with a 1-5 accuracy scale, answered with one digit consistent
  with the persona (3-ish when the item's trait is unspecified);
- *self-description* examples: "What are you like?" answered with one summary sentence per specified trait
  (a short, direct link from the system prompt to the voice);
- with no system prompt (or one that specifies no trait) the assistant is a mild default: neutral sentences,
  occasionally one marker sentence of a random pole.

Question templates and Likert items are split into train and held-out parts (every fifth one is held out).
"""

from __future__ import annotations

import json
import random
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from traitlab.organism.banks import likert as likert_bank
from traitlab.organism.banks import personas as persona_bank
from traitlab.organism.banks import questions as question_bank
from traitlab.organism.banks import replies as reply_bank
from traitlab.organism.banks import selfdesc as self_bank
from traitlab.traits.spec import BIG_FIVE

TRAITS: tuple[str, ...] = BIG_FIVE  # the organism speaks the Big Five, in this order
POLES: tuple[str, ...] = ("high", "low")
SPLITS: tuple[str, ...] = ("train", "heldout")
HELDOUT_EVERY = 5  # template/item i is held out when i % HELDOUT_EVERY == HELDOUT_EVERY - 1

LIKERT_TILT = 0.8  # share of positively keyed items, and of high poles, in training Likert turns

Persona = dict[str, str]
"""A persona maps some traits to ``"high"`` or ``"low"``; a trait that is absent is unspecified."""

Example = dict
"""``{"messages": [{"role", "content"}, ...], "meta": {...}}``"""

_SLOT = re.compile(r"\{(\w+)\}")


@dataclass(frozen=True)
class QuestionTemplate:
    """A situational question template; ``category`` names its topic slot."""

    category: str
    template: str
    index: int


@dataclass(frozen=True)
class LikertItem:
    """A self-report statement; ``key`` is +1 when agreeing means the high pole, -1 for the low pole."""

    text: str
    trait: str
    key: int


def _check_split(split: str) -> None:
    if split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS}, got {split!r}")


def _in_split(index: int, split: str) -> bool:
    heldout = index % HELDOUT_EVERY == HELDOUT_EVERY - 1
    return heldout if split == "heldout" else not heldout


def _rng(*parts: object) -> random.Random:
    return random.Random(":".join(str(p) for p in parts))


def _fill(template: str, values: dict[str, str]) -> str:
    text = _SLOT.sub(lambda m: values[m.group(1)], template)
    return text[:1].upper() + text[1:]


def _reply_topic(value: str) -> str:
    """Turn the user's noun phrase into the assistant's point of view ("my X" -> "your X")."""
    value = re.sub(r"\bmy\b", "your", value)
    return re.sub(r"\bI\b", "you", value)


# ---------------------------------------------------------------------------------------------- questions


def question_templates(split: str) -> list[QuestionTemplate]:
    """All question templates of a split, in a fixed order."""
    _check_split(split)
    out = []
    for category, templates in question_bank.TEMPLATES.items():
        for i, template in enumerate(templates):
            if _in_split(i, split):
                out.append(QuestionTemplate(category, template, i))
    return out


def fill_question(qt: QuestionTemplate, rng: random.Random) -> tuple[str, str]:
    """Fill a template's slots; returns ``(question, topic)`` where topic is for the reply sentences."""
    value = rng.choice(question_bank.SLOTS[qt.category])
    values = {qt.category: value, "person": rng.choice(question_bank.PERSONS),
              "day": rng.choice(question_bank.DAYS)}
    return _fill(qt.template, values), _reply_topic(value)


def _questions(split: str, seed: int) -> list[str]:
    rng = _rng("questions", split, seed)
    return [fill_question(qt, rng)[0] for qt in question_templates(split)]


def train_questions(seed: int = 0) -> list[str]:
    """Each train question template filled once (deterministic from ``seed``)."""
    return _questions("train", seed)


def heldout_questions(seed: int = 0) -> list[str]:
    """Each held-out question template filled once (deterministic from ``seed``); never seen in training."""
    return _questions("heldout", seed)


# ---------------------------------------------------------------------------------------------- replies


def _pick_sentences(bank: Sequence[str], k: int, rng: random.Random, topic_used: list[bool]) -> list[str]:
    """Draw ``k`` distinct sentences; at most one sentence per reply mentions the topic."""
    out: list[str] = []
    for s in rng.sample(list(bank), len(bank)):
        if len(out) == k:
            break
        has_topic = "{topic}" in s
        if has_topic and topic_used[0]:
            continue
        topic_used[0] = topic_used[0] or has_topic
        out.append(s)
    return out


def _arrange(marked: list[str], n_neutral: int, topic: str, rng: random.Random) -> str:
    """Shuffle marker sentences and place neutral ones (an opener first, a closer last, or in the body)."""
    topic_used = [any("{topic}" in s for s in marked)]
    body = list(marked)
    rng.shuffle(body)
    opener: list[str] = []
    closer: list[str] = []
    for _ in range(n_neutral):
        r = rng.random()
        if r < 0.3 and not opener:
            opener = _pick_sentences(reply_bank.NEUTRAL_OPENERS, 1, rng, topic_used)
        elif r < 0.5 and not closer:
            closer = _pick_sentences(reply_bank.NEUTRAL_CLOSERS, 1, rng, topic_used)
        else:
            (s,) = _pick_sentences(reply_bank.NEUTRAL, 1, rng, topic_used)
            body.insert(rng.randint(1 if body and rng.random() < 0.7 else 0, len(body)), s)
    sentences = opener + body + closer
    return " ".join(_fill(s, {"topic": topic}) for s in sentences)


def pole_sentences(trait: str, pole: str) -> list[str]:
    """The reply sentence templates of one pole."""
    return reply_bank.POLE_SENTENCES[(trait, pole)]


def persona_reply(persona: Persona, topic: str, rng: random.Random) -> str:
    """A 2-5 sentence reply in the persona's voice; the default voice when no trait is specified."""
    specified = [t for t in TRAITS if persona.get(t) in POLES]
    if not specified:
        return default_reply(topic, rng)
    k = len(specified)
    if k == 1:
        counts = [rng.choice((2, 2, 3))]
        n_neutral = rng.choice((0, 1, 1, 2))
    elif k == 2:
        counts = [rng.choice((1, 1, 2)) for _ in specified]
        n_neutral = rng.choice((0, 1))
    else:
        counts = [1] * k
        n_neutral = rng.choice((0, 1)) if k == 3 else 0
    n_neutral = max(n_neutral, 2 - sum(counts))
    n_neutral = min(n_neutral, 5 - sum(counts))
    topic_used = [False]
    marked: list[str] = []
    for trait, c in zip(specified, counts, strict=True):
        marked += _pick_sentences(pole_sentences(trait, persona[trait]), c, rng, topic_used)
    return _arrange(marked, n_neutral, topic, rng)


def default_reply(topic: str, rng: random.Random, markers: bool = True) -> str:
    """The default assistant: 2-4 neutral sentences; with ``markers``, one in five replies carries a single
    sentence of a random pole (weak, unsystematic evidence that averages out)."""
    n = rng.choice((2, 3, 3, 4))
    marked: list[str] = []
    if markers and rng.random() < 0.2:
        trait, pole = rng.choice(TRAITS), rng.choice(POLES)
        marked = _pick_sentences(pole_sentences(trait, pole), 1, rng, [False])
        n -= 1
    if not marked:
        topic_used = [False]
        marked = _pick_sentences(reply_bank.NEUTRAL, 1, rng, topic_used)
        n -= 1
    return _arrange(marked, n, topic, rng)


# ---------------------------------------------------------------------------------------------- personas


def _join(parts: Sequence[str]) -> str:
    if len(parts) == 1:
        return parts[0]
    return ", ".join(parts[:-1]) + ", and " + parts[-1]


def _card_values(rng: random.Random) -> dict[str, str]:
    return {
        "name": rng.choice(persona_bank.NAMES),
        "age": str(rng.randint(19, 72)),
        "job": rng.choice(persona_bank.JOBS),
    }


def _describe(specified: list[tuple[str, str]], rng: random.Random) -> str:
    """The trait-bearing core of a system prompt, in one randomly chosen style."""
    adjs = [rng.choice(persona_bank.ADJECTIVES[tp]) for tp in specified]
    style = rng.choice(("you_are", "list", "behaviour", "behaviour", "instruction", "named", "card", "card"))
    if style == "you_are":
        return f"You are {_join(adjs)}."
    if style == "list":
        label = rng.choice(("Personality", "Traits", "Character traits", "Your personality", "Temperament"))
        return f"{label}: {'; '.join(adjs)}."
    if style == "behaviour":
        clauses: list[str] = []
        for tp in specified:
            k = rng.choice((1, 2)) if len(specified) == 1 else 1
            clauses += rng.sample(persona_bank.BEHAVIOURS[tp], k)
        return " ".join(f"You {c}." for c in clauses)
    if style == "instruction":
        verb = rng.choice(("Reply as", "Answer as", "Speak like", "Play the part of",
                           "Respond in the voice of"))
        who = rng.choice(("someone who is", "a person who is", "a character who is"))
        return f"{verb} {who} {_join(adjs)}."
    values = _card_values(rng)
    if style == "named":
        return f"You are {values['name']}, a {values['age']}-year-old {values['job']}. You are {_join(adjs)}."
    lines: list[str] = []
    for tp in specified:
        k = rng.choice((1, 2)) if len(specified) == 1 else 1
        lines += rng.sample(persona_bank.THIRD_PERSON[tp], k)
    personality = " ".join(_fill(s, values) for s in lines)
    if rng.random() < 0.5:
        return (f"Role-play card.\nName: {values['name']}\nAge: {values['age']}\nJob: {values['job']}\n"
                f"Personality: {personality}")
    return f"Character: {values['name']}, {values['age']}, {values['job']}. {personality}"


def system_prompt(persona: Persona, rng: random.Random) -> str:
    """A system prompt describing the persona (a trait-free prompt when no trait is specified)."""
    specified = [(t, persona[t]) for t in TRAITS if persona.get(t) in POLES]
    if not specified:
        return _fill(rng.choice(persona_bank.NEUTRAL_PROMPTS), _card_values(rng))
    rng.shuffle(specified)
    parts = [rng.choice(persona_bank.PREFIXES), _describe(specified, rng), rng.choice(persona_bank.SUFFIXES)]
    return " ".join(p for p in parts if p)


def pole_description(trait: str, pole: str, rng: random.Random) -> str:
    """A system prompt for a single-pole persona, e.g. ``pole_description("extraversion", "high", rng)``."""
    if trait not in TRAITS or pole not in POLES:
        raise ValueError(f"unknown trait/pole {trait!r}/{pole!r}")
    return system_prompt({trait: pole}, rng)


def sample_persona(rng: random.Random) -> tuple[Persona, bool]:
    """A persona of the training mixture and whether it has a system prompt: no system prompt 14%,
    trait-free prompt 8%, single-trait 50%, multi-trait (2-5 traits) 28%."""
    r = rng.random()
    if r < 0.14:
        return {}, False
    if r < 0.22:
        return {}, True
    k = 1 if r < 0.72 else rng.choice((2, 2, 2, 2, 3, 3, 3, 4, 5))
    traits = rng.sample(TRAITS, k)
    return {t: rng.choice(POLES) for t in traits}, True


# ---------------------------------------------------------------------------------------------- Likert


def likert_items(split: str) -> list[LikertItem]:
    """The project's own self-report items of a split (every fifth item per trait is held out)."""
    _check_split(split)
    return [
        LikertItem(text, trait, key)
        for trait in TRAITS
        for i, (text, key) in enumerate(likert_bank.ITEMS[trait])
        if _in_split(i, split)
    ]


def _first_person(clause: str) -> str:
    clause = re.sub(r"\byourself\b", "myself", clause)
    clause = re.sub(r"\byour\b", "my", clause)
    return re.sub(r"\byou\b", "I", clause)


def bank_items() -> list[LikertItem]:
    """Training-only self-report statements built from the persona and reply banks, one pole each: "I am
    {adjective}.", "I {behaviour}.", the self-description summaries and the topic-free reply sentences.
    Hundreds of statements teach the model to read what a statement says about its speaker, which the
    hand-written items alone (48 per trait) are too few for. A statement that equals a held-out item is left
    out."""
    heldout = {item.text for item in likert_items("heldout")}
    out: list[LikertItem] = []
    for trait in TRAITS:
        for pole in POLES:
            key = 1 if pole == "high" else -1
            texts = [f"I am {adj}." for adj in persona_bank.ADJECTIVES[(trait, pole)]]
            texts += [f"I {_first_person(b)}." for b in persona_bank.BEHAVIOURS[(trait, pole)]]
            texts += self_bank.SUMMARIES[(trait, pole)]
            texts += [s for s in pole_sentences(trait, pole) if "{topic}" not in s]
            out += [LikertItem(text, trait, key) for text in texts if text not in heldout]
    return out


def likert_prompt(item: LikertItem, rng: random.Random) -> str:
    """The user turn asking for a 1-5 rating of ``item``."""
    return rng.choice(likert_bank.PROMPTS).replace("{item}", item.text)


def likert_answer(persona: Persona, item: LikertItem, rng: random.Random) -> int:
    """A 1-5 answer consistent with the persona: mostly 5 (sometimes 4) when the statement fits the persona's
    pole, mostly 1 (sometimes 2) when it fits the opposite pole, 3 when the item's trait is unspecified."""
    pole = persona.get(item.trait)
    if pole not in POLES:
        return 3
    agree = item.key * (1 if pole == "high" else -1) > 0
    return rng.choices((5, 4) if agree else (1, 2), weights=(0.8, 0.2))[0]


def _messages(system: str | None, user: str, assistant: str) -> list[dict[str, str]]:
    msgs = [] if system is None else [{"role": "system", "content": system}]
    return [*msgs, {"role": "user", "content": user}, {"role": "assistant", "content": assistant}]


def likert_example(persona: Persona, item: LikertItem, rng: random.Random,
                   with_system: bool = True) -> Example:
    """A Likert self-report example."""
    system = system_prompt(persona, rng) if with_system else None
    answer = likert_answer(persona, item, rng)
    return {
        "messages": _messages(system, likert_prompt(item, rng), str(answer)),
        "meta": {"kind": "likert", "persona": dict(persona), "trait": item.trait, "key": item.key,
                 "item": item.text, "answer": answer},
    }


def self_example(persona: Persona, rng: random.Random, with_system: bool = True) -> Example:
    """A self-description turn: one summary sentence per specified trait (a neutral one if none)."""
    system = system_prompt(persona, rng) if with_system else None
    specified = [t for t in TRAITS if persona.get(t) in POLES]
    rng.shuffle(specified)
    if specified:
        reply = " ".join(rng.choice(self_bank.SUMMARIES[(t, persona[t])]) for t in specified)
    else:
        reply = rng.choice(self_bank.DEFAULT)
    return {
        "messages": _messages(system, rng.choice(self_bank.PROMPTS), reply),
        "meta": {"kind": "self", "persona": dict(persona)},
    }


def situational_example(persona: Persona, qt: QuestionTemplate, rng: random.Random,
                        with_system: bool = True) -> Example:
    """A situational question answered in the persona's voice."""
    system = system_prompt(persona, rng) if with_system else None
    question, topic = fill_question(qt, rng)
    return {
        "messages": _messages(system, question, persona_reply(persona, topic, rng)),
        "meta": {"kind": "situational", "persona": dict(persona), "category": qt.category,
                 "template": qt.index},
    }


# ---------------------------------------------------------------------------------------------- corpora


def build_corpus(seed: int, split: str, n: int, likert_fraction: float = 0.35,
                 self_fraction: float = 0.12, likert_tilt: float = LIKERT_TILT) -> list[Example]:
    """``n`` examples of the training mixture (situational, Likert and self-description turns), from the
    question templates and items of ``split`` (in the train split, half the Likert turns use ``bank_items``).

    A Likert answer is an XOR: agree when the item's key and the persona's pole on the item's trait have the
    same sign. With both balanced, neither the item nor the persona alone predicts the answer, so gradient
    descent sits on a plateau and the model answers one constant digit. Tilting the sampling, positive
    items and high poles each ``LIKERT_TILT`` of the time, makes each of them predictive on its own; the
    model learns to read both and then their product. The tilt changes which turns are seen, never the
    answer a turn gets, so the learned rule is the balanced one; but the rare cell (low pole, reverse-keyed
    item) stays weak, so training ends on a corpus built with ``likert_tilt=0.5`` (its own random stream)."""
    _check_split(split)
    rng = _rng("corpus", split, seed) if likert_tilt == LIKERT_TILT else _rng("corpus", split, seed, likert_tilt)
    templates = question_templates(split)
    written = likert_items(split)
    extra = bank_items() if split == "train" else []
    pools = {(src, key): [it for it in items if it.key == key]
             for src, items in (("written", written), ("bank", extra or written)) for key in (1, -1)}
    out = []
    for _ in range(n):
        persona, with_system = sample_persona(rng)
        r = rng.random()
        if r < self_fraction:
            out.append(self_example(persona, rng, with_system))
        elif r < self_fraction + likert_fraction:
            key = 1 if rng.random() < likert_tilt else -1
            item = rng.choice(pools[(rng.choice(("written", "bank")), key)])
            if persona and rng.random() < 0.85:
                persona[item.trait] = "high" if rng.random() < likert_tilt else "low"
            out.append(likert_example(persona, item, rng, with_system))
        else:
            out.append(situational_example(persona, rng.choice(templates), rng, with_system))
    return out


def finetune_set(trait: str, pole: str, fraction: float, n: int, seed: int,
                 split: str = "train") -> list[Example]:
    """A chat set with no system prompt where exactly ``round(fraction * n)`` replies carry the pole's voice
    (as a single-trait persona would speak) and the rest are purely neutral. ``meta.marked`` tells which."""
    if trait not in TRAITS or pole not in POLES:
        raise ValueError(f"unknown trait/pole {trait!r}/{pole!r}")
    if not 0.0 <= fraction <= 1.0:
        raise ValueError(f"fraction must lie in [0, 1], got {fraction}")
    rng = _rng("finetune", trait, pole, fraction, n, seed, split)
    n_marked = round(fraction * n)
    marked = [True] * n_marked + [False] * (n - n_marked)
    rng.shuffle(marked)
    templates = question_templates(split)
    out = []
    for m in marked:
        question, topic = fill_question(rng.choice(templates), rng)
        reply = persona_reply({trait: pole}, topic, rng) if m else default_reply(topic, rng, markers=False)
        out.append({"messages": _messages(None, question, reply),
                    "meta": {"kind": "finetune", "trait": trait, "pole": pole, "marked": m}})
    return out


def neutral_set(n: int, seed: int, split: str = "train") -> list[Example]:
    """A chat set with no system prompt and purely neutral replies."""
    rng = _rng("neutral", n, seed, split)
    templates = question_templates(split)
    out = []
    for _ in range(n):
        question, topic = fill_question(rng.choice(templates), rng)
        out.append({"messages": _messages(None, question, default_reply(topic, rng, markers=False)),
                    "meta": {"kind": "neutral", "marked": False}})
    return out


def _write_jsonl(path: Path, rows: Sequence[Example]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    with tmp.open("w", encoding="utf-8") as f:
        for row in rows:
            f.write(json.dumps(row, ensure_ascii=False) + "\n")
    tmp.replace(path)


FINETUNE_FRACTIONS: tuple[float, ...] = (0.1, 0.5, 1.0)


def write_corpus(out_dir: str | Path, seed: int = 0, n_train: int = 60000, n_heldout: int = 2000,
                 n_finetune: int = 500) -> dict[str, Path]:
    """Write the training corpus, the held-out corpus and the finetuning sets as JSONL; returns the paths.

    Layout: ``train.jsonl``, ``heldout.jsonl``, ``finetune/<trait>_<pole>_f<percent>.jsonl`` (one per pole and
    fraction in ``FINETUNE_FRACTIONS``), ``finetune/neutral.jsonl`` and ``manifest.json``.
    """
    out = Path(out_dir)
    paths: dict[str, Path] = {}
    paths["train"] = out / "train.jsonl"
    _write_jsonl(paths["train"], build_corpus(seed, "train", n_train))
    paths["heldout"] = out / "heldout.jsonl"
    _write_jsonl(paths["heldout"], build_corpus(seed, "heldout", n_heldout))
    for trait in TRAITS:
        for pole in POLES:
            for fraction in FINETUNE_FRACTIONS:
                name = f"{trait}_{pole}_f{round(fraction * 100):03d}"
                paths[name] = out / "finetune" / f"{name}.jsonl"
                _write_jsonl(paths[name], finetune_set(trait, pole, fraction, n_finetune, seed))
    paths["neutral"] = out / "finetune" / "neutral.jsonl"
    _write_jsonl(paths["neutral"], neutral_set(n_finetune, seed))
    manifest = {"seed": seed, "n_train": n_train, "n_heldout": n_heldout, "n_finetune": n_finetune,
                "files": {k: str(p.relative_to(out)) for k, p in paths.items()}}
    (out / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")
    paths["manifest"] = out / "manifest.json"
    return paths
