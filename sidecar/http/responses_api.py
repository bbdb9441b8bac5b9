"""OpenAI's Responses API (`POST /v1/responses`, `GET /v1/responses/{id}`) as a thin edge over
the engine's one chat turn: the request maps to chat messages (the one `Message` model, so its
validation and limits apply), tools, tool_choice and a response_format; the reply is shaped by
`ResponseWriter` (sidecar/http/responses_output.py).

    input: a string, or items: messages (`input_text` / `output_text` / `input_image` parts),
           `function_call` and `function_call_output` (and `reasoning`, which is skipped)
    instructions -> a system message first (not carried to the next response, as OpenAI does)
    tools (function tools only), tool_choice, parallel_tool_calls
    text.format: text | json_object | json_schema (the same constrained decoding)
    reasoning: accepted; a model's <think> block comes back as a `reasoning` output item
    max_output_tokens, temperature, top_p, stream
    previous_response_id / store: a bounded in-process store (ResponseStore)
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import (
    Discriminator,
    Field,
    PrivateAttr,
    Tag,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)

from sidecar import limits
from sidecar.engine.content import Message
from sidecar.engine.response_format import ResponseFormat
from sidecar.engine.tools import NamedToolChoice, ToolChoice, ToolDef, ToolRequest
from sidecar.engine.tools import of_request as tools_of
from sidecar.errors import EngineError
from sidecar.http.errors import OpenAIError, from_validation
from sidecar.http.schemas import Lenient


class TextPart(Lenient):
    type: Literal["input_text", "output_text", "text"]
    text: str


class ImagePart(Lenient):
    type: Literal["input_image"]
    image_url: str | None = None
    detail: str | None = None

    @model_validator(mode="after")
    def inline(self) -> ImagePart:
        if not self.image_url:
            raise ValueError("an input_image needs image_url (a data: URL); file_id is not served")
        return self


class RefusalPart(Lenient):
    type: Literal["refusal"]
    refusal: str


Part = Annotated[TextPart | ImagePart | RefusalPart, Field(discriminator="type")]


class MessageItem(Lenient):
    type: Literal["message"] = "message"
    role: Literal["user", "assistant", "system", "developer"]
    content: str | list[Part]


class FunctionCallItem(Lenient):
    type: Literal["function_call"]
    call_id: str
    name: str
    arguments: str


class FunctionCallOutputItem(Lenient):
    type: Literal["function_call_output"]
    call_id: str
    output: str | list[Part]


class ReasoningItem(Lenient):
    """An earlier reply's reasoning, sent back: skipped (templates drop earlier thinking)."""

    type: Literal["reasoning"]


def item_type(value: Any) -> str:
    if isinstance(value, dict):
        return str(value.get("type", "message"))
    return str(getattr(value, "type", "message"))


Item = Annotated[
    Annotated[MessageItem, Tag("message")]
    | Annotated[FunctionCallItem, Tag("function_call")]
    | Annotated[FunctionCallOutputItem, Tag("function_call_output")]
    | Annotated[ReasoningItem, Tag("reasoning")],
    Discriminator(item_type),
]


def text_chars(item: Any) -> int:
    if isinstance(item, str):
        return len(item)
    if isinstance(item, list):
        return sum(text_chars(p) for p in item)
    if isinstance(item, TextPart | RefusalPart):
        return len(item.text if isinstance(item, TextPart) else item.refusal)
    if isinstance(item, MessageItem):
        return text_chars(item.content)
    if isinstance(item, FunctionCallItem):
        return len(item.arguments) + len(item.name)
    if isinstance(item, FunctionCallOutputItem):
        return text_chars(item.output)
    return 0


class FunctionTool(Lenient):
    type: Literal["function"]
    name: str
    description: str | None = None
    parameters: dict[str, Any] | None = None
    strict: bool | None = None


class NamedFunction(Lenient):
    type: Literal["function"]
    name: str


class TextConfig(Lenient):
    format: dict[str, Any] | None = None
    _response_format: ResponseFormat | None = PrivateAttr(default=None)

    @model_validator(mode="after")
    def compile(self) -> TextConfig:
        """Responses' flat `{type: json_schema, name, schema, strict}` as Chat's shape (its
        schema compiled here, so a bad one is a 400 on `text`)."""
        fmt = self.format
        if fmt and fmt.get("type") == "json_schema":
            keys = ("name", "schema", "strict", "description")
            spec: dict[str, Any] = {k: fmt[k] for k in keys if k in fmt}
            self._response_format = ResponseFormat(type="json_schema", json_schema=spec)
        elif fmt:
            self._response_format = ResponseFormat.model_validate({"type": fmt.get("type")})
        return self

    def response_format(self) -> ResponseFormat | None:
        return self._response_format


class Reasoning(Lenient):
    effort: str | None = None
    summary: str | None = None
    generate_summary: str | None = None


