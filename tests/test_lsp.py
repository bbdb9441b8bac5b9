"""The editor's JSON-RPC server, driven over stdio by a real LSP client (pytest-lsp) on the real
default models. One server per module: the model loads happen once."""

from __future__ import annotations

import asyncio
import json
import sys
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio
from lsprotocol import types
from pygls.exceptions import JsonRpcException
from pytest_lsp import ClientServerConfig, LanguageClient

from sidecar import wire
from sidecar.completion.options import CompletionOptions
from sidecar.lsp.status import EditorStatus
from sidecar.models.defaults import CHAT_MODEL, EMBEDDING_MODEL
from tests.helpers.lsp import start_lsp
from tests.helpers.waiting import until
from tests.tiny_models import tiny_fim_model

pytestmark = pytest.mark.asyncio(loop_scope="module")

BUFFER = '''def add(a: int, b: int) -> int:
    """Return the sum of a and b."""
    return 


def main():
    print(add(1, 2))
'''
CURSOR = types.Position(line=2, character=11)  # after "    return "


async def start_client(env: dict[str, str], **init: Any) -> tuple[LanguageClient, Any]:
    config = ClientServerConfig(
        server_command=[sys.executable, "-m", "sidecar", "stdio"], server_env=env
    )
    client = await start_lsp(config)
    result = await client.initialize_session(
        types.InitializeParams(
            capabilities=types.ClientCapabilities(),
            initialization_options={"completion": {"maxTokens": 8, "maxTimeMs": 60000}, **init},
        )
    )
    return client, result


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def session(sidecar_env: dict[str, str]) -> AsyncIterator[tuple[LanguageClient, Any]]:
    client, result = await start_client(sidecar_env)
    deltas: list[Any] = []
    client.deltas = deltas  # type: ignore[attr-defined]
    client.feature("mlx/chat/delta")(lambda params: deltas.append(params))
    changes: list[Any] = []
    client.model_changes = changes  # type: ignore[attr-defined]
    client.feature("mlx/models/changed")(lambda params: changes.append(params))
    yield client, result
    await client.shutdown_session()
    await client.stop()


@pytest.fixture
def client(session: tuple[LanguageClient, Any]) -> LanguageClient:
    return session[0]


async def call(client: LanguageClient, method: str, params: Any = None) -> Any:
    return await asyncio.wait_for(client.protocol.send_request_async(method, params), 120)


async def rpc_error(client: LanguageClient, method: str, params: Any) -> JsonRpcException:
    with pytest.raises(JsonRpcException) as info:
        await call(client, method, params)
    return info.value


def data(error: JsonRpcException) -> dict[str, Any]:
    """The error's `data`: every error the sidecar answers carries its machine code there."""
    assert isinstance(error.data, dict), error
    return error.data


async def requests_done(client: LanguageClient) -> int:
    status = await call(client, "mlx/status")
    return sum(status.requests._asdict().values()) if status.requests else 0


async def wait_idle(client: LanguageClient, timeout: float = 10.0) -> Any:
    """The status once nothing runs or waits (failing after `timeout` seconds)."""

    async def idle() -> bool:
        status = await call(client, "mlx/status")
        return status.running == 0 and status.queue_depth == 0

    await until(idle, timeout=timeout, every=0.1, what="an idle engine")
    return await call(client, "mlx/status")


@pytest.fixture
def doc(client: LanguageClient) -> Iterator[str]:
    """A buffer of this test's own (BUFFER, open for the test, closed after): no test sees what
    another typed."""
    uri = f"file:///workspace/shop-{uuid.uuid4().hex[:8]}.py"
    client.text_document_did_open(
        types.DidOpenTextDocumentParams(
            text_document=types.TextDocumentItem(
                uri=uri, language_id="python", version=1, text=BUFFER
            )
        )
    )
    yield uri
    client.text_document_did_close(
        types.DidCloseTextDocumentParams(text_document=types.TextDocumentIdentifier(uri=uri))
    )


