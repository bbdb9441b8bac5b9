"""Hub search, pull (progress, resume, cancel, verify), and delete against a local test hub
serving the real default models' files."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from sidecar.config import Settings
from sidecar.engine.engine import Engine
from sidecar.engine.requests import GenerateRequest
from sidecar.errors import InvalidModelIdError
from sidecar.models import hub
from sidecar.models.store import ModelStore
from tests.hub_server import (
    BROKEN,
    GATED,
    MINILM,
    SMOLLM,
    TINY,
    WEIGHTLESS,
    HubServer,
    default_repos,
)


@pytest.fixture(scope="module")
def hub_server(models_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[HubServer]:
    repos = default_repos(models_dir, tmp_path_factory.mktemp("hub-extra"))
    with HubServer(repos) as server, pytest.MonkeyPatch.context() as mp:
        mp.setenv("HF_ENDPOINT", server.url)
        mp.setenv("HF_HOME", str(tmp_path_factory.mktemp("hf-home")))
        mp.delenv("HF_TOKEN", raising=False)
        mp.delenv("HF_HUB_OFFLINE", raising=False)
        yield server


@pytest.fixture
def server(hub_server: HubServer) -> Iterator[HubServer]:
    hub_server.reset_counters()
    yield hub_server
    hub_server.drop_once.clear()
    hub_server.delay_s = 0.0


@pytest.fixture
def store(tmp_path: Path) -> ModelStore:
    return ModelStore(tmp_path / "models", use_hf_cache=False)


def test_search_defaults_to_mlx_community_by_downloads(server: HubServer) -> None:
    results = hub.search("")
    assert [r.id for r in results] == [SMOLLM, MINILM, TINY, WEIGHTLESS]
    by_id = {r.id: r for r in results}
    assert by_id[SMOLLM].kind == "text"
    assert by_id[MINILM].kind == "embedding"
    assert by_id[TINY].fim == "qwen"  # read from its tokenizer_config.json
    assert by_id[SMOLLM].fim is None
    # size = the files a pull fetches (README.md excluded)
    tiny_files = server.repos[TINY].files
    expected = sum(p.stat().st_size for n, p in tiny_files.items() if n != "README.md")
    assert by_id[TINY].size_bytes == expected
    assert by_id[SMOLLM].quantization == "float32"


def test_search_query_and_limit(server: HubServer) -> None:
    assert [r.id for r in hub.search("minilm")] == [MINILM]
    assert len(hub.search("", limit=1)) == 1
    assert [r.id for r in hub.search("gated", author="acme")] == [GATED]


def test_guesses_from_names() -> None:
    assert hub.guess_quantization("mlx-community/Qwen2.5-Coder-7B-Instruct-4bit") == "4-bit"
    assert hub.guess_quantization("mlx-community/Llama-3.2-1B-Instruct-bf16") == "bfloat16"
    assert hub.guess_fim_from_name("mlx-community/Qwen2.5-Coder-1.5B-4bit") == "qwen"
    assert hub.guess_fim_from_name("mlx-community/SmolLM2-135M-Instruct") is None


def test_offline_mode_is_a_clear_error(
    server: HubServer, store: ModelStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(hub.HubError, match="offline"):
        hub.search("x")
    with pytest.raises(hub.HubError, match="offline"):
        hub.download(TINY, store)
    assert server.requests == []


def test_pull_reports_progress_and_lists_only_a_complete_model(
    server: HubServer, store: ModelStore
) -> None:
    events: list[hub.DownloadProgress] = []
    info = hub.download(TINY, store, progress=events.append)
    assert info.id == TINY and info.kind == "text" and info.fim == "qwen"
    assert info.path == store.models_dir / "mlx-community" / "tiny-fim-qwen"
    assert [m.id for m in store.list()] == [TINY]
    assert not (info.path / "README.md").exists()  # only what a model needs
    assert not (store.models_dir / ".downloads").exists()
    total = events[-1].bytes_total
    assert total == sum(p.stat().st_size for p in info.path.iterdir() if p.name != "hub.json")
    done = [e.bytes_done for e in events]
    assert done == sorted(done) and done[-1] == total and done[0] == 0
    assert events[-1].files_done == events[-1].files_total == 6
    assert events[-1].rate_bps > 0 and events[-1].percent == 100
    # a second pull of a present model transfers nothing
    server.reset_counters()
    assert hub.download(TINY, store).path == info.path
    assert server.bytes_sent == 0


def test_interrupted_pull_resumes_where_it_stopped(server: HubServer, store: ModelStore) -> None:
    weights = server.repos[TINY].files["model.safetensors"].stat().st_size
    total = sum(p.stat().st_size for n, p in server.repos[TINY].files.items() if n != "README.md")
    server.drop_once[(TINY, "model.safetensors")] = 6 << 20
    first = hub.DownloadStats()
    with pytest.raises(hub.HubError, match="interrupted.*resume"):
        hub.download(TINY, store, retries=0, stats=first)
    assert store.list() == []  # nothing half-made is listed
    assert 0 < first.transferred_bytes < total

    server.reset_counters()
    second = hub.DownloadStats()
    events: list[hub.DownloadProgress] = []
    info = hub.download(TINY, store, stats=second, progress=events.append)
    assert [m.id for m in store.list()] == [info.id]
    assert second.resumed_bytes >= 6 << 20
    assert server.bytes_sent < weights  # the second pull moved only the rest
    assert second.transferred_bytes + second.resumed_bytes == total
    assert events[0].bytes_done == second.resumed_bytes  # progress starts where it left off
    ranges = [r for method, path, r in server.requests if path.endswith("model.safetensors")]
    assert ranges and ranges[0] is not None and ranges[0].startswith("bytes=")


def test_a_dropped_connection_is_resumed_within_one_pull(
    server: HubServer, store: ModelStore
) -> None:
    total = sum(p.stat().st_size for n, p in server.repos[TINY].files.items() if n != "README.md")
    server.drop_once[(TINY, "model.safetensors")] = 3 << 20
    stats = hub.DownloadStats()
    info = hub.download(TINY, store, stats=stats, verify=False)
    assert info.id == TINY
    body = [r for m, p, r in server.requests if m == "GET" and p.endswith("model.safetensors")]
    assert body == [None, f"bytes={3 << 20}-"]
    # nothing sent twice (counted for this repo: a cancelled pull of another test may still be
    # finishing a 64 KiB write on its own connection)
    assert server.sent_by_repo[TINY] == total
    assert stats.transferred_bytes == total


def test_cancel_stops_the_pull_and_removes_partial_files(
    server: HubServer, store: ModelStore
) -> None:
    server.delay_s = 0.005
    cancel = threading.Event()
    started = threading.Event()
    outcome: list[BaseException] = []

    def on_progress(p: hub.DownloadProgress) -> None:
        if p.bytes_done > 1 << 20:
            started.set()

    def pull() -> None:
        try:
            hub.download(MINILM, store, progress=on_progress, cancel=cancel)
        except BaseException as e:
            outcome.append(e)

    thread = threading.Thread(target=pull)
    thread.start()
    assert started.wait(30)
    cancel.set()
    thread.join(10)
    assert not thread.is_alive()
    assert outcome and isinstance(outcome[0], hub.DownloadCancelledError)
    assert store.list() == []
    assert not (store.models_dir / ".downloads").exists()
    assert list(store.models_dir.iterdir()) == []


def test_missing_gated_and_weightless_repos_are_clear_errors(
    server: HubServer, store: ModelStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    with pytest.raises(hub.HubError, match="no model 'mlx-community/nope'"):
        hub.download("mlx-community/nope", store)
    with pytest.raises(hub.HubError, match="gated.*HF_TOKEN"):
        hub.download(GATED, store)
    with pytest.raises(hub.HubError, match="no .safetensors weights.*import-gguf"):
        hub.download(WEIGHTLESS, store)
    with pytest.raises(InvalidModelIdError):
        hub.download("../etc", store)
    with pytest.raises(InvalidModelIdError, match="owner/name"):
        hub.download("tiny", store)
    assert store.list() == []
    monkeypatch.setenv("HF_TOKEN", server.token or "")
    assert hub.download(GATED, store, verify=False).id == GATED


def test_a_model_that_does_not_load_is_not_listed(server: HubServer, store: ModelStore) -> None:
    with pytest.raises(hub.HubError, match="does not load as a text model"):
        hub.download(BROKEN, store)
    assert store.list() == []
    assert not (store.models_dir / ".downloads").exists()


def test_delete_stays_inside_the_store(
    server: HubServer, store: ModelStore, tmp_path: Path
) -> None:
    hub.download(TINY, store, verify=False)
    outside = tmp_path / "precious"
    outside.mkdir()
    for bad in ("../precious", "mlx-community/../../precious", "/etc", ".."):
        with pytest.raises(InvalidModelIdError):
            hub.delete(store, bad)
    assert outside.is_dir()
    path = hub.delete(store, TINY)
    assert not path.exists() and store.list() == []
    assert not (store.models_dir / "mlx-community").exists()


async def test_pulled_models_load_and_run_while_downloads_continue(
    server: HubServer, tmp_path: Path
) -> None:
    """Pull a text and an embedding model, then run them in a fresh engine while two more
    pulls (slowed down) run in threads: the engine keeps answering meanwhile."""
    store = ModelStore(tmp_path / "models", use_hf_cache=False)
    hub.download(TINY, store)
    settings = Settings(models_dir=store.models_dir, use_hf_cache=False, idle_ttl_s=0)
    async with Engine(settings, store=store) as engine:
        loaded = await engine.load(TINY)
        assert loaded.id == TINY and loaded.size_bytes > 0

        server.delay_s = 0.002
        other = ModelStore(tmp_path / "other", use_hf_cache=False)
        pulls = [
            threading.Thread(target=hub.download, args=(MINILM, store)),
            threading.Thread(target=hub.download, args=(TINY, other), kwargs={"verify": False}),
        ]
        for t in pulls:
            t.start()
        started = time.monotonic()
        result = await engine.complete(
            GenerateRequest(prompt="def add(a, b):", model=TINY, max_tokens=8)
        )
        answered_s = time.monotonic() - started
        assert result.finish_reason in ("stop", "length") and result.completion_tokens > 0
        assert any(t.is_alive() for t in pulls), "downloads finished before the engine answered"
        for t in pulls:
            t.join(60)
        server.delay_s = 0.0
        assert answered_s < 10
        assert {m.id for m in store.list()} == {TINY, MINILM}
        embedded = await engine.embed(["hello world"], model=MINILM)
        assert len(embedded.vectors[0]) == 384


def test_one_repo_downloads_once_at_a_time_and_search_marks_local_models(
    server: HubServer, store: ModelStore
) -> None:
    server.delay_s = 0.005
    started, cancel = threading.Event(), threading.Event()
    outcome: list[object] = []

    def pull() -> None:
        try:
            outcome.append(
                hub.download(MINILM, store, progress=lambda p: started.set(), cancel=cancel)
            )
        except BaseException as e:
            outcome.append(e)

    thread = threading.Thread(target=pull)
    thread.start()
    assert started.wait(30)
    with pytest.raises(hub.HubError, match="already being downloaded"):
        hub.download(MINILM, store)
    cancel.set()
    thread.join(30)
    assert isinstance(outcome[0], hub.DownloadCancelledError)
    server.delay_s = 0.0
    hub.download(TINY, store, verify=False)
    local = {r.id: r.local for r in hub.search("", store=store, details=False)}
    assert local[TINY] and not local[MINILM]


def test_only_the_files_a_model_needs_are_pulled() -> None:
    names = [
        "config.json",
        "model-00001-of-00002.safetensors",
        "model-00002-of-00002.safetensors",
        "model.safetensors.index.json",
        "consolidated.safetensors",
        "tokenizer.json",
        "tokenizer_config.json",
        "chat_template.jinja",
        "preprocessor_config.json",
        "1_Pooling/config.json",
        "onnx/model.safetensors",
        "original/consolidated.00.pth",
        "README.md",
        "model.gguf",
        ".gitattributes",
    ]
    kept = [f.name for f in hub.needed_files(hub.RemoteFile(n, 1, None) for n in names)]
    assert kept == [
        "config.json",
        "model-00001-of-00002.safetensors",
        "model-00002-of-00002.safetensors",
        "model.safetensors.index.json",
        "tokenizer.json",
        "tokenizer_config.json",
        "chat_template.jinja",
        "preprocessor_config.json",
        "1_Pooling/config.json",
    ]
