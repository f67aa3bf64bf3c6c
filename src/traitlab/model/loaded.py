"""``LoadedModel``: a causal LM with its tokenizer, family adapter, hook engine and fingerprint, and
``load_model`` to get one from a built-in name, a GGUF file, a local folder or a hub id."""

from __future__ import annotations

import contextlib
import os
import re
from collections.abc import Iterator, Mapping, Sequence
from importlib import resources
from pathlib import Path
from typing import Any

import torch
from torch import nn

from traitlab.errors import ConfigError, ModelLoadError
from traitlab.model.builtins import BUILTIN_MODELS, ORGANISM, builtin
from traitlab.model.chat import ChatRenderer, Conversation, conversations
from traitlab.model.family import Family, get_path, in_features, resolve_family
from traitlab.model.fingerprint import Fingerprint, compute_fingerprint
from traitlab.model.generation import Generation, SamplingParams, TokenCallback, generate_ids, stop_token_ids
from traitlab.model.gguf import builtin_folder, gguf_folder, single_gguf_in
from traitlab.model.hooks import HookEngine
from traitlab.model.quiet import library_quiet

_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")
DTYPES = {"float32": torch.float32, "fp32": torch.float32, "bfloat16": torch.bfloat16, "bf16": torch.bfloat16,
          "float16": torch.float16, "fp16": torch.float16}


class LoadedModel:
    """A model ready for traitlab: ``model``, ``tokenizer``, ``family``, ``hooks``, ``fingerprint``."""

    def __init__(self, model: nn.Module, tokenizer: Any, family: Family | Mapping[str, Any] | None = None,
                 spec: str = "<in-memory>", freeze: bool = True) -> None:
        self.model = model.eval().requires_grad_(False) if freeze else model
        self.tokenizer = tokenizer
        if tokenizer is not None and tokenizer.pad_token_id is None:
            tokenizer.pad_token = tokenizer.eos_token
        self.spec = spec
        self.family = resolve_family(model, self.config.model_type, family)
        self.hooks = HookEngine(model, self.family)
        self.fingerprint: Fingerprint = compute_fingerprint(model, self.family)
        self._renderer = ChatRenderer(tokenizer) if tokenizer is not None else None
        self.stop_ids = stop_token_ids(tokenizer, getattr(model, "generation_config", None)) \
            if tokenizer is not None else []
        self._system_stack: list[str] = []

    @property
    def renderer(self) -> ChatRenderer:
        if self._renderer is None:
            raise ConfigError("this model was wrapped without a tokenizer; pass one: traitlab.wrap(model, tokenizer)")
        return self._renderer

    @property
    def config(self) -> Any:
        return self.model.config.get_text_config()

    @property
    def num_layers(self) -> int:
        return self.hooks.num_layers

    @property
    def hidden_size(self) -> int:
        return int(self.config.hidden_size)

    @property
    def intermediate_size(self) -> int:
        return in_features(get_path(self.hooks.blocks[0], self.family.down))

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    @property
    def dtype(self) -> torch.dtype:
        return next(self.model.parameters()).dtype

    def describe(self) -> dict[str, Any]:
        """The family-table row and fingerprint, as printed by ``traitlab info``."""
        family = self.family
        return {
            "spec": self.spec, "model_type": self.config.model_type, "family": family.name,
            "layers": self.num_layers, "hidden_size": self.hidden_size,
            "intermediate_size": self.intermediate_size, "decoder_blocks": family.layers,
            "mlp": ", ".join(p for p in (family.gate, family.gate_up, family.up, family.down) if p),
            "activation": family.act, "attention_out": family.attn_out, "neuron_site": family.neuron_site,
            "chat_template": ("yes" if self.renderer.supports_system else "no system role")
            if self.renderer.has_template else "none (plain layout)",
            "dtype": str(self.dtype).removeprefix("torch."), "device": str(self.device),
            "fingerprint": self.fingerprint.weights_hash,
        }

    @contextlib.contextmanager
    def default_system(self, text: str) -> Iterator[None]:
        """Use ``text`` as the system prompt of chats that give none (how prompt Interventions apply)."""
        self._system_stack.append(text)
        try:
            yield
        finally:
            self._system_stack.pop()

    def render(self, prompts: Sequence[str | Conversation],
               system: str | Sequence[str | None] | None = None) -> list[str]:
        default = "\n\n".join(self._system_stack) or None
        return [self.renderer.render(c) for c in conversations(prompts, system, default)]

    def encode(self, texts: Sequence[str]) -> list[list[int]]:
        """Token ids of rendered prompts (the template already holds any BOS)."""
        self.renderer  # noqa: B018 (a clear error without a tokenizer)
        return [self.tokenizer(text, add_special_tokens=False)["input_ids"] for text in texts]

    def generate_chat(self, prompts: Sequence[str | Conversation],
                      system: str | Sequence[str | None] | None = None, *, max_new_tokens: int = 64,
                      temperature: float = 0.0, top_p: float = 1.0, top_k: int = 0, seed: int = 0,
                      batch_size: int = 32, on_token: TokenCallback | None = None,
                      progress: bool = True) -> Generation:
        """Batched chat generation; see ``traitlab.model.generation``."""
        params = SamplingParams(max_new_tokens, temperature, top_p, top_k, seed)
        if batch_size < 1:
            raise ConfigError(f"batch_size must be ≥ 1, got {batch_size}")
        prompt_ids = self.encode(self.render(prompts, system))
        responses, finished = generate_ids(self.model, self.hooks, prompt_ids, self.tokenizer.pad_token_id,
                                           self.stop_ids, params, on_token, batch_size, progress)
        texts = self.tokenizer.batch_decode(responses, skip_special_tokens=True)
        return Generation([t.strip() for t in texts], prompt_ids, responses, finished,
                          self.tokenizer.pad_token_id)

    def chat(self, message: str | Conversation, system: str | None = None, **generation: Any) -> str:
        """One reply to one message (or conversation)."""
        return self.generate_chat([message], system, progress=False, **generation).texts[0]


