"""Supervised finetuning (SFT) of a ``LoadedModel`` on chat data, loss on assistant tokens only.

LoRA (Hu et al. 2022) through peft, merged back into plain weights after training, or full finetuning.
Preventative steering (Chen et al. 2025, §5.2): while training, add coef·v at the persona vector's layer on
all tokens, so the optimiser has no need to move the model along v; the returned model runs without it.
AdamW, linear warm-up then cosine decay, seeded data order and initialisation.

``precision``: "bf16" runs the forward and backward under ``torch.autocast(dtype=bfloat16)`` (mixed precision,
Micikevicius et al. 2018; bf16 needs no loss scaling): the matmuls run in bf16 while the master weights, the
LoRA weights, the gradients, the optimizer state and the merged weights stay float32 and the cross-entropy is
computed in float32. "auto" is bf16 where the hardware computes bf16 natively (a CUDA device with bf16, an x86
CPU with AVX512-BF16 or AMX, an ARM CPU with BF16) and float32 elsewhere, so it changes nothing on other
machines. ``lora_layers`` puts the adapters on those blocks only (peft's ``layers_to_transform``).
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import math
import platform
import warnings
from collections.abc import Sequence
from typing import Any, Literal

import torch

from traitlab.errors import ConfigError
from traitlab.finetune.data import tokenize_chats
from traitlab.interventions import Intervention
from traitlab.model import LoadedModel, pack
from traitlab.model.chat import Conversation
from traitlab.model.positions import RESPONSE
from traitlab.progress import track
from traitlab.validate import finite


@dataclasses.dataclass(frozen=True)
class FinetuneSettings:
    """Defaults follow common SFT practice; the personality-vector paper's are lr 5e-6 (Llama) / 1e-5 (Qwen),
    cosine, 3 epochs, for full finetuning of 7B models."""

    method: Literal["lora", "full"] = "lora"
    epochs: float = 1.0
    learning_rate: float = 2e-4
    batch_size: int = 8
    max_length: int = 256
    warmup_ratio: float = 0.05
    weight_decay: float = 0.0
    lora_r: int = 8
    lora_alpha: int = 16
    lora_dropout: float = 0.0
    target_modules: tuple[str, ...] | None = None
    seed: int = 0
    precision: Literal["auto", "fp32", "bf16"] = "fp32"
    lora_layers: tuple[int, ...] | None = None

    def __post_init__(self) -> None:
        if self.method not in ("lora", "full"):
            raise ConfigError(f"unknown finetuning method '{self.method}'; use lora or full")
        for name in ("epochs", "learning_rate", "warmup_ratio", "weight_decay", "lora_dropout"):
            finite(getattr(self, name), name)  # nan/inf never reach the optimizer
        if self.epochs <= 0 or self.learning_rate <= 0 or self.batch_size < 1:
            raise ConfigError("epochs, learning_rate and batch_size must be positive")
        if self.precision not in ("auto", "fp32", "bf16"):
            raise ConfigError(f"unknown precision '{self.precision}'; use auto, fp32 or bf16")
        if self.lora_layers is not None and (not self.lora_layers or min(self.lora_layers) < 0):
            raise ConfigError("lora_layers must list at least one block index, none negative")
        if self.lora_layers is not None and self.method != "lora":
            raise ConfigError("lora_layers needs method lora")


def native_bf16(device: torch.device | str) -> bool:
    """Whether ``device`` computes bfloat16 matmuls natively (not emulated): a CUDA device with bf16 (Ampere
    or newer), an x86 CPU with AVX512-BF16 or AMX, an ARM CPU with the BF16 extension."""
    device = torch.device(device)
    if device.type == "cuda":
        return torch.cuda.is_available() and torch.cuda.is_bf16_supported(including_emulation=False)
    if device.type != "cpu":
        return False
    if platform.machine().lower() in ("x86_64", "amd64", "i386", "i686"):
        # oneDNN's own bf16 check also says yes for plain AVX512, where it emulates bf16 (slower than fp32)
        return bool(torch.cpu._is_avx512_bf16_supported() or torch.cpu._is_amx_tile_supported())
    return bool(torch.backends.mkldnn.is_available() and torch.ops.mkldnn._is_mkldnn_bf16_supported())


def resolve_precision(precision: str, device: torch.device | str) -> Literal["fp32", "bf16"]:
    """``auto`` → "bf16" where ``native_bf16(device)``, else "fp32"; "fp32" and "bf16" as they are."""
    if precision == "auto":
        return "bf16" if native_bf16(device) else "fp32"
    if precision not in ("fp32", "bf16"):
        raise ConfigError(f"unknown precision '{precision}'; use auto, fp32 or bf16")
    return precision  # type: ignore[return-value]


def lora_model(model: torch.nn.Module, config: Any) -> Any:
    """``peft.get_peft_model(model, config)`` without the FutureWarning that peft's probe of the deprecated
    ``is_gradient_checkpointing`` attribute raises in transformers ≥ 5 (a warning the user did not cause)."""
    from peft import get_peft_model

    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*is_gradient_checkpointing.*", category=FutureWarning)
        return get_peft_model(model, config)


def _lora_targets(lm: LoadedModel, settings: FinetuneSettings) -> list[str]:
    if settings.target_modules:
        return list(settings.target_modules)
    from traitlab.model import linear_modules

    return sorted({name.rsplit(".", 1)[-1] for name in linear_modules(lm)})


def _batches(pairs: list[tuple[list[int], list[int]]], settings: FinetuneSettings) -> list[list[int]]:
    generator = torch.Generator().manual_seed(settings.seed)
    steps = max(1, math.ceil(len(pairs) * settings.epochs / settings.batch_size))
    order: list[int] = []
    while len(order) < steps * settings.batch_size:
        order += torch.randperm(len(pairs), generator=generator).tolist()
    return [order[i * settings.batch_size:(i + 1) * settings.batch_size] for i in range(steps)]


def finetune(lm: LoadedModel, conversations: Sequence[Conversation], settings: FinetuneSettings | None = None,
             steering: Intervention | None = None, progress: bool = True) -> LoadedModel:
    """Train a copy of ``lm`` on ``conversations``; ``lm`` itself is left unchanged. With ``steering``
    (e.g. ``persona_vector.at(positions='all').scaled(coef)``) the intervention is active during training only."""
    settings = settings or FinetuneSettings()
    if not conversations:
        raise ConfigError("finetuning needs at least one conversation")
    torch.manual_seed(settings.seed)
    model = copy.deepcopy(lm.model)
    if settings.method == "lora":
        from peft import LoraConfig

        layers = None
        if settings.lora_layers is not None:
            if max(settings.lora_layers) >= lm.num_layers:
                raise ConfigError(f"lora_layers {list(settings.lora_layers)} name a block past the model's "
                                  f"{lm.num_layers}")
            layers = sorted(set(settings.lora_layers))
        config = LoraConfig(r=settings.lora_r, lora_alpha=settings.lora_alpha, lora_dropout=settings.lora_dropout,
                            target_modules=_lora_targets(lm, settings), bias="none", layers_to_transform=layers,
                            layers_pattern=lm.family.layers.rsplit(".", 1)[-1] if layers else None)
        trainee = lora_model(model, config)
    else:
        trainee = model
    student = LoadedModel(model, lm.tokenizer, lm.family, spec=f"{lm.spec}+sft")  # freezes all parameters
    for name, parameter in trainee.named_parameters():
        parameter.requires_grad_(settings.method == "full" or "lora_" in name)
    pairs = tokenize_chats(lm, conversations, settings.max_length)
    batches = _batches(pairs, settings)
    parameters = [p for p in trainee.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(parameters, lr=settings.learning_rate, weight_decay=settings.weight_decay)
    warmup = max(1, int(settings.warmup_ratio * len(batches)))

    def schedule(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        return 0.5 * (1 + math.cos(math.pi * (step - warmup) / max(1, len(batches) - warmup)))

    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, schedule)
    bf16 = resolve_precision(settings.precision, lm.device) == "bf16"
    trainee.train()
    with steering.applied(student) if steering is not None else contextlib.nullcontext(), \
            student.hooks.tracking():
        for rows in track(batches, "finetuning", total=len(batches), enabled=progress):
            input_ids, attention_mask, roles = pack([pairs[i][0] for i in rows], [pairs[i][1] for i in rows],
                                                    lm.tokenizer.pad_token_id)
            input_ids, attention_mask = input_ids.to(lm.device), attention_mask.to(lm.device)
            position_ids = (attention_mask.cumsum(-1) - 1).clamp(min=0)
            with torch.autocast(lm.device.type, dtype=torch.bfloat16) if bf16 else contextlib.nullcontext():
                logits = trainee(input_ids=input_ids, attention_mask=attention_mask,
                                 position_ids=position_ids).logits
            targets = input_ids[:, 1:].masked_fill(roles[:, 1:].to(lm.device) != RESPONSE, -100)
            loss = torch.nn.functional.cross_entropy(logits[:, :-1].flatten(0, 1).float(), targets.flatten(),
                                                     ignore_index=-100)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(parameters, 1.0)
            optimizer.step()
            scheduler.step()
            optimizer.zero_grad(set_to_none=True)
    trainee.eval()
    if settings.method == "lora":
        model = trainee.merge_and_unload()
    for parameter in model.parameters():
        parameter.requires_grad_(False)
    return LoadedModel(model, lm.tokenizer, lm.family, spec=f"{lm.spec}+sft")
