"""NPTI statistics: the streaming histogram against brute force (exact Pr, a95 within the stated bound),
collection during generation on generated tokens only, and non-gated families."""

from __future__ import annotations

import pytest
import torch

from tests.conftest import cached_tiny
from traitlab.errors import ConfigError
from traitlab.methods.neuron_stats import NeuronHistogram
from traitlab.methods.neurons import CollectionSettings, collect_pole
from traitlab.model import stream_neurons

QUESTIONS = ["How was your weekend?", "Plans for Friday?", "A friend is late. What now?", "Favourite food?"]


def _check_against_brute_force(hist: NeuronHistogram, block: int, acts: torch.Tensor) -> None:
    acts = acts.double()
    assert hist.tokens(block) == acts.shape[0]
    assert torch.equal(hist.firing_rate(block), (acts > 0).double().mean(0))  # exact
    for q in (0.0, 0.5, 0.95, 1.0):
        estimate, bound = hist.quantile(block, q)
        error = (estimate - torch.quantile(acts, q, dim=0)).abs()
        assert bool((error <= bound * (1 + 1e-4) + 1e-6).all()), (q, float((error / bound).max()))


def test_histogram_bound_holds_through_range_doublings():
    g = torch.Generator().manual_seed(0)
    width = 40
    parts = [torch.randn(50, width, generator=g) * 0.01,  # narrow warm-up ...
             torch.randn(700, width, generator=g) * 3 + 1,  # ... then values far outside it, both ways
             -20 * torch.rand(90, width, generator=g),
             torch.nn.functional.silu(4 * torch.randn(300, width, generator=g))]
    parts[0][:, 0] = 0.0  # a neuron that is exactly constant during the warm-up
    hist = NeuronHistogram(bins=64, buffer_tokens=50)
    for part in parts:
        for chunk in part.split(13):
            hist(0, chunk)
    _check_against_brute_force(hist, 0, torch.cat(parts))
    # the bound is half a bin width, and the range covers every value
    state = hist.blocks[0]
    assert int(state.hist.sum(1).unique()) == sum(p.shape[0] for p in parts)
    assert bool((hist.quantile(0)[1] == state.width / 2).all())


def test_histogram_memory_does_not_grow_with_tokens():
    hist = NeuronHistogram(bins=32, buffer_tokens=16)
    hist(0, torch.randn(20, 8))
    first = hist.nbytes()
    for _ in range(20):
        hist(0, torch.randn(50, 8))
    assert hist.nbytes() == first


def test_histogram_rejects_bad_settings():
    with pytest.raises(ConfigError, match="power of two"):
        NeuronHistogram(bins=100)
    with pytest.raises(ConfigError, match="no activations"):
        NeuronHistogram().quantile(0)


@pytest.mark.parametrize("family", ["llama", "gpt2", "gpt_neox"])
def test_statistics_during_generation_equal_brute_force(family):
    lm = cached_tiny(family)
    blocks = list(range(lm.num_layers))
    hist = NeuronHistogram(bins=128, buffer_tokens=40, n_blocks=len(blocks))
    raw: dict[int, list[torch.Tensor]] = {b: [] for b in blocks}
    with stream_neurons(lm, blocks, hist, positions="response"), \
            stream_neurons(lm, blocks, lambda b, a: raw[b].append(a.clone()), positions="response"):
        generation = lm.generate_chat(QUESTIONS * 2, max_new_tokens=12, temperature=1.0, seed=3, progress=False)
    # generated tokens only: every response token fed back to the model (the last one of a truncated row never is)
    fed = sum(len(r) for r in generation.response_ids) - sum(not f for f in generation.finished)
    for block in blocks:
        acts = torch.cat(raw[block])
        assert acts.shape == (fed, lm.intermediate_size)
        _check_against_brute_force(hist, block, acts)


def test_collect_pole_shapes_and_settings():
    lm = cached_tiny("llama")
    stats, generation = collect_pole(lm, QUESTIONS, ["Be loud."] * 4, CollectionSettings(max_new_tokens=6),
                                     progress=False)
    assert stats.firing.shape == stats.a95.shape == stats.a95_err.shape == (lm.num_layers, lm.intermediate_size)
    assert stats.answers == 4 and stats.tokens == sum(len(r) for r in generation.response_ids) - sum(
        not f for f in generation.finished)
    assert bool(((stats.firing >= 0) & (stats.firing <= 1)).all())
    with pytest.raises(ConfigError, match="bins"):
        CollectionSettings(bins=3)


@pytest.mark.parametrize("family", ["llama", "gpt2"])
def test_teacher_forced_statistics_equal_those_streamed_during_generation(family, monkeypatch):
    """``stats_from_answers`` (one teacher-forced pass over answers already sampled, as the demo's answer bank
    gives them) records the same tokens as ``collect_pole`` (during KV-cache generation): the same token count,
    the same activations up to float rounding (compared per neuron as sorted columns: the two passes see the
    tokens in other orders), firing rates that differ only where an activation is within rounding of 0, and
    a95 within the two histograms' error bounds."""
    from traitlab.methods.neurons import stats_from_answers

    lm = cached_tiny(family)
    monkeypatch.setattr(lm, "stop_ids", list(range(0, lm.tokenizer.vocab_size, 40)))  # some rows stop early
    blocks = list(range(lm.num_layers))
    settings = CollectionSettings(max_new_tokens=12, temperature=1.0, seed=3, batch_size=3, bins=128)
    systems = ["Be loud.", "Be quiet and brief."] * 4
    streamed_raw: dict[int, list[torch.Tensor]] = {b: [] for b in blocks}
    with stream_neurons(lm, blocks, lambda b, a: streamed_raw[b].append(a.clone()), positions="response"):
        streamed, generation = collect_pole(lm, QUESTIONS * 2, systems, settings, progress=False)
    assert not all(generation.finished) and any(generation.finished)  # both kinds of rows
    forced_raw: dict[int, list[torch.Tensor]] = {b: [] for b in blocks}
    with stream_neurons(lm, blocks, lambda b, a: forced_raw[b].append(a.clone()), positions="response"):
        forced = stats_from_answers(lm, generation, settings, progress=False)
    assert forced.tokens == streamed.tokens and forced.answers == streamed.answers == 8
    for block in blocks:
        a, b = torch.cat(streamed_raw[block]), torch.cat(forced_raw[block])
        assert a.shape == b.shape
        assert float((a.sort(0).values - b.sort(0).values).abs().max()) < 1e-5  # measured 2e-7
    near_zero = min(float(torch.cat(streamed_raw[b]).abs().min()) for b in blocks)
    firing_gap = float((forced.firing - streamed.firing).abs().max())
    assert firing_gap <= (1 / streamed.tokens if near_zero < 1e-4 else 0.0)
    bound = streamed.a95_err + forced.a95_err + 1e-5  # measured |Δa95| ≤ 1.5e-7
    assert bool(((forced.a95 - streamed.a95).abs() <= bound).all())
