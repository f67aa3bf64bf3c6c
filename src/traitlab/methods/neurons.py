"""Neuron-based Personality Trait Induction, NPTI (Deng et al., ICLR 2025, arXiv 2410.12327).

1. **Statistics.** For each of a trait's two poles the model answers situational questions while role-playing
   that pole (the TraitSpec's ``pos`` / ``neg`` instructions, or NPTI's ``description.json`` personas). During
   that very generation (``stream_neurons`` with ``positions="response"``, no second pass) every neuron of every
   block is recorded at the neuron site (``act_fn(gate_proj(x))`` for gated MLPs, the activation output for
   GPT-2 / GPT-NeoX): Pr_i = fraction of generated tokens with n_i > 0 (exact) and a95_i, the 95th percentile of
   n_i (streaming histogram, ``traitlab.methods.neuron_stats``; |error| ≤ half a bin width, stored per neuron).
   Given answers already sampled (``collect(answers=...)``, e.g. a run's answer bank shared with other fits),
   the same statistics come from a teacher-forced pass over them (``stats_from_answers``), equal up to float
   rounding (the ``npti`` recipe does this, with both poles sampled from one seed).
2. **Identification.** δ_i = Pr_i(target pole) − Pr_i(opposite pole). Neurons with δ_i ≥ τ (default 0.1)
   are the target pole's, δ_i ≤ −τ the opposite pole's; optionally also the top-k by |δ| over all blocks,
   assigned by the sign of δ (NPTI keeps its top 2000 plus all past the threshold).
3. **Induction** at the selected positions (generated tokens by default; ``positions="all"`` adds the prompt):
   opposite-pole neurons n_j ← min(0, n_j); target-pole neurons n_i ← n_i + γ·a95_i·f(δ_i) with
   f(δ) = 1 / (1 + e^(−10(|δ| − 0.15))) and a95 taken under the target pole (clipped at 0). γ is the
   Intervention's scale (default 1.0; the paper uses 0.6–1.5). Switches: ``use_f=False`` (f ≡ 1),
   ``boost_only``, ``clamp_only``, ``boost_fraction`` (a seeded random share of the target neurons is boosted;
   NPTI boosts 90%).

The artifact keeps the full statistics of both poles (Pr in float32, a95 and its error bound in float16:
~1e-3 relative rounding on top of the estimator's bound) and the token counts, so ``with_options(threshold=,
top_k=, use_f=, target=, ...)`` re-derives the selection without collecting again; it also stores the
selected indices, boosts and δ per block for readers that do not re-derive.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import random
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import torch

from traitlab.errors import ConfigError
from traitlab.interventions import Coef, Intervention, kwargs_from_meta
from traitlab.methods.neuron_stats import DEFAULT_BINS, NeuronHistogram
from traitlab.model import Generation, LoadedModel, neuron_edit, stream_neurons
from traitlab.model.positions import check_positions
from traitlab.progress import activity
from traitlab.readers import jsonl_rows
from traitlab.traits import TraitSpec
from traitlab.validate import read_text

SIDES = ("pos", "neg")
F_SLOPE, F_CENTRE = 10.0, 0.15


def f_delta(delta: torch.Tensor) -> torch.Tensor:
    """NPTI's boost weight f(δ) = 1 / (1 + e^(−10(|δ| − 0.15)))."""
    return torch.sigmoid(F_SLOPE * (delta.abs() - F_CENTRE))


# ---------------------------------------------------------------------------------------------- statistics


@dataclasses.dataclass(frozen=True)
class CollectionSettings:
    """How the statistics are collected. ``n_answers`` answers per pole (default: every question under every
    instruction once, at most 200), sampled at ``temperature`` from ``seed`` (0 = greedy)."""

    n_answers: int | None = None
    max_new_tokens: int = 64
    temperature: float = 0.7
    top_p: float = 1.0
    seed: int = 0
    batch_size: int = 32
    bins: int = DEFAULT_BINS
    quantile: float = 0.95

    def __post_init__(self) -> None:
        if self.n_answers is not None and self.n_answers < 1:
            raise ConfigError(f"n_answers must be ≥ 1, got {self.n_answers}")
        if self.max_new_tokens < 1:
            raise ConfigError(f"max_new_tokens must be ≥ 1, got {self.max_new_tokens}")
        if self.temperature < 0:
            raise ConfigError(f"temperature must be ≥ 0, got {self.temperature}")
        if self.batch_size < 1:
            raise ConfigError(f"batch_size must be ≥ 1, got {self.batch_size}")
        if self.bins < 2 or self.bins & (self.bins - 1):
            raise ConfigError(f"bins must be a power of two ≥ 2, got {self.bins}")
        if not 0 < self.quantile < 1:
            raise ConfigError(f"quantile must be in (0, 1), got {self.quantile}")


