"""Personality vectors (arXiv 2509.19727, "Personality Vector: Modulating Personality of Large Language Models
by Model Merging"): φ_p = θ_p − θ_base from a personality-finetuned model, applied as θ' = θ_base + α·φ_p
(α ≈ 0.1–2, negative to reverse), several at once with task arithmetic, TIES or DARE (``merge_math``), and
transferable to another model of the same architecture.

- ``vector_from_checkpoints`` / ``vector_from_lora`` stream φ to one artifact, tensor by tensor (for LoRA,
  ΔW = (α_lora / r)·B·A per target module, no cross terms); ``vector_from_models`` does it in memory.
- ``PersonalityVector`` is the Intervention: θ ← θ + scale·φ in place, restored bit-exactly on exit.
- ``merge_vectors`` merges in memory; ``merge_to_checkpoint`` runs a mergekit-style YAML config out of core:
  base tensors and vector tensors are read one at a time and written to a sharded HF checkpoint, so peak
  memory is one output shard plus a few tensors.
"""

from __future__ import annotations

import json
import math
import shutil
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

import torch
import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from safetensors import safe_open

from traitlab.checkpoints import CheckpointReader, PlannedShardedWriter, StreamingWriter, read_header, read_tensor
from traitlab.errors import ArtifactError, ConfigError, validation_message
from traitlab.interventions import artifact_header
from traitlab.methods.merge_math import Method, Rescale, merge_deltas
from traitlab.methods.weights import WeightDelta
from traitlab.model import LoadedModel
from traitlab.model.family import resolve_family
from traitlab.model.fingerprint import Fingerprint, fingerprint_from_tensors, fingerprint_names
from traitlab.model.loaded import resolve_spec
from traitlab.progress import track
from traitlab.validate import atomic_folder, output_folder, read_text


class PersonalityVector(WeightDelta):
    """φ per parameter; scale = α. ``transfer_to`` re-targets it at another model of the same shapes."""

    mechanism = "personality_vector"

    def transfer_to(self, lm: LoadedModel) -> PersonalityVector:
        """A copy for ``lm`` after checking every tensor's shape (personality-vector transfer)."""
        parameters = dict(lm.model.named_parameters())
        for name, delta in self.deltas.items():
            if name not in parameters:
                raise ArtifactError(f"cannot transfer {self.name}: the target model has no parameter {name}")
            if tuple(parameters[name].shape) != tuple(delta.shape):
                raise ArtifactError(f"cannot transfer {self.name}: {name} is {tuple(delta.shape)} in the vector "
                                    f"but {tuple(parameters[name].shape)} in the target model")
        twin = PersonalityVector(self.deltas, **{**self.common_kwargs(), "fingerprint": lm.fingerprint})
        twin.extra = {**self.extra, "transferred_from": self.fingerprint.to_dict() if self.fingerprint else None}
        return twin

    def params(self) -> dict[str, Any]:
        return {"parameters": len(self.deltas), "numel": sum(t.numel() for t in self.deltas.values())}


def vector_from_models(base: LoadedModel, tuned: LoadedModel, trait: str | None = None,
                       pole: str | None = None) -> PersonalityVector:
    """φ = θ_tuned − θ_base in memory (parameters that differ only; float32)."""
    tuned_params = dict(tuned.model.named_parameters())
    deltas = {}
    for name, parameter in base.model.named_parameters():
        delta = tuned_params[name].detach().float() - parameter.detach().float()
        if delta.any():
            deltas[name] = delta
    if not deltas:
        raise ConfigError("the tuned model equals the base model: no personality vector to take")
    return PersonalityVector(deltas, trait=trait, pole=pole, fingerprint=base.fingerprint,
                             extra={"tuned": tuned.spec})


def checkpoint_fingerprint(folder: str | Path, reader: CheckpointReader | None = None) -> Fingerprint:
    """The model fingerprint of a checkpoint folder, read from its tensors without loading the model."""
    from transformers import AutoConfig, AutoModelForCausalLM

    config = AutoConfig.from_pretrained(folder)
    with torch.device("meta"):
        skeleton = AutoModelForCausalLM.from_config(config)
    text = config.get_text_config()
    family = resolve_family(skeleton, text.model_type)
    layers = len(skeleton.get_submodule(family.layers))
    reader = reader or CheckpointReader(folder)
    names = fingerprint_names(family, layers)
    missing = [n for n in names if n not in reader.files]
    if missing:
        raise ConfigError(f"{folder} lacks {missing[0]}; cannot fingerprint it")
    return fingerprint_from_tensors(text.model_type, text.hidden_size, layers,
                                    tuple(reader.get(n) for n in names))  # type: ignore[arg-type]


