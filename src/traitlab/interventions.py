"""The Intervention protocol: one object per way of changing a model's behaviour for a trait.

Every mechanism (persona vectors, NPTI neurons, subnetwork masks, personality-vector deltas, prompts) produces
an ``Intervention`` that can be ``scaled(α)``, ``compose``d, ``save``d to one ``.safetensors`` file and
``applied(model)`` reversibly: runtime ones register hooks, weight-space ones edit weights in place and restore
them bit-exactly on exit.

Artifact format: a safetensors file whose ``__metadata__["traitlab"]`` is JSON with ``format_version``,
``mechanism``, ``scale``, ``trait``, ``pole``, ``hyperparameters``, ``layer_convention``, ``neuron_site``,
``fingerprint`` and mechanism-specific ``params``. Writes go to a temporary file renamed into place.

This module knows no mechanism but ``Composite``: the table from a mechanism name to its class, and loading an
artifact of any mechanism, live in ``traitlab.registry`` (above ``traitlab.methods``). ``Cls.load(path)`` loads
an artifact of one known mechanism.
"""

from __future__ import annotations

import abc
import contextlib
import copy
import json
import os
import tempfile
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any, ClassVar, Self

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import save_file

from traitlab.errors import ArtifactError, ConfigError
from traitlab.model.fingerprint import Fingerprint
from traitlab.model.loaded import LoadedModel, wrap
from traitlab.validate import finite, finite_tensors

FORMAT_VERSION = 1
LAYER_CONVENTION = ("layer l = HF hidden_states[l]: l=0 embedding output, l=k output of block k-1 "
                    "(raw residual; HF applies the final norm at l=L)")
Coef = float | torch.Tensor


class Intervention(abc.ABC):
    """A reversible, scalable change of a model's behaviour. Subclasses implement ``_apply``, ``tensors``,
    ``params`` and ``from_artifact``."""

    mechanism: ClassVar[str]
    weight_space: ClassVar[bool] = False

    def __init__(self, *, scale: float = 1.0, trait: str | None = None, pole: str | None = None,
                 hyperparameters: Mapping[str, Any] | None = None, fingerprint: Fingerprint | None = None,
                 neuron_site: str | None = None, extra: Mapping[str, Any] | None = None) -> None:
        self.scale = finite(scale, "scale")
        self.trait = trait
        self.pole = pole
        self.hyperparameters = dict(hyperparameters or {})
        self.fingerprint = fingerprint
        self.neuron_site = neuron_site
        self.extra = dict(extra or {})

    @property
    def name(self) -> str:
        label = "/".join(p for p in (self.trait, self.pole) if p) or "untitled"
        return f"{self.mechanism}:{label}"

    def scaled(self, alpha: float) -> Intervention:
        """A copy whose strength is multiplied by ``alpha`` (steering coefficient, γ, merge α, ...); a scale
        that is not finite is a ``ConfigError``."""
        twin = copy.copy(self)
        twin.scale = finite(self.scale * finite(alpha, f"scale of {self.name}"), f"scale of {self.name}")
        return twin

    @contextlib.contextmanager
    def applied(self, lm: LoadedModel, row_scale: torch.Tensor | None = None) -> Iterator[LoadedModel]:
        """Apply to ``lm`` for the ``with`` block. ``row_scale`` (``[batch]``) multiplies the scale per row of
        the batches generated inside (runtime interventions only)."""
        self.check_model(lm)
        coef: Coef = self.scale
        if row_scale is not None:
            if self.weight_space:
                raise ConfigError(f"{self.name} edits weights and cannot take per-row scales")
            coef = torch.as_tensor(row_scale, dtype=torch.float32) * self.scale
        with self._apply(lm, coef):
            yield lm

    def apply(self, model: Any, tokenizer: Any = None) -> contextlib.AbstractContextManager[LoadedModel]:
        """``with intervention.apply(model):`` on a plain transformers model (wrapped with ``traitlab.wrap``) or a
        ``LoadedModel``: the steering-vectors spelling of ``applied``, for code that holds an HF model."""
        return self.applied(wrap(model, tokenizer))

    def check_model(self, lm: LoadedModel) -> None:
        check_fingerprint(self.fingerprint, lm, self.name, "fit it again on this model")

    @abc.abstractmethod
    def _apply(self, lm: LoadedModel, coef: Coef) -> contextlib.AbstractContextManager[Any]:
        """Context manager that applies the intervention with strength ``coef`` (float or per-row tensor)."""

    @abc.abstractmethod
    def tensors(self) -> dict[str, torch.Tensor]:
        """Tensors to store in the artifact."""

    @abc.abstractmethod
    def params(self) -> dict[str, Any]:
        """JSON-serialisable mechanism-specific parameters (layers, positions, ...)."""

    @classmethod
    @abc.abstractmethod
    def from_artifact(cls, meta: dict[str, Any], tensors: dict[str, torch.Tensor]) -> Intervention:
        """Rebuild from ``metadata()`` and ``tensors()``."""

    @classmethod
    def rebuild(cls, meta: dict[str, Any], tensors: dict[str, torch.Tensor]) -> Self:
        """``from_artifact`` with corrupt metadata or tensors reported as ``ArtifactError``."""
        try:
            return cls.from_artifact(meta, tensors)  # type: ignore[return-value]
        except (KeyError, TypeError, ValueError, AttributeError, IndexError) as exc:
            raise ArtifactError(f"corrupt {cls.mechanism} artifact: {exc}") from None

    @classmethod
    def load(cls, path: str | os.PathLike[str], model: LoadedModel | None = None, what: str | None = None) -> Self:
        """Load an artifact that must hold this mechanism (``ConfigError`` naming the one it holds otherwise,
        and ``what`` was expected); with ``model``, check it was made for that model."""
        meta, tensors = read_artifact(path)
        if meta.get("mechanism") != cls.mechanism:
            expected = what or f"a {cls.mechanism} one"
            raise ConfigError(f"{path} is a {meta.get('mechanism')} artifact, not {expected}")
        intervention = cls.rebuild(meta, tensors)
        if model is not None:
            intervention.check_model(model)
        return intervention

    def common_kwargs(self) -> dict[str, Any]:
        return dict(scale=self.scale, trait=self.trait, pole=self.pole, hyperparameters=self.hyperparameters,
                    fingerprint=self.fingerprint, neuron_site=self.neuron_site, extra=self.extra)

    def metadata(self) -> dict[str, Any]:
        return artifact_header(self.mechanism, scale=self.scale, trait=self.trait, pole=self.pole,
                               hyperparameters=self.hyperparameters, neuron_site=self.neuron_site,
                               fingerprint=self.fingerprint, params=self.params(), extra=self.extra)

    def save(self, path: str | os.PathLike[str]) -> Path:
        """Write the artifact atomically (temporary file in the same folder, then rename)."""
        return write_artifact(path, self.tensors(), self.metadata())

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.name} scale={self.scale:g}>"


