"""Persona subnetworks on SmolLM2-135M-Instruct (issue 23), with tiny settings (one pole, 6 greedy calibration
answers of 16 tokens, Wanda at sparsity 0.5): masks on a model with tied embeddings leave the shared tensor alone,
restore bit-exactly, and an exported checkpoint reloads with the same greedy replies. The quality figures are
benchmarks/subnet_smollm2.py's."""

from __future__ import annotations

import hashlib

import pytest

from traitlab.methods.subnet_calibration import GenerationSettings, collect_stats, from_spec
from traitlab.methods.subnet_fit import contrastive_masks, wanda_masks
from traitlab.methods.subnetworks import SubnetworkMask, SubnetworkSet, export_checkpoint
from traitlab.model import load_model
from traitlab.traits import load_trait

SETTINGS = GenerationSettings(n_answers=1, temperature=0.0, max_new_tokens=16, seed=0, batch_size=8)
QUESTIONS = ["How was your weekend?", "What do you think about parties?", "Describe your ideal holiday."]
MASKED_WEIGHTS = 30 * (2 * 576 * 576 + 2 * 192 * 576 + 3 * 1536 * 576)  # q, o; k, v; gate, up, down per block


def _digest(tensor) -> str:
    return hashlib.sha1(tensor.detach().numpy().tobytes()).hexdigest()


@pytest.fixture(scope="module")
def masks(smollm2):
    """Wanda (extraversion high, 0.5) and contrastive (high vs low, 0.3) masks from 6 short-prompt answers each."""
    stats = {}
    for pole in ("high", "low"):
        spec = load_trait(f"extraversion_{pole}").with_short_instructions()
        calibration = from_spec(smollm2, spec, None, False, SETTINGS, spec.questions[:2])
        stats[pole] = collect_stats(smollm2, calibration)
    wanda = SubnetworkMask.from_masks(wanda_masks(smollm2, stats["high"], 0.5), pole="high")
    contrast, _ = contrastive_masks(smollm2, stats["high"], stats["low"], 0.3)
    return wanda, SubnetworkMask.from_masks(contrast, pole="high"), stats


def test_calibration_statistics_and_mask_sizes(smollm2, masks):
    wanda, contrast, stats = masks
    assert len(stats["high"]) == 210  # 7 Linears × 30 blocks, nothing outside the blocks
    assert max(entry.count for entry in stats["high"].values()) == EXPECTED_TOKENS  # 6 replies ≤ 16 tokens each
    assert len(wanda.shapes) == 210 and wanda.numel == MASKED_WEIGHTS == 106_168_320
    assert wanda.sparsity == pytest.approx(0.5, abs=1e-12)  # every row drops exactly floor(in · 0.5)
    # floor(in · 0.3) per row: 172 of 576 inputs, 460 of 1536 (down_proj)
    removed = 30 * (172 * (2 * 576 + 2 * 192 + 2 * 1536) + 460 * 576)
    assert contrast.sparsity == pytest.approx(removed / MASKED_WEIGHTS, abs=1e-12)  # 0.2988


def test_tied_embeddings_are_untouched_and_restore_is_bit_exact(smollm2, masks):
    wanda, contrast, _ = masks
    model = smollm2.model
    embed = model.model.embed_tokens.weight
    assert model.lm_head.weight is embed  # SmolLM2 ties lm_head to embed_tokens
    assert not any("embed" in n or "lm_head" in n for m in (wanda, contrast) for n in m.shapes)
    before = {n: _digest(p) for n, p in model.named_parameters()}
    for mask in (wanda, contrast):
        with mask.applied(smollm2):
            assert _digest(embed) == before["model.embed_tokens.weight"]
            assert model.lm_head.weight is model.model.embed_tokens.weight
            zeros = sum(int((model.get_parameter(n) == 0).sum()) for n in mask.shapes)
            assert zeros >= round(mask.sparsity * mask.numel)  # every removed weight is 0 (a few were 0 already)
        assert {n: _digest(p) for n, p in model.named_parameters()} == before
    with SubnetworkSet(smollm2, {"wanda": wanda, "contrastive": contrast}) as personas:
        personas.use("wanda")
        personas.use("contrastive")
        assert _digest(embed) == before["model.embed_tokens.weight"]
    assert {n: _digest(p) for n, p in model.named_parameters()} == before


def test_export_reloads_with_identical_greedy_replies(smollm2, masks, tmp_path):
    wanda, _, _ = masks
    with wanda.applied(smollm2):
        masked = smollm2.generate_chat(QUESTIONS, max_new_tokens=24, progress=False).texts
    plain = smollm2.generate_chat(QUESTIONS, max_new_tokens=24, progress=False).texts
    export_checkpoint(smollm2, wanda, tmp_path / "export")
    reloaded = load_model(str(tmp_path / "export"), device="cpu")
    assert reloaded.model.lm_head.weight is reloaded.model.model.embed_tokens.weight  # still tied
    again = reloaded.generate_chat(QUESTIONS, max_new_tokens=24, progress=False).texts
    assert again == masked
    assert sum(a != b for a, b in zip(masked, plain, strict=True)) >= EXPECTED_MIN_CHANGED  # the mask does act


EXPECTED_TOKENS = 96  # greedy: none of the 6 replies stops before 16 tokens
EXPECTED_MIN_CHANGED = 1
