"""Chat prompt rendering through the tokenizer's chat template.

Templates with no system role (Gemma's, say) get the system text folded into the first user turn, with one
warning per model. Tokenizers with no chat template (base models) get a plain ``System:/User:/Assistant:``
layout, also with one warning.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from typing import Any

from traitlab.errors import ConfigError

Message = dict[str, str]
Conversation = list[Message]
PLAIN_ROLES = {"system": "System", "user": "User", "assistant": "Assistant"}
_MARKER = "\u2063traitlab-system-probe\u2063"


class ChatRenderer:
    """Turns conversations into prompt strings that end where the assistant's reply begins."""

    def __init__(self, tokenizer: Any) -> None:
        self.tokenizer = tokenizer
        self.has_template = bool(getattr(tokenizer, "chat_template", None))
        self.supports_system = self.has_template and self._probe_system()
        self._warned: set[str] = set()

    def _probe_system(self) -> bool:
        probe = [{"role": "system", "content": _MARKER}, {"role": "user", "content": "hi"}]
        try:
            return _MARKER in self.tokenizer.apply_chat_template(probe, add_generation_prompt=True, tokenize=False)
        except Exception:  # templates signal an unsupported system role by raising
            return False

    def _warn_once(self, key: str, message: str) -> None:
        if key not in self._warned:
            self._warned.add(key)
            warnings.warn(message, stacklevel=3)

    def render(self, conversation: Conversation) -> str:
        messages = check_conversation(conversation)
        if not self.has_template:
            self._warn_once("plain", "the tokenizer has no chat template; using a plain System/User/Assistant layout")
            lines = [f"{PLAIN_ROLES[m['role']]}: {m['content']}" for m in messages]
            return "\n".join(lines) + "\nAssistant:"
        if messages[0]["role"] == "system" and not self.supports_system:
            self._warn_once("fold", "the chat template has no system role; system text is folded into the "
                                    "first user turn")
            system, rest = messages[0]["content"], messages[1:]
            if rest and rest[0]["role"] == "user":
                rest = [{"role": "user", "content": f"{system}\n\n{rest[0]['content']}"}, *rest[1:]]
            else:
                rest = [{"role": "user", "content": system}, *rest]
            messages = rest
        return self.tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)


def check_conversation(conversation: Any, where: str = "") -> Conversation:
    """``conversation`` if it is a non-empty list of ``{role: system|user|assistant, content: str}`` messages;
    otherwise a ConfigError (prefixed with ``where``, e.g. ``file:line``)."""
    prefix = f"{where}: " if where else ""
    if not isinstance(conversation, list) or not conversation:
        raise ConfigError(f"{prefix}a conversation needs at least one message")
    for message in conversation:
        if not isinstance(message, dict) or message.get("role") not in PLAIN_ROLES or not isinstance(
                message.get("content"), str):
            raise ConfigError(f"{prefix}malformed chat message {str(message)[:80]!r}: needs role "
                              "system|user|assistant and string content")
    return conversation


def conversations(prompts: Sequence[str | Conversation], system: str | Sequence[str | None] | None,
                  default_system: str | None = None) -> list[Conversation]:
    """Build one conversation per prompt. A prompt is a user message or a whole conversation; ``system`` is
    one text for all, one per prompt, or ``None`` (then ``default_system``, set by a prompt Intervention)."""
    if isinstance(prompts, str):
        raise ConfigError("prompts must be a list of messages or conversations, not one string")
    if system is None or isinstance(system, str):
        systems: list[str | None] = [system if system is not None else default_system] * len(prompts)
    else:
        systems = list(system)
        if len(systems) != len(prompts):
            raise ConfigError(f"{len(systems)} system prompts for {len(prompts)} prompts")
    result = []
    for prompt, sys_text in zip(prompts, systems, strict=True):
        turns = [{"role": "user", "content": prompt}] if isinstance(prompt, str) else list(prompt)
        if sys_text and not (turns and turns[0].get("role") == "system"):
            turns = [{"role": "system", "content": sys_text}, *turns]
        result.append(turns)
    return result
