"""The port's other API dialects through the official SDKs against a real `mlx-sidecar serve` on
SmolLM2: OpenAI's Responses API (`openai` client.responses) and Anthropic's Messages API
(`anthropic` client.messages), both thin edges over the engine's one chat turn."""

from __future__ import annotations

import base64
import io
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any, cast

import anthropic
import jsonschema
import openai
import pytest
from openai.types.responses import FunctionToolParam
from PIL import Image

from sidecar.models.defaults import CHAT_MODEL
from tests.helpers.http_server import Server, start_server, stop_server
from tests.tiny_vlm import tiny_vlm_model

CITY: dict[str, Any] = {
    "type": "object",
    "properties": {"city": {"type": "string", "maxLength": 12}},
    "required": ["city"],
    "additionalProperties": False,
}
# No `strict`: the SDK's type requires the key, but it is optional on the wire (sent as written).
WEATHER = cast(
    "FunctionToolParam",
    {
        "type": "function",
        "name": "get_weather",
        "description": "The weather in a city",
        "parameters": CITY,
    },
)
ASK = "What is the weather in Paris? Use the tool."


@pytest.fixture(scope="module")
def vlm_model(models_dir: Path) -> str:
    return tiny_vlm_model(models_dir)


@pytest.fixture(scope="module")
def server(
    sidecar_env: dict[str, str], tmp_path_factory: pytest.TempPathFactory, vlm_model: str
) -> Iterator[Server]:
    srv = start_server(sidecar_env, tmp_path_factory.mktemp("dialects") / "server.log")
    yield srv
    stop_server(srv)
    assert "Traceback" not in srv.log.read_text()


@pytest.fixture(scope="module")
def oai(server: Server) -> openai.OpenAI:
    return server.client()


@pytest.fixture(scope="module")
def claude(server: Server) -> anthropic.Anthropic:
    return anthropic.Anthropic(base_url=server.url, api_key="unused", max_retries=0, timeout=120)


# -- Responses ---------------------------------------------------------------------------------


def test_responses_text_and_its_stream_agree(oai: openai.OpenAI) -> None:
    whole = oai.responses.create(
        model=CHAT_MODEL, input="Name a color.", instructions="Be brief.", max_output_tokens=5
    )
    assert whole.object == "response" and whole.output_text.strip()
    assert whole.usage is not None and whole.usage.output_tokens == 5
    assert whole.status == "incomplete"  # cut by max_output_tokens, as OpenAI says it
    with oai.responses.stream(
        model=CHAT_MODEL, input="Name a color.", instructions="Be brief.", max_output_tokens=5
    ) as stream:
        events = list(stream)
    kinds = [e.type for e in events]
    assert kinds[0] == "response.created" and kinds[-1] == "response.incomplete"
    assert "response.output_item.added" in kinds and "response.output_item.done" in kinds
    deltas = "".join(e.delta for e in events if e.type == "response.output_text.delta")
    assert deltas == whole.output_text  # greedy: the same turn, streamed
    last = events[-1]
    assert last.type == "response.incomplete"
    message = last.response.output[0]
    assert message.type == "message"
    part = message.content[0]
    assert part.type == "output_text"
    assert part.text == deltas


def test_responses_json_schema_output_validates(oai: openai.OpenAI) -> None:
    reply = oai.responses.create(
        model=CHAT_MODEL,
        input="Which city is the capital of France? Answer in JSON.",
        text={"format": {"type": "json_schema", "name": "city", "schema": CITY, "strict": True}},
        max_output_tokens=40,
    )
    assert reply.status == "completed"
    jsonschema.validate(json.loads(reply.output_text), CITY)


def forced_call(oai: openai.OpenAI, **extra: Any) -> Any:
    return oai.responses.create(
        model=CHAT_MODEL,
        input=ASK,
        tools=[WEATHER],
        tool_choice={"type": "function", "name": "get_weather"},
        max_output_tokens=60,
        **extra,
    )


