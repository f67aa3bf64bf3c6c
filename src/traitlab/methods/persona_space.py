"""Persona space and the Assistant Axis (Lu et al. 2026, "The Assistant Axis", Anthropic-style persona space).

For each role r of a role set (a system prompt: professions, characters, moods, archetypes, and the model's own
default assistant), the model answers a shared set of neutral questions; the role's vector at layer ℓ is the
mean residual activation over the reply tokens, m_r,ℓ (``persona_vectors.row_activations``, every layer, one
batched generation with per-row system prompts). Then, per layer:

- **PCA**: X = M − mean_r(M) (rows: roles), X = U S Vᵀ (``torch.linalg.svd``); the components are the rows of
  Vᵀ, the variance explained S²/ΣS², each role's coordinates X·Vᵀ[:k]ᵀ. Each component's sign is chosen so that
  the default assistant's coordinate is ≥ 0, so PC1 points towards the assistant when it separates it.
- **Assistant Axis**: a_ℓ = m_default,ℓ − mean_{r ≠ default} m_r,ℓ, the direction from the mean of the roles
  towards the default assistant (the paper's contrast vector). Its cosine with PC1 says whether the leading
  component of persona space *is* the assistant axis on this model (the paper finds it is on 27B–70B models).
- **The default assistant's range**: the projections h·â_ℓ of every reply token of the default assistant, kept
  so that a capping range at any percentile needs no model run (``percentile``).

Capping (``methods.axis_capping``) and the drift monitor (``monitor.axis``) use the axis a_ℓ, not PC1: the
axis is anchored on the default assistant by construction (its sign and what "towards the assistant" means
do not depend on how the other roles happen to spread), while PC1 is only the largest spread among the roles,
which on a small model can be something else (reply length, a mood cluster).

The persona-space artifact is a traitlab safetensors file (mechanism ``persona_space``, model fingerprint in the
metadata); it is data, not an Intervention: ``traitlab axis cap`` turns it into an ``AxisCapping`` one.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from traitlab.errors import ArtifactError, ConfigError, LayerError
from traitlab.interventions import (
    FORMAT_VERSION,
    LAYER_CONVENTION,
    check_fingerprint,
    read_artifact,
    write_artifact,
)
from traitlab.methods.persona_vectors import row_activations
from traitlab.model.capture import capture_residual, teacher_forced
from traitlab.model.fingerprint import Fingerprint
from traitlab.model.loaded import LoadedModel

MECHANISM = "persona_space"
ROLES_FILE = Path(__file__).resolve().parent.parent / "roles" / "roles.json"
CONVERSATIONS_FILE = ROLES_FILE.with_name("conversations.json")
MIN_ROLES = 3
MAX_COMPONENTS = 20


@dataclasses.dataclass(frozen=True)
class Role:
    name: str
    category: str
    system: str | None  # None: the model's own default system prompt (SmolLM2's template inserts one)


@dataclasses.dataclass(frozen=True)
class RoleSet:
    roles: list[Role]
    questions: list[str]
    default: str

    @property
    def names(self) -> list[str]:
        return [r.name for r in self.roles]

    @property
    def default_index(self) -> int:
        return self.names.index(self.default)


def _read_json(path: Path, what: str) -> Any:
    if not path.is_file():
        raise ConfigError(f"{what} file {path} not found")
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{what} file {path} is not valid JSON: {exc}") from None


def load_roles(path: str | os.PathLike[str] | None = None) -> RoleSet:
    """Read and validate a roles file: ``{"default": NAME, "roles": [{"name", "category"?, "system"}],
    "questions": [...]}``; ``system: null`` is the model's own default system prompt. The shipped set (written
    by this project: 75 roles, 8 questions) by default."""
    source = ROLES_FILE if path is None else Path(path).expanduser()
    data = _read_json(source, "roles")
    if not isinstance(data, dict) or not isinstance(data.get("roles"), list):
        raise ConfigError(f"roles file {source} must be a JSON object with a 'roles' list")
    roles, seen = [], set()
    for i, entry in enumerate(data["roles"]):
        if not isinstance(entry, dict) or not isinstance(entry.get("name"), str) or not entry["name"].strip():
            raise ConfigError(f"roles file {source}: role {i} needs a non-empty 'name'")
        name = entry["name"].strip()
        system = entry.get("system")
        if system is not None and (not isinstance(system, str) or not system.strip()):
            raise ConfigError(f"roles file {source}: role '{name}' has a 'system' that is not text (or null)")
        if name in seen:
            raise ConfigError(f"roles file {source}: role '{name}' is given twice")
        seen.add(name)
        roles.append(Role(name, str(entry.get("category", "role")), system))
    if len(roles) < MIN_ROLES:
        raise ConfigError(f"roles file {source} has {len(roles)} roles; persona space needs at least {MIN_ROLES} "
                          "(the default assistant and two others)")
    questions = data.get("questions")
    if (not isinstance(questions, list) or not questions
            or not all(isinstance(q, str) and q.strip() for q in questions)):
        raise ConfigError(f"roles file {source} needs a non-empty 'questions' list of texts")
    default = data.get("default", "assistant")
    if default not in seen:
        raise ConfigError(f"roles file {source}: the default role '{default}' is not among its roles")
    return RoleSet(roles, [q.strip() for q in questions], default)


def load_conversations(path: str | os.PathLike[str] | None = None) -> dict[str, list[list[str]]]:
    """The drift benchmark: ``{"types": {TYPE: [[user turn, ...], ...]}}`` (the shipped set by default)."""
    source = CONVERSATIONS_FILE if path is None else Path(path).expanduser()
    data = _read_json(source, "conversations")
    types = data.get("types") if isinstance(data, dict) else None
    if not isinstance(types, dict) or not types:
        raise ConfigError(f"conversations file {source} must be a JSON object with a non-empty 'types' map")
    for name, convs in types.items():
        if (not isinstance(convs, list) or not convs or not all(
                isinstance(c, list) and c and all(isinstance(t, str) and t.strip() for t in c) for c in convs)):
            raise ConfigError(f"conversations file {source}: type '{name}' must be a list of lists of user turns")
    return types


@dataclasses.dataclass
class PersonaSpace:
    """Per layer ℓ = 0..L (HF hidden_states convention): the role mean, PCA components, variance explained,
    role coordinates, the Assistant Axis, and the default assistant's per-token projections on it."""

    names: list[str]
    categories: list[str]
    default: str
    layer: int                     # the layer ``show``, capping and the monitor use unless told otherwise
    role_means: torch.Tensor       # [R, L+1, d]
    mean: torch.Tensor             # [L+1, d]  mean over roles
    components: torch.Tensor       # [L+1, K, d]
    variance: torch.Tensor         # [L+1, K]  fraction of the roles' variance explained
    coordinates: torch.Tensor      # [L+1, R, K]
    axis: torch.Tensor             # [L+1, d]  m_default − mean of the other roles
    default_projections: torch.Tensor  # [L+1, N] h·â_ℓ of the default assistant's reply tokens
    fingerprint: Fingerprint | None = None
    settings: dict[str, Any] = dataclasses.field(default_factory=dict)

    @property
    def num_layers(self) -> int:
        return self.mean.shape[0] - 1

    @property
    def default_index(self) -> int:
        return self.names.index(self.default)

    def check_layer(self, layer: int) -> int:
        if not isinstance(layer, int) or not 0 <= layer <= self.num_layers:
            raise LayerError(f"layer {layer} is out of range: this persona space has layers 0..{self.num_layers}")
        return layer

    def unit_axis(self, layer: int) -> torch.Tensor:
        a = self.axis[self.check_layer(layer)]
        return a / a.norm().clamp(min=1e-12)

    def axis_pc1_cosine(self, layer: int) -> float:
        return float(self.unit_axis(layer) @ self.components[layer, 0])

    def role_projections(self, layer: int) -> torch.Tensor:
        """``[R]`` projection of each role's mean on the unit axis, relative to the roles' mean."""
        return (self.role_means[:, layer] - self.mean[layer]) @ self.unit_axis(layer)

    def percentile(self, layer: int, q: float) -> float:
        """The q-th percentile (0–100) of the default assistant's per-token projections on â_ℓ."""
        if not 0 <= q <= 100 or math.isnan(q):
            raise ConfigError(f"percentile {q} must be within 0..100")
        return float(torch.quantile(self.default_projections[self.check_layer(layer)].double(), q / 100))

    def default_stats(self, layer: int) -> tuple[float, float]:
        """Mean and standard deviation of the default assistant's per-token projections at ``layer``."""
        p = self.default_projections[self.check_layer(layer)].double()
        return float(p.mean()), float(p.std()) if p.numel() > 1 else 0.0

    def check_model(self, lm: LoadedModel) -> None:
        check_fingerprint(self.fingerprint, lm, "this persona space", "build it again on this model")

    def save(self, path: str | os.PathLike[str]) -> Path:
        meta = {"format_version": FORMAT_VERSION, "mechanism": MECHANISM, "layer_convention": LAYER_CONVENTION,
                "fingerprint": self.fingerprint.to_dict() if self.fingerprint else None,
                "params": {"names": self.names, "categories": self.categories, "default": self.default,
                           "layer": self.layer, "settings": self.settings}}
        tensors = {"role_means": self.role_means, "mean": self.mean, "components": self.components,
                   "variance": self.variance, "coordinates": self.coordinates, "axis": self.axis,
                   "default_projections": self.default_projections}
        return write_artifact(path, tensors, meta)

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> PersonaSpace:
        meta, tensors = read_artifact(path)
        if meta.get("mechanism") != MECHANISM:
            raise ArtifactError(f"{path} is a {meta.get('mechanism')} artifact, not a persona space "
                                "(make one with `traitlab axis build`)")
        try:
            params = meta["params"]
            fp = meta.get("fingerprint")
            space = cls(list(params["names"]), list(params["categories"]), params["default"], int(params["layer"]),
                        *(tensors[k] for k in ("role_means", "mean", "components", "variance", "coordinates",
                                               "axis", "default_projections")),
                        fingerprint=Fingerprint.from_dict(fp) if fp else None, settings=params.get("settings", {}))
        except (KeyError, TypeError, ValueError) as exc:
            raise ArtifactError(f"corrupt persona-space artifact {path}: {exc}") from None
        return space