def inline(client: LanguageClient, uri: str, position: types.Position = CURSOR) -> Any:
    return client.text_document_inline_completion_async(
        types.InlineCompletionParams(
            text_document=types.TextDocumentIdentifier(uri=uri),
            position=position,
            context=types.InlineCompletionContext(
                trigger_kind=types.InlineCompletionTriggerKind.Automatic
            ),
        )
    )


async def test_inline_completion_is_advertised(session: tuple[LanguageClient, Any]) -> None:
    capabilities = session[1].capabilities
    assert capabilities.inline_completion_provider
    assert capabilities.text_document_sync is not None


async def test_inline_completion_returns_text_at_the_cursor(
    client: LanguageClient, doc: str
) -> None:
    result = await asyncio.wait_for(inline(client, doc), 120)
    assert isinstance(result, types.InlineCompletionList)
    assert len(result.items) == 1
    item = result.items[0]
    assert isinstance(item.insert_text, str) and item.insert_text.strip(), "empty completion"
    assert "\n\n" not in item.insert_text
    assert item.range == types.Range(start=CURSOR, end=CURSOR)


async def test_inline_completion_at_the_start_of_a_file_is_never_an_error(
    client: LanguageClient, doc: str
) -> None:
    """Line 1, column 0: an empty prefix. A model without FIM tokens (SmolLM2 here) has
    nothing to continue: an empty list, not -32602 "prompt must not be empty"."""
    result = await asyncio.wait_for(inline(client, doc, types.Position(line=0, character=0)), 120)
    assert isinstance(result, types.InlineCompletionList)
    assert not result.items


async def test_typing_through_the_suggestion_uses_the_cache(
    client: LanguageClient, doc: str
) -> None:
    first = (await asyncio.wait_for(inline(client, doc), 120)).items[0].insert_text
    before = await requests_done(client)
    typed = first[0]
    client.text_document_did_change(
        types.DidChangeTextDocumentParams(
            text_document=types.VersionedTextDocumentIdentifier(uri=doc, version=2),
            content_changes=[
                types.TextDocumentContentChangePartial(
                    range=types.Range(start=CURSOR, end=CURSOR), text=typed
                )
            ],
        )
    )
    after_typing = types.Position(line=CURSOR.line, character=CURSOR.character + 1)
    result = await asyncio.wait_for(inline(client, doc, after_typing), 10)
    assert result.items[0].insert_text == first[1:]
    assert result.items[0].range.start == after_typing
    assert await requests_done(client) == before  # served without the model


async def test_cancelled_inline_completion_frees_its_slot(client: LanguageClient, doc: str) -> None:
    # New places, so the cache cannot answer. A machine fast enough to finish a completion
    # before the cancel arrives gets a few tries, then the test says so (a skip, never a pass).
    for attempt, line in enumerate((6, 5, 3)):
        msg_id = f"inline-cancel-{attempt}"
        future = client.protocol.send_request(
            types.TEXT_DOCUMENT_INLINE_COMPLETION,
            types.InlineCompletionParams(
                text_document=types.TextDocumentIdentifier(uri=doc),
                position=types.Position(line=line, character=4),
                context=types.InlineCompletionContext(
                    trigger_kind=types.InlineCompletionTriggerKind.Automatic
                ),
            ),
            msg_id=msg_id,
        )

        async def generating(future: Any = future) -> bool:
            status = await call(client, "mlx/status")
            return status.running > 0 or future.done()

        await until(generating, timeout=30, what="the completion to start")
        client.protocol.notify(types.CANCEL_REQUEST, types.CancelParams(id=msg_id))
        try:
            await asyncio.wait_for(asyncio.wrap_future(future), 30)
        except JsonRpcException as e:
            assert e.code == -32800
            status = await wait_idle(client)
            assert status.running == 0
            return
    pytest.skip("every completion finished before its cancel arrived")


