"""The hook engine: registers forward hooks on exactly the modules an edit or capture needs, and removes them
on exit, also when the body raises.

While any hook is active, one forward pre-hook on the top model derives the token roles of each forward pass
(``positions.roles_from_phase``) so hooks select positions by phase (prefill vs. decode), not by absolute index.

Layer convention (DESIGN.md): layer ℓ means HF ``hidden_states[ℓ]``: ℓ = 0 is the embedding output (the input
of block 0), ℓ = k the output of block k−1. A residual hook at layer ℓ ≥ 1 is a forward hook on block ℓ−1 and
at ℓ = 0 a forward pre-hook on block 0. For ℓ = L traitlab uses the raw output of the last block; HF's
``hidden_states[L]`` has the final norm applied on top of it.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from typing import Any

import torch
from torch import nn

from traitlab.errors import ConfigError, LayerError
from traitlab.model.family import Family, get_path
from traitlab.model.kvcache import input_cache
from traitlab.model.positions import Positions, roles_from_phase, select_positions

ResidualFn = Callable[[torch.Tensor, "ForwardState"], torch.Tensor]


class ForwardState:
    """Roles of the forward pass in flight, and the position masks derived from them (cached per mode)."""

    def __init__(self) -> None:
        self.roles: torch.Tensor | None = None
        self.explicit_roles: torch.Tensor | None = None
        self.rows: torch.Tensor | None = None  # the caller's row indices of the batch in flight, when chunked
        self.total_rows = 0
        self._masks: dict[str, torch.Tensor] = {}

    def set_roles(self, roles: torch.Tensor) -> None:
        self.roles = roles
        self._masks = {}

    def mask(self, positions: Positions) -> torch.Tensor:
        if self.roles is None:
            raise RuntimeError("traitlab hook ran outside a tracked forward pass")
        cached = self._masks.get(positions)
        if cached is None:
            cached = self._masks[positions] = select_positions(self.roles, positions)
        return cached


def _batch_shape(args: tuple[Any, ...], kwargs: dict[str, Any]) -> tuple[int, int]:
    ids = kwargs.get("input_ids", args[0] if args else None)
    if ids is not None:
        return tuple(ids.shape[:2])  # type: ignore[return-value]
    return tuple(kwargs["inputs_embeds"].shape[:2])  # type: ignore[return-value]


class HookEngine:
    """Hooks of one model. Use the context managers of ``traitlab.model.edits`` and ``.capture``; they call
    ``hook`` here, which registers on a module for the duration of a ``with`` block."""

    def __init__(self, model: nn.Module, family: Family) -> None:
        self.model = model
        self.family = family
        self.blocks: nn.ModuleList = get_path(model, family.layers)
        self.state = ForwardState()
        self._tracking = 0
        self._state_handle: torch.utils.hooks.RemovableHandle | None = None
        self.active_handles = 0

    @property
    def num_layers(self) -> int:
        return len(self.blocks)

    def check_layer(self, layer: int, allow_embedding: bool = True) -> int:
        low = 0 if allow_embedding else 1
        if not isinstance(layer, int) or not low <= layer <= self.num_layers:
            raise LayerError(f"layer {layer} is out of range: this model has layers {low}..{self.num_layers} "
                             "(ℓ = 0 is the embedding output, ℓ = k the output of block k−1)")
        return layer

    def block_part(self, layer_block: int, path: str) -> nn.Module:
        return get_path(self.blocks[layer_block], path)

    def _track_phase(self, module: nn.Module, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
        batch, seq = _batch_shape(args, kwargs)
        if self.state.explicit_roles is not None:
            roles = self.state.explicit_roles
            if tuple(roles.shape) != (batch, seq):
                raise ConfigError(f"explicit token roles have shape {tuple(roles.shape)} but the forward pass "
                                  f"has {(batch, seq)}")
            self.state.set_roles(roles)
            return
        cache = input_cache(kwargs)
        past = cache.get_seq_length() if cache is not None and hasattr(cache, "get_seq_length") else 0
        device = next(self.model.parameters()).device
        self.state.set_roles(roles_from_phase(kwargs.get("attention_mask"), (batch, seq), past, device))

    @contextlib.contextmanager
    def tracking(self) -> Iterator[None]:
        """Keep the phase-tracking pre-hook installed for the duration of the block (reference counted)."""
        if self._tracking == 0:
            self._state_handle = self.model.register_forward_pre_hook(self._track_phase, with_kwargs=True)
        self._tracking += 1
        try:
            yield
        finally:
            self._tracking -= 1
            if self._tracking == 0 and self._state_handle is not None:
                self._state_handle.remove()
                self._state_handle = None
                self.state.set_roles(None)  # type: ignore[arg-type]

    @contextlib.contextmanager
    def token_roles(self, roles: torch.Tensor) -> Iterator[None]:
        """Use explicit roles (``positions.PAD/PROMPT/RESPONSE``) for forwards in the block: teacher forcing."""
        previous = self.state.explicit_roles
        self.state.explicit_roles = roles
        try:
            yield
        finally:
            self.state.explicit_roles = previous

    @contextlib.contextmanager
    def hook(self, module: nn.Module, fn: Callable[..., Any], pre: bool = False) -> Iterator[None]:
        """Register ``fn`` as a forward (or pre-forward, with kwargs) hook on ``module`` for the block."""
        with self.tracking():
            handle = (module.register_forward_pre_hook(fn, with_kwargs=True) if pre
                      else module.register_forward_hook(fn))
            self.active_handles += 1
            try:
                yield
            finally:
                handle.remove()
                self.active_handles -= 1

    @contextlib.contextmanager
    def residual(self, layer: int, fn: ResidualFn) -> Iterator[None]:
        """Apply ``fn(hidden, state) -> hidden`` to the residual stream at layer ℓ (see module docstring)."""
        self.check_layer(layer)
        state = self.state
        if layer == 0:
            def pre_hook(module: nn.Module, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
                if args:
                    return (fn(args[0], state), *args[1:]), kwargs
                kwargs["hidden_states"] = fn(kwargs["hidden_states"], state)
                return args, kwargs

            with self.hook(self.blocks[0], pre_hook, pre=True):
                yield
            return

        def post_hook(module: nn.Module, args: tuple[Any, ...], output: Any) -> Any:
            if isinstance(output, tuple):
                return (fn(output[0], state), *output[1:])
            return fn(output, state)

        with self.hook(self.blocks[layer - 1], post_hook):
            yield

    def neuron_module(self, layer_block: int) -> nn.Module:
        """The activation module of block ``layer_block``'s MLP: its output is the neuron site."""
        return self.block_part(layer_block, self.family.act)


class StopForward(Exception):
    """Raised by a capture hook once the last needed layer ran, so a forward pass skips the rest."""



def engine_of(target: Any) -> HookEngine:
    """The hook engine of a ``LoadedModel`` (or the engine itself), so edits accept either."""
    return target.hooks if hasattr(target, "hooks") else target
