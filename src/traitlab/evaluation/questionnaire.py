"""Self-report questionnaires: inventories, administration through the chat template, scoring.

**Inventories.** ``load_inventory("traitlab")`` is traitlab's own Big Five inventory (60 first-person items
written for this project, 12 per trait, 2 per facet, half reverse keyed; ``data/inventory.json``), the
default. Loaders read external copies from a path the user gives: IPIP-NEO-120/300 ``questions.json``
(Alheimsins layout: ``text, keyed plus|minus, domain N|E|O|A|C, facet``), MPI CSV (``label_raw, text,
label_ocean, key``), PsychoBench ``questionnaires.json`` (``name=`` picks the questionnaire, BFI by default;
``reverse`` item numbers are keyed −1) and a plain CSV ``text,trait,key`` (optional ``facet``).

**Administration.** Each item is one user turn through the model's chat template (under any Intervention
or persona ``system`` prompt), with a short instruction and a 1–5 scale. The default wordings are those the
persona organism was trained on (``How accurately does this statement describe you? "…" Reply with a number
from 1 (very inaccurate) to 5 (very accurate).``), so the organism answers with a digit.

Every item is asked in both option orders and the two answers are averaged (order bias controlled).
``reverse="listing"`` (default) lists the scale the other way round (``from 5 (very accurate) to 1 (very
inaccurate)``): a label keeps its meaning, so a bias toward the first- or last-listed option cancels.
``reverse="labels"`` reverses the labels themselves (``1 (very accurate) … 5 (very inaccurate)``) and maps an
answer ``d`` back to ``6 − d``, which also cancels a bias toward a digit; only models that read the scale
(not ones drilled on one layout, like the organism) follow it. ``reverse="none"`` asks once.

**Scoring.** ``scoring="logprob"``: one batched forward per chunk at the answer position; the probability of
each label is the sum over its tokenisation variants (every single token that is the digit modulo
whitespace); the answer is the expected label Σ p_d·d / Σ p_d, and the label mass Σ p_d is reported.
``scoring="generate"``: the reply is generated (locally or by an OpenAI-compatible endpoint, for API-only
models) and its first digit 1–5 is the answer; replies with none count as parse failures.

Per trait: the mean of the reverse-keyed item scores (``6 − x`` for items keyed −1), their SD across items,
and Cronbach's α with each administration (wording × order, × sample in generation mode) as a respondent
(``None`` when the administrations agree so closely that α would be a ratio of noise).
"""

from __future__ import annotations

import contextlib
import csv
import dataclasses
import io
import json
from collections.abc import Sequence
from importlib import resources
from pathlib import Path
from typing import Any, Literal, Protocol

from rich.table import Table

from traitlab.errors import ConfigError
from traitlab.evaluation import scoring
from traitlab.evaluation.forward import label_token_ids, next_token_logprobs
from traitlab.interventions import Intervention
from traitlab.model.chat import Conversation
from traitlab.model.loaded import LoadedModel
from traitlab.traits.spec import BIG_FIVE
from traitlab.validate import read_text

LABELS = (1, 2, 3, 4, 5)
DATA = Path(str(resources.files("traitlab.evaluation"))) / "data"
_DOMAINS = {"O": "openness", "C": "conscientiousness", "E": "extraversion", "A": "agreeableness",
            "N": "neuroticism"}
_NAMES = {"openness": "openness", "open_mindedness": "openness", "intellect": "openness",
          "conscientiousness": "conscientiousness", "extraversion": "extraversion",
          "extroversion": "extraversion", "agreeableness": "agreeableness", "neuroticism": "neuroticism",
          "negative_emotionality": "neuroticism", "emotional_stability": "neuroticism"}

WORDINGS: tuple[str, ...] = (
    'How accurately does this statement describe you? "{item}" Reply with a number from {scale}.',
    "Please rate how accurately this describes you, from {scale}: {item}",
)
SCALES = {
    "forward": "1 (very inaccurate) to 5 (very accurate)",
    "listing": "5 (very accurate) to 1 (very inaccurate)",
    "labels": "1 (very accurate) to 5 (very inaccurate)",
}
Reverse = Literal["listing", "labels", "none"]
Scoring = Literal["logprob", "generate"]


@dataclasses.dataclass(frozen=True)
class Item:
    """One statement; ``key`` +1 when agreeing indicates the high pole of ``trait``, −1 otherwise."""

    text: str
    trait: str
    key: int
    facet: str | None = None
    id: str | None = None


