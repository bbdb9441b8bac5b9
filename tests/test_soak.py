"""A short soak in CI: mixed traffic over HTTP and JSON-RPC on one real sidecar process, with
random disconnects and cancels, image chats for the tiny vision model, and one misbehaving
upstream configured (a loopback fake that drips) whose chats must fail clearly (the long one:
`mlx-sidecar bench --suite soak`)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from sidecar.benchmarks.soak import format_table, soak
from tests.helpers import bad_upstream
from tests.tiny_vlm import tiny_vlm_model

MIB = 1 << 20


@pytest.fixture(scope="module")
def dripping() -> Iterator[bad_upstream.Server]:
    server = bad_upstream.Server()
    yield server
    server.stop()


async def test_soak_loses_nothing_and_the_engine_comes_back(
    sidecar_env: dict[str, str], models_dir: Path, dripping: bad_upstream.Server
) -> None:
    env = {
        **sidecar_env,
        "MLX_SIDECAR_PROMPT_CACHE_IDLE_S": "1",  # at rest after 1 s, not 60
        "MLX_SIDECAR_UPSTREAMS__BAD__BASE_URL": dripping.url("drip"),
        "MLX_SIDECAR_UPSTREAMS__BAD__TOTAL_TIMEOUT_S": "2",
        "MLX_SIDECAR_UPSTREAMS__BAD__RETRIES": "0",
    }
    report, stderr = await soak(
        env,
        requests=140,
        concurrency=6,
        max_tokens=6,
        seed=1,
        image_model=tiny_vlm_model(models_dir),
        bad_upstream_model="bad/m",
    )
    data = report.to_dict()
    print(format_table(data))
    assert report.requests == 140
    assert report.lost == [], data
    assert report.unexpected == [], data
    kinds = {k.split(":")[0] for k in report.outcomes}
    assert len(kinds) == 9, kinds  # every kind of request ran
    assert report.outcomes["http_image:ok"] >= 1, data
    assert report.outcomes["http_bad_upstream:refused"] >= 1, data
    assert any(k.endswith(":cancelled") for k in report.outcomes), "some cancels landed"
    assert any(k.endswith(":disconnected") for k in report.outcomes), "some clients hung up"
    assert report.idle_after_s is not None, "the engine went idle again"
    assert report.answers_after
    # Memory at rest comes back near what the loaded models held: MLX's buffer cache is handed
    # back when idle, and at rest only the newest prompt caches' KV stays.
    assert report.memory["idle_cache"] < 64 * MIB, data["memory"]
    assert report.memory["idle_active"] < report.memory["loaded_active"] + 128 * MIB, data
    assert "Traceback" not in stderr
