"""Batch-invariant decoding: what makes a request's greedy output independent of the batch it is decoded in.

On CPU, a batched forward is not bit-identical per row to the same row alone, for two reasons, both handled
here while the serving engine decodes (``BatchInvariance.decoding``):

1. **Matrix products.** MKL picks different kernels for small row counts (and splits rows over threads), so
   a row's ``x @ W`` can differ in the last bit between a batch of 1, 3 or 8 rows. Every ``nn.Linear`` (and
   transformers' ``Conv1D``) gets its input padded with zero rows up to a multiple of ``row_bucket`` (8) and
   the output sliced back; measured on MKL fp32 (1–8 threads): row results agree for every multiple of 4
   and every count ≥ 12, and are independent of the row's position.
2. **Attention over left padding.** Attending over a padded key axis reorders the reduction. A decode step
   instead attends each row over exactly its own keys (``rowwise`` attention: one attention call per row on
   the unpadded suffix of the cache), the same call a row alone makes.

Prefill runs one request at a time (no padding, shapes depend on that request only), so it is invariant too.
Outside ``decoding`` the model behaves exactly as before (the attention falls through to the original
implementation, the Linear hooks do nothing).

Also here: KV-cache surgery for continuous batching (``merge_caches``, ``select_rows``), for caches whose layers
are plain ``DynamicLayer``s (sliding-window or other cache layouts are reported by ``mergeable``).
"""

from __future__ import annotations

import contextlib
import sys
import threading
from collections.abc import Iterator, Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from traitlab.model.family import is_linear

ROWWISE = "traitlab_rowwise"
_local = threading.local()


def _decode_lengths() -> list[int] | None:
    return getattr(_local, "lengths", None)


def _bucket() -> int:
    return getattr(_local, "bucket", 0)


def rowwise_attention(module: nn.Module, query: torch.Tensor, key: torch.Tensor, value: torch.Tensor,
                      attention_mask: torch.Tensor | None, **kwargs: Any) -> tuple[torch.Tensor, Any]:
    """Attention that, during a serving decode step, attends each row over its own unpadded keys; otherwise
    the model's original attention implementation."""
    from transformers.integrations.sdpa_attention import sdpa_attention_forward

    base = _base_attention(module)
    lengths = _decode_lengths()
    if lengths is None or query.shape[2] != 1 or len(lengths) != query.shape[0]:
        return base(module, query, key, value, attention_mask, **kwargs)
    window = kwargs.get("sliding_window")
    if window:
        lengths = [min(n, int(window)) for n in lengths]
    plain = all(kwargs.get(k) is None for k in ("softcap", "position_bias", "s_aux", "sinks"))
    if base is sdpa_attention_forward and plain and not kwargs.get("output_attentions"):
        return _rows_sdpa(query, key, value, lengths, kwargs.get("scaling")), None
    outputs = []
    for row, length in enumerate(lengths):
        out, _ = base(module, query[row:row + 1], key[row:row + 1, :, -length:].contiguous(),
                      value[row:row + 1, :, -length:].contiguous(), None, **kwargs)
        outputs.append(out)
    return torch.cat(outputs, dim=0), None