@dataclasses.dataclass
class PoleStats:
    """Per-block statistics of one pole, ``[blocks, neurons]``: exact firing rate, a95 and its error bound."""

    firing: torch.Tensor
    a95: torch.Tensor
    a95_err: torch.Tensor
    tokens: int
    answers: int


@dataclasses.dataclass
class NeuronStats:
    """Both poles' statistics. ``poles`` names each side (``{"pos": "high", "neg": "low"}``)."""

    pos: PoleStats
    neg: PoleStats
    poles: dict[str, str]

    def side(self, name: str) -> PoleStats:
        return self.pos if name == "pos" else self.neg

    def delta(self, target: str = "pos") -> torch.Tensor:
        """δ = Pr(target) − Pr(opposite), float32 ``[blocks, neurons]``."""
        other = "neg" if target == "pos" else "pos"
        return self.side(target).firing.float() - self.side(other).firing.float()

    @property
    def shape(self) -> tuple[int, int]:
        return tuple(self.pos.firing.shape)  # type: ignore[return-value]

    def tensors(self) -> dict[str, torch.Tensor]:
        out = {}
        for name in SIDES:
            stats = self.side(name)
            out[f"stats.firing.{name}"] = stats.firing.float()
            out[f"stats.a95.{name}"] = stats.a95.clamp(-65000, 65000).half()
            out[f"stats.a95_err.{name}"] = stats.a95_err.clamp(max=65000).half()
        return out

    def meta(self) -> dict[str, Any]:
        return {"poles": self.poles, "tokens": {n: self.side(n).tokens for n in SIDES},
                "answers": {n: self.side(n).answers for n in SIDES}}

    @classmethod
    def from_tensors(cls, meta: Mapping[str, Any], tensors: Mapping[str, torch.Tensor]) -> NeuronStats:
        sides = {n: PoleStats(tensors[f"stats.firing.{n}"].float(), tensors[f"stats.a95.{n}"].float(),
                              tensors[f"stats.a95_err.{n}"].float(), int(meta["tokens"][n]),
                              int(meta["answers"][n])) for n in SIDES}
        return cls(sides["pos"], sides["neg"], dict(meta["poles"]))


def collect_pole(lm: LoadedModel, questions: Sequence[str], systems: Sequence[str],
                 settings: CollectionSettings | None = None, progress: bool = True) -> tuple[PoleStats, Generation]:
    """Answer ``questions[i]`` under system prompt ``systems[i]`` and record the statistics of every neuron of
    every block on the generated tokens, during the generation itself."""
    settings = settings or CollectionSettings()
    blocks = list(range(lm.num_layers))
    histogram = NeuronHistogram(settings.bins, n_blocks=len(blocks))
    with stream_neurons(lm, blocks, histogram, positions="response"):
        generation = lm.generate_chat(list(questions), list(systems), max_new_tokens=settings.max_new_tokens,
                                      temperature=settings.temperature, top_p=settings.top_p, seed=settings.seed,
                                      batch_size=settings.batch_size, progress=progress)
    return _pole_stats(histogram, blocks, settings, len(questions)), generation


def fed_responses(generation: Generation) -> list[list[int]]:
    """The reply tokens a generation fed back to the model, per row: all of a reply that stopped on a stop token
    (the stop token is dropped from ``response_ids`` and its own step is masked), all but the last token of a
    reply cut at ``max_new_tokens`` (its last token was sampled but never fed). These are exactly the tokens
    ``stream_neurons(positions="response")`` records during the generation."""
    return [list(ids) if done else list(ids[:-1])
            for ids, done in zip(generation.response_ids, generation.finished, strict=True)]


