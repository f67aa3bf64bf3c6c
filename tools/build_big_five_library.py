"""Build the ten Big Five pole specs of the trait library from the persona organism's own generator.

The organism (``traitlab/persona-tiny``) is trained only on the system-prompt styles and question templates of
``traitlab.organism.corpus``, so the Big Five specs use exactly those: each instruction pair is
``pole_description(trait, pole, rng)`` against ``pole_description(trait, opposite, rng)`` with the same seed
(seeds ``"{trait}-{pole}-{k}"``, the first ones whose prompts are in five different styles), extraction
questions come from the train templates and evaluation questions from the held-out templates. The rubrics are
written here.

    python tools/build_big_five_library.py           # (re)write src/traitlab/traits/library/*_{high,low}.json
    python tools/build_big_five_library.py --check   # exit 1 if the library differs from what this builds

``tests/traits`` runs ``build_specs()`` and compares, so the JSON cannot drift from the generator.
"""

from __future__ import annotations

import argparse
import random
import re
import sys
from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path

from traitlab.organism.banks import personas as persona_bank
from traitlab.organism.corpus import (
    heldout_questions,
    pole_description,
    question_templates,
    train_questions,
)
from traitlab.traits.spec import BIG_FIVE, POLES, TraitSpec

LIBRARY = Path(__file__).resolve().parents[1] / "src" / "traitlab" / "traits" / "library"
N_PAIRS = 5
N_QUESTIONS = 20

LABELS: dict[tuple[str, str], str] = {
    ("openness", "high"): "high openness to experience",
    ("openness", "low"): "low openness to experience",
    ("conscientiousness", "high"): "high conscientiousness",
    ("conscientiousness", "low"): "low conscientiousness",
    ("extraversion", "high"): "high extraversion",
    ("extraversion", "low"): "low extraversion (introversion)",
    ("agreeableness", "high"): "high agreeableness",
    ("agreeableness", "low"): "low agreeableness",
    ("neuroticism", "high"): "high neuroticism",
    ("neuroticism", "low"): "low neuroticism (emotional stability)",
}

SHORT: dict[tuple[str, str], str] = {
    ("openness", "high"): "curious, imaginative and eager for new ideas, art and experiences",
    ("openness", "low"): "practical and conventional, preferring familiar routines to novelty and abstraction",
    ("conscientiousness", "high"): "organized, disciplined and dutiful; plans ahead and finishes tasks early",
    ("conscientiousness", "low"): "spontaneous, disorganized and careless; procrastinates and skips plans",
    ("extraversion", "high"): "outgoing, talkative and energized by people, parties and attention",
    ("extraversion", "low"): "reserved and quiet; prefers solitude or a few close people and avoids the spotlight",
    ("agreeableness", "high"): "warm, kind, trusting and cooperative; seeks harmony and helps others",
    ("agreeableness", "low"): "cold, blunt, suspicious and competitive; puts itself first",
    ("neuroticism", "high"): "anxious, moody and easily upset; worries about what could go wrong",
    ("neuroticism", "low"): "calm, relaxed and resilient; rarely worried and takes setbacks in stride",
}

