"""``traitlab axis``: persona space (PCA of many role vectors), the Assistant Axis, capping and drift."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING

import typer
from rich.table import Table

from traitlab.cli.common import DEVICE, DTYPE, MODEL, console, key_value_table
from traitlab.cli.vectors import parse_numbers
from traitlab.errors import ConfigError
from traitlab.validate import atomic_file, output_file

if TYPE_CHECKING:
    from traitlab.methods.persona_space import PersonaSpace

app = typer.Typer(help="Persona space and the Assistant Axis (Lu et al. 2026): build, show, cap, drift.",
                  no_args_is_help=True)


@app.command()
def build(
    out: Path = typer.Option(..., "--out", "-o", help="Persona-space artifact to write (.tl.safetensors)."),
    model: str = MODEL,
    roles: Path | None = typer.Option(None, "--roles", help="Roles JSON ({default, roles: [{name, category, "
                                                            "system}], questions}); the shipped 75 by default."),
    layer: int | None = typer.Option(None, "--layer", help="Layer shown and capped by default (middle layer)."),
    questions: int = typer.Option(0, "--questions", help="Use only the first N questions (0: all)."),
    max_new_tokens: int = typer.Option(48, "--max-new-tokens"),
    temperature: float = typer.Option(0.0, "--temperature", help="0 = greedy."),
    batch_size: int = typer.Option(64, "--batch-size"),
    seed: int = typer.Option(0, "--seed"),
    dtype: str | None = DTYPE,
    device: str | None = DEVICE,
) -> None:
    """Persona vectors for every role (replies to shared neutral questions), PCA, and the Assistant Axis."""
    from traitlab.methods.persona_space import RoleSet, build, load_roles
    from traitlab.model import load_model

    roleset = load_roles(roles)
    if questions < 0 or max_new_tokens < 1 or batch_size < 1:
        raise ConfigError("--questions must be ≥ 0, --max-new-tokens and --batch-size ≥ 1")
    if questions:
        roleset = RoleSet(roleset.roles, roleset.questions[:questions], roleset.default)
    if layer is not None and layer < 0:
        raise ConfigError(f"layer {layer} is out of range (layers start at 0)")
    output_file(out)
    lm = load_model(model, dtype=dtype, device=device)
    space, _ = build(lm, roleset, layer, max_new_tokens, temperature, seed, batch_size)
    space.save(out)
    console.print(f"{len(space.names)} roles × {len(roleset.questions)} questions → {out}")
    _summary(space, space.layer, 2, 0)


def _summary(space: PersonaSpace, layer: int, components: int, roles_shown: int) -> None:
    variance = space.variance[layer]
    cumulative = variance.cumsum(0)
    mu, sd = space.default_stats(layer)
    console.print(key_value_table({
        "layer": layer, "roles": len(space.names), "default role": space.default,
        "variance explained PC1..5": ", ".join(f"{v:.3f}" for v in variance[:5].tolist()),
        "cumulative PC1..5": ", ".join(f"{v:.3f}" for v in cumulative[:5].tolist()),
        "cos(Assistant Axis, PC1)": f"{space.axis_pc1_cosine(layer):+.3f}",
        "‖axis‖": f"{float(space.axis[layer].norm()):.3f}",
        "default assistant projection (mean ± sd per token)": f"{mu:.3f} ± {sd:.3f}",
    }, title="persona space"))
    if not roles_shown:
        return
    projections = space.role_projections(layer)
    coords = space.coordinates[layer]
    order = sorted(range(len(space.names)), key=lambda i: -float(projections[i]))
    table = Table(title=f"roles along the Assistant Axis (layer {layer}; top and bottom {roles_shown})")
    table.add_column("role")
    table.add_column("category")
    table.add_column("axis", justify="right")
    for k in range(min(components, coords.shape[1])):
        table.add_column(f"PC{k + 1}", justify="right")
    shown = order if 2 * roles_shown >= len(order) else order[:roles_shown] + order[-roles_shown:]
    for i in shown:
        table.add_row(space.names[i], space.categories[i], f"{float(projections[i]):+.2f}",
                      *(f"{float(coords[i, k]):+.2f}" for k in range(min(components, coords.shape[1]))))
    console.print(table)


@app.command()
def show(
    artifact: Path = typer.Argument(..., help="Persona-space artifact from `traitlab axis build`."),
    layer: int | None = typer.Option(None, "--layer", help="Layer to show (default: the artifact's)."),
    components: int = typer.Option(3, "--components", help="How many PC coordinates to print per role."),
    roles: int = typer.Option(10, "--roles", help="Roles shown at each end of the axis (0: none)."),
    plot: Path | None = typer.Option(None, "--plot", help="Write a PNG: the spectrum and roles on PC1/PC2."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON instead of tables."),
) -> None:
    """Variance explained, cos(axis, PC1), and where the roles fall on the axis and the first components."""
    from traitlab.methods.persona_space import PersonaSpace

    if plot is not None:
        output_file(plot, "plot")
    space = PersonaSpace.load(artifact)
    layer = space.layer if layer is None else space.check_layer(layer)
    if as_json:
        projections = space.role_projections(layer).tolist()
        print(json.dumps({"layer": layer, "variance": space.variance[layer].tolist(),
                          "axis_pc1_cosine": space.axis_pc1_cosine(layer),
                          "axis_pc1_cosine_per_layer": [space.axis_pc1_cosine(x)
                                                        for x in range(space.num_layers + 1)],
                          "roles": {n: {"category": c, "axis": p, "pcs": space.coordinates[layer, i, :components]
                                        .tolist()} for i, (n, c, p) in
                                    enumerate(zip(space.names, space.categories, projections, strict=True))}}))
    else:
        _summary(space, layer, components, roles)
    if plot is not None:
        plot_space(space, layer, plot)
        console.print(f"plot → {plot}")


def plot_space(space: PersonaSpace, layer: int, path: Path) -> None:
    """Scree plot (variance explained) and the roles on PC1 × PC2, coloured by category."""
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    fig, (scree, scatter) = plt.subplots(1, 2, figsize=(12, 5))
    variance = space.variance[layer].tolist()
    scree.bar(range(1, len(variance) + 1), variance)
    scree.set_xlabel("component")
    scree.set_ylabel("fraction of variance")
    scree.set_title(f"persona space spectrum, layer {layer}")
    coords = space.coordinates[layer]
    categories = sorted(set(space.categories))
    for category in categories:
        idx = [i for i, c in enumerate(space.categories) if c == category]
        scatter.scatter(coords[idx, 0], coords[idx, 1] if coords.shape[1] > 1 else [0] * len(idx), label=category)
    for i, name in enumerate(space.names):
        scatter.annotate(name, (float(coords[i, 0]), float(coords[i, 1]) if coords.shape[1] > 1 else 0.0),
                         fontsize=6)
    scatter.set_xlabel(f"PC1 (cos with the Assistant Axis {space.axis_pc1_cosine(layer):+.2f})")
    scatter.set_ylabel("PC2")
    scatter.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


@app.command()
def cap(
    artifact: Path = typer.Argument(..., help="Persona-space artifact from `traitlab axis build`."),
    out: Path = typer.Option(..., "--out", "-o", help="Capping Intervention to write (.tl.safetensors)."),
    layers: str | None = typer.Option(None, "--layers", help="Layers to cap, e.g. 12,14 or 10-16 "
                                                             "(default: the artifact's layer)."),
    low_percentile: float | None = typer.Option(25.0, "--low-percentile",
                                                help="Floor: this percentile of the default assistant's "
                                                     "projections (default 25)."),
    high_percentile: float | None = typer.Option(None, "--high-percentile", help="Ceiling (none by default)."),
    no_floor: bool = typer.Option(False, "--no-floor", help="Cap from above only."),
    positions: str = typer.Option("all", "--positions", help="all, prompt, response, response+last_prompt."),
) -> None:
    """Turn a persona space into an AxisCapping Intervention (apply it with --apply anywhere, or serve it)."""
    from traitlab.methods.axis_capping import from_space
    from traitlab.methods.persona_space import PersonaSpace

    output_file(out)
    space = PersonaSpace.load(artifact)
    floor = None if no_floor else low_percentile
    capping = from_space(space, parse_numbers(layers, int), floor, high_percentile, positions)
    capping.save(out)
    table = Table(title=f"axis capping → {out}")
    for column in ("layer", "low", "high"):
        table.add_column(column, justify="right")
    for layer, (low, high) in sorted(capping.ranges.items()):
        table.add_row(str(layer), "—" if low is None else f"{low:.3f}", "—" if high is None else f"{high:.3f}")
    console.print(table)


@app.command()
def drift(
    artifact: Path = typer.Argument(..., help="Persona-space artifact from `traitlab axis build`."),
    model: str = MODEL,
    conversations: Path | None = typer.Option(None, "--conversations", help="JSON {types: {TYPE: [[user turn, "
                                                                            "...]]}}; the shipped benchmark "
                                                                            "by default."),
    layer: int | None = typer.Option(None, "--layer", help="Monitored layer (default: the artifact's)."),
    apply: list[str] = typer.Option([], "--apply", help="ARTIFACT[:SCALE] applied while replying (repeatable)."),
    max_new_tokens: int = typer.Option(48, "--max-new-tokens"),
    out: Path | None = typer.Option(None, "--out", "-o", help="JSONL of every turn's reading."),
    dtype: str | None = DTYPE,
    device: str | None = DEVICE,
) -> None:
    """Per turn, the projection on the Assistant Axis of multi-turn conversations, and per-type effect sizes."""
    from traitlab.interventions import parse_apply_spec, read_artifact
    from traitlab.methods.persona_space import PersonaSpace, load_conversations
    from traitlab.model import load_model
    from traitlab.monitor.axis import run_conversations, summarize
    from traitlab.registry import load_applied

    space = PersonaSpace.load(artifact)
    convs = load_conversations(conversations)
    if layer is not None:
        space.check_layer(layer)
    for spec in apply:
        read_artifact(parse_apply_spec(spec)[0])
    if out is not None:
        output_file(out)
    lm = load_model(model, dtype=dtype, device=device)
    space.check_model(lm)
    from traitlab.progress import note

    applied_lines: list[str] = []
    intervention = load_applied(apply, lm, report=applied_lines.append)
    for line in applied_lines:
        note(line)
    flat = [c for kind in convs.values() for c in kind]
    readings = run_conversations(lm, flat, space, layer, intervention, max_new_tokens, progress=True)
    by_type, start = {}, 0
    for kind, kind_convs in convs.items():
        by_type[kind] = readings[start:start + len(kind_convs)]
        start += len(kind_convs)
    table = Table(title=f"Assistant-Axis drift (layer {layer if layer is not None else space.layer}; "
                        "drift = reply projection − default assistant's mean)")
    for column in ("type", "convs", "mean drift", "drift per turn", "d vs first type", "d (last prompt)"):
        table.add_column(column, justify="right")
    for row in summarize(by_type):
        table.add_row(row["type"], str(row["conversations"]), f"{row['mean_drift']:+.2f}",
                      " ".join(f"{v:+.2f}" for v in row["drift_per_turn"] if v is not None),
                      f"{row['d_vs_reference']:+.2f}", f"{row['d_last_prompt_vs_reference']:+.2f}")
    console.print(table)
    if out is not None:
        with atomic_file(out) as handle:
            for kind, kind_readings in by_type.items():
                for n, conv in enumerate(kind_readings):
                    for reading in conv:
                        handle.write(json.dumps({"type": kind, "conversation": n, **reading}) + "\n")
        console.print(f"readings → {out}")
