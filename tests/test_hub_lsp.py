"""`mlx/models/search|download|delete` over JSON-RPC on stdio, with `$/progress`, both kinds of
cancel and the `mlx/models/changed` notification, against the local test hub.

The server is the real `mlx-sidecar stdio` (its LSP server registers `sidecar.lsp.downloads`)
on an empty models directory."""

from __future__ import annotations

import asyncio
import sys
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any, cast

import pytest
from lsprotocol import types
from pygls.exceptions import JsonRpcException
from pytest_lsp import ClientServerConfig, LanguageClient

from tests.helpers.lsp import start_lsp
from tests.helpers.waiting import until
from tests.hub_server import MINILM, SMOLLM, TINY, HubServer, default_repos

Progress = types.WorkDoneProgressBegin | types.WorkDoneProgressReport | types.WorkDoneProgressEnd


def reports_of(client: LanguageClient, token: str) -> list[Progress]:
    """The `$/progress` values reported for `token`. pytest-lsp declares `progress_reports` as
    lists of `ProgressParams`, but it stores each report's value, structured as one of these."""
    return cast("list[Progress]", client.progress_reports[token])


@pytest.fixture(scope="module")
def hub_server(models_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[HubServer]:
    with HubServer(default_repos(models_dir, tmp_path_factory.mktemp("hub-extra"))) as server:
        yield server


@pytest.fixture
async def client(
    hub_server: HubServer, sidecar_env: dict[str, str], tmp_path: Path
) -> AsyncIterator[LanguageClient]:
    hub_server.delay_s = 0.0
    env = dict(sidecar_env)
    env.pop("HF_HUB_OFFLINE", None)
    env.pop("HF_TOKEN", None)
    env.update(
        HF_ENDPOINT=hub_server.url,
        HF_HOME=str(tmp_path / "hf-home"),
        MLX_SIDECAR_MODELS_DIR=str(tmp_path / "models"),
    )
    config = ClientServerConfig(
        server_command=[sys.executable, "-m", "sidecar", "stdio"], server_env=env
    )
    lsp = await start_lsp(config)
    assert isinstance(lsp, LanguageClient)
    changes: list[Any] = []
    lsp.changes = changes  # type: ignore[attr-defined]

    @lsp.feature("mlx/models/changed")
    def on_changed(params: Any) -> None:
        lsp.changes.append(params)  # type: ignore[attr-defined]

    await lsp.initialize_session(
        types.InitializeParams(
            capabilities=types.ClientCapabilities(
                window=types.WindowClientCapabilities(work_done_progress=True)
            )
        )
    )
    yield lsp
    hub_server.delay_s = 0.0
    await lsp.shutdown_session()
    await lsp.stop()


async def request(lsp: LanguageClient, method: str, params: dict[str, Any]) -> Any:
    return await asyncio.wait_for(lsp.protocol.send_request_async(method, params), 120)


async def test_search(client: LanguageClient) -> None:
    result = await request(client, "mlx/models/search", {"query": ""})
    ids = [m.id for m in result.models]
    assert ids[:3] == [SMOLLM, MINILM, TINY]
    tiny = result.models[2]
    assert tiny.kind == "text" and tiny.fim == "qwen" and tiny.size_bytes > 10_000_000


async def test_download_reports_progress_then_the_list_changes_and_delete(
    client: LanguageClient, tmp_path: Path
) -> None:
    token = "pull-1"
    client.progress_reports[token] = []
    result = await request(client, "mlx/models/download", {"repo": TINY, "workDoneToken": token})
    assert result.model.id == TINY and result.model.fim == "qwen"
    reports = reports_of(client, token)
    begin = reports[0]
    assert isinstance(begin, types.WorkDoneProgressBegin)
    assert begin.kind == "begin" and begin.cancellable
    assert reports[-1].kind == "end" and TINY in (reports[-1].message or "")
    percents: list[int] = []
    for r in reports:
        if isinstance(r, types.WorkDoneProgressReport):  # pytest-lsp's class for kind "report"
            assert r.percentage is not None
            percents.append(r.percentage)
    assert percents and percents[-1] == 100 and percents == sorted(percents)
    for _ in range(50):
        if client.changes:  # type: ignore[attr-defined]
            break
        await asyncio.sleep(0.1)
    change = client.changes[0]  # type: ignore[attr-defined]
    assert change.reason == "downloaded" and change.model == TINY
    assert [m.id for m in change.models] == [TINY]

    with pytest.raises(JsonRpcException, match="invalid model id") as refused:
        await request(client, "mlx/models/delete", {"id": "../models"})
    assert refused.value.code == -32602
    deleted = await request(client, "mlx/models/delete", {"id": TINY})
    assert deleted.deleted == TINY
    assert not (tmp_path / "models" / "mlx-community" / "tiny-fim-qwen").exists()
    for _ in range(50):
        if len(client.changes) > 1:  # type: ignore[attr-defined]
            break
        await asyncio.sleep(0.1)
    assert client.changes[1].reason == "deleted" and client.changes[1].models == []  # type: ignore[attr-defined]


async def test_missing_repo_is_a_clear_error(client: LanguageClient) -> None:
    with pytest.raises(JsonRpcException, match="no model 'mlx-community/nope'") as missing:
        await request(client, "mlx/models/download", {"repo": "mlx-community/nope"})
    assert missing.value.code == -32001
    with pytest.raises(JsonRpcException, match="missing 'repo'"):
        await request(client, "mlx/models/download", {})


async def wait_for_bytes(client: LanguageClient, token: str) -> None:
    await until(
        lambda: any(
            isinstance(r, types.WorkDoneProgressReport) and (r.percentage or 0) > 0
            for r in reports_of(client, token)
        ),
        timeout=15,
        what="progress reported",
    )


@pytest.mark.parametrize("how", ["workDoneProgress/cancel", "$/cancelRequest"])
async def test_cancel_stops_the_download_and_leaves_nothing(
    client: LanguageClient, hub_server: HubServer, tmp_path: Path, how: str
) -> None:
    hub_server.delay_s = 0.005
    token = f"pull-{how}"
    client.progress_reports[token] = []
    msg_id = f"download-{how}"
    pending = asyncio.wrap_future(
        client.protocol.send_request(
            "mlx/models/download", {"repo": MINILM, "workDoneToken": token}, msg_id=msg_id
        )
    )
    await wait_for_bytes(client, token)
    if how == "$/cancelRequest":
        client.protocol.notify(types.CANCEL_REQUEST, types.CancelParams(id=msg_id))
    else:
        client.protocol.notify(
            types.WINDOW_WORK_DONE_PROGRESS_CANCEL, types.WorkDoneProgressCancelParams(token=token)
        )
    with pytest.raises(JsonRpcException) as cancelled:
        await asyncio.wait_for(pending, 30)
    assert cancelled.value.code == -32800
    assert reports_of(client, token)[-1].kind == "end"
    models = tmp_path / "models"
    for _ in range(50):  # a $/cancelRequest answers at once; the files go a moment later
        if not (models / ".downloads").exists():
            break
        await asyncio.sleep(0.1)
    assert not (models / ".downloads").exists()
    assert not (models / "mlx-community").exists()
