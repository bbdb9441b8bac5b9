"""A short soak in CI: mixed traffic over HTTP and JSON-RPC on one real sidecar process, with
random disconnects and cancels (the long one: `mlx-sidecar bench --suite soak`)."""

from __future__ import annotations

from sidecar.benchmarks.soak import format_table, soak

MIB = 1 << 20


async def test_soak_loses_nothing_and_the_engine_comes_back(
    sidecar_env: dict[str, str],
) -> None:
    env = {**sidecar_env, "MLX_SIDECAR_PROMPT_CACHE_IDLE_S": "1"}  # at rest after 1 s, not 60
    report, stderr = await soak(env, requests=140, concurrency=6, max_tokens=6, seed=1)
    data = report.to_dict()
    print(format_table(data))
    assert report.requests == 140
    assert report.lost == [], data
    assert report.unexpected == [], data
    kinds = {k.split(":")[0] for k in report.outcomes}
    assert len(kinds) == 7, kinds  # every kind of request ran
    assert any(k.endswith(":cancelled") for k in report.outcomes), "some cancels landed"
    assert any(k.endswith(":disconnected") for k in report.outcomes), "some clients hung up"
    assert report.idle_after_s is not None, "the engine went idle again"
    assert report.answers_after
    # Memory at rest comes back near what the loaded models held: MLX's buffer cache is handed
    # back when idle, and at rest only the newest prompt caches' KV stays.
    assert report.memory["idle_cache"] < 64 * MIB, data["memory"]
    assert report.memory["idle_active"] < report.memory["loaded_active"] + 128 * MIB, data
    assert "Traceback" not in stderr