def wrap(model: nn.Module, tokenizer: Any = None, family: Family | Mapping[str, Any] | None = None
         ) -> LoadedModel:
    """Any loaded transformers causal LM (and its tokenizer) as a ``LoadedModel``, for the HF-first workflow::

        model = AutoModelForCausalLM.from_pretrained(...); tokenizer = AutoTokenizer.from_pretrained(...)
        lm = traitlab.wrap(model, tokenizer)

    The model is used as it is: not copied, not put in eval mode, its ``requires_grad`` flags untouched. The
    wrapper is kept on the model, so wrapping it again (``vector.apply(model)`` does) costs nothing; a tokenizer
    given later is added to it. Without a tokenizer, hooks and interventions work; chat and generation need one.
    """
    if isinstance(model, LoadedModel):
        return model
    if not isinstance(model, nn.Module) or not hasattr(model, "config"):
        raise ConfigError(f"traitlab.wrap takes a transformers model, got {type(model).__name__}")
    cached = model.__dict__.get("_traitlab_wrapper")
    if isinstance(cached, LoadedModel) and family is None:
        if tokenizer is not None and cached.tokenizer is not tokenizer:
            cached = LoadedModel.__new__(LoadedModel)
            cached.__dict__.update(model.__dict__["_traitlab_wrapper"].__dict__)
            cached.tokenizer = tokenizer
            if tokenizer.pad_token_id is None:
                tokenizer.pad_token = tokenizer.eos_token
            cached._renderer = ChatRenderer(tokenizer)
            cached.stop_ids = stop_token_ids(tokenizer, getattr(model, "generation_config", None))
            model.__dict__["_traitlab_wrapper"] = cached
        return cached
    spec = str(getattr(model.config, "name_or_path", "") or "<in-memory>")
    lm = LoadedModel(model, tokenizer, family, spec=spec, freeze=False)
    if family is None:
        model.__dict__["_traitlab_wrapper"] = lm
    return lm


def organism_path() -> Path:
    path = Path(str(resources.files("traitlab.organism"))) / "persona-tiny"
    if not (path / "config.json").is_file():
        raise ModelLoadError(f"the built-in organism is missing from {path}; train it with "
                             "`traitlab organism train --out` that folder")
    return path