async def test_chat_deltas_concatenate_to_the_reply(client: LanguageClient) -> None:
    client.deltas.clear()  # type: ignore[attr-defined]
    result = await call(
        client,
        "mlx/chat",
        {
            "messages": [{"role": "user", "content": "Say hello."}],
            "max_tokens": 12,
            "temperature": 0,
            "stream_token": "chat-1",
        },
    )
    deltas = [d for d in client.deltas if d.stream_token == "chat-1"]  # type: ignore[attr-defined]
    assert result.text
    assert "".join(d.delta for d in deltas) == result.text
    assert result.finish_reason in ("stop", "length")
    assert result.model == CHAT_MODEL
    assert result.usage.completion_tokens >= 1


async def test_chat_takes_a_response_format(client: LanguageClient) -> None:
    schema = {
        "type": "object",
        "properties": {"answer": {"enum": ["yes", "no"]}, "sure": {"type": "boolean"}},
        "required": ["answer", "sure"],
        "additionalProperties": False,
    }
    fmt = {"type": "json_schema", "json_schema": {"name": "reply", "schema": schema}}
    result = await call(
        client,
        "mlx/chat",
        {
            "messages": [{"role": "user", "content": "Is water wet?"}],
            "max_tokens": 24,
            "response_format": fmt,
        },
    )
    reply = json.loads(result.text)
    assert reply["answer"] in ("yes", "no") and isinstance(reply["sure"], bool)
    assert result.finish_reason == "stop"
    bad = {"type": "json_schema", "json_schema": {"name": "x", "schema": {"type": "wizard"}}}
    error = await rpc_error(
        client,
        "mlx/chat",
        {"messages": [{"role": "user", "content": "hi"}], "response_format": bad},
    )
    assert error.code == -32602 and "response_format" in error.message


async def test_cancelled_chat_returns_32800_and_frees_its_slot(client: LanguageClient) -> None:
    client.deltas.clear()  # type: ignore[attr-defined]
    future = client.protocol.send_request(
        "mlx/chat",
        {
            "messages": [{"role": "user", "content": "Count from one to one hundred."}],
            "max_tokens": 256,  # far more than it gets to make
            "stream_token": "chat-2",
        },
        msg_id="chat-cancel",
    )
    await until(lambda: client.deltas, timeout=60, what="a delta")  # type: ignore[attr-defined]
    client.protocol.notify(types.CANCEL_REQUEST, types.CancelParams(id="chat-cancel"))
    with pytest.raises(JsonRpcException) as info:
        await asyncio.wait_for(asyncio.wrap_future(future), 30)
    assert info.value.code == -32800
    status = await wait_idle(client, timeout=3)  # 256 tokens would take half a minute
    assert status.running == 0


async def test_embeddings(client: LanguageClient) -> None:
    result = await call(client, "mlx/embed", {"input": ["def add(a, b):", "hello"]})
    assert len(result.data) == 2
    assert all(len(v) == 384 for v in result.data)
    assert result.model == EMBEDDING_MODEL
    assert result.usage.prompt_tokens > 0


async def test_models_list_shows_roles(client: LanguageClient) -> None:
    await call(client, "mlx/models/load", {"model": CHAT_MODEL})
    result = await call(client, "mlx/models/list")
    by_id = {m.id: m for m in result.models}
    assert by_id[CHAT_MODEL].kind == "text"
    assert set(by_id[CHAT_MODEL].roles) == {"completion", "chat"}
    assert by_id[EMBEDDING_MODEL].roles == ["embedding"]
    assert by_id[CHAT_MODEL].loaded


async def test_model_select_sets_the_role(client: LanguageClient) -> None:
    result = await call(client, "mlx/models/select", {"role": "chat", "model": CHAT_MODEL})
    assert result.roles.chat == CHAT_MODEL
    status = await call(client, "mlx/status")
    assert status.roles.chat == CHAT_MODEL
    error = await rpc_error(client, "mlx/models/select", {"role": "chat", "model": EMBEDDING_MODEL})
    assert error.code == -32602 and "embedding model" in error.message
    assert data(error)["code"] == "wrong_model_kind"
    error = await rpc_error(client, "mlx/models/select", {"role": "chat", "model": "no-such-model"})
    assert error.code == -32602 and "no-such-model" in error.message
    error = await rpc_error(client, "mlx/models/select", {"role": "vision", "model": CHAT_MODEL})
    assert error.code == -32602 and "role" in error.message


