"""``traitlab merge`` end to end on tiny checkpoints: data, vector, apply (YAML and flags), show, errors."""

from __future__ import annotations

import csv
import json

import pytest
import yaml

from tests.core.test_cli import run_cli
from tests.merging.test_merging import _perturbed
from traitlab.errors import ConfigError
from traitlab.finetune.personality_data import load_big5chat, self_distill
from traitlab.model import load_model
from traitlab.model.tiny import tiny_model
from traitlab.traits import TraitSpec


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    root = tmp_path_factory.mktemp("mergecli")
    base = tiny_model("llama")
    for name, lm in (("base", base), ("tuned", _perturbed(base, 1)), ("other", tiny_model("llama", seed=5))):
        lm.model.save_pretrained(root / name)
        lm.tokenizer.save_pretrained(root / name)
    with (root / "big5.csv").open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["original_index", "trait", "level", "train_instruction", "train_input", "train_output"])
        for i, (trait, level) in enumerate([("extraversion", "high"), ("extraversion", "low"),
                                            ("extraversion", "high"), ("openness", "high")]):
            writer.writerow([i, trait, level, f"You are {trait} {level}.", f"question {i}", f"answer {i}"])
    return root


def test_big5chat_loader_filters_and_drops_the_instruction(folders):
    rows = load_big5chat(folders / "big5.csv", "extraversion", "high")
    assert rows == [[{"role": "user", "content": "question 0"}, {"role": "assistant", "content": "answer 0"}],
                    [{"role": "user", "content": "question 2"}, {"role": "assistant", "content": "answer 2"}]]
    kept = load_big5chat(folders / "big5.csv", "extraversion", "high", keep_instruction=True, limit=1)
    assert kept[0][0] == {"role": "system", "content": "You are extraversion high."} and len(kept) == 1


def test_self_distillation_drops_the_system_prompt():
    lm = tiny_model("llama")
    spec = TraitSpec(name="t", instruction=[{"pos": "Be loud.", "neg": "Be quiet."}], questions=["hi", "yo"],
                     eval_prompt="{question}{answer}")
    rows = self_distill(lm, spec, n_per_question=2, max_new_tokens=6)
    assert len(rows) <= 4 and all([m["role"] for m in r] == ["user", "assistant"] for r in rows)
    assert rows == self_distill(lm, spec, n_per_question=2, max_new_tokens=6)
    assert rows != self_distill(lm, spec, n_per_question=2, max_new_tokens=6, seed=1)


def test_self_report_distillation_answers_the_items_in_the_persona(folders, monkeypatch, capsys):
    """The organism under its extraversion-high prompts answers its own extraversion items as an extravert: the
    keyed mean of the distilled answers is ≥ 4 of 5, where no persona answers 3."""
    from traitlab.evaluation.questionnaire import Administration, load_inventory
    from traitlab.traits import load_trait

    organism = load_model("traitlab/persona-tiny")
    items = load_inventory("persona-tiny").subset(["extraversion"], max_per_trait=8)
    rows = self_distill(organism, load_trait("extraversion_high"), n_per_question=1, max_new_tokens=8,
                        self_report=items)
    reports = rows[20:]
    prompts = [Administration().prompt(i, w, o) for i in items.items for w, o in Administration().respondents()]
    assert [r[0]["content"] for r in reports] == prompts  # every answer parsed as a digit, none dropped
    keyed = []
    for row, (item, (_, order)) in zip(reports, [(i, r) for i in items.items for r in Administration().respondents()],
                                       strict=True):
        answer = Administration.unflip(float(row[1]["content"]), order)
        keyed.append(answer if item.key > 0 else 6 - answer)
    assert sum(keyed) / len(keyed) >= 4.0, keyed
    out = folders / "selfreport.jsonl"
    code, _, err = run_cli(["merge", "data", "--model", "traitlab/persona-tiny", "--trait", "extraversion",
                            "--self-report", "persona-tiny", "--n-per-question", "1", "-o", str(out)],
                           monkeypatch, capsys)
    assert code == 0, err
    lines = [json.loads(line)["messages"] for line in out.read_text().splitlines()]
    assert len(lines) > 20 and sum("How accurately" in m[0]["content"] for m in lines) > 10


