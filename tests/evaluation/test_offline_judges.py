"""The offline judges: the embedding trait judge (scores, form factor, question, calibration, files, specs),
its validity on the public held-out sets (skipped without ../shared/data), the repetition measures and the
linguistic profile, and ``traitlab judges score`` with its one-line errors."""

from __future__ import annotations

import json

import numpy as np
import pytest

from traitlab.errors import ConfigError
from traitlab.evaluation import judge_validity as jv
from traitlab.evaluation.coherence import repetition_measures
from traitlab.evaluation.embedding_judge import EmbeddingJudge, default_judge, form_factor, strip_topic
from traitlab.evaluation.judge_fit import fit_big_five, judge_for_spec
from traitlab.evaluation.profile import mean_profile, profile_many

EXTRAVERTED = ("I'm throwing a big party and inviting everyone I know; I can't wait to dance all night with a "
               "crowd of friends!")
INTROVERTED = "I'll stay home alone with a book and enjoy the quiet. Big crowds drain me, so I keep to myself."
KEYWORDS = "party friends crowd dance outgoing social energetic talkative exciting fun"
QUESTION = "Any plans for the weekend?"


def test_poles_land_on_their_sides_of_50():
    judge = default_judge()
    hi, lo = judge.scores([QUESTION, QUESTION], [EXTRAVERTED, INTROVERTED])
    assert hi["extraversion"] > 65 > 35 > lo["extraversion"]
    assert set(hi) == {"openness", "conscientiousness", "extraversion", "agreeableness", "neuroticism"}


def test_keyword_lists_and_loops_are_not_evidence():
    judge = default_judge()
    assert form_factor(KEYWORDS) == 0.0
    (scores,) = judge.scores([QUESTION], [KEYWORDS])
    assert all(v == 50.0 for v in scores.values())
    loop = " ".join(["I love parties with friends!"] * 8)
    assert form_factor(loop) < 0.2
    (looped,) = judge.scores([QUESTION], [loop])
    (plain,) = judge.scores([QUESTION], ["I love parties with friends!"])
    assert abs(looped["extraversion"] - 50) < abs(plain["extraversion"] - 50)


def test_the_question_topic_is_not_evidence():
    reply = "It depends on the party and on the people at the party."
    assert "party" not in strip_topic(reply, "Should I go to the party tonight?")
    judge = default_judge()
    with_q = judge.scores(["Should I go to the party tonight?"], [reply])[0]["extraversion"]
    without = judge.scores([""], [reply])[0]["extraversion"]
    assert with_q < without


def test_views_give_the_pole_and_calibration_centres_the_baseline():
    judge = default_judge()
    high = judge.for_trait("extraversion", "high").score(QUESTION, EXTRAVERTED)
    low = judge.for_trait("extraversion", "low").score(QUESTION, EXTRAVERTED)
    assert high + low == pytest.approx(100.0)
    base_q = [QUESTION] * 6
    base_r = ["I might go for a walk.", "I will probably rest.", "Maybe some reading and cooking.",
              "I have a few errands to run.", "Not sure yet, it depends on the weather.", "Some chores, I think."]
    calibrated = judge.calibrate(base_q, base_r, "test")
    assert calibrated.name.endswith("@test")
    median = np.median(calibrated.score_matrix(base_q, base_r), axis=0)
    assert np.allclose(median, 50.0, atol=8)
    with pytest.raises(ConfigError):
        judge.for_trait("humor")
    with pytest.raises(ConfigError):
        judge.calibrate(base_q[:2], base_r[:2])


def test_shipped_weights_are_reproduced_by_the_fit(tmp_path):
    shipped = default_judge()
    fitted = fit_big_five(seed=0)
    assert fitted.traits == shipped.traits
    assert np.allclose(fitted.directions, shipped.directions, atol=1e-5)
    assert np.allclose(fitted.scale, shipped.scale, atol=1e-5)
    path = tmp_path / "j.safetensors"
    fitted.save(path)
    again = EmbeddingJudge.load(path)
    assert np.array_equal(again.center, fitted.center) and again.traits == fitted.traits
    (tmp_path / "bad.safetensors").write_text("nope")
    with pytest.raises(ConfigError):
        EmbeddingJudge.load(tmp_path / "bad.safetensors")


def test_any_trait_spec_gets_a_judge_of_unknown_validity():
    from traitlab.traits import load_trait

    judge = judge_for_spec(load_trait("humor"))
    assert judge.validity == {"humor": "unknown"} and judge.traits == ("humor",)
    funny = "Ha! I'd tell a silly joke and make everyone laugh with a goofy pun about it."
    dry = "I would answer the question plainly and precisely, without any jokes."
    view = judge.for_trait("humor")
    assert view.score("", funny) > view.score("", dry)
    assert judge_for_spec(load_trait("extraversion_low")).validity["extraversion"] != "unknown"


