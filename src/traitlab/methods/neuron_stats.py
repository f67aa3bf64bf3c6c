"""Streaming neuron statistics for NPTI (Deng et al., ICLR 2025): per neuron of every block, the firing rate
Pr_i = P(n_i > 0) and the 95th percentile a95_i of its activation, over generated tokens, in memory that does
not grow with the number of tokens.

``NeuronHistogram`` is a ``stream_neurons`` callback. Per block it keeps

- the token count and, per neuron, the count of activations > 0: Pr_i is **exact**;
- a fixed-bin histogram of ``bins`` (default 256) equal-width bins per neuron over a per-neuron range
  [lo_i, lo_i + bins·w_i]. The range is learned from a warm-up: the first buffer of tokens sets
  lo_i = min, w_i = (max − min) / bins. A later value outside the range widens it by doubling: the bin width
  doubles (2^k times) and adjacent bin pairs merge, anchored at the end that stays, so every token already
  counted stays in the bin that contains it. Every value ever seen therefore lies inside the final range, and
  there are no overflow bins.

Quantiles follow ``torch.quantile(x, q)`` (linear interpolation between order statistics at h = q·(n−1)):
the estimate is the same interpolation between the centres of the bins that hold order statistics ⌊h⌋ and
⌊h⌋+1. Each centre is within w_i/2 of its order statistic, so

    |â95_i − torch.quantile(x_i, 0.95)| ≤ w_i / 2          (plus float rounding at bin edges),

with w_i = span_i / bins when the warm-up saw the neuron's extremes and at most 4·span_i / bins after range
doublings (span_i = max − min of the neuron's activations). ``quantile`` returns the bound per neuron with
the estimate.

Memory: per block ``neurons × (bins + 6)`` numbers plus a token buffer of at most ``buffer_tokens × neurons``
floats (the buffer batches the histogram update; by default ≤ 2^23 floats over all blocks). Nothing grows with
the number of tokens.
"""

from __future__ import annotations

import dataclasses
import math

import torch

from traitlab.errors import ConfigError

DEFAULT_BINS = 256
MAX_BUFFER_ELEMENTS = 1 << 23
_MIN_WIDTH = 1e-6


@dataclasses.dataclass
class _BlockState:
    """Counts and histogram of one block."""

    buffer: torch.Tensor
    filled: int = 0
    tokens: int = 0
    positive: torch.Tensor | None = None  # [N] int64
    hist: torch.Tensor | None = None  # [N, bins] int64
    lo: torch.Tensor | None = None  # [N] float64
    width: torch.Tensor | None = None  # [N] float64


