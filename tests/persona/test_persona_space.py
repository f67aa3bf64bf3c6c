"""Persona space, the Assistant Axis and axis capping: exact math on constructed vectors, capping semantics on a
tiny model (clamped into the range, in-range rows bit-identical, per-row = alone), artifacts, the CLI, and a
small real-weight run on SmolLM2."""

from __future__ import annotations

import json

import pytest
import torch

from tests.core.test_cli import run_cli
from traitlab.errors import ArtifactError, ConfigError, LayerError
from traitlab.interventions import compose
from traitlab.methods import ResidualSteering
from traitlab.methods.axis_capping import AxisCapping, from_space
from traitlab.methods.persona_space import (
    PersonaSpace,
    RoleSet,
    build,
    cosine_table,
    fit_space,
    load_conversations,
    load_roles,
)
from traitlab.model import capture_residual, teacher_forced
from traitlab.model.tiny import tiny_model
from traitlab.monitor.axis import cohens_d, run_conversations, summarize
from traitlab.registry import load_intervention

ROLES = torch.tensor([[3.0, 0, 0], [-3.0, 0, 0], [0, 1.0, 0], [0, -1.0, 0]])  # default first


def test_pca_and_axis_are_exact_on_constructed_vectors():
    space = fit_space(ROLES, ["assistant", "a", "b", "c"], "assistant")
    assert torch.allclose(space.mean[0], torch.zeros(3))
    assert torch.allclose(space.variance[0], torch.tensor([0.9, 0.1, 0.0]), atol=1e-6)
    assert torch.allclose(space.components[0, 0], torch.tensor([1.0, 0, 0]), atol=1e-6)  # towards the default
    assert torch.allclose(space.components[0, 1].abs(), torch.tensor([0, 1.0, 0]), atol=1e-6)
    # the axis: default minus the mean of the other roles = (3,0,0) − (−1,0,0)
    assert torch.allclose(space.axis[0], torch.tensor([4.0, 0, 0]))
    assert space.axis_pc1_cosine(0) == pytest.approx(1.0)
    assert torch.allclose(space.coordinates[0] @ space.components[0], ROLES, atol=1e-5)  # X = coords · comps
    assert space.role_projections(0).tolist() == pytest.approx([3.0, -3.0, 0.0, 0.0])


def test_capping_range_is_a_percentile_of_the_default_tokens():
    tokens = [torch.tensor([[float(x), 0, 0] for x in range(1, 11)])]
    space = fit_space(ROLES, ["assistant", "a", "b", "c"], "assistant", default_tokens=tokens)
    assert space.percentile(0, 25) == pytest.approx(float(torch.quantile(torch.arange(1.0, 11), 0.25)))
    cap = from_space(space, [0], 25, 90)
    assert cap.ranges[0] == (pytest.approx(3.25), pytest.approx(9.1))
    with pytest.raises(ConfigError):
        space.percentile(0, 101)
    with pytest.raises(ConfigError):
        from_space(space, [0], 80, 20)
    with pytest.raises(LayerError):
        from_space(space, [3])


@pytest.mark.parametrize("bad", [torch.tensor([[float("nan"), 0, 0]] * 4), ROLES[:2]])
def test_fit_refuses_nan_and_too_few_roles(bad):
    with pytest.raises(ConfigError):
        fit_space(bad, [f"r{i}" for i in range(len(bad))], "r0")


def test_cosine_table():
    names, cos = cosine_table({"x": torch.tensor([1.0, 0]), "y": torch.tensor([1.0, 1.0])})
    assert names == ["x", "y"] and cos[0, 1] == pytest.approx(2 ** -0.5)


def test_shipped_data_is_valid():
    roles = load_roles()
    assert len(roles.roles) >= 60 and roles.roles[roles.default_index].system is None
    assert len({r.category for r in roles.roles}) >= 4
    assert set(load_conversations()) == {"bounded_task", "emotional", "who_are_you", "role_play"}