def test_metrics():
    assert jv.auroc([3, 4, 5, 1, 2, 3], [1, 1, 1, 0, 0, 0]) == pytest.approx((8 + 0.5) / 9)
    assert jv.pairwise_accuracy([2, 1, 1, 1], [(0, 1), (2, 3)]) == 0.75
    assert jv.spearman([1, 2, 3, 4], [10, 20, 30, 40]) == pytest.approx(1.0)
    assert jv.spearman([1, 2, 3, 4], [4, 3, 2, 1]) == pytest.approx(-1.0)
    assert jv.spearman([1, 1, 1], [1, 2, 3]) is None


def test_validity_targets_on_the_public_held_out_sets(shared_data):
    """The issue's targets: ≥ 0.90 pairwise accuracy on every Big5-Chat trait, ≥ 0.95 AUROC on NPTI."""
    judge = default_judge()
    sets = jv.load_sets(shared_data)
    rows = jv.validate(lambda qs, xs, t: judge.score_matrix(qs, xs)[:, judge.index(t)], sets, judge.traits)
    big5 = {r["trait"]: r["pairwise"] for r in rows if r["set"] == "big5chat"}
    npti = {r["trait"]: r["auroc"] for r in rows if r["set"] == "npti"}
    assert set(big5) == {"openness", "conscientiousness", "extraversion", "agreeableness"}
    assert len(npti) == 5
    assert all(v >= 0.90 for v in big5.values()), big5
    assert all(v >= 0.95 for v in npti.values()), npti


def test_user_csv_sets(tmp_path):
    path = tmp_path / "mine.csv"
    path.write_text(f'text,trait,pole\n"{EXTRAVERTED}",extraversion,high\n"{INTROVERTED}",extraversion,low\n')
    (s,) = jv.csv_sets(path)
    judge = default_judge()
    (row,) = jv.validate(lambda qs, xs, t: judge.score_matrix(qs, xs)[:, judge.index(t)], [s])
    assert row["auroc"] == 1.0 and row["n"] == 2
    s.texts, s.labels, s.questions = s.texts * 2, [1, 0, 1, 0], s.questions * 2
    s.texts[2] = "I like people."
    same = jv.validate(lambda qs, xs, t: judge.score_matrix(qs, xs)[:, judge.index(t)], [s],
                       others={"mirror": lambda qs, xs, t: -judge.score_matrix(qs, xs)[:, judge.index(t)]})
    assert same[0]["spearman[mirror]"] == pytest.approx(-1.0)
    path.write_text("text,pole\nx,high\n")
    with pytest.raises(ConfigError, match="columns"):
        jv.csv_sets(path)


def test_repetition_measures_and_profile():
    assert repetition_measures("the cat sat on the mat today")["rep3"] == 0.0
    loop = repetition_measures(" ".join(["I love it"] * 10))
    assert loop["rep3"] > 0.8 and loop["distinct1"] < 0.15
    assert repetition_measures("hahaha" * 30)["rep3"] > 0.95  # a loop without spaces is one word
    assert repetition_measures("Ilovepizzasomuch" * 8)["rep3"] > 0.8
    profiles = profile_many([EXTRAVERTED, INTROVERTED])
    assert profiles[0]["exclaim_rate"] == 1.0 and profiles[0]["empath:party"] > 0
    assert profiles[0]["sentiment"] > profiles[1]["sentiment"]
    assert profiles[1]["i_rate"] > 0
    mean = mean_profile(profiles)
    assert mean["words"] == pytest.approx((profiles[0]["words"] + profiles[1]["words"]) / 2, abs=1e-3)
    with pytest.raises(ConfigError):
        profile_many(["x"], categories=["no_such_category"])


def _cli(args, monkeypatch, capsys):
    from tests.core.test_cli import run_cli

    return run_cli(args, monkeypatch, capsys)


