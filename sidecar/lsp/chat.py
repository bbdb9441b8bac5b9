"""`mlx/chat`: a chat reply, streamed as `mlx/chat/delta` notifications when `stream_token` is
given. `$/cancelRequest` cancels the task, which ends the engine request (error -32800)."""

from __future__ import annotations

from typing import Any

from pydantic import Field, ValidationInfo, field_validator

from sidecar import limits
from sidecar.config import DEFAULT_TEMPERATURE
from sidecar.engine.messages import Role, template_role
from sidecar.engine.requests import Delta, GenerateRequest, Priority, Result
from sidecar.errors import result_error
from sidecar.lsp import notify, workspace
from sidecar.lsp.errors import Params, parse, rpc_errors
from sidecar.lsp.session import SidecarServer
from sidecar.wire import ChatResult, Usage


class ChatMessage(Params):
    role: Role  # the same closed set as the HTTP edge
    content: str

    def to_template(self) -> dict[str, str]:
        return {"role": template_role(self.role), "content": self.content}


class ChatParams(Params):
    messages: list[ChatMessage] = Field(min_length=1)
    model: str | None = None
    max_tokens: int = Field(default=512, ge=1, le=32768)
    temperature: float = Field(default=DEFAULT_TEMPERATURE, ge=0.0, le=2.0)
    top_p: float = Field(default=1.0, gt=0.0, le=1.0)
    seed: int | None = None
    stop: list[str] | str | None = None
    stream_token: str | int | None = None

    @field_validator("messages")
    @classmethod
    def bounded(cls, value: list[ChatMessage], info: ValidationInfo) -> list[ChatMessage]:
        limits.check_messages(len(value), sum(len(m.content) for m in value), limits.of(info))
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
    stop = [p.stop] if isinstance(p.stop, str) else list(p.stop or [])
    result: Result | None = None
    with rpc_errors():
        messages, sources = await workspace.chat_messages(
            ls, [m.to_template() for m in p.messages], model
        )  # `@workspace`: retrieved chunks in the prompt, listed in the reply
        prompt = await ls.engine.chat_prompt(messages, model)
        request = GenerateRequest(
            prompt=prompt,
            model=model,
            max_tokens=p.max_tokens,
            temperature=p.temperature,
            top_p=p.top_p,
            seed=p.seed,
            stop=stop,
            priority=Priority.CHAT,
        )
        async for event in ls.engine.generate(request):
            if isinstance(event, Delta):
                if p.stream_token is not None and event.text:
                    notify.chat_delta(ls, p.stream_token, event.text)
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
        sources=sources,
    )
