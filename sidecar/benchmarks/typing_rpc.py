"""The typing benchmark through the real JSON-RPC server, as the editor drives it.

`mlx-sidecar stdio` runs as a subprocess; pygls' own LanguageClient replays a recorded session:
per keystroke a `textDocument/didChange`, a `$/cancelRequest` for the completion still running,
and a new `textDocument/inlineCompletion`. Document sync, the LSP layer and cancellation are
inside what is measured. The typist waits at each pause (a keystroke followed by >= 450 ms, and
the last one) until its ghost text shows, as a user who stops to read it: that wait is the
pause latency. The completion time budget is set out of the way (a large `maxTimeMs`), so the
latency is not hidden by showing less; the ghost text's length in tokens is reported too.
Each request asks at the cursor the keystroke left, on the next line after an Enter with the
editor's indentation (`cursor_after`).

Two servers, so neither typing run finds the other's completions or KV in the caches: on the
first, typing alone, then the same keystrokes into a long file (this repo's code above it, so the
prefix window slides), then the pause states of both again with the KV emptied before each (the
model unloaded and loaded, the completion cache reset): cold against warm. On the second, the
chat alone (as long as the typing took), then typing while that chat streams over `mlx/chat`
(deltas as `mlx/chat/delta` notifications). Each run reports the share of its generations'
prompt tokens the KV cache served (`mlx/completion/stats`).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import statistics
import time
from pathlib import Path
from typing import Any

from lsprotocol import types

from sidecar.benchmarks.prompt_reuse import apply_insert, padded_session
from sidecar.benchmarks.typing_chat import (
    BUDGET_OUT_OF_THE_WAY_MS,
    ChatLog,
    Client,
    chat_until,
)

PAUSE_MS = 450
SESSION = Path(__file__).with_name("typing-session.json")


def percentile(values: list[float], q: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))]


def ms(value: float | None) -> float | None:
    return None if value is None else round(value * 1000, 1)


def cursor_after(line: int, character: int, insert: str) -> types.Position:
    """Where the cursor is after typing `insert` at (line, character): past its last newline
    when it has one (Enter with the editor's indentation), as the editor sends it."""
    if "\n" not in insert:
        return types.Position(line, character + len(insert))
    return types.Position(line + insert.count("\n"), len(insert.rsplit("\n", 1)[1]))


async def completion_stats(client: Client) -> dict[str, Any]:
    stats = await client.request("mlx/completion/stats", None, f"stats-{time.perf_counter()}")
    return {
        "recent": [list(r) for r in stats.recent],
        "generations": stats.generations,
        "answers": stats.answers._asdict(),
    }


def reuse_since(before: dict[str, Any], after: dict[str, Any]) -> dict[str, Any]:
    """Reuse of the generations that ended between two stats calls."""
    new = (
        after["recent"][len(before["recent"]) :]
        if after["generations"] > before["generations"]
        else []
    )
    shares = [c / p for c, p in new if p]
    answers = {k: v - before["answers"].get(k, 0) for k, v in after["answers"].items()}
    return {
        "generations": len(new),
        "reuse_share_median": round(statistics.median(shares), 4) if shares else None,
        "reuse_share_p10": round(sorted(shares)[len(shares) // 10], 4) if shares else None,
        "prompt_tokens": sum(p for _, p in new),
        "cached_prompt_tokens": sum(c for c, _ in new),
        "answers": answers,
    }


async def type_session(client: Client, session: dict[str, Any], run: str) -> dict[str, Any]:
    """Replay the keystrokes on a fresh copy of the document; wait out each pause."""
    before = await completion_stats(client)
    uri = session["uri"].replace(".py", f"-{run}.py")
    text = session["initial_text"]
    client.lsp.text_document_did_open(
        types.DidOpenTextDocumentParams(
            text_document=types.TextDocumentItem(
                uri=uri, language_id=session["language_id"], version=0, text=text
            )
        )
    )
    events = session["events"]
    pauses: list[float] = []
    pause_states: list[tuple[str, types.Position]] = []
    ghost: list[str] = []
    cancelled = 0
    inflight: tuple[str, asyncio.Future[Any]] | None = None
    shift = 0.0  # time the typist spent waiting for ghost text at pauses
    begin = time.perf_counter()
    for i, event in enumerate(events):
        delay = begin + shift + event["t_ms"] / 1000 - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        text, _ = apply_insert(text, event["line"], event["character"], event["insert"])
        pos = cursor_after(event["line"], event["character"], event["insert"])
        typed = time.perf_counter()
        client.lsp.text_document_did_change(
            types.DidChangeTextDocumentParams(
                text_document=types.VersionedTextDocumentIdentifier(uri=uri, version=i + 1),
                content_changes=[
                    types.TextDocumentContentChangePartial(
                        range=types.Range(
                            types.Position(event["line"], event["character"]),
                            types.Position(event["line"], event["character"]),
                        ),
                        text=event["insert"],
                    )
                ],
            )
        )
        if inflight is not None and not inflight[1].done():
            client.cancel(inflight[0])
            cancelled += 1
        msg_id = f"{run}-{i}"
        params = types.InlineCompletionParams(
            context=types.InlineCompletionContext(
                trigger_kind=types.InlineCompletionTriggerKind.Automatic
            ),
            text_document=types.TextDocumentIdentifier(uri=uri),
            position=pos,
        )
        future = asyncio.ensure_future(
            client.request(types.TEXT_DOCUMENT_INLINE_COMPLETION, params, msg_id)
        )
        future.add_done_callback(lambda f: f.cancelled() or f.exception())  # cancelled: fine
        inflight = (msg_id, future)
        last = i == len(events) - 1
        if last or events[i + 1]["t_ms"] - event["t_ms"] >= PAUSE_MS:
            try:
                reply = await asyncio.wait_for(asyncio.shield(future), 120)
            except Exception:
                continue
            waited = time.perf_counter() - typed
            pauses.append(waited)
            pause_states.append((text, pos))
            items = getattr(reply, "items", None) or []
            ghost.append(items[0].insert_text if items else "")
            if not last:  # the next keystroke comes no sooner than the ghost text
                now = time.perf_counter() - begin
                shift = max(shift, now - events[i + 1]["t_ms"] / 1000)
    if inflight is not None and not inflight[1].done():
        with contextlib.suppress(Exception):
            await inflight[1]
    typing_s = round(time.perf_counter() - begin, 2)
    return {
        "reuse": reuse_since(before, await completion_stats(client)),
        "pause_states": pause_states,
        "keystrokes": len(events),
        "pauses": len(pauses),
        "pause_latency_ms": {
            "median": ms(statistics.median(pauses)) if pauses else None,
            "p95": ms(percentile(pauses, 0.95)),
        },
        "pause_latencies_s": [round(p, 4) for p in pauses],
        "ghost_texts": ghost,
        "cancelled": cancelled,
        "typing_s": typing_s,
    }


async def cold_pauses(
    client: Client, model: str, session: dict[str, Any], run: str, states: list[Any]
) -> dict[str, Any]:
    """The latency of each pause state with the KV emptied first (the model unloaded and
    loaded again, the completion cache replaced): what the same ghost text costs cold."""
    latencies = []
    for i, (text, pos) in enumerate(states):
        await client.request("mlx/models/unload", {"model": model}, f"cold-unload-{run}-{i}")
        await client.request("mlx/models/load", {"model": model}, f"cold-load-{run}-{i}")
        client.lsp.workspace_did_change_configuration(  # another cache size: a new cache
            types.DidChangeConfigurationParams(
                settings={"completion": {"cacheSize": 64 + (i % 2) + 1}}
            )
        )
        uri = session["uri"].replace(".py", f"-{run}-cold-{i}.py")
        client.lsp.text_document_did_open(
            types.DidOpenTextDocumentParams(
                text_document=types.TextDocumentItem(
                    uri=uri, language_id=session["language_id"], version=0, text=text
                )
            )
        )
        params = types.InlineCompletionParams(
            context=types.InlineCompletionContext(
                trigger_kind=types.InlineCompletionTriggerKind.Automatic
            ),
            text_document=types.TextDocumentIdentifier(uri=uri),
            position=pos,
        )
        started = time.perf_counter()
        await client.request(types.TEXT_DOCUMENT_INLINE_COMPLETION, params, f"cold-{run}-{i}")
        latencies.append(time.perf_counter() - started)
    return {
        "median": ms(statistics.median(latencies)) if latencies else None,
        "p95": ms(percentile(latencies, 0.95)),
    }


SKIPPED: dict[str, Any] = {"median": None, "p95": None}


def skipped(run: dict[str, Any]) -> dict[str, Any]:
    """A run `--typing-quick` left out, in the shape of `run`."""
    return {
        **{k: None for k in run},
        "reuse": {
            "generations": None,
            "reuse_share_median": None,
            "reuse_share_p10": None,
            "answers": {},
        },
        "pause_latency_ms": SKIPPED,
        "ghost_texts": [],
    }


def token_counter(models_dir: Path, model: str) -> Any:
    from tokenizers import Tokenizer

    path = models_dir / model / "tokenizer.json"
    if not path.is_file():
        return lambda text: None
    tok = Tokenizer.from_file(str(path))
    return lambda text: len(tok.encode(text, add_special_tokens=False).ids)


async def typing_benchmark(
    env: dict[str, str],
    models_dir: Path,
    model: str,
    session_json: Path = SESSION,
    max_time_ms: int = BUDGET_OUT_OF_THE_WAY_MS,
    quick: bool = False,
) -> dict[str, Any]:
    """`max_time_ms`: the completion time budget (out of the way by default; the product's
    default, 1000, measures what a user gets); `quick`: no long-file and cold runs."""
    session = json.loads(Path(session_json).read_text())
    count = token_counter(models_dir, model)

    async def fresh_server() -> Client:
        """A new server (empty completion and KV caches), warmed up: both models loaded and
        first-call costs paid before anything is measured."""
        client = Client()
        await client.open_session(
            env, session["uri"], session["initial_text"], session["language_id"], max_time_ms
        )
        await client.request(
            "mlx/chat",
            {"messages": [{"role": "user", "content": "Hi"}], "max_tokens": 2},
            "warm-chat",
        )
        await type_session(client, {**session, "events": session["events"][:3]}, "warm")
        return client

    client = await fresh_server()
    long_session = padded_session(session)
    try:
        alone = await type_session(client, session, "alone")
        if quick:
            long, cold, long_cold = skipped(alone), SKIPPED, SKIPPED
        else:
            # Like the session file (its warm-up typed there first), the long file is not
            # measured from its first keystroke: a file's first completion has nothing to reuse.
            warm = {**long_session, "events": long_session["events"][:3]}
            await type_session(client, warm, "lw")
            long = await type_session(client, long_session, "long")
            cold = await cold_pauses(client, model, session, "alone", alone["pause_states"])
            long_cold = await cold_pauses(client, model, long_session, "long", long["pause_states"])
        alone.pop("pause_states"), long.pop("pause_states", None)
    finally:
        await client.stop()

    client = await fresh_server()
    try:
        stop = asyncio.Event()
        chat_task = asyncio.create_task(chat_until(client, stop, ChatLog(), "chat-alone"))
        await asyncio.sleep(alone["typing_s"])
        stop.set()
        chat_alone = await chat_task

        stop = asyncio.Event()
        streaming = ChatLog()
        chat_task = asyncio.create_task(chat_until(client, stop, streaming, "chat-typing"))
        while not (streaming.times and streaming.times[-1]):  # the chat is streaming
            await asyncio.sleep(0.01)
        with_chat = await type_session(client, session, "alone")  # the same document
        with_chat.pop("pause_states")
        stop.set()
        chat_typing = await chat_task
    finally:
        await client.stop()

    for run in (alone, long, with_chat):
        lengths = [n for g in run["ghost_texts"] if (n := count(g)) is not None]
        run["ghost_tokens_median"] = statistics.median(lengths) if lengths else None

    def ratio(a: float | None, b: float | None) -> float | None:
        return round(a / b, 2) if a and b else None

    return {
        "model": model,
        "max_time_ms": max_time_ms,
        "completion_share": env.get("MLX_SIDECAR_COMPLETION_SHARE", "4 (default)"),
        "alone": alone,
        "long_file": long,
        "cold": {"session_file": cold, "long_file": long_cold},
        "with_chat": with_chat,
        "chat_alone": {
            "tokens_per_s": chat_alone.rate(),
            "longest_gap_s": chat_alone.longest_gap(),
        },
        "chat_while_typing": {
            "tokens_per_s": chat_typing.rate(),
            "longest_gap_s": chat_typing.longest_gap(),
        },
        "ratios": {
            "pause_median_with_chat_vs_alone": ratio(
                with_chat["pause_latency_ms"]["median"], alone["pause_latency_ms"]["median"]
            ),
            "pause_p95_with_chat_vs_alone": ratio(
                with_chat["pause_latency_ms"]["p95"], alone["pause_latency_ms"]["p95"]
            ),
            "chat_rate_typing_vs_alone": ratio(chat_typing.rate(), chat_alone.rate()),
            "pause_median_warm_vs_cold": ratio(alone["pause_latency_ms"]["median"], cold["median"]),
            "pause_median_warm_vs_cold_long_file": ratio(
                long["pause_latency_ms"]["median"], long_cold["median"]
            ),
        },
    }


def format_table(report: dict[str, Any]) -> str:
    a, c, lf = report["alone"], report["with_chat"], report["long_file"]
    cold = report["cold"]
    r = report["ratios"]

    def rate(x: dict[str, Any]) -> str:
        tps, gap = x["tokens_per_s"], x["longest_gap_s"]
        return f"{tps:.1f} tok/s, longest gap {gap * 1000:.0f} ms" if tps and gap else "-"

    lines = [
        f"Typing replay over JSON-RPC ({a['keystrokes']} keystrokes, {a['pauses']} pauses, "
        f"model {report['model']}, maxTimeMs {report['max_time_ms']}, completion share "
        f"{report['completion_share']}), pause latency = keystroke to ghost text",
        "| run | pause latency median ms | p95 ms | cold median ms (KV emptied) | ghost text "
        "tokens (median) | cancelled | generations | reused share median (p10) | adopted | "
        "cache answers |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    runs = (
        ("alone", a, cold["session_file"]),
        ("long file, alone", lf, cold["long_file"]),
        ("while a chat streams", c, None),
    )
    for name, run, cold_run in runs:
        reuse = run["reuse"]
        lines.append(
            f"| {name} | {run['pause_latency_ms']['median']} | {run['pause_latency_ms']['p95']} | "
            f"{cold_run['median'] if cold_run else '-'} | "
            f"{run['ghost_tokens_median']} | {run['cancelled']} | {reuse['generations']} | "
            f"{reuse['reuse_share_median']} ({reuse['reuse_share_p10']}) | "
            f"{reuse['answers'].get('adopted')} | {reuse['answers'].get('cache')} |"
        )
    lines += [
        "",
        f"chat alone: {rate(report['chat_alone'])}; while typing: "
        f"{rate(report['chat_while_typing'])}",
        f"ratios: pause median with chat / alone {r['pause_median_with_chat_vs_alone']} "
        f"(target <= 1.25), p95 {r['pause_p95_with_chat_vs_alone']} (<= 1.5), "
        f"chat rate typing / alone {r['chat_rate_typing_vs_alone']} (>= 0.8), "
        f"pause median warm / cold {r['pause_median_warm_vs_cold']} (<= 0.4), long file "
        f"{r['pause_median_warm_vs_cold_long_file']}",
    ]
    return "\n".join(lines)
