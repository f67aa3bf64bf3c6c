"""Supervised finetuning on chat data (LoRA or full), with optional preventative steering."""

from traitlab.finetune.data import load_chat_jsonl, tokenize_chats
from traitlab.finetune.sft import FinetuneSettings, finetune

__all__ = ["FinetuneSettings", "finetune", "load_chat_jsonl", "tokenize_chats"]
