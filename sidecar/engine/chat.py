"""The one chat turn every edge and dialect runs (the OpenAI port's Chat Completions,
Responses and Messages, JSON-RPC `mlx/chat`): messages (and tools) -> the prompt and how to
read the reply; the engine's text stream -> content, reasoning and tool-call deltas, then the
whole reply.

    turn = await start_turn(engine, TurnInput(messages, tools), model, max_tokens=64, ...)
    async for event in turn.events(engine):
        ...  # ReplyDelta (content / reasoning / tool_calls), then one ChatReply

The model is loaded once and the prompt rendered once per turn (`plan_for`).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import aclosing
from dataclasses import dataclass, field
from typing import Any

from sidecar.engine.constraints import Constraint, ConstraintError, lark_json
from sidecar.engine.messages import UNTRUSTED_KEYS, check_no_markers, render_chat
from sidecar.engine.reply import Markers, Piece, ReplySplitter, ReplyToolCall
from sidecar.engine.requests import Delta, FinishReason, GenerateRequest, Priority, Result
from sidecar.engine.response_format import ResponseFormat, constraint_of, with_json_instruction
from sidecar.engine.tools import (
    ToolChoiceError,
    ToolRequest,
    ToolsError,
    fallback_messages,
    forced_call_grammar,
    lark_marker,
    native_tools,
    prompt_opens_think,
    reply_markers,
    template_messages,
)
from sidecar.engine.vision_runner import (
    image_count,
    message_images,
    render_vision_chat,
    text_only_messages,
)
from sidecar.errors import ImagesNotSupported


@dataclass
class ChatPlan:
    model: str
    prompt: list[int] | str
    markers: Markers
    in_reasoning: bool = False  # the prompt opened a think block
    # A forced tool call's grammar (tool_choice required or named): GenerateRequest.constraint
    constraint: Constraint | None = None


@dataclass
class ReplyDelta(Delta):
    """`text` is the content's piece; reasoning and whole tool calls beside it."""

    reasoning: str = ""
    tool_calls: list[ReplyToolCall] = field(default_factory=list)


@dataclass
class ChatReply(Result):
    """The whole reply: `text` is the content, without reasoning or tool markup."""

    reasoning: str | None = None
    tool_calls: list[ReplyToolCall] = field(default_factory=list)


@dataclass
class Turn:
    """One chat turn ready to run: how to read its reply and the engine request."""

    plan: ChatPlan
    request: GenerateRequest

    def events(
        self, engine: Any, inline_reasoning: bool = False
    ) -> AsyncIterator[ReplyDelta | ChatReply]:
        return chat_stream(engine, self.request, self.plan, inline_reasoning)


@dataclass
class TurnInput:
    """What a chat turn renders: engine-shaped messages (see `Message.to_template`), tools and
    the response format. `plan` renders it once per model, so the router's context check
    (`prompt_tokens`) and the turn share one rendering."""

    messages: list[dict[str, Any]]
    tools: ToolRequest | None = None
    response_format: ResponseFormat | None = None
    plans: dict[str, ChatPlan] = field(default_factory=dict, repr=False)

    def plan(self, loaded: Any) -> ChatPlan:
        if loaded.id not in self.plans:
            self.plans[loaded.id] = plan_for(
                loaded, self.messages, self.tools, self.response_format
            )
        return self.plans[loaded.id]

    def prompt_tokens(self, loaded: Any) -> int:
        return len(self.plan(loaded).prompt)


async def start_turn(engine: Any, what: TurnInput, model: str | None, **request: Any) -> Turn:
    """The turn for `what` on `model` (None: the default chat model): the model loaded once,
    the prompt rendered once, and the GenerateRequest (`request`: its other fields —
    max_tokens, temperature, stop, ...)."""
    loaded = await engine.text_model(model)
    plan = what.plan(loaded)
    req = GenerateRequest(
        prompt=plan.prompt,
        model=loaded.id,
        images=message_images(what.messages),
        constraint=plan.constraint,
        **{"priority": Priority.CHAT, **request},
    )
    return Turn(plan, req)


async def plan_chat(
    engine: Any,
    messages: list[dict[str, Any]],
    model: str | None,
    tools: ToolRequest | None,
    response_format: ResponseFormat | None = None,
) -> ChatPlan:
    """`plan_for` the loaded `model` (None: the default chat model)."""
    return plan_for(await engine.text_model(model), messages, tools, response_format)


def chat_prompt(loaded: Any, messages: list[dict[str, Any]]) -> list[int] | str:
    """The prompt of a plain turn (no tools, free text) on `loaded`."""
    return plan_for(loaded, messages, None).prompt