def stats_from_answers(lm: LoadedModel, generation: Generation, settings: CollectionSettings | None = None,
                       progress: bool = True) -> PoleStats:
    """``collect_pole``'s statistics from answers already sampled: batched teacher-forced passes over each row's
    prompt (system prompt included) and ``fed_responses``, recording every neuron at the reply positions.

    Causal attention makes a teacher-forced activation at position t a function of tokens ≤ t only, so it equals
    the one computed during KV-cache generation up to float rounding (other padding and batch shapes): the
    firing rates agree except for activations within rounding of 0, the a95 within the histogram bounds (the
    histogram sees the tokens in another order, so its bins differ; each estimate is within w/2 of the exact
    quantile). ``tests/neurons/test_npti_stats.py`` checks both on a tiny model."""
    from traitlab.model import pack, teacher_forced
    from traitlab.model.capture import stop_after_block
    from traitlab.progress import track

    settings = settings or CollectionSettings()
    blocks = list(range(lm.num_layers))
    responses = fed_responses(generation)
    prompts = generation.prompt_ids
    order = sorted(range(len(prompts)), key=lambda i: len(prompts[i]) + len(responses[i]))
    chunks = [order[i:i + settings.batch_size] for i in range(0, len(order), settings.batch_size)]
    histogram = NeuronHistogram(settings.bins, n_blocks=len(blocks))
    with stream_neurons(lm, blocks, histogram, positions="response"), stop_after_block(lm, blocks[-1]):
        for rows in track(chunks, "neuron statistics of the answers", total=len(chunks),
                          enabled=progress and len(chunks) > 1):
            batch = pack([prompts[i] for i in rows], [responses[i] for i in rows], generation.pad_token_id)
            input_ids, attention_mask, roles = (t.to(lm.device) for t in batch)
            teacher_forced(lm, input_ids, attention_mask, roles)
    return _pole_stats(histogram, blocks, settings, len(prompts))


def _pole_stats(histogram: NeuronHistogram, blocks: list[int], settings: CollectionSettings,
                answers: int) -> PoleStats:
    histogram.finalize()
    if not histogram.tokens(0):
        raise ConfigError("the model generated no tokens to record (every answer ended at once); raise "
                          "max_new_tokens or check the chat template")
    firing = torch.stack([histogram.firing_rate(b) for b in blocks]).float().cpu()
    quantiles = [histogram.quantile(b, settings.quantile) for b in blocks]
    a95 = torch.stack([q[0] for q in quantiles]).float().cpu()
    err = torch.stack([q[1] for q in quantiles]).float().cpu()
    return PoleStats(firing, a95, err, histogram.tokens(0), answers)


def pole_rows(pairs: Sequence[tuple[str, str]], questions: Sequence[str], n_answers: int | None,
              seed: int = 0) -> tuple[list[str], list[str], list[str]]:
    """(questions, pos systems, neg systems) of the collection: the shuffled product of instruction pairs and
    questions (seeded), cycled up to ``n_answers`` rows (default the whole product, at most 200)."""
    if not pairs or not questions:
        raise ConfigError("NPTI needs at least one instruction pair and one question")
    product = [(p, q) for p in range(len(pairs)) for q in range(len(questions))]
    random.Random(seed).shuffle(product)
    n = n_answers or min(len(product), 200)
    rows = [product[i % len(product)] for i in range(n)]
    return ([questions[q] for _, q in rows], [pairs[p][0] for p, _ in rows], [pairs[p][1] for p, _ in rows])


def collect(lm: LoadedModel, pairs: Sequence[tuple[str, str]], questions: Sequence[str],
            settings: CollectionSettings | None = None, poles: Mapping[str, str] | None = None,
            progress: bool = True, answers: tuple[Generation, Generation] | None = None) -> NeuronStats:
    """Statistics of both sides of ``pairs`` (``(pos system prompt, neg system prompt)``) over ``questions``
    (the pos side sampled with ``settings.seed``, the neg side with ``settings.seed + 1``).

    ``answers``: the (pos, neg) sides' answers already sampled (e.g. a run's answer bank, shared with persona
    vectors and a subnetwork); then nothing is generated and the statistics come from a teacher-forced pass over
    them (``stats_from_answers``; ``pairs``, ``questions`` and the sampling settings are not used)."""
    settings = settings or CollectionSettings()
    high, low = (poles or {}).get("pos", "high"), (poles or {}).get("neg", "low")
    if answers is not None:
        with activity(f"NPTI neuron statistics, {high} pole, {lm.num_layers} blocks"):
            pos = stats_from_answers(lm, answers[0], settings, progress)
        with activity(f"NPTI neuron statistics, {low} pole, {lm.num_layers} blocks"):
            neg = stats_from_answers(lm, answers[1], settings, progress)
        return NeuronStats(pos, neg, dict(poles or {"pos": "high", "neg": "low"}))
    qs, pos_systems, neg_systems = pole_rows(pairs, questions, settings.n_answers, settings.seed)
    with activity(f"NPTI neuron statistics, {high} pole, {lm.num_layers} blocks"):
        pos, _ = collect_pole(lm, qs, pos_systems, settings, progress)
    with activity(f"NPTI neuron statistics, {low} pole, {lm.num_layers} blocks"):
        neg, _ = collect_pole(lm, qs, neg_systems, dataclasses.replace(settings, seed=settings.seed + 1), progress)
    return NeuronStats(pos, neg, dict(poles or {"pos": "high", "neg": "low"}))


