"""Monitoring projections, streaming, finetune-shift, preventative steering, screening and interop (tiny)."""

from __future__ import annotations

import dataclasses
import warnings

import pytest
import torch

from traitlab.errors import ArtifactError, ConfigError
from traitlab.finetune import FinetuneSettings, finetune, tokenize_chats
from traitlab.methods.persona_interop import combine, export_gguf, import_gguf, import_pt, parse_expression
from traitlab.methods.persona_vectors import PersonaVector
from traitlab.model import capture_residual, teacher_forced
from traitlab.model.positions import RESPONSE
from traitlab.monitor import ProjectionStream, auroc, finetune_shift, last_prompt_means, project_conversations, screen
from traitlab.monitor.projection import conversation_batch

CONVERSATIONS = [
    [{"role": "user", "content": "hello"}, {"role": "assistant", "content": "hi there, friend"}],
    [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "what is up?"},
     {"role": "assistant", "content": "not much"}],
    [{"role": "user", "content": "only a prompt"}],
]


def _vector(lm, seed=0, layer=2):
    table = torch.randn(lm.num_layers + 1, lm.hidden_size, generator=torch.Generator().manual_seed(seed))
    return PersonaVector({"response_avg": table}, [layer], fingerprint=lm.fingerprint)


def test_projections_match_a_manual_computation(llama):
    direction = torch.randn(llama.hidden_size, generator=torch.Generator().manual_seed(1))
    rows = project_conversations(llama, direction, 2, CONVERSATIONS)
    unit = direction / direction.norm()
    prompts = [c[:-1] if c[-1]["role"] == "assistant" else c for c in CONVERSATIONS]
    replies = [c[-1]["content"] if c[-1]["role"] == "assistant" else None for c in CONVERSATIONS]
    input_ids, mask, roles = conversation_batch(llama, prompts, replies)
    with capture_residual(llama, [2], keep_tokens=True) as capture:
        teacher_forced(llama, input_ids, mask, roles)
    hidden, _ = capture.tokens(2)
    for i, row in enumerate(rows):
        last = int((roles[i] == 1).nonzero().max())
        assert row["last_prompt_projection"] == pytest.approx(float(hidden[i, last] @ unit), abs=1e-4)
        if replies[i]:
            expected = float(hidden[i][roles[i] == RESPONSE].mean(0) @ unit)
            assert row["response_projection"] == pytest.approx(expected, abs=1e-4)
        else:
            assert row["response_projection"] is None


def test_projection_stream_tracks_every_step(llama):
    direction = torch.randn(llama.hidden_size, generator=torch.Generator().manual_seed(2))
    stream = ProjectionStream(llama, {"loud": (2, direction)})
    seen = []
    with stream.active():
        generation = llama.generate_chat(["hello"], max_new_tokens=5,
                                         on_token=lambda step, tok, done, rows: seen.append(stream.latest["loud"]))
    steps = len(generation.response_ids[0]) + int(generation.finished[0])
    assert len(seen) == len(stream.history["loud"]) == steps
    before = project_conversations(llama, direction, 2, [[{"role": "user", "content": "hello"}]])
    assert float(stream.history["loud"][0][0]) == pytest.approx(before[0]["last_prompt_projection"], abs=1e-4)


def test_tokenized_chats_mask_only_the_reply(llama):
    pairs = tokenize_chats(llama, [c for c in CONVERSATIONS if c[-1]["role"] == "assistant"])
    prompt, reply = pairs[0]
    assert llama.tokenizer.decode(reply) == "hi there, friend<|im_end|>"
    assert llama.tokenizer.decode(prompt).endswith("<|im_start|>assistant\n")


def test_finetune_shift_and_preventative_steering(llama):
    data = [[{"role": "user", "content": f"question {i}"}, {"role": "assistant", "content": "LOUD LOUD LOUD!"}]
            for i in range(8)]
    settings = FinetuneSettings(method="lora", epochs=2, learning_rate=5e-3, batch_size=4)
    with warnings.catch_warnings(record=True) as caught:  # e.g. peft reading a deprecated transformers alias
        warnings.simplefilter("always")
        tuned = finetune(llama, data, settings, progress=False)
    assert [str(w.message) for w in caught] == []
    vector = _vector(llama)
    prompts = ["question 1", "another one"]
    shift = finetune_shift(llama, tuned, vector.direction(2), 2, prompts)
    expected = (last_prompt_means(tuned, prompts, 2) - last_prompt_means(llama, prompts, 2)) @ (
        vector.direction(2) / vector.direction(2).norm())
    assert shift == pytest.approx(float(expected), abs=1e-5) and shift != 0.0
    steered = finetune(llama, data, settings, steering=vector.at(positions="all").scaled(2.0), progress=False)
    again = finetune(llama, data, settings, progress=False)
    name = f"{llama.family.layers}.1.mlp.down_proj.weight"
    assert torch.equal(dict(tuned.model.named_parameters())[name], dict(again.model.named_parameters())[name])
    assert not torch.equal(dict(tuned.model.named_parameters())[name], dict(steered.model.named_parameters())[name])
    # transformers installs its own output-capturing hooks on first use; none of traitlab's may remain
    hooks = lambda model: sum(len(m._forward_hooks) + len(m._forward_pre_hooks) for m in model.modules())  # noqa: E731
    assert hooks(steered.model) == hooks(llama.model)


def _phi(base, tuned):
    tuned_params = dict(tuned.model.named_parameters())
    return {n: tuned_params[n] - p for n, p in base.model.named_parameters() if not torch.equal(tuned_params[n], p)}