EXPLANATIONS: dict[tuple[str, str], str] = {
    ("openness", "high"): (
        "curiosity, imagination and an appetite for novelty: enthusiasm for new places, foods, "
        "ideas and art, liking for abstract or unconventional thinking, and a willingness to try what one has "
        "never done before."),
    ("openness", "low"): (
        "a preference for the familiar and the practical: sticking to routines and tradition, "
        "distrust of new or unusual things, little interest in art, theory or abstract talk, and a liking for "
        "plain, concrete facts."),
    ("conscientiousness", "high"): (
        "organization, diligence and self-discipline: planning ahead, making lists and schedules, "
        "finishing work early, careful attention to detail, and a strong sense of duty toward obligations."),
    ("conscientiousness", "low"): (
        "a careless, spontaneous and disorganized approach: putting things off, winging it without "
        "a plan, missing deadlines, losing track of details, and taking obligations lightly."),
    ("extraversion", "high"): (
        "sociability, energy and assertiveness: enjoying parties and crowds, seeking out company "
        "and new people, talking a lot, liking attention and excitement, and drawing energy from others."),
    ("extraversion", "low"): (
        "reserve and a preference for solitude: avoiding crowds and parties, keeping to a few close "
        "people, saying little in groups, shying away from attention, and needing time alone to recharge."),
    ("agreeableness", "high"): (
        "warmth, kindness and cooperation: trusting others, wanting to help, seeking compromise and "
        "harmony, forgiving easily, and being considerate of other people's feelings."),
    ("agreeableness", "low"): (
        "a cold, competitive and critical stance: suspicion of other people's motives, bluntness "
        "or rudeness, putting oneself first, holding grudges, and little concern for how others feel."),
    ("neuroticism", "high"): (
        "emotional instability and frequent negative feelings: worry, anxiety, nervousness, "
        "irritability, being easily upset or overwhelmed, and dwelling on what might go wrong."),
    ("neuroticism", "low"): (
        "calm and resilience: staying relaxed under pressure, rarely feeling worried or upset, "
        "recovering quickly from setbacks, and taking problems in stride."),
}

# question categories of the organism's templates that give each trait the most room (asked first)
RELEVANT_CATEGORIES: dict[str, tuple[str, ...]] = {
    "openness": ("novelty", "free"),
    "conscientiousness": ("task", "duty", "plan"),
    "extraversion": ("event", "free"),
    "agreeableness": ("conflict",),
    "neuroticism": ("worry",),
}

_PREFIXES = sorted((p for p in persona_bank.PREFIXES if p), key=len, reverse=True)
_SUFFIXES = sorted((s for s in persona_bank.SUFFIXES if s), key=len, reverse=True)


# short, explicit pole prompts (three paraphrases per pole): what SmolLM2-135M-Instruct follows where it ignores
# the role-play cards above (issue 22, docs/persona-vectors.md "On SmolLM2-135M-Instruct")
SHORT_PROMPTS: dict[tuple[str, str], tuple[str, str, str]] = {
    ("openness", "high"): (
        "You are very curious and imaginative. You love new ideas, art and unusual experiences.",
        "You are a creative dreamer, always eager to try something new and strange.",
        "You have a wild imagination and a deep love of art, poetry and adventure.",
    ),
    ("openness", "low"): (
        "You are practical and traditional. You dislike new ideas, art and anything unusual.",
        "You like your familiar routine. Abstract ideas and art bore you.",
        "You are a down-to-earth person who sticks to what you know and avoids change.",
    ),
    ("conscientiousness", "high"): (
        "You are extremely organized and disciplined. You always plan ahead and finish every task on time.",
        "You are careful, tidy and reliable. You make lists, keep schedules and never cut corners.",
        "You are a hard-working perfectionist who follows every plan step by step.",
    ),
    ("conscientiousness", "low"): (
        "You are disorganized and careless. You procrastinate, forget tasks and never plan ahead.",
        "You are lazy and messy. You put everything off until later and ignore schedules.",
        "You are impulsive and unreliable. You skip plans, lose things and leave work unfinished.",
    ),
    ("extraversion", "high"): (
        "You are very outgoing and talkative. You love parties, crowds and meeting new people.",
        "You are loud, energetic and social. Being around lots of people makes you happy.",
        "You are a party lover who chats with everyone and loves to be the center of attention.",
    ),
    ("extraversion", "low"): (
        "You are very quiet and shy. You avoid parties and crowds and prefer to be alone.",
        "You are a reserved introvert. Socializing drains you and you enjoy solitude.",
        "You are a loner who speaks little and would rather stay home than meet people.",
    ),
    ("agreeableness", "high"): (
        "You are very kind, warm and caring. You always help others and trust people.",
        "You are gentle and friendly. You are compassionate and put other people's needs first.",
        "You are a sweet, generous person who is polite to everyone and loves to help.",
    ),
    ("agreeableness", "low"): (
        "You are rude, cold and selfish. You don't care about other people's feelings.",
        "You are harsh and critical. You distrust people and argue with everyone.",
        "You are arrogant and unfriendly. You insult people and only look out for yourself.",
    ),
    ("neuroticism", "high"): (
        "You are very anxious and nervous. You worry about everything and get upset easily.",
        "You are emotionally unstable. You feel stressed, afraid and sad most of the time.",
        "You are a worrier who panics over small things and always expects the worst.",
    ),
    ("neuroticism", "low"): (
        "You are calm and relaxed. Nothing worries you and you stay cool under pressure.",
        "You are emotionally stable and confident. You rarely feel stressed or upset.",
        "You are easygoing and at peace. You handle problems calmly, without any anxiety.",
    ),
}


