"""Family table: where each architecture keeps its decoder blocks, MLP parts and attention output.

Keyed on ``config.model_type``. Unknown types get a structural guess; a user override (a ``Family`` or a dict of
its fields) wins over both. Module paths are dotted attribute paths from the top ``*ForCausalLM`` module (for
the list of blocks) or from one block (for everything inside it).

Neuron site (DESIGN.md): for gated MLPs the neuron activation is ``act_fn(gate_proj(x))`` (NPTI's σ(ĥW1)) and
the down-projection input is ``act_fn(gate(x)) * up(x)``; for non-gated MLPs (GPT-2, GPT-NeoX) the neuron is
the activation output. Either way the site is the output of the MLP's activation module, which is what
``Family.act`` names.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Mapping
from typing import Any

from torch import nn

from traitlab.errors import FamilyError


@dataclasses.dataclass(frozen=True)
class Family:
    """How to find the parts of one architecture.

    ``layers``: path of the ``ModuleList`` of decoder blocks from the top model.
    ``mlp``/``attn_out``/``act``/``down``: paths inside one block. ``gate``/``up`` are ``None`` where absent
    (``gate_up`` names a fused gate+up projection, Phi-3). ``final_norm`` and ``embed`` are top-level paths.
    """

    name: str
    layers: str
    mlp: str
    act: str
    down: str
    attn_out: str
    final_norm: str
    embed: str
    gate: str | None = None
    up: str | None = None
    gate_up: str | None = None

    @property
    def gated(self) -> bool:
        return self.gate is not None or self.gate_up is not None

    @property
    def neuron_site(self) -> str:
        if self.gated:
            return f"{self.act}(gate_proj(x)); down input = {self.act}(gate(x)) * up(x)"
        return f"{self.act} output (non-gated MLP)"


def _gated(name: str, prefix: str = "model", act: str = "mlp.act_fn", **kw: str) -> Family:
    fields = dict(
        name=name, layers=f"{prefix}.layers", mlp="mlp", act=act, gate="mlp.gate_proj", up="mlp.up_proj",
        down="mlp.down_proj", attn_out="self_attn.o_proj", final_norm=f"{prefix}.norm",
        embed=f"{prefix}.embed_tokens",
    )
    fields.update(kw)
    return Family(**fields)


FAMILY_TABLE: dict[str, Family] = {
    **{t: _gated(t) for t in (
        "llama", "mistral", "qwen2", "qwen3", "gemma", "gemma2", "gemma3_text", "olmo", "olmo2", "granite",
        "stablelm", "cohere", "smollm3",
    )},
    "phi3": _gated(
        "phi3", act="mlp.activation_fn", gate=None, up=None, gate_up="mlp.gate_up_proj",
    ),
    "gpt2": Family(
        name="gpt2", layers="transformer.h", mlp="mlp", act="mlp.act", down="mlp.c_proj",
        attn_out="attn.c_proj", final_norm="transformer.ln_f", embed="transformer.wte", up="mlp.c_fc",
    ),
    "gpt_neox": Family(
        name="gpt_neox", layers="gpt_neox.layers", mlp="mlp", act="mlp.act", down="mlp.dense_4h_to_h",
        attn_out="attention.dense", final_norm="gpt_neox.final_layer_norm", embed="gpt_neox.embed_in",
        up="mlp.dense_h_to_4h",
    ),
}


def get_path(root: nn.Module, path: str) -> nn.Module:
    """Resolve a dotted attribute path (``model.layers``) from ``root``."""
    module: Any = root
    for part in path.split("."):
        module = getattr(module, part)
    return module


def is_conv1d(module: nn.Module) -> bool:
    """transformers' ``Conv1D`` (GPT-2) stores its weight as ``[in, out]``; ``nn.Linear`` as ``[out, in]``."""
    return type(module).__name__ == "Conv1D"


def is_linear(module: nn.Module) -> bool:
    """A linear layer: ``nn.Linear`` or transformers' ``Conv1D``."""
    return isinstance(module, nn.Linear) or is_conv1d(module)


def in_features(module: nn.Module) -> int:
    """The input width of a linear layer, whichever layout its weight has."""
    weight: Any = module.weight
    return int(weight.shape[0] if is_conv1d(module) else weight.shape[1])


def _has(root: nn.Module, path: str | None) -> bool:
    if path is None:
        return True
    try:
        get_path(root, path)
    except (AttributeError, IndexError, KeyError, TypeError, ValueError):
        return False
    return True


def _largest_block_list(model: nn.Module) -> str | None:
    best: tuple[int, str] | None = None
    for name, module in model.named_modules():
        if isinstance(module, nn.ModuleList) and len(module) > 0:
            kinds = {type(child) for child in module}
            if len(kinds) == 1 and (best is None or len(module) > best[0]):
                best = (len(module), name)
    return best[1] if best else None