def plan_for(
    loaded: Any,
    messages: list[dict[str, Any]],
    tools: ToolRequest | None,
    response_format: ResponseFormat | None = None,
) -> ChatPlan:
    """Render the turn with the model's chat template (tools natively, or described in a
    system message for a template without a tools section) and say how to split the reply
    and what constrains it (a forced tool call, or a JSON response_format)."""
    messages = with_json_instruction(messages, response_format)
    response = constraint_of(response_format)
    if loaded.kind == "vision":
        if tools is not None and tools.active:
            raise ToolsError(f"model {loaded.id!r} is a vision model; tools need a text model")
        guard_vision_text(loaded.tokenizer, messages)
        rendered = render_vision_chat(loaded.tokenizer, loaded.model.config, messages)
        return ChatPlan(loaded.id, rendered, Markers(), constraint=response)
    tokenizer = loaded.tokenizer
    if image_count(messages):
        raise ImagesNotSupported(f"model {loaded.id!r} does not take images")
    text = template_messages(text_only_messages(messages))
    native = native_tools(tokenizer)
    if not native:
        text = fallback_messages(text, tools)
    template_tools = tools.template_tools() if native and tools and tools.active else None
    prompt = render_chat(tokenizer, text, template_tools)
    markers = reply_markers(tokenizer, tools)
    thinking = prompt_opens_think(tokenizer, prompt)
    grammar = forced_call_grammar(markers, tools, tokenizer, thinking) if tools else None
    if grammar and response is not None:
        raise ToolChoiceError(
            "a forced tool call (tool_choice required or named) cannot also follow a JSON "
            "response_format; send one of them"
        )
    try:
        constraint = Constraint.lark(grammar, name="tool call") if grammar else None
    except ConstraintError as e:
        raise ToolsError(f"the tools' parameters cannot be enforced: {e}") from None
    if response is not None and thinking and markers.think and response_format is not None:
        response = after_think(response_format, markers.think[1], tokenizer)
    return ChatPlan(loaded.id, prompt, markers, thinking, constraint or response)


def guard_vision_text(processor: Any, messages: list[dict[str, Any]]) -> None:
    """A vision model's prompt is text its processor tokenizes with control tokens parsed (it
    places the images there), so users' text cannot be split like a text model's (see
    sidecar/engine/messages.py): text that spells a control token is refused instead."""
    tokenizer = getattr(processor, "tokenizer", processor)
    for message in text_only_messages(messages):
        for key in UNTRUSTED_KEYS:
            check_no_markers(tokenizer, f"messages' {key}", message.get(key) or None)


def after_think(fmt: ResponseFormat, think_end: str, tokenizer: Any) -> Constraint:
    """A JSON response_format for a prompt that opened a think block: the reply closes it
    first, or the JSON would be read as thinking."""
    spec = fmt.json_schema or {}
    schema = spec.get("schema", {"type": "object"}) if fmt.type == "json_schema" else None
    body = lark_json(schema if isinstance(schema, dict) else {"type": "object"})
    grammar = f'start: {lark_marker(think_end, tokenizer)} "\\n\\n" {body}\n'
    return Constraint.lark(grammar, name=spec.get("name", "") or fmt.type)


def reply_finish(result: Result, calls: list[ReplyToolCall]) -> FinishReason:
    return "tool_calls" if calls and result.finish_reason == "stop" else result.finish_reason


async def chat_stream(
    engine: Any, req: GenerateRequest, plan: ChatPlan, inline_reasoning: bool = False
) -> AsyncIterator[ReplyDelta | ChatReply]:
    """The engine's events for `req`, split: ReplyDelta pieces as they become certain, then a
    ChatReply. Closing this stream closes (and so cancels) the engine request."""
    splitter = ReplySplitter(plan.markers, plan.in_reasoning, inline_reasoning)
    whole = Piece()
    async with aclosing(engine.generate(req)) as events:
        async for event in events:
            if isinstance(event, Delta):
                piece = splitter.feed(event.text)
                whole.add(piece)
                if piece or event.logprobs:
                    yield delta_of(event.request_id, piece, event.logprobs)
                continue
            rest = splitter.finish()
            whole.add(rest)
            if rest:
                yield delta_of(event.request_id, rest, None)
            yield ChatReply(
                **{
                    **vars(event),
                    "text": whole.content,
                    "finish_reason": reply_finish(event, whole.tool_calls),
                },
                reasoning=whole.reasoning or None,
                tool_calls=whole.tool_calls,
            )
            return


def delta_of(request_id: str, piece: Piece, logprobs: Any) -> ReplyDelta:
    return ReplyDelta(request_id, piece.content, logprobs, piece.reasoning, piece.tool_calls)
