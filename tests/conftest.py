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


def require_builtin(name: str) -> None:
    """Skip with the install command when a built-in model's package is absent (CI installs them)."""
    from traitlab.model.builtins import BUILTIN_MODELS

    model = BUILTIN_MODELS[name]
    if not model.installed():
        pytest.skip(f"{name} is not installed: {model.install_command}")


@pytest.fixture(scope="session")
def smollm2():
    """SmolLM2-135M-Instruct from its PyPI package, loaded once per test session (read-only for the tests)."""
    from traitlab.model import load_model

    require_builtin("smollm2-135m-instruct")
    return load_model("smollm2-135m-instruct", device="cpu")


@pytest.fixture
def shared_data() -> Path:
    if not SHARED_DATA.is_dir():
        pytest.skip(f"shared data folder {SHARED_DATA} is absent")
    return SHARED_DATA