class NeuronHistogram:
    """Streaming Pr(n > 0) (exact) and histogram quantiles per neuron; a ``stream_neurons`` callback.

    ``bins`` must be a power of two (range doubling merges bin pairs). ``buffer_tokens`` tokens per block are
    batched before each histogram update (default: as many as fit in ``MAX_BUFFER_ELEMENTS`` floats over
    ``n_blocks`` blocks, between 16 and 1024); the first full buffer is the warm-up that sets the range.
    Call ``finalize()`` (or any accessor, which does it) after the last forward pass.
    """

    def __init__(self, bins: int = DEFAULT_BINS, buffer_tokens: int | None = None, n_blocks: int = 1) -> None:
        if bins < 2 or bins & (bins - 1):
            raise ConfigError(f"histogram bins must be a power of two ≥ 2, got {bins}")
        if buffer_tokens is not None and buffer_tokens < 1:
            raise ConfigError(f"buffer_tokens must be ≥ 1, got {buffer_tokens}")
        self.bins = bins
        self.buffer_tokens = buffer_tokens
        self.n_blocks = max(1, n_blocks)
        self.blocks: dict[int, _BlockState] = {}

    # ------------------------------------------------------------------------------------------- streaming

    def __call__(self, block: int, acts: torch.Tensor) -> None:
        state = self.blocks.get(block)
        if state is None:
            width = acts.shape[-1]
            capacity = self.buffer_tokens or min(1024, max(16, MAX_BUFFER_ELEMENTS // (self.n_blocks * width)))
            state = self.blocks[block] = _BlockState(torch.empty(capacity, width, dtype=torch.float32,
                                                                 device=acts.device))
        capacity = state.buffer.shape[0]
        start = 0
        while start < acts.shape[0]:
            take = min(capacity - state.filled, acts.shape[0] - start)
            state.buffer[state.filled:state.filled + take] = acts[start:start + take]
            state.filled += take
            start += take
            if state.filled == capacity:
                self._flush(state)

    def finalize(self) -> None:
        """Fold buffered tokens into the counts (idempotent)."""
        for state in self.blocks.values():
            if state.filled:
                self._flush(state)

    def _flush(self, state: _BlockState) -> None:
        x = state.buffer[:state.filled]
        state.filled = 0
        n_neurons = x.shape[1]
        xmin, xmax = x.aminmax(dim=0)
        xmin, xmax = xmin.double(), xmax.double()
        if state.hist is None:
            state.positive = torch.zeros(n_neurons, dtype=torch.long, device=x.device)
            state.hist = torch.zeros(n_neurons, self.bins, dtype=torch.long, device=x.device)
            state.lo = xmin
            width = (xmax - xmin) / self.bins
            state.width = torch.where(width > 0, width, torch.full_like(width, _MIN_WIDTH))
        else:
            self._widen(state, xmin, xmax)
        state.tokens += x.shape[0]
        state.positive += (x > 0).float().sum(0).long()  # exact: a flush holds < 2^24 tokens
        # bin index in float32 (clamped at ≥ 0, so truncation is floor); rounding can only move a value that
        # lies within ~1e-7 bin widths of an edge into the neighbouring bin
        scale = (1 / state.width).float()
        index = ((x - state.lo.float()) * scale).clamp_(0, self.bins - 1).long()
        index += torch.arange(n_neurons, device=x.device) * self.bins
        state.hist.view(-1).index_add_(0, index.view(-1), torch.ones(1, dtype=torch.long, device=x.device)
                                       .expand(index.numel()))

    def _widen(self, state: _BlockState, xmin: torch.Tensor, xmax: torch.Tensor) -> None:
        """Double the range of neurons whose new values fall outside it, merging bins (see module docstring)."""
        assert state.lo is not None and state.width is not None and state.hist is not None
        bins = self.bins
        j = torch.arange(bins, device=xmin.device)
        for upward in (True, False):
            span = bins * state.width
            outside = xmax - state.lo if upward else state.lo + span - xmin
            need = outside > span
            if not bool(need.any()):
                continue
            rows = need.nonzero().squeeze(1)
            doublings = torch.ceil(torch.log2(outside[rows] / span[rows])).clamp(min=1)
            # float safety: one more doubling wherever the new range would still fall short
            short = span[rows] * torch.exp2(doublings) < outside[rows]
            doublings = (doublings + short.double()).clamp(max=62)
            factor = torch.exp2(doublings).long()
            target = j // factor[:, None] if upward else bins - 1 - (bins - 1 - j) // factor[:, None]
            merged = torch.zeros(len(rows), bins, dtype=state.hist.dtype, device=state.hist.device)
            merged.scatter_add_(1, target, state.hist[rows])
            state.hist[rows] = merged
            top = state.lo[rows] + span[rows]
            state.width[rows] = state.width[rows] * factor.double()
            if not upward:
                state.lo[rows] = top - bins * state.width[rows]

    # ------------------------------------------------------------------------------------------- results

    def _state(self, block: int) -> _BlockState:
        self.finalize()
        state = self.blocks.get(block)
        if state is None or state.hist is None:
            raise ConfigError(f"no activations were recorded for block {block} (no generated tokens?)")
        return state

    def tokens(self, block: int) -> int:
        self.finalize()
        state = self.blocks.get(block)
        return 0 if state is None else state.tokens

    def firing_rate(self, block: int) -> torch.Tensor:
        """Exact Pr_i = (tokens with n_i > 0) / tokens, float64 ``[N]``."""
        state = self._state(block)
        return state.positive.double() / state.tokens

    def bin_width(self, block: int) -> torch.Tensor:
        return self._state(block).width.clone()

    def quantile(self, block: int, q: float = 0.95) -> tuple[torch.Tensor, torch.Tensor]:
        """``(estimate, error_bound)`` per neuron, float64 ``[N]``: the histogram estimate of
        ``torch.quantile(x_i, q)`` and its bound w_i / 2 (module docstring)."""
        if not 0 <= q <= 1:
            raise ConfigError(f"quantile must be in [0, 1], got {q}")
        state = self._state(block)
        n = state.tokens
        h = q * (n - 1)
        k = math.floor(h)
        frac = h - k
        cum = state.hist.cumsum(1)
        ranks = torch.tensor([k + 1, min(k + 2, n)], device=cum.device).expand(cum.shape[0], 2).contiguous()
        where = torch.searchsorted(cum, ranks).clamp(max=self.bins - 1).double()
        centres = state.lo[:, None] + (where + 0.5) * state.width[:, None]
        estimate = (1 - frac) * centres[:, 0] + frac * centres[:, 1]
        return estimate, state.width / 2

    def nbytes(self) -> int:
        """Bytes held by the accumulator (counts, histograms, ranges and token buffers)."""
        total = 0
        for state in self.blocks.values():
            for tensor in (state.buffer, state.positive, state.hist, state.lo, state.width):
                if tensor is not None:
                    total += tensor.numel() * tensor.element_size()
        return total