# ---------------------------------------------------------------------------------------------- selection


@dataclasses.dataclass(frozen=True)
class SelectionOptions:
    """How neurons are chosen and edited from the statistics (module docstring)."""

    target: str = "pos"
    threshold: float = 0.1
    top_k: int = 0
    use_f: bool = True
    boost_only: bool = False
    clamp_only: bool = False
    boost_fraction: float = 1.0
    seed: int = 0
    positions: str = "response"

    def __post_init__(self) -> None:
        if self.target not in SIDES:
            raise ConfigError(f"target must be 'pos' or 'neg', got '{self.target}'")
        if not 0 < self.threshold <= 1:
            raise ConfigError(f"threshold must be in (0, 1], got {self.threshold}")
        if self.top_k < 0:
            raise ConfigError(f"top_k must be ≥ 0, got {self.top_k}")
        if self.boost_only and self.clamp_only:
            raise ConfigError("boost_only and clamp_only exclude each other")
        if not 0 <= self.boost_fraction <= 1:
            raise ConfigError(f"boost_fraction must be in [0, 1], got {self.boost_fraction}")
        if self.positions not in ("response", "all"):
            check_positions(self.positions)
            raise ConfigError(f"NPTI edits positions 'response' or 'all', not '{self.positions}'")


Selection = tuple[dict[int, tuple[torch.Tensor, torch.Tensor]], dict[int, torch.Tensor]]


def select(stats: NeuronStats, options: SelectionOptions) -> Selection:
    """Per block: (boosted indices, boost values a95·f(δ)) and clamped indices."""
    delta = stats.delta(options.target)
    target = delta >= options.threshold
    opposite = delta <= -options.threshold
    if options.top_k:
        flat = delta.abs().flatten()
        top = torch.zeros_like(flat, dtype=torch.bool)
        top[flat.topk(min(options.top_k, flat.numel())).indices] = True
        top = top.view_as(delta) & (delta != 0)
        target |= top & (delta > 0)
        opposite |= top & (delta < 0)
    if options.clamp_only:
        target[:] = False
    if options.boost_only:
        opposite[:] = False
    if options.boost_fraction < 1:
        chosen = target.flatten().nonzero().squeeze(1)
        keep = round(options.boost_fraction * len(chosen))
        order = torch.randperm(len(chosen), generator=torch.Generator().manual_seed(options.seed))
        target = torch.zeros_like(target.flatten())
        target[chosen[order[:keep]]] = True
        target = target.view_as(delta)
    weight = f_delta(delta) if options.use_f else torch.ones_like(delta)
    boost = stats.side(options.target).a95.float().clamp(min=0) * weight
    boosts: dict[int, tuple[torch.Tensor, torch.Tensor]] = {}
    clamps: dict[int, torch.Tensor] = {}
    for block in range(delta.shape[0]):
        idx = target[block].nonzero().squeeze(1)
        if len(idx):
            boosts[block] = (idx, boost[block, idx])
        idx = opposite[block].nonzero().squeeze(1)
        if len(idx):
            clamps[block] = idx
    return boosts, clamps


# ---------------------------------------------------------------------------------------------- intervention


