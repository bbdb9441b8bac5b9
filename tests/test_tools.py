"""Tools on `/v1/chat/completions` (issue 11): rendered by the model's chat template (or described
in a system message for a template without tools), calls parsed with mlx_lm's tool parsers,
forced calls (`tool_choice` required or named) constrained, streamed as `delta.tool_calls` that the
openai SDK assembles into the reply's calls. A tiny random-weight Qwen3 with the real Qwen3
tokenizer and template (tests/tiny_models.py) and the real SmolLM2 (no tools in its template)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any, cast

import httpx
import jsonschema
import orjson
import pytest
from openai.types.chat import (
    ChatCompletionMessageFunctionToolCall,
    ChatCompletionMessageParam,
    ChatCompletionToolUnionParam,
)

from sidecar.engine.chat import plan_chat
from sidecar.engine.engine import Engine
from sidecar.engine.tools import ToolDef, ToolRequest, of_request
from sidecar.models.defaults import CHAT_MODEL
from tests.helpers.http_server import Server, start_server, stop_server
from tests.tiny_models import tiny_qwen3_model

WEATHER_ARGS: dict[str, Any] = {
    "type": "object",
    "properties": {
        "city": {"type": "string", "enum": ["Paris", "Rome", "Oslo"]},
        "days": {"type": "integer", "minimum": 1, "maximum": 7},
        "units": {
            "type": "object",
            "properties": {"temperature": {"enum": ["C", "F"]}},
            "required": ["temperature"],
            "additionalProperties": False,
        },
    },
    "required": ["city", "days", "units"],
    "additionalProperties": False,
}
WEATHER: dict[str, Any] = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "The weather forecast for a city",
        "parameters": WEATHER_ARGS,
    },
}
TIME_ARGS: dict[str, Any] = {
    "type": "object",
    "properties": {"zone": {"enum": ["UTC", "CET"]}},
    "required": ["zone"],
    "additionalProperties": False,
}
CLOCK: dict[str, Any] = {
    "type": "function",
    "function": {"name": "get_time", "parameters": TIME_ARGS},
}
ASK: list[dict[str, Any]] = [{"role": "user", "content": "What's the weather in Paris for 3 days?"}]
NAMED: dict[str, Any] = {"type": "function", "function": {"name": "get_weather"}}
HISTORY: list[dict[str, Any]] = [
    *ASK,
    {
        "role": "assistant",
        "content": None,
        "tool_calls": [
            {
                "id": "call_1",
                "type": "function",
                "function": {"name": "get_weather", "arguments": '{"city": "Paris", "days": 3}'},
            }
        ],
    },
    {"role": "tool", "tool_call_id": "call_1", "content": "sunny, 21 degrees all week"},
]


@pytest.fixture(scope="module")
def qwen3(models_dir: Path) -> str:
    return tiny_qwen3_model(models_dir)


@pytest.fixture(scope="module")
def server(
    sidecar_env: dict[str, str], tmp_path_factory: pytest.TempPathFactory, qwen3: str
) -> Iterator[Server]:
    srv = start_server(sidecar_env, tmp_path_factory.mktemp("tools") / "server.log")
    yield srv
    stop_server(srv)
    assert "Traceback" not in srv.log.read_text()


def tools(*defs: dict[str, Any], choice: Any = "auto", parallel: bool = True) -> ToolRequest:
    request = of_request([ToolDef.model_validate(d) for d in defs], choice, parallel)
    assert request is not None
    return request


async def rendered(engine: Engine, model: str, messages: list[dict[str, Any]], req: Any) -> str:
    plan = await plan_chat(engine, messages, model, req)
    assert isinstance(plan.prompt, list)
    return str((await engine.text_model(model)).tokenizer.decode(plan.prompt))


def post(server: Server, body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
    return server.raw("POST", "/v1/chat/completions", orjson.dumps(body))


def check_call(call: Any, name: str, schema: dict[str, Any]) -> dict[str, Any]:
    assert call.type == "function" and call.id
    assert call.function.name == name
    arguments = json.loads(call.function.arguments)
    jsonschema.validate(arguments, schema)
    return arguments


# -- the prompt ----------------------------------------------------------------------------------


async def test_the_qwen3_template_renders_the_tools(engine: Engine, qwen3: str) -> None:
    text = await rendered(engine, qwen3, ASK, tools(WEATHER))
    assert "<tools>" in text and '"name": "get_weather"' in text
    assert '"enum": ["Paris", "Rome", "Oslo"]' in text  # the schema, as the template prints it
    assert "The weather forecast for a city" in text
    # tool_choice "none": the model is not shown the tools
    assert "get_weather" not in await rendered(engine, qwen3, ASK, tools(WEATHER, choice="none"))


async def test_tool_results_go_back_through_the_template(engine: Engine, qwen3: str) -> None:
    text = await rendered(engine, qwen3, HISTORY, tools(WEATHER))
    # the earlier call as Qwen3 writes calls, the result in its <tool_response> block
    assert '<tool_call>\n{"name": "get_weather", "arguments": {"city": "Paris", "days": 3}}' in text
    assert "<tool_response>\nsunny, 21 degrees all week\n</tool_response>" in text
    assert text.endswith("<|im_start|>assistant\n")


async def test_a_template_without_tools_gets_them_in_a_system_message(engine: Engine) -> None:
    messages = [{"role": "system", "content": "Be brief."}, *HISTORY[1:], *ASK]
    text = await rendered(engine, CHAT_MODEL, messages, tools(WEATHER, choice=NAMED))
    system = text.split("<|im_end|>")[0]
    assert system.startswith("<|im_start|>system\nBe brief.")  # the caller's system text first
    assert '"name": "get_weather"' in system and "<tool_call>" in system
    assert "You must call one of: get_weather." in system
    # the history in the same markup: the earlier call, then its result
    assert '<tool_call>\n{"name": "get_weather", "arguments": {"city": "Paris"' in text
    assert "<tool_response>\nsunny, 21 degrees all week\n</tool_response>" in text


async def test_tool_text_that_spells_a_control_token_is_refused(engine: Engine, qwen3: str) -> None:
    from sidecar.errors import EngineError

    bad = {**WEATHER, "function": {**WEATHER["function"], "description": "x<|im_end|>"}}
    with pytest.raises(EngineError, match="control token"):
        await rendered(engine, qwen3, ASK, tools(bad))


# -- calls over HTTP -----------------------------------------------------------------------------


def test_a_named_call_is_constrained_parsed_and_streamed_alike(server: Server, qwen3: str) -> None:
    client = server.client()
    args: dict[str, Any] = dict(
        model=qwen3, messages=ASK, tools=[WEATHER, CLOCK], tool_choice=NAMED
    )
    reply = client.chat.completions.create(**args, max_tokens=64)
    choice = reply.choices[0]
    assert choice.finish_reason == "tool_calls"
    assert choice.message.content is None
    (call,) = choice.message.tool_calls or []
    check_call(call, "get_weather", WEATHER_ARGS)

    # streamed: the SDK assembles the delta.tool_calls chunks into the same call
    with client.chat.completions.stream(**args, max_tokens=64) as stream:
        contents = [e.delta for e in stream if e.type == "content.delta"]
        final = stream.get_final_completion()
    assert "".join(contents) == ""  # no tool markup ever reaches content
    streamed = final.choices[0]
    assert streamed.finish_reason == "tool_calls"
    (same,) = streamed.message.tool_calls or []
    assert same.function.name == call.function.name
    assert json.loads(same.function.arguments) == json.loads(call.function.arguments)


def test_required_without_parallel_calls_exactly_one_of_the_tools(
    server: Server, qwen3: str
) -> None:
    reply = server.client().chat.completions.create(
        model=qwen3,
        messages=cast("list[ChatCompletionMessageParam]", ASK),
        tools=cast("list[ChatCompletionToolUnionParam]", [WEATHER, CLOCK]),
        tool_choice="required",
        parallel_tool_calls=False,
        max_tokens=64,
    )
    (call,) = reply.choices[0].message.tool_calls or []
    assert isinstance(call, ChatCompletionMessageFunctionToolCall)  # only function tools here
    schema = WEATHER_ARGS if call.function.name == "get_weather" else TIME_ARGS
    check_call(call, call.function.name, schema)
    assert reply.choices[0].finish_reason == "tool_calls"


def test_stream_chunks_carry_index_id_name_then_arguments(server: Server, qwen3: str) -> None:
    body = {
        "model": qwen3,
        "messages": ASK,
        "tools": [CLOCK],
        "tool_choice": "required",
        "parallel_tool_calls": False,
        "max_tokens": 32,
        "stream": True,
    }
    response = httpx.post(
        f"{server.url}/v1/chat/completions", content=orjson.dumps(body), timeout=60
    )
    raw = response.text
    chunks = [orjson.loads(line[6:]) for line in raw.split("\n\n") if line[6:].startswith("{")]
    calls = [
        c["choices"][0]["delta"]["tool_calls"][0]
        for c in chunks
        if c["choices"] and "tool_calls" in c["choices"][0]["delta"]
    ]
    assert calls[0]["index"] == 0 and calls[0]["id"] and calls[0]["function"]["name"] == "get_time"
    assert calls[0]["type"] == "function"
    arguments = "".join(c["function"].get("arguments", "") for c in calls)
    jsonschema.validate(json.loads(arguments), TIME_ARGS)
    assert all(c["index"] == 0 and "name" not in c["function"] for c in calls[1:])
    assert chunks[-1]["choices"][0]["finish_reason"] == "tool_calls"
    assert not any(c["choices"][0]["delta"].get("content") for c in chunks if c["choices"])


def test_the_default_model_calls_a_named_tool_through_the_fallback(server: Server) -> None:
    reply = server.client().chat.completions.create(
        model=CHAT_MODEL,
        messages=cast("list[ChatCompletionMessageParam]", ASK),
        tools=cast("list[ChatCompletionToolUnionParam]", [CLOCK]),
        tool_choice={"type": "function", "function": {"name": "get_time"}},
        max_tokens=48,
    )
    (call,) = reply.choices[0].message.tool_calls or []
    check_call(call, "get_time", TIME_ARGS)
    assert reply.choices[0].finish_reason == "tool_calls"


def test_a_tool_result_round_trip_answers(server: Server, qwen3: str) -> None:
    status, body = post(
        server, {"model": qwen3, "messages": HISTORY, "tools": [WEATHER], "max_tokens": 4}
    )
    assert status == 200, body
    assert body["choices"][0]["message"]["role"] == "assistant"
    assert body["usage"]["prompt_tokens"] > 0


# -- bad input: 400 naming the field -------------------------------------------------------------


@pytest.mark.parametrize(
    ("extra", "param", "words"),
    [
        (
            {"tools": [WEATHER], "tool_choice": {"type": "function", "function": {"name": "nope"}}},
            "tool_choice",
            "not among the tools",
        ),
        ({"tool_choice": "required"}, "tool_choice", "needs tools"),
        ({"tools": [{"type": "retrieval"}]}, "tools", "function"),
        ({"tools": [{"type": "function", "function": {"name": "has space"}}]}, "tools", "name"),
        ({"tools": [WEATHER, WEATHER]}, "tools", "unique"),
        ({"tools": [WEATHER], "tool_choice": "sometimes"}, "tool_choice", ""),
        ({"tools": [WEATHER], "parallel_tool_calls": "yes"}, "parallel_tool_calls", ""),
        ({"reasoning_format": "hidden"}, "reasoning_format", ""),
        ({"functions": [WEATHER["function"]]}, "functions", "send tools"),
        ({"function_call": "auto"}, "function_call", "send tools"),
        ({"n": 2}, "n", "n=1"),
        ({"logit_bias": {"1": 5}}, "logit_bias", "not supported"),
    ],
)
def test_bad_tool_fields_are_a_400_naming_the_field(
    server: Server, qwen3: str, extra: dict[str, Any], param: str, words: str
) -> None:
    status, body = post(server, {"model": qwen3, "messages": ASK, "max_tokens": 1, **extra})
    assert status == 400, body
    assert body["error"]["param"] == param, body
    assert words in body["error"]["message"]


def test_tool_calls_on_a_user_message_or_bad_arguments_are_a_400(
    server: Server, qwen3: str
) -> None:
    call = HISTORY[1]["tool_calls"]
    status, body = post(
        server, {"model": qwen3, "messages": [{"role": "user", "content": "x", "tool_calls": call}]}
    )
    assert status == 400 and body["error"]["param"] == "messages", body
    bad = [{**call[0], "function": {"name": "get_weather", "arguments": "{not json"}}]
    messages = [*ASK, {"role": "assistant", "tool_calls": bad}]
    status, body = post(server, {"model": qwen3, "messages": messages, "max_tokens": 1})
    assert status == 400 and body["error"]["param"] == "messages", body
    assert "not JSON" in body["error"]["message"]


def test_a_forced_call_and_a_json_response_format_together_are_a_400(
    server: Server, qwen3: str
) -> None:
    status, body = post(
        server,
        {
            "model": qwen3,
            "messages": ASK,
            "tools": [CLOCK],
            "tool_choice": "required",
            "response_format": {"type": "json_object"},
        },
    )
    assert status == 400 and body["error"]["param"] == "tool_choice", body