@dataclasses.dataclass
class Inventory:
    name: str
    items: list[Item]

    @property
    def traits(self) -> list[str]:
        seen = dict.fromkeys(item.trait for item in self.items)
        return [t for t in BIG_FIVE if t in seen] + [t for t in seen if t not in BIG_FIVE]

    def subset(self, traits: Sequence[str] | None = None, max_per_trait: int | None = None) -> Inventory:
        """Items of some traits, at most ``max_per_trait`` each (in inventory order)."""
        counts: dict[str, int] = {}
        chosen = []
        for item in self.items:
            if traits is not None and item.trait not in traits:
                continue
            counts[item.trait] = counts.get(item.trait, 0) + 1
            if max_per_trait is None or counts[item.trait] <= max_per_trait:
                chosen.append(item)
        return Inventory(self.name, chosen)


# ---------------------------------------------------------------------------------------------- loaders


def _trait_name(raw: str, source: str) -> str:
    key = raw.strip()
    if key.upper() in _DOMAINS:
        return _DOMAINS[key.upper()]
    name = _NAMES.get(key.lower().replace("-", "_").replace(" ", "_"))
    if name is None:
        raise ConfigError(f"{source}: unknown trait '{raw}'; use a Big Five name or O/C/E/A/N")
    return name


def _key(raw: Any, source: str) -> int:
    text = str(raw).strip().lower()
    if text in ("1", "+1", "+", "plus", "true", "positive"):
        return 1
    if text in ("-1", "-", "minus", "false", "negative", "r", "reverse", "reversed"):
        return -1
    raise ConfigError(f"{source}: item key '{raw}' is neither +1 nor -1 (also accepted: plus/minus)")


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"questionnaire file {path} not found") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ConfigError(f"questionnaire file {path} is not valid JSON: {exc}") from None


def _read_csv(path: Path) -> list[dict[str, str]]:
    return list(csv.DictReader(io.StringIO(read_text(path, "questionnaire file"), newline="")))


def load_traitlab_json(path: Path) -> Inventory:
    data = _read_json(path)
    if not isinstance(data, dict) or not isinstance(data.get("items"), list):
        raise ConfigError(f"{path} is not a traitlab inventory (needs an 'items' list)")
    items = []
    for i, row in enumerate(data["items"]):
        try:
            items.append(Item(str(row["text"]), _trait_name(row["trait"], str(path)), _key(row["key"], str(path)),
                              row.get("facet"), row.get("id", str(i + 1))))
        except (KeyError, TypeError):
            raise ConfigError(f"{path}: item {i + 1} needs text, trait and key") from None
    return Inventory(data.get("name", path.stem), items)


def load_ipip_json(path: Path, name: str | None = None) -> Inventory:
    """IPIP-NEO-120/300 ``questions.json`` in the Alheimsins layout."""
    data = _read_json(path)
    if not isinstance(data, list) or not data or not all(isinstance(r, dict) and "keyed" in r for r in data):
        raise ConfigError(f"{path} is not an IPIP-NEO questions.json (a list of {{text, keyed, domain, facet}})")
    items = [Item(str(r["text"]), _trait_name(r["domain"], str(path)), _key(r["keyed"], str(path)),
                  f"{r['domain']}{r.get('facet', '')}", r.get("id")) for r in data]
    return Inventory(name or f"ipip-neo-{len(items)}", items)


def load_mpi_csv(path: Path) -> Inventory:
    """MPI inventories (``label_raw, text, label_ocean, key``); rows keyed 0 are skipped."""
    rows = _read_csv(path)
    if not rows or not {"text", "label_ocean", "key"} <= set(rows[0]):
        raise ConfigError(f"{path} is not an MPI CSV (needs columns text, label_ocean, key)")
    items = [Item(r["text"], _trait_name(r["label_ocean"], str(path)), _key(r["key"], str(path)),
                  r.get("label_raw"), str(i + 1)) for i, r in enumerate(rows) if r["key"].strip() not in ("0", "")]
    return Inventory(f"mpi-{len(items)}", items)


