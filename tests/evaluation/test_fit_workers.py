"""Fits in helper processes: the claim files (``traitlab.claims``), a helper's fits read back by the run, and
a run with a helper gives the rows a run alone gives."""

from __future__ import annotations

import json
import multiprocessing
import os
import subprocess
import sys

import pytest
import yaml

from traitlab.claims import claimed
from traitlab.evaluation import fit_workers
from traitlab.evaluation.fit_workers import answers_folder, claims_folder, slot_name
from traitlab.evaluation.recipes import persona
from traitlab.evaluation.runner import _helper_slots, plan, run_experiment

SPEC = {"name": "tiny_extraversion", "trait": "extraversion", "pole": "high",
        "instruction": [{"pos": "Be loud.", "neg": "Be quiet."},
                        {"pos": "You love crowds.", "neg": "You hate crowds."}],
        "questions": ["Plans?", "Hi?", "Why?"], "eval_prompt": "Q {question} A {answer} Score 0-100:"}


def test_a_claim_is_exclusive_marks_done_and_is_released(tmp_path):
    with claimed(tmp_path, "slot") as mine:
        assert mine and (tmp_path / "slot.claim").read_text() == str(os.getpid())
    assert not (tmp_path / "slot.claim").exists() and (tmp_path / "slot.done").exists()
    with claimed(tmp_path, "slot", wait=False) as mine:  # done: a helper skips it
        assert not mine
    with pytest.raises(RuntimeError), claimed(tmp_path, "failing"):
        raise RuntimeError("fit failed")
    assert not (tmp_path / "failing.claim").exists() and not (tmp_path / "failing.done").exists()
    with claimed(tmp_path, "outer", mark_done=False) as outer, claimed(tmp_path, "outer") as inner:
        assert outer and inner  # a process already holding a claim holds it again (no wait on itself)
    assert not (tmp_path / "outer.claim").exists() and not (tmp_path / "outer.done").exists()


def test_a_live_holder_is_respected_and_a_dead_ones_claim_is_taken_over(tmp_path):
    (tmp_path / "held.claim").write_text(str(os.getppid()))  # a live process
    with claimed(tmp_path, "held", wait=False) as mine:
        assert not mine
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True,
                          text=True, check=True).stdout.strip()
    (tmp_path / "stale.claim").write_text(dead)
    with claimed(tmp_path, "stale") as mine:
        assert mine


def test_slot_names_are_file_safe_and_distinct():
    a, b = slot_name("pv/α 1", "x_high"), slot_name("pv/α 1", "x_low")
    assert a != b and "/" not in a and " " not in a


@pytest.fixture
def experiment(tmp_path, model_dir):
    (tmp_path / "tiny_trait.json").write_text(json.dumps(SPEC))
    config = {
        "name": "tiny", "model": str(model_dir), "traits": ["tiny_trait.json"],
        "methods": [{"name": "none"},
                    {"name": "personality_vector", "params": {"n_per_question": 1, "max_new_tokens": 4,
                                                              "method": "lora", "epochs": 1.0}},
                    {"name": "subnetwork", "params": {"sparsity": 0.1, "max_new_tokens": 4}}],
        "evaluations": {"situational": {"n_questions": 2, "max_new_tokens": 4, "examples": 2}},
        "judge": {"kind": "local"}, "seeds": [0],
    }
    path = tmp_path / "exp.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def _expressions(rows):
    return [(r["label"], r["trait_expression"], [a["answer"] for a in
                                                 r["result"]["situational"]["tiny_extraversion"]["examples"]])
            for r in rows]


def test_a_helpers_fits_are_read_not_refitted_and_give_the_same_rows(experiment, tmp_path, monkeypatch):
    from traitlab.evaluation.config import load_experiment

    alone = run_experiment(experiment, tmp_path / "alone", progress=False)

    # the helper fits every offloadable slot into a fresh partial folder; the run then fits nothing itself
    exp, specs = load_experiment(experiment)
    out = tmp_path / ".helped.partial"
    slots = _helper_slots(plan(exp), specs, out)
    assert [s.method for s in slots] == ["subnetwork", "personality_vector"]  # the plan's last fits first
    job = fit_workers.HelperJob(exp.model, None, None, tuple(slots), str(claims_folder(out)),
                                str(answers_folder(out)), 1, 0, os.getpid())
    claims_folder(out).mkdir(parents=True)
    helper = multiprocessing.get_context("spawn").Process(target=fit_workers._helper_main, args=(job,))
    helper.start()
    helper.join(120)
    assert helper.exitcode == 0, (claims_folder(out) / "helper-0.log").read_text()
    assert (claims_folder(out) / "helper-0.log").read_text() == ""  # nothing printed, not even to its log
    finetunes = []
    monkeypatch.setattr(persona, "finetune", lambda *a, **k: finetunes.append(1))
    helped = run_experiment(experiment, tmp_path / "helped", progress=False)
    assert finetunes == []
    assert _expressions(helped) == _expressions(alone)


def test_a_run_with_a_helper_process_gives_the_rows_of_a_run_alone(experiment, tmp_path):
    alone = run_experiment(experiment, tmp_path / "alone", progress=False)
    helped = run_experiment(experiment, tmp_path / "helped", progress=False, workers=2)
    assert _expressions(helped) == _expressions(alone)
    assert not list((tmp_path / "helped" / "work" / "claims").glob("*.claim"))
    assert __import__("torch").get_num_threads() >= 1