def test_responses_forced_function_call_then_its_output(oai: openai.OpenAI) -> None:
    reply = forced_call(oai)
    calls = [item for item in reply.output if item.type == "function_call"]
    assert len(calls) == 1 and calls[0].name == "get_weather"
    jsonschema.validate(json.loads(calls[0].arguments), CITY)
    call = calls[0]
    asked: list[Any] = [{"role": "user", "content": ASK}]
    called = [
        *asked,
        {
            "type": "function_call",
            "call_id": call.call_id,
            "name": call.name,
            "arguments": call.arguments,
        },
    ]
    answered = [
        *called,
        {
            "type": "function_call_output",
            "call_id": call.call_id,
            "output": "Sunny, 24 degrees Celsius.",
        },
    ]
    without = oai.responses.create(model=CHAT_MODEL, input=called, max_output_tokens=4)
    after = oai.responses.create(
        model=CHAT_MODEL,
        input=answered,
        tools=[WEATHER],
        max_output_tokens=12,
    )
    assert after.output[0].type == "message" and after.output_text
    assert after.usage is not None and without.usage is not None
    assert after.usage.input_tokens > without.usage.input_tokens  # the output reached the prompt


def test_responses_tool_choice_none_calls_no_tool(oai: openai.OpenAI) -> None:
    reply = oai.responses.create(
        model=CHAT_MODEL, input=ASK, tools=[WEATHER], tool_choice="none", max_output_tokens=20
    )
    assert reply.output and all(item.type != "function_call" for item in reply.output)


def test_responses_streamed_function_call_arguments(oai: openai.OpenAI) -> None:
    with oai.responses.stream(
        model=CHAT_MODEL,
        input=ASK,
        tools=[WEATHER],
        tool_choice="required",
        parallel_tool_calls=False,
        max_output_tokens=60,
    ) as stream:
        events = list(stream)
        final = stream.get_final_response()
    arguments = "".join(
        e.delta for e in events if e.type == "response.function_call_arguments.delta"
    )
    done = [e for e in events if e.type == "response.function_call_arguments.done"]
    assert done and done[0].arguments == arguments
    jsonschema.validate(json.loads(arguments), CITY)
    assert [i.type for i in final.output] == ["function_call"]


def test_responses_previous_response_id_carries_the_conversation(oai: openai.OpenAI) -> None:
    first = oai.responses.create(model=CHAT_MODEL, input="My name is Ada.", max_output_tokens=4)
    second = oai.responses.create(
        model=CHAT_MODEL,
        input="What is my name?",
        previous_response_id=first.id,
        max_output_tokens=4,
    )
    alone = oai.responses.create(model=CHAT_MODEL, input="What is my name?", max_output_tokens=4)
    assert first.usage and second.usage and alone.usage
    # the earlier turn (its question and answer) is in the prompt
    assert second.usage.input_tokens > alone.usage.input_tokens + first.usage.output_tokens
    assert second.previous_response_id == first.id
    assert oai.responses.retrieve(first.id).output_text == first.output_text
    oai.responses.delete(first.id)
    with pytest.raises(openai.NotFoundError):
        oai.responses.retrieve(first.id)
    unstored = oai.responses.create(model=CHAT_MODEL, input="Hi.", store=False, max_output_tokens=2)
    with pytest.raises(openai.NotFoundError) as info:
        oai.responses.create(model=CHAT_MODEL, input="Again.", previous_response_id=unstored.id)
    assert info.value.code == "previous_response_not_found"


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ({"input": []}, "input"),
        ({"input": "Hi", "tools": [{"type": "web_search"}]}, "tools"),
        ({"input": "Hi", "max_output_tokens": "5"}, "max_output_tokens"),
        ({"input": [{"type": "function_call_output", "output": "x"}]}, "input"),
        (
            {
                "input": [
                    {"role": "user", "content": [{"type": "input_image", "image_url": "http://x"}]}
                ]
            },
            "input",
        ),
        ({"input": "Hi", "text": {"format": {"type": "json_schema", "name": "x"}}}, "text"),
    ],
)
def test_responses_bad_input_is_an_openai_400(
    server: Server, body: dict[str, Any], param: str
) -> None:
    status, reply = server.raw(
        "POST", "/v1/responses", json.dumps({"model": CHAT_MODEL, **body}).encode()
    )
    assert status == 400, reply
    assert reply["error"]["type"] == "invalid_request_error"
    assert reply["error"]["param"] == param and reply["error"]["message"]


# -- Messages ----------------------------------------------------------------------------------


def test_messages_text_stream_and_count_tokens_agree(claude: anthropic.Anthropic) -> None:
    ask: Any = [{"role": "user", "content": "Name a color."}]
    whole = claude.messages.create(model=CHAT_MODEL, max_tokens=10, messages=ask)
    assert whole.type == "message" and whole.stop_reason == "max_tokens"
    text = whole.content[0].text  # type: ignore[union-attr]
    assert text.strip() and whole.usage.output_tokens == 10
    with claude.messages.stream(model=CHAT_MODEL, max_tokens=10, messages=ask) as stream:
        streamed = "".join(stream.text_stream)
        final = stream.get_final_message()
    assert streamed == text == final.content[0].text  # type: ignore[union-attr]
    counted = claude.messages.count_tokens(model=CHAT_MODEL, messages=ask)
    assert counted.input_tokens == whole.usage.input_tokens == final.usage.input_tokens