def resolve_spec(spec: str) -> str:
    """A local HF folder or hub id for ``spec``: a built-in name (``traitlab models``), a ``.gguf`` file or a
    folder holding one (converted once into the cache, see ``traitlab.model.gguf``), a local model folder,
    or a hub id. Anything else is a clear error."""
    known = builtin(spec)
    if known is not None:
        return str(organism_path() if spec == ORGANISM else builtin_folder(known))
    path = Path(spec).expanduser()
    if path.is_file():
        if path.suffix.lower() != ".gguf":
            raise ModelLoadError(f"'{spec}' is a file but not a .gguf model; give a GGUF file or a model folder")
        return str(gguf_folder(path))
    if path.is_dir():
        if (path / "config.json").is_file():
            return str(path)
        gguf = single_gguf_in(path)
        if gguf is None:
            raise ModelLoadError(f"'{spec}' is not a model folder: it has no config.json and no .gguf file")
        return str(gguf_folder(gguf))
    if spec.startswith((".", "/", "~")) or not _HUB_ID.match(spec):
        names = ", ".join(BUILTIN_MODELS)
        raise ModelLoadError(f"model '{spec}' not found: give a built-in name ({names}), a .gguf file, a local "
                             "folder with config.json, or a hub id (org/name)")
    return spec


def _dtype(dtype: str | torch.dtype | None, device: str) -> torch.dtype | str:
    if dtype is None:
        return torch.float32 if device == "cpu" else "auto"
    if isinstance(dtype, torch.dtype) or dtype == "auto":
        return dtype
    if dtype not in DTYPES:
        raise ConfigError(f"unknown dtype '{dtype}'; use one of auto, {', '.join(DTYPES)}")
    return DTYPES[dtype]


def load_model(spec: str, dtype: str | torch.dtype | None = None, device: str | None = None,
               family: Family | Mapping[str, Any] | None = None) -> LoadedModel:
    """Load a causal LM and its tokenizer. The config and family are checked on the meta device before any
    weight is read. ``device='auto'`` spreads the model over GPUs with ``device_map='auto'``."""
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

    source = resolve_spec(spec)
    device = device or ("cuda" if torch.cuda.is_available() else "cpu")
    if device != "auto":
        try:
            torch.device(device)
        except (RuntimeError, ValueError):
            raise ConfigError(f"unknown device '{device}'; use cpu, cuda, cuda:N, mps or auto") from None
    torch_dtype = _dtype(dtype, device)
    # offline unless the user opts in: a hub id missing from the cache fails at once instead of retrying
    local = os.environ.get("TRAITLAB_ONLINE") != "1" or os.environ.get("HF_HUB_OFFLINE", "0") not in ("", "0")
    with library_quiet():
        try:
            config = AutoConfig.from_pretrained(source, local_files_only=local)
        except (OSError, ValueError, KeyError) as exc:
            if local and source == spec and not os.path.isdir(spec):
                raise ModelLoadError(f"model '{spec}' is not in the local Hugging Face cache and traitlab is "
                                     "offline; set TRAITLAB_ONLINE=1 (and unset HF_HUB_OFFLINE) to download it"
                                     ) from None
            raise ModelLoadError(f"could not read the config of '{spec}': {str(exc).splitlines()[0]}") from None
        with torch.device("meta"):
            skeleton = AutoModelForCausalLM.from_config(config)
        resolve_family(skeleton, config.get_text_config().model_type, family)
        del skeleton
        try:
            placement = {"device_map": "auto"} if device == "auto" else {}
            model = AutoModelForCausalLM.from_pretrained(source, dtype=torch_dtype, local_files_only=local,
                                                         **placement)
            tokenizer = AutoTokenizer.from_pretrained(source, local_files_only=local)
        except (OSError, ValueError) as exc:
            raise ModelLoadError(f"could not load '{spec}': {str(exc).splitlines()[0]}") from None
    if device != "auto":
        model = model.to(device)
    return LoadedModel(model, tokenizer, family, spec=spec)
