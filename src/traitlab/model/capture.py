"""Capture of activations without ``output_hidden_states=True``: a hook on exactly the layers asked for.

- ``capture_residual``: residual stream at layers ℓ (DESIGN.md convention), reduced to a per-row mean over the
  selected positions as it streams (``O(batch × d)`` memory), or kept per token when asked.
- ``stream_neurons``: neuron-site activations of selected positions handed to a callback per forward pass, so
  statistics accumulate in bounded memory; ``NeuronMoments`` is the exact streaming accumulator of firing
  rate, mean and variance per neuron.
- ``capture_linear_inputs``: per input channel of every Linear in the blocks, Σx and Σx² over selected tokens
  (Wanda's ‖X_j‖₂, Sun et al. 2023; mean and variance for contrastive pruning).
- ``teacher_forced``: one forward pass over given tokens with explicit roles, optionally stopping after the
  last layer a capture needs.
"""

from __future__ import annotations

import contextlib
import dataclasses
from collections.abc import Callable, Iterator, Sequence
from typing import Any, Literal

import torch
from torch import nn

from traitlab.errors import ConfigError
from traitlab.model.family import is_linear
from traitlab.model.hooks import ForwardState, HookEngine, StopForward, engine_of
from traitlab.model.positions import check_positions


class ResidualCapture:
    """Running per-row sums (float32) of the residual at each captured layer, over selected positions."""

    def __init__(self, layers: Sequence[int], keep_tokens: bool) -> None:
        self.layers = list(layers)
        self.keep_tokens = keep_tokens
        self.sums: dict[int, torch.Tensor] = {}
        self.counts: dict[int, torch.Tensor] = {}
        self._tokens: dict[int, list[torch.Tensor]] = {layer: [] for layer in layers}
        self._masks: dict[int, list[torch.Tensor]] = {layer: [] for layer in layers}

    def add(self, layer: int, hidden: torch.Tensor, mask: torch.Tensor) -> None:
        weights = mask.to(torch.float32)
        total = torch.einsum("bt,btd->bd", weights, hidden.float())
        count = weights.sum(1)
        if layer in self.sums:
            self.sums[layer] += total
            self.counts[layer] += count
        else:
            self.sums[layer], self.counts[layer] = total, count
        if self.keep_tokens:
            self._tokens[layer].append(hidden.detach())
            self._masks[layer].append(mask)

    def mean(self, layer: int) -> torch.Tensor:
        """``[batch, d]`` mean over selected positions (rows with no selected position give NaN)."""
        if layer not in self.sums:
            raise ConfigError(f"layer {layer} was not captured (captured: {self.layers})")
        return self.sums[layer] / self.counts[layer].unsqueeze(-1)

    def means(self) -> torch.Tensor:
        """``[batch, len(layers), d]`` means, in the order of ``layers``."""
        return torch.stack([self.mean(layer) for layer in self.layers], dim=1)

    def tokens(self, layer: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Per-token residual ``[batch, seq, d]`` over all forwards (generation steps concatenated) and the
        ``[batch, seq]`` selection mask. Needs ``keep_tokens=True``."""
        if not self.keep_tokens:
            raise ConfigError("per-token capture needs keep_tokens=True")
        return torch.cat(self._tokens[layer], dim=1), torch.cat(self._masks[layer], dim=1)


@contextlib.contextmanager
def capture_residual(engine: HookEngine, layers: Sequence[int], positions: str = "all",
                     keep_tokens: bool = False, stop_after_last: bool = False) -> Iterator[ResidualCapture]:
    """Capture the residual stream at ``layers``. With ``stop_after_last`` the forward pass raises
    ``StopForward`` once the deepest layer is captured (use ``teacher_forced``, which catches it)."""
    engine = engine_of(engine)
    mode = check_positions(positions)
    layers = sorted({engine.check_layer(layer) for layer in layers})
    if not layers:
        raise ConfigError("capture_residual needs at least one layer")
    capture = ResidualCapture(layers, keep_tokens)
    deepest = layers[-1]

    def recorder(layer: int) -> Callable[[torch.Tensor, ForwardState], torch.Tensor]:
        def record(hidden: torch.Tensor, state: ForwardState) -> torch.Tensor:
            capture.add(layer, hidden, state.mask(mode))
            if stop_after_last and layer == deepest:
                raise StopForward
            return hidden
        return record

    with contextlib.ExitStack() as stack:
        for layer in layers:
            stack.enter_context(engine.residual(layer, recorder(layer)))
        yield capture


NeuronCallback = Callable[[int, torch.Tensor], None]


@contextlib.contextmanager
def stream_neurons(engine: HookEngine, blocks: Sequence[int], on_batch: NeuronCallback,
                   positions: str = "response") -> Iterator[None]:
    """Call ``on_batch(block, acts)`` with the ``[n_selected_tokens, n_neurons]`` neuron-site activations of
    each forward pass, for each block in ``blocks`` (0-based)."""
    engine = engine_of(engine)
    mode = check_positions(positions)
    state = engine.state
    with contextlib.ExitStack() as stack:
        for block in blocks:
            if not 0 <= block < engine.num_layers:
                raise ConfigError(f"block {block} is out of range 0..{engine.num_layers - 1}")

            def record(module: nn.Module, args: tuple[Any, ...], output: torch.Tensor, block: int = block) -> None:
                selected = output[state.mask(mode)]
                if selected.numel():
                    on_batch(block, selected.detach())

            stack.enter_context(engine.hook(engine.neuron_module(block), record))
        yield


class NeuronMoments:
    """Exact streaming per-neuron statistics: firing rate Pr(n > 0), mean and variance; O(blocks × neurons)."""

    def __init__(self) -> None:
        self.tokens: dict[int, int] = {}
        self.positive: dict[int, torch.Tensor] = {}
        self.total: dict[int, torch.Tensor] = {}
        self.total_sq: dict[int, torch.Tensor] = {}

    def __call__(self, block: int, acts: torch.Tensor) -> None:
        acts64 = acts.double()
        if block not in self.tokens:
            width = acts.shape[-1]
            self.tokens[block] = 0
            self.positive[block] = torch.zeros(width, dtype=torch.long, device=acts.device)
            self.total[block] = torch.zeros(width, dtype=torch.float64, device=acts.device)
            self.total_sq[block] = torch.zeros(width, dtype=torch.float64, device=acts.device)
        self.tokens[block] += acts.shape[0]
        self.positive[block] += (acts > 0).sum(0)
        self.total[block] += acts64.sum(0)
        self.total_sq[block] += acts64.square().sum(0)

    def firing_rate(self, block: int) -> torch.Tensor:
        return self.positive[block].double() / self.tokens[block]

    def mean(self, block: int) -> torch.Tensor:
        return self.total[block] / self.tokens[block]

    def variance(self, block: int) -> torch.Tensor:
        return (self.total_sq[block] / self.tokens[block] - self.mean(block).square()).clamp(min=0)


@dataclasses.dataclass
class LinearInputStats:
    """Σx_j and Σx_j² per input channel j over ``count`` tokens (float64)."""

    sum: torch.Tensor
    sum_sq: torch.Tensor
    count: int = 0

    @property
    def norm(self) -> torch.Tensor:
        """‖X_j‖₂, Wanda's activation norm."""
        return self.sum_sq.sqrt()

    @property
    def mean(self) -> torch.Tensor:
        return self.sum / max(self.count, 1)

    @property
    def variance(self) -> torch.Tensor:
        return (self.sum_sq / max(self.count, 1) - self.mean.square()).clamp(min=0)


ModuleFilter = Literal["all", "mlp", "attention"]


def linear_modules(engine: HookEngine, modules: ModuleFilter = "all",
                   blocks: Sequence[int] | None = None) -> dict[str, nn.Module]:
    """Linear layers (``nn.Linear`` or transformers' ``Conv1D``) inside the decoder blocks, by full name."""
    engine = engine_of(engine)
    if modules not in ("all", "mlp", "attention"):
        raise ConfigError(f"unknown module filter '{modules}'; use all, mlp or attention")
    family = engine.family
    attn_prefix = family.attn_out.rsplit(".", 1)[0] + "." if "." in family.attn_out else ""
    chosen = range(engine.num_layers) if blocks is None else blocks
    found: dict[str, nn.Module] = {}
    for block in chosen:
        for name, module in engine.blocks[block].named_modules():
            if not is_linear(module):
                continue
            in_mlp = name.startswith(family.mlp + ".")
            in_attn = bool(attn_prefix) and name.startswith(attn_prefix)
            if modules == "all" or (modules == "mlp" and in_mlp) or (modules == "attention" and in_attn):
                found[f"{family.layers}.{block}.{name}"] = module
    return found


@contextlib.contextmanager
def capture_linear_inputs(engine: HookEngine, positions: str = "all", modules: ModuleFilter = "all",
                          blocks: Sequence[int] | None = None) -> Iterator[dict[str, LinearInputStats]]:
    """Per-input-channel Σx and Σx² of every selected Linear's input, over tokens at ``positions``."""
    engine = engine_of(engine)
    mode = check_positions(positions)
    state = engine.state
    stats: dict[str, LinearInputStats] = {}

    def recorder(name: str) -> Callable[..., None]:
        def record(module: nn.Module, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
            x = args[0] if args else next(iter(kwargs.values()))
            selected = x[state.mask(mode)].double()
            entry = stats.get(name)
            if entry is None:
                zeros = torch.zeros(x.shape[-1], dtype=torch.float64, device=x.device)
                entry = stats[name] = LinearInputStats(zeros, zeros.clone())
            entry.sum += selected.sum(0)
            entry.sum_sq += selected.square().sum(0)
            entry.count += selected.shape[0]
        return record

    with contextlib.ExitStack() as stack:
        for name, module in linear_modules(engine, modules, blocks).items():
            stack.enter_context(engine.hook(module, recorder(name), pre=True))
        yield stats


@contextlib.contextmanager
def stop_after_block(engine: HookEngine, block: int) -> Iterator[None]:
    """End every forward pass inside the ``with`` block with ``StopForward`` once decoder block ``block``
    (0-based) has run, skipping the blocks after it, the final norm and the LM head (on SmolLM2-135M the head is
    ≈ 19% of a token's multiply-adds): for passes that only record activations (``teacher_forced`` then returns
    ``None``)."""
    engine = engine_of(engine)
    if not 0 <= block < engine.num_layers:
        raise ConfigError(f"block {block} is out of range 0..{engine.num_layers - 1}")

    def stop(module: nn.Module, args: tuple[Any, ...], output: Any) -> None:
        raise StopForward

    with engine.hook(engine.blocks[block], stop):
        yield


def teacher_forced(engine: HookEngine, input_ids: torch.Tensor, attention_mask: torch.Tensor,
                   roles: torch.Tensor | None = None, grad: bool = False) -> Any:
    """One forward over ``input_ids`` with explicit token roles (no-grad unless ``grad``); returns the model
    output, or ``None`` when a capture stopped the pass early (``stop_after_last``)."""
    engine = engine_of(engine)
    position_ids = (attention_mask.long().cumsum(-1) - 1).clamp(min=0)
    roles = attention_mask.long() if roles is None else roles
    with torch.set_grad_enabled(grad), engine.tracking(), engine.token_roles(roles):
        try:
            return engine.model(input_ids=input_ids, attention_mask=attention_mask, position_ids=position_ids,
                                use_cache=False)
        except StopForward:
            return None
