"""`bench --suite windows`: the memory of N editor windows, each with the chat model loaded and one
chat answered, today's way (one `mlx-sidecar stdio` per window) and shared (one daemon plus a
`stdio --attach` bridge per window): the RSS sum of the sidecar processes, measured in one run."""

from __future__ import annotations

import asyncio
import tempfile
import time
from pathlib import Path
from typing import Any

from sidecar.benchmarks.rpc_client import SidecarClient
from sidecar.benchmarks.soak import rss_of

MIB = 1 << 20
CHAT = {"messages": [{"role": "user", "content": "Hi"}], "max_tokens": 2}


async def open_windows(env: dict[str, str], n: int, *args: str) -> list[SidecarClient]:
    clients = [SidecarClient(f"window-{i}") for i in range(n)]
    for client in clients:  # one after another, as windows open
        await client.start(env, *args)
        await client.request("mlx/chat", CHAT, timeout=300)
    return clients


async def close_windows(clients: list[SidecarClient]) -> None:
    for client in clients:
        await client.stop()


def rss_sum(pids: list[int]) -> int:
    return sum(rss_of(pid) or 0 for pid in pids)


async def suite(env: dict[str, str], windows: int = 3) -> dict[str, Any]:
    separate = await open_windows(env, windows)
    separate_rss = [rss_of(c.pid) or 0 for c in separate]
    await close_windows(separate)

    with tempfile.TemporaryDirectory(prefix="mlxd-", dir="/tmp") as d:
        runtime = Path(d) / "run"
        shared_env = {**env, "MLX_SIDECAR_DAEMON_RUNTIME_DIR": str(runtime)}
        shared_env["MLX_SIDECAR_DAEMON_GRACE_S"] = "0.5"
        bridges = await open_windows(shared_env, windows, "--attach")
        daemon = int((runtime / "daemon.pid").read_text())
        daemon_rss = rss_of(daemon) or 0
        bridge_rss = [rss_of(c.pid) or 0 for c in bridges]
        await close_windows(bridges)
        deadline = time.monotonic() + 30
        while rss_of(daemon) is not None and time.monotonic() < deadline:
            await asyncio.sleep(0.1)  # the daemon leaves after its grace period
    shared_total = daemon_rss + sum(bridge_rss)
    return {
        "windows": windows,
        "separate_rss_bytes": separate_rss,
        "separate_total_bytes": sum(separate_rss),
        "daemon_rss_bytes": daemon_rss,
        "bridge_rss_bytes": bridge_rss,
        "shared_total_bytes": shared_total,
        "shared_over_separate": round(shared_total / max(1, sum(separate_rss)), 3),
    }


def format_table(r: dict[str, Any]) -> str:
    mib = lambda b: f"{b / MIB:.0f} MiB"  # noqa: E731
    return "\n".join(
        [
            f"windows: {r['windows']}, chat model loaded in each",
            "| design | processes | RSS sum |",
            "|---|---|---|",
            f"| one `stdio` per window | {', '.join(mib(b) for b in r['separate_rss_bytes'])} "
            f"| {mib(r['separate_total_bytes'])} |",
            f"| one daemon + `stdio --attach` bridges | daemon {mib(r['daemon_rss_bytes'])}, "
            f"bridges {', '.join(mib(b) for b in r['bridge_rss_bytes'])} "
            f"| {mib(r['shared_total_bytes'])} |",
            f"shared / separate: {r['shared_over_separate']:.2f}",
        ]
    )
