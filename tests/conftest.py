"""Shared fixtures: tiny random-init models of every family (cached per session)."""

from __future__ import annotations

import functools
import os
from pathlib import Path

import pytest
from transformers.utils import logging as hf_logging

from traitlab.model.tiny import tiny_model

hf_logging.set_verbosity_error()
SHARED_DATA = Path(os.environ.get("TRAITLAB_SHARED_DATA", Path(__file__).resolve().parents[2] / "shared" / "data"))


@functools.cache
def cached_tiny(family: str):
    return tiny_model(family)


@pytest.fixture
def llama():
    return cached_tiny("llama")


@pytest.fixture(scope="session")
def model_dir(tmp_path_factory):
    """A tiny random Llama saved as a model folder (read-only for the tests)."""
    from tests.helpers import save_model

    return save_model(tiny_model("llama"), tmp_path_factory.mktemp("tiny-llama"))


@pytest.fixture
def shared_data() -> Path:
    if not SHARED_DATA.is_dir():
        pytest.skip(f"shared data folder {SHARED_DATA} is absent")
    return SHARED_DATA
