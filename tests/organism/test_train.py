"""Fast tests of the organism training loop on a tiny configuration: determinism and resume."""

from __future__ import annotations

import pytest
import torch
from safetensors.torch import load_file

from traitlab.organism import train as train_mod
from traitlab.organism.train import TrainConfig, assistant_loss, repeat_negatives, train

TINY = dict(vocab_size=400, hidden_size=32, intermediate_size=64, num_layers=2, num_heads=2, n_examples=200,
            tokenizer_examples=200, batch_size=8, steps=8, warmup_steps=2, threads=1,
            balanced_start=6, balanced_examples=48,
            likert_weight=0.0)  # a separate mean over a few digits is too noisy for "the loss falls in 8 steps"


def _weights(path):
    return load_file(str(path / "model.safetensors"))


def test_same_seed_same_weights_and_resume(tmp_path, monkeypatch):
    a = train(tmp_path / "a", TrainConfig(**TINY), quiet=True, log_every=4)
    train(tmp_path / "b", TrainConfig(**TINY), quiet=True, log_every=4)
    wa, wb = _weights(tmp_path / "a"), _weights(tmp_path / "b")
    assert all(torch.equal(wa[k], wb[k]) for k in wa)
    assert a["loss_curve"][-1][1] < a["loss_curve"][0][1]
    assert not (tmp_path / "a" / train_mod.STATE_FILE).exists()

    real_lr = train_mod._lr_at

    def crash(step, cfg):
        if step == 6:
            raise KeyboardInterrupt
        return real_lr(step, cfg)

    monkeypatch.setattr(train_mod, "_lr_at", crash)
    with pytest.raises(KeyboardInterrupt):
        train(tmp_path / "c", TrainConfig(**TINY), quiet=True, log_every=4, checkpoint_every=4)
    assert (tmp_path / "c" / train_mod.STATE_FILE).is_file()
    monkeypatch.setattr(train_mod, "_lr_at", real_lr)
    c = train(tmp_path / "c", TrainConfig(**TINY), quiet=True, log_every=4, checkpoint_every=4, resume=True)
    assert c["resumed_at_step"] == 4
    wc = _weights(tmp_path / "c")
    assert all(torch.equal(wa[k], wc[k]) for k in wa)


def test_repeat_negatives_mark_the_diverging_token():
    # sentences: [5 6 7 .] [5 6 8 .] -> at the 8, the earlier sentence's 7 is the negative
    dot = 9
    ids = [1, 5, 6, 7, dot, 5, 6, 8, dot, 4]
    mask = [False] + [True] * 9
    neg = repeat_negatives(ids, mask, {dot}, {5: "I"})
    assert neg[7] == 7
    assert [n for i, n in enumerate(neg) if i != 7] == [-1] * 9


def test_likert_rows_form_their_own_weighted_mean(llama):
    model = llama.model
    ids = torch.tensor([[1, 2, 3, 4, 5, 6], [1, 7, 8, 9, 0, 0]])
    mask = torch.tensor([[0, 0, 1, 1, 1, 1], [0, 0, 0, 1, 0, 0]], dtype=torch.bool)
    likert = torch.tensor([False, True])
    with torch.no_grad():
        logp = model(input_ids=ids).logits.log_softmax(-1)
        reply = -torch.stack([logp[0, t - 1, ids[0, t]] for t in (2, 3, 4, 5)]).mean()
        digit = -logp[1, 2, ids[1, 3]]
        got = assistant_loss(model, ids, mask, likert=likert, likert_weight=2.0)
        plain = assistant_loss(model, ids, mask)
    assert torch.allclose(got, reply + 2.0 * digit, atol=1e-5)
    assert torch.allclose(plain, (4 * reply + digit) / 5, atol=1e-5)