def fit_space(role_means: torch.Tensor, names: Sequence[str], default: str, categories: Sequence[str] | None = None,
              layer: int | None = None, components: int = MAX_COMPONENTS,
              default_tokens: Sequence[torch.Tensor] | None = None) -> PersonaSpace:
    """PCA and Assistant Axis of role vectors ``[R, L+1, d]`` (or ``[R, d]``: one layer). ``default_tokens``:
    per layer, the default assistant's per-token activations ``[N, d]`` (their projections on the axis set
    the capping range); without them the default role's mean stands in."""
    means = torch.as_tensor(role_means).double()
    if means.dim() == 2:
        means = means.unsqueeze(1)
    if means.dim() != 3:
        raise ConfigError(f"role vectors have shape {tuple(means.shape)}; expected [roles, layers, d]")
    if not torch.isfinite(means).all():
        raise ConfigError("role vectors contain NaN or infinite values (a role with no reply tokens?)")
    names = list(names)
    if len(names) != means.shape[0] or len(set(names)) != len(names):
        raise ConfigError("one unique name per role vector is needed")
    if len(names) < MIN_ROLES:
        raise ConfigError(f"persona space needs at least {MIN_ROLES} roles, got {len(names)}")
    if default not in names:
        raise ConfigError(f"the default role '{default}' is not among the roles")
    d_index = names.index(default)
    n_layers = means.shape[1]
    layer = n_layers // 2 if layer is None else layer
    if not 0 <= layer < n_layers:
        raise LayerError(f"layer {layer} is out of range 0..{n_layers - 1}")
    k = max(1, min(components, len(names) - 1, means.shape[2]))
    mean = means.mean(0)                                           # [L+1, d]
    centred = (means - mean).transpose(0, 1)                       # [L+1, R, d]
    _, s, vh = torch.linalg.svd(centred, full_matrices=False)      # s [L+1, R], vh [L+1, R, d]
    comps = vh[:, :k]
    coords = centred @ comps.transpose(1, 2)                       # [L+1, R, k]
    sign = torch.where(coords[:, d_index] < 0, -1.0, 1.0).double()  # default assistant on the + side
    comps, coords = comps * sign.unsqueeze(-1), coords * sign.unsqueeze(1)
    total = (s ** 2).sum(-1, keepdim=True).clamp(min=1e-30)
    variance = (s[:, :k] ** 2) / total
    others = [i for i in range(len(names)) if i != d_index]
    axis = means[d_index] - means[others].mean(0)                  # [L+1, d]
    unit = axis / axis.norm(dim=-1, keepdim=True).clamp(min=1e-30)
    if default_tokens is None:
        projections = (means[d_index] * unit).sum(-1, keepdim=True)
    else:
        projections = torch.stack([torch.as_tensor(t).double() @ unit[i] for i, t in enumerate(default_tokens)])
    return PersonaSpace(names, list(categories or ["role"] * len(names)), default, layer, means.float(),
                        mean.float(), comps.float(), variance.float(), coords.float(), axis.float(),
                        projections.float())