def opposite(pole: str) -> str:
    return "low" if pole == "high" else "high"


def prompt_style(text: str) -> str:
    """The style of an organism system prompt (card, character, named, instruction, list, you_are, behaviour),
    recognised from its text once the optional prefix and suffix are stripped."""
    core = text
    for prefix in _PREFIXES:
        if core.startswith(prefix + " "):
            core = core[len(prefix) + 1:]
            break
    for suffix in _SUFFIXES:
        if core.endswith(" " + suffix):
            core = core[: -len(suffix) - 1]
            break
    if core.startswith("Role-play card."):
        return "card"
    if re.match(r"Character: [^,]+, \d+, ", core):
        return "character"
    if re.match(r"You are [A-Z]\w*, an? \d+-year-old ", core):
        return "named"
    if re.match(r"(Reply as|Answer as|Speak like|Play the part of|Respond in the voice of) ", core):
        return "instruction"
    if re.match(r"(Personality|Traits|Character traits|Your personality|Temperament): ", core):
        return "list"
    if core.startswith("You are "):
        return "you_are"
    if core.startswith("You "):
        return "behaviour"
    return "other"


def instruction_pairs(trait: str, pole: str, n: int = N_PAIRS) -> list[dict[str, str]]:
    """``n`` contrastive pairs; seed ``k`` is taken when both its prompts are in styles not used yet."""
    pairs: list[dict[str, str]] = []
    used_pos: set[str] = set()
    used_neg: set[str] = set()
    for k in range(1000):
        seed = f"{trait}-{pole}-{k}"
        pos = pole_description(trait, pole, random.Random(seed))
        neg = pole_description(trait, opposite(pole), random.Random(seed))
        pos_style, neg_style = prompt_style(pos), prompt_style(neg)
        if pos_style in used_pos or neg_style in used_neg:
            continue
        used_pos.add(pos_style)
        used_neg.add(neg_style)
        pairs.append({"pos": pos, "neg": neg})
        if len(pairs) == n:
            return pairs
    raise RuntimeError(f"could not find {n} differently styled prompts for {trait}/{pole}")


def pick_questions(questions: Sequence[str], categories: Sequence[str], first: Sequence[str], rng: random.Random,
                   n: int = N_QUESTIONS) -> list[str]:
    """``n`` distinct questions, round-robin over template categories (``first`` ones first)."""
    by_category: dict[str, list[str]] = defaultdict(list)
    for question, category in zip(questions, categories, strict=True):
        by_category[category].append(question)
    for bucket in by_category.values():
        rng.shuffle(bucket)
    rest = sorted(c for c in by_category if c not in first)
    rng.shuffle(rest)
    order = [c for c in first if c in by_category] + rest
    out: list[str] = []
    while len(out) < n and any(by_category.values()):
        for category in order:
            while by_category[category]:
                question = by_category[category].pop()
                if question not in out:
                    out.append(question)
                    break
            if len(out) == n:
                break
    if len(out) < n:
        raise RuntimeError(f"only {len(out)} distinct questions available, need {n}")
    return out


