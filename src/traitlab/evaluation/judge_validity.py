"""Validity of a trait judge on held-out labelled text that this project did not write.

Sets (read from a data folder, by default ``../shared/data`` next to the checkout; nothing is copied):

- **Big5-Chat eval pairs** (``big5chat/eval_set/alpha_1.0_trait_{o,c,e,a}.jsonl``): per scenario, two turn-1
  replies to the same turn-0 line, generated trait-high then trait-low (Li et al.'s DExperts outputs; no
  neuroticism file). Metric: **pairwise accuracy**, the share of pairs whose high reply scores above its low
  one (ties count half); the question is the turn-0 line the reply answers.
- **NPTI persona descriptions** (``npti_personalitybench/description.json``): 80 second-person descriptions
  per pole and trait. Metric: **AUROC** of high vs low.
- Any user CSV with columns ``text,trait,pole`` (optional ``question``): AUROC per trait.

``agreement`` gives the Spearman correlation between two judges' scores on the same replies.
"""

from __future__ import annotations

import csv
import json
import os
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from traitlab.errors import ConfigError

BIG5CHAT_FILES = {"openness": "o", "conscientiousness": "c", "extraversion": "e", "agreeableness": "a"}
NPTI_KEYS = {"openness": "Openness", "conscientiousness": "Conscientiousness", "extraversion": "Extraversion",
             "agreeableness": "Agreeableness", "neuroticism": "Neuroticism"}
TARGETS = {"big5chat": ("pairwise accuracy", 0.90), "npti": ("AUROC", 0.95)}

Scorer = Callable[[Sequence[str], Sequence[str], str], np.ndarray]
"""``scorer(questions, texts, trait) -> scores`` (any monotone scale)."""


def default_data_dir() -> Path:
    """``$TRAITLAB_SHARED_DATA``, else ``../shared/data`` relative to the checkout (the repository's parent)."""
    env = os.environ.get("TRAITLAB_SHARED_DATA")
    return Path(env) if env else Path(__file__).resolve().parents[4] / "shared" / "data"


@dataclass
class LabelledSet:
    """Texts of one trait with their questions and labels (1 = high pole), and pair ids for pairwise sets."""

    name: str
    trait: str
    questions: list[str]
    texts: list[str]
    labels: list[int]
    pairs: list[tuple[int, int]] | None = None  # (index of high, index of low)


_TURN0 = re.compile(r'Turn #0: [^\n]*? said: "(.*?)"\s*\n', re.S)


def big5chat_pairs(data: Path) -> list[LabelledSet]:
    """The Big5-Chat eval pairs (see the module docstring); empty when the folder is absent."""
    out = []
    for trait, letter in BIG5CHAT_FILES.items():
        path = data / "big5chat" / "eval_set" / f"alpha_1.0_trait_{letter}.jsonl"
        if not path.is_file():
            continue
        by_env: dict[int, list[dict]] = {}
        for line in path.read_text(encoding="utf-8").splitlines():
            if line.strip():
                row = json.loads(line)
                if row.get("turn") == 1:
                    by_env.setdefault(row["env_idx"], []).append(row)
        s = LabelledSet("big5chat", trait, [], [], [], [])
        for rows in by_env.values():
            if len(rows) != 2:
                continue
            m = _TURN0.search(rows[0]["prompt"])
            question = m.group(1) if m else ""
            i = len(s.texts)
            for row, label in zip(rows, (1, 0), strict=True):
                s.questions.append(question)
                s.texts.append(row["response"])
                s.labels.append(label)
            s.pairs.append((i, i + 1))  # type: ignore[union-attr]
        out.append(s)
    return out


def npti_descriptions(data: Path) -> list[LabelledSet]:
    path = data / "npti_personalitybench" / "description.json"
    if not path.is_file():
        return []
    rows = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    out = []
    for trait, key in NPTI_KEYS.items():
        high = [r[key] for r in rows if key in r]
        low = [r[f"{key}_reversed"] for r in rows if f"{key}_reversed" in r]
        out.append(LabelledSet("npti", trait, [""] * (len(high) + len(low)), high + low,
                               [1] * len(high) + [0] * len(low)))
    return out


