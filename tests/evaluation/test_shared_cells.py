"""What makes the demo's cells cheap changes no number: the LM head on the continuation positions only gives
the full head's log-probabilities, the reply bank's batched greedy replies are each prompt's own greedy reply,
and the judges' calibration is read back from disk unchanged."""

from __future__ import annotations

import pytest
import torch

from tests.conftest import cached_tiny
from traitlab.evaluation.forward import continuation_logprobs
from traitlab.evaluation.situational import ReplyBank, generate_answers, prompt_only, request_answers
from traitlab.methods.prompting import PromptIntervention
from traitlab.model.tiny import FAMILIES

QUESTIONS = ["How was your weekend?", "What do you think about parties?", "Describe a quiet evening.",
             "Should I go to the barbecue?"]


def _full_head(lm, prompt, continuation):
    """Per-token log-probabilities of ``continuation`` from one unbatched forward with the head everywhere."""
    ids = torch.tensor([[*prompt, *continuation]])
    with torch.no_grad():
        logits = lm.model(input_ids=ids).logits[0].float()
    lp = torch.log_softmax(logits[:-1], -1)
    return [lp[len(prompt) - 1 + i, t].item() for i, t in enumerate(continuation)]


@pytest.mark.parametrize("family", FAMILIES)
def test_head_on_continuation_positions_equals_the_full_head(family):
    lm = cached_tiny(family)
    gen = torch.Generator().manual_seed(3)
    vocab = lm.model.get_output_embeddings().weight.shape[0]
    prompts = [torch.randint(3, vocab, (n,), generator=gen).tolist() for n in (5, 9, 3, 12)]
    conts = [torch.randint(3, vocab, (n,), generator=gen).tolist() for n in (7, 2, 11, 4)]
    got = continuation_logprobs(lm, prompts, conts, batch_size=3)
    for prompt, cont, values in zip(prompts, conts, got, strict=True):
        assert len(values) == len(cont)
        assert max(abs(a - b) for a, b in zip(values, _full_head(lm, prompt, cont), strict=True)) < 1e-4


def test_bank_replies_equal_each_prompt_generated_alone(llama):
    bank = ReplyBank(llama, batch_size=32)
    persona = PromptIntervention("You are outgoing and talkative.")
    assert request_answers(bank, QUESTIONS, None, max_new_tokens=12)
    assert request_answers(bank, QUESTIONS, persona, max_new_tokens=12)
    assert not request_answers(bank, QUESTIONS, None, samples=2, max_new_tokens=12)  # sampled: not greedy
    _, plain = generate_answers(llama, QUESTIONS, None, max_new_tokens=12, bank=bank)
    assert bank.generate_calls == 1 and bank.generated_rows == 8  # both conditions in one batch
    _, steered = generate_answers(llama, QUESTIONS, persona, max_new_tokens=12, bank=bank)
    assert bank.generate_calls == 1  # served from the bank
    for question, text, ids in zip(QUESTIONS, plain.texts, plain.response_ids, strict=True):
        alone = llama.generate_chat([question], max_new_tokens=12, progress=False)
        assert (text, ids) == (alone.texts[0], alone.response_ids[0])
    with llama.default_system(persona.text):
        alone = llama.generate_chat(QUESTIONS, max_new_tokens=12, batch_size=1, progress=False)
    assert steered.texts == alone.texts and steered.response_ids == alone.response_ids
    # a shorter request is the longer generation's prefix, exactly what a shorter generation gives
    _, short = generate_answers(llama, QUESTIONS, None, max_new_tokens=5, bank=bank)
    direct = llama.generate_chat(QUESTIONS, max_new_tokens=5, batch_size=1, progress=False)
    assert short.response_ids == direct.response_ids and short.finished == direct.finished
    assert bank.generate_calls == 1


def test_bank_nll_is_computed_once_per_pair(llama):
    bank = ReplyBank(llama)
    prompts = llama.encode(llama.render(QUESTIONS[:2]))
    first = bank.nll(prompts, [[5, 6, 7], [8, 9]])
    again = bank.nll(prompts[::-1], [[8, 9], [5, 6, 7]])
    assert again == first[::-1] and len(bank._nll) == 2