def artifact_header(mechanism: str, *, scale: float = 1.0, trait: str | None = None, pole: str | None = None,
                    hyperparameters: Mapping[str, Any] | None = None, neuron_site: str | None = None,
                    fingerprint: Fingerprint | None = None, params: Mapping[str, Any] | None = None,
                    extra: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """The ``traitlab`` metadata of an artifact (the one layout, also for artifacts streamed to disk)."""
    return {
        "format_version": FORMAT_VERSION, "mechanism": mechanism, "scale": scale, "trait": trait, "pole": pole,
        "hyperparameters": dict(hyperparameters or {}), "layer_convention": LAYER_CONVENTION,
        "neuron_site": neuron_site, "fingerprint": fingerprint.to_dict() if fingerprint else None,
        "params": dict(params or {}), "extra": dict(extra or {}),
    }


def check_fingerprint(fingerprint: Fingerprint | None, lm: LoadedModel, what: str, remedy: str) -> None:
    """Refuse ``lm`` when an artifact's fingerprint names another model (no fingerprint: nothing to check)."""
    if fingerprint is None:
        return
    differences = fingerprint.mismatches(lm.fingerprint)
    if differences:
        raise ArtifactError(f"{what} was made for another model ({'; '.join(differences)}); {remedy}")


def kwargs_from_meta(meta: dict[str, Any]) -> dict[str, Any]:
    """The ``Intervention.__init__`` keyword arguments stored in an artifact's metadata."""
    fingerprint = meta.get("fingerprint")
    return dict(scale=meta.get("scale", 1.0), trait=meta.get("trait"), pole=meta.get("pole"),
                hyperparameters=meta.get("hyperparameters"), neuron_site=meta.get("neuron_site"),
                fingerprint=Fingerprint.from_dict(fingerprint) if fingerprint else None, extra=meta.get("extra"))


def write_artifact(path: str | os.PathLike[str], tensors: Mapping[str, torch.Tensor],
                   metadata: Mapping[str, Any]) -> Path:
    target = Path(path)
    if not target.parent.is_dir():
        raise ArtifactError(f"cannot write {target}: folder {target.parent} does not exist")
    if target.is_dir():
        raise ArtifactError(f"cannot write {target}: it is a folder; give a file name")
    finite(metadata.get("scale", 1.0), f"scale of {target.name}", ArtifactError)
    finite_tensors(tensors, f"refusing to write {target}")
    contiguous = {name: t.detach().cpu().contiguous() for name, t in tensors.items()}
    handle, temporary = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    os.close(handle)
    try:
        save_file(contiguous, temporary, metadata={"traitlab": json.dumps(metadata)})
        os.replace(temporary, target)
    finally:
        if os.path.exists(temporary):
            os.unlink(temporary)
    return target


def read_artifact(path: str | os.PathLike[str]) -> tuple[dict[str, Any], dict[str, torch.Tensor]]:
    """Metadata and tensors of an artifact, with clear errors for missing, corrupt or foreign files."""
    source = Path(path)
    if not source.is_file():
        raise ArtifactError(f"artifact {source} not found")
    try:
        with safe_open(str(source), framework="pt") as handle:
            header = handle.metadata() or {}
            tensors = {name: handle.get_tensor(name) for name in handle.keys()}  # noqa: SIM118
    except (SafetensorError, OSError, ValueError) as exc:
        raise ArtifactError(f"{source} is not a readable safetensors artifact ({exc})") from None
    if "traitlab" not in header:
        raise ArtifactError(f"{source} is a safetensors file but not a traitlab artifact (no traitlab metadata)")
    try:
        meta = json.loads(header["traitlab"])
    except json.JSONDecodeError:
        raise ArtifactError(f"{source} has corrupt traitlab metadata") from None
    if not isinstance(meta, dict):
        raise ArtifactError(f"{source} has corrupt traitlab metadata (a JSON {type(meta).__name__}, not an object)")
    check_meta_numbers(meta, str(source))
    finite_tensors(tensors, str(source))
    version = meta.get("format_version")
    if not isinstance(version, int) or version > FORMAT_VERSION:
        raise ArtifactError(f"{source} has artifact format version {version}; this traitlab reads up to "
                            f"{FORMAT_VERSION}: upgrade traitlab")
    return meta, tensors


def parse_apply_spec(spec: str) -> tuple[str, float]:
    """``ARTIFACT[:SCALE]`` → (path, scale); a trailing ``:number`` is the scale, and a trailing ``:text`` after an
    existing artifact (or a ``.safetensors`` name) is a bad scale, not a missing file."""
    path, sep, tail = spec.rpartition(":")
    if sep and not Path(spec).exists():
        try:
            number = float(tail)
        except ValueError:
            if Path(path).exists() or path.endswith(".safetensors"):
                raise ConfigError(f"bad scale '{tail}' in --apply {spec}: not a number") from None
            return spec, 1.0
        return path, finite(number, f"scale '{tail}' in --apply {spec}")
    return spec, 1.0


def check_meta_numbers(meta: Mapping[str, Any], where: str) -> None:
    """Refuse an artifact whose scale (or a composite part's) is not a finite number."""
    finite(meta.get("scale", 1.0), f"{where}: scale", ArtifactError)
    parts = meta.get("params", {}).get("parts") if isinstance(meta.get("params"), dict) else None
    for i, part in enumerate(parts if isinstance(parts, list) else []):
        if isinstance(part, dict):
            check_meta_numbers(part, f"{where} part {i}")


class Composite(Intervention):
    """Several interventions applied together, in order; scaling scales all of them."""

    mechanism = "composite"

    def __init__(self, parts: Sequence[Intervention], **kwargs: Any) -> None:
        super().__init__(**kwargs)
        if not parts:
            raise ConfigError("compose needs at least one intervention")
        self.parts = list(parts)
        self.weight_space = any(p.weight_space for p in self.parts)  # type: ignore[misc]

    @property
    def name(self) -> str:
        return " + ".join(p.name for p in self.parts)

    def check_model(self, lm: LoadedModel) -> None:
        for part in self.parts:
            part.check_model(lm)

    @contextlib.contextmanager
    def _apply(self, lm: LoadedModel, coef: Coef) -> Iterator[None]:
        with contextlib.ExitStack() as stack:
            for part in self.parts:
                part_coef = coef * part.scale
                if isinstance(part_coef, torch.Tensor) and part.weight_space:
                    raise ConfigError(f"{part.name} edits weights and cannot take per-row scales")
                stack.enter_context(part._apply(lm, part_coef))
            yield

    def tensors(self) -> dict[str, torch.Tensor]:
        return {f"{i}/{name}": t for i, part in enumerate(self.parts) for name, t in part.tensors().items()}

    def params(self) -> dict[str, Any]:
        return {"parts": [part.metadata() for part in self.parts]}

    @classmethod
    def from_artifact(cls, meta: dict[str, Any], tensors: dict[str, torch.Tensor],
                      load_part: Callable[[dict[str, Any], dict[str, torch.Tensor]], Intervention] | None = None
                      ) -> Intervention:
        """The parts are rebuilt by ``load_part`` (``traitlab.registry.from_artifact``, which knows every
        mechanism)."""
        if load_part is None:
            raise ArtifactError("a composite artifact is loaded through traitlab.registry.load_intervention")
        parts = []
        for i, part_meta in enumerate(meta["params"]["parts"]):
            prefix = f"{i}/"
            own = {k[len(prefix):]: t for k, t in tensors.items() if k.startswith(prefix)}
            parts.append(load_part(part_meta, own))
        return cls(parts, **kwargs_from_meta(meta))


def compose(parts: Sequence[Intervention]) -> Composite:
    """Stack interventions; a prompt intervention is just one more part."""
    return Composite(parts)