@pytest.mark.parametrize("content, message", [
    ("{", "not valid JSON"), ('{"roles": []}', "at least"),
    ('{"roles": [{"name": "a"}, {"name": "b"}, {"name": "c"}], "questions": ["q"]}', "default role"),
    ('{"roles": [{"name": "a"}, {"name": "a"}, {"name": "c"}], "questions": ["q"]}', "twice"),
])
def test_bad_roles_files(tmp_path, content, message):
    path = tmp_path / "roles.json"
    path.write_text(content)
    with pytest.raises(ConfigError, match=message):
        load_roles(path)
    with pytest.raises(ConfigError, match="not found"):
        load_roles(tmp_path / "missing.json")


# ----------------------------------------------------------------------------------------------- capping


@pytest.fixture(scope="module")
def lm():
    return tiny_model("llama")


def _batch(lm, n=2):
    ids = torch.randint(5, lm.config.vocab_size, (n, 9), generator=torch.Generator().manual_seed(0))
    return ids, torch.ones_like(ids)


def _capture(lm, intervention, ids, mask, layer, row_scale=None):
    applied = intervention.applied(lm, row_scale=row_scale) if intervention else torch.no_grad()
    with applied, capture_residual(lm, [layer], keep_tokens=True) as cap:
        logits = teacher_forced(lm, ids, mask).logits
    return cap.tokens(layer)[0], logits


def test_capping_clamps_into_range_and_leaves_in_range_positions_bit_identical(lm):
    layer, ids_mask = 2, _batch(lm)
    direction = torch.randn(lm.hidden_size, generator=torch.Generator().manual_seed(1))
    unit = direction / direction.norm()
    hidden, _ = _capture(lm, None, *ids_mask, layer)
    p = hidden @ unit
    low, high = float(p.quantile(0.3)), float(p.quantile(0.8))
    cap = AxisCapping({layer: direction}, {layer: (low, high)})
    capped, _ = _capture(lm, cap, *ids_mask, layer)
    q = capped @ unit
    assert bool((q >= low - 1e-4).all()) and bool((q <= high + 1e-4).all())
    inside = (p >= low) & (p <= high)
    assert inside.any() and (~inside).any()
    assert torch.equal(capped[inside], hidden[inside])
    # a range holding everything: the model's output is bit-identical
    wide = AxisCapping({layer: direction}, {layer: (-1e9, 1e9)})
    assert torch.equal(_capture(lm, wide, *ids_mask, 3)[1], _capture(lm, None, *ids_mask, 3)[1])


def test_per_row_capping_in_one_batch_equals_each_row_alone(lm):
    layer, (ids, mask) = 2, _batch(lm, 3)
    direction = torch.randn(lm.hidden_size, generator=torch.Generator().manual_seed(2))
    hidden, _ = _capture(lm, None, ids, mask, layer)
    p = hidden @ (direction / direction.norm())
    cap = AxisCapping({layer: direction}, {layer: (float(p.median()), None)})
    scales = torch.tensor([1.0, 0.0, 0.5])
    _, batched = _capture(lm, cap, ids, mask, layer + 1, row_scale=scales)
    for row, scale in enumerate(scales.tolist()):
        _, alone = _capture(lm, cap.scaled(scale), ids[row:row + 1], mask[row:row + 1], layer + 1)
        assert torch.allclose(batched[row], alone[0], atol=1e-5)
    _, uncapped = _capture(lm, None, ids, mask, layer + 1)
    assert torch.equal(batched[1], uncapped[1])  # scale 0: untouched
    assert not torch.allclose(batched[0], uncapped[0])


def test_capping_artifact_round_trip_composes_and_refuses_another_model(lm, tmp_path):
    direction = torch.randn(lm.hidden_size)
    cap = AxisCapping({2: direction, 3: -direction}, {2: (0.5, None), 3: (None, 1.0)}, fingerprint=lm.fingerprint)
    path = cap.save(tmp_path / "cap.tl.safetensors")
    loaded = load_intervention(path, lm)
    assert isinstance(loaded, AxisCapping) and loaded.ranges == cap.ranges
    assert all(torch.equal(loaded.vectors[k], cap.vectors[k]) for k in cap.vectors)
    ids, mask = _batch(lm)
    both = compose([loaded.scaled(0.5), ResidualSteering({1: direction}, positions="all")])
    with both.applied(lm):
        teacher_forced(lm, ids, mask)
    with pytest.raises(ArtifactError, match="another model"):
        load_intervention(path, tiny_model("qwen2"))


