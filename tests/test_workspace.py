"""The workspace index and `@workspace` retrieval on the real embedding model (all-MiniLM-L6-v2)
over a fixture repo of ~35 files (tests/fixtures/workspace-repo): chunking, `.gitignore` and
binaries, retrieval quality on 10 written questions, incremental updates counted by the run's own
embedded-text counter, cancellation, and the JSON-RPC methods and `@workspace` chat on a real
`mlx-sidecar stdio`. The repo is indexed once per module; the server reuses that index on disk
(it finds every file unchanged), so the slow CPU embedding happens once."""

from __future__ import annotations

import asyncio
import json
import shutil
import sys
import threading
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio
from lsprotocol import types
from pygls.exceptions import JsonRpcException
from pytest_lsp import ClientServerConfig, LanguageClient

from sidecar.config import Settings
from sidecar.engine.engine import Engine
from sidecar.engine.requests import Priority
from sidecar.errors import IndexCancelled
from sidecar.workspace.chunker import chunk_file
from sidecar.workspace.index import WorkspaceIndex
from sidecar.workspace.pacing import POLL_S, Pacer
from sidecar.workspace.registry import Workspaces
from sidecar.workspace.walker import walk
from tests.helpers.lsp import start_lsp
from tests.helpers.waiting import until

FIXTURES = Path(__file__).parent / "fixtures"
REPO = FIXTURES / "workspace-repo"
QUESTIONS = json.loads((FIXTURES / "workspace-questions.json").read_text())


def make_repo(dest: Path) -> Path:
    """The fixture repo plus what git cannot hold for it: files its .gitignore ignores."""
    shutil.copytree(REPO, dest)
    (dest / ".env").write_text("BOOKSHELF_SECRET=do-not-index-me\n")
    (dest / "server.log").write_text("GET /books 200\n" * 50)
    (dest / "secrets").mkdir()
    (dest / "secrets" / "keys.py").write_text("API_KEY = 'do-not-index-me'\n")
    (dest / "data.bin").write_bytes(bytes(range(256)) * 8)
    return dest


# -- no model -----------------------------------------------------------------------------------


def test_python_is_chunked_by_function_and_class() -> None:
    text = (REPO / "parser" / "parser.py").read_text()
    chunks = chunk_file("parser/parser.py", text)
    symbols = [c.symbol for c in chunks]
    assert {"Num", "BinOp", "parse"} <= set(symbols)
    parse = next(c for c in chunks if c.symbol == "parse")
    lines = text.split("\n")
    assert lines[parse.start_line - 1].startswith("def parse(")
    assert "\n".join(lines[parse.start_line - 1 : parse.end_line]) == parse.text
    assert chunks[0].start_line == 1  # the module docstring and imports are a chunk too


def test_a_large_class_is_cut_into_its_methods() -> None:
    methods = "\n".join(f"    def m{i}(self):\n" + "        x = 1\n" * 8 for i in range(8))
    chunks = chunk_file("big.py", f"class Big:\n    '''Doc.'''\n\n{methods}\n")
    assert [c.symbol for c in chunks][:3] == ["Big", "Big.m0", "Big.m1"]
    assert all(c.end_line - c.start_line < 40 for c in chunks)


def test_other_languages_are_cut_at_top_level_blocks() -> None:
    text = (REPO / "web" / "static" / "app.js").read_text()
    chunks = chunk_file("web/static/app.js", text)
    assert len(chunks) >= 2
    assert "loadBooks" in {c.symbol for c in chunks}
    covered = {n for c in chunks for n in range(c.start_line, c.end_line + 1)}
    assert covered == set(range(1, len(text.rstrip("\n").split("\n")) + 1))


def test_a_file_that_does_not_parse_falls_back_to_lines() -> None:
    text = "def broken(:\n" + "    pass\n" * 150
    chunks = chunk_file("broken.py", text)
    assert chunks and all(c.end_line - c.start_line + 1 <= 40 for c in chunks)
    assert chunks[-1].end_line == 151