def load_psychobench(path: Path, name: str | None = None) -> Inventory:
    """One questionnaire of a PsychoBench ``questionnaires.json`` (BFI by default; ``IPIP-NEO`` works too)."""
    data = _read_json(path)
    wanted = name or "BFI"
    entries = data if isinstance(data, list) else [data]
    entry = next((e for e in entries if isinstance(e, dict) and e.get("name") == wanted), None)
    if entry is None:
        names = [e.get("name") for e in entries if isinstance(e, dict)]
        raise ConfigError(f"{path} has no questionnaire '{wanted}'; it has {', '.join(map(str, names))}")
    if entry.get("scale") not in (None, 6):
        raise ConfigError(f"{wanted} in {path} uses a 1–{entry['scale'] - 1} scale; traitlab administers 1–5")
    reverse = {int(n) for n in entry.get("reverse", [])}
    items = []
    for category in entry.get("categories", []):
        try:
            trait = _trait_name(category["cat_name"], str(path))
        except ConfigError:
            continue
        for number in category["cat_questions"]:
            text = entry["questions"][str(number)]
            items.append(Item(text, trait, -1 if int(number) in reverse else 1, None, str(number)))
    items.sort(key=lambda it: int(it.id or 0))
    if not items:
        raise ConfigError(f"{wanted} in {path} has no Big Five categories")
    return Inventory(wanted, items)


def load_plain_csv(path: Path) -> Inventory:
    """A plain CSV with columns ``text,trait,key`` (optional ``facet``)."""
    rows = _read_csv(path)
    if not rows or not {"text", "trait", "key"} <= set(rows[0]):
        raise ConfigError(f"{path} is not a questionnaire CSV: it needs the columns text,trait,key")
    items = [Item(r["text"], _trait_name(r["trait"], str(path)), _key(r["key"], f"{path} row {i + 2}"),
                  r.get("facet") or None, str(i + 1)) for i, r in enumerate(rows)]
    return Inventory(path.stem, items)


def load_inventory(source: str | Path = "traitlab", format: str = "auto", name: str | None = None) -> Inventory:
    """``"traitlab"`` (the built-in inventory), ``"persona-tiny"`` (the organism's own training items) or a
    file; ``format``: auto, traitlab, ipip, mpi, psychobench, csv. ``name`` picks the questionnaire in a
    PsychoBench file."""
    if str(source) == "traitlab":
        return load_traitlab_json(DATA / "inventory.json")
    if str(source) == "persona-tiny":
        from traitlab.organism.corpus import likert_items

        return Inventory("persona-tiny-train", [Item(i.text, i.trait, i.key) for i in likert_items("train")])
    path = Path(source).expanduser()
    if not path.is_file():
        raise ConfigError(f"questionnaire '{source}' not found: give 'traitlab', 'persona-tiny' or a file "
                          "(IPIP-NEO JSON, MPI CSV, PsychoBench questionnaires.json, or a CSV text,trait,key)")
    loaders = {"traitlab": load_traitlab_json, "ipip": lambda p: load_ipip_json(p, name), "mpi": load_mpi_csv,
               "psychobench": lambda p: load_psychobench(p, name), "csv": load_plain_csv}
    if format != "auto":
        if format not in loaders:
            raise ConfigError(f"unknown questionnaire format '{format}'; use auto, {', '.join(loaders)}")
        return loaders[format](path)
    if path.suffix.lower() == ".csv":
        header = read_text(path, "questionnaire file").splitlines()[:1]
        return load_mpi_csv(path) if header and "label_ocean" in header[0] else load_plain_csv(path)
    data = _read_json(path)
    if isinstance(data, dict) and "items" in data:
        return load_traitlab_json(path)
    if isinstance(data, list) and data and isinstance(data[0], dict) and "keyed" in data[0]:
        return load_ipip_json(path, name)
    if (isinstance(data, list) and data and isinstance(data[0], dict) and "categories" in data[0]) or (
            isinstance(data, dict) and "categories" in data):
        return load_psychobench(path, name)
    raise ConfigError(f"cannot tell the format of {path}; pass format= one of {', '.join(loaders)}")


# ---------------------------------------------------------------------------------------------- prompts


@dataclasses.dataclass(frozen=True)
class Administration:
    """How items are asked: ``wordings`` (templates with ``{item}`` and ``{scale}``) × option orders."""

    wordings: tuple[str, ...] = WORDINGS
    reverse: Reverse = "listing"

    def __post_init__(self) -> None:
        if self.reverse not in ("listing", "labels", "none"):
            raise ConfigError(f"reverse must be listing, labels or none, got '{self.reverse}'")
        if not self.wordings:
            raise ConfigError("an administration needs at least one wording")
        for w in self.wordings:
            if "{item}" not in w or "{scale}" not in w:
                raise ConfigError(f"questionnaire wording lacks {{item}} or {{scale}}: {w!r}")

    @property
    def orders(self) -> list[str]:
        return ["forward"] if self.reverse == "none" else ["forward", self.reverse]

    def respondents(self) -> list[tuple[int, str]]:
        return [(w, order) for w in range(len(self.wordings)) for order in self.orders]

    def prompt(self, item: Item, wording: int, order: str) -> str:
        return self.wordings[wording].replace("{scale}", SCALES[order]).replace("{item}", item.text)

    @staticmethod
    def unflip(answer: float | None, order: str) -> float | None:
        """The answer on the forward scale (``6 − d`` when the labels were reversed)."""
        if answer is None:
            return None
        return 6 - answer if order == "labels" else answer


