"""`mlx/chat`: a chat reply, streamed as `mlx/chat/delta` notifications when `stream_token` is
given. `$/cancelRequest` cancels the task, which ends the engine request (error -32800)."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import ConfigDict, Field, ValidationInfo, field_validator

from sidecar import limits
from sidecar.config import DEFAULT_TEMPERATURE
from sidecar.engine import reply
from sidecar.engine.chat import ChatReply, ReplyDelta, TurnInput, start_turn
from sidecar.engine.content import Message
from sidecar.engine.response_format import ResponseFormat
from sidecar.engine.tools import ToolChoice, ToolDef, of_request
from sidecar.errors import result_error
from sidecar.lsp import notify, upstreams, workspace
from sidecar.lsp.errors import Params, parse, rpc_errors
from sidecar.lsp.session import SidecarServer
from sidecar.wire import ChatResult, ToolCall, Usage


class ChatMessage(Message):
    """The one message model (sidecar/engine/content.py); unknown keys refused, as in every
    JSON-RPC params."""

    model_config = ConfigDict(**{**Message.model_config, "extra": "forbid"})


class ChatParams(Params):
    messages: list[ChatMessage] = Field(min_length=1)
    model: str | None = None
    max_tokens: int = Field(default=512, ge=1, le=32768)
    temperature: float = Field(default=DEFAULT_TEMPERATURE, ge=0.0, le=2.0)
    top_p: float = Field(default=1.0, gt=0.0, le=1.0)
    seed: int | None = None
    stop: list[str] | str | None = None
    stream_token: str | int | None = None
    response_format: ResponseFormat | None = None  # as on the OpenAI port: JSON, constrained
    # tools and reasoning (issue 11): the HTTP edge's fields, see sidecar/engine/tools.py
    tools: list[ToolDef] | None = None
    tool_choice: ToolChoice | None = None
    parallel_tool_calls: bool | None = None
    reasoning_format: Literal["separate", "inline"] = "separate"

    @field_validator("messages")
    @classmethod
    def bounded(cls, value: list[ChatMessage], info: ValidationInfo) -> list[ChatMessage]:
        chars = sum(m.text_chars() for m in value)
        limits.check_messages(len(value), chars, limits.of(info))
        return value

    @field_validator("stop")
    @classmethod
    def stop_strings(
        cls, value: list[str] | str | None, info: ValidationInfo
    ) -> list[str] | str | None:
        limits.check_stops([value] if isinstance(value, str) else value or [], limits.of(info))
        return value


async def chat(ls: SidecarServer, params: Any) -> ChatResult:
    p = parse(ChatParams, params, ls.engine.settings.limits)
    model = p.model or ls.roles["chat"]
    with rpc_errors():
        messages = [m.to_template() for m in p.messages]
        what = TurnInput(
            messages,
            of_request(p.tools, p.tool_choice, p.parallel_tool_calls),
            p.response_format,
        )
        remote = await ls.router.route(
            "chat",
            p.model,
            ls.roles["chat"],
            prompt_tokens=what.prompt_tokens,
            max_tokens=p.max_tokens,
        )
    if remote is not None:
        return await upstreams.remote_chat(ls, remote, p)
    stop = [p.stop] if isinstance(p.stop, str) else list(p.stop or [])
    result: ChatReply | None = None
    with rpc_errors():
        # `@workspace`: retrieved chunks in the prompt, listed in the reply
        augmented, sources = await workspace.chat_messages(ls, messages, model)
        if augmented is not messages:
            what = TurnInput(augmented, what.tools, what.response_format)
        turn = await start_turn(
            ls.engine,
            what,
            model,
            max_tokens=p.max_tokens,
            temperature=p.temperature,
            top_p=p.top_p,
            seed=p.seed,
            stop=stop,
        )
        inline = p.reasoning_format == "inline"
        async for event in turn.events(ls.engine, inline):
            if isinstance(event, ReplyDelta):
                if p.stream_token is not None and (
                    event.text or event.reasoning or event.tool_calls
                ):
                    notify.chat_delta(
                        ls,
                        p.stream_token,
                        event.text,
                        event.reasoning or None,
                        [wire_call(c) for c in event.tool_calls] or None,
                    )
            else:
                result = event
        assert result is not None
        if (error := result_error(result)) is not None:
            raise error  # mapped by rpc_errors like every other SidecarError
    return ChatResult(
        text=result.text,
        finish_reason=result.finish_reason,
        model=result.model,
        usage=Usage.of(result.prompt_tokens, result.completion_tokens),
        time_to_first_token_s=result.time_to_first_token_s,
        tokens_per_s=result.tokens_per_s,
        reasoning=result.reasoning,
        tool_calls=[wire_call(c) for c in result.tool_calls],
        sources=sources,
    )


def wire_call(call: reply.ReplyToolCall) -> ToolCall:
    return ToolCall(id=call.id, name=call.name, arguments=call.arguments)
