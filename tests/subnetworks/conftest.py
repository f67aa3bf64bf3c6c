"""Fixtures of the persona-subnetwork tests."""

from __future__ import annotations

import pytest

from tests.subnetworks.helpers import SMALL_SPEC
from traitlab.progress import set_quiet
from traitlab.traits import TraitSpec


@pytest.fixture(autouse=True)
def _quiet():
    set_quiet(True)
    yield
    set_quiet(False)


@pytest.fixture
def small_spec() -> TraitSpec:
    return TraitSpec.model_validate(SMALL_SPEC)
