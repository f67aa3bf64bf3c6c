"""Silence the libraries traitlab calls: transformers' logger and progress bars, Python warnings.

Nothing the user did not cause is printed. ``traitlab --verbose`` (``traitlab.progress.set_verbose``) lets
everything through, for debugging a load.
"""

from __future__ import annotations

import contextlib
import warnings
from collections.abc import Iterator

from traitlab.progress import is_verbose


@contextlib.contextmanager
def library_quiet() -> Iterator[None]:
    """Within the block: transformers logs errors only and shows no progress bar, and warnings are ignored;
    everything is restored afterwards."""
    if is_verbose():
        yield
        return
    from transformers.utils import logging as hf_logging

    verbosity, bars = hf_logging.get_verbosity(), hf_logging.is_progress_bar_enabled()
    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield
    finally:
        hf_logging.set_verbosity(verbosity)
        if bars:
            hf_logging.enable_progress_bar()