def test_space_artifact_round_trip_and_refusal(lm, tmp_path):
    roles = RoleSet(load_roles().roles[:4], ["Hi.", "How are you?"], "assistant")
    space, gen = build(lm, roles, layer=2, max_new_tokens=4, progress=False)
    assert space.role_means.shape == (4, lm.num_layers + 1, lm.hidden_size) and len(gen.texts) == 8
    path = space.save(tmp_path / "space.tl.safetensors")
    again = PersonaSpace.load(path)
    assert again.names == space.names and torch.equal(again.components, space.components)
    again.check_model(lm)
    with pytest.raises(ArtifactError, match="another model"):
        again.check_model(tiny_model("qwen2"))
    with pytest.raises(ArtifactError, match="not a persona space"):
        PersonaSpace.load(from_space(space).save(tmp_path / "cap.tl.safetensors"))
    readings = run_conversations(lm, [["Hi.", "And?"], ["Tell me."]], space, 2, from_space(space), 3)
    assert [len(r) for r in readings] == [2, 1] and readings[0][1]["drift"] is not None
    rows = summarize({"a": readings, "b": readings})
    assert rows[1]["d_vs_reference"] == pytest.approx(0.0)


def test_cohens_d():
    assert cohens_d([1.0, 2.0, 3.0], [0.0, 1.0, 2.0]) == pytest.approx(1.0)


# --------------------------------------------------------------------------------------------------- CLI


@pytest.fixture
def roles_file(tmp_path):
    data = {"default": "assistant", "questions": ["Hi.", "What now?"],
            "roles": [{"name": "assistant", "system": None}, {"name": "pirate", "system": "You are a pirate."},
                      {"name": "sad", "system": "You are sad."}, {"name": "chef", "system": "You are a chef."}]}
    path = tmp_path / "roles.json"
    path.write_text(json.dumps(data))
    return path


def test_cli_build_show_cap(model_dir, roles_file, tmp_path, monkeypatch, capsys):
    out = tmp_path / "axis.tl.safetensors"
    code, text, err = run_cli(["axis", "build", "--model", str(model_dir), "--roles", str(roles_file), "--out",
                               str(out), "--max-new-tokens", "4", "--layer", "2"], monkeypatch, capsys)
    assert code == 0, err
    assert "cos(Assistant Axis, PC1)" in text
    code, text, _ = run_cli(["axis", "show", str(out), "--plot", str(tmp_path / "p.png")], monkeypatch, capsys)
    assert code == 0 and "pirate" in text and (tmp_path / "p.png").stat().st_size > 1000
    code, text, _ = run_cli(["axis", "show", str(out), "--json"], monkeypatch, capsys)
    assert code == 0 and json.loads(text)["layer"] == 2
    code, text, _ = run_cli(["axis", "cap", str(out), "--layers", "1-2", "--out", str(tmp_path / "c.safetensors")],
                            monkeypatch, capsys)
    assert code == 0 and isinstance(load_intervention(tmp_path / "c.safetensors"), AxisCapping)
    convs = tmp_path / "convs.json"
    convs.write_text(json.dumps({"types": {"task": [["Hi.", "More?"]], "feel": [["I am sad.", "Why?"]]}}))
    readings = tmp_path / "drift.jsonl"
    code, text, err = run_cli(["axis", "drift", str(out), "--model", str(model_dir), "--conversations", str(convs),
                               "--apply", f"{tmp_path / 'c.safetensors'}:0.5", "--max-new-tokens", "3",
                               "--out", str(readings)], monkeypatch, capsys)
    assert code == 0, err
    rows = [json.loads(line) for line in readings.read_text().splitlines()]
    assert [(r["type"], r["turn"]) for r in rows] == [("task", 0), ("task", 1), ("feel", 0), ("feel", 1)]
    convs.write_text(json.dumps({"types": {"task": ["not a list of turns"]}}))
    code, _, err = run_cli(["axis", "drift", str(out), "--model", "nonexistent/model", "--conversations",
                            str(convs)], monkeypatch, capsys)
    assert code == 2 and err.startswith("error:")