def role_generation(lm: LoadedModel, roleset: RoleSet, max_new_tokens: int = 48, temperature: float = 0.0,
                    seed: int = 0, batch_size: int = 64, progress: bool = True) -> Any:
    """Every role × question in one batched ``generate_chat`` with per-row system prompts (row r·Q + q)."""
    prompts = [q for _ in roleset.roles for q in roleset.questions]
    systems = [r.system for r in roleset.roles for _ in roleset.questions]
    return lm.generate_chat(prompts, systems, max_new_tokens=max_new_tokens, temperature=temperature, seed=seed,
                            batch_size=batch_size, progress=progress)


def build(lm: LoadedModel, roleset: RoleSet, layer: int | None = None, max_new_tokens: int = 48,
          temperature: float = 0.0, seed: int = 0, batch_size: int = 64, progress: bool = True,
          components: int = MAX_COMPONENTS) -> tuple[PersonaSpace, Any]:
    """Generate, capture (every layer, mean over reply tokens), fit. Returns the space and the generation."""
    if layer is not None:
        lm.hooks.check_layer(layer)
    generation = role_generation(lm, roleset, max_new_tokens, temperature, seed, batch_size, progress)
    n_q = len(roleset.questions)
    acts = row_activations(lm, generation, range(len(generation.texts)), batch_size)["response_avg"]
    acts = acts.reshape(len(roleset.roles), n_q, *acts.shape[1:]).double()
    valid = torch.isfinite(acts).all(-1).all(-1)                    # rows with at least one reply token
    empty = [roleset.roles[i].name for i in range(len(roleset.roles)) if not valid[i].any()]
    if empty:
        raise ConfigError(f"roles {', '.join(empty)} produced no reply tokens; raise --max-new-tokens")
    weights = valid.double().unsqueeze(-1).unsqueeze(-1)
    role_means = torch.nan_to_num(acts).mul(weights).sum(1) / weights.sum(1)
    d_index = roleset.default_index
    rows = [d_index * n_q + q for q in range(n_q)]
    tokens = default_reply_tokens(lm, generation, rows)
    space = fit_space(role_means, roleset.names, roleset.default, [r.category for r in roleset.roles],
                      layer if layer is not None else lm.num_layers // 2, components, tokens)
    space.fingerprint = lm.fingerprint
    space.settings = {"questions": roleset.questions, "max_new_tokens": max_new_tokens,
                      "temperature": temperature, "seed": seed,
                      "systems": {r.name: r.system for r in roleset.roles}}
    return space, generation


def default_reply_tokens(lm: LoadedModel, generation: Any, rows: Sequence[int]) -> list[torch.Tensor]:
    """Per layer 0..L, the residual of every reply token of ``rows`` (``[N, d]``), from one teacher-forced pass."""
    layers = list(range(lm.num_layers + 1))
    input_ids, attention_mask, roles = (t.to(lm.device) for t in generation.batch(list(rows)))
    with capture_residual(lm, layers, "response", keep_tokens=True) as capture:
        teacher_forced(lm, input_ids, attention_mask, roles)
    out = []
    for layer in layers:
        hidden, mask = capture.tokens(layer)
        out.append(hidden[mask].double().cpu())
    return out


def cosine_table(vectors: dict[str, torch.Tensor]) -> tuple[list[str], torch.Tensor]:
    """Names and the ``[n, n]`` cosine matrix of named vectors."""
    names = list(vectors)
    m = torch.stack([torch.as_tensor(vectors[n]).double() for n in names])
    m = m / m.norm(dim=-1, keepdim=True).clamp(min=1e-30)
    return names, m @ m.T