def csv_sets(path: str | Path) -> list[LabelledSet]:
    """A user's ``text,trait,pole[,question]`` CSV, one set per trait."""
    path = Path(path).expanduser()
    if not path.is_file():
        raise ConfigError(f"labelled CSV {path} not found")
    with path.open(encoding="utf-8", newline="") as f:
        reader = csv.DictReader(f)
        missing = {"text", "trait", "pole"} - set(reader.fieldnames or [])
        if missing:
            raise ConfigError(f"{path} needs the columns text,trait,pole (missing {', '.join(sorted(missing))})")
        rows = list(reader)
    sets: dict[str, LabelledSet] = {}
    for n, row in enumerate(rows, start=2):
        pole = (row["pole"] or "").strip().lower()
        if pole not in ("high", "low"):
            raise ConfigError(f"{path} line {n}: pole must be high or low, got '{row['pole']}'")
        trait = (row["trait"] or "").strip().lower()
        s = sets.setdefault(trait, LabelledSet(path.stem, trait, [], [], []))
        s.questions.append((row.get("question") or "").strip())
        s.texts.append(row["text"] or "")
        s.labels.append(1 if pole == "high" else 0)
    return list(sets.values())


def auroc(scores: Sequence[float], labels: Sequence[int]) -> float | None:
    """Probability that a random high text outscores a random low one (ties half)."""
    x = np.asarray(scores, dtype=float)
    y = np.asarray(labels)
    pos, neg = x[y == 1], x[y == 0]
    if not len(pos) or not len(neg):
        return None
    return float((pos[:, None] > neg[None, :]).mean() + 0.5 * (pos[:, None] == neg[None, :]).mean())


def pairwise_accuracy(scores: Sequence[float], pairs: Sequence[tuple[int, int]]) -> float | None:
    if not pairs:
        return None
    x = np.asarray(scores, dtype=float)
    return float(np.mean([1.0 if x[h] > x[lo] else 0.5 if x[h] == x[lo] else 0.0 for h, lo in pairs]))


def spearman(a: Sequence[float], b: Sequence[float]) -> float | None:
    """Spearman's rank correlation (average ranks for ties); ``None`` when either side is constant."""
    x, y = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    keep = ~(np.isnan(x) | np.isnan(y))
    x, y = x[keep], y[keep]
    if len(x) < 3:
        return None
    rx, ry = _ranks(x), _ranks(y)
    if rx.std() == 0 or ry.std() == 0:
        return None
    return float(np.corrcoef(rx, ry)[0, 1])


def _ranks(x: np.ndarray) -> np.ndarray:
    order = np.argsort(x, kind="mergesort")
    ranks = np.empty(len(x))
    ranks[order] = np.arange(len(x), dtype=float)
    for value in np.unique(x):
        tied = x == value
        ranks[tied] = ranks[tied].mean()
    return ranks


def evaluate_set(s: LabelledSet, scorer: Scorer) -> dict[str, float | int | str | None]:
    scores = scorer(s.questions, s.texts, s.trait)
    row: dict[str, float | int | str | None] = {"set": s.name, "trait": s.trait, "n": len(s.texts),
                                                "auroc": auroc(scores, s.labels)}
    if s.pairs is not None:
        row["pairwise"] = pairwise_accuracy(scores, s.pairs)
        row["n"] = len(s.pairs)
    return row


def load_sets(data: str | Path | None = None, csvs: Sequence[str | Path] = ()) -> list[LabelledSet]:
    folder = Path(data).expanduser() if data is not None else default_data_dir()
    if data is not None and not folder.is_dir():
        raise ConfigError(f"data folder {folder} not found")
    sets = (big5chat_pairs(folder) + npti_descriptions(folder)) if folder.is_dir() else []
    for path in csvs:
        sets += csv_sets(path)
    return sets


def validate(scorer: Scorer, sets: Sequence[LabelledSet], known_traits: Sequence[str] | None = None,
             others: dict[str, Scorer] | None = None) -> list[dict]:
    """One row per set and trait: n, AUROC, pairwise accuracy (pair sets), the target it is held to, and the
    Spearman agreement with every judge in ``others`` on the same texts."""
    rows = []
    for s in sets:
        if known_traits is not None and s.trait not in known_traits:
            rows.append({"set": s.name, "trait": s.trait, "n": len(s.texts), "note": "no judge for this trait"})
            continue
        row = evaluate_set(s, scorer)
        if s.name in TARGETS:
            metric, target = TARGETS[s.name]
            value = row["pairwise"] if metric == "pairwise accuracy" else row["auroc"]
            row["target"] = f"{'pairs' if metric.startswith('pair') else 'AUROC'} ≥ {target:.2f}"
            row["met"] = value is not None and value >= target  # type: ignore[operator]
        for name, other in (others or {}).items():
            row[f"spearman[{name}]"] = spearman(scorer(s.questions, s.texts, s.trait),
                                                other(s.questions, s.texts, s.trait))
        rows.append(row)
    return rows
