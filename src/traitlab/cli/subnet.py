"""``traitlab subnet``: find persona subnetworks (Wanda-style or contrastive masks), show and compare them, and
export a masked model as a plain HF checkpoint."""

from __future__ import annotations

import copy
import time
from pathlib import Path

import typer
from rich.table import Table

from traitlab.cli.common import DEVICE, DTYPE, FAMILY, MODEL, console, key_value_table, read_family
from traitlab.errors import ConfigError
from traitlab.methods.subnet_calibration import GenerationSettings, read_persona_jsonl, resolve_trait
from traitlab.methods.subnet_fit import FindSettings, parse_blocks
from traitlab.methods.subnetworks import SubnetworkMask
from traitlab.validate import finite, output_folder

app = typer.Typer(help="Persona subnetworks (Ye et al. 2026): training-free weight masks that isolate a persona.",
                  no_args_is_help=True)


def _check_out(out: Path) -> None:
    if not out.parent.is_dir():
        raise ConfigError(f"cannot write {out}: folder {out.parent} does not exist")


def _load_mask(path: Path) -> SubnetworkMask:
    return SubnetworkMask.load(path, what="a subnetwork mask")


@app.command()
def find(
    out: Path = typer.Option(..., "--out", "-o", help="Artifact to write (.safetensors)."),
    model: str = MODEL,
    trait: str | None = typer.Option(None, "--trait", "-t",
                                     help="Built-in trait spec, a spec JSON, or a Big Five trait name."),
    pole: str | None = typer.Option(None, "--pole", help="high or low (default: the spec's own pole)."),
    description: str | None = typer.Option(None, "--description", help="Persona as a system-prompt text."),
    texts: Path | None = typer.Option(None, "--texts", help="JSONL of persona texts (messages, prompt/response or "
                                                             "text per line)."),
    reject_description: str | None = typer.Option(None, "--reject-description",
                                                  help="Rejected persona for --contrastive with --description."),
    reject_texts: Path | None = typer.Option(None, "--reject-texts", help="Rejected persona's JSONL for "
                                                                          "--contrastive with --texts."),
    contrastive: bool = typer.Option(False, "--contrastive", help="Contrastive pruning against the opposite pole."),
    sparsity: float | None = typer.Option(None, "--sparsity", help="Fraction removed per output row "
                                                                   "(default 0.5, contrastive 0.3)."),
    modules: str = typer.Option("all", "--modules", help="all, mlp or attention."),
    layers: str | None = typer.Option(None, "--layers", help="0-based decoder blocks, e.g. 0-3 or 1,3 (default all)."),
    with_system: bool = typer.Option(False, "--with-system/--no-system",
                                     help="Keep the persona system prompt in the calibration context "
                                          "(default: drop it)."),
    positions: str = typer.Option("response", "--positions", help="Calibration tokens: response or all."),
    n_answers: int = typer.Option(1, "--n-answers", help="Answers per question and system prompt."),
    temperature: float = typer.Option(1.0, "--temperature", help="Sampling temperature of calibration answers."),
    max_new_tokens: int = typer.Option(64, "--max-new-tokens"),
    seed: int = typer.Option(0, "--seed"),
    pair_out: Path | None = typer.Option(None, "--pair-out", help="Also write the opposite persona's mask here."),
    disjoint: str = typer.Option("none", "--disjoint", help="With --contrastive --pair-out: none, kept (kept sets "
                                                            "disjoint, needs sparsity ≥ 0.5) or removed."),
    family: Path | None = FAMILY, dtype: str | None = DTYPE, device: str | None = DEVICE,
) -> None:
    """Calibrate on a persona and write its subnetwork mask."""
    sources = [s for s in (trait, description, texts) if s is not None]
    if len(sources) != 1:
        raise ConfigError("give exactly one persona: --trait, --description or --texts")
    spec = resolve_trait(trait) if trait is not None else None
    if pole is not None and pole not in ("high", "low"):
        raise ConfigError(f"--pole must be high or low, got '{pole}'")
    if pole is not None and spec is None:
        raise ConfigError("--pole needs --trait")
    records = read_persona_jsonl(texts) if texts is not None else None
    reject_records = read_persona_jsonl(reject_texts) if reject_texts is not None else None
    needs_reject = (contrastive or pair_out is not None) and spec is None
    if needs_reject:
        given = reject_description if description is not None else reject_records
        if given is None:
            flag = "--reject-description" if description is not None else "--reject-texts"
            raise ConfigError(f"--contrastive or --pair-out with this persona needs {flag}")
    elif reject_description is not None or reject_texts is not None:
        raise ConfigError("--reject-description/--reject-texts go with --contrastive or --pair-out and "
                          "--description/--texts")
    if disjoint != "none" and (not contrastive or pair_out is None):
        raise ConfigError("--disjoint needs --contrastive and --pair-out")
    settings = FindSettings(sparsity=sparsity, contrastive=contrastive, modules=modules,
                            blocks=tuple(parse_blocks(layers)) if layers else None, with_system=with_system,
                            positions=positions, disjoint=disjoint,
                            generation=GenerationSettings(n_answers, temperature, max_new_tokens, seed))
    if disjoint == "kept" and settings.effective_sparsity < 0.5:
        raise ConfigError(f"--disjoint kept needs --sparsity ≥ 0.5 (two masks keeping "
                          f"{1 - settings.effective_sparsity:.0%} each cannot be disjoint)")
    _check_out(out)
    if pair_out is not None:
        _check_out(pair_out)
    from traitlab.methods import subnet_calibration as calib
    from traitlab.methods.subnet_fit import check_blocks, find_from_stats, stats_for
    from traitlab.methods.subnet_fit import find as find_spec
    from traitlab.model import load_model

    lm = load_model(model, dtype=dtype, device=device, family=read_family(family))
    check_blocks(lm, settings.blocks)
    started = time.perf_counter()
    if spec is not None:
        mask, other = find_spec(lm, spec, pole, settings, pair=pair_out is not None)
    else:
        if description is not None:
            seek_set = calib.from_description(lm, description, with_system, settings.generation)
            reject_set = (calib.from_description(lm, reject_description, with_system, settings.generation)
                          if needs_reject else None)
        else:
            seek_set = calib.from_texts(lm, records, with_system)
            reject_set = calib.from_texts(lm, reject_records, with_system) if needs_reject else None
        seek = stats_for(lm, seek_set, settings)
        reject = stats_for(lm, reject_set, settings) if reject_set is not None else None
        source = {"seek": seek_set.source, **({"reject": reject_set.source} if reject_set else {})}
        mask, other = find_from_stats(lm, settings, seek, reject, source=source, pair=pair_out is not None)
    mask.save(out)
    console.print(f"wrote {out}: {mask.name}, {len(mask.shapes)} Linear weights, sparsity {mask.sparsity:.3f} "
                  f"({settings.hyperparameters()['method']}, {time.perf_counter() - started:.1f}s)")
    if other is not None and pair_out is not None:
        other.save(pair_out)
        console.print(f"wrote {pair_out}: {other.name}, sparsity {other.sparsity:.3f}")


