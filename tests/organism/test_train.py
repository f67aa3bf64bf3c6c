"""Fast tests of the organism training loop on a tiny configuration: determinism and resume."""

from __future__ import annotations

import pytest
import torch
from safetensors.torch import load_file

from traitlab.organism import train as train_mod
from traitlab.organism.train import TrainConfig, repeat_negatives, train

TINY = dict(vocab_size=400, hidden_size=32, intermediate_size=64, num_layers=2, num_heads=2, n_examples=200,
            tokenizer_examples=200, batch_size=8, steps=8, warmup_steps=2, threads=1)


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