def test_messages_system_prompt_reaches_the_prompt(claude: anthropic.Anthropic) -> None:
    ask: Any = [{"role": "user", "content": "Name a color."}]
    system = "You are a painter who answers in one word."
    plain = claude.messages.count_tokens(model=CHAT_MODEL, messages=ask)
    told = claude.messages.create(
        model=CHAT_MODEL,
        max_tokens=4,
        system=system,
        messages=ask,
        extra_body={"temperature": 0.0},
    )
    blocks = claude.messages.create(
        model=CHAT_MODEL, max_tokens=4, system=[{"type": "text", "text": system}], messages=ask
    )
    # SmolLM2's template has a default system prompt: the caller's stands in its place
    with_system = claude.messages.count_tokens(model=CHAT_MODEL, messages=ask, system=system)
    assert told.usage.input_tokens == with_system.input_tokens != plain.input_tokens
    assert blocks.usage.input_tokens == told.usage.input_tokens
    assert blocks.content == told.content


TOOL: Any = {"name": "get_weather", "description": "The weather in a city", "input_schema": CITY}


def test_messages_forced_tool_use_then_its_result(claude: anthropic.Anthropic) -> None:
    ask: Any = [{"role": "user", "content": ASK}]
    reply = claude.messages.create(
        model=CHAT_MODEL,
        max_tokens=60,
        messages=ask,
        tools=[TOOL],
        tool_choice={"type": "tool", "name": "get_weather"},
    )
    assert reply.stop_reason == "tool_use"
    uses = [b for b in reply.content if b.type == "tool_use"]
    assert len(uses) == 1 and uses[0].name == "get_weather"
    jsonschema.validate(uses[0].input, CITY)
    used = [*ask, {"role": "assistant", "content": [uses[0].model_dump()]}]
    result = {"type": "tool_result", "tool_use_id": uses[0].id, "content": "Sunny, 24 C."}
    answered = [*used, {"role": "user", "content": [result]}]
    after = claude.messages.create(model=CHAT_MODEL, max_tokens=12, messages=answered, tools=[TOOL])
    assert after.content[0].type == "text" and after.stop_reason in ("end_turn", "max_tokens")
    without = claude.messages.count_tokens(model=CHAT_MODEL, messages=used[:1], tools=[TOOL])
    assert after.usage.input_tokens > without.input_tokens


def test_messages_tool_choice_none_uses_no_tool(claude: anthropic.Anthropic) -> None:
    reply = claude.messages.create(
        model=CHAT_MODEL,
        max_tokens=20,
        messages=[{"role": "user", "content": ASK}],
        tools=[TOOL],
        tool_choice={"type": "none"},
    )
    assert reply.content and all(block.type != "tool_use" for block in reply.content)
    assert reply.stop_reason in ("end_turn", "max_tokens")


def test_messages_streamed_tool_use_sends_input_json(claude: anthropic.Anthropic) -> None:
    with claude.messages.stream(
        model=CHAT_MODEL,
        max_tokens=60,
        tools=[TOOL],
        tool_choice={"type": "any", "disable_parallel_tool_use": True},
        messages=[{"role": "user", "content": ASK}],
    ) as stream:
        events = list(stream)
        final = stream.get_final_message()
    kinds = [e.type for e in events]
    assert kinds[0] == "message_start" and kinds[-1] == "message_stop"
    partial = "".join(
        e.delta.partial_json
        for e in events
        if e.type == "content_block_delta" and e.delta.type == "input_json_delta"
    )
    jsonschema.validate(json.loads(partial), CITY)
    assert final.stop_reason == "tool_use"
    assert final.content[-1].type == "tool_use" and final.content[-1].input == json.loads(partial)


def test_messages_stop_sequences_end_the_text(claude: anthropic.Anthropic) -> None:
    ask: Any = [{"role": "user", "content": "Count from one to ten in words."}]
    free = claude.messages.create(model=CHAT_MODEL, max_tokens=16, messages=ask)
    text = free.content[0].text  # type: ignore[union-attr]
    words = text.split()
    assert len(words) > 3, text
    stop = words[2]
    cut = claude.messages.create(
        model=CHAT_MODEL, max_tokens=16, messages=ask, stop_sequences=[stop]
    )
    assert cut.stop_reason == "stop_sequence" and cut.stop_sequence == stop
    assert cut.content[0].text == text[: text.index(stop)]  # type: ignore[union-attr]


