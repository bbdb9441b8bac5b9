"""Reasoning (issue 11): a thinking model's `<think>…</think>` goes to `reasoning_content`, never
to `content`, however the text is chunked; `reasoning_format: "inline"` keeps it in `content`; a
template that opens `<think>` in the prompt starts the reply as reasoning. End to end on the real
engine with a tiny random-weight Qwen3 whose output a Lark constraint fixes."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from mlx_lm.tool_parsers import json_tools

from sidecar.engine.chat import ChatReply, ReplyDelta, chat_stream, plan_chat
from sidecar.engine.constraints import Constraint
from sidecar.engine.engine import Engine
from sidecar.engine.reply import Markers, Piece, ReplySplitter
from sidecar.engine.requests import GenerateRequest
from sidecar.http.messages_output import MessageWriter
from sidecar.http.responses import ChatFormat
from sidecar.http.responses_api import ResponsesRequest
from sidecar.http.responses_output import ResponseStore, ResponseWriter
from tests.tiny_models import tiny_qwen3_model, tiny_qwen3_thinking_model

MARKERS = Markers(
    think=("<think>", "</think>"),
    tool=("<tool_call>", "</tool_call>"),
    parser=json_tools.parse_tool_call,
)
REPLY = (
    "<think>\nThe user wants Paris.\nCheck the tool.\n</think>\n\n"
    'Let me look.<tool_call>\n{"name": "get_weather", "arguments": {"city": "Paris"}}\n'
    "</tool_call>"
)
ASK = [{"role": "user", "content": "Weather in Paris?"}]


def chunked(text: str, cuts: list[int], **kw: Any) -> tuple[str, str, list[Any]]:
    splitter = ReplySplitter(MARKERS, **kw)
    pieces = [splitter.feed(text[a:b]) for a, b in zip([0, *cuts], [*cuts, len(text)], strict=True)]
    pieces.append(splitter.finish())
    calls = [(c.name, json.loads(c.arguments)) for p in pieces for c in p.tool_calls]
    return "".join(p.content for p in pieces), "".join(p.reasoning for p in pieces), calls


# -- the splitter --------------------------------------------------------------------------------


def test_every_two_way_cut_splits_the_same() -> None:
    expected = (
        "Let me look.",
        "The user wants Paris.\nCheck the tool.",
        [("get_weather", {"city": "Paris"})],
    )
    assert chunked(REPLY, []) == expected
    for cut in range(1, len(REPLY)):
        assert chunked(REPLY, [cut]) == expected, cut


def test_one_character_at_a_time_never_shows_markup() -> None:
    splitter = ReplySplitter(MARKERS)
    for ch in REPLY:
        piece = splitter.feed(ch)
        assert "<" not in piece.content and "<" not in piece.reasoning
    assert not splitter.finish()


def test_text_that_only_looks_like_a_marker_is_content() -> None:
    content, reasoning, calls = chunked("a <b> and <thin", [3, 7, 12])
    assert (content, reasoning, calls) == ("a <b> and <thin", "", [])


def split_text(text: str, markers: Markers, in_reasoning: bool = False) -> Piece:
    """A whole reply through one splitter, as the engine feeds it piece by piece."""
    splitter = ReplySplitter(markers, in_reasoning)
    piece = splitter.feed(text)
    piece.add(splitter.finish())
    return piece


def test_a_prompt_that_opened_think_starts_as_reasoning() -> None:
    piece = split_text("weighing it</think>\n\nParis.", MARKERS, in_reasoning=True)
    assert (piece.reasoning, piece.content) == ("weighing it", "Paris.")


def test_inline_keeps_the_thinking_in_content_as_generated() -> None:
    text = "<think>hm</think>Paris."
    assert chunked(text, [4, 9], inline_reasoning=True)[:2] == (text, "")
    # opened in the prompt: the opening marker is shown too, so the content reads whole
    assert chunked("hm</think>Paris.", [2], in_reasoning=True, inline_reasoning=True)[0] == text


def test_a_cut_off_tool_call_is_dropped_not_shown() -> None:
    content, _, calls = chunked('Ok.<tool_call>\n{"name": "get_wea', [5])
    assert (content, calls) == ("Ok.", [])


# -- end to end on the engine --------------------------------------------------------------------


@pytest.fixture(scope="module")
def qwen3(models_dir: Path) -> str:
    return tiny_qwen3_model(models_dir)


@pytest.fixture(scope="module")
def thinking(models_dir: Path) -> str:
    return tiny_qwen3_thinking_model(models_dir)


async def run(
    engine: Engine, model: str, grammar: str, inline: bool = False
) -> tuple[list[ReplyDelta], ChatReply]:
    plan = await plan_chat(engine, ASK, model, None)
    req = GenerateRequest(
        prompt=plan.prompt, model=plan.model, max_tokens=24, constraint=Constraint.lark(grammar)
    )
    events = [e async for e in chat_stream(engine, req, plan, inline)]
    deltas, reply = events[:-1], events[-1]
    assert isinstance(reply, ChatReply) and all(isinstance(d, ReplyDelta) for d in deltas)
    return deltas, reply  # type: ignore[return-value]


# Qwen3's <think> and </think> are added tokens: the grammar names them by id.
THINK = '<[151667]> "\\nthe user asks about weather\\n" <[151668]> "\\n\\nIt is sunny."'


async def test_the_thinking_goes_to_reasoning_content(engine: Engine, qwen3: str) -> None:
    deltas, reply = await run(engine, qwen3, f"start: {THINK}")
    assert reply.reasoning == "the user asks about weather"
    assert reply.text == "It is sunny."
    assert reply.finish_reason == "stop"
    assert "".join(d.reasoning for d in deltas) == reply.reasoning
    assert "".join(d.text for d in deltas) == reply.text
    assert not any("think>" in d.text or "think>" in d.reasoning for d in deltas)

    # as the OpenAI port shapes it: reasoning_content beside content, in the reply and chunks
    fmt = ChatFormat(qwen3, include_usage=False)
    message = fmt.whole(reply, None)["choices"][0]["message"]
    assert message["reasoning_content"] == reply.reasoning and message["content"] == reply.text
    chunks = [c["choices"][0]["delta"] for d in deltas for c in fmt.deltas(d)]
    assert "".join(c.get("reasoning_content", "") for c in chunks) == reply.reasoning
    assert "".join(c.get("content", "") for c in chunks) == reply.text


async def test_the_dialects_carry_the_thinking_in_their_own_shapes(
    engine: Engine, qwen3: str
) -> None:
    """Responses: a `reasoning` item before the message; Messages: a `thinking` block when the
    caller enables thinking, none otherwise; streamed as their own deltas."""
    deltas, reply = await run(engine, qwen3, f"start: {THINK}")
    body = ResponsesRequest.model_validate({"input": "x"})
    output = ResponseWriter(body, qwen3, [], ResponseStore()).whole(reply)["output"]
    assert [(i["type"], i["content"][0]["text"]) for i in output] == [
        ("reasoning", reply.reasoning),
        ("message", reply.text),
    ]
    writer = ResponseWriter(body, qwen3, [], ResponseStore())
    events = [e for d in deltas for e in writer.delta(d)] + writer.closing(reply)

    def said(kind: str) -> str:
        return "".join(e["delta"] for k, e in events if k == kind)

    assert said("response.reasoning_text.delta") == reply.reasoning
    assert said("response.output_text.delta") == reply.text
    streamed = events[-1][1]["response"]["output"]
    assert [(i["type"], i["content"][0]["text"]) for i in streamed] == [
        ("reasoning", reply.reasoning),
        ("message", reply.text),
    ]

    thinking = {"type": "thinking", "thinking": reply.reasoning, "signature": ""}
    text = {"type": "text", "text": reply.text}
    assert MessageWriter(qwen3, thinking=True).whole(reply)["content"] == [thinking, text]
    assert MessageWriter(qwen3, thinking=False).whole(reply)["content"] == [text]
    messages = MessageWriter(qwen3, thinking=True)
    blocks = [e for d in deltas for e in messages.delta(d)] + messages.closing(reply)
    starts = [e["content_block"]["type"] for k, e in blocks if k == "content_block_start"]
    assert starts == ["thinking", "text"]
    thought = "".join(
        e["delta"].get("thinking", "") for k, e in blocks if k == "content_block_delta"
    )
    assert thought == reply.reasoning


async def test_inline_reasoning_keeps_the_raw_text(engine: Engine, qwen3: str) -> None:
    _, reply = await run(engine, qwen3, f"start: {THINK}", inline=True)
    assert reply.text == "<think>\nthe user asks about weather\n</think>\n\nIt is sunny."
    assert reply.reasoning is None


async def test_a_template_that_opens_think_starts_in_reasoning(
    engine: Engine, thinking: str
) -> None:
    plan = await plan_chat(engine, ASK, thinking, None)
    assert plan.in_reasoning
    _, reply = await run(engine, thinking, 'start: "pondering" <[151668]> "\\n\\nParis."')
    assert (reply.reasoning, reply.text) == ("pondering", "Paris.")


async def test_a_forced_call_after_an_opened_think_closes_it_first(
    engine: Engine, thinking: str
) -> None:
    from sidecar.engine.tools import ToolDef, of_request

    schema = {
        "type": "object",
        "properties": {"zone": {"enum": ["UTC"]}},
        "required": ["zone"],
        "additionalProperties": False,
    }
    tool = ToolDef.model_validate(
        {"type": "function", "function": {"name": "t", "parameters": schema}}
    )
    tools = of_request([tool], "required", False)
    plan = await plan_chat(engine, ASK, thinking, tools)
    req = GenerateRequest(
        prompt=plan.prompt, model=plan.model, max_tokens=32, constraint=plan.constraint
    )
    reply = [e async for e in chat_stream(engine, req, plan)][-1]
    assert isinstance(reply, ChatReply)
    assert [(c.name, json.loads(c.arguments)) for c in reply.tool_calls] == [("t", {"zone": "UTC"})]
    assert reply.finish_reason == "tool_calls" and reply.text == "" and reply.reasoning is None


async def test_json_output_after_an_opened_think_is_content_not_reasoning(
    engine: Engine, thinking: str
) -> None:
    from sidecar.engine.response_format import ResponseFormat

    schema = {
        "type": "object",
        "properties": {"ok": {"type": "boolean"}},
        "required": ["ok"],
        "additionalProperties": False,
    }
    fmt = ResponseFormat.model_validate(
        {"type": "json_schema", "json_schema": {"name": "answer", "schema": schema}}
    )
    plan = await plan_chat(engine, ASK, thinking, None, fmt)
    assert plan.in_reasoning and plan.constraint is not None
    req = GenerateRequest(
        prompt=plan.prompt, model=plan.model, max_tokens=16, constraint=plan.constraint
    )
    reply = [e async for e in chat_stream(engine, req, plan)][-1]
    assert isinstance(reply, ChatReply)
    assert isinstance(json.loads(reply.text)["ok"], bool), reply.text
    assert reply.reasoning is None and reply.finish_reason == "stop"


def test_a_repeated_call_is_made_once() -> None:
    call = '<tool_call>{"name": "f", "arguments": {"a": 1}}</tool_call>'
    other = '<tool_call>{"name": "f", "arguments": {"a": 2}}</tool_call>'
    piece = split_text(call + call + other + call, MARKERS)
    assert [(c.index, json.loads(c.arguments)) for c in piece.tool_calls] == [
        (0, {"a": 1}),
        (1, {"a": 2}),
    ]
