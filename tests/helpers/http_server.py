"""A real `python -m sidecar serve` subprocess on a free port, for the HTTP test modules (each
starts its own, once per module)."""

from __future__ import annotations

import http.client
import re
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import openai
import orjson

READY = re.compile(r"OpenAI API at (http://\S+)/v1")


@dataclass
class Server:
    url: str
    proc: subprocess.Popen[bytes]
    log: Path

    @property
    def port(self) -> int:
        return int(self.url.rsplit(":", 1)[1])

    def client(self, timeout: float = 120) -> openai.OpenAI:
        return openai.OpenAI(
            base_url=f"{self.url}/v1", api_key="unused", max_retries=0, timeout=timeout
        )

    def async_client(self) -> openai.AsyncOpenAI:
        return openai.AsyncOpenAI(
            base_url=f"{self.url}/v1", api_key="unused", max_retries=0, timeout=120
        )

    def raw(
        self,
        method: str,
        path: str,
        body: bytes | None = None,
        headers: dict[str, str] | None = None,
    ) -> tuple[int, dict[str, Any]]:
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=60)
        try:
            conn.request(method, path, body=body, headers=headers or {})
            resp = conn.getresponse()
            return resp.status, orjson.loads(resp.read() or b"{}")
        finally:
            conn.close()

    def text(self, path: str) -> str:
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=60)
        try:
            conn.request("GET", path)
            return conn.getresponse().read().decode()
        finally:
            conn.close()

    def health(self) -> dict[str, Any]:
        status, body = self.raw("GET", "/health")
        assert status == 200
        return body


def start_server(
    env: dict[str, str], log: Path, *args: str, global_args: tuple[str, ...] = ()
) -> Server:
    """`global_args` go before `serve` (e.g. `("--log-level", "debug")`)."""
    with log.open("wb") as err:
        proc = subprocess.Popen(
            [sys.executable, "-m", "sidecar", *global_args, "serve", "--port", "0", *args],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=err,
        )
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        found = READY.search(log.read_text())
        if found:
            return Server(found.group(1), proc, log)
        if proc.poll() is not None:
            raise RuntimeError(f"server exited with {proc.returncode}:\n{log.read_text()}")
        time.sleep(0.1)
    proc.kill()
    raise RuntimeError(f"server did not start:\n{log.read_text()}")


def stop_server(server: Server) -> None:
    server.proc.terminate()
    try:
        server.proc.wait(30)
    except subprocess.TimeoutExpired:
        server.proc.kill()
        server.proc.wait()
