"""Acceptance figures of the persona organism (issue 3), on held-out question templates and items only.

``run_check(model)`` returns a list of ``Figure`` rows plus the raw numbers:

- scorer pole accuracy on held-out generated replies that carry a pole (target >= 95%);
- per single-pole system prompt: share of greedy and sampled replies on that pole's side of 50 (>= 90%), and
  the mean distance from 50 of the other four traits;
- no system prompt: mean score of every trait (within 40-60);
- Likert: per trait, mean reverse-keyed self-report (greedy digit) under high minus low personas (>= 2);
- fluency: held-out perplexity of the assistant tokens, share of replies that end with ``<|end|>`` within
  96 tokens (>= 98%);
- benchmark: generation tokens/s at batch 1 and 16, and the training wall time (``training_info.json``).
"""

from __future__ import annotations

import json
import math
import random
import re
import statistics
import time
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path

import torch
import torch.nn.functional as F

from traitlab.organism import ORGANISM_DIR
from traitlab.organism.corpus import (
    POLES,
    TRAITS,
    build_corpus,
    heldout_questions,
    likert_items,
    likert_prompt,
    pole_description,
)
from traitlab.organism.scorer import OracleScorer, sentences

MAX_NEW_TOKENS = 96
SAMPLING = {"temperature": 0.8, "top_p": 0.95}


@dataclass
class Figure:
    """One row of the acceptance table."""

    name: str
    value: str
    target: str = ""
    passed: bool | None = None


@dataclass
class CheckResult:
    figures: list[Figure] = field(default_factory=list)
    numbers: dict = field(default_factory=dict)

    @property
    def passed(self) -> bool:
        return all(f.passed is not False for f in self.figures)


def _pct(x: float) -> str:
    return f"{100 * x:.1f}%"


def scorer_accuracy(seed: int = 0, n: int = 3000) -> float:
    """Share of (reply, specified trait) pairs of held-out generated replies scored on the right side."""
    scorer = OracleScorer()
    good = total = 0
    for ex in build_corpus(seed + 1000, "heldout", n):
        persona = ex["meta"]["persona"]
        if ex["meta"]["kind"] != "situational" or not persona:
            continue
        scores = scorer.score(ex["messages"][-1]["content"])
        for trait, pole in persona.items():
            total += 1
            good += OracleScorer.pole_of(scores[trait]) == pole
    return good / max(1, total)


def heldout_perplexity(model, tokenizer_path: Path, seed: int = 0, n: int = 600) -> float:
    """Perplexity of the assistant tokens (reply + ``<|end|>``) of held-out situational examples."""
    from tokenizers import Tokenizer

    from traitlab.organism.tokenizer import PAD, encode_chat, special_ids
    from traitlab.organism.train import _collate

    tok = Tokenizer.from_file(str(tokenizer_path / "tokenizer.json"))
    pad = special_ids(tok)[PAD]
    rows = [encode_chat(tok, ex["messages"]) for ex in build_corpus(seed + 2000, "heldout", n)
            if ex["meta"]["kind"] == "situational"]
    nll = 0.0
    count = 0
    with torch.no_grad():
        for start in range(0, len(rows), 32):
            ids, mask = _collate(rows[start:start + 32], pad)
            logits = model(input_ids=ids).logits[:, :-1].float()
            target = mask[:, 1:]
            nll += F.cross_entropy(logits[target], ids[:, 1:][target], reduction="sum").item()
            count += int(target.sum())
    return math.exp(nll / max(1, count))


def repeats_a_sentence(text: str) -> bool:
    """Whether a reply says the same sentence twice (a fluency defect; training data never does)."""
    said = [s.lower() for s in sentences(text)]
    return len(said) != len(set(said))


def answer_digit(text: str) -> int | None:
    """The first digit 1-5 of a Likert answer, None when there is none."""
    m = re.search(r"[1-5]", text)
    return int(m.group()) if m else None


