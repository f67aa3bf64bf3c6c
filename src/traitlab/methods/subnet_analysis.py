"""Analysis of persona subnetworks: sparsity per module and layer, and the Jaccard overlap of two personas'
masks per module, per block and per module kind, computed from the packed bits (no unpacking); a PNG plot.

Jaccard of the kept sets is |A ∩ B| / |A ∪ B| over kept weights; that of the removed sets the same over removed
weights (more telling at low sparsity, where kept sets overlap almost fully by construction).
"""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path

from traitlab.errors import ConfigError
from traitlab.methods.subnet_masks import jaccard, overlap_counts, popcount
from traitlab.methods.subnetworks import SubnetworkMask

_BLOCK = re.compile(r"\.(\d+)\.(.+)\.weight$")


def split_name(name: str) -> tuple[int, str]:
    """``model.layers.3.mlp.down_proj.weight`` → ``(3, 'mlp.down_proj')``."""
    match = _BLOCK.search(name)
    if match is None:
        return -1, name
    return int(match.group(1)), match.group(2)


@dataclasses.dataclass
class ModuleRow:
    name: str
    block: int
    module: str
    numel: int
    kept: int

    @property
    def sparsity(self) -> float:
        return 1.0 - self.kept / self.numel if self.numel else 0.0


def sparsity_rows(mask: SubnetworkMask) -> list[ModuleRow]:
    rows = []
    for name, shape in mask.shapes.items():
        block, module = split_name(name)
        numel = 1
        for dim in shape:
            numel *= dim
        rows.append(ModuleRow(name, block, module, numel, popcount(mask.packed[name])))
    return rows


def sparsity_by_block(mask: SubnetworkMask) -> dict[int, float]:
    totals: dict[int, list[int]] = {}
    for row in sparsity_rows(mask):
        entry = totals.setdefault(row.block, [0, 0])
        entry[0] += row.numel
        entry[1] += row.kept
    return {block: 1.0 - kept / numel for block, (numel, kept) in sorted(totals.items())}


@dataclasses.dataclass
class OverlapRow:
    name: str
    block: int
    module: str
    counts: dict[str, int]

    @property
    def kept_jaccard(self) -> float:
        return jaccard(self.counts["kept_both"], self.counts["kept_either"])

    @property
    def removed_jaccard(self) -> float:
        return jaccard(self.counts["removed_both"], self.counts["removed_either"])


def overlap(a: SubnetworkMask, b: SubnetworkMask) -> list[OverlapRow]:
    """Per shared parameter: kept/removed intersection and union counts."""
    shared = [name for name in a.shapes if name in b.shapes]
    if not shared:
        raise ConfigError("the two masks cover no common parameter")
    rows = []
    for name in shared:
        if a.shapes[name] != b.shapes[name]:
            raise ConfigError(f"the masks of {name} have different shapes {a.shapes[name]} and {b.shapes[name]}")
        numel = 1
        for dim in a.shapes[name]:
            numel *= dim
        block, module = split_name(name)
        rows.append(OverlapRow(name, block, module, overlap_counts(a.packed[name], b.packed[name], numel)))
    return rows


def aggregate(rows: list[OverlapRow], key: str) -> dict[object, tuple[float, float]]:
    """``{block or module kind: (kept Jaccard, removed Jaccard)}`` pooled over the rows of each group."""
    pooled: dict[object, dict[str, int]] = {}
    for row in rows:
        group = row.block if key == "block" else row.module
        entry = pooled.setdefault(group, dict.fromkeys(row.counts, 0))
        for field, value in row.counts.items():
            entry[field] += value
    return {group: (jaccard(c["kept_both"], c["kept_either"]), jaccard(c["removed_both"], c["removed_either"]))
            for group, c in (sorted(pooled.items()) if key == "block" else pooled.items())}


def plot_overlap(rows: list[OverlapRow], path: str | Path, title: str = "") -> Path:
    """Heatmaps of the kept and removed Jaccard, blocks × module kinds, written as a PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    blocks = sorted({r.block for r in rows})
    kinds = list(dict.fromkeys(r.module for r in rows))
    kept = np.full((len(blocks), len(kinds)), np.nan)
    removed = np.full_like(kept, np.nan)
    for r in rows:
        kept[blocks.index(r.block), kinds.index(r.module)] = r.kept_jaccard
        removed[blocks.index(r.block), kinds.index(r.module)] = r.removed_jaccard
    figure, axes = plt.subplots(1, 2, figsize=(2 + 1.1 * len(kinds) * 2, 1.5 + 0.45 * len(blocks)), squeeze=False)
    for axis, data, label in zip(axes[0], (kept, removed), ("kept weights", "removed weights"), strict=True):
        image = axis.imshow(data, vmin=0, vmax=1, cmap="viridis", aspect="auto")
        axis.set_xticks(range(len(kinds)), kinds, rotation=45, ha="right", fontsize=8)
        axis.set_yticks(range(len(blocks)), [str(b) for b in blocks], fontsize=8)
        axis.set_ylabel("block")
        axis.set_title(f"Jaccard, {label}", fontsize=9)
        for (i, j), value in np.ndenumerate(data):
            if not np.isnan(value):
                axis.text(j, i, f"{value:.2f}", ha="center", va="center", fontsize=6, color="white")
        figure.colorbar(image, ax=axis, fraction=0.046)
    if title:
        figure.suptitle(title, fontsize=9)
    figure.tight_layout()
    target = Path(path)
    figure.savefig(target, dpi=110)
    plt.close(figure)
    return target


def plot_sparsity(mask: SubnetworkMask, path: str | Path, title: str = "") -> Path:
    """Bars of the removed fraction per block and module kind, written as a PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = sparsity_rows(mask)
    blocks = sorted({r.block for r in rows})
    kinds = list(dict.fromkeys(r.module for r in rows))
    width = 0.8 / max(1, len(kinds))
    figure, axis = plt.subplots(figsize=(2 + 0.6 * len(blocks) * max(1, len(kinds)) * 0.4, 3))
    for k, kind in enumerate(kinds):
        values = [next((r.sparsity for r in rows if r.block == b and r.module == kind), 0.0) for b in blocks]
        axis.bar([b + k * width for b in range(len(blocks))], values, width, label=kind)
    axis.set_xticks([b + 0.4 - width / 2 for b in range(len(blocks))], [str(b) for b in blocks])
    axis.set_xlabel("block")
    axis.set_ylabel("removed fraction")
    axis.legend(fontsize=6, ncol=2)
    if title:
        axis.set_title(title, fontsize=9)
    figure.tight_layout()
    target = Path(path)
    figure.savefig(target, dpi=110)
    plt.close(figure)
    return target
