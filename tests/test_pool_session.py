"""One user session, end to end, with the memory figures: pull two models from the (local test)
hub, load and chat, embed, pull a third model while chatting, switch the chat model (an
eviction), switch back (another), then let the idle TTL unload everything unpinned.

Run with `-s` to see the report; it is also written to $MLX_SIDECAR_SESSION_REPORT (default
`<tmp>/session-report.json`)."""

from __future__ import annotations

import asyncio
import json
import os
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from sidecar.config import Settings
from sidecar.engine.engine import Engine
from sidecar.engine.requests import Delta, GenerateRequest
from sidecar.models import hub
from sidecar.models.sizes import weights_size
from sidecar.models.store import ModelStore
from tests.helpers.prompts import chat_prompt
from tests.hub_server import MINILM, SMOLLM, TINY, HubServer, default_repos

MiB = 2**20


@pytest.fixture(scope="module")
def hub_server(models_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[HubServer]:
    repos = default_repos(models_dir, tmp_path_factory.mktemp("hub-extra"))
    with HubServer(repos) as server, pytest.MonkeyPatch.context() as mp:
        mp.setenv("HF_ENDPOINT", server.url)
        mp.setenv("HF_HOME", str(tmp_path_factory.mktemp("hf-home")))
        mp.delenv("HF_TOKEN", raising=False)
        mp.delenv("HF_HUB_OFFLINE", raising=False)
        yield server


def pull(repo: str, store: ModelStore) -> dict[str, Any]:
    events: list[hub.DownloadProgress] = []
    started = time.perf_counter()
    info = hub.download(repo, store, progress=events.append)
    seconds = time.perf_counter() - started
    return {
        "repo": repo,
        "kind": info.kind,
        "bytes": events[-1].bytes_total,
        "seconds (download + verify)": round(seconds, 2),
        "MB/s (transfer)": round(events[-1].rate_bps / 1e6, 1),
        "progress events": len(events),
    }


def memory(engine: Engine, step: str) -> dict[str, Any]:
    m = engine.status().memory
    return {
        "step": step,
        "loaded": sorted(engine.pool.models),
        "models MiB": round(m.models_bytes / MiB),
        "active MiB": round(m.active_bytes / MiB),
        "peak MiB": round(m.peak_bytes / MiB),
        "budget MiB": round(m.budget_bytes / MiB),
    }


async def chat(engine: Engine, model: str, text: str) -> dict[str, Any]:
    prompt = await chat_prompt(engine, [{"role": "user", "content": text}], model=model)
    result = await engine.complete(GenerateRequest(prompt=prompt, model=model, max_tokens=16))
    return {
        "model": model,
        "answer": result.text,
        "tokens": result.completion_tokens,
        "tokens/s": round(result.tokens_per_s or 0, 1),
    }


async def test_pull_load_chat_switch_evict_session(hub_server: HubServer, tmp_path: Path) -> None:
    report: dict[str, Any] = {"pulls": [], "memory": [], "chats": []}
    store = ModelStore(tmp_path / "models", use_hf_cache=False)
    report["pulls"].append(pull(SMOLLM, store))
    report["pulls"].append(pull(MINILM, store))

    sizes = {m.id: weights_size(m.path) for m in store.list()}
    tiny_size = weights_size(Path(hub_server.repos[TINY].files["model.safetensors"]).parent)
    # room for SmolLM2 + MiniLM, not for a third model beside them
    budget = sizes[SMOLLM] + sizes[MINILM] + tiny_size // 2
    settings = Settings(
        models_dir=store.models_dir, use_hf_cache=False, memory_budget_bytes=budget, idle_ttl_s=0
    )
    async with Engine(settings, store=store) as engine:
        # MLX's active memory is per process: other tests' engines may hold models too.
        baseline = engine.status().memory.active_bytes
        report["memory"].append(memory(engine, "engine started"))
        await engine.load(SMOLLM)
        report["memory"].append(memory(engine, f"load {SMOLLM}"))
        report["chats"].append(await chat(engine, SMOLLM, "What is the capital of France?"))
        report["memory"].append(memory(engine, "chat"))

        embedded = await engine.embed(["def add(a, b): return a + b"], model=MINILM)
        assert len(embedded.vectors[0]) == 384
        report["memory"].append(memory(engine, f"embed with {MINILM}"))
        assert sorted(engine.pool.models) == sorted([SMOLLM, MINILM])

        # pull a third model while SmolLM2 streams an answer
        hub_server.delay_s = 0.002
        pulled: dict[str, Any] = {}
        puller = threading.Thread(target=lambda: pulled.update(pull(TINY, store)))
        puller.start()
        stamps: list[float] = []
        prompt = await chat_prompt(engine, [{"role": "user", "content": "Name three colors."}])
        async for ev in engine.generate(
            GenerateRequest(prompt=prompt, model=SMOLLM, max_tokens=16)
        ):
            if isinstance(ev, Delta):
                stamps.append(time.perf_counter())
        streamed_while_pulling = puller.is_alive()
        await asyncio.to_thread(puller.join, 120)
        hub_server.delay_s = 0.0
        report["pulls"].append(pulled)
        gaps = [b - a for a, b in zip(stamps, stamps[1:], strict=False)]
        report["chat during pull"] = {
            "pull still running when the answer ended": streamed_while_pulling,
            "deltas": len(stamps),
            "max gap between deltas s": round(max(gaps), 3) if gaps else None,
        }
        await engine.embed(["touch"], model=MINILM)  # MiniLM is now fresher than SmolLM2

        # switch the chat model: no room for a third model, SmolLM2 is least recently used
        report["chats"].append(await chat(engine, TINY, "Hello"))
        report["memory"].append(memory(engine, f"switch chat to {TINY}"))
        assert sorted(engine.pool.models) == sorted([MINILM, TINY])
        assert any(e.startswith(f"evict {SMOLLM}") for e in engine.pool.events)

        # switch back, pinning the tiny model: MiniLM goes this time
        await engine.load(TINY, pin=True)
        report["chats"].append(await chat(engine, SMOLLM, "Say hi."))
        report["memory"].append(memory(engine, f"switch back to {SMOLLM} ({TINY} pinned)"))
        assert sorted(engine.pool.models) == sorted([SMOLLM, TINY])
        assert any(e.startswith(f"evict {MINILM}") for e in engine.pool.events)

        # idle TTL: everything unpinned goes
        engine.pool.idle_ttl_s = 0.3
        for _ in range(50):
            if engine.pool.events[-1].startswith(f"unload {SMOLLM}"):
                break
            await asyncio.sleep(0.1)
        # the worker drops its last reference to an unloaded runner within one idle wait (1 s)
        for _ in range(30):
            if engine.status().memory.active_bytes < baseline + engine.pool.used_bytes + 50 * MiB:
                break
            await asyncio.sleep(0.1)
        report["memory"].append(memory(engine, "idle TTL 0.3 s passed"))
        assert sorted(engine.pool.models) == [TINY]
        # SmolLM2's memory is back
        assert engine.status().memory.active_bytes < baseline + 100 * MiB
        report["pool events"] = list(engine.pool.events)

    out = Path(os.environ.get("MLX_SIDECAR_SESSION_REPORT", tmp_path / "session-report.json"))
    out.write_text(json.dumps(report, indent=2))
    print("\n" + json.dumps(report, indent=2))
    assert all(c["tokens"] > 0 for c in report["chats"])
