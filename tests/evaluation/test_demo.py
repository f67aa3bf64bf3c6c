"""``traitlab demo``: the experiment (SmolLM2 by default, both poles, held-out questions), its report (sections
1-6, the table against results.jsonl), the console summary, the Markdown table and the README block made from
it, the cache on rerun, and the CLI's error lines."""

from __future__ import annotations

import json
import math
import re
import shutil
import subprocess
import time
from html.parser import HTMLParser
from pathlib import Path

import pytest
import yaml

from tests.core.test_cli import run_cli
from traitlab.evaluation.config import load_experiment
from traitlab.evaluation.demo import (
    DEMO_FILE,
    ORGANISM_FILE,
    console_summary,
    demo_experiment,
    markdown_table,
    pole_cells,
    run_demo,
    t_interval,
)
from traitlab.evaluation.offline import calibration_questions
from traitlab.evaluation.recipes.base import RecipeContext
from traitlab.traits import load_trait

ROOT = Path(__file__).resolve().parents[2]
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
SECTIONS = ("table", "frontier", "dose-response", "examples", "profile", "judges")
POLES = [f"{t}_{p}" for t in ("openness", "conscientiousness", "extraversion", "agreeableness", "neuroticism")
         for p in ("high", "low")]
METHODS = ["none", "prompt", "p2", "persona_vectors", "npti", "subnetwork", "personality_vector"]


def test_demo_defaults_to_smollm2_with_both_poles_and_every_method():
    experiment = demo_experiment()
    assert experiment["model"] == "smollm2-135m-instruct"
    assert experiment["traits"] == POLES
    assert [m["name"] for m in experiment["methods"]] == METHODS
    swept = {m["name"] for m in experiment["methods"] if m.get("sweep")}
    assert swept == {"persona_vectors", "npti", "subnetwork", "personality_vector"}
    assert experiment["judge"]["kind"] == "auto"
    load_experiment(experiment)  # valid without loading a model
    assert yaml.safe_load((ROOT / "examples" / "demo.yaml").read_text()) == yaml.safe_load(DEMO_FILE.read_text())
    assert (yaml.safe_load((ROOT / "examples" / "demo_organism.yaml").read_text())
            == yaml.safe_load(ORGANISM_FILE.read_text()))


def test_quick_and_organism_variants():
    quick = demo_experiment(quick=True)
    assert quick["traits"] == ["extraversion_high", "extraversion_low"]
    assert not any(m.get("sweep") for m in quick["methods"])
    assert quick["evaluations"]["situational"]["n_questions"] == 4
    organism = demo_experiment(model="traitlab/persona-tiny")
    assert organism["model"] == "traitlab/persona-tiny" and organism["judge"]["kind"] == "oracle"
    other = demo_experiment(model="qwen2.5-coder-0.5b-instruct")
    assert other["model"] == "qwen2.5-coder-0.5b-instruct" and other["traits"] == POLES


def test_held_out_questions_never_fit_or_calibrate_anything():
    calibration = set(calibration_questions())
    n_eval = demo_experiment()["evaluations"]["situational"]["n_questions"]
    for pole in POLES:
        spec = load_trait(pole)
        held_out = set(spec.held_out_questions[:n_eval])
        assert len(held_out) == n_eval
        assert not held_out & set(spec.questions), pole
        assert not held_out & calibration, pole
        high = load_trait(pole.replace("_low", "_high"))  # the mirrored fits use the high pole's questions
        assert not held_out & set(high.questions), pole


def test_low_pole_context_points_at_the_high_pole(tmp_path):
    context = RecipeContext(None, load_trait("agreeableness_low"), tmp_path / "npti" / "agreeableness_low")
    high = context.high_pole()
    assert high.spec.name == "agreeableness_high" and high.workdir == tmp_path / "npti" / "agreeableness_high"
    assert high.high_pole() is high
    trimmed = context.trimmed(3)
    assert trimmed.questions == context.spec.questions[:3] and context.trimmed(None) is context.spec


def test_t_interval_matches_the_textbook_value():
    lo, hi = t_interval(50.0, 100.0, 6)  # t(0.975, 5) = 2.5706; sqrt(100 / 6) = 4.0825
    assert math.isclose(hi - 50.0, 2.5706 * 4.0825, rel_tol=1e-3) and math.isclose(lo + hi, 100.0)
    assert t_interval(50.0, None, 6) is None and t_interval(50.0, 4.0, 1) is None


class Cells(HTMLParser):
    """The ``data-*`` number cells of the method × pole table."""

    def __init__(self) -> None:
        super().__init__()
        self.cells: dict[tuple[str, str, str], float] = {}
        self.inside = False

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if tag == "table" and a.get("id") == "method-pole":
            self.inside = True
        if self.inside and "data-value" in a:
            self.cells[(a["data-label"], a["data-trait"], a["data-metric"])] = float(a["data-value"])

    def handle_endtag(self, tag):
        if tag == "table":
            self.inside = False


def _organism_experiment():
    experiment = demo_experiment(model="traitlab/persona-tiny")
    experiment.update(traits=["extraversion_high", "extraversion_low"], name="tiny demo")
    experiment["methods"] = [{"name": "none"}, {"name": "prompt", "sweep": {"scale": [0.0, 1.0]}}, {"name": "p2"}]
    experiment["evaluations"] = {"situational": {"n_questions": 4, "max_new_tokens": 16, "examples": 4},
                                 "coherence": {"threshold": 50}}
    return experiment


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    folder = tmp_path_factory.mktemp("demo")
    start = time.perf_counter()
    done = run_demo(_organism_experiment(), folder, progress=False)
    return folder, done, time.perf_counter() - start


