"""Structured output: grammars enforced by constrained decoding inside the shared batch.

With random weights (tiny-fim-qwen) a model follows no instruction, so valid JSON can only come
from the grammar's mask; with the real SmolLM2 over HTTP, the openai SDK's `parse` helper gets
an object back. Schemas for the random model are finite (enums, bounded lengths and counts), so
every document ends within max_tokens.
"""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Literal, cast

import jsonschema
import openai
import pytest
from openai.types.chat.completion_create_params import ResponseFormat as SDKResponseFormat
from pydantic import BaseModel

from sidecar.engine.constraints import Constraint, ConstraintError, lark_json
from sidecar.engine.engine import Engine
from sidecar.engine.requests import GenerateRequest, Priority
from sidecar.engine.response_format import ResponseFormat, with_json_instruction
from sidecar.models.defaults import CHAT_MODEL
from tests.helpers.http_server import Server, start_server, stop_server
from tests.helpers.waiting import reset_batch_peaks
from tests.tiny_models import tiny_fim_model
from tests.tiny_vlm import tiny_vlm_model

NAME = {"type": "string", "maxLength": 6}
SCHEMAS: list[dict[str, Any]] = [
    {  # nested objects, an enum, a bounded integer, every field required
        "type": "object",
        "properties": {
            "user": {
                "type": "object",
                "properties": {
                    "name": NAME,
                    "age": {"type": "integer", "minimum": 0, "maximum": 120},
                },
                "required": ["name", "age"],
                "additionalProperties": False,
            },
            "role": {"enum": ["admin", "dev", "guest"]},
        },
        "required": ["user", "role"],
        "additionalProperties": False,
    },
    {  # arrays of enums and of objects, a boolean
        "type": "object",
        "properties": {
            "tags": {"type": "array", "items": {"enum": ["red", "green"]}, "maxItems": 3},
            "points": {
                "type": "array",
                "items": {
                    "type": "object",
                    "properties": {"x": {"type": "integer", "minimum": -9, "maximum": 9}},
                    "required": ["x"],
                    "additionalProperties": False,
                },
                "minItems": 1,
                "maxItems": 2,
            },
            "ok": {"type": "boolean"},
        },
        "required": ["tags", "points", "ok"],
        "additionalProperties": False,
    },
    {"type": "array", "items": {"enum": [1, 2, 3]}, "minItems": 2, "maxItems": 4},
]
FREE_PROMPTS = ["def add(a, b):", "Once upon a time", "import numpy as"]


@pytest.fixture(scope="module")
def tiny(models_dir: Path) -> str:
    return tiny_fim_model(models_dir, "qwen")


def constrained(model: str, schema: dict[str, Any], **kw: Any) -> GenerateRequest:
    return GenerateRequest(
        prompt="Answer:",
        model=model,
        max_tokens=120,
        constraint=Constraint.json_schema(schema, strict=True),
        **kw,
    )


# -- the engine --------------------------------------------------------------------------------


async def test_constrained_and_free_requests_decode_in_one_batch(engine: Engine, tiny: str) -> None:
    free = [GenerateRequest(prompt=p, model=tiny, max_tokens=24) for p in FREE_PROMPTS]
    solo = [(await engine.complete(r)).text for r in free]
    guided = [constrained(tiny, s) for s in SCHEMAS]
    guided += [constrained(tiny, s, temperature=1.0, seed=i) for i, s in enumerate(SCHEMAS)]
    reset_batch_peaks(engine)
    again = [GenerateRequest(prompt=p, model=tiny, max_tokens=24) for p in FREE_PROMPTS]
    results = await asyncio.gather(*[engine.complete(r) for r in [*guided, *again]])
    assert engine.status().max_batch_seen >= len(results) // 2
    for req, result in zip(guided, results, strict=False):
        assert result.finish_reason == "stop", result.text  # ended by the grammar, not the limit
        jsonschema.validate(json.loads(result.text), SCHEMAS[guided.index(req) % len(SCHEMAS)])
    assert [r.text for r in results[len(guided) :]] == solo  # free rows untouched by the masks