@app.command()
def show(
    path: Path = typer.Argument(..., help="Subnetwork artifact."),
    compare: Path | None = typer.Option(None, "--compare", help="Another subnetwork: Jaccard overlap per module."),
    plot: Path | None = typer.Option(None, "--plot", help="Write a PNG (overlap heatmap with --compare, else "
                                                          "sparsity bars)."),
    per_module: bool = typer.Option(False, "--per-module", help="One row per Linear instead of per block."),
) -> None:
    """Metadata, sparsity per block and module kind, and (with --compare) overlap with another mask."""
    from traitlab.methods import subnet_analysis as analysis

    mask = _load_mask(path)
    other = _load_mask(compare) if compare is not None else None
    if plot is not None:
        _check_out(plot)
    hyper = mask.hyperparameters
    console.print(key_value_table({
        "trait": mask.trait, "pole": mask.pole, "scale": mask.scale, "method": hyper.get("method"),
        "sparsity (target)": hyper.get("sparsity"), "sparsity (actual)": round(mask.sparsity, 4),
        "modules": hyper.get("modules"), "blocks": hyper.get("blocks") or "all",
        "with_system": hyper.get("with_system"), "positions": hyper.get("positions"),
        "calibration tokens": mask.info.get("calibration_tokens"), "direction": mask.info.get("direction"),
        "Linear weights": len(mask.shapes), "weights covered": mask.numel,
        "model": mask.fingerprint.model_type if mask.fingerprint else None}, title=str(path)))
    rows = analysis.sparsity_rows(mask)
    kinds = list(dict.fromkeys(r.module for r in rows))
    short = [k.rsplit(".", 1)[-1] for k in kinds]
    labels = short if len(set(short)) == len(short) else kinds
    table = Table(title="removed fraction per block and module")
    table.add_column("block")
    for label in labels:
        table.add_column(label)
    table.add_column("block total")
    by_block = analysis.sparsity_by_block(mask)
    for block in sorted(by_block):
        cells = {r.module: f"{r.sparsity:.3f}" for r in rows if r.block == block}
        table.add_row(str(block), *[cells.get(k, "-") for k in kinds], f"{by_block[block]:.3f}")
    console.print(table)
    if other is not None:
        overlap = analysis.overlap(mask, other)
        table = Table(title=f"Jaccard overlap with {compare} (kept / removed weights)")
        table.add_column("module" if per_module else "block")
        table.add_column("kept J")
        table.add_column("removed J")
        if per_module:
            for row in overlap:
                table.add_row(row.name, f"{row.kept_jaccard:.3f}", f"{row.removed_jaccard:.3f}")
        else:
            for block, (kept, removed) in analysis.aggregate(overlap, "block").items():
                table.add_row(str(block), f"{kept:.3f}", f"{removed:.3f}")
        for kind, (kept, removed) in analysis.aggregate(overlap, "module").items():
            table.add_row(f"all {kind}", f"{kept:.3f}", f"{removed:.3f}")
        console.print(table)
        if plot is not None:
            analysis.plot_overlap(overlap, plot, f"{mask.name} vs {other.name}")
            console.print(f"wrote {plot}")
    elif plot is not None:
        analysis.plot_sparsity(mask, plot, mask.name)
        console.print(f"wrote {plot}")


@app.command()
def export(
    path: Path = typer.Argument(..., help="Subnetwork artifact."),
    out: Path = typer.Option(..., "--out", "-o", help="Folder for the HF checkpoint (new or empty)."),
    model: str = MODEL,
    scale: float | None = typer.Option(None, "--scale", help="Override the artifact's scale (1 = the subnetwork)."),
    family: Path | None = FAMILY, dtype: str | None = DTYPE, device: str | None = DEVICE,
) -> None:
    """Write a plain HF checkpoint (config, safetensors, tokenizer) of the model with the mask applied."""
    mask = _load_mask(path)
    output_folder(out, "export folder")
    if scale is not None:
        finite(scale, "--scale")
    from traitlab.methods.subnetworks import export_checkpoint
    from traitlab.model import load_model

    lm = load_model(model, dtype=dtype, device=device, family=read_family(family))
    mask.check_model(lm)
    applied = copy.copy(mask)
    if scale is not None:
        applied.scale = finite(scale, "--scale")
    export_checkpoint(lm, applied, out)
    console.print(f"wrote {out} ({mask.name}, scale {applied.scale:g}); serve it with any HF-compatible engine")