def _metadata(trait: str | None, pole: str | None, fingerprint: Fingerprint, extra: dict[str, Any],
              count: int, numel: int) -> dict[str, str]:
    meta = artifact_header(PersonalityVector.mechanism, trait=trait, pole=pole, fingerprint=fingerprint,
                           params={"parameters": count, "numel": numel}, extra=extra)
    return {"traitlab": json.dumps(meta)}


def _write_vector(out: Path, items: list[tuple[str, torch.Size]], delta_of: Any, metadata: dict[str, str],
                  dtype: torch.dtype) -> Path:
    writer = StreamingWriter(out, [(name, dtype, shape) for name, shape in items], metadata)
    try:
        for name, _ in track(items, "writing the personality vector", total=len(items)):
            writer.write(name, delta_of(name).to(dtype))
        return writer.close()
    except BaseException:
        writer.abort()
        raise


def vector_from_checkpoints(base: str | Path, tuned: str | Path, out: str | Path, trait: str | None = None,
                            pole: str | None = None, dtype: torch.dtype = torch.float32) -> Path:
    """Stream φ = θ_tuned − θ_base into one artifact: every shared float tensor whose delta is not exactly zero.

    A LoRA finetune saved as a full checkpoint changes only the adapted modules; storing the other tensors'
    zeros made SmolLM2's vector 540 MB instead of the few MB LoRA touched. A skipped tensor is exactly θ_base
    in the tuned model, so applying or merging the smaller vector gives the same weights."""
    base_dir, tuned_dir = Path(resolve_spec(str(base))), Path(resolve_spec(str(tuned)))
    base_reader, tuned_reader = CheckpointReader(base_dir), CheckpointReader(tuned_dir)
    items = []
    for name in base_reader.files:
        if not base_reader.dtype(name).is_floating_point:
            continue
        if name not in tuned_reader.files:
            raise ArtifactError(f"{tuned} has no tensor {name}: not a finetune of {base}")
        if base_reader.shape(name) != tuned_reader.shape(name):
            raise ArtifactError(f"{name} has shape {tuned_reader.shape(name)} in {tuned} but "
                                f"{base_reader.shape(name)} in {base}")
        if torch.equal(tuned_reader.get(name).float(), base_reader.get(name).float()):
            continue
        items.append((name, torch.Size(base_reader.shape(name))))
    if not items:
        raise ConfigError(f"{tuned} equals {base}: no personality vector to take")
    fingerprint = checkpoint_fingerprint(base_dir, base_reader)
    meta = _metadata(trait, pole, fingerprint, {"base": str(base), "tuned": str(tuned)}, len(items),
                     sum(math.prod(s) for _, s in items))
    return _write_vector(Path(out), items, lambda n: tuned_reader.get(n).float() - base_reader.get(n).float(),
                         meta, dtype)


def vector_from_lora(base: str | Path, adapter: str | Path, out: str | Path, trait: str | None = None,
                     pole: str | None = None, dtype: torch.dtype = torch.float32) -> Path:
    """φ from a peft LoRA adapter folder: ΔW = s·B·A per target (s = α/r, or α/√r with rsLoRA); transposed for
    fan-in-fan-out layers (GPT-2 Conv1D)."""
    adapter_dir = Path(adapter)
    config_file, weights_file = adapter_dir / "adapter_config.json", adapter_dir / "adapter_model.safetensors"
    if not config_file.is_file() or not weights_file.is_file():
        raise ConfigError(f"{adapter} is not a LoRA adapter folder (adapter_config.json, adapter_model.safetensors)")
    config = json.loads(config_file.read_text())
    r, alpha = config["r"], config.get("lora_alpha", config["r"])
    scaling = alpha / math.sqrt(r) if config.get("use_rslora") else alpha / r
    base_dir = Path(resolve_spec(str(base)))
    base_reader = CheckpointReader(base_dir)
    pairs: dict[str, dict[str, str]] = {}
    with safe_open(str(weights_file), framework="pt") as handle:
        for key in handle.keys():  # noqa: SIM118
            if ".lora_A." in key or ".lora_B." in key:
                module = key.split(".lora_")[0].removeprefix("base_model.model.")
                pairs.setdefault(f"{module}.weight", {})["A" if ".lora_A." in key else "B"] = key
        items = []
        for name in pairs:
            if name not in base_reader.files:
                raise ArtifactError(f"the adapter targets {name}, which {base} does not have")
            items.append((name, torch.Size(base_reader.shape(name))))

        def delta_of(name: str) -> torch.Tensor:
            a, b = handle.get_tensor(pairs[name]["A"]).float(), handle.get_tensor(pairs[name]["B"]).float()
            delta = scaling * (b @ a)
            return delta.T if config.get("fan_in_fan_out") else delta

        meta = _metadata(trait, pole, checkpoint_fingerprint(base_dir, base_reader),
                         {"base": str(base), "lora": str(adapter), "scaling": scaling}, len(items),
                         sum(math.prod(s) for _, s in items))
        return _write_vector(Path(out), items, delta_of, meta, dtype)


