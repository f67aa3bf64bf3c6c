"""Interop for persona vectors.

- persona_vectors ``.pt`` files: one ``[L+1, d]`` tensor per variant, indexed like HF ``hidden_states``
  (their row L has the final norm applied, traitlab's is the raw residual — steer below L to be exact).
- GGUF control vectors (llama.cpp / repeng layout): ``general.architecture = controlvector``,
  ``controlvector.model_hint``, ``controlvector.layer_count``, and f32 tensors ``direction.k`` for k ≥ 1.
  ``direction.k`` is traitlab layer ℓ = k (HF ``hidden_states[k]``, the output of block k−1); llama.cpp has
  no direction for layer 0. Export multiplies by the intervention's scale, since the format has none.
- repeng-style arithmetic on artifacts: ``"2*a.tl.safetensors - 0.5*b.tl.safetensors"``.
"""

from __future__ import annotations

import re
from pathlib import Path

import torch

from traitlab.errors import ArtifactError, ConfigError
from traitlab.methods.persona_vectors import VARIANTS, PersonaVector
from traitlab.model import LoadedModel
from traitlab.validate import finite, finite_tensors, output_file


def read_pt(path: str | Path) -> torch.Tensor:
    """The tensor of a persona_vectors ``.pt`` file, checked (a 2-D finite float tensor) before any model loads."""
    source = Path(path)
    if not source.is_file():
        raise ArtifactError(f"persona vector file {source} not found")
    try:
        table = torch.load(source, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises many types for foreign files
        raise ArtifactError(f"{source} is not a readable torch tensor file ({type(exc).__name__})") from None
    if not isinstance(table, torch.Tensor) or table.dim() != 2 or not table.is_floating_point():
        shape = tuple(table.shape) if isinstance(table, torch.Tensor) else type(table).__name__
        raise ArtifactError(f"{source} holds {shape}; a persona_vectors file holds one [L+1, d] float tensor")
    finite_tensors({"vectors": table}, str(source))
    return table


def import_pt(path: str | Path, lm: LoadedModel, layer: int | None = None,
              variant: str = "response_avg", table: torch.Tensor | None = None) -> PersonaVector:
    """A persona_vectors ``[L+1, d]`` tensor file (or its ``table`` from ``read_pt``) as a ``PersonaVector``."""
    if variant not in VARIANTS:
        raise ConfigError(f"unknown variant '{variant}'; use one of {', '.join(VARIANTS)}")
    source = Path(path)
    if table is None:
        table = read_pt(source)
    expected = (lm.num_layers + 1, lm.hidden_size)
    if not isinstance(table, torch.Tensor) or tuple(table.shape) != expected:
        shape = tuple(table.shape) if isinstance(table, torch.Tensor) else type(table).__name__
        raise ArtifactError(f"{source} holds {shape}; this model needs a [L+1, d] = {list(expected)} tensor")
    chosen = layer if layer is not None else int(table[1:lm.num_layers].norm(dim=-1).argmax()) + 1
    lm.hooks.check_layer(chosen)
    return PersonaVector({variant: table.float()}, [chosen], variant, fingerprint=lm.fingerprint,
                         extra={"imported_from": source.name})


def export_gguf(vector: PersonaVector, path: str | Path, model_hint: str, all_layers: bool = False) -> Path:
    """Write ``scale · v_ℓ`` as a llama.cpp / repeng control vector (``direction.ℓ`` tensors, float32): for the
    steered layers, or with ``all_layers`` for every layer 1..L the vector holds (repeng's ControlVector shape;
    llama.cpp's ``--control-vector-layer-range`` then picks layers). llama.cpp adds the vector at every position
    of prompt and reply, whereas traitlab steers only ``vector.positions``."""
    import gguf
    import numpy as np

    target = output_file(path, "control vector")
    table = vector.directions[vector.variant]
    chosen = {layer: table[layer] for layer in range(1, table.shape[0]) if table[layer].any()} if all_layers \
        else dict(vector.vectors)
    finite_tensors({f"direction.{k}": vector.scale * v for k, v in chosen.items()}, f"refusing to write {target}")
    layers = sorted(layer for layer in chosen if layer >= 1)
    if not layers:
        raise ConfigError("GGUF control vectors have no layer 0; steer at a layer ≥ 1 (or use --all-layers)")
    writer = gguf.GGUFWriter(str(target), "controlvector")
    writer.add_string("controlvector.model_hint", model_hint)
    writer.add_uint32("controlvector.layer_count", vector.num_layers)
    for layer in layers:
        writer.add_tensor(f"direction.{layer}", (vector.scale * chosen[layer]).numpy().astype(np.float32))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return target


def read_gguf(path: str | Path) -> dict[int, torch.Tensor]:
    """The ``direction.N`` tensors of a GGUF control vector, checked (finite, at least one) before any model."""
    import gguf

    source = Path(path)
    if not source.is_file():
        raise ArtifactError(f"control vector {source} not found")
    try:
        reader = gguf.GGUFReader(str(source))
    except Exception as exc:  # the gguf reader raises ValueError/KeyError/struct.error on foreign files
        raise ArtifactError(f"{source} is not a readable GGUF file ({type(exc).__name__})") from None
    directions = {}
    for tensor in reader.tensors:
        match = re.fullmatch(r"direction\.(\d+)", tensor.name)
        if match:
            directions[int(match.group(1))] = torch.from_numpy(tensor.data.copy()).float().reshape(-1)
    if not directions:
        raise ArtifactError(f"{source} holds no direction.N tensors: not a control vector")
    finite_tensors({f"direction.{k}": v for k, v in directions.items()}, str(source))
    return directions


def import_gguf(path: str | Path, lm: LoadedModel, directions: dict[int, torch.Tensor] | None = None
                ) -> PersonaVector:
    """A GGUF control vector (or its ``read_gguf`` directions) as a ``PersonaVector`` steering at every layer
    the file names (scale 1)."""
    source = Path(path)
    if directions is None:
        directions = read_gguf(source)
    table = torch.zeros(lm.num_layers + 1, lm.hidden_size)
    layers = []
    for layer, data in directions.items():
        name = f"direction.{layer}"
        if not 1 <= layer <= lm.num_layers or data.numel() != lm.hidden_size:
            raise ArtifactError(f"{source}: {name} with {data.numel()} values does not fit this model "
                                f"(layers 1..{lm.num_layers}, hidden size {lm.hidden_size})")
        table[layer] = data
        layers.append(layer)
    return PersonaVector({"response_avg": table}, sorted(layers), fingerprint=lm.fingerprint,
                         extra={"imported_from": source.name})


_TERM = re.compile(r"^(?:(?P<coef>[0-9]*\.?[0-9]+(?:e-?[0-9]+)?)\s*\*\s*)?(?P<path>[^\s*]+)$")


def parse_expression(expression: str) -> list[tuple[float, str]]:
    """``"2*a - 0.5*b + c"`` → ``[(2, a), (-0.5, b), (1, c)]``; terms are separated by spaced + or −."""
    pieces = re.split(r"\s+([+-])\s+", " " + expression.strip())
    terms: list[tuple[float, str]] = []
    sign = 1.0
    first = pieces[0].strip()
    if first.startswith("-"):
        sign, first = -1.0, first[1:].strip()
    items = [(sign, first)] + [(1.0 if op == "+" else -1.0, term.strip()) for op, term in
                               zip(pieces[1::2], pieces[2::2], strict=True)]
    for sign, term in items:
        match = _TERM.match(term)
        if not match:
            raise ConfigError(f"cannot parse term '{term}' in '{expression}'; "
                              "write e.g. '2*a.safetensors - b.safetensors'")
        coef = finite(sign * float(match.group("coef") or 1.0), f"coefficient of {match.group('path')}")
        terms.append((coef, match.group("path")))
    return terms


def combine(expression: str) -> PersonaVector:
    """Σ cᵢ·vᵢ over persona-vector artifacts (all layers, the variants all hold; each term counts as it steers,
    its scale folded in), steering at the first term's layers: ``PersonaVector`` arithmetic on files."""
    terms = parse_expression(expression)
    total: PersonaVector | None = None
    for coef, path in terms:
        vector = PersonaVector.load(path, what="a persona vector (arithmetic needs persona vectors)")
        try:
            total = coef * vector if total is None else total + coef * vector
        except ArtifactError as exc:
            raise ArtifactError(f"{path}: {exc}") from None
    assert total is not None
    total.extra = {"expression": expression}
    return total