def test_messages_bad_input_gets_anthropic_errors(
    claude: anthropic.Anthropic, server: Server
) -> None:
    ask: Any = [{"role": "user", "content": "Hi"}]
    bad: list[dict[str, Any]] = [
        {"messages": ask},  # no max_tokens
        {"max_tokens": 4, "messages": []},
        {"max_tokens": 4, "messages": ask, "temperature": 5},
        {"max_tokens": 4, "messages": ask, "top_k": 3},
        {
            "max_tokens": 4,
            "messages": [
                {
                    "role": "user",
                    "content": [
                        {
                            "type": "image",
                            "source": {"type": "url", "url": "http://example.com/a.png"},
                        }
                    ],
                }
            ],
        },
        {"max_tokens": 4, "messages": ask, "tools": [{"type": "web_search_20250305", "name": "w"}]},
        {
            "max_tokens": 4,
            "messages": ask,
            "tool_choice": {"type": "tool", "name": "nope"},
            "tools": [TOOL],
        },
    ]
    for body in bad:
        status, reply = server.raw(
            "POST", "/v1/messages", json.dumps({"model": CHAT_MODEL, **body}).encode()
        )
        assert status == 400, (body, reply)
        assert reply["type"] == "error" and reply["error"]["type"] == "invalid_request_error"
        assert reply["error"]["message"]
    with pytest.raises(anthropic.NotFoundError) as info:
        claude.messages.create(model="no-such-model", max_tokens=4, messages=ask)
    assert info.value.body["error"]["type"] == "not_found_error"  # type: ignore[index]
    status, reply = server.raw("POST", "/v1/messages/count_tokens", b"{not json")
    assert status == 400 and reply["error"]["type"] == "invalid_request_error"


def ledger(server: Server) -> tuple[int, int]:
    """Requests and completion tokens the usage ledger holds for the local chat model."""
    labels = f'{{model="{CHAT_MODEL}",upstream="local"}}'
    counts = {}
    for line in server.text("/metrics").splitlines():
        for name in ("requests", "completion_tokens"):
            if line.startswith(f"mlx_sidecar_usage_{name}_total{labels} "):
                counts[name] = int(float(line.rsplit(" ", 1)[1]))
    return counts.get("requests", 0), counts.get("completion_tokens", 0)


def test_both_dialects_are_counted_in_the_usage_ledger(
    server: Server, oai: openai.OpenAI, claude: anthropic.Anthropic
) -> None:
    requests, tokens = ledger(server)
    reply = oai.responses.create(model=CHAT_MODEL, input="Hi.", max_output_tokens=3)
    message = claude.messages.create(
        model=CHAT_MODEL, max_tokens=3, messages=[{"role": "user", "content": "Hi."}]
    )
    assert reply.usage is not None
    spent = reply.usage.output_tokens + message.usage.output_tokens
    assert ledger(server) == (requests + 2, tokens + spent)


def test_an_image_is_the_same_turn_in_all_three_dialects(
    oai: openai.OpenAI, claude: anthropic.Anthropic, vlm_model: str
) -> None:
    buf = io.BytesIO()
    Image.new("RGB", (32, 32), "red").save(buf, format="PNG")
    data = base64.b64encode(buf.getvalue()).decode()
    url = f"data:image/png;base64,{data}"
    question = "What is in this picture?"
    chat = oai.chat.completions.create(
        model=vlm_model,
        max_tokens=4,
        messages=[
            {
                "role": "user",
                "content": [
                    {"type": "text", "text": question},
                    {"type": "image_url", "image_url": {"url": url}},
                ],
            }
        ],
    )
    parts: Any = [
        {"type": "input_text", "text": question},
        {"type": "input_image", "image_url": url},
    ]
    response = oai.responses.create(
        model=vlm_model, max_output_tokens=4, input=[{"role": "user", "content": parts}]
    )
    image = {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": data}}
    blocks: Any = [{"type": "text", "text": question}, image]
    message = claude.messages.create(
        model=vlm_model, max_tokens=4, messages=[{"role": "user", "content": blocks}]
    )
    assert chat.usage is not None and response.usage is not None
    assert response.output_text == message.content[0].text == chat.choices[0].message.content  # type: ignore[union-attr]
    assert response.usage.input_tokens == message.usage.input_tokens == chat.usage.prompt_tokens
