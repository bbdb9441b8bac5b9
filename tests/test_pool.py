"""The model pool on real (tiny) models: measured sizes, LRU eviction under a small budget,
pinning, busy models kept, idle unload."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from sidecar.config import Settings, default_memory_budget
from sidecar.engine.engine import Engine
from sidecar.engine.requests import GenerateRequest
from sidecar.models.defaults import CHAT_MODEL
from sidecar.models.pool import InsufficientMemory, ModelPool
from sidecar.models.sizes import weights_size
from sidecar.models.store import ModelStore
from tests.helpers.waiting import until
from tests.tiny_models import tiny_fim_model

MiB = 1 << 20


@pytest.fixture(scope="module")
def tiny_ids(models_dir: Path) -> list[str]:
    return [tiny_fim_model(models_dir, f) for f in ("qwen", "starcoder", "codellama")]


@pytest.fixture
async def small_engine(models_dir: Path, tiny_ids: list[str]) -> AsyncIterator[Engine]:
    """An engine whose budget holds two tiny models (16 MB each), not three."""
    size = weights_size(models_dir / tiny_ids[0])
    settings = Settings(
        models_dir=models_dir,
        use_hf_cache=False,
        memory_budget_bytes=int(size * 2.5),
        idle_ttl_s=0,
    )
    async with Engine(settings) as engine:
        yield engine


def loaded_ids(engine: Engine) -> list[str]:
    return sorted(engine.pool.models)


async def test_sizes_are_measured_from_mlx_memory(
    small_engine: Engine, tiny_ids: list[str]
) -> None:
    a = tiny_ids[0]
    loaded = await small_engine.load(a)
    on_disk = weights_size(loaded.info.path)
    assert 0.8 * on_disk < loaded.size_bytes < 1.5 * on_disk
    memory = small_engine.status().memory
    assert memory.models_bytes == loaded.size_bytes
    assert memory.active_bytes >= loaded.size_bytes
    assert "MiB measured" in small_engine.pool.events[-1]


async def test_least_recently_used_model_is_evicted(
    small_engine: Engine, tiny_ids: list[str]
) -> None:
    a, b, c = tiny_ids
    await small_engine.load(a)
    await small_engine.load(b)
    await small_engine.complete(GenerateRequest(prompt="x", model=a, max_tokens=2))  # a is fresher
    await small_engine.load(c)
    assert loaded_ids(small_engine) == sorted([a, c])
    assert any(e.startswith(f"evict {b}") for e in small_engine.pool.events)
    assert small_engine.pool.used_bytes <= small_engine.pool.budget_bytes


async def test_pinned_models_are_never_evicted(small_engine: Engine, tiny_ids: list[str]) -> None:
    a, b, c = tiny_ids
    await small_engine.load(a, pin=True)
    await small_engine.load(b)
    await small_engine.load(c)  # a is the oldest but pinned: b goes
    assert loaded_ids(small_engine) == sorted([a, c])
    await small_engine.load(c, pin=True)
    with pytest.raises(InsufficientMemory, match="pinned or busy"):
        await small_engine.load(b)
    assert loaded_ids(small_engine) == sorted([a, c])
    await small_engine.load(a, pin=False)
    await small_engine.load(b)
    assert loaded_ids(small_engine) == sorted([b, c])


async def test_a_model_with_running_requests_is_not_evicted(
    small_engine: Engine, tiny_ids: list[str]
) -> None:
    a, b, c = tiny_ids
    await small_engine.load(a)
    await small_engine.load(b)
    running = asyncio.create_task(
        small_engine.complete(GenerateRequest(prompt="def f():", model=a, max_tokens=16))
    )
    await until(lambda: small_engine.pool.models[a].busy, timeout=60, what="a busy model")
    # b was used after a, but a is decoding: b is the one to go
    await small_engine.load(c)
    assert loaded_ids(small_engine) == sorted([a, c])
    result = await running
    assert result.finish_reason in ("stop", "length") and result.completion_tokens > 0


async def test_idle_models_are_unloaded_after_the_ttl(
    small_engine: Engine, tiny_ids: list[str]
) -> None:
    a, b, _ = tiny_ids
    await small_engine.load(a, pin=True)
    await small_engine.load(b)
    small_engine.pool.idle_ttl_s = 0.3
    await until(lambda: b not in small_engine.pool.models, timeout=10, what=f"{b} idled out")
    assert loaded_ids(small_engine) == [a]  # pinned a stays
    assert any(e.startswith(f"idle {b}") for e in small_engine.pool.events)
    assert small_engine.status().memory.models_bytes == small_engine.pool.models[a].size_bytes


async def test_a_model_over_the_whole_budget_is_refused(models_dir: Path) -> None:
    settings = Settings(models_dir=models_dir, use_hf_cache=False, memory_budget_bytes=MiB)
    async with Engine(settings) as engine:
        with pytest.raises(InsufficientMemory, match="over the whole memory budget"):
            await engine.load("all-MiniLM-L6-v2")
        assert engine.pool.models == {}


def test_default_budget_is_half_the_ram(models_dir: Path) -> None:
    pool = ModelPool(ModelStore(models_dir, False), None, lambda *a: None)
    assert pool.budget_bytes == default_memory_budget() > 0


async def test_a_load_does_not_stall_a_running_batch(models_dir: Path, tiny_ids: list[str]) -> None:
    """SmolLM2 (0.5 GB) loads while a tiny model decodes: its weights are evaluated a chunk
    per worker round trip, so tokens keep coming during the load."""
    settings = Settings(models_dir=models_dir, use_hf_cache=False, idle_ttl_s=0)
    async with Engine(settings) as engine:
        a = tiny_ids[0]
        await engine.load(a)
        stamps: list[float] = []
        loaded = asyncio.Event()

        async def decode() -> None:
            request = GenerateRequest(prompt="def f():", model=a, max_tokens=3000)
            async for _ in engine.generate(request):
                stamps.append(time.perf_counter())
                if loaded.is_set():
                    break

        task = asyncio.create_task(decode())
        await until(lambda: len(stamps) >= 5, timeout=60, what="5 tokens decoded")
        started = time.perf_counter()
        big = await engine.load(CHAT_MODEL)
        ended = time.perf_counter()
        loaded.set()
        await task
        assert big.size_bytes > 400 * MiB
        during = [t for t in stamps if started < t < ended]
        assert len(during) >= 3, f"{len(during)} tokens in a {ended - started:.2f} s load"


async def test_a_cancelled_load_leaves_nothing_behind(models_dir: Path) -> None:
    settings = Settings(models_dir=models_dir, use_hf_cache=False, idle_ttl_s=0)
    async with Engine(settings) as engine:
        for delay in (0.0, 0.05, 0.3):
            task = asyncio.create_task(engine.load(CHAT_MODEL))
            await asyncio.sleep(delay)
            if task.done():
                await engine.unload(CHAT_MODEL)
                continue
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
            await until(lambda: not engine.pool.pending, timeout=10, what="the load given up")
            assert engine.pool.pending == {} and engine.pool.reserved_bytes == 0
            assert CHAT_MODEL not in engine.pool.models
        loaded = await engine.load(CHAT_MODEL)
        assert loaded.size_bytes > 400 * MiB