def test_bank_refuses_to_generate_under_a_hook(llama):
    from traitlab.model import residual_add

    bank = ReplyBank(llama)
    with residual_add(llama, 1, torch.ones(llama.hidden_size), 1.0), pytest.raises(RuntimeError, match="hook"):
        bank.generate(llama.encode(llama.render(QUESTIONS[:1])), 4)


def test_only_prompt_interventions_share_replies():
    from traitlab.methods.persona_vectors import PersonaVector

    assert prompt_only(None) and prompt_only(PromptIntervention("Be calm."))
    assert not prompt_only(PersonaVector.__new__(PersonaVector))


def test_calibration_is_read_back_from_disk_unchanged(model_dir, tmp_path, monkeypatch):
    """The second ``offline_judges`` with the same cache folder reads the calibration (no replies generated,
    no reference perplexity computed) and its judges score exactly as the freshly calibrated ones."""
    from traitlab.evaluation import offline
    from traitlab.model import load_model

    lm = load_model(str(model_dir))
    bank = ReplyBank(lm)
    first_judge, first_coherence = offline.offline_judges(lm, str(model_dir), max_new_tokens=8,
                                                          cache_dir=tmp_path, bank=bank)
    assert bank.generated_rows == offline.CALIBRATION_QUESTIONS
    stored = list(tmp_path.glob("calibration-*.json"))
    assert len(stored) == 1 and stored[0] == offline.calibration_path(tmp_path, lm, str(model_dir), 8)
    # the bank's replies are the ones a plain generate_chat gives
    questions, replies = offline.baseline_replies(lm, max_new_tokens=8)
    assert __import__("json").loads(stored[0].read_text())["replies"] == replies

    def no_generation(*args, **kwargs):
        raise AssertionError("the calibration was recomputed")

    monkeypatch.setattr(offline, "baseline_replies", no_generation)
    judge, coherence = offline.offline_judges(lm, str(model_dir), max_new_tokens=8, cache_dir=tmp_path)
    assert judge.name == first_judge.name and coherence.name == first_coherence.name
    assert (judge.center == first_judge.center).all() and (judge.scale == first_judge.scale).all()
    assert (coherence.good, coherence.ref_rep3) == (first_coherence.good, first_coherence.ref_rep3)
    triples = [(q, r, "") for q, r in zip(questions[:3], ["I love a crowd!", "Quiet nights suit me.", ""],
                                          strict=True)]
    assert judge.for_trait("extraversion").score_many(triples) == \
        first_judge.for_trait("extraversion").score_many(triples)
    assert coherence.score_many(triples) == first_coherence.score_many(triples)
    # another generation length is another calibration
    monkeypatch.undo()
    offline.offline_judges(lm, str(model_dir), max_new_tokens=6, cache_dir=tmp_path)
    assert len(list(tmp_path.glob("calibration-*.json"))) == 2


def test_coherence_perplexity_is_computed_once_per_pair(llama):
    from traitlab.evaluation.coherence import ReferenceCoherenceJudge

    judge = ReferenceCoherenceJudge(llama)
    first = judge.perplexities(QUESTIONS[:2], ["Sure, I would go.", "No, thanks."])
    calls = []
    import traitlab.evaluation.forward as forward

    original = forward.continuation_nll
    forward.continuation_nll = lambda *a, **k: calls.append(a) or original(*a, **k)
    try:
        again = judge.perplexities(QUESTIONS[1::-1], ["No, thanks.", "Sure, I would go."])
    finally:
        forward.continuation_nll = original
    assert again == first[::-1] and calls == []