def test_judges_score_command(tmp_path, model_dir, monkeypatch, capsys):
    rows = tmp_path / "rows.jsonl"
    rows.write_text(json.dumps({"question": QUESTION, "reply": EXTRAVERTED}) + "\n"
                    + json.dumps({"question": QUESTION, "reply": INTROVERTED, "trait": "extraversion_low"}) + "\n")
    code, out, _ = _cli(["judges", "score", "--input", str(rows), "--coherence", "none", "--profile"],
                        monkeypatch, capsys)
    assert code == 0
    first, second = (json.loads(line) for line in out.splitlines())
    assert len(first["scores"]) == 5 and first["scores"]["extraversion"] > 65
    assert list(second["scores"]) == ["extraversion_low"] and second["scores"]["extraversion_low"] > 65
    assert first["judge"]["trait"] == "embedding:traitlab" and first["coherence"] is None
    assert "empath:party" in first["profile"]
    out_file = tmp_path / "out.jsonl"
    code, _, _ = _cli(["judges", "score", "-i", str(rows), "-o", str(out_file), "--reference", str(model_dir)],
                      monkeypatch, capsys)
    records = [json.loads(line) for line in out_file.read_text().splitlines()]
    assert code == 0 and all(0 <= r["coherence"] <= 100 for r in records)
    assert records[0]["judge"]["coherence"].startswith("coherence:")


@pytest.mark.parametrize("content, args, message", [
    (None, [], "not found"),
    ("{not json\n", [], "not valid JSON"),
    ('{"question": "q"}\n', [], "reply"),
    ('{"question": "q", "reply": "r", "trait": "no_such_trait"}\n', [], "no_such_trait"),
    ('{"question": "q", "reply": "r"}\n', ["--judge", "telepathy"], "unknown judge"),
    ('{"question": "q", "reply": "r"}\n', ["--judge", "endpoint"], "judge-url"),
])
def test_judges_score_errors_are_one_line(tmp_path, monkeypatch, capsys, content, args, message):
    path = tmp_path / "rows.jsonl"
    if content is not None:
        path.write_text(content)
    code, _, err = _cli(["judges", "score", "--input", str(path), "--coherence", "none", *args],
                        monkeypatch, capsys)
    assert code == 2 and err.startswith("error:") and message in err and len(err.strip().splitlines()) == 1


def test_auto_off_the_organism_builds_calibrated_offline_judges(model_dir):
    """``--judge auto`` on a non-organism model without an endpoint: the embedding trait judge and the
    reference-LM coherence judge, both calibrated on the model's own replies; the situational summary names
    both judges and carries the profile."""
    from traitlab.evaluation.config import JudgeConfig, SituationalConfig
    from traitlab.evaluation.suite import Judges, run_situational
    from traitlab.model import load_model
    from traitlab.traits import load_trait

    lm = load_model(str(model_dir))
    judges = Judges.from_config(JudgeConfig(kind="auto", reference=str(model_dir)), lm)
    assert judges.kind == "embedding" and judges.embedding._built is None  # nothing built until used
    spec = load_trait("extraversion_low")
    judge, rubric = judges.trait_judge(spec)
    assert judge.name == f"embedding:traitlab@baseline:{lm.spec}:extraversion/low" and rubric == ""
    summary = run_situational(lm, None, spec, judges, SituationalConfig(n_questions=2, max_new_tokens=8),
                              with_coherence=True, fluency=False)
    assert summary["judge"] == judge.name
    assert summary["coherence_judge"] == f"coherence:{model_dir}@baseline:{lm.spec}"
    assert 0 <= summary["expression_mean"] <= 100 and "empath:party" in summary["profile"]
    humor, _ = judges.trait_judge(load_trait("humor"))
    assert humor.name.startswith("embedding:spec:humor")


def test_judges_validate_and_fit_commands(tmp_path, monkeypatch, capsys):
    path = tmp_path / "mine.csv"
    path.write_text(f'text,trait,pole\n"{EXTRAVERTED}",extraversion,high\n"{INTROVERTED}",extraversion,low\n'
                    '"I tell jokes all day.",humor,high\n"I am serious.",humor,low\n')
    empty = tmp_path / "no-sets"
    empty.mkdir()
    code, out, _ = _cli(["judges", "validate", "--data", str(empty), "--csv", str(path), "--json"], monkeypatch, capsys)
    rows = json.loads(out)["rows"]
    assert code == 0 and rows[0]["trait"] == "extraversion" and rows[0]["auroc"] == 1.0
    assert rows[1]["note"] == "no judge for this trait"
    code, _, err = _cli(["judges", "validate", "--data", str(tmp_path / "absent")], monkeypatch, capsys)
    assert code == 2 and err.startswith("error:") and "not found" in err
    code, _, err = _cli(["judges", "validate", "--compare", "embedding", "--csv", str(path)], monkeypatch, capsys)
    assert code == 2 and "--compare" in err
    out_file = tmp_path / "judge.safetensors"
    code, _, _ = _cli(["judges", "fit", "--out", str(out_file), "--data", str(empty)], monkeypatch, capsys)
    assert code == 0 and EmbeddingJudge.load(out_file).validity["openness"] == "unknown"