def merge_vectors(parts: Sequence[tuple[PersonalityVector, float, float]], method: Method = "task_arithmetic",
                  seed: int = 0, normalize: bool | None = None, rescale: Rescale = "inverse",
                  lambda_: float = 1.0) -> PersonalityVector:
    """Merge ``(vector, weight α, density)`` parts in memory; the result applies at scale 1."""
    if not parts:
        raise ConfigError("merging needs at least one vector")
    first = parts[0][0]
    for vector, _, _ in parts[1:]:
        if first.fingerprint and vector.fingerprint and first.fingerprint.mismatches(vector.fingerprint):
            raise ArtifactError(f"{vector.name} was made for another base model than {first.name}")
    names = sorted(set().union(*(v.deltas for v, _, _ in parts)))
    merged = {}
    for name in names:
        shape = next(v.deltas[name].shape for v, _, _ in parts if name in v.deltas)
        deltas = [v.deltas[name] if name in v.deltas else torch.zeros(shape) for v, _, _ in parts]
        merged[name] = merge_deltas(deltas, [w for _, w, _ in parts], [d for _, _, d in parts], method, name, seed,
                                    normalize, rescale, lambda_)
    traits = [v.trait for v, _, _ in parts]
    return PersonalityVector(merged, trait="+".join(t or "?" for t in traits), fingerprint=first.fingerprint,
                             hyperparameters={"method": method, "weights": [w for _, w, _ in parts],
                                              "densities": [d for _, _, d in parts], "seed": seed,
                                              "normalize": normalize, "rescale": rescale, "lambda": lambda_})


class EntryParameters(BaseModel):
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)
    weight: float = 1.0
    density: float = Field(1.0, gt=0, le=1)


class MergeEntry(BaseModel):
    model_config = ConfigDict(extra="forbid")
    model: str
    parameters: EntryParameters = EntryParameters()


class GlobalParameters(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True, allow_inf_nan=False)
    lambda_: float = Field(1.0, alias="lambda")
    normalize: bool | None = None
    rescale: Literal["inverse", "l1", "none"] = "inverse"


class MergeConfig(BaseModel):
    """A mergekit-style merge: ``merge_method``, ``base_model``, ``models`` with ``parameters: {weight,
    density}``; each ``model`` is a personality-vector artifact or a finetuned model folder."""

    model_config = ConfigDict(extra="forbid")
    merge_method: Literal["task_arithmetic", "ties", "dare_linear", "dare_ties"]
    base_model: str
    models: list[MergeEntry] = Field(min_length=1)
    parameters: GlobalParameters = GlobalParameters()
    dtype: Literal["float32", "bfloat16", "float16"] | None = None
    seed: int = 0
    transfer: bool = False  # traitlab: vectors made on another model of the same shapes


def load_merge_config(path: str | Path) -> MergeConfig:
    """Parse and fully validate a merge YAML (paths included) before any tensor is read."""
    source = Path(path)
    if not source.is_file():
        raise ConfigError(f"merge config {source} not found")
    try:
        data = yaml.safe_load(read_text(source, "merge config"))
    except yaml.YAMLError as exc:
        raise ConfigError(f"{source} is not valid YAML: {str(exc).splitlines()[0]}") from None
    try:
        config = MergeConfig.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(f"invalid merge config {source}: {validation_message(exc)}") from None
    check_sources(config, base_folder=source.parent)
    return config


def _vector_header(path: Path) -> dict[str, Any] | None:
    try:
        with safe_open(str(path), framework="pt") as handle:
            meta = json.loads((handle.metadata() or {}).get("traitlab", "null") or "null")
    except Exception:  # not a safetensors file
        return None
    return meta