def test_runner_generates_the_prompt_cells_and_the_calibration_in_one_batch(model_dir, tmp_path, monkeypatch):
    """A run of none/prompt/p2 on two poles: one generation call for all of their answers and the judges'
    calibration, and every cell's answers are the ones each condition gives on its own."""
    from traitlab.evaluation.recipes import RecipeContext, build
    from traitlab.evaluation.runner import run_experiment
    from traitlab.evaluation.situational import question_set
    from traitlab.model import generation, load_model
    from traitlab.traits import load_trait

    lm = load_model(str(model_dir))
    rows_per_call = []
    real = generation.generate_ids

    def counting(model, tracker, prompt_ids, *args, **kwargs):
        rows_per_call.append(len(prompt_ids))
        return real(model, tracker, prompt_ids, *args, **kwargs)

    monkeypatch.setattr(generation, "generate_ids", counting)  # the bank's generator (lm.generate_chat's is bound)
    experiment = {"name": "shared", "model": str(model_dir), "traits": ["extraversion_high", "extraversion_low"],
                  "methods": [{"name": "none"}, {"name": "prompt"}, {"name": "p2"}],
                  "evaluations": {"situational": {"n_questions": 2, "max_new_tokens": 6, "examples": 2},
                                  "coherence": {}},
                  "judge": {"kind": "auto", "reference": str(model_dir)}}
    rows = run_experiment(experiment, tmp_path / "run", progress=False, report=False, lm=lm)
    # 24 calibration prompts + 2 questions x (none, prompt x 2 poles, p2 x 2 poles): none is the same for both poles
    assert rows_per_call == [24 + 2 * 5]
    assert len(list((tmp_path / "run" / "work" / "judges").glob("calibration-*.json"))) == 1
    monkeypatch.undo()
    for row in rows:
        spec = load_trait(row["trait"])
        intervention = build(row["method"], RecipeContext(lm, spec, tmp_path / "w", None), {})
        _, alone = generate_answers(lm, question_set(spec, None, 2), intervention, max_new_tokens=6)
        answers = [a["answer"] for a in row["result"]["situational"][spec.name]["examples"]]
        assert answers == alone.texts, row["label"]


def test_per_row_limits_give_each_row_its_own_generation(llama):
    """``generate_ids(limits=…)``: each row's tokens and finished flag are those of a run with its own
    ``max_new_tokens``, in a batch with longer rows."""
    from traitlab.model.generation import SamplingParams, generate_ids

    prompts = llama.encode(llama.render(QUESTIONS))
    limits = [3, 9, 1, 6]
    together = generate_ids(llama.model, llama.hooks, prompts, llama.tokenizer.pad_token_id, llama.stop_ids,
                            SamplingParams(max_new_tokens=9), batch_size=4, progress=False, limits=limits)
    for row, n in enumerate(limits):
        alone = generate_ids(llama.model, llama.hooks, [prompts[row]], llama.tokenizer.pad_token_id,
                             llama.stop_ids, SamplingParams(max_new_tokens=n), batch_size=1, progress=False)
        assert (together[0][row], together[1][row]) == (alone[0][0], alone[1][0])
    with pytest.raises(Exception, match="limits"):
        generate_ids(llama.model, llama.hooks, prompts, 0, [], SamplingParams(max_new_tokens=4), limits=[5] * 4)


def test_runtime_interventions_steer_their_own_rows_of_one_batch(llama):
    """Two residual additions (one swept at two scales) and an NPTI edit generated together: every job's
    answers are token for token those of its Intervention alone."""
    from traitlab.evaluation.situational import generate_together, row_scalable
    from traitlab.methods.neurons import NeuronInduction
    from traitlab.methods.steering import ResidualSteering
    from traitlab.methods.subnetworks import SubnetworkMask

    gen = torch.Generator().manual_seed(0)
    up = ResidualSteering({2: torch.randn(llama.hidden_size, generator=gen)}, scale=3.0)
    down = ResidualSteering({1: torch.randn(llama.hidden_size, generator=gen)}, scale=-2.0)
    width = llama.intermediate_size
    neurons = NeuronInduction({0: (torch.tensor([1, 5, 9]), torch.tensor([4.0, 2.0, 3.0]))},
                              {1: torch.tensor([0, 2, 7])}, scale=1.5)
    jobs = [(up, QUESTIONS[:3]), (up.scaled(2.0), QUESTIONS[:3]), (down, QUESTIONS[1:]), (neurons, QUESTIONS)]
    assert all(row_scalable(i) for i, _ in jobs) and width > 9
    assert not row_scalable(None) and not row_scalable(PromptIntervention("Be calm."))
    assert not row_scalable(SubnetworkMask.__new__(SubnetworkMask))
    bank = ReplyBank(llama)
    generate_together(llama, jobs, 10, 32, bank)
    changed = 0
    for intervention, questions in jobs:
        _, kept = generate_answers(llama, questions, intervention, max_new_tokens=10, bank=bank)
        assert bank.take_steered(intervention, questions, 10) is None  # handed out once
        with intervention.applied(llama):
            alone = llama.generate_chat(questions, max_new_tokens=10, batch_size=1, progress=False)
        assert kept.response_ids == alone.response_ids and kept.texts == alone.texts
        plain = llama.generate_chat(questions, max_new_tokens=10, batch_size=1, progress=False)
        changed += kept.response_ids != plain.response_ids
    assert changed >= 3  # the edits do steer: the test would pass vacuously otherwise


