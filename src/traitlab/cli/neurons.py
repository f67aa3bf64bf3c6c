"""``traitlab neurons``: find a trait's neurons (NPTI, Deng et al. ICLR 2025) and show an NPTI artifact."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.table import Table

from traitlab.cli.common import MODEL, console, key_value_table
from traitlab.errors import ConfigError
from traitlab.validate import output_file

app = typer.Typer(help="Neuron-based personality trait induction (NPTI, Deng et al. ICLR 2025): find, show.",
                  no_args_is_help=True)

BAR = "█"


@app.command()
def find(
    trait: str = typer.Option(..., "--trait", "-t", help="Built-in trait name (e.g. extraversion_high) or a "
                                                         "spec JSON file; its pos/neg instructions are the poles."),
    out: Path = typer.Option(..., "--out", "-o", help="Artifact to write (.safetensors)."),
    model: str = MODEL,
    pole: str | None = typer.Option(None, "--pole", help="Pole to induce: high or low (default: the spec's)."),
    description_json: Path | None = typer.Option(None, "--description-json",
                                                 help="NPTI description.json: its personas replace the "
                                                      "spec's instructions."),
    questions: Path | None = typer.Option(None, "--questions", help="Question file (JSONL {question}, JSON "
                                                                    "list or text) instead of the spec's."),
    n_answers: int | None = typer.Option(None, "--n-answers", help="Answers per pole (default: every "
                                                                   "question × instruction, at most 200)."),
    max_new_tokens: int = typer.Option(64, "--max-new-tokens"),
    temperature: float = typer.Option(0.7, "--temperature", help="0 = greedy."),
    batch_size: int = typer.Option(32, "--batch-size"),
    threshold: float = typer.Option(0.1, "--threshold", help="|δ| a neuron needs to belong to a pole."),
    top_k: int = typer.Option(0, "--top-k", help="Also keep the top-k neurons by |δ| (NPTI: 2000)."),
    boost_fraction: float = typer.Option(1.0, "--boost-fraction", help="Share of target neurons boosted "
                                                                       "(NPTI: 0.9)."),
    no_f: bool = typer.Option(False, "--no-f", help="Boost by a95 alone (f(δ) ≡ 1)."),
    scale: float = typer.Option(1.0, "--scale", help="γ stored in the artifact."),
    seed: int = typer.Option(0, "--seed"),
) -> None:
    """Collect both poles' neuron statistics while the model role-plays them, and select the trait's neurons."""
    from traitlab.methods.neurons import (
        CollectionSettings,
        SelectionOptions,
        description_pairs,
        fit,
        load_npti_descriptions,
        side_for,
    )
    from traitlab.traits import load_trait

    spec = load_trait(trait)
    side_for(spec, pole)
    settings = CollectionSettings(n_answers, max_new_tokens, temperature, 1.0, seed, batch_size)
    options = SelectionOptions(threshold=threshold, top_k=top_k, use_f=not no_f, boost_fraction=boost_fraction,
                               seed=seed)
    pairs = None
    if description_json is not None:
        pairs = description_pairs(load_npti_descriptions(description_json, spec.trait_name), spec)
    question_list = None
    if questions is not None:
        from traitlab.evaluation.situational import load_question_file

        question_list = load_question_file(questions)
        if not question_list:
            raise ConfigError(f"{questions} holds no questions")
    output_file(out)
    from traitlab.model import load_model

    lm = load_model(model)
    induction = fit(lm, spec, pole, settings, options, pairs, question_list).scaled(scale)
    induction.save(out)
    stats = induction.stats
    boosted = sum(c[0] for c in induction.counts().values())
    clamped = sum(c[1] for c in induction.counts().values())
    console.print(f"{stats.pos.tokens} + {stats.neg.tokens} generated tokens recorded ({stats.pos.answers} answers "
                  f"per pole); {boosted} neurons boosted ({induction.pole}), {clamped} clamped")
    console.print(f"wrote {out}")


def _bar(value: int, peak: int, width: int = 30) -> str:
    return BAR * (round(width * value / peak) if peak else 0)


@app.command()
def show(path: Path = typer.Argument(..., help="NPTI artifact."),
         top: int = typer.Option(10, "--top", "-n", help="How many top neurons to list.")) -> None:
    """Counts per layer, the top neurons by |δ| and a per-layer bar chart of an NPTI artifact."""
    from traitlab.methods.neurons import NeuronInduction

    induction = NeuronInduction.load(path, what="an NPTI one")
    stats, options = induction.stats, induction.options
    rows = {"trait": induction.trait, "pole": induction.pole, "scale (γ)": induction.scale,
            "threshold": options.threshold, "top_k": options.top_k, "use f(δ)": options.use_f,
            "boost_only": options.boost_only, "clamp_only": options.clamp_only,
            "boost_fraction": options.boost_fraction, "positions": options.positions,
            "neuron site": induction.neuron_site,
            "model": induction.fingerprint.model_type if induction.fingerprint else None}
    if stats is not None:
        rows["tokens (pos / neg)"] = f"{stats.pos.tokens} / {stats.neg.tokens}"
        rows["poles (pos / neg)"] = f"{stats.poles['pos']} / {stats.poles['neg']}"
        rows["max a95 error"] = f"{float(stats.side(options.target).a95_err.max()):.4g}"
    console.print(key_value_table(rows, title=str(path)))

    n_blocks = stats.shape[0] if stats is not None else (max(induction.blocks) + 1 if induction.blocks else 0)
    counts = induction.counts()
    peak = max([c[0] for c in counts.values()] + [c[1] for c in counts.values()] + [0])
    table = Table(title=f"neurons per block (block k writes layer k+1); boosted = {induction.pole}")
    for column in ("block", "boosted", "clamped", "chart (█ boosted / ░ clamped)"):
        table.add_column(column)
    for block in range(n_blocks):
        boosted, clamped = counts.get(block, (0, 0))
        chart = f"[green]{_bar(boosted, peak)}[/green]\n[red]{_bar(clamped, peak).replace(BAR, '░')}[/red]"
        table.add_row(str(block), str(boosted), str(clamped), chart)
    console.print(table)

    entries = []
    for block, (index, values) in induction.boosts.items():
        entries += [(block, int(i), float(v), "boost") for i, v in zip(index, values, strict=True)]
    for block, index in induction.clamps.items():
        entries += [(block, int(i), 0.0, "clamp") for i in index]
    if stats is not None and entries:
        delta = stats.delta(options.target)
        a95 = stats.side(options.target).a95
        ranked = sorted(entries, key=lambda e: -abs(float(delta[e[0], e[1]])))[:top]
        table = Table(title=f"top {len(ranked)} neurons by |δ|")
        for column in ("block", "neuron", "δ", "Pr(pos)", "Pr(neg)", "a95 (target)", "edit"):
            table.add_column(column)
        for block, neuron, value, kind in ranked:
            edit = f"+{value:.3g}·γ" if kind == "boost" else "min(0, n)"
            table.add_row(str(block), str(neuron), f"{float(delta[block, neuron]):+.3f}",
                          f"{float(stats.pos.firing[block, neuron]):.3f}",
                          f"{float(stats.neg.firing[block, neuron]):.3f}", f"{float(a95[block, neuron]):.3g}", edit)
        console.print(table)
    elif not entries:
        console.print("no neurons selected")
