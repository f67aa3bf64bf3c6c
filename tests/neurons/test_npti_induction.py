"""NPTI induction: selection from the statistics, edits that change exactly the chosen neurons (per row, at
the chosen positions), re-derivation with other options, artifacts, the description loader and the runner."""

from __future__ import annotations

import contextlib
import json

import pytest
import torch

from tests.conftest import cached_tiny
from traitlab import load_intervention
from traitlab.errors import ArtifactError, ConfigError
from traitlab.methods.neurons import (
    CollectionSettings,
    NeuronInduction,
    NeuronStats,
    PoleStats,
    SelectionOptions,
    f_delta,
    fit,
    load_npti_descriptions,
    select,
)
from traitlab.model import PROMPT, RESPONSE, teacher_forced
from traitlab.model.tiny import tiny_model
from traitlab.traits import load_trait


def synthetic_stats(blocks: int = 3, width: int = 128, seed: int = 0) -> NeuronStats:
    g = torch.Generator().manual_seed(seed)
    pos = PoleStats(torch.rand(blocks, width, generator=g), torch.rand(blocks, width, generator=g) + 0.5,
                    torch.full((blocks, width), 1e-3), 1000, 10)
    neg = PoleStats(torch.rand(blocks, width, generator=g), torch.rand(blocks, width, generator=g) + 0.5,
                    torch.full((blocks, width), 1e-3), 900, 10)
    return NeuronStats(pos, neg, {"pos": "high", "neg": "low"})


def test_f_delta_is_the_papers_sigmoid():
    assert float(f_delta(torch.tensor(0.15))) == pytest.approx(0.5)
    assert float(f_delta(torch.tensor(-0.35))) == pytest.approx(1 / (1 + torch.e ** -2))


def test_selection_follows_threshold_top_k_and_switches():
    stats = synthetic_stats()
    delta = stats.delta("pos")
    boosts, clamps = select(stats, SelectionOptions(threshold=0.3))
    for block in range(3):
        assert set(boosts[block][0].tolist()) == set((delta[block] >= 0.3).nonzero().squeeze(1).tolist())
        assert set(clamps[block].tolist()) == set((delta[block] <= -0.3).nonzero().squeeze(1).tolist())
        idx, values = boosts[block]
        torch.testing.assert_close(values, stats.pos.a95[block, idx] * f_delta(delta[block, idx]))
    # top-k adds the largest |δ| below the threshold, by sign
    boosts_k, clamps_k = select(stats, SelectionOptions(threshold=0.9, top_k=50))
    chosen = sum(len(b[0]) for b in boosts_k.values()) + sum(len(c) for c in clamps_k.values())
    assert chosen == max(50, int((delta.abs() >= 0.9).sum()))
    # without f, the boost is a95; boost only / clamp only; the random share is seeded
    no_f, _ = select(stats, SelectionOptions(threshold=0.3, use_f=False))
    torch.testing.assert_close(no_f[0][1], stats.pos.a95[0, no_f[0][0]])
    assert select(stats, SelectionOptions(threshold=0.3, boost_only=True))[1] == {}
    assert select(stats, SelectionOptions(threshold=0.3, clamp_only=True))[0] == {}
    part = select(stats, SelectionOptions(threshold=0.3, boost_fraction=0.9, seed=1))[0]
    again = select(stats, SelectionOptions(threshold=0.3, boost_fraction=0.9, seed=1))[0]
    total = sum(len(b[0]) for b in boosts.values())
    assert sum(len(b[0]) for b in part.values()) == round(0.9 * total)
    assert all(torch.equal(part[b][0], again[b][0]) for b in part)
    assert all(set(part[b][0].tolist()) <= set(boosts[b][0].tolist()) for b in part)
    with pytest.raises(ConfigError, match="threshold"):
        SelectionOptions(threshold=0)
    with pytest.raises(ConfigError, match="exclude"):
        SelectionOptions(boost_only=True, clamp_only=True)


def test_with_options_rederives_from_stored_statistics():
    iv = NeuronInduction.from_stats(synthetic_stats(), SelectionOptions(threshold=0.3), trait="extraversion",
                                    pole="high", scale=1.5)
    lower = iv.with_options(threshold=0.1)
    assert lower.scale == 1.5 and lower.options.threshold == 0.1
    assert all(set(iv.boosts[b][0].tolist()) <= set(lower.boosts[b][0].tolist()) for b in iv.boosts)
    flipped = iv.with_options(target="low")
    assert flipped.pole == "low"
    for block in range(3):  # the opposite pole's boosted neurons are the ones clamped before, and vice versa
        assert set(flipped.boosts[block][0].tolist()) == set(iv.clamps[block].tolist())
    with pytest.raises(ConfigError, match="unknown NPTI option"):
        iv.with_options(gamma=2)