async def test_load_select_and_unload_a_fim_model(
    client: LanguageClient, models_dir: Path, doc: str
) -> None:
    model = tiny_fim_model(models_dir, "qwen")
    loaded = await call(client, "mlx/models/load", {"model": model})
    assert loaded.id == model and loaded.kind == "text"
    assert any(c.reason == "loaded" and c.model == model for c in client.model_changes)  # type: ignore[attr-defined]
    await call(client, "mlx/models/select", {"role": "completion", "model": model})
    before = await requests_done(client)
    result = await asyncio.wait_for(inline(client, doc), 120)  # FIM prompt, random weights
    assert isinstance(result, types.InlineCompletionList)
    assert await requests_done(client) > before  # the role change bypassed the cache
    listed = {m.id: m for m in (await call(client, "mlx/models/list")).models}
    assert listed[model].fim == "qwen" and listed[model].roles == ["completion"]
    unloaded = await call(client, "mlx/models/unload", {"model": model})
    assert unloaded.unloaded
    await call(client, "mlx/models/select", {"role": "completion", "model": CHAT_MODEL})
    status = await call(client, "mlx/status")
    assert model not in {m.id for m in status.loaded}
    assert status.roles.completion == CHAT_MODEL


async def test_invalid_params_name_the_field(client: LanguageClient) -> None:
    """Each error names the field in its message and carries its machine code in `data.code`,
    which the editor branches on (never on the message)."""
    error = await rpc_error(client, "mlx/chat", {"max_tokens": 4})
    assert error.code == -32602 and "messages" in error.message
    assert data(error)["code"] == "invalid_params" and data(error)["fields"] == ["messages"]
    error = await rpc_error(
        client, "mlx/chat", {"messages": [{"role": "user", "content": "hi"}], "max_tokens": -1}
    )
    assert error.code == -32602 and "max_tokens" in error.message
    error = await rpc_error(client, "mlx/embed", {"input": []})
    assert error.code == -32602 and "input" in error.message
    error = await rpc_error(client, "mlx/embed", ["not", "an", "object"])
    assert error.code == -32602 and data(error)["code"] == "invalid_params"
    error = await rpc_error(
        client, "mlx/chat", {"messages": [{"role": "user", "content": "x"}], "model": "nope"}
    )
    assert error.code == -32602 and "nope" in error.message
    assert data(error) == {"code": "model_not_found", "param": "model"}
    error = await rpc_error(client, "mlx/no-such-method", {})
    assert error.code == -32601 and data(error)["code"] == "method_not_found"
    status = await call(client, "mlx/status")  # still serving
    assert status.healthy


async def test_status_reports_engine_and_roles(client: LanguageClient) -> None:
    await call(client, "mlx/models/load", {"model": CHAT_MODEL})  # loaded whatever ran before
    status = await call(client, "mlx/status")
    assert {m.id for m in status.loaded} >= {CHAT_MODEL}
    assert status.roles.completion == CHAT_MODEL
    assert status.memory.active_bytes > 0
    assert status.http_url is None
    assert status.completion.max_tokens == 8


def plain(value: Any) -> Any:
    """pygls hands replies over as namedtuples: back to the JSON they came as."""
    if hasattr(value, "_asdict"):
        return {k: plain(v) for k, v in value._asdict().items()}
    return [plain(v) for v in value] if isinstance(value, list) else value


async def test_replies_and_notifications_have_the_wire_shapes(client: LanguageClient) -> None:
    """What the server sends parses as the models protocol.ts is generated from, which refuse
    unknown fields: the extension's types describe the real replies."""
    await call(client, "mlx/models/load", {"model": CHAT_MODEL})  # whatever ran before
    EditorStatus.model_validate(plain(await call(client, "mlx/status")))
    listed = wire.ModelList.model_validate(plain(await call(client, "mlx/models/list")))
    chat_entry = next(m for m in listed.models if m.id == CHAT_MODEL)
    assert chat_entry.object == "model" and chat_entry.fim is None and chat_entry.loaded
    await call(client, "mlx/models/select", {"role": "chat", "model": CHAT_MODEL})
    change = wire.ModelsChanged.model_validate(plain(client.model_changes[-1]))  # type: ignore[attr-defined]
    assert change.reason == "selected" and change.model == CHAT_MODEL
    assert {m.id for m in change.models} == {m.id for m in listed.models}