_GATE_UP = re.compile(r"gate_up(_proj)?$")
_GATE = re.compile(r"(gate_proj|w1|gate)$")
_UP = re.compile(r"(up_proj|w3|c_fc|fc1|fc_in|dense_h_to_4h|up)$")
_DOWN = re.compile(r"(down_proj|w2|c_proj|fc2|fc_out|dense_4h_to_h|down)$")
_ATTN_OUT = re.compile(r"(o_proj|out_proj|c_proj|dense|wo)$")
_ACT = re.compile(r"(act_fn|act|activation_fn|activation)$")


def _first_child(block: nn.Module, prefix: str, pattern: re.Pattern[str]) -> str | None:
    for name, _ in block.named_modules():
        if name.startswith(prefix + ".") and name.count(".") == prefix.count(".") + 1 and pattern.search(name):
            return name
    return None


def guess_family(model: nn.Module) -> Family | None:
    """Structural guess for an architecture missing from the table, or ``None`` when nothing fits."""
    layers = _largest_block_list(model)
    if layers is None:
        return None
    block = get_path(model, layers)[0]
    containers = [name for name, child in block.named_children() if any(True for _ in child.children())]
    mlp = next((n for n in containers if "mlp" in n or "feed_forward" in n or n == "ffn"), None)
    attn = next((n for n in containers if "attn" in n or "attention" in n), None)
    if mlp is None or attn is None:
        return None
    act = _first_child(block, mlp, _ACT)
    down = _first_child(block, mlp, _DOWN)
    gate = _first_child(block, mlp, _GATE)
    gate_up = _first_child(block, mlp, _GATE_UP)
    up = None if gate_up else _first_child(block, mlp, _UP)
    attn_out = _first_child(block, attn, _ATTN_OUT)
    base = layers.rsplit(".", 1)[0] if "." in layers else ""
    prefix = f"{base}." if base else ""
    norm = next((f"{prefix}{n}" for n in ("norm", "final_layer_norm", "ln_f", "final_layernorm")
                 if _has(model, f"{prefix}{n}")), None)
    embed = next((f"{prefix}{n}" for n in ("embed_tokens", "wte", "embed_in", "word_embeddings")
                  if _has(model, f"{prefix}{n}")), None)
    if None in (act, down, attn_out, norm, embed) or (gate is None and up is None and gate_up is None):
        return None
    return Family(name="guessed", layers=layers, mlp=mlp, act=act, down=down, attn_out=attn_out,
                  final_norm=norm, embed=embed, gate=gate, up=up, gate_up=gate_up)


def _missing_parts(model: nn.Module, family: Family) -> list[str]:
    if not _has(model, family.layers) or not isinstance(get_path(model, family.layers), nn.ModuleList):
        return [f"{family.layers} (a ModuleList of decoder blocks)"]
    block = get_path(model, family.layers)[0]
    inner = [family.mlp, family.act, family.down, family.attn_out, family.gate, family.up, family.gate_up]
    missing = [p for p in inner if not _has(block, p)]
    missing += [p for p in (family.final_norm, family.embed) if not _has(model, p)]
    return missing


def resolve_family(model: nn.Module, model_type: str, override: Family | Mapping[str, Any] | None = None) -> Family:
    """Pick the family for ``model``: the override, else the table entry, else the structural guess.

    Raises ``FamilyError`` naming the paths that were looked for when nothing fits.
    """
    if override is not None:
        family = override if isinstance(override, Family) else _family_from_mapping(override, model_type)
        source = "override"
    elif model_type in FAMILY_TABLE:
        family, source = FAMILY_TABLE[model_type], f"family table entry '{model_type}'"
    else:
        guessed = guess_family(model)
        if guessed is None:
            raise FamilyError(
                f"model_type '{model_type}' is not in the family table and its structure could not be guessed "
                "(looked for a ModuleList of decoder blocks with an mlp/attention child, an activation, "
                "gate/up and down projections, a final norm and token embeddings); pass a family override "
                "(--family JSON with layers, mlp, act, down, attn_out, final_norm, embed, gate/up)"
            )
        return guessed
    missing = _missing_parts(model, family)
    if missing:
        raise FamilyError(f"{source} does not match this '{model_type}' model: missing {', '.join(missing)}")
    return family


def _family_from_mapping(fields: Mapping[str, Any], model_type: str) -> Family:
    base = FAMILY_TABLE.get(model_type)
    merged = {**(dataclasses.asdict(base) if base else {"name": "override"}), **fields}
    known = {f.name for f in dataclasses.fields(Family)}
    unknown = set(merged) - known
    if unknown:
        raise FamilyError(f"unknown family override field(s): {', '.join(sorted(unknown))}")
    optional = {"gate", "up", "gate_up"}
    wrong = [k for k, v in merged.items() if not (isinstance(v, str) or (v is None and k in optional))]
    if wrong:
        raise FamilyError(f"family override field(s) {', '.join(sorted(wrong))} must be module paths (strings)")
    try:
        return Family(**merged)
    except TypeError as exc:
        raise FamilyError(f"family override is incomplete: {exc}") from None