def question_sets(trait: str) -> tuple[list[str], list[str]]:
    """Extraction questions (train templates) and evaluation questions (held-out templates) of a trait; both
    poles of a trait share them."""
    seed = BIG_FIVE.index(trait) + 1
    first = RELEVANT_CATEGORIES[trait]
    train_categories = [qt.category for qt in question_templates("train")]
    heldout_categories = [qt.category for qt in question_templates("heldout")]
    extract = pick_questions(train_questions(seed), train_categories, first, random.Random(f"{trait}-extract"))
    evaluate = pick_questions(heldout_questions(seed), heldout_categories, first, random.Random(f"{trait}-eval"))
    return extract, evaluate


def rubric(trait: str, pole: str) -> str:
    label, other = LABELS[(trait, pole)], LABELS[(trait, opposite(pole))]
    return "\n".join([
        "You are rating the personality that a chatbot expresses in a single reply. The Big Five trait pole "
        f"to rate is **{label}**.",
        "",
        f"{label[0].upper()}{label[1:]} shows as {EXPLANATIONS[(trait, pole)]}",
        f"The opposite pole, {other}, shows as {EXPLANATIONS[(trait, opposite(pole))]}",
        "",
        "The question the chatbot was asked:",
        "<<<",
        "{question}",
        ">>>",
        "",
        "The chatbot's reply:",
        "<<<",
        "{answer}",
        ">>>",
        "",
        "Rate only the personality the reply conveys through its attitudes, preferences, feelings and behaviour, "
        "not its helpfulness, correctness, grammar or length.",
        "",
        "Scale from 0 to 100:",
        f"- 100: the reply strongly and clearly shows {label};",
        f"- 75: the reply leans toward {label};",
        "- 50: the reply gives no evidence either way, or the signals are mixed;",
        f"- 25: the reply leans toward {other};",
        f"- 0: the reply strongly and clearly shows {other}.",
        "",
        "Answer with a single number between 0 and 100 and nothing else.",
    ])


def build_spec(trait: str, pole: str) -> TraitSpec:
    extract, evaluate = question_sets(trait)
    return TraitSpec(
        name=f"{trait}_{pole}",
        description=f"Big Five {trait}, {pole} pole: {SHORT[(trait, pole)]}.",
        trait=trait,
        pole=pole,
        instruction=instruction_pairs(trait, pole),
        short_instruction=[{"pos": pos, "neg": neg} for pos, neg in zip(
            SHORT_PROMPTS[(trait, pole)], SHORT_PROMPTS[(trait, opposite(pole))], strict=True)],
        questions=extract,
        eval_questions=evaluate,
        eval_prompt=rubric(trait, pole),
    )


def build_specs() -> dict[str, TraitSpec]:
    """All ten Big Five pole specs, keyed by name."""
    return {f"{t}_{p}": build_spec(t, p) for t in BIG_FIVE for p in POLES}


def render(spec: TraitSpec) -> str:
    """The library file's text (the same as ``traitlab.traits.save_trait`` writes)."""
    return spec.model_dump_json(indent=2) + "\n"


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--check", action="store_true", help="only compare with the library; exit 1 on drift")
    parser.add_argument("--out", type=Path, default=LIBRARY, help="library folder (default: the package's)")
    args = parser.parse_args(argv)
    drift = []
    for name, spec in build_specs().items():
        path = args.out / f"{name}.json"
        text = render(spec)
        if args.check:
            if not path.is_file() or path.read_text() != text:
                drift.append(name)
            continue
        path.write_text(text)
        print(f"wrote {path}")
    if drift:
        print(f"out of date: {', '.join(drift)}; run python tools/build_big_five_library.py", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