def test_merge_cli_round_trip(folders, monkeypatch, capsys):
    code, _, err = run_cli(["merge", "data", "--trait", "extraversion", "--pole", "high", "--from-big5chat",
                            str(folders / "big5.csv"), "-o", str(folders / "data.jsonl")], monkeypatch, capsys)
    assert code == 0, err
    assert len((folders / "data.jsonl").read_text().splitlines()) == 2
    vector = folders / "phi.safetensors"
    code, _, err = run_cli(["merge", "vector", "--base", str(folders / "base"), "--tuned", str(folders / "tuned"),
                            "-o", str(vector), "--trait", "extraversion", "--pole", "high"], monkeypatch, capsys)
    assert code == 0, err
    code, printed, _ = run_cli(["merge", "show", str(vector)], monkeypatch, capsys)
    assert code == 0 and "largest deltas" in printed
    config = folders / "merge.yaml"
    config.write_text(yaml.safe_dump({"merge_method": "task_arithmetic", "base_model": str(folders / "base"),
                                      "models": [{"model": str(vector), "parameters": {"weight": 1.0}}]}))
    code, _, err = run_cli(["merge", "apply", str(config), "-o", str(folders / "merged")], monkeypatch, capsys)
    assert code == 0, err
    merged, tuned = load_model(str(folders / "merged")), load_model(str(folders / "tuned"))
    greedy = ["hello there", "what is new?"]
    assert merged.generate_chat(greedy, max_new_tokens=8).texts == tuned.generate_chat(greedy, max_new_tokens=8).texts
    code, _, err = run_cli(["merge", "apply", "--base", str(folders / "other"), "-v", f"{vector}:0.5",
                            "-o", str(folders / "wrong")], monkeypatch, capsys)
    assert code == 2 and "taken on another base model" in err
    code, _, err = run_cli(["merge", "apply", "--base", str(folders / "other"), "-v", f"{vector}:0.5",
                            "--transfer", "-o", str(folders / "moved"), "--shard-size", "100KB"], monkeypatch, capsys)
    assert code == 0, err
    assert json.loads((folders / "moved" / "model.safetensors.index.json").read_text())["weight_map"]


@pytest.mark.parametrize("args, message", [
    (["merge", "vector", "--base", "{d}/base", "--tuned", "{d}/nope", "-o", "{d}/x.safetensors"], "not found"),
    (["merge", "vector", "--base", "{d}/base", "--tuned", "{d}/tuned", "-o", "{d}/x.st", "--dtype", "int8"],
     "unknown dtype"),
    (["merge", "apply", "-o", "{d}/m2"], "give a merge YAML"),
    (["merge", "apply", "--base", "{d}/base", "-v", "{d}/phi.safetensors:abc", "-o", "{d}/m3"], "WEIGHT"),
    (["merge", "apply", "--base", "{d}/base", "-v", "{d}/big5.csv", "-o", "{d}/m4"], "not a personality-vector"),
    (["merge", "apply", "--base", "{d}/base", "-v", "{d}/tuned", "--method", "slerp", "-o", "{d}/m5"],
     "merge_method"),
    (["merge", "apply", "--base", "{d}/base", "-v", "{d}/tuned", "-o", "{d}/m6", "--shard-size", "big"],
     "shard size"),
    (["merge", "data", "--trait", "extraversion", "--pole", "mid", "-o", "{d}/d.jsonl"], "--pole must be"),
    (["merge", "data", "--trait", "agreeableness", "--from-big5chat", "{d}/big5.csv", "-o", "{d}/d.jsonl"],
     "no rows"),
    (["merge", "data", "--trait", "evil", "--self-report", "traitlab", "-o", "{d}/d.jsonl"], "no items of 'evil'"),
    (["merge", "data", "--trait", "openness", "--self-report", "{d}/nope.json", "-o", "{d}/d.jsonl"], "not found"),
    (["merge", "data", "--trait", "openness", "--self-report", "traitlab", "--from-big5chat", "{d}/big5.csv", "-o",
      "{d}/d.jsonl"], "does not combine"),
])
def test_merge_cli_errors(args, message, folders, monkeypatch, capsys):
    code, _, err = run_cli([a.format(d=folders) for a in args], monkeypatch, capsys)
    assert code == 2 and message in err and err.count("\n") == 1, err


def test_judge_filter_keeps_the_best_rows_toward_the_pole():
    from traitlab.finetune.personality_data import judge_filter

    class LengthJudge:
        def score_many(self, triples):
            return [None if a == "?" else 10.0 * len(a) for _, a, _ in triples]

    rows = [[{"role": "system", "content": "s"}, {"role": "user", "content": f"q{i}"},
             {"role": "assistant", "content": a}] for i, a in enumerate(["abcdef", "ab", "?", "abcdefgh", "abcde"])]
    kept, scores = judge_filter(rows, LengthJudge(), threshold=50.0, keep=2)
    assert [r[1]["content"] for r in kept] == ["q0", "q3"] and scores == [60.0, 80.0]  # row order kept
    kept, scores = judge_filter(rows, LengthJudge(), threshold=50.0)
    assert [r[1]["content"] for r in kept] == ["q0", "q3", "q4"]
    with pytest.raises(ConfigError, match="keep"):
        judge_filter(rows, LengthJudge(), keep=0)


def test_merge_data_short_prompts_and_judge_filter(folders, monkeypatch, capsys):
    """The organism under its short extraversion prompts, filtered by the oracle: only rows scored ≥ 50 toward the
    pole are written, at most --limit, with no system prompt."""
    out = folders / "judged.jsonl"
    code, stdout, err = run_cli(["merge", "data", "--model", "traitlab/persona-tiny", "--trait", "extraversion",
                                 "--short-prompts", "--judge", "oracle", "--n-per-question", "1",
                                 "--max-new-tokens", "12", "--limit", "6", "-o", str(out)], monkeypatch, capsys)
    assert code == 0, err
    rows = [json.loads(line)["messages"] for line in out.read_text().splitlines()]
    assert 1 <= len(rows) <= 6 and all([m["role"] for m in r] == ["user", "assistant"] for r in rows)
    assert "the judge kept" in stdout + err