def test_steering_hooks_skip_a_batch_with_no_steered_row(llama):
    """Per-row coefficients all 0 in a batch: residual addition and the neuron edit return it untouched."""
    from traitlab.model import neuron_edit, residual_add

    ids = torch.tensor(llama.encode(llama.render(QUESTIONS[:2]))[0])[None].repeat(2, 1)
    with torch.no_grad():
        plain = llama.model(ids).logits
        with llama.hooks.tracking(), residual_add(llama, 2, torch.ones(llama.hidden_size), torch.zeros(2), "all"), \
                neuron_edit(llama, 0, [1, 2], 5.0, [3], torch.zeros(2), "all"):
            zero = llama.model(ids).logits
        with llama.hooks.tracking(), residual_add(llama, 2, torch.ones(llama.hidden_size), torch.tensor([0.0, 1.0]),
                                                  "all"):
            half = llama.model(ids).logits
    assert torch.equal(zero, plain) and torch.equal(half[0], plain[0]) and not torch.equal(half[1], plain[1])


def test_runner_groups_the_steered_cells_into_batches(model_dir, tmp_path, monkeypatch):
    """Persona-vector cells at two scales and NPTI cells on two poles (fits replaced by fixed Interventions):
    generated in groups of at most one batch of rows, each cell's answers those of its Intervention alone."""
    from traitlab.evaluation import runner, situational
    from traitlab.methods.neurons import NeuronInduction
    from traitlab.methods.steering import ResidualSteering
    from traitlab.model import load_model
    from traitlab.traits import load_trait

    lm = load_model(str(model_dir))
    made: dict[tuple[str, str], object] = {}

    def fake_build(name, context, params):
        seed = len(made) + 1
        if name == "npti":
            made[(name, context.spec.name)] = NeuronInduction(
                {0: (torch.tensor([seed, seed + 3]), torch.tensor([4.0, 3.0]))}, {}, scale=1.0)
        else:
            made[(name, context.spec.name)] = ResidualSteering(
                {2: 3 * torch.randn(lm.hidden_size, generator=torch.Generator().manual_seed(seed))})
        return made[(name, context.spec.name)]

    groups = []
    real_together = situational.generate_together

    def counting(lm_, jobs, *args):
        groups.append(sum(len(q) for _, q in jobs))
        return real_together(lm_, jobs, *args)

    monkeypatch.setattr(runner, "build", fake_build)
    monkeypatch.setattr(situational, "generate_together", counting)
    experiment = {"name": "steered", "model": str(model_dir), "traits": ["extraversion_high", "extraversion_low"],
                  "methods": [{"name": "persona_vectors", "sweep": {"scale": [1.0, 2.0]}}, {"name": "npti"}],
                  "evaluations": {"situational": {"n_questions": 3, "max_new_tokens": 6, "examples": 3,
                                                  "batch_size": 7}},
                  "judge": {"kind": "auto", "reference": str(model_dir)}}
    rows = runner.run_experiment(experiment, tmp_path / "run", progress=False, report=False, lm=lm)
    assert len(rows) == 6 and groups == [6, 6, 6]  # 6 cells x 3 questions, at most 7 rows a batch
    for row in rows:
        spec = load_trait(row["trait"])
        intervention = made[(row["method"], spec.name)]
        if row["scale"] is not None:
            intervention = intervention.scaled(row["scale"])
        with intervention.applied(lm):
            alone = lm.generate_chat(situational.question_set(spec, None, 3), max_new_tokens=6, progress=False)
        answers = [a["answer"] for a in row["result"]["situational"][spec.name]["examples"]]
        assert answers == alone.texts, (row["label"], row["trait"], row["scale"])
