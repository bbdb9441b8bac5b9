"""The workspace index against hostile trees and roots (issue 23, defect 3), on a real
`mlx-sidecar stdio` with its own index folder under a temporary `XDG_CACHE_HOME`: files its
parser cannot chunk, symlinks out of the root, roots that are the whole machine, private index
files, a bounded number of open indexes, and a read bounded by the size limit."""

from __future__ import annotations

import asyncio
import os
import stat
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio
from lsprotocol import types
from pygls.exceptions import JsonRpcException
from pytest_lsp import ClientServerConfig, LanguageClient

from sidecar.workspace.walker import read_text
from tests.helpers.lsp import start_lsp

pytestmark = pytest.mark.asyncio(loop_scope="module")

MAX_OPEN = 3


@pytest.fixture(scope="module")
def xdg(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("xdg-cache")


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def client(sidecar_env: dict[str, str], xdg: Path) -> AsyncIterator[LanguageClient]:
    env = {k: v for k, v in sidecar_env.items() if k != "MLX_SIDECAR_WORKSPACE_INDEX_DIR"}
    env |= {"XDG_CACHE_HOME": str(xdg), "MLX_SIDECAR_WORKSPACE_MAX_OPEN_INDEXES": str(MAX_OPEN)}
    config = ClientServerConfig(
        server_command=[sys.executable, "-m", "sidecar", "stdio"], server_env=env
    )
    lsp = await start_lsp(config)
    await lsp.initialize_session(types.InitializeParams(capabilities=types.ClientCapabilities()))
    yield lsp
    await lsp.shutdown_session()
    await lsp.stop()


async def call(lsp: LanguageClient, method: str, params: Any) -> Any:
    return await asyncio.wait_for(lsp.protocol.send_request_async(method, params), 300)


def project(base: Path, files: dict[str, str]) -> Path:
    base.mkdir(parents=True)
    for name, text in files.items():
        (base / name).write_text(text)
    return base


async def test_a_file_its_parser_cannot_chunk_never_fails_the_root(
    client: LanguageClient, tmp_path: Path
) -> None:
    root = project(
        tmp_path / "deep",
        {
            "attrs.py": "x = a" + ".b" * 100_000 + "\n",  # RecursionError in the parser
            "minus.py": "x = " + "-" * 100_000 + "1\n",  # MemoryError in the parser
            "ok.py": "def add(a, b):\n    return a + b\n",
        },
    )
    result = await call(client, "mlx/workspace/index", {"root": str(root)})
    assert result.run.files_indexed == 3 and result.status.files == 3


async def test_a_symlink_out_of_the_root_is_not_indexed(
    client: LanguageClient, tmp_path: Path
) -> None:
    outside = tmp_path / "outside.txt"
    outside.write_text("the zebra password is hunter2\n")
    root = project(tmp_path / "links", {"notes.txt": "the zebra sleeps at night\n"})
    (root / "leak.txt").symlink_to(outside)
    (root / "inside.txt").symlink_to(root / "notes.txt")  # inside the root: fine
    result = await call(client, "mlx/workspace/index", {"root": str(root)})
    assert result.status.files == 2  # notes.txt and inside.txt
    found = await call(
        client, "mlx/workspace/search", {"query": "zebra password", "root": str(root)}
    )
    assert found.hits and all(h.path != "leak.txt" for h in found.hits)
    assert all("hunter2" not in h.text for h in found.hits)


@pytest.mark.parametrize(
    ("root", "message"),
    [
        ("/", "filesystem root or your home folder"),
        (str(Path.home()), "filesystem root or your home folder"),
        ("/dev/null", "not a folder"),
        ("/tmp/a\0b", "NUL byte"),
    ],
)
async def test_a_root_that_is_the_whole_machine_is_refused(
    client: LanguageClient, root: str, message: str
) -> None:
    with pytest.raises(JsonRpcException) as e:
        await call(client, "mlx/workspace/index", {"root": root})
    assert e.value.code == -32602 and message in str(e.value), e.value


async def test_index_files_are_private_and_under_xdg_cache_home(
    client: LanguageClient, tmp_path: Path, xdg: Path
) -> None:
    root = project(tmp_path / "private", {"a.txt": "private words\n"})
    await call(client, "mlx/workspace/index", {"root": str(root)})
    index_dir = xdg / "mlx-sidecar" / "workspaces"
    assert stat.S_IMODE(index_dir.stat().st_mode) == 0o700
    folders = [p for p in index_dir.iterdir() if p.name.startswith("private-")]
    assert len(folders) == 1 and stat.S_IMODE(folders[0].stat().st_mode) == 0o700
    files = list(folders[0].iterdir())
    assert files and all(stat.S_IMODE(f.stat().st_mode) == 0o600 for f in files), [
        (f.name, oct(f.stat().st_mode)) for f in files
    ]


async def test_the_models_folder_follows_xdg_cache_home(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MLX_SIDECAR_")}
    env["XDG_CACHE_HOME"] = str(tmp_path)
    out = subprocess.run(
        [sys.executable, "-m", "sidecar", "config", "show"],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    ).stdout
    assert f'"{tmp_path}/mlx-sidecar/models"' in out
    assert f'"{tmp_path}/mlx-sidecar/workspaces"' in out


async def test_open_indexes_are_bounded(client: LanguageClient, tmp_path: Path) -> None:
    pid = client._server.pid  # type: ignore[union-attr]

    def index_fds() -> int:
        fds = Path(f"/proc/{pid}/fd")
        return sum("index.sqlite" in os.readlink(fd) for fd in fds.iterdir() if fd.is_symlink())

    for n in range(MAX_OPEN * 4):
        root = project(tmp_path / f"root{n}", {"a.txt": f"file {n}\n"})
        status = await call(client, "mlx/workspace/status", {"root": str(root)})
        assert status.root == str(root)
    assert 0 < index_fds() <= MAX_OPEN * 3  # the database, its -wal and -shm per open index
    again = await call(client, "mlx/workspace/status", {"root": str(tmp_path / "root0")})
    assert again.root == str(tmp_path / "root0")  # a closed index opens again from disk


async def test_the_read_itself_is_bounded(tmp_path: Path) -> None:
    """A file that grew past the limit after the walk listed it is skipped, not read whole
    (the race itself cannot be timed through an edge: `read_text` is what the run calls)."""
    (tmp_path / "grew.txt").write_text("x" * 5000)
    assert read_text(tmp_path, "grew.txt", 4096) is None
    assert read_text(tmp_path, "grew.txt", 5000) == "x" * 5000
    os.mkfifo(tmp_path / "fifo")  # swapped in after the walk: not opened for reading, no hang
    assert read_text(tmp_path, "fifo", 4096) is None