def test_report_has_sections_in_order_and_its_table_matches_results(tiny_run):
    folder, _, _ = tiny_run
    page = (folder / "report.html").read_text()
    positions = [page.index(f"id='{s}'") for s in SECTIONS]
    assert positions == sorted(positions)
    assert "<script" not in page and "http://" not in page and "https://" not in page  # opens offline
    assert page.count("<svg") >= 2  # the frontier and the dose-response curve of the swept prompt
    rows = [json.loads(line) for line in (folder / "results.jsonl").read_text().splitlines()]
    assert len(rows) == 8  # (none, prompt@0, prompt@1, p2) x 2 poles
    expected = {}
    for row in rows:
        if row["scale"] in (None, 1.0):
            expected[(row["label"], row["trait"], "trait_expression")] = row["trait_expression"]
            expected[(row["label"], row["trait"], "coherence")] = row["coherence"]
    parser = Cells()
    parser.feed(page)
    assert set(parser.cells) == set(expected)
    for key, value in expected.items():
        assert math.isclose(parser.cells[key], value, abs_tol=1e-4), key
    assert page.count("class='cell best'") == 2  # one best cell per pole


def test_shift_is_paired_against_none_on_the_same_questions(tiny_run):
    _, done, _ = tiny_run
    cells = {(c["label"], c["trait"], c["scale"]): c for c in done["cells"]}
    for pole in ("extraversion_high", "extraversion_low"):
        base = {a["question"]: a["expression"] for a in cells[("none", pole, None)]["answers"]}
        prompt = cells[("prompt", pole, 1.0)]
        diffs = [a["expression"] - base[a["question"]] for a in prompt["answers"]]
        assert len(diffs) == 4
        assert math.isclose(prompt["shift"], sum(diffs) / 4, abs_tol=1e-9)
        assert prompt["moves"] == (prompt["shift_ci"][0] > 0)
        # prompt at scale 0 is no prompt: the organism answers exactly as under none
        assert cells[("prompt", pole, 0.0)]["shift"] == 0.0


def test_console_summary_fits_80_columns_and_markdown_matches_cells(tiny_run):
    _, done, _ = tiny_run
    lines = console_summary(done["cells"], done["threshold"])
    assert all(len(line) <= 80 for line in lines)
    assert any(line.strip().startswith("E+") for line in lines) and any("prompt" in line for line in lines)
    table = markdown_table(done["cells"], done["threshold"]).splitlines()
    assert table[0] == "| method | E+ | E− | shift | coherence |"
    none = next(c for c in done["cells"] if c["label"] == "none" and c["trait"] == "extraversion_high")
    assert table[2].startswith(f"| none | {none['mean']:.1f}") or table[2].startswith(f"| none | **{none['mean']:.1f}")


def test_rerun_reuses_every_cell(tiny_run):
    folder, done, _ = tiny_run
    before = (folder / "results.jsonl").read_text()
    start = time.perf_counter()
    again = run_demo(_organism_experiment(), folder, progress=False)
    assert time.perf_counter() - start < 5.0
    assert (folder / "results.jsonl").read_text() == before
    assert [c["mean"] for c in again["cells"]] == [c["mean"] for c in done["cells"]]


def test_readme_table_is_the_checked_in_run_rendered():
    results = ROOT / "benchmarks" / "demo_smollm2_results.jsonl"
    if not results.is_file():
        pytest.skip("no checked-in demo run")
    rows = [json.loads(line) for line in results.read_text().splitlines() if line.strip()]
    readme = (ROOT / "README.md").read_text()
    block = re.search(r"<!-- demo-table:start -->\n(.*?)\n<!-- demo-table:end -->", readme, re.S)
    assert block is not None
    table = markdown_table(pole_cells(rows))
    assert table in block.group(1)


@pytest.mark.parametrize("args, message", [
    (["demo", "--model", "no/such-model-here", "--out", "{tmp}/d"], "error:"),
    (["demo", "--out", "{tmp}/file.txt"], "is a file"),
])
def test_cli_errors_are_one_line(tmp_path, monkeypatch, capsys, args, message):
    (tmp_path / "file.txt").write_text("x")
    code, out, err = run_cli([a.replace("{tmp}", str(tmp_path)) for a in args], monkeypatch, capsys)
    assert code == 2, out + err
    assert message in err and "Traceback" not in err and len(err.strip().splitlines()) == 1


@pytest.mark.skipif(CHROMIUM is None, reason="Chromium is not installed (apt-get install chromium)")
def test_report_renders_in_headless_chromium(tiny_run, tmp_path):
    folder, _, _ = tiny_run
    png = tmp_path / "report.png"
    done = subprocess.run([CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                           "--window-size=1280,900", f"--screenshot={png}", (folder / "report.html").as_uri()],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    assert png.stat().st_size > 10_000


@pytest.mark.parametrize("params, message", [
    ({"layer": 16}, "needs both layer and coef"),
    ({"layer": 16, "coef": 4.0, "positions": ["response", "prompt"]}, "one positions value"),
    ({"n_questions": 0}, "n_questions"),
    ({"mirror": 1}, "mirror must be true or false"),
])
def test_persona_vector_demo_parameters_are_checked(params, message):
    from traitlab.errors import ConfigError
    from traitlab.evaluation.recipes import validate_method

    with pytest.raises(ConfigError, match=message):
        validate_method("persona_vectors", params)
    fixed = validate_method("persona_vectors", {"layer": 16, "coef": 4.0, "mirror": True, "filter_pairs": False})
    assert fixed.extraction().filter_pairs is False