async def test_completions_and_chat_from_many_buffers_share_a_batch(
    client: LanguageClient,
) -> None:
    others = []
    for i in range(2):
        uri = f"file:///workspace/other{i}.py"
        text = f"def square{i}(x):\n    return "
        client.text_document_did_open(
            types.DidOpenTextDocumentParams(
                text_document=types.TextDocumentItem(
                    uri=uri, language_id="python", version=1, text=text
                )
            )
        )
        others.append(
            client.text_document_inline_completion_async(
                types.InlineCompletionParams(
                    text_document=types.TextDocumentIdentifier(uri=uri),
                    position=types.Position(line=1, character=11),
                    context=types.InlineCompletionContext(
                        trigger_kind=types.InlineCompletionTriggerKind.Invoked
                    ),
                )
            )
        )
    chat = call(
        client,
        "mlx/chat",
        {"messages": [{"role": "user", "content": "Name a fruit."}], "max_tokens": 8},
    )
    results = await asyncio.wait_for(asyncio.gather(chat, *others), 120)
    assert results[0].text
    assert all(isinstance(r, types.InlineCompletionList) for r in results[1:])
    status = await wait_idle(client)
    assert status.max_batch_seen >= 2


async def test_unknown_role_model_in_settings_is_reported_and_ignored(
    client: LanguageClient,
) -> None:
    client.workspace_did_change_configuration(
        types.DidChangeConfigurationParams(settings={"models": {"chat": "missing-model"}})
    )
    await until(
        lambda: any("missing-model" in m.message for m in client.messages),
        timeout=10,
        what="a warning shown",
    )
    status = await call(client, "mlx/status")
    assert status.roles.chat == CHAT_MODEL
    assert any("missing-model" in m.message for m in client.log_messages)  # the output pane


async def test_configuration_change_applies(client: LanguageClient) -> None:
    def configure(max_tokens: int) -> None:
        client.workspace_did_change_configuration(
            types.DidChangeConfigurationParams(
                settings={"mlxSidecar": {"completion": {"maxTokens": max_tokens}}}
            )
        )

    configure(6)
    try:
        status = await call(client, "mlx/status")
        assert status.completion.max_tokens == 6
        assert status.completion.prefix_tokens == CompletionOptions().prefix_tokens  # kept
        assert status.completion.max_time_ms == 60000
    finally:
        configure(8)  # what the session started with: the other tests see it


async def test_closed_buffers_leave_the_context_ring(client: LanguageClient) -> None:
    other = "file:///workspace/tax.py"
    before = (await call(client, "mlx/completion/stats")).ring_chunks
    client.text_document_did_open(
        types.DidOpenTextDocumentParams(
            text_document=types.TextDocumentItem(
                uri=other, language_id="python", version=1, text="RATE = 0.2\n"
            )
        )
    )
    assert (await call(client, "mlx/completion/stats")).ring_chunks == before + 1
    client.text_document_did_close(
        types.DidCloseTextDocumentParams(text_document=types.TextDocumentIdentifier(uri=other))
    )
    assert (await call(client, "mlx/completion/stats")).ring_chunks == before


async def test_repo_name_comes_from_the_workspace_folder() -> None:
    from sidecar.lsp.lifecycle import workspace_name

    folders = [types.WorkspaceFolder(uri="file:///src/shop", name="shop")]
    caps = types.ClientCapabilities()
    assert workspace_name(types.InitializeParams(caps, workspace_folders=folders)) == "shop"
    assert (
        workspace_name(types.InitializeParams(caps, root_uri="file:///src/my%20app/")) == "my app"
    )
    assert workspace_name(types.InitializeParams(caps)) is None