def _throughput(lm, prompts: list[str], batch_size: int) -> float:
    t = time.time()
    gen = lm.generate_chat(prompts, max_new_tokens=MAX_NEW_TOKENS, batch_size=batch_size, progress=False)
    tokens = sum(len(r) + int(f) for r, f in zip(gen.response_ids, gen.finished, strict=True))
    return tokens / (time.time() - t)


def run_check(model: str | Path | None = None, n_per_pole: int = 64, seed: int = 0, bench: bool = True,
              batch_size: int = 32) -> CheckResult:
    """Compute the acceptance figures for the model folder ``model`` (default: the shipped organism)."""
    from traitlab.model import load_model

    torch.set_num_threads(2)
    path = Path(model) if model is not None else ORGANISM_DIR
    lm = load_model(str(path), device="cpu")
    lm.model.eval()
    scorer = OracleScorer()
    res = CheckResult()
    nums = res.numbers
    rng = random.Random(f"check:{seed}")
    questions = heldout_questions(seed)
    finished_all: list[bool] = []

    acc = scorer_accuracy(seed)
    nums["scorer_accuracy"] = acc
    res.figures.append(Figure("scorer pole accuracy (held-out replies)", _pct(acc), ">= 95%", acc >= 0.95))

    # single-pole personas
    prompts, systems, keys = [], [], []
    for trait in TRAITS:
        for pole in POLES:
            for q in rng.sample(questions, min(n_per_pole, len(questions))):
                prompts.append(q)
                systems.append(pole_description(trait, pole, rng))
                keys.append((trait, pole))
    nums["persona"] = {}
    repeated: dict[str, float] = {}
    for mode, kwargs in (("greedy", {}), ("sampled", SAMPLING)):
        gen = lm.generate_chat(prompts, systems, max_new_tokens=MAX_NEW_TOKENS, batch_size=batch_size,
                               seed=seed, **kwargs)
        finished_all += gen.finished
        repeated[mode] = sum(map(repeats_a_sentence, gen.texts)) / len(gen.texts)
        nums.setdefault("examples", {})[mode] = [
            {"system": s, "user": q, "reply": t} for s, q, t in list(zip(systems, prompts, gen.texts,
                                                                        strict=True))[::n_per_pole]]
        scores = scorer.score_many(gen.texts)
        for trait in TRAITS:
            for pole in POLES:
                rows = [s for s, k in zip(scores, keys, strict=True) if k == (trait, pole)]
                on_side = sum(OracleScorer.pole_of(s[trait]) == pole for s in rows) / len(rows)
                others = [abs(s[t] - 50) for s in rows for t in TRAITS if t != trait]
                other_means = {t: statistics.mean(s[t] for s in rows) for t in TRAITS if t != trait}
                worst = max(abs(v - 50) for v in other_means.values())
                nums["persona"][f"{trait}/{pole}/{mode}"] = {
                    "on_side": on_side, "mean_target": statistics.mean(s[trait] for s in rows),
                    "other_mean_abs_dev": statistics.mean(others), "other_worst_mean_dev": worst,
                }
    for trait in TRAITS:
        for pole in POLES:
            g = nums["persona"][f"{trait}/{pole}/greedy"]
            s = nums["persona"][f"{trait}/{pole}/sampled"]
            ok = g["on_side"] >= 0.9 and s["on_side"] >= 0.9
            res.figures.append(Figure(
                f"{trait} {pole}: on pole side (greedy / sampled)",
                f"{_pct(g['on_side'])} / {_pct(s['on_side'])}  (others |mean-50| max "
                f"{max(g['other_worst_mean_dev'], s['other_worst_mean_dev']):.1f})",
                ">= 90%", ok))

    # no system prompt
    nums["no_system"] = {}
    for mode, kwargs in (("greedy", {}), ("sampled", SAMPLING)):
        gen = lm.generate_chat(questions, None, max_new_tokens=MAX_NEW_TOKENS, batch_size=batch_size,
                               seed=seed, **kwargs)
        finished_all += gen.finished
        scores = scorer.score_many(gen.texts)
        nums["no_system"][mode] = {t: statistics.mean(s[t] for s in scores) for t in TRAITS}
    means = {t: statistics.mean(nums["no_system"][m][t] for m in ("greedy", "sampled")) for t in TRAITS}
    ok = all(40 <= nums["no_system"][m][t] <= 60 for m in ("greedy", "sampled") for t in TRAITS)
    res.figures.append(Figure("no system prompt: trait means (greedy+sampled)",
                              " ".join(f"{t[0].upper()}={v:.1f}" for t, v in means.items()), "40-60", ok))

    # Likert self-report
    items = likert_items("heldout")
    l_prompts, l_systems, l_keys = [], [], []
    for item in items:
        for pole in POLES:
            for _ in range(4):
                l_prompts.append(likert_prompt(item, rng))
                l_systems.append(pole_description(item.trait, pole, rng))
                l_keys.append((item, pole))
    gen = lm.generate_chat(l_prompts, l_systems, max_new_tokens=4, batch_size=64, seed=seed)
    nums["likert"] = {}
    for trait in TRAITS:
        means_tp = {}
        for pole in POLES:
            vals = []
            for text, (item, p) in zip(gen.texts, l_keys, strict=True):
                if item.trait == trait and p == pole:
                    d = answer_digit(text)
                    d = 3 if d is None else d
                    vals.append(d if item.key > 0 else 6 - d)
            means_tp[pole] = Fraction(sum(vals), len(vals))  # exact: a difference of 2 must not read 1.999...
        diff = means_tp["high"] - means_tp["low"]
        high, low = float(means_tp["high"]), float(means_tp["low"])
        nums["likert"][trait] = {"high": high, "low": low, "diff": float(diff)}
        res.figures.append(Figure(f"Likert {trait}: high / low mean self-report",
                                  f"{high:.2f} / {low:.2f} (diff {float(diff):.2f})",
                                  "diff >= 2", diff >= 2))

    # fluency
    ppl = heldout_perplexity(lm.model, path, seed)
    fin = sum(finished_all) / len(finished_all)
    nums["heldout_perplexity"] = ppl
    nums["finished_within_96"] = fin
    nums["repeated_sentence"] = repeated
    res.figures.append(Figure("held-out perplexity (assistant tokens)", f"{ppl:.3f}", "reported", None))
    res.figures.append(Figure("persona replies repeating a sentence (greedy / sampled)",
                              f"{_pct(repeated['greedy'])} / {_pct(repeated['sampled'])}", "reported", None))
    res.figures.append(Figure("replies ending with <|end|> within 96 tokens", _pct(fin), ">= 98%",
                              fin >= 0.98))

    # benchmark
    if bench:
        tp1 = _throughput(lm, questions[:6], 1)
        tp16 = _throughput(lm, questions[:32], 16)
        nums["tokens_per_s_batch1"] = tp1
        nums["tokens_per_s_batch16"] = tp16
        res.figures.append(Figure("generation throughput (batch 1 / 16)", f"{tp1:.0f} / {tp16:.0f} tok/s",
                                  f"{torch.get_num_threads()} threads", None))
    info_path = path / "training_info.json"
    if info_path.is_file():
        info = json.loads(info_path.read_text())
        nums["train_seconds"] = info.get("train_seconds")
        train_min, total_min = info.get("train_seconds", 0) / 60, info.get("total_seconds", 0) / 60
        res.figures.append(Figure("training wall time (train / total)",
                                  f"{train_min:.1f} / {total_min:.1f} min", "<= 30 min", total_min <= 30))
    size = sum(p.stat().st_size for p in path.iterdir() if p.is_file())
    nums["folder_bytes"] = size
    res.figures.append(Figure("model folder size", f"{size / 1e6:.2f} MB", "<= 20 MB", size <= 20e6))
    return res