async def test_a_lark_grammar_with_embedded_json_constrains_tool_call_markup(
    engine: Engine, tiny: str
) -> None:
    args = SCHEMAS[0]
    grammar = f'start: "<tool_call>" {lark_json(args)} "</tool_call>"'
    req = GenerateRequest(
        prompt="Call a tool:", model=tiny, max_tokens=120, constraint=Constraint.lark(grammar)
    )
    result = await engine.complete(req)
    found = re.fullmatch(r"<tool_call>(.*)</tool_call>", result.text, re.S)
    assert found is not None, result.text
    jsonschema.validate(json.loads(found.group(1)), args)
    assert result.finish_reason == "stop"


async def test_constrained_completion_skips_speculation_and_reuses_the_prompt_cache(
    engine: Engine, tiny: str
) -> None:
    """A greedy completion decoding alone would leave the batch for prompt-lookup drafts, which
    bypass the mask; a constrained one stays in the batch. Its KV is still cached: the same
    request again reuses the prompt and makes the same document."""
    prompt = "x = [1, 2, 3]\ny = [1, 2, 3]\nz = [1, 2, 3]\n" * 4
    schema = SCHEMAS[2]

    def req() -> GenerateRequest:
        return GenerateRequest(
            prompt=prompt,
            model=tiny,
            max_tokens=40,
            priority=Priority.COMPLETION,
            constraint=Constraint.json_schema(schema),
        )

    drafted = engine.status().draft_tokens.drafted
    first = await engine.complete(req())
    second = await engine.complete(req())
    jsonschema.validate(json.loads(first.text), schema)
    assert second.text == first.text
    assert second.cached_prompt_tokens > 0
    assert engine.status().draft_tokens.drafted == drafted


async def test_a_document_cut_by_max_tokens_ends_with_length(engine: Engine, tiny: str) -> None:
    req = constrained(tiny, SCHEMAS[0])
    req.max_tokens = 3
    result = await engine.complete(req)
    assert result.finish_reason == "length"
    assert result.completion_tokens == 3
    assert result.text.startswith('{"user":')  # the grammar's prefix, forced token by token


async def test_bad_grammars_and_schemas_are_clear_errors_on_response_format() -> None:
    for bad in ({"type": "wizard"}, {"type": "string", "pattern": "(("}, "not a schema"):
        with pytest.raises(ConstraintError) as info:
            Constraint.json_schema(bad)  # type: ignore[arg-type]
        assert info.value.param == "response_format"
    with pytest.raises(ConstraintError, match="Unknown format"):
        Constraint.json_schema({"type": "string", "format": "wizard"}, strict=True)
    Constraint.json_schema({"type": "string", "format": "wizard"}, strict=False)  # ignored
    with pytest.raises(ConstraintError, match="unknown name"):
        Constraint.lark("start: nothing_defined")


async def test_vision_models_refuse_a_constraint(engine: Engine, models_dir: Path) -> None:
    vlm = tiny_vlm_model(models_dir)
    req = GenerateRequest(prompt="hi", model=vlm, max_tokens=4, constraint=Constraint.json_object())
    with pytest.raises(ConstraintError, match="text models only"):
        await engine.complete(req)


def test_json_instruction_only_when_no_message_mentions_json() -> None:
    fmt = ResponseFormat(type="json_object")
    asked = [{"role": "user", "content": "Reply in JSON please"}]
    assert with_json_instruction(asked, fmt) == asked
    plain = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi"}]
    told = with_json_instruction(plain, fmt)
    assert told[0]["content"].startswith("Be brief.") and "JSON" in told[0]["content"]
    assert with_json_instruction(plain, ResponseFormat(type="text")) == plain


# -- the OpenAI port, real SmolLM2 --------------------------------------------------------------


class City(BaseModel):
    name: str
    country: str
    size: Literal["small", "big"]


@pytest.fixture(scope="module")
def server(
    sidecar_env: dict[str, str], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Server]:
    srv = start_server(sidecar_env, tmp_path_factory.mktemp("structured") / "server.log")
    yield srv
    stop_server(srv)
    assert "Traceback" not in srv.log.read_text()


