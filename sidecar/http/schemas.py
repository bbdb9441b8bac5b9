"""OpenAI request bodies. Unknown fields are ignored (clients send vendor extensions); fields we
cannot honour are rejected with a clear message rather than silently ignored."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationInfo,
    field_validator,
)

from sidecar import limits
from sidecar.config import DEFAULT_TEMPERATURE
from sidecar.engine.content import Message
from sidecar.engine.response_format import ResponseFormat
from sidecar.engine.tools import ToolChoice, ToolDef, ToolRequest
from sidecar.engine.tools import of_request as tools_of


class Lenient(BaseModel):
    """Unknown fields ignored; known ones strictly typed: `"stream": "yes"` or `"max_tokens":
    "5"` is a 400, not a guess (JSON has real booleans and numbers)."""

    model_config = ConfigDict(extra="ignore", strict=True)


class StreamOptions(Lenient):
    include_usage: bool = False


def no_penalty(value: float | None) -> float | None:
    if value:
        raise ValueError("presence/frequency penalties are not supported yet; send 0 or omit it")
    return value


class Sampling(Lenient):
    """Fields shared by chat and text completions."""

    model: str | None = None
    stream: bool = False
    stream_options: StreamOptions | None = None
    temperature: Annotated[float, Field(ge=0.0, le=2.0)] | None = None
    top_p: Annotated[float, Field(gt=0.0, le=1.0)] | None = None
    seed: int | None = None
    stop: str | list[str] | None = None
    n: int | None = 1
    presence_penalty: float | None = None
    frequency_penalty: float | None = None
    logit_bias: dict[str, float] | None = None
    user: str | None = None

    @field_validator("n")
    @classmethod
    def single_choice(cls, value: int | None) -> int | None:
        if value not in (None, 1):
            raise ValueError("only n=1 is supported")
        return value

    _penalties = field_validator("presence_penalty", "frequency_penalty")(no_penalty)

    @field_validator("logit_bias")
    @classmethod
    def no_logit_bias(cls, value: dict[str, float] | None) -> dict[str, float] | None:
        if value:
            raise ValueError("logit_bias is not supported")
        return value

    @field_validator("stop")
    @classmethod
    def stop_strings(
        cls, value: str | list[str] | None, info: ValidationInfo
    ) -> str | list[str] | None:
        limits.check_stops([value] if isinstance(value, str) else value or [], limits.of(info))
        return value

    def stop_list(self) -> list[str]:
        return [self.stop] if isinstance(self.stop, str) else list(self.stop or [])

    def sampling(self) -> dict[str, Any]:
        """GenerateRequest arguments; no temperature means the shared default (greedy)."""
        return {
            "temperature": DEFAULT_TEMPERATURE if self.temperature is None else self.temperature,
            "top_p": self.top_p or 1.0,
            "seed": self.seed,
            "stop": self.stop_list(),
        }

    @property
    def include_usage(self) -> bool:
        return bool(self.stream_options and self.stream_options.include_usage)


class ChatRequest(Sampling):
    messages: Annotated[list[Message], Field(min_length=1)]
    max_tokens: Annotated[int, Field(ge=1)] | None = None
    max_completion_tokens: Annotated[int, Field(ge=1)] | None = None
    logprobs: bool = False
    top_logprobs: Annotated[int, Field(ge=0, le=20)] | None = None
    response_format: ResponseFormat | None = None
    # tools (issue 11): see sidecar/engine/tools.py
    tools: list[ToolDef] | None = None
    tool_choice: ToolChoice | None = None
    parallel_tool_calls: bool | None = None
    # "separate": thinking in `reasoning_content`; "inline": left in `content` as generated
    reasoning_format: Literal["separate", "inline"] = "separate"
    functions: list[Any] | None = None  # OpenAI's deprecated form of tools: refused, not ignored
    function_call: Any = None

    @field_validator("functions", "function_call")
    @classmethod
    def no_legacy_functions(cls, value: Any) -> Any:
        if value is not None:
            raise ValueError("the deprecated functions/function_call are not supported; send tools")
        return value

    @field_validator("tools")
    @classmethod
    def bounded_tools(
        cls, value: list[ToolDef] | None, info: ValidationInfo
    ) -> list[ToolDef] | None:
        if value:  # tool schemas are prompt text too
            chars = sum(len(t.model_dump_json()) for t in value)
            limits.check_prompt_chars(chars, limits.of(info))
        return value

    def tool_request(self) -> ToolRequest | None:
        return tools_of(self.tools, self.tool_choice, self.parallel_tool_calls)

    @field_validator("messages")
    @classmethod
    def bounded(cls, value: list[Message], info: ValidationInfo) -> list[Message]:
        chars = sum(m.text_chars() for m in value)
        limits.check_messages(len(value), chars, limits.of(info))
        return value

    def token_limit(self, default: int) -> int:
        return self.max_completion_tokens or self.max_tokens or default

    @field_validator("top_logprobs")
    @classmethod
    def top_needs_logprobs(cls, value: int | None, info: ValidationInfo) -> int | None:
        if value and not info.data.get("logprobs"):
            raise ValueError("top_logprobs needs logprobs=true")
        return value

    def engine_logprobs(self) -> int | None:
        return (self.top_logprobs or 0) if self.logprobs else None


Prompt = str | list[str] | list[int] | list[list[int]]


class CompletionRequest(Sampling):
    prompt: Prompt
    suffix: str | None = None
    max_tokens: Annotated[int, Field(ge=1)] | None = 16
    echo: bool = False
    logprobs: Annotated[int, Field(ge=0, le=20)] | None = None
    best_of: int | None = None
    response_format: ResponseFormat | None = None  # an extension: OpenAI's is chat-only

    @field_validator("best_of")
    @classmethod
    def single_best(cls, value: int | None) -> int | None:
        if value not in (None, 1):
            raise ValueError("only best_of=1 is supported")
        return value

    @field_validator("prompt")
    @classmethod
    def non_empty(cls, value: Prompt, info: ValidationInfo) -> Prompt:
        if isinstance(value, list) and not value:
            raise ValueError("prompt must not be empty")
        # token ids count as one character each: a bound, not an exact measure
        items = [value] if isinstance(value, str) else value
        size = sum(len(x) if isinstance(x, str | list) else 1 for x in items)
        limits.check_prompt_chars(size, limits.of(info))
        return value

    @field_validator("suffix")
    @classmethod
    def bounded_suffix(cls, value: str | None, info: ValidationInfo) -> str | None:
        limits.check_prompt_chars(len(value or ""), limits.of(info))
        return value

    def prompts(self) -> list[str | list[int]]:
        """One entry per prompt: text or token ids."""
        p = self.prompt
        if isinstance(p, str):
            return [p]
        if all(isinstance(x, int) for x in p):
            return [list(p)]  # type: ignore[arg-type]
        return list(p)  # type: ignore[arg-type]


class EmbeddingRequest(Lenient):
    model: str | None = None
    input: str | list[str] | list[int] | list[list[int]]
    encoding_format: Literal["float", "base64"] = "float"
    dimensions: int | None = None
    user: str | None = None

    @field_validator("input")
    @classmethod
    def text_input(cls, value: Any, info: ValidationInfo) -> Any:
        if isinstance(value, list):
            if not value:
                raise ValueError("input must not be empty")
            if not all(isinstance(x, str) for x in value):
                raise ValueError("token-id input is not supported; send text")
        limits.check_embed_inputs([value] if isinstance(value, str) else value, limits.of(info))
        return value

    @field_validator("dimensions")
    @classmethod
    def no_dimensions(cls, value: int | None) -> int | None:
        if value is not None:
            raise ValueError("dimensions is not supported; vectors have the model's size")
        return value

    def texts(self) -> list[str]:
        return [self.input] if isinstance(self.input, str) else list(self.input)  # type: ignore[arg-type]