# ---------------------------------------------------------------------------------------------- results


@dataclasses.dataclass
class TraitScore:
    score: float | None
    sd: float | None
    alpha: float | None
    n_items: int
    facets: dict[str, float]

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclasses.dataclass
class QuestionnaireResult:
    """Answers ``raw[respondent][item]`` on the forward 1–5 scale (``None``: no parsable answer)."""

    inventory: str
    scoring: str
    items: list[Item]
    respondents: list[str]
    raw: list[list[float | None]]
    mass: list[list[float]] | None = None
    parse_failures: int = 0

    @property
    def n_answers(self) -> int:
        return len(self.items) * len(self.respondents)

    @property
    def parse_failure_rate(self) -> float:
        return self.parse_failures / self.n_answers if self.n_answers else 0.0

    @property
    def label_mass(self) -> float | None:
        """Mean probability the model put on the scale labels (log-prob scoring)."""
        if not self.mass:
            return None
        flat = [m for row in self.mass for m in row]
        return sum(flat) / len(flat) if flat else None

    def keyed(self) -> list[list[float | None]]:
        return [[None if v is None else scoring.keyed(v, item.key) for v, item in zip(row, self.items, strict=True)]
                for row in self.raw]

    def item_means(self) -> list[float | None]:
        keyed = self.keyed()
        return [scoring.mean(row[j] for row in keyed) for j in range(len(self.items))]

    @property
    def traits(self) -> dict[str, TraitScore]:
        keyed = self.keyed()
        means = self.item_means()
        out = {}
        for trait in dict.fromkeys(item.trait for item in self.items):
            cols = [j for j, item in enumerate(self.items) if item.trait == trait]
            values = [means[j] for j in cols if means[j] is not None]
            complete = [[row[j] for j in cols] for row in keyed if all(row[j] is not None for j in cols)]
            facets: dict[str, list[float]] = {}
            for j in cols:
                if self.items[j].facet and means[j] is not None:
                    facets.setdefault(self.items[j].facet, []).append(means[j])  # type: ignore[arg-type]
            out[trait] = TraitScore(scoring.mean(values), scoring.sd(values),
                                    scoring.cronbach_alpha(complete), len(cols),
                                    {f: sum(v) / len(v) for f, v in facets.items()})
        return out

    def scores(self) -> dict[str, float | None]:
        return {trait: ts.score for trait, ts in self.traits.items()}

    def to_dict(self, with_items: bool = False) -> dict[str, Any]:
        data: dict[str, Any] = {
            "inventory": self.inventory, "scoring": self.scoring, "n_items": len(self.items),
            "respondents": self.respondents, "parse_failure_rate": self.parse_failure_rate,
            "label_mass": self.label_mass, "traits": {t: s.to_dict() for t, s in self.traits.items()},
        }
        if with_items:
            data["items"] = [{**dataclasses.asdict(item), "mean_keyed": m}
                             for item, m in zip(self.items, self.item_means(), strict=True)]
        return data

    def table(self, title: str | None = None) -> Table:
        table = Table(title=title or f"{self.inventory} ({self.scoring}; {len(self.respondents)} administrations)")
        for column in ("trait", "score (1-5)", "SD", "alpha", "items"):
            table.add_column(column, justify="left" if column == "trait" else "right")
        for trait, ts in self.traits.items():
            table.add_row(trait, _fmt(ts.score), _fmt(ts.sd), _fmt(ts.alpha), str(ts.n_items))
        return table


def _fmt(value: float | None, digits: int = 2) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


# ---------------------------------------------------------------------------------------------- administer


class Responder(Protocol):
    """Something that replies to conversations (generation scoring): a local model or an endpoint."""

    def respond(self, conversations: Sequence[Conversation], max_tokens: int, temperature: float,
                seed: int) -> list[str]: ...


