"""The KV cache argument under the name the installed transformers wants.

transformers 5.x renamed the forward argument ``past_key_values`` to ``cache`` (and the output field with
it); passing the old name prints a FutureWarning on every call. These helpers use whichever the model's
``forward`` declares.
"""

from __future__ import annotations

import functools
import inspect
from typing import Any

from torch import nn


@functools.cache
def _cache_name(forward_type: type) -> str:
    parameters = inspect.signature(forward_type.forward).parameters
    return "cache" if "cache" in parameters else "past_key_values"


def cache_kwargs(model: nn.Module, cache: Any) -> dict[str, Any]:
    """``{name: cache}`` for the model's forward: ``cache=`` on current transformers, else
    ``past_key_values=``."""
    return {_cache_name(type(model)): cache}


def output_cache(output: Any) -> Any:
    """The KV cache a forward returned (``output.cache``, or ``output.past_key_values`` before the rename)."""
    cache = getattr(output, "cache", None)
    return cache if cache is not None else getattr(output, "past_key_values", None)


def input_cache(kwargs: dict[str, Any]) -> Any:
    """The KV cache passed to a forward, under either name (for forward pre-hooks)."""
    cache = kwargs.get("cache")
    return cache if cache is not None else kwargs.get("past_key_values")