def test_walker_honours_gitignore_and_skips_binaries_and_huge_files(tmp_path: Path) -> None:
    repo = make_repo(tmp_path / "repo")
    (repo / "huge.txt").write_text("x" * 5000)
    paths = {e.path for e in walk(repo, max_file_bytes=4096, max_files=1000)}
    assert "bookshelf/auth.py" in paths and "web/static/app.js" in paths
    assert not {".env", "server.log", "secrets/keys.py", "huge.txt"} & paths
    assert "utils/__init__.py" not in paths  # empty


class SteppedClock:
    """Time that moves only when the code under test sleeps: no wall-clock in the asserts."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.now += seconds


async def test_the_indexer_waits_for_a_quiet_engine_and_sends_less_after_activity() -> None:
    polls = {"n": 0}

    def typing_for_five_polls() -> Priority | None:
        polls["n"] += 1
        return Priority.COMPLETION if polls["n"] <= 5 else None

    def pacer(clock: SteppedClock, urgent: Any, activity: Any = None, **kw: Any) -> Pacer:
        return Pacer(urgent, activity, idle_texts=16, clock=clock, sleep=clock.sleep, **kw)

    clock = SteppedClock()
    idle = pacer(clock, lambda: None, busy_texts=2, quiet_s=0.05)
    assert await idle.next_size() == 16 and idle.waited_s == 0  # long idle: big calls at once
    clock = SteppedClock()
    busy = pacer(clock, typing_for_five_polls, busy_texts=2, quiet_s=0.05)
    assert await busy.next_size() == 2  # the user was just active: a small call
    assert polls["n"] > 5  # it waited the activity out, then quiet_s more
    assert busy.waited_s == pytest.approx(4 * POLL_S + 0.05, abs=POLL_S)
    clock = SteppedClock()
    stuck = pacer(clock, lambda: None, clock, quiet_s=1, max_wait_s=0.1)
    assert await stuck.next_size() == 1  # the user types on: one text after max_wait_s anyway
    assert stuck.waited_s == pytest.approx(0.1, abs=POLL_S)


# -- on the embedding model ---------------------------------------------------------------------


class Indexed:
    def __init__(self, index: WorkspaceIndex, first_run: Any, index_dir: Path) -> None:
        self.index = index
        self.first_run = first_run
        # The status right after the first run: later tests change the repo and the index.
        self.first_status = index.status()
        self.index_dir = index_dir


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def indexed(
    engine: Engine, settings: Settings, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[Indexed]:
    base = tmp_path_factory.mktemp("workspace")
    repo = make_repo(base / "repo")
    index_dir = base / "indexes"
    workspaces = Workspaces(engine, settings.model_copy(update={"workspace_index_dir": index_dir}))
    index = workspaces.get(repo)
    run = await index.index()
    yield Indexed(index, run, index_dir)
    workspaces.close()


async def test_first_run_indexes_the_text_files_only(indexed: Indexed) -> None:
    run, status = indexed.first_run, indexed.first_status
    assert run.files_skipped == 2  # static/logo.png and data.bin: binaries
    assert run.files_indexed == status["files"] == run.files_seen - 2
    assert run.texts_embedded == run.chunks_stored == status["chunks"] > run.files_indexed
    paths = {h.path for h in await indexed.index.search("secret api key do not index", 20)}
    assert not {".env", "secrets/keys.py", "server.log"} & paths


async def hits_in_top3(index: WorkspaceIndex, mode: Any) -> int:
    found = 0
    for q in QUESTIONS:
        hits = await index.search(q["question"], 3, mode)
        found += q["file"] in {h.path for h in hits}
    return found


async def test_the_right_file_is_in_the_top_3_for_8_of_10_questions(indexed: Indexed) -> None:
    scores = {m: await hits_in_top3(indexed.index, m) for m in ("embedding", "lexical", "fused")}
    print("top-3 hits of 10:", scores)
    assert scores["embedding"] >= 8  # the default mode (sidecar/lsp/workspace.py)
    assert scores["fused"] >= 8


async def test_an_unchanged_workspace_embeds_nothing(indexed: Indexed) -> None:
    await indexed.index.index()  # whatever earlier tests changed is indexed now
    files = indexed.index.status()["files"]
    run = await indexed.index.index()
    assert (run.texts_embedded, run.files_indexed) == (0, 0)
    assert run.files_unchanged == files


async def test_changing_one_file_re_embeds_only_its_changed_chunks(indexed: Indexed) -> None:
    index = indexed.index
    path = index.root / "utils" / "dates.py"
    before = chunk_file("utils/dates.py", path.read_text())
    path.write_text(
        path.read_text() + "\n\ndef weekday_name(day):\n    return day.strftime('%A')\n"
    )
    run = await index.index()
    after = chunk_file("utils/dates.py", path.read_text())
    assert run.files_indexed == 1
    assert 1 <= run.texts_embedded <= len(after)
    assert run.texts_embedded == len(set(after) - set(before))  # unchanged chunks kept
    hits = await index.search("name of the day of the week", 3, "embedding")
    assert hits[0].path == "utils/dates.py" and hits[0].symbol == "weekday_name"


async def test_update_applies_an_edit_a_delete_and_a_rename(indexed: Indexed) -> None:
    index = indexed.index
    (index.root / "bookshelf" / "cache.py").unlink()
    (index.root / "utils" / "retry.py").rename(index.root / "utils" / "backoff.py")
    (index.root / "utils" / "slugify.py").write_text(
        "def slugify(text):\n    return '-'.join(text.lower().split())\n"
    )
    run = await index.update(
        changed=[str(index.root / "utils" / "slugify.py")],
        deleted=["bookshelf/cache.py"],
        renamed=[("utils/retry.py", str(index.root / "utils" / "backoff.py"))],
    )
    assert (run.files_deleted, run.files_renamed) == (1, 1)
    assert run.texts_embedded == 1  # only slugify's one new chunk: the rename moved its vectors
    paths = [h.path for h in await index.search("retry with exponential backoff", 3, "embedding")]
    assert paths[0] == "utils/backoff.py" and "utils/retry.py" not in paths
    files = index.store.files()
    assert "bookshelf/cache.py" not in files and "utils/retry.py" not in files


async def test_a_cancelled_run_leaves_no_half_indexed_file(
    engine: Engine, settings: Settings, tmp_path: Path
) -> None:
    repo = tmp_path / "small"
    repo.mkdir()
    for i in range(6):
        body = "\n\n".join(f"def f{i}_{j}(x):\n    return x + {j}\n" for j in range(3))
        (repo / f"m{i}.py").write_text(body)
    small = settings.model_copy(
        update={"workspace_index_dir": tmp_path / "idx", "workspace_embed_batch": 9}
    )
    index = Workspaces(engine, small).get(repo)
    cancel = threading.Event()
    with pytest.raises(IndexCancelled):
        await index.index(lambda done, total, _: cancel.set() if done else None, cancel)
    stored = index.store.files()
    assert 0 < len(stored) < 6
    assert all(r.chunks == 3 for r in stored.values())  # whole files only
    assert index.store.counts()[1] == 3 * len(stored)
    rest = await index.index()
    assert rest.texts_embedded == 3 * (6 - len(stored))
    assert index.store.counts()[:2] == (6, 18)
    index.store.close()


# -- over JSON-RPC --------------------------------------------------------------------------------


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def client(indexed: Indexed, sidecar_env: dict[str, str]) -> AsyncIterator[LanguageClient]:
    env = {**sidecar_env, "MLX_SIDECAR_WORKSPACE_INDEX_DIR": str(indexed.index_dir)}
    config = ClientServerConfig(
        server_command=[sys.executable, "-m", "sidecar", "stdio"], server_env=env
    )
    client = await start_lsp(config)
    await client.initialize_session(
        types.InitializeParams(
            capabilities=types.ClientCapabilities(
                window=types.WindowClientCapabilities(work_done_progress=True)
            ),
            workspace_folders=[types.WorkspaceFolder(uri=indexed.index.root.as_uri(), name="repo")],
        )
    )
    yield client
    await client.shutdown_session()
    await client.stop()


async def call(client: LanguageClient, method: str, params: Any = None) -> Any:
    return await asyncio.wait_for(client.protocol.send_request_async(method, params), 300)


async def test_index_over_rpc_reuses_the_index_on_disk_and_reports_progress(
    client: LanguageClient, indexed: Indexed
) -> None:
    status = await call(client, "mlx/workspace/status", {})
    assert status.root is None or status.files > 0
    client.progress_reports["ix1"] = []  # a token the client chose for the request
    result = await call(client, "mlx/workspace/index", {"workDoneToken": "ix1"})
    assert result.run.texts_embedded == 0  # every file as the test's own runs left it
    assert result.status.root == str(indexed.index.root)
    assert result.status.files == indexed.index.status()["files"]
    kinds = [getattr(p, "kind", None) for p in client.progress_reports.get("ix1", [])]
    assert kinds[0] == "begin" and kinds[-1] == "end"
    full = await call(client, "mlx/status")
    assert full.workspace.files == result.status.files and full.workspace.last_indexed_at


async def test_search_over_rpc(client: LanguageClient) -> None:
    result = await call(
        client, "mlx/workspace/search", {"query": "how are passwords hashed?", "k": 3}
    )
    assert result.hits[0].path == "bookshelf/auth.py"
    assert result.hits[0].start_line >= 1 and "pbkdf2" in result.hits[0].text


async def test_update_over_rpc_indexes_a_new_file(client: LanguageClient, indexed: Indexed) -> None:
    new = indexed.index.root / "utils" / "isbn.py"
    new.write_text(
        "def isbn13_check_digit(digits):\n"
        "    total = sum(int(d) * (1 if i % 2 == 0 else 3) for i, d in enumerate(digits))\n"
        "    return (10 - total % 10) % 10\n"
    )
    result = await call(client, "mlx/workspace/update", {"changed": [new.as_uri()]})
    assert (result.run.files_indexed, result.run.texts_embedded) == (1, 1)
    hits = await call(client, "mlx/workspace/search", {"query": "ISBN check digit", "k": 1})
    assert hits.hits[0].path == "utils/isbn.py"


async def test_at_workspace_chat_cites_the_right_file(client: LanguageClient) -> None:
    question = "@workspace How are user passwords hashed and verified?"
    result = await call(
        client,
        "mlx/chat",
        {"messages": [{"role": "user", "content": question}], "max_tokens": 8},
    )
    assert result.sources and result.sources[0].path == "bookshelf/auth.py"
    assert result.usage.prompt_tokens > 200  # the excerpts went into the prompt
    plain = await call(
        client, "mlx/chat", {"messages": [{"role": "user", "content": "Hi"}], "max_tokens": 2}
    )
    assert plain.sources == []


async def test_completions_get_workspace_chunks_as_cross_file_context(
    client: LanguageClient, indexed: Indexed
) -> None:
    uri = (indexed.index.root / "bookshelf" / "report.py").as_uri()
    text = (
        "from bookshelf.pagination import paginate\n\n\n"
        "def books_page(books, number, size):\n"
        '    """One page of the shelf, split into pages of size books."""\n'
        "    return "
    )
    client.text_document_did_open(
        types.DidOpenTextDocumentParams(
            text_document=types.TextDocumentItem(
                uri=uri, language_id="python", version=1, text=text
            )
        )
    )
    params = types.InlineCompletionParams(
        text_document=types.TextDocumentIdentifier(uri=uri),
        position=types.Position(line=5, character=11),
        context=types.InlineCompletionContext(
            trigger_kind=types.InlineCompletionTriggerKind.Automatic
        ),
    )

    async def has_workspace_context() -> bool:  # the first completion starts the lookup
        await asyncio.wait_for(client.text_document_inline_completion_async(params), 120)
        stats = await call(client, "mlx/completion/stats")
        return bool(stats.context_chunks > 0)  # no other buffer is open: the index gave them

    await until(has_workspace_context, timeout=240, every=0.2)


async def test_bad_workspace_params_are_clear_errors(client: LanguageClient) -> None:
    for method, params, word in [
        ("mlx/workspace/search", {"query": ""}, "query"),
        ("mlx/workspace/search", {"query": "x", "k": 0}, "k"),
        ("mlx/workspace/index", {"root": "/no/such/folder"}, "not a folder"),
        ("mlx/workspace/index", {"root": "relative/path"}, "absolute"),
        ("mlx/workspace/update", {"renamed": [{"old": "a"}]}, "new"),
    ]:
        with pytest.raises(JsonRpcException) as e:
            await call(client, method, params)
        assert e.value.code == -32602 and word in str(e.value), (method, params, e.value)
