"""Issue #25: the HF-first Python API on SmolLM2 — ``traitlab.wrap`` of a plain transformers model, judge-free
``PersonaVector.from_pairs``, vectors as values, ``with vector.apply(model)`` on the plain model, and the GGUF
control vector of every layer read back with the ``gguf`` package."""

from __future__ import annotations

import pytest
import torch

import traitlab
from traitlab.errors import ArtifactError, ConfigError, TraitlabError
from traitlab.methods.persona_vectors import PersonaVector

POSITIVE = ["I love meeting new people and talking all night at parties!",
            "Let's invite everyone over, the more the merrier!",
            "I feel energized when I'm surrounded by friends."]
NEGATIVE = ["I prefer to stay home alone with a quiet book.",
            "Large crowds drain me; I'd rather be by myself.",
            "I rarely speak up and enjoy solitude."]


@pytest.fixture(scope="module")
def vector(smollm2):
    return PersonaVector.from_pairs(smollm2, POSITIVE, NEGATIVE, trait="extraversion")


def test_from_pairs_is_the_mean_difference_and_picks_the_best_separating_layer(smollm2, vector):
    table = vector.directions["response_avg"]
    assert table.shape == (smollm2.num_layers + 1, smollm2.hidden_size)
    assert list(vector.directions) == ["response_avg"]  # plain texts: one variant
    separation = torch.tensor(vector.extra["separation_per_layer"])
    assert list(vector.vectors) == [int(separation[1:smollm2.num_layers].argmax()) + 1] == [17]
    assert vector.trait == "extraversion" and vector.pole == "high"
    # v = mean(positive) − mean(negative), each text's mean over its tokens after the first
    from traitlab.model import capture_residual, pack, teacher_forced

    def mean_at(texts, layer):
        ids = [smollm2.tokenizer(t)["input_ids"] for t in texts]
        batch = pack([i[:1] for i in ids], [i[1:] for i in ids], smollm2.tokenizer.pad_token_id)
        with capture_residual(smollm2, [layer], "response") as cap:
            teacher_forced(smollm2, *batch)
        return cap.mean(layer).mean(0)

    expected = mean_at(POSITIVE, 9) - mean_at(NEGATIVE, 9)
    assert torch.allclose(table[9], expected, atol=1e-4)


def test_chat_pairs_give_all_three_variants(smollm2):
    pos = [("How was your weekend?", "Amazing, I threw a huge party and met so many people!")]
    neg = [("How was your weekend?", "Quiet. I stayed in alone and read.")]
    v = PersonaVector.from_pairs(smollm2, pos, neg, layers=[6, 8])
    assert sorted(v.directions) == ["prompt_avg", "prompt_last", "response_avg"] and list(v.vectors) == [6, 8]
    assert float(v.directions["prompt_avg"].abs().max()) < 1e-3  # one question on both sides: no prompt difference


def test_bad_examples_are_clear_errors(smollm2):
    with pytest.raises(ConfigError, match="at least one positive and one negative"):
        PersonaVector.from_pairs(smollm2, [], NEGATIVE)
    with pytest.raises(ConfigError, match="a text or a \\(question, answer\\) pair"):
        PersonaVector.from_pairs(smollm2, [3], NEGATIVE)
    with pytest.raises(TraitlabError, match="layer 99 is out of range"):
        PersonaVector.from_pairs(smollm2, POSITIVE, NEGATIVE, layers=[99])


def test_vectors_are_values(vector, tmp_path):
    base = vector.directions["response_avg"]
    doubled = 2 * vector
    assert torch.allclose(doubled.directions["response_avg"], 2 * base)
    assert torch.allclose((doubled - vector).directions["response_avg"], base, atol=1e-5)
    assert torch.allclose((-vector / 4).directions["response_avg"], -base / 4)
    # the scale (a sweep's coefficient) is folded in: each operand counts as it steers
    assert torch.allclose((vector.scaled(3) + vector).directions["response_avg"], 4 * base, atol=1e-5)
    combined = 2 * vector - vector.scaled(0.5)
    assert combined.scale == 1.0 and list(combined.vectors) == list(vector.vectors)
    path = combined.save(tmp_path / "c.tl.safetensors")
    assert torch.allclose(PersonaVector.load(path).directions["response_avg"], 1.5 * base, atol=1e-5)
    other = PersonaVector({"response_avg": torch.ones(5, 8)}, [1])
    with pytest.raises(ArtifactError, match="shapes"):
        vector + other
    with pytest.raises(ConfigError, match="by zero"):
        vector / 0


def test_wrap_and_apply_on_a_plain_transformers_model(smollm2, vector):
    model, tokenizer = smollm2.model, smollm2.tokenizer  # a plain HF model and tokenizer, as from_pretrained gives
    lm = traitlab.wrap(model, tokenizer)
    assert lm.fingerprint.weights_hash == smollm2.fingerprint.weights_hash
    assert traitlab.wrap(model) is lm  # kept on the model: wrapping again costs nothing
    ids = tokenizer("Tell me about your weekend.", return_tensors="pt")
    with torch.no_grad():
        plain = model(**ids).logits[0, -1]
        with vector.at(10, positions="all").scaled(2).apply(model):
            steered = model(**ids).logits[0, -1]
        after = model(**ids).logits[0, -1]
    assert not torch.allclose(plain, steered, atol=1e-3) and torch.equal(plain, after)
    with vector.scaled(2).apply(smollm2):  # a LoadedModel works the same
        reply = smollm2.chat("How was your weekend?", max_new_tokens=12)
    assert reply != smollm2.chat("How was your weekend?", max_new_tokens=12)


def test_export_gguf_all_layers_reads_back(vector, tmp_path, monkeypatch, capsys):
    import gguf

    from tests.core.test_cli import run_cli

    artifact = vector.scaled(1.5).save(tmp_path / "v.tl.safetensors")
    code, out, err = run_cli(["vectors", "export-gguf", str(artifact), "--all-layers", "-o",
                              str(tmp_path / "v.gguf")], monkeypatch, capsys)
    assert code == 0 and "every layer 1..30" in out and "llama.cpp adds a control vector at every position" in err
    reader = gguf.GGUFReader(str(tmp_path / "v.gguf"))
    tensors = {t.name: torch.from_numpy(t.data.copy()).float().reshape(-1) for t in reader.tensors}
    assert sorted(tensors) == sorted(f"direction.{layer}" for layer in range(1, 31))
    for layer in (1, 17, 30):
        assert torch.allclose(tensors[f"direction.{layer}"], 1.5 * vector.directions["response_avg"][layer])
    hint = reader.fields["controlvector.model_hint"]
    assert bytes(hint.parts[hint.data[0]]).decode() == "llama"
