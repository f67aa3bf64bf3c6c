"""Request and response models of the server: OpenAI's chat-completions shapes plus traitlab's extensions
(``persona`` on requests, ``persona_monitor`` on responses and stream chunks, ``ignore_eos`` as in vLLM).

Unknown request fields are ignored (OpenAI clients send optional fields this server does not use); values of
known fields are validated (a malformed request or malformed JSON is a 400 JSON error naming the field).
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

MAX_STOP = 4
MAX_STOP_CHARS = 64


class TextPart(BaseModel):
    model_config = ConfigDict(extra="ignore")

    type: Literal["text"]
    text: str


class ChatMessage(BaseModel):
    model_config = ConfigDict(extra="ignore")

    role: Literal["system", "developer", "user", "assistant"]
    content: str | list[TextPart] | None = None
    name: str | None = None

    def to_turn(self) -> dict[str, str]:
        """A traitlab conversation turn (``developer`` is the system role; text parts are joined)."""
        content = self.content
        text = "".join(p.text for p in content) if isinstance(content, list) else (content or "")
        return {"role": "system" if self.role == "developer" else self.role, "content": text}


class StreamOptions(BaseModel):
    model_config = ConfigDict(extra="ignore")

    include_usage: bool = False


def _unicode(value: Any, where: str) -> None:
    """Refuse strings JSON can carry but UTF-8 cannot (lone surrogates such as ``"\\ud800"``): the tokenizer
    would fail on them mid-request."""
    if isinstance(value, str):
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            raise ValueError(f"{where} is not valid Unicode text (a lone surrogate)") from None
    elif isinstance(value, dict):
        for key, item in value.items():
            _unicode(key, f"{where} key")
            _unicode(item, f"{where}.{key}")
    elif isinstance(value, list):
        for index, item in enumerate(value):
            _unicode(item, f"{where}.{index}")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="ignore", allow_inf_nan=False)

    @model_validator(mode="before")
    @classmethod
    def _valid_unicode(cls, data: Any) -> Any:
        if isinstance(data, dict):
            for key, value in data.items():
                _unicode(value, str(key))
        return data


class ChatCompletionRequest(_Strict):
    """``POST /v1/chat/completions``."""

    model: str | None = None
    messages: list[ChatMessage] = Field(min_length=1)
    temperature: float = Field(1.0, ge=0.0, le=2.0)
    top_p: float = Field(1.0, gt=0.0, le=1.0)
    max_tokens: int | None = Field(None, ge=1)
    max_completion_tokens: int | None = Field(None, ge=1)
    n: int = Field(1, ge=1)
    seed: int | None = Field(None, ge=-(2**63), le=2**64 - 1)
    stop: str | list[str] | None = None
    stream: bool = False
    stream_options: StreamOptions | None = None
    logprobs: bool = False
    top_logprobs: int | None = Field(None, ge=0, le=20)
    persona: dict[str, float] | None = Field(
        None, description="traitlab extension: scale per loaded persona name, e.g. {\"extraversion\": 1.2}")
    ignore_eos: bool = Field(False, description="vLLM extension: keep generating past end-of-turn tokens")
    user: str | None = None

    @field_validator("stop")
    @classmethod
    def _stops(cls, value: str | list[str] | None) -> list[str]:
        stops = [value] if isinstance(value, str) else list(value or [])
        if len(stops) > MAX_STOP:
            raise ValueError(f"at most {MAX_STOP} stop sequences")
        if any(not s or len(s) > MAX_STOP_CHARS for s in stops):
            raise ValueError(f"stop sequences must be 1 to {MAX_STOP_CHARS} characters")
        return stops

    @property
    def token_limit(self) -> int | None:
        return self.max_completion_tokens if self.max_completion_tokens is not None else self.max_tokens


class MonitorRequest(_Strict):
    """``POST /v1/monitor``: per-token projections of a conversation (a final assistant turn is the reply)."""

    model: str | None = None
    messages: list[ChatMessage] = Field(min_length=1)
    persona: dict[str, float] | None = None
    personas: list[str] | None = Field(None, description="monitored personas to report (default: all)")


class TopLogprob(BaseModel):
    token: str
    logprob: float
    bytes: list[int] | None = None


class TokenLogprobOut(TopLogprob):
    top_logprobs: list[TopLogprob] = Field(default_factory=list)


class ChoiceLogprobs(BaseModel):
    content: list[TokenLogprobOut] | None = None


class AssistantMessage(BaseModel):
    role: Literal["assistant"] = "assistant"
    content: str


class Choice(BaseModel):
    index: int = 0
    message: AssistantMessage
    logprobs: ChoiceLogprobs | None = None
    finish_reason: str


class Usage(BaseModel):
    prompt_tokens: int
    completion_tokens: int
    total_tokens: int


class ChatCompletion(BaseModel):
    id: str
    object: Literal["chat.completion"] = "chat.completion"
    created: int
    model: str
    choices: list[Choice]
    usage: Usage
    system_fingerprint: str | None = None
    persona: dict[str, float] = Field(default_factory=dict)
    persona_monitor: dict[str, Any] = Field(default_factory=dict)


class Delta(BaseModel):
    role: Literal["assistant"] | None = None
    content: str | None = None


class ChunkChoice(BaseModel):
    index: int = 0
    delta: Delta
    logprobs: ChoiceLogprobs | None = None
    finish_reason: str | None = None


class ChatCompletionChunk(BaseModel):
    id: str
    object: Literal["chat.completion.chunk"] = "chat.completion.chunk"
    created: int
    model: str
    choices: list[ChunkChoice]
    usage: Usage | None = None
    system_fingerprint: str | None = None
    persona_monitor: dict[str, Any] | None = None


class ModelCard(BaseModel):
    id: str
    object: Literal["model"] = "model"
    created: int
    owned_by: str = "traitlab"


class ModelList(BaseModel):
    object: Literal["list"] = "list"
    data: list[ModelCard]


class ErrorBody(BaseModel):
    message: str
    type: str
    param: str | None = None
    code: str | None = None


class ErrorResponse(BaseModel):
    error: ErrorBody