def test_bf16_autocast_finetune_keeps_fp32_weights_and_the_fp32_direction(llama):
    data = [[{"role": "user", "content": f"question {i}"}, {"role": "assistant", "content": "LOUD LOUD LOUD!"}]
            for i in range(8)]
    settings = FinetuneSettings(method="lora", epochs=2, learning_rate=5e-3, batch_size=4)
    default = _phi(llama, finetune(llama, data, settings, progress=False))
    fp32 = _phi(llama, finetune(llama, data, dataclasses.replace(settings, precision="fp32"), progress=False))
    assert default.keys() == fp32.keys() and all(torch.equal(default[n], fp32[n]) for n in default)
    bf16 = _phi(llama, finetune(llama, data, dataclasses.replace(settings, precision="bf16"), progress=False))
    assert bf16.keys() == fp32.keys()
    assert all(d.dtype == torch.float32 and torch.isfinite(d).all() for d in bf16.values())
    a, b = (torch.cat([phi[n].flatten() for n in sorted(phi)]).double() for phi in (fp32, bf16))
    cosine = float(a @ b / (a.norm() * b.norm()))
    assert 0.99 < cosine < 1.0, cosine  # measured 0.9993 (seeds 0-2: 0.9992-0.9996): close, not the fp32 run
    assert float(b.norm() / a.norm()) == pytest.approx(1.0, abs=0.02)  # measured 1.0004
    steered = _phi(llama, finetune(llama, data, dataclasses.replace(settings, precision="bf16"), progress=False,
                                   steering=_vector(llama).at(positions="all").scaled(2.0)))
    assert all(d.dtype == torch.float32 and torch.isfinite(d).all() for d in steered.values())


def test_precision_auto_resolves_to_fp32_without_native_bf16(monkeypatch):
    from traitlab.finetune import sft

    assert sft.resolve_precision("fp32", "cpu") == "fp32" and sft.resolve_precision("bf16", "cpu") == "bf16"
    assert sft.native_bf16("meta") is False
    monkeypatch.setattr(sft, "native_bf16", lambda device: False)
    assert sft.resolve_precision("auto", "cpu") == "fp32"
    monkeypatch.setattr(sft, "native_bf16", lambda device: True)
    assert sft.resolve_precision("auto", "cpu") == "bf16"
    with pytest.raises(ConfigError, match="unknown precision 'half'"):
        FinetuneSettings(precision="half")  # type: ignore[arg-type]


def test_lora_on_upper_blocks_only_changes_those_blocks(llama):
    data = [[{"role": "user", "content": f"question {i}"}, {"role": "assistant", "content": "LOUD LOUD LOUD!"}]
            for i in range(8)]
    top = llama.num_layers - 1
    settings = FinetuneSettings(method="lora", epochs=1, learning_rate=5e-3, batch_size=4, lora_layers=(top,))
    phi = _phi(llama, finetune(llama, data, settings, progress=False))
    assert phi and all(name.startswith(f"{llama.family.layers}.{top}.") for name in phi)
    with pytest.raises(ConfigError, match="past the model"):
        finetune(llama, data, dataclasses.replace(settings, lora_layers=(llama.num_layers,)), progress=False)
    with pytest.raises(ConfigError, match="lora_layers"):
        FinetuneSettings(lora_layers=())
    with pytest.raises(ConfigError, match="lora_layers needs method lora"):
        FinetuneSettings(method="full", lora_layers=(0,))


def test_screening_delta_is_sample_minus_base_projection(llama):
    direction = torch.randn(llama.hidden_size, generator=torch.Generator().manual_seed(3))
    samples = [c for c in CONVERSATIONS if c[-1]["role"] == "assistant"]
    rows = screen(llama, direction, 2, samples, max_new_tokens=6)
    for row in rows:
        assert row["delta_p"] == pytest.approx(row["sample_projection"] - row["base_reply_projection"])
    with pytest.raises(ConfigError, match="must end with an assistant reply"):
        screen(llama, direction, 2, CONVERSATIONS)


def test_auroc_on_hand_cases():
    assert auroc([3, 2, 1, 0], [True, True, False, False]) == 1.0
    assert auroc([0, 1], [True, False]) == 0.0
    assert auroc([1, 1, 0], [True, False, False]) == 0.75


def test_pt_import_and_gguf_round_trip(llama, tmp_path):
    vector = _vector(llama).scaled(1.5)
    torch.save(vector.directions["response_avg"], tmp_path / "v.pt")
    imported = import_pt(tmp_path / "v.pt", llama, layer=2)
    assert torch.equal(imported.direction(2), vector.direction(2))
    torch.save(torch.zeros(2, 3), tmp_path / "bad.pt")
    with pytest.raises(ArtifactError, match=r"needs a \[L\+1, d\]"):
        import_pt(tmp_path / "bad.pt", llama)
    export_gguf(vector.at([1, 3]), tmp_path / "v.gguf", model_hint="llama")
    back = import_gguf(tmp_path / "v.gguf", llama)
    assert sorted(back.vectors) == [1, 3]
    torch.testing.assert_close(back.direction(3), 1.5 * vector.direction(3))
    (tmp_path / "junk.gguf").write_bytes(b"junk")
    with pytest.raises(ArtifactError):
        import_gguf(tmp_path / "junk.gguf", llama)


def test_vector_arithmetic(llama, tmp_path):
    a, b = _vector(llama, 0), _vector(llama, 1)
    a.save(tmp_path / "a.safetensors")
    b.save(tmp_path / "b.safetensors")
    assert parse_expression("2*x - 0.5*y + z") == [(2.0, "x"), (-0.5, "y"), (1.0, "z")]
    combined = combine(f"2*{tmp_path}/a.safetensors - 0.5*{tmp_path}/b.safetensors")
    torch.testing.assert_close(combined.direction(2), 2 * a.direction(2) - 0.5 * b.direction(2))
    with pytest.raises(ConfigError, match="cannot parse"):
        parse_expression("2*")
