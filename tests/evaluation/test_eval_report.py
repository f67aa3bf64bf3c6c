"""The comparison report: section order, the method × trait table against results.jsonl, the monitor suite, and
the rendered page in headless Chromium (skipped without Chromium)."""

from __future__ import annotations

import json
import math
import os
import shutil
from html.parser import HTMLParser

import pytest
import torch

from traitlab.evaluation import scoring
from traitlab.evaluation.config import MonitorConfig
from traitlab.evaluation.monitoring import run_monitor
from traitlab.evaluation.report import render_html, write_report
from traitlab.methods.steering import ResidualSteering
from traitlab.traits.spec import TraitSpec

CHROMIUM = os.environ.get("TRAITLAB_CHROMIUM") or shutil.which("chromium") or shutil.which("chromium-browser")
SPEC = TraitSpec.model_validate({
    "name": "tiny_extraversion", "trait": "extraversion", "pole": "high",
    "instruction": [{"pos": "Be loud.", "neg": "Be quiet."}, {"pos": "You love crowds.", "neg": "You hate crowds."}],
    "questions": ["Plans?", "Hi?", "Why?", "What now?"], "eval_prompt": "Q {question} A {answer} Score 0-100:"})


class TableCells(HTMLParser):
    """The ``data-*`` number cells of the method × trait table."""

    def __init__(self) -> None:
        super().__init__()
        self.cells: dict[tuple[str, str | None, str], float] = {}

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if tag == "td" and "data-value" in a:
            self.cells[(a["data-label"], a.get("data-trait"), a["data-metric"])] = float(a["data-value"])


def _row(label, trait, scale, seed, expression, var, extra=None):
    return {"key": f"{label}{trait}{scale}{seed}", "label": label, "method": label, "trait": trait,
            "spec": f"{trait}_high", "pole": "high", "scale": scale, "seed": seed, "model": "m", "judge": "oracle",
            "trait_expression": expression, "expression_var": var, "coherence": 80.0 + seed, "perplexity": 2.0,
            "questionnaire": 3.0 + (0.5 if label != "none" else 0), "result": extra or {}}


def _rows():
    rows = []
    for seed in (0, 1):
        for trait, base in (("extraversion", 50.0), ("agreeableness", 40.0)):
            rows.append(_row("none", trait, None, seed, base + seed, 4.0))
            for scale in (0.5, 1.0, 2.0):
                rows.append(_row("vectors", trait, scale, seed, base + 20 * scale + seed, 9.0 * scale))
    monitor = {"layer": 2, "pearson_r": 0.9, "points": [
        {"condition": c, "projection": float(i), "score": 10.0 * i} for i, c in enumerate(["suppress", "none",
                                                                                            "promote"])]}
    rows[2]["result"] = {"monitor": {"extraversion_high": monitor}}
    return rows


def _mean(values):
    present = [v for v in values if v is not None]
    return sum(present) / len(present) if present else None


def expected_cells(rows):
    """From results rows alone: each label at scale 1 (or its only scale), seed-averaged; the extra columns
    average the per-trait means."""
    out = {}
    for label in dict.fromkeys(r["label"] for r in rows):
        mine = [r for r in rows if r["label"] == label]
        scales = {r["scale"] for r in mine}
        ref = 1.0 if 1.0 in scales else next(iter(scales))
        at_ref = [r for r in mine if r["scale"] == ref]
        traits = list(dict.fromkeys(r["trait"] for r in at_ref))
        for trait in traits:
            value = _mean([r["trait_expression"] for r in at_ref if r["trait"] == trait])
            if value is not None:
                out[(label, trait, "trait_expression")] = value
        for metric in ("questionnaire", "coherence", "perplexity"):
            value = _mean([_mean([r.get(metric) for r in at_ref if r["trait"] == t]) for t in traits])
            if value is not None:
                out[(label, None, metric)] = value
    return out


def test_report_opens_with_the_method_trait_table_matching_results():
    rows = _rows()
    html = render_html(rows)
    order = [html.index(f"id='{s}'") for s in ("table", "dose-response", "monitor", "examples", "summary")]
    assert order == sorted(order)
    parser = TableCells()
    parser.feed(html)
    expected = expected_cells(rows)
    assert set(parser.cells) == set(expected)
    for key, value in expected.items():
        assert parser.cells[key] == pytest.approx(value, abs=1e-4), key
    # mean ± SD, SD = sqrt(mean variance over seeds): vectors @ 1 on extraversion: 70.5 ± 3.0
    assert "70.5 ± 3.0" in html and "vectors @ 1" in html
    assert "monitor projections" in html and html.count("data:image/png;base64,") >= 3


def test_monitor_suite_projects_before_the_answer(llama):
    vector = torch.randn(llama.hidden_size, generator=torch.Generator().manual_seed(0))
    steering = ResidualSteering({2: vector})

    class LengthJudge:
        def score_many(self, triples):
            return [float(len(a)) for _, a, _ in triples]

    config = MonitorConfig(n_questions=3, max_new_tokens=6)
    record = run_monitor(llama, steering, SPEC, LengthJudge(), SPEC.rubric, config)
    assert record["layer"] == 2
    assert [p["condition"] for p in record["points"]] == ["suppress"] * 6 + ["none"] * 3 + ["promote"] * 6
    # the projection is read at the last prompt token: the same question and system prompt give the same value
    unit = vector / vector.norm()
    from traitlab.monitor import project_conversations

    direct = project_conversations(llama, unit, 2, [[{"role": "system", "content": "Be loud."},
                                                     {"role": "user", "content": "Plans?"}]])
    assert record["points"][9]["projection"] == pytest.approx(direct[0]["last_prompt_projection"], abs=1e-3)
    pts = record["points"]
    assert record["pearson_r"] == pytest.approx(scoring.pearson([p["projection"] for p in pts],
                                                                [p["score"] for p in pts]))
    assert run_monitor(llama, None, SPEC, LengthJudge(), SPEC.rubric, config) is None
    assert run_monitor(llama, ResidualSteering({2: vector}, mode="ablate"), SPEC, LengthJudge(), SPEC.rubric,
                       config) is None


@pytest.mark.skipif(CHROMIUM is None, reason="Chromium is not installed (apt-get install chromium)")
def test_report_renders_in_headless_chromium(tmp_path):
    sync_api = pytest.importorskip("playwright.sync_api")
    rows = _rows()
    paths = write_report(rows, tmp_path)
    (tmp_path / "results.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, headless=True,
                                    args=["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage"])
        page = browser.new_page(viewport={"width": 1280, "height": 900})
        page.goto(paths["report"].resolve().as_uri())
        assert page.locator("h2").first.inner_text() == "Method × trait"
        cells = page.locator("#method-trait td[data-value]")
        shown = {(c.get_attribute("data-label"), c.get_attribute("data-trait"), c.get_attribute("data-metric")):
                 c.inner_text() for c in cells.all()}
        images = page.locator("img")
        assert images.count() >= 3
        assert all(images.nth(i).evaluate("img => img.naturalWidth") > 0 for i in range(images.count()))
        page.screenshot(path=str(tmp_path / "report.png"), full_page=True)
        browser.close()
    expected = expected_cells([json.loads(line) for line in (tmp_path / "results.jsonl").read_text().splitlines()])
    for (label, trait, metric), value in expected.items():
        text = shown[(label, trait, metric)]
        assert math.isclose(float(text.split(" ± ")[0]), value, abs_tol=0.051 if trait else 0.0051), (text, value)
    assert (tmp_path / "report.png").stat().st_size > 20_000
