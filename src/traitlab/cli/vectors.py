"""``traitlab vectors``: extract, sweep, show, combine and convert persona vectors."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.table import Table

from traitlab.cli.common import DEVICE, DTYPE, MODEL, console, key_value_table
from traitlab.cli.judging import (
    JUDGE,
    JUDGE_CACHE,
    JUDGE_MODEL,
    JUDGE_OR_NONE,
    JUDGE_URL,
    check_judge_options,
    make_judges,
)
from traitlab.errors import ConfigError
from traitlab.methods.persona_optimize import OPTIMIZED, OptimizeSettings
from traitlab.methods.persona_vectors import ALL_VARIANTS, ExtractionSettings, PersonaVector
from traitlab.model import load_model
from traitlab.model.positions import POSITIONS
from traitlab.readers import int_ranges
from traitlab.traits import load_trait
from traitlab.validate import finite, output_file

app = typer.Typer(help="Persona vectors (Chen et al. 2025): extract, sweep, show, combine, convert.",
                  no_args_is_help=True)


def parse_numbers(text: str | None, kind: type = float) -> list:
    """``"1,2,4"`` → ``[1, 2, 4]``; ``"2-5"`` (integers only, also in a list) → ``[2, 3, 4, 5]``."""
    if not text:
        return []
    try:
        if kind is int:
            return int_ranges(text)
        return [finite(kind(x), f"'{x.strip()}' in '{text}'") for x in text.split(",") if x.strip()]
    except ValueError:
        raise ConfigError(f"cannot read '{text}' as a comma-separated list of numbers") from None


def _check_out(out: Path) -> None:
    output_file(out)


def _check_layers(lm, layers: list[int]) -> None:
    """Sweep layers against the model, right after it loads and before any generation."""
    for layer in layers:
        lm.hooks.check_layer(layer)


def _load_vector(path: Path) -> PersonaVector:
    return PersonaVector.load(path, what="a persona vector")


def artifact_trait(vector: PersonaVector, path: Path) -> str:
    """The trait spec an artifact was made for: the spec name it recorded, else its trait and pole."""
    recorded = vector.extra.get("spec")
    if isinstance(recorded, str) and recorded:
        return recorded
    if vector.trait and vector.pole in ("high", "low"):
        return f"{vector.trait}_{vector.pole}"
    if vector.trait:
        return vector.trait
    raise ConfigError(f"{path} records no trait; give --trait")


def parse_grid(text: str | None, allowed: tuple[str, ...], what: str) -> list[str] | None:
    """``"prompt,response"`` → ``["prompt", "response"]``, each checked against ``allowed``."""
    if not text:
        return None
    names = [x.strip() for x in text.split(",") if x.strip()]
    for name in names:
        if name not in allowed:
            raise ConfigError(f"unknown {what} '{name}'; use {', '.join(allowed)}")
    return names


VARIANTS_OPTION = typer.Option(None, "--variants", help=f"Sweep vector variants too, e.g. response_avg,prompt_avg "
                               f"({', '.join(ALL_VARIANTS)}; default the vector's own).")
POSITIONS_OPTION = typer.Option(None, "--positions", help=f"Sweep steered positions too, e.g. response,prompt "
                                f"({', '.join(POSITIONS)}; default the vector's own).")


def sweep_table(cells: list, best: object, title: str) -> Table:
    """Trait score (coherence) per variant @ positions × layer row and coefficient column; * marks ``best``."""
    coef_grid = sorted({c.coef for c in cells})
    table = Table(title=title)
    table.add_column("variant @ positions")
    table.add_column("layer")
    for coef in coef_grid:
        table.add_column(f"α={coef:g}")
    for variant, where, layer in dict.fromkeys((c.variant, c.positions, c.layer) for c in cells):
        row = [f"{variant} @ {where}", str(layer)]
        for coef in coef_grid:
            cell = next((c for c in cells if (c.variant, c.positions, c.layer, c.coef) ==
                         (variant, where, layer, coef)), None)
            if cell is None:
                row.append("-")
                continue
            mark = "*" if cell == best else ""
            row.append(f"{mark}{cell.trait:.0f}" + (f" ({cell.coherence:.0f})" if cell.coherence is not None else ""))
        table.add_row(*row)
    return table


def _sweep_and_print(lm, vector, spec, judge, coherence, layers, coefs, threshold, max_new_tokens,
                     variants=None, positions=None):
    from traitlab.methods.persona_sweep import apply_sweep, sweep

    result = sweep(lm, vector, spec, judge, layers or list(range(1, lm.num_layers)), coefs, coherence, threshold,
                   max_new_tokens=max_new_tokens, variants=variants, positions=positions)
    console.print(sweep_table(result.cells, result.best, f"sweep: trait score (coherence) on held-out questions; "
                                                         f"unsteered {result.baseline_trait}"))
    warn_small_gain(result)
    return apply_sweep(vector, result)


MIN_GAIN = 5.0  # points on the judge's 0-100 scale


def warn_small_gain(result: object, min_gain: float = MIN_GAIN) -> float:
    """Say so on stderr when the chosen cell moves the trait less than ``min_gain`` points over the unsteered
    model (52 vs 50 is noise, not steering); returns the gain."""
    from traitlab.progress import stderr

    best, baseline = result.best, result.baseline_trait  # type: ignore[attr-defined]
    gain = best.trait - baseline
    if gain < min_gain:
        stderr.print(f"warning: the best cell (layer {best.layer}, α={best.coef:g}) moves {best.n} answers' trait "
                     f"score by {gain:+.1f} points over the unsteered {baseline:.1f} (less than {min_gain:g}): "
                     "the vector barely steers here; try larger --coefs, other --layers, or a larger model",
                     markup=False, highlight=False)
    return gain


@app.command()
def extract(
    trait: str = typer.Option(..., "--trait", "-t", help="Built-in trait (extraversion = its high pole, "
                              "extraversion_low, evil, ...) or a spec JSON file."),
    out: Path = typer.Option(..., "--out", "-o", help="Artifact to write (.safetensors)."),
    model: str = MODEL,
    judge: str = JUDGE_OR_NONE, judge_url: str | None = JUDGE_URL, judge_model: str | None = JUDGE_MODEL,
    judge_cache: str | None = JUDGE_CACHE,
    n_questions: int | None = typer.Option(None, "--n-questions", min=1,
                                           help="Use the spec's first N extraction questions (default all)."),
    n_per_question: int = typer.Option(1, "--n-per-question", help="Answers per question and prompt pair."),
    temperature: float = typer.Option(1.0, "--temperature"),
    max_new_tokens: int = typer.Option(96, "--max-new-tokens"),
    seed: int = typer.Option(0, "--seed"),
    trait_threshold: float = typer.Option(50.0, "--trait-threshold"),
    coherence_threshold: float = typer.Option(50.0, "--coherence-threshold"),
    no_coherence: bool = typer.Option(False, "--no-coherence", help="Do not filter pairs on coherence."),
    min_pairs: int = typer.Option(5, "--min-pairs"),
    short_prompts: bool = typer.Option(False, "--short-prompts", help="Use the spec's short_instruction pairs "
                                       "(short, explicit pole prompts a small model follows) as the contrastive "
                                       "system prompts."),
    do_sweep: bool = typer.Option(False, "--sweep", help="Also choose layer and coefficient by steering."),
    layers: str | None = typer.Option(None, "--layers", help="Sweep layers, e.g. 2-5 or 2,4 (default all)."),
    coefs: str = typer.Option("1,2,4", "--coefs", help="Sweep coefficients."),
    variants: str | None = VARIANTS_OPTION,
    positions: str | None = POSITIONS_OPTION,
    batch_size: int = typer.Option(32, "--batch-size", min=1, help="Rows per generation and capture batch."),
    optimize_layers: str | None = typer.Option(
        None, "--optimize-layers", help="Also fit an 'optimized' variant at these layers, e.g. 1,3: a vector "
        "trained by gradient descent so that the unprompted model gives the kept positive answers."),
    optimize_positions: str = typer.Option("response", "--optimize-positions",
                                           help="Positions the optimized vector is added at while fitting."),
    optimize_steps: int = typer.Option(100, "--optimize-steps", help="Adam steps per optimized layer."),
    optimize_lr: float = typer.Option(0.3, "--optimize-lr", help="Adam learning rate of the optimized vector."),
    dtype: str | None = DTYPE,
    device: str | None = DEVICE,
) -> None:
    """Extract a persona vector for a trait: contrastive answers, judge filter, mean activation difference
    (and, with --optimize-layers, a vector fitted to the same answers)."""
    spec = load_trait(trait)
    if short_prompts:
        if not spec.short_instruction:
            raise ConfigError(f"trait '{spec.name}' has no short_instruction pairs; drop --short-prompts")
        spec = spec.with_short_instructions()
    choice = check_judge_options(judge, judge_url, judge_model, model, allow_none=True)
    if choice.kind == "none" and (do_sweep or optimize_layers):
        raise ConfigError("--sweep and --optimize-layers judge steered answers; give a judge (--judge embedding, "
                          "oracle, endpoint:MODEL or local:MODEL), not --judge none")
    settings = ExtractionSettings(n_per_question, temperature, 1.0, max_new_tokens, seed, trait_threshold,
                                  coherence_threshold, min_pairs, batch_size, n_questions)
    layer_list, coef_list = parse_numbers(layers, int), parse_numbers(coefs)
    variant_grid, position_grid = parse_grid(variants, ALL_VARIANTS, "variant"), parse_grid(positions, POSITIONS,
                                                                                            "positions")
    optimize = None
    if optimize_layers:
        optimize = OptimizeSettings(tuple(parse_numbers(optimize_layers, int)), optimize_positions,
                                    optimize_steps, optimize_lr, seed=seed)
    elif OPTIMIZED in (variant_grid or []):
        raise ConfigError("the 'optimized' variant needs --optimize-layers")
    _check_out(out)
    possible = len(spec.instruction) * len(spec.questions[:n_questions]) * n_per_question
    if min_pairs > possible:
        raise ConfigError(f"--min-pairs {min_pairs} is more than the {possible} pairs {spec.name} can give "
                          "(instruction pairs × questions × --n-per-question)")
    lm = load_model(model, dtype=dtype, device=device)
    _check_layers(lm, layer_list)
    trait_judge, coherence_judge = make_judges(choice, spec, lm, judge_url, judge_cache)
    from traitlab.methods.persona_vectors import extract as run_extraction

    vector = run_extraction(lm, spec, trait_judge, settings, None if no_coherence else coherence_judge, optimize)
    scores = "no judge: every pair kept" if trait_judge is None else (
        f"mean scores pos {vector.extra['pos_mean_score']} / neg {vector.extra['neg_mean_score']}")
    console.print(f"{vector.extra['pairs_kept']} of {vector.extra['pairs_total']} pairs kept; {scores}; "
                  f"best-separating layer {next(iter(vector.vectors))}")
    if do_sweep:
        vector = _sweep_and_print(lm, vector, spec, trait_judge, None if no_coherence else coherence_judge,
                                  layer_list, coef_list, coherence_threshold, max_new_tokens, variant_grid,
                                  position_grid)
    vector.save(out)
    console.print(f"wrote {out} (layer {list(vector.vectors)}, effective coefficient α = {vector.scale:g})")


@app.command("sweep")
def sweep_command(
    vector_path: Path = typer.Argument(..., help="Persona-vector artifact."),
    trait: str | None = typer.Option(None, "--trait", "-t", help="Trait to judge (default: the artifact's own "
                                     "spec)."),
    out: Path = typer.Option(..., "--out", "-o"),
    model: str = MODEL,
    judge: str = JUDGE, judge_url: str | None = JUDGE_URL, judge_model: str | None = JUDGE_MODEL,
    judge_cache: str | None = JUDGE_CACHE,
    layers: str | None = typer.Option(None, "--layers"),
    coefs: str = typer.Option("1,2,4", "--coefs"),
    variants: str | None = VARIANTS_OPTION,
    positions: str | None = POSITIONS_OPTION,
    coherence_threshold: float = typer.Option(50.0, "--coherence-threshold"),
    max_new_tokens: int = typer.Option(64, "--max-new-tokens"),
    dtype: str | None = DTYPE,
    device: str | None = DEVICE,
) -> None:
    """Steer held-out questions over layers × coefficients and keep the best coherent cell."""
    choice = check_judge_options(judge, judge_url, judge_model, model)
    layer_list, coef_list = parse_numbers(layers, int), parse_numbers(coefs)
    variant_grid, position_grid = parse_grid(variants, ALL_VARIANTS, "variant"), parse_grid(positions, POSITIONS,
                                                                                            "positions")
    _check_out(out)
    vector = _load_vector(vector_path)
    if trait is not None:
        spec = load_trait(trait)
    else:
        recorded = artifact_trait(vector, vector_path)
        try:
            spec = load_trait(recorded)
        except ConfigError:
            raise ConfigError(f"{vector_path} was made for trait spec '{recorded}', which is not built in; give "
                              "its JSON file with --trait") from None
    missing = [v for v in variant_grid or [] if v not in vector.directions]
    if missing:
        raise ConfigError(f"{vector_path} has no '{missing[0]}' variant; have {', '.join(vector.directions)}")
    lm = load_model(model, dtype=dtype, device=device)
    vector.check_model(lm)
    _check_layers(lm, layer_list)
    trait_judge, coherence_judge = make_judges(choice, spec, lm, judge_url, judge_cache)
    chosen = _sweep_and_print(lm, vector, spec, trait_judge, coherence_judge, layer_list, coef_list,
                              coherence_threshold, max_new_tokens, variant_grid, position_grid)
    chosen.save(out)
    console.print(f"wrote {out} (layer {list(chosen.vectors)}, {chosen.variant} at {chosen.positions} positions, "
                  f"effective coefficient α = {chosen.scale:g})")


@app.command()
def show(path: Path = typer.Argument(..., help="Persona-vector artifact.")) -> None:
    """Metadata, per-layer norms and separation, and the sweep table of a persona vector."""
    vector = _load_vector(path)
    extra = {k: v for k, v in vector.extra.items() if k not in ("sweep", "separation_per_layer")}
    console.print(key_value_table({"trait": vector.trait, "pole": vector.pole, "layers": list(vector.vectors),
                                   "scale": vector.scale, "mode": vector.mode, "positions": vector.positions,
                                   "variant": vector.variant, **extra,
                                   "model": vector.fingerprint.model_type if vector.fingerprint else None},
                                  title=str(path)))
    table = Table(title="per layer")
    for column in ("layer", f"‖v‖ ({vector.variant})", "response_avg separation (Cohen's d)"):
        table.add_column(column)
    separation = vector.extra.get("separation_per_layer") or []
    for layer, row in enumerate(vector.directions[vector.variant]):
        d = f"{separation[layer]:.2f}" if layer < len(separation) else "-"
        table.add_row(str(layer), f"{float(row.norm()):.3f}", d)
    console.print(table)
    recorded = vector.extra.get("sweep")
    if recorded:
        from traitlab.methods.persona_sweep import SweepCell

        cells = [SweepCell(**row) for row in recorded["table"]]
        best = next((c for c in cells if (c.layer, c.coef, c.variant, c.positions) == (
            recorded["best_layer"], recorded["best_coef"], recorded.get("best_variant", c.variant),
            recorded.get("best_positions", c.positions))), None)
        console.print(sweep_table(cells, best, f"sweep (unsteered {recorded['baseline_trait']})"))


@app.command()
def combine(expression: str = typer.Argument(..., help="e.g. '2*a.safetensors - 0.5*b.safetensors'"),
            out: Path = typer.Option(..., "--out", "-o")) -> None:
    """repeng-style arithmetic on persona vectors."""
    from traitlab.methods.persona_interop import combine as run_combine

    _check_out(out)
    run_combine(expression).save(out)
    console.print(f"wrote {out}")


@app.command("import-pt")
def import_pt(path: Path = typer.Argument(..., help="persona_vectors [L+1, d] .pt file."),
              out: Path = typer.Option(..., "--out", "-o"), model: str = MODEL,
              layer: int | None = typer.Option(None, "--layer"),
              variant: str = typer.Option("response_avg", "--variant")) -> None:
    """Import a persona_vectors tensor for a model."""
    from traitlab.methods.persona_interop import import_pt as run_import
    from traitlab.methods.persona_interop import read_pt

    _check_out(out)
    table = read_pt(path)
    run_import(path, load_model(model), layer, variant, table=table).save(out)
    console.print(f"wrote {out}")


GGUF_NOTE = ("note: llama.cpp adds a control vector at every position (prompt and reply); traitlab steered only "
             "the {positions} positions, so the same vector can act more strongly there")


@app.command("export-gguf")
def export_gguf(path: Path = typer.Argument(..., help="Persona-vector artifact."),
                out: Path = typer.Option(..., "--out", "-o", help="Control vector to write (.gguf)."),
                model_hint: str = typer.Option("llama", "--model-hint", help="llama.cpp architecture name."),
                all_layers: bool = typer.Option(False, "--all-layers", help="Every layer 1..L (repeng's and "
                                                "llama.cpp's usual control vector), not only the steered ones."),
                ) -> None:
    """Write a llama.cpp / repeng control vector (the effective coefficient folded in)."""
    from traitlab.methods.persona_interop import export_gguf as run_export
    from traitlab.progress import note

    _check_out(out)
    vector = _load_vector(path)
    run_export(vector, out, model_hint, all_layers=all_layers)
    layers = "every layer 1.." + str(vector.num_layers) if all_layers else f"layer {sorted(vector.vectors)}"
    console.print(f"wrote {out} ({layers}, effective coefficient α = {vector.scale:g} folded in)")
    note(GGUF_NOTE.format(positions=vector.positions))


@app.command("import-gguf")
def import_gguf(path: Path = typer.Argument(...), out: Path = typer.Option(..., "--out", "-o"),
                model: str = MODEL) -> None:
    """Read a llama.cpp / repeng control vector as a persona-vector artifact."""
    from traitlab.methods.persona_interop import import_gguf as run_import
    from traitlab.methods.persona_interop import read_gguf

    _check_out(out)
    directions = read_gguf(path)
    run_import(path, load_model(model), directions).save(out)
    console.print(f"wrote {out}")