class LocalResponder:
    def __init__(self, lm: LoadedModel, batch_size: int = 32) -> None:
        self.lm = lm
        self.batch_size = batch_size

    def respond(self, conversations: Sequence[Conversation], max_tokens: int, temperature: float,
                seed: int) -> list[str]:
        return self.lm.generate_chat(list(conversations), max_new_tokens=max_tokens, temperature=temperature,
                                     seed=seed, batch_size=self.batch_size, progress=False).texts


class EndpointResponder:
    """Replies from an OpenAI-compatible endpoint (``traitlab.evaluation.client.ChatClient``)."""

    def __init__(self, client: Any) -> None:
        self.client = client

    def respond(self, conversations: Sequence[Conversation], max_tokens: int, temperature: float,
                seed: int) -> list[str]:
        done = self.client.complete_many(list(conversations), max_tokens=max_tokens, temperature=temperature,
                                         seed=seed if temperature > 0 else None)
        return [c.text for c in done]


def _conversation(text: str, system: str | None) -> Conversation:
    turns: Conversation = [{"role": "user", "content": text}]
    return [{"role": "system", "content": system}, *turns] if system else turns


def administer(model: LoadedModel | Responder, inventory: Inventory | str = "traitlab", *,
               intervention: Intervention | None = None, system: str | None = None,
               scoring_mode: Scoring = "logprob", administration: Administration | None = None,
               samples: int = 1, temperature: float = 0.0, seed: int = 0, max_tokens: int = 4,
               batch_size: int = 64, progress: bool = False) -> QuestionnaireResult:
    """Administer ``inventory`` to ``model`` (a ``LoadedModel``, or a ``Responder`` for generation scoring)
    under ``intervention`` and/or a persona ``system`` prompt, and score it."""
    inv = load_inventory(inventory) if isinstance(inventory, str) else inventory
    admin = administration or Administration()
    if not inv.items:
        raise ConfigError(f"inventory {inv.name} has no items")
    is_lm = isinstance(model, LoadedModel)
    if scoring_mode == "logprob" and not is_lm:
        raise ConfigError("log-prob scoring needs a local model; use scoring='generate' for an endpoint")
    if scoring_mode not in ("logprob", "generate"):
        raise ConfigError(f"scoring must be logprob or generate, got '{scoring_mode}'")
    if samples < 1:
        raise ConfigError(f"samples must be ≥ 1, got {samples}")
    if intervention is not None and not is_lm:
        raise ConfigError("an Intervention needs a local model")
    slots = admin.respondents()
    convs = [_conversation(admin.prompt(item, w, order), system) for w, order in slots for item in inv.items]
    n = len(inv.items)
    applied = intervention.applied(model) if intervention is not None else contextlib.nullcontext()
    with applied:
        if scoring_mode == "logprob":
            lm: LoadedModel = model  # type: ignore[assignment]
            ids = lm.encode(lm.render(convs))
            label_ids = label_token_ids(lm.tokenizer, LABELS)
            columns = [t for label in LABELS for t in label_ids[label]]
            logprobs = next_token_logprobs(lm, ids, batch_size, progress, "questionnaire", columns=columns)
            probs, offset = {}, 0
            for label in LABELS:  # a label's probability: the sum over its tokenisation variants
                width = len(label_ids[label])
                probs[label] = logprobs[:, offset:offset + width].exp().sum(-1)
                offset += width
            raw, mass = [], []
            for r, (_, order) in enumerate(slots):
                row, mrow = [], []
                for j in range(n):
                    k = r * n + j
                    value, m = scoring.expected_label({label: float(p[k]) for label, p in probs.items()})
                    row.append(admin.unflip(value, order))
                    mrow.append(m)
                raw.append(row)
                mass.append(mrow)
            names = [f"w{w}/{order}" for w, order in slots]
            return QuestionnaireResult(inv.name, "logprob", inv.items, names, raw, mass)
        responder = LocalResponder(model, batch_size) if is_lm else model  # type: ignore[arg-type]
        raw, names, failures = [], [], 0
        for s in range(samples):
            texts = responder.respond(convs, max_tokens, temperature, seed + s)
            for r, (w, order) in enumerate(slots):
                row = []
                for j in range(n):
                    digit = scoring.parse_first_integer(texts[r * n + j], 1, 5)
                    failures += digit is None
                    row.append(admin.unflip(None if digit is None else float(digit), order))
                raw.append(row)
                names.append(f"w{w}/{order}/s{s}")
        return QuestionnaireResult(inv.name, "generate", inv.items, names, raw, None, failures)