def _rows_sdpa(query: torch.Tensor, key: torch.Tensor, value: torch.Tensor, lengths: Sequence[int],
               scaling: float | None) -> torch.Tensor:
    """One query token per row attending its own last ``lengths[row]`` keys; grouped-query heads are packed
    onto their key/value head (transformers' ``pack_gqa``). Returns ``[batch, 1, heads, head_dim]``."""
    heads = query.shape[1]
    kv_heads, dim_v = key.shape[1], value.shape[-1]
    outputs = []
    for row, length in enumerate(lengths):
        q = query[row:row + 1]
        if kv_heads != heads:
            q = q.reshape(1, kv_heads, heads // kv_heads, q.shape[-1])
        out = F.scaled_dot_product_attention(q, key[row:row + 1, :, -length:].contiguous(),
                                             value[row:row + 1, :, -length:].contiguous(), scale=scaling)
        outputs.append(out.reshape(1, heads, 1, dim_v))
    return torch.cat(outputs, dim=0).transpose(1, 2).contiguous()


def _base_attention(module: nn.Module) -> Any:
    """The attention function the model used before ``install`` (its modeling file's eager one for eager)."""
    from transformers.modeling_utils import ALL_ATTENTION_FUNCTIONS

    name = getattr(module.config, "_traitlab_base_attn", "sdpa")
    if name in ALL_ATTENTION_FUNCTIONS:
        return ALL_ATTENTION_FUNCTIONS[name]
    eager = getattr(sys.modules.get(type(module).__module__), "eager_attention_forward", None)
    if eager is None:
        from transformers.models.llama.modeling_llama import eager_attention_forward as eager
    return eager


def _register_attention(base: str) -> str:
    """Register the row-wise attention under a name of its own per base implementation, whose masks are the
    base's (an eager base wants additive float masks, sdpa boolean ones)."""
    from transformers.masking_utils import ALL_MASK_ATTENTION_FUNCTIONS
    from transformers.modeling_utils import ALL_ATTENTION_FUNCTIONS

    name = f"{ROWWISE}_{base}"
    if name not in ALL_ATTENTION_FUNCTIONS:
        ALL_ATTENTION_FUNCTIONS.register(name, rowwise_attention)
    mask = ALL_MASK_ATTENTION_FUNCTIONS._global_mapping.get(base)
    if mask is not None and name not in ALL_MASK_ATTENTION_FUNCTIONS:
        ALL_MASK_ATTENTION_FUNCTIONS.register(name, mask)
    return name


def _pad_rows(module: nn.Module, args: tuple[Any, ...]) -> tuple[Any, ...] | None:
    bucket = _bucket()
    if not bucket or not args:
        return None
    x = args[0]
    rows = x.shape[0]
    padded = -(-rows // bucket) * bucket
    if padded == rows:
        return None
    module._traitlab_rows = rows
    filler = x.new_zeros((padded - rows, *x.shape[1:]))
    return (torch.cat([x, filler], dim=0), *args[1:])


def _slice_rows(module: nn.Module, args: tuple[Any, ...], output: torch.Tensor) -> torch.Tensor | None:
    rows = getattr(module, "_traitlab_rows", None)
    if rows is None:
        return None
    module._traitlab_rows = None
    return output[:rows]


class BatchInvariance:
    """Installs the row-wise attention and the Linear row padding on a model (``install``/``remove``); the
    ``decoding`` context switches them on for one decode forward of the calling thread."""

    def __init__(self, model: nn.Module, row_bucket: int = 8) -> None:
        self.model = model
        self.row_bucket = row_bucket
        self._handles: list[Any] = []
        self._configs: list[tuple[Any, str | None]] = []

    def install(self) -> None:
        for config in _configs(self.model):
            current = getattr(config, "_attn_implementation", None)
            if current is not None and current.startswith(ROWWISE):
                continue
            self._configs.append((config, current))
            config._traitlab_base_attn = current or "eager"
        for config, _ in self._configs:
            config._attn_implementation = _register_attention(config._traitlab_base_attn)
        for module in self.model.modules():
            if is_linear(module):
                self._handles.append(module.register_forward_pre_hook(_pad_rows))
                self._handles.append(module.register_forward_hook(_slice_rows))

    def remove(self) -> None:
        for handle in self._handles:
            handle.remove()
        self._handles.clear()
        for config, original in reversed(self._configs):
            config._attn_implementation = original
        self._configs.clear()

    @contextlib.contextmanager
    def decoding(self, lengths: Sequence[int]) -> Iterator[None]:
        """Within the block, forwards of this thread are decode steps whose rows hold ``lengths`` valid keys
        (the new token included)."""
        _local.lengths, _local.bucket = list(lengths), self.row_bucket
        try:
            yield
        finally:
            _local.lengths, _local.bucket = None, 0


def _configs(model: nn.Module) -> list[Any]:
    """The model's config and every sub-config that carries an attention implementation (seen once each)."""
    seen: dict[int, Any] = {}
    for module in model.modules():
        config = getattr(module, "config", None)
        if config is not None and hasattr(config, "_attn_implementation") and id(config) not in seen:
            seen[id(config)] = config
    return list(seen.values())


def mergeable(cache: Any) -> bool:
    """Whether ``merge_caches``/``select_rows`` can handle this cache: every layer a plain ``DynamicLayer``."""
    from transformers.cache_utils import DynamicLayer

    layers = getattr(cache, "layers", None)
    return bool(layers) and all(type(layer) is DynamicLayer for layer in layers)


def cache_width(cache: Any) -> int:
    return int(cache.layers[0].keys.shape[-2])


def merge_caches(batch: Any | None, new: Any) -> Any:
    """Append the rows of cache ``new`` to ``batch`` (both left-aligned to a common width by left padding).
    Returns the merged cache (``new`` itself when ``batch`` is ``None``)."""
    if batch is None:
        return new
    width_b, width_n = cache_width(batch), cache_width(new)
    width = max(width_b, width_n)
    for target, source in zip(batch.layers, new.layers, strict=True):
        keys = [_left_pad(target.keys, width - width_b), _left_pad(source.keys, width - width_n)]
        values = [_left_pad(target.values, width - width_b), _left_pad(source.values, width - width_n)]
        target.keys, target.values = torch.cat(keys, dim=0), torch.cat(values, dim=0)
    return batch


def select_rows(cache: Any, keep: Sequence[int], drop_columns: int = 0) -> None:
    """Keep only rows ``keep`` of the cache and drop its first ``drop_columns`` (all-padding) columns."""
    index = torch.as_tensor(list(keep), dtype=torch.long, device=cache.layers[0].keys.device)
    for layer in cache.layers:
        layer.keys = layer.keys.index_select(0, index)[:, :, drop_columns:]
        layer.values = layer.values.index_select(0, index)[:, :, drop_columns:]


def _left_pad(t: torch.Tensor, columns: int) -> torch.Tensor:
    return F.pad(t, (0, 0, columns, 0)) if columns else t