@pytest.mark.parametrize("args", [
    ["axis", "build", "--roles", "{missing}", "--out", "{tmp}/a.safetensors"],
    ["axis", "build", "--roles", "{few}", "--out", "{tmp}/a.safetensors"],
    ["axis", "build", "--roles", "{bad}", "--out", "{tmp}/a.safetensors"],
    ["axis", "build", "--out", "{tmp}/nofolder/a.safetensors"],
    ["axis", "show", "{missing}"],
    ["axis", "cap", "{bad}", "--out", "{tmp}/c.safetensors"],
])
def test_cli_bad_input_exits_2_before_loading(args, tmp_path, monkeypatch, capsys):
    (tmp_path / "few.json").write_text(json.dumps({"roles": [{"name": "assistant"}], "questions": ["q"]}))
    (tmp_path / "bad.json").write_text("{not json")
    paths = {"missing": str(tmp_path / "missing.json"), "few": str(tmp_path / "few.json"),
             "bad": str(tmp_path / "bad.json"), "tmp": str(tmp_path)}
    args = [a.format(**paths) for a in args]
    monkeypatch.setattr("traitlab.model.load_model", lambda *a, **k: pytest.fail("model loaded"))
    code, _, err = run_cli([*args[:2], "--model", "nonexistent/model", *args[2:]] if args[1] == "build" else args,
                           monkeypatch, capsys)
    assert code == 2 and err.startswith("error:") and len(err.strip().splitlines()) == 1


def test_cli_layer_out_of_range_and_nan_percentile(model_dir, roles_file, tmp_path, monkeypatch, capsys):
    out = tmp_path / "axis.tl.safetensors"
    assert run_cli(["axis", "build", "--model", str(model_dir), "--roles", str(roles_file), "--out", str(out),
                    "--max-new-tokens", "3", "--layer", "99"], monkeypatch, capsys)[0] == 2
    assert run_cli(["axis", "build", "--model", str(model_dir), "--roles", str(roles_file), "--out", str(out),
                    "--max-new-tokens", "3"], monkeypatch, capsys)[0] == 0
    for bad in (["show", str(out), "--layer", "99"], ["cap", str(out), "--layers", "99", "-o", str(tmp_path / "c")],
                ["cap", str(out), "--low-percentile", "nan", "-o", str(tmp_path / "c")]):
        code, _, err = run_cli(["axis", *bad], monkeypatch, capsys)
        assert code == 2 and err.startswith("error:")


# ------------------------------------------------------------------------------------------- real weights


def test_smollm2_space_separates_the_default_assistant(smollm2):
    torch.manual_seed(0)
    full = load_roles()
    names = ["assistant", "assistant_in_template", "teacher", "pirate", "vampire", "angry", "sad"]
    roles = RoleSet([r for r in full.roles if r.name in names], full.questions[:2], "assistant")
    space, gen = build(smollm2, roles, layer=15, max_new_tokens=8, progress=False)
    assert all(gen.texts)
    projections = dict(zip(space.names, space.role_projections(15).tolist(), strict=True))
    # the default assistant is the far end of its own axis, and the assistant written in the roles' template
    # (measured +16 at layer 15) sits above every character and mood (measured −16..−3): the axis is not just
    # "SmolLM2's own system prompt vs any other"
    assert max(projections, key=projections.get) == "assistant"
    assert projections["assistant_in_template"] > max(projections[n] for n in ("pirate", "vampire", "angry", "sad"))
    assert 0.0 < float(space.variance[15, 0]) < 1.0 and space.axis_pc1_cosine(15) > 0.3