class ResponsesRequest(Lenient):
    model: str | None = None
    input: str | list[Item]
    instructions: str | None = None
    tools: list[dict[str, Any]] | None = None
    tool_choice: Literal["auto", "none", "required"] | NamedFunction | None = None
    parallel_tool_calls: bool | None = None
    text: TextConfig | None = None
    reasoning: Reasoning | None = None
    max_output_tokens: Annotated[int, Field(ge=1)] | None = None
    temperature: Annotated[float, Field(ge=0.0, le=2.0)] | None = None
    top_p: Annotated[float, Field(gt=0.0, le=1.0)] | None = None
    stream: bool = False
    store: bool = True
    previous_response_id: str | None = None
    metadata: dict[str, str] | None = None
    user: str | None = None
    truncation: Literal["disabled"] | None = None
    background: bool | None = None
    conversation: Any = None

    @field_validator("background")
    @classmethod
    def foreground(cls, value: bool | None) -> bool | None:
        if value:
            raise ValueError("background responses are not supported; omit background")
        return value

    @field_validator("conversation")
    @classmethod
    def no_conversation(cls, value: Any) -> Any:
        if value is not None:
            raise ValueError("conversations are not supported; use previous_response_id")
        return value

    @field_validator("input")
    @classmethod
    def bounded(cls, value: str | list[Item], info: ValidationInfo) -> str | list[Item]:
        """The limits of every chat edge: items and text characters (images have theirs)."""
        items = [value] if isinstance(value, str) else value
        if not items:
            raise ValueError("input must not be empty")
        limits.check_messages(len(items), sum(text_chars(i) for i in items), limits.of(info))
        return value

    @field_validator("tools")
    @classmethod
    def function_tools(
        cls, value: list[dict[str, Any]] | None, info: ValidationInfo
    ) -> list[dict[str, Any]] | None:
        for tool in value or []:
            if tool.get("type") != "function":
                raise ValueError(
                    f"only function tools are supported, not {tool.get('type')!r} "
                    "(the sidecar runs no hosted tools)"
                )
        if value:
            limits.check_prompt_chars(len(str(value)), limits.of(info))
        return value

    def tool_request(self) -> ToolRequest | None:
        tools = [
            ToolDef.model_validate(
                {"type": "function", "function": FunctionTool.model_validate(t).model_dump()}
            )
            for t in self.tools or []
        ]
        choice: ToolChoice | None
        if isinstance(self.tool_choice, NamedFunction):
            named = {"type": "function", "function": {"name": self.tool_choice.name}}
            choice = NamedToolChoice.model_validate(named)
        else:
            choice = self.tool_choice
        return tools_of(tools or None, choice, self.parallel_tool_calls)

    def response_format(self) -> ResponseFormat | None:
        return self.text.response_format() if self.text else None

    def sampling(self) -> dict[str, Any]:
        out: dict[str, Any] = {"max_tokens": self.max_output_tokens}
        if self.temperature is not None:
            out["temperature"] = self.temperature
        if self.top_p is not None:
            out["top_p"] = self.top_p
        return out


def part_of(part: TextPart | ImagePart | RefusalPart) -> dict[str, Any]:
    if isinstance(part, ImagePart):
        return {"type": "image_url", "image_url": {"url": part.image_url}}
    return {"type": "text", "text": part.refusal if isinstance(part, RefusalPart) else part.text}


def content_of(content: str | list[Part]) -> str | list[dict[str, Any]]:
    return content if isinstance(content, str) else [part_of(p) for p in content]


def chat_messages(body: ResponsesRequest, context: Any) -> list[dict[str, Any]]:
    """The request's input as chat messages (engine-shaped, through the one `Message` model),
    without the instructions. Consecutive function calls make one assistant message."""
    raw: list[dict[str, Any]] = []
    items = [MessageItem(role="user", content=body.input)] if isinstance(body.input, str) else []
    for item in items or body.input:
        if isinstance(item, MessageItem):
            raw.append({"role": item.role, "content": content_of(item.content)})
        elif isinstance(item, FunctionCallItem):
            call = {
                "id": item.call_id,
                "function": {"name": item.name, "arguments": item.arguments},
            }
            if raw and raw[-1]["role"] == "assistant" and "tool_calls" in raw[-1]:
                raw[-1]["tool_calls"].append(call)
            else:
                raw.append({"role": "assistant", "content": None, "tool_calls": [call]})
        elif isinstance(item, FunctionCallOutputItem):
            output = content_of(item.output)
            raw.append({"role": "tool", "tool_call_id": item.call_id, "content": output})
    try:
        return [Message.model_validate(m, context=context).to_template() for m in raw]
    except ValidationError as e:
        raise OpenAIError(400, f"input: {from_validation(e.errors()).message}", "input") from e
    except EngineError as e:  # an earlier call's arguments that are not JSON
        raise OpenAIError(400, f"input: {e}", param="input") from e
