"""Runtime edits of activations, as context managers over a ``HookEngine``.

Every edit takes per-row parameters: a coefficient may be a float or a ``[batch]`` tensor, a vector may be
``[d]`` or ``[batch, d]``, so one batch can carry different personas (the server relies on it). Positions are
selected by role (``positions.select_positions``); padding is never edited.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence
from typing import Any

import torch
from torch import nn

from traitlab.errors import ConfigError
from traitlab.model.family import in_features
from traitlab.model.hooks import ForwardState, HookEngine, engine_of
from traitlab.model.positions import check_positions

Coef = float | torch.Tensor


def as_direction(vector: Any, hidden_size: int, name: str = "vector") -> torch.Tensor:
    """Validate a steering vector (``[d]`` or per-row ``[batch, d]``): right width, finite values."""
    v = torch.as_tensor(vector)
    if v.dim() not in (1, 2) or v.shape[-1] != hidden_size:
        raise ConfigError(f"{name} has shape {tuple(v.shape)}; expected [{hidden_size}] or [batch, {hidden_size}]")
    if not torch.isfinite(v).all():
        raise ConfigError(f"{name} contains NaN or infinite values")
    return v


def _rows_of(per_row: torch.Tensor, batch: int, state: ForwardState | None, what: str) -> torch.Tensor:
    """The entries of a per-row tensor for the batch in flight: ``generate_chat`` sorts and chunks the caller's
    rows, and ``state.rows`` names the caller's rows in this batch (``state.total_rows`` counts them all)."""
    if state is None or state.rows is None:
        return per_row
    if per_row.shape[0] != state.total_rows:
        raise ConfigError(f"per-row {what} have {per_row.shape[0]} rows but the generation has "
                          f"{state.total_rows}")
    return per_row[state.rows.to(per_row.device)]


def _row_coef(coef: Coef, batch: int, like: torch.Tensor, state: ForwardState | None = None) -> torch.Tensor:
    """Coefficient broadcast to ``[batch, 1, 1]`` (or ``[1, 1, 1]``) in ``like``'s dtype and device."""
    c = torch.as_tensor(coef, dtype=like.dtype, device=like.device)
    if c.dim() == 0:
        return c.reshape(1, 1, 1)
    c = _rows_of(c, batch, state, "coefficients")
    if c.shape != (batch,):
        raise ConfigError(f"per-row coefficients have shape {tuple(c.shape)} but the batch has {batch} rows")
    return c.reshape(batch, 1, 1)


def _row_vector(v: torch.Tensor, batch: int, like: torch.Tensor, state: ForwardState | None = None) -> torch.Tensor:
    v = v.to(dtype=like.dtype, device=like.device)
    if v.dim() == 1:
        return v.reshape(1, 1, -1)
    v = _rows_of(v, batch, state, "vectors")
    if v.shape[0] != batch:
        raise ConfigError(f"per-row vectors have {v.shape[0]} rows but the batch has {batch}")
    return v.unsqueeze(1)


def _unit(v: torch.Tensor) -> torch.Tensor:
    norm = v.float().norm(dim=-1, keepdim=True)
    if (norm == 0).any():
        raise ConfigError("cannot ablate or cap along a zero direction")
    return (v.float() / norm).to(v.dtype)


@contextlib.contextmanager
def residual_add(engine: HookEngine, layer: int, vector: Any, coef: Coef = 1.0,
                 positions: str = "all") -> Iterator[None]:
    """Activation addition (Chen et al. 2025, persona vectors; Turner et al. 2023): h_ℓ ← h_ℓ + coef·v at the
    selected positions of layer ℓ."""
    engine = engine_of(engine)
    mode = check_positions(positions)
    v = as_direction(vector, engine.model.config.get_text_config().hidden_size)

    def add(hidden: torch.Tensor, state: ForwardState) -> torch.Tensor:
        batch = hidden.shape[0]
        row_coef = _row_coef(coef, batch, hidden, state)
        if row_coef.shape[0] > 1 and hidden.device.type == "cpu" and not bool(row_coef.any()):
            return hidden  # no row of this batch is steered (h + 0·v is h)
        delta = row_coef * _row_vector(v, batch, hidden, state)
        return hidden + state.mask(mode).unsqueeze(-1).to(hidden.dtype) * delta

    with engine.residual(layer, add):
        yield


@contextlib.contextmanager
def residual_ablate(engine: HookEngine, layer: int, direction: Any, coef: Coef = 1.0,
                    positions: str = "all") -> Iterator[None]:
    """Directional ablation (Arditi et al. 2024; CAFT): h ← h − coef·(h·v̂)v̂; coef = 1 removes the component."""
    engine = engine_of(engine)
    mode = check_positions(positions)
    u = _unit(as_direction(direction, engine.model.config.get_text_config().hidden_size, "direction"))

    def ablate(hidden: torch.Tensor, state: ForwardState) -> torch.Tensor:
        batch = hidden.shape[0]
        unit = _row_vector(u, batch, hidden, state)
        projection = (hidden * unit).sum(-1, keepdim=True)
        removed = _row_coef(coef, batch, hidden, state) * projection * unit
        return hidden - state.mask(mode).unsqueeze(-1).to(hidden.dtype) * removed

    with engine.residual(layer, ablate):
        yield