def _neuron_io(lm, iv, ids, mask, roles, row_scale=None):
    """Neuron-site activations of every block before and after the intervention's edit, in one forward."""
    before, after, handles = {}, {}, []
    for block in range(lm.num_layers):
        module = lm.hooks.neuron_module(block)
        handles.append(module.register_forward_hook(lambda m, a, o, b=block: before.__setitem__(b, o.clone())))
    try:
        with iv.applied(lm, row_scale) if iv is not None else contextlib.nullcontext():
            for block in range(lm.num_layers):
                module = lm.hooks.neuron_module(block)
                handles.append(module.register_forward_hook(lambda m, a, o, b=block: after.__setitem__(b, o.clone())))
            teacher_forced(lm, ids, mask, roles)
    finally:
        for handle in handles:
            handle.remove()
    return before, after


@pytest.mark.parametrize("family", ["llama", "gpt2", "gpt_neox"])
@pytest.mark.parametrize("positions", ["response", "all"])
def test_edits_change_exactly_the_chosen_neurons(family, positions):
    lm = cached_tiny(family)
    width = lm.intermediate_size
    boosts = {0: (torch.tensor([3, 17, 40]), torch.tensor([0.5, 1.0, 2.0])),
              2: (torch.tensor([5]), torch.tensor([3.0]))}
    clamps = {0: torch.tensor([1, 2, 60]), 1: torch.tensor([7, 8])}
    iv = NeuronInduction(boosts, clamps, options=SelectionOptions(positions=positions), fingerprint=lm.fingerprint)
    generation = lm.generate_chat(["hello there", "what now?"], max_new_tokens=5, progress=False)
    ids, mask, roles = generation.batch()
    gamma = torch.tensor([1.5, 0.0])  # row 1 has scale 0: untouched
    before, after = _neuron_io(lm, iv, ids, mask, roles, row_scale=gamma)
    selected = (roles == RESPONSE) | ((roles == PROMPT) if positions == "all" else torch.zeros_like(roles, dtype=bool))
    for block in range(lm.num_layers):
        expected = before[block].clone()
        rows = selected.clone()
        rows[1] = False
        if block in clamps:
            expected[..., clamps[block]] = torch.where(rows.unsqueeze(-1), expected[..., clamps[block]].clamp(max=0),
                                                       expected[..., clamps[block]])
        if block in boosts:
            index, values = boosts[block]
            expected[..., index] += rows.unsqueeze(-1) * 1.5 * values
        torch.testing.assert_close(after[block], expected, rtol=0, atol=1e-6)
        untouched = torch.ones(width, dtype=torch.bool)
        for index in (boosts.get(block, (torch.empty(0, dtype=torch.long),))[0], clamps.get(block, torch.empty(0))):
            untouched[index.long()] = False
        assert torch.equal(after[block][..., untouched], before[block][..., untouched])
        assert torch.equal(after[block][1], before[block][1])


def test_fit_save_load_and_fingerprint(tmp_path):
    lm = cached_tiny("llama")
    spec = load_trait("extraversion_low")
    iv = fit(lm, spec, settings=CollectionSettings(n_answers=6, max_new_tokens=8), progress=False)
    assert iv.trait == "extraversion" and iv.pole == "low" and iv.options.target == "pos"
    assert iv.stats.poles == {"pos": "low", "neg": "high"} and iv.stats.pos.tokens > 0
    assert fit(lm, spec, "high", CollectionSettings(n_answers=2, max_new_tokens=4), progress=False).pole == "high"
    path = iv.scaled(1.2).save(tmp_path / "n.safetensors")
    loaded = load_intervention(path, lm)
    assert isinstance(loaded, NeuronInduction) and loaded.scale == pytest.approx(1.2)
    assert loaded.counts() == iv.counts()
    torch.testing.assert_close(loaded.stats.pos.firing, iv.stats.pos.firing)
    torch.testing.assert_close(loaded.stats.pos.a95, iv.stats.pos.a95, rtol=1e-3, atol=1e-4)  # stored as fp16
    assert loaded.with_options(threshold=0.05).counts() == iv.with_options(threshold=0.05).counts()
    with pytest.raises(ArtifactError, match="another model"):
        load_intervention(path, tiny_model("llama", seed=1))


def test_description_loader(tmp_path):
    rows = [{"Extraversion": f"You love parties {i}.", "Extraversion_reversed": f"You stay home {i}.",
             "Openness": "x"} for i in range(3)]
    path = tmp_path / "description.json"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    loaded = load_npti_descriptions(path, "extraversion")
    assert loaded["high"][2] == "You love parties 2." and len(loaded["low"]) == 3
    with pytest.raises(ConfigError, match="Neuroticism_reversed"):
        load_npti_descriptions(path, "neuroticism")
    (tmp_path / "bad.json").write_text("{not json\n")
    with pytest.raises(ConfigError, match="line 1"):
        load_npti_descriptions(tmp_path / "bad.json", "extraversion")


def test_description_loader_reads_npti_file(shared_data):
    path = shared_data / "npti_personalitybench" / "description.json"
    if not path.is_file():
        pytest.skip("NPTI description.json is absent")
    loaded = load_npti_descriptions(path, "agreeableness")
    assert len(loaded["high"]) == len(loaded["low"]) == 80
