"""A loopback OpenAI-style upstream that misbehaves on purpose, one way per base URL:
`http://127.0.0.1:PORT/<mode>/v1`. It runs on threads, so a sidecar subprocess can reach it too.

Modes (for `/models`, `/chat/completions` and `/completions` alike):
    ok        behaves: one model `m`; a stream of `DELTAS` deltas then [DONE]; a JSON reply
    echo      401 whose message quotes the Authorization header it received
    echo_ok   200 whose reply (and stream) quotes the Authorization header in its content
    drip      200 headers, then one byte every DRIP_S forever
    flood     a stream of FLOOD deltas, ignoring max_tokens
    longline  200 event stream, then bytes without a newline forever
    bigbody   a JSON reply of a few hundred MB (written until the client hangs up)
    html      200 text/html
    json      200 application/json (a non-streamed reply to a streamed request)
    junk      200 text/event-stream of lines that are not events
    midclose  200 with a Content-Length it never reaches: the connection closes mid-body
    slow      no reply headers for SLOW_S
"""

from __future__ import annotations

import http.server
import json
import threading
import time
from typing import Any

DELTAS = 3
FLOOD = 5000
DRIP_S = 0.05
SLOW_S = 30.0
MODES = (
    "ok",
    "echo",
    "echo_ok",
    "drip",
    "flood",
    "longline",
    "bigbody",
    "html",
    "json",
    "junk",
    "midclose",
    "slow",
)


def chunk_event(text: str, finish: str | None = None) -> bytes:
    event = {
        "id": "c1",
        "object": "chat.completion.chunk",
        "model": "m",
        "choices": [{"index": 0, "delta": {"content": text}, "finish_reason": finish}],
    }
    return b"data: " + json.dumps(event).encode() + b"\n\n"


def reply(text: str) -> dict[str, Any]:
    return {
        "id": "c1",
        "object": "chat.completion",
        "model": "m",
        "choices": [{"index": 0, "message": {"role": "assistant", "content": text}}],
        "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2},
    }


class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: Server

    def log_message(self, format: str, *args: Any) -> None:  # quiet
        pass

    def do_GET(self) -> None:
        self.answer(None)

    def do_POST(self) -> None:
        length = int(self.headers.get("content-length") or 0)
        body = json.loads(self.rfile.read(length) or b"{}")
        self.answer(body)

    def head(self, status: int, content_type: str, length: int | None = None) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Connection", "close")
        if length is not None:
            self.send_header("Content-Length", str(length))
        self.end_headers()
        self.close_connection = True

    def whole(self, status: int, content_type: str, data: bytes) -> None:
        self.head(status, content_type, len(data))
        self.wfile.write(data)

    def forever(self, piece: bytes, every_s: float) -> None:
        """Write `piece` until the client hangs up (or the server stops)."""
        try:
            while not self.server.stopping.is_set():
                self.wfile.write(piece)
                self.wfile.flush()
                if every_s:
                    time.sleep(every_s)
        except OSError:
            pass

    def answer(self, body: dict[str, Any] | None) -> None:
        mode = self.path.strip("/").split("/", 1)[0]
        self.server.requests.append((mode, self.path))
        models = self.path.endswith("/models")
        stream = bool(body and body.get("stream"))
        auth = self.headers.get("authorization", "")
        if mode == "ok" or (mode == "flood" and models):
            if models:
                data = {"object": "list", "data": [{"id": "m", "object": "model"}]}
                self.whole(200, "application/json", json.dumps(data).encode())
            elif stream:
                events = b"".join(chunk_event(f"w{i} ") for i in range(DELTAS))
                self.whole(200, "text/event-stream", events + b"data: [DONE]\n\n")
            else:
                self.whole(200, "application/json", json.dumps(reply("w0 w1 w2")).encode())
        elif mode == "echo":
            error = {"error": {"message": f"invalid api key '{auth}'", "code": "bad_key"}}
            self.whole(401, "application/json", json.dumps(error).encode())
        elif mode == "echo_ok":
            if models:
                data = {"object": "list", "data": [{"id": f"m {auth}"}]}
                self.whole(200, "application/json", json.dumps(data).encode())
            elif stream:
                events = chunk_event(f"you sent {auth}") + b"data: [DONE]\n\n"
                self.whole(200, "text/event-stream", events)
            else:
                self.whole(200, "application/json", json.dumps(reply(f"you sent {auth}")).encode())
        elif mode == "drip":
            self.head(200, "text/event-stream" if stream else "application/json")
            self.forever(b" ", DRIP_S)
        elif mode == "flood":
            self.head(200, "text/event-stream")
            event = chunk_event("x")
            try:
                for _ in range(FLOOD):
                    self.wfile.write(event)
                self.wfile.write(b"data: [DONE]\n\n")
            except OSError:
                pass
        elif mode == "longline":
            self.head(200, "text/event-stream")
            self.forever(b"data: " + b"x" * 65536, 0)
        elif mode == "bigbody":
            self.head(200, "application/json", 400 << 20)
            self.forever(b"[" * 65536, 0)
        elif mode == "html":
            self.whole(200, "text/html", b"<html><body>Sign in</body></html>")
        elif mode == "json":
            self.whole(200, "application/json", json.dumps(reply("not a stream")).encode())
        elif mode == "junk":
            self.whole(200, "text/event-stream", b"garbage\nmore: garbage\n\n")
        elif mode == "midclose":
            self.head(200, "text/event-stream" if stream else "application/json", 10_000)
            self.wfile.write(b'{"object": "list", "da' if models else chunk_event("half"))
            self.wfile.flush()
        elif mode == "slow":
            self.server.stopping.wait(SLOW_S)
            self.whole(200, "application/json", b"{}")
        else:
            self.whole(404, "application/json", b'{"error": "no such mode"}')


class Server(http.server.ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 128  # the default 5 drops SYNs of concurrent listings for a second

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), Handler)
        self.stopping = threading.Event()
        self.requests: list[tuple[str, str]] = []
        self.thread = threading.Thread(target=self.serve_forever, daemon=True)
        self.thread.start()

    def url(self, mode: str) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}/{mode}/v1"

    def stop(self) -> None:
        self.stopping.set()
        self.shutdown()
        self.server_close()