def test_sdk_parse_returns_the_pydantic_object(server: Server) -> None:
    reply = server.client().chat.completions.parse(
        model=CHAT_MODEL,
        messages=[{"role": "user", "content": "Describe Paris."}],
        response_format=City,
        max_tokens=48,
    )
    choice = reply.choices[0]
    assert choice.finish_reason == "stop"
    assert isinstance(choice.message.parsed, City)
    assert choice.message.parsed.name


def test_json_object_streams_a_json_object(server: Server) -> None:
    stream = server.client().chat.completions.create(
        model=CHAT_MODEL,
        messages=[{"role": "user", "content": "Give a person's name and age."}],
        response_format={"type": "json_object"},
        max_tokens=48,
        stream=True,
    )
    chunks = list(stream)
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert chunks[-1].choices[0].finish_reason == "stop"
    assert isinstance(json.loads(text), dict)


def test_text_completions_take_a_response_format(server: Server) -> None:
    schema = {"enum": ["yes", "no"]}
    reply = server.client().completions.create(
        model=CHAT_MODEL,
        prompt="Is the sky blue? Answer:",
        max_tokens=8,
        extra_body={
            "response_format": {
                "type": "json_schema",
                "json_schema": {"name": "a", "schema": schema},
            }
        },
    )
    assert json.loads(reply.choices[0].text) in ("yes", "no")
    assert reply.choices[0].finish_reason == "stop"


CYCLE = {
    "$defs": {"A": {"$ref": "#/$defs/B"}, "B": {"$ref": "#/$defs/A"}},
    "$ref": "#/$defs/A",
}
SELF_REQUIRED = {"type": "object", "properties": {"x": {"$ref": "#"}}, "required": ["x"]}


@pytest.mark.parametrize(
    "fmt",
    [
        {"type": "json_schema", "json_schema": {"name": "x", "schema": {"type": "wizard"}}},
        {"type": "json_schema", "json_schema": {"name": "x"}},
        {"type": "json_schema", "json_schema": {"name": "x", "schema": {}, "strict": "yes"}},
        {"type": "yaml"},
        # issue 23: an A -> B -> A $ref cycle was a 200 with empty content and "stop"
        {"type": "json_schema", "json_schema": {"name": "x", "schema": CYCLE}},
        # issue 23: a required self-recursive object was a 500 with llguidance's state dump
        {"type": "json_schema", "json_schema": {"name": "x", "schema": SELF_REQUIRED}},
    ],
)
def test_a_bad_response_format_is_a_400_naming_it(server: Server, fmt: dict[str, Any]) -> None:
    with pytest.raises(openai.BadRequestError) as info:
        server.client().chat.completions.create(
            model=CHAT_MODEL,
            messages=[{"role": "user", "content": "hi"}],
            response_format=cast("SDKResponseFormat", fmt),  # malformed on purpose, sent as is
        )
    assert info.value.param == "response_format"
    assert "<state>" not in info.value.message and "<grammar>" not in info.value.message
    assert server.health()["status"] == "ok"


def test_a_recursive_schema_with_a_way_out_is_served(server: Server) -> None:
    """A tree whose children are optional (or may be empty) is fine: bounded, valid JSON."""
    tree: dict[str, Any] = {
        "type": "object",
        "properties": {
            "name": {"type": "string", "maxLength": 8},
            "children": {"type": "array", "items": {"$ref": "#"}, "maxItems": 1},
        },
        "required": ["name"],
    }
    reply = server.client().chat.completions.create(
        model=CHAT_MODEL,
        messages=[{"role": "user", "content": "A family tree as JSON."}],
        max_tokens=40,
        response_format={"type": "json_schema", "json_schema": {"name": "t", "schema": tree}},
    )
    assert reply.choices[0].finish_reason in ("stop", "length")  # not refused, not an error
    if reply.choices[0].finish_reason == "stop":
        jsonschema.validate(json.loads(reply.choices[0].message.content or ""), tree)
