"""Tools over JSON-RPC (issue 11): `mlx/chat` takes `tools` / `tool_choice`; `mlx/chat/delta`
carries the calls as they complete; the result carries `tool_calls` and `finish_reason:
"tool_calls"`. A real `mlx-sidecar stdio` driven by pytest-lsp, on the tiny Qwen3."""

from __future__ import annotations

import asyncio
import json
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import pytest_asyncio
from lsprotocol import types
from pygls.exceptions import JsonRpcException
from pytest_lsp import ClientServerConfig, LanguageClient

from tests.helpers.lsp import start_lsp
from tests.test_tools import ASK, CLOCK, HISTORY, TIME_ARGS, WEATHER
from tests.tiny_models import tiny_qwen3_model

pytestmark = pytest.mark.asyncio(loop_scope="module")


@pytest.fixture(scope="module")
def qwen3(models_dir: Path) -> str:
    return tiny_qwen3_model(models_dir)


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def client(sidecar_env: dict[str, str], qwen3: str) -> AsyncIterator[LanguageClient]:
    config = ClientServerConfig(
        server_command=[sys.executable, "-m", "sidecar", "stdio"], server_env=sidecar_env
    )
    client = await start_lsp(config)
    await client.initialize_session(types.InitializeParams(capabilities=types.ClientCapabilities()))
    deltas: list[Any] = []
    client.deltas = deltas  # type: ignore[attr-defined]
    client.feature("mlx/chat/delta")(lambda params: deltas.append(params))
    yield client
    await client.shutdown_session()
    await client.stop()


async def chat(client: LanguageClient, **params: Any) -> Any:
    return await asyncio.wait_for(client.protocol.send_request_async("mlx/chat", params), 120)


async def test_a_required_call_streams_and_returns_the_same_call(
    client: LanguageClient, qwen3: str
) -> None:
    client.deltas.clear()  # type: ignore[attr-defined]
    result = await chat(
        client,
        model=qwen3,
        messages=ASK,
        tools=[CLOCK],
        toolChoice="required",  # camelCase, as the editor sends it
        parallel_tool_calls=False,
        max_tokens=32,
        stream_token="tools-1",
    )
    assert result.finish_reason == "tool_calls"
    (call,) = result.tool_calls
    assert call.name == "get_time" and call.id
    jsonschema.validate(json.loads(call.arguments), TIME_ARGS)
    assert result.text == ""
    deltas = [d for d in client.deltas if d.stream_token == "tools-1"]  # type: ignore[attr-defined]
    streamed = [c for d in deltas for c in d.tool_calls or []]
    assert [(c.id, c.name, c.arguments) for c in streamed] == [(call.id, call.name, call.arguments)]
    assert "".join(d.delta for d in deltas) == ""  # no markup as text


async def test_a_tool_result_round_trip_runs(client: LanguageClient, qwen3: str) -> None:
    result = await chat(client, model=qwen3, messages=HISTORY, tools=[WEATHER], max_tokens=3)
    assert result.finish_reason in ("stop", "length", "tool_calls")
    assert result.usage.prompt_tokens > 100  # the tools, the call and its result


@pytest.mark.parametrize(
    ("params", "words"),
    [
        (
            {"tools": [CLOCK], "tool_choice": {"type": "function", "function": {"name": "x"}}},
            "not among the tools",
        ),
        ({"tool_choice": "required"}, "needs tools"),
        ({"tools": [{"type": "code_interpreter"}]}, "tools"),
        (
            {
                "messages": [
                    {"role": "user", "content": "x", "tool_calls": HISTORY[1]["tool_calls"]}
                ]
            },
            "only assistant messages",
        ),
    ],
)
async def test_bad_tool_params_are_invalid_params(
    client: LanguageClient, qwen3: str, params: dict[str, Any], words: str
) -> None:
    with pytest.raises(JsonRpcException) as info:
        await chat(client, **{"model": qwen3, "messages": ASK, "max_tokens": 1, **params})
    assert info.value.code == -32602
    assert words in str(info.value)
