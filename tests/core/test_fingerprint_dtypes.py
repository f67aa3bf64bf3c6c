"""The fingerprint of one checkpoint is the same whether it is loaded in float32, bfloat16 or float16 (issue 26:
under float16 every artifact used to be refused), and fingerprints saved in the former (bf16-rounded) form still
match."""

from __future__ import annotations

import pytest

from traitlab.model import load_model
from traitlab.model.fingerprint import Fingerprint

DTYPES = ("float32", "bfloat16", "float16")


@pytest.mark.parametrize("spec", ["organism", "tiny"])
def test_one_fingerprint_across_dtypes(spec, model_dir):
    source = "traitlab/persona-tiny" if spec == "organism" else str(model_dir)
    hashes = {dtype: load_model(source, dtype=dtype, device="cpu").fingerprint for dtype in DTYPES}
    assert len({fp.weights_hash for fp in hashes.values()}) == 1, hashes
    assert not hashes["float16"].mismatches(hashes["float32"])


def test_a_legacy_fingerprint_still_matches_and_another_model_does_not(model_dir):
    now = load_model(str(model_dir), dtype="float32", device="cpu").fingerprint
    old = Fingerprint.from_dict({k: v for k, v in now.to_dict().items() if k != "legacy_hash"} |
                                {"weights_hash": now.legacy_hash})
    assert not old.mismatches(now)
    other = load_model("traitlab/persona-tiny", device="cpu").fingerprint
    assert other.mismatches(now)