class NeuronInduction(Intervention):
    """NPTI: boost the target pole's neurons by γ·a95·f(δ) and clamp the opposite pole's at min(0, n), at the
    neuron site of each block (0-based block index; block k writes layer k+1). Scale = γ; per-row scales work
    (a row with scale 0 is left untouched)."""

    mechanism = "npti"

    def __init__(self, boosts: Mapping[int, tuple[torch.Tensor, torch.Tensor]], clamps: Mapping[int, torch.Tensor],
                 stats: NeuronStats | None = None, options: SelectionOptions | None = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.options = options or SelectionOptions()
        self.boosts = {int(b): (torch.as_tensor(i, dtype=torch.long), torch.as_tensor(v, dtype=torch.float32))
                       for b, (i, v) in boosts.items() if len(i)}
        self.clamps = {int(b): torch.as_tensor(i, dtype=torch.long) for b, i in clamps.items() if len(i)}
        self.stats = stats

    @classmethod
    def from_stats(cls, stats: NeuronStats, options: SelectionOptions | None = None, **kwargs: Any) -> NeuronInduction:
        options = options or SelectionOptions()
        boosts, clamps = select(stats, options)
        return cls(boosts, clamps, stats, options, **kwargs)

    def with_options(self, **changes: Any) -> NeuronInduction:
        """A new intervention re-derived from the stored statistics with other selection options
        (``threshold``, ``top_k``, ``use_f``, ``boost_only``, ``clamp_only``, ``boost_fraction``, ``seed``,
        ``positions``, ``target`` as ``pos``/``neg`` or a pole name); the scale is kept."""
        if self.stats is None:
            raise ConfigError(f"{self.name} carries no statistics; collect them again to change the selection")
        unknown = set(changes) - {f.name for f in dataclasses.fields(SelectionOptions)}
        if unknown:
            raise ConfigError(f"unknown NPTI option(s) {', '.join(sorted(unknown))}")
        if "target" in changes:
            changes["target"] = self.side_of(changes["target"])
        options = dataclasses.replace(self.options, **changes)
        kwargs = self.common_kwargs()
        kwargs["pole"] = self.stats.poles.get(options.target, kwargs["pole"])
        kwargs["hyperparameters"] = {**self.hyperparameters, "selection": dataclasses.asdict(options)}
        return NeuronInduction.from_stats(self.stats, options, **kwargs)

    def side_of(self, pole: str) -> str:
        """``pos``/``neg`` for a side or pole name (``high``/``low``)."""
        if pole in SIDES:
            return pole
        poles = self.stats.poles if self.stats else {}
        for side, name in poles.items():
            if name == pole:
                return side
        raise ConfigError(f"unknown pole '{pole}'; this artifact has {', '.join(f'{k}={v}' for k, v in poles.items())}")

    # counts and views

    @property
    def blocks(self) -> list[int]:
        return sorted(set(self.boosts) | set(self.clamps))

    def counts(self) -> dict[int, tuple[int, int]]:
        """Per block: (boosted, clamped) neuron counts."""
        return {b: (len(self.boosts[b][0]) if b in self.boosts else 0, len(self.clamps.get(b, ())))
                for b in self.blocks}

    @contextlib.contextmanager
    def _apply(self, lm: LoadedModel, coef: Coef) -> Iterator[None]:
        with contextlib.ExitStack() as stack:
            for block in self.blocks:
                index, values = self.boosts.get(block, (torch.empty(0, dtype=torch.long), torch.empty(0)))
                stack.enter_context(neuron_edit(lm, block, index, values, self.clamps.get(block, ()), coef,
                                                self.options.positions))
            yield

    # artifact

    def tensors(self) -> dict[str, torch.Tensor]:
        out: dict[str, torch.Tensor] = {}
        if self.stats is not None:
            out.update(self.stats.tensors())
            delta = self.stats.delta(self.options.target)
        for block, (index, values) in self.boosts.items():
            out[f"boost_index.{block}"] = index
            out[f"boost.{block}"] = values
        for block, index in self.clamps.items():
            out[f"clamp_index.{block}"] = index
        if self.stats is not None:
            for block in self.blocks:
                chosen = torch.cat([self.boosts[block][0] if block in self.boosts else torch.empty(0, dtype=torch.long),
                                    self.clamps.get(block, torch.empty(0, dtype=torch.long))])
                out[f"delta.{block}"] = delta[block, chosen]
        return out

    def params(self) -> dict[str, Any]:
        return {"options": dataclasses.asdict(self.options), "blocks": self.blocks,
                "counts": {str(b): list(c) for b, c in self.counts().items()},
                "stats": self.stats.meta() if self.stats is not None else None,
                "block_convention": "0-based block index; block k writes layer k+1"}

    @classmethod
    def from_artifact(cls, meta: dict[str, Any], tensors: dict[str, torch.Tensor]) -> Intervention:
        params = meta["params"]
        boosts = {b: (tensors[f"boost_index.{b}"], tensors[f"boost.{b}"]) for b in params["blocks"]
                  if f"boost_index.{b}" in tensors}
        clamps = {b: tensors[f"clamp_index.{b}"] for b in params["blocks"] if f"clamp_index.{b}" in tensors}
        stats = NeuronStats.from_tensors(params["stats"], tensors) if params.get("stats") else None
        return cls(boosts, clamps, stats, SelectionOptions(**params["options"]), **kwargs_from_meta(meta))


# ---------------------------------------------------------------------------------------------- fitting


def side_for(spec: TraitSpec, pole: str | None) -> str:
    """The spec side (``pos``/``neg``) that shows ``pole``: the spec's own pole (or ``high`` for a spec without
    one) is its ``pos`` side."""
    if pole is None:
        return "pos"
    if pole not in ("high", "low"):
        raise ConfigError(f"pole must be high or low, got '{pole}'")
    return "pos" if pole == (spec.pole or "high") else "neg"


def spec_poles(spec: TraitSpec) -> dict[str, str]:
    own = spec.pole or "high"
    return {"pos": own, "neg": "low" if own == "high" else "high"}


def load_npti_descriptions(path: str | Path, trait: str) -> dict[str, list[str]]:
    """NPTI's ``description.json`` personas of one trait: ``{"high": [...], "low": [...]}``.

    Layout (NPTI's dataset/description.json): JSON lines (or one JSON list of objects), each object with a key
    per Big Five trait (``"Extraversion"``) holding a second-person description of the high pole, and
    ``"<Trait>_reversed"`` for the low pole. Keys match case-insensitively."""
    source = Path(path).expanduser()
    if not source.is_file():
        raise ConfigError(f"description file {source} not found")
    text = read_text(source, "description file")
    try:
        data = json.loads(text)
        rows = data if isinstance(data, list) else [data]
    except json.JSONDecodeError:
        rows = [row for _, row in jsonl_rows(text, source)]
    high: list[str] = []
    low: list[str] = []
    for row in rows:
        if not isinstance(row, dict):
            raise ConfigError(f"{source}: every entry must be a JSON object with trait keys")
        keys = {str(k).lower(): v for k, v in row.items()}
        for key, bucket in ((trait.lower(), high), (f"{trait.lower()}_reversed", low)):
            value = keys.get(key)
            if isinstance(value, str) and value.strip():
                bucket.append(value.strip())
    if not high or not low:
        raise ConfigError(f"{source} has no '{trait.capitalize()}' and '{trait.capitalize()}_reversed' "
                          "descriptions (NPTI description.json layout)")
    return {"high": high, "low": low}


def description_pairs(descriptions: Mapping[str, Sequence[str]], spec: TraitSpec) -> list[tuple[str, str]]:
    """Instruction pairs (spec's pos side, neg side) from per-pole descriptions, zipped in order (cycled)."""
    poles = spec_poles(spec)
    pos, neg = list(descriptions[poles["pos"]]), list(descriptions[poles["neg"]])
    return [(pos[i % len(pos)], neg[i % len(neg)]) for i in range(max(len(pos), len(neg)))]


def fit(lm: LoadedModel, spec: TraitSpec, pole: str | None = None, settings: CollectionSettings | None = None,
        options: SelectionOptions | None = None, pairs: Sequence[tuple[str, str]] | None = None,
        questions: Sequence[str] | None = None, progress: bool = True,
        answers: tuple[Generation, Generation] | None = None) -> NeuronInduction:
    """Collect both poles' statistics for ``spec`` (its instruction pairs and extraction questions unless
    ``pairs`` / ``questions`` are given; ``answers``: both sides' answers already sampled, see ``collect``) and
    select neurons for ``pole`` (default the spec's own)."""
    settings = settings or CollectionSettings()
    options = dataclasses.replace(options or SelectionOptions(), target=side_for(spec, pole))
    pair_list = list(pairs) if pairs is not None else [(p.pos, p.neg) for p in spec.instruction]
    stats = collect(lm, pair_list, list(questions if questions is not None else spec.questions), settings,
                    spec_poles(spec), progress, answers)
    hyper = {"collection": dataclasses.asdict(settings), "selection": dataclasses.asdict(options),
             "instruction_pairs": len(pair_list), "spec": spec.name,
             **({"answers": "given; teacher-forced statistics"} if answers is not None else {})}
    return NeuronInduction.from_stats(stats, options, trait=spec.trait_name, pole=stats.poles[options.target],
                                      hyperparameters=hyper, fingerprint=lm.fingerprint,
                                      neuron_site=lm.family.neuron_site, extra={"spec": spec.name})