@contextlib.contextmanager
def residual_cap(engine: HookEngine, layer: int, direction: Any, low: float | None = None,
                 high: float | None = None, positions: str = "all", coef: Coef = 1.0) -> Iterator[None]:
    """Projection capping: clamp p = h·v̂ into [low, high] and move h along v̂ by coef times the difference
    (``coef`` per row: 1 caps, 0 leaves the row alone; rows already in range are never changed)."""
    engine = engine_of(engine)
    if low is None and high is None:
        raise ConfigError("projection capping needs a lower bound, an upper bound, or both")
    if low is not None and high is not None and low > high:
        raise ConfigError(f"capping range is empty: low {low} > high {high}")
    mode = check_positions(positions)
    u = _unit(as_direction(direction, engine.model.config.get_text_config().hidden_size, "direction"))

    def cap(hidden: torch.Tensor, state: ForwardState) -> torch.Tensor:
        unit = _row_vector(u, hidden.shape[0], hidden, state)
        projection = (hidden * unit).sum(-1, keepdim=True)
        shift = projection.clamp(min=low, max=high) - projection
        if isinstance(coef, torch.Tensor) or coef != 1.0:
            shift = _row_coef(coef, hidden.shape[0], hidden, state) * shift
        return hidden + state.mask(mode).unsqueeze(-1).to(hidden.dtype) * shift * unit

    with engine.residual(layer, cap):
        yield


def _index(indices: Any, width: int, name: str) -> torch.Tensor:
    idx = torch.as_tensor(indices, dtype=torch.long).reshape(-1)
    if idx.numel() and (idx.min() < 0 or idx.max() >= width):
        raise ConfigError(f"{name} neuron index out of range 0..{width - 1}")
    return idx


@contextlib.contextmanager
def neuron_edit(engine: HookEngine, block: int, boost_index: Sequence[int] | torch.Tensor = (),
                boost: Any = 0.0, clamp_index: Sequence[int] | torch.Tensor = (), coef: Coef = 1.0,
                positions: str = "response") -> Iterator[None]:
    """Neuron edit at the neuron site of block ``block`` (NPTI, Deng et al. ICLR 2025):
    n_i ← n_i + coef·boost_i for i in ``boost_index``; n_j ← min(0, n_j) for j in ``clamp_index``.
    Rows whose coefficient is 0 are left untouched.

    ``boost`` is a scalar or one value per boosted neuron. The block index is 0-based (block k writes layer k+1).
    """
    engine = engine_of(engine)
    mode = check_positions(positions)
    if not 0 <= block < engine.num_layers:
        raise ConfigError(f"block {block} is out of range 0..{engine.num_layers - 1}")
    site: nn.Module = engine.neuron_module(block)
    width = _neuron_width(engine, block)
    boost_idx, clamp_idx = _index(boost_index, width, "boost"), _index(clamp_index, width, "clamp")
    if torch.isin(boost_idx, clamp_idx).any():
        raise ConfigError("a neuron cannot be both boosted and clamped")
    boost_dense = torch.zeros(width)
    boost_dense[boost_idx] = torch.as_tensor(boost, dtype=torch.float32).expand(boost_idx.shape)
    # min(n, cap) with cap = 0 on clamped neurons and +inf elsewhere is min(0, n) on exactly those neurons
    cap_dense = torch.full((width,), float("inf"))
    cap_dense[clamp_idx] = 0.0
    has_boost, has_clamp = bool(boost_idx.numel()), bool(clamp_idx.numel())
    per_row = isinstance(coef, torch.Tensor) and coef.dim() > 0
    state = engine.state
    cache: dict[tuple[torch.dtype, torch.device], tuple[torch.Tensor, torch.Tensor]] = {}

    def edit(module: nn.Module, args: tuple[Any, ...], output: torch.Tensor) -> torch.Tensor:
        key = (output.dtype, output.device)
        if key not in cache:
            add = boost_dense.to(device=output.device, dtype=output.dtype)
            cache[key] = (add if per_row else add * torch.as_tensor(coef, dtype=output.dtype, device=output.device),
                          cap_dense.to(device=output.device, dtype=output.dtype))
        add, cap = cache[key]
        selected = state.mask(mode).unsqueeze(-1)
        if per_row:
            row_coef = _row_coef(coef, output.shape[0], output, state)
            steered = row_coef != 0
            if output.device.type == "cpu" and not bool(steered.any()):
                return output  # no row of this batch is steered (other rows of a shared generation)
            # a row whose coefficient is 0 carries no persona: neither boosted nor clamped
            selected = selected & steered
            add = row_coef * add
        elif not coef:
            return output
        if output.device.type == "cpu" and not bool(selected.any()):
            return output  # e.g. the prefill under positions="response" (the check would sync a GPU)
        edited = torch.minimum(output, cap) if has_clamp else output
        if has_boost:
            edited = edited + add
        return torch.where(selected, edited, output)

    with engine.hook(site, edit):
        yield


def _neuron_width(engine: HookEngine, block: int) -> int:
    family = engine.family
    return in_features(engine.block_part(block, family.down))