def check_sources(config: MergeConfig, base_folder: Path = Path(".")) -> None:
    """Every ``model`` must be a personality-vector artifact or a model folder; the base a model."""
    try:
        resolve_spec(config.base_model)
    except Exception as exc:
        raise ConfigError(f"base_model: {exc}") from None
    for index, entry in enumerate(config.models):
        path = Path(entry.model)
        if path.is_dir():
            if not (path / "config.json").is_file():
                raise ConfigError(f"models.{index}: {path} is a folder without config.json")
            continue
        if not path.is_file():
            raise ConfigError(f"models.{index}: {path} not found")
        meta = _vector_header(path)
        if not meta or meta.get("mechanism") != PersonalityVector.mechanism:
            raise ConfigError(f"models.{index}: {path} is not a personality-vector artifact")


class _DeltaSource:
    """Deltas of one merge entry, one tensor at a time (a vector artifact or a finetuned model folder). A vector
    must have been taken on the base model (same fingerprint) unless ``transfer``, where shapes are checked."""

    def __init__(self, model: str, base_fingerprint: Fingerprint, transfer: bool) -> None:
        path = Path(model)
        self.name = model
        if path.is_dir():
            self.tuned: CheckpointReader | None = CheckpointReader(path)
            self.vector = None
            return
        self.tuned = None
        meta = _vector_header(path) or {}
        made_for = Fingerprint.from_dict(meta["fingerprint"]) if meta.get("fingerprint") else None
        if made_for and not transfer and made_for.mismatches(base_fingerprint):
            differences = "; ".join(made_for.mismatches(base_fingerprint))
            raise ArtifactError(f"{model} was taken on another base model ({differences}); use transfer to "
                                "apply it to a model of the same architecture")
        self.vector_path = path
        self.vector_header = read_header(path)  # tensors are read with plain reads: no mapped pages in RSS
        self.vector_keys = set(self.vector_header) - {"__data_start__"}

    def delta(self, name: str, base_tensor: torch.Tensor) -> torch.Tensor:
        if self.tuned is not None:
            delta = self.tuned.get(name).float() - base_tensor.float()
        elif name in self.vector_keys:
            stored = read_tensor(self.vector_path, self.vector_header, name)
            if stored is None:
                with safe_open(str(self.vector_path), framework="pt") as handle:
                    stored = handle.get_tensor(name)
            delta = stored.float()
        else:
            return torch.zeros(base_tensor.shape)
        if delta.shape != base_tensor.shape:
            raise ArtifactError(f"{self.name}: {name} is {tuple(delta.shape)}, the base model's is "
                                f"{tuple(base_tensor.shape)}")
        return delta


def merge_to_checkpoint(config: MergeConfig, out: str | Path, shard_bytes: int = 2 * 1024**3) -> Path:
    """Run a merge out of core and write a plain HF checkpoint (config, tokenizer, sharded safetensors)."""
    target = output_folder(out)
    base_dir = Path(resolve_spec(config.base_model))
    base = CheckpointReader(base_dir)
    base_fingerprint = checkpoint_fingerprint(base_dir, base)
    sources = [_DeltaSource(entry.model, base_fingerprint, config.transfer) for entry in config.models]
    weights = [entry.parameters.weight for entry in config.models]
    densities = [entry.parameters.density for entry in config.models]
    out_dtype = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}.get(
        config.dtype or "")
    names = base.keys()
    entries = [(name, (out_dtype or base.dtype(name)) if base.dtype(name).is_floating_point else base.dtype(name),
                base.shape(name)) for name in names]
    with atomic_folder(target) as partial:  # a failure or Ctrl-C leaves nothing; a rerun starts clean
        writer = PlannedShardedWriter(partial, entries, shard_bytes)
        try:
            for name in track(names, "merging", total=len(names)):
                tensor = base.get(name)
                if tensor.is_floating_point():
                    mixed = merge_deltas([s.delta(name, tensor) for s in sources], weights, densities,
                                         config.merge_method, name, config.seed, config.parameters.normalize,
                                         config.parameters.rescale, config.parameters.lambda_)
                    tensor = mixed.add_(tensor.float()).to(out_dtype or tensor.dtype)
                writer.add(name, tensor)
                del tensor
            writer.close()
        except BaseException:
            writer.abort()
            raise
        for item in base_dir.iterdir():
            if item.is_file() and not item.name.endswith(".safetensors") and \
                    item.name != "model.safetensors.index.json":
                shutil.copy2(item, partial / item.name)
        (partial / "traitlab_merge.json").write_text(config.model_dump_json(indent=2, by_alias=True))
    return target


def load_vector(path: str | Path) -> PersonalityVector:
    return PersonalityVector.load(path, what="a personality vector")
