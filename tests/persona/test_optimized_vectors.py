"""The optimised persona-vector variant (v fitted to the persona's own answers) at tiny scale."""

from __future__ import annotations

import pytest
import torch

from tests.persona.test_extraction import SETTINGS, SPEC, SplitJudge
from traitlab import load_intervention
from traitlab.errors import ConfigError
from traitlab.methods.persona_optimize import OptimizeSettings, answer_nll, bare_batch, optimize_directions
from traitlab.methods.persona_sweep import sweep
from traitlab.methods.persona_vectors import extract, rollouts
from traitlab.model import residual_add


def test_fit_lowers_the_answers_loss_and_leaves_the_model_as_it_was(llama):
    data = rollouts(llama, SPEC, SplitJudge(), SETTINGS)
    keep = data.kept(SETTINGS)
    before = {name: (p.detach().clone(), p.requires_grad) for name, p in llama.model.named_parameters()}
    settings = OptimizeSettings(layers=(2,), steps=60, learning_rate=0.1, answers_per_step=6)
    table, losses = optimize_directions(llama, data.questions, data.pos, keep, settings)
    assert table.shape == (llama.num_layers + 1, llama.hidden_size)
    assert table[2].norm() > 0 and all(table[k].abs().sum() == 0 for k in range(llama.num_layers + 1) if k != 2)
    answers = bare_batch(llama, [data.questions[i] for i in keep], [data.pos.response_ids[i] for i in keep])
    noise = torch.randn(llama.hidden_size, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        fitted, unsteered, same_norm = (answer_nll(llama, answers, residual_add(llama, 2, v, 1.0, "response"))
                                        for v in (table[2], torch.zeros(llama.hidden_size),
                                                  noise * table[2].norm() / noise.norm()))
    assert fitted < unsteered - 0.1 and fitted < same_norm - 0.1, (float(fitted), float(unsteered), float(same_norm))
    assert set(losses) == {2}
    for name, p in llama.model.named_parameters():
        assert torch.equal(p, before[name][0]) and p.requires_grad == before[name][1], name


def test_extract_with_optimize_adds_a_variant_the_sweep_steers_only_where_fitted(llama, tmp_path):
    settings = OptimizeSettings(layers=(1,), steps=3, learning_rate=0.1, answers_per_step=4)
    vector = extract(llama, SPEC, SplitJudge(), SETTINGS, optimize=settings)
    assert vector.directions["optimized"][1].norm() > 0
    assert vector.extra["optimized"]["layers"] == (1,) and 1 in vector.extra["optimized"]["final_loss"]
    again = load_intervention(vector.save(tmp_path / "v.tl.safetensors"), llama)
    torch.testing.assert_close(again.directions["optimized"], vector.directions["optimized"], rtol=0, atol=0)

    class Constant:
        def score_many(self, triples):
            return [50.0] * len(triples)

    result = sweep(llama, vector, SPEC, Constant(), layers=[1, 2], coefs=[1.0], max_new_tokens=3,
                   variants=["response_avg", "optimized"])
    assert {(c.variant, c.layer) for c in result.cells} == {("response_avg", 1), ("response_avg", 2),
                                                            ("optimized", 1)}
    with pytest.raises(ConfigError, match="every swept layer's direction is zero"):
        sweep(llama, vector, SPEC, Constant(), layers=[2], coefs=[1.0], max_new_tokens=3, variants=["optimized"])


@pytest.mark.parametrize("kwargs, message", [
    ({"layers": ()}, "at least one layer"),
    ({"layers": (1,), "steps": 0}, "steps ≥ 1"),
    ({"layers": (1,), "positions": "middle"}, "middle"),
])
def test_bad_optimize_settings(kwargs, message):
    with pytest.raises(ConfigError, match=message):
        OptimizeSettings(**kwargs)
