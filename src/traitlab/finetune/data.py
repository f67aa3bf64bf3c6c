"""Chat JSONL for finetuning: one ``{"messages": [...]}`` per line, ending with an assistant turn. Tokenised as
the rendered prompt (chat template with generation prompt) followed by the reply and an end-of-turn token;
the loss covers reply tokens only."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from traitlab.errors import ConfigError
from traitlab.model import LoadedModel
from traitlab.model.chat import Conversation, check_conversation
from traitlab.readers import read_jsonl


def load_chat_jsonl(path: str | Path) -> list[Conversation]:
    source = Path(path)
    conversations = []
    for number, row in read_jsonl(source, "chat data"):
        messages = row.get("messages") if isinstance(row, dict) else None
        if not isinstance(messages, list) or not messages or not isinstance(messages[-1], dict) \
                or messages[-1].get("role") != "assistant":
            raise ConfigError(f"{source}:{number} needs a 'messages' list ending with an assistant turn")
        conversations.append(check_conversation(messages, f"{source}:{number}"))
    if not conversations:
        raise ConfigError(f"chat data {source} is empty")
    return conversations


def tokenize_chats(lm: LoadedModel, conversations: Sequence[Conversation],
                   max_length: int = 512) -> list[tuple[list[int], list[int]]]:
    """``(prompt_ids, reply_ids)`` per conversation; the reply ends with the end-of-turn token and the pair
    is cut to ``max_length`` tokens from the reply's end."""
    prompts = lm.encode(lm.render([c[:-1] for c in conversations]))
    eos = lm.tokenizer.eos_token_id
    pairs = []
    for prompt, conversation in zip(prompts, conversations, strict=True):
        reply = lm.tokenizer(conversation[-1]["content"], add_special_tokens=False)["input_ids"] + [eos]
        overflow = len(prompt) + len(reply) - max_length
        if overflow > 0:
            reply = reply[: max(1, len(reply) - overflow)]
            prompt = prompt[max(0, len(prompt) + len(reply) - max_length):]
        pairs.append((prompt, reply))
    return pairs
