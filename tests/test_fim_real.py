"""Fill-in-the-middle on a real FIM-trained model, the default completion model
(Qwen2.5-Coder-0.5B-Instruct, imported from its GGUF), through both edges: the editor's
`textDocument/inlineCompletion` on a real `mlx-sidecar stdio` and `/v1/completions` with `suffix`
on a real `mlx-sidecar serve`. Greedy, so each answer is the model's one best guess."""

from __future__ import annotations

import sys
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio
from lsprotocol import types
from pytest_lsp import ClientServerConfig, LanguageClient

from sidecar.benchmarks.fim import Task, exact_match, first_line
from sidecar.completion.fim import fim_stop_tokens
from sidecar.models.defaults import COMPLETION_MODEL
from sidecar.models.kinds import FIM_TOKEN_SETS
from tests.helpers.http_server import Server, start_server, stop_server
from tests.helpers.lsp import start_lsp

# (name, prefix, suffix): the holes both edges fill.
SINGLE_LINE = (
    "def sum_product(numbers):\n    sum_value = 0\n",
    "\n    for n in numbers:\n        sum_value += n\n        prod_value *= n\n"
    "    return sum_value, prod_value\n",
)
BODY = ("def fibonacci(n):\n", "\n\n\nprint(fibonacci(10))\n")
AUTO_INDENTED = ("def is_even(n: int) -> bool:\n    ", "\n\n\nprint(is_even(4))\n")
FILE_START = ("", "\n    return a + b\n\n\nprint(add(2, 3))\n")
MARKERS = [t for t in fim_stop_tokens("qwen")]


def env_with_coder(env: dict[str, str]) -> dict[str, str]:
    return {**env, "MLX_SIDECAR_COMPLETION_MODEL": COMPLETION_MODEL}


# -- the editor's path ---------------------------------------------------------------------------


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def editor(sidecar_env: dict[str, str]) -> AsyncIterator[LanguageClient]:
    config = ClientServerConfig(
        server_command=[sys.executable, "-m", "sidecar", "stdio"],
        server_env=env_with_coder(sidecar_env),
    )
    client = await start_lsp(config)
    await client.initialize_session(
        types.InitializeParams(
            capabilities=types.ClientCapabilities(),
            # a CPU runs this model at ~7 tokens/s: the budget must not decide the answers here
            initialization_options={"completion": {"maxTimeMs": 60000, "maxTokens": 48}},
        )
    )
    yield client
    await client.shutdown_session()


async def ghost_text(client: LanguageClient, name: str, prefix: str, suffix: str) -> str:
    uri = f"file:///fim-real/{name}.py"
    client.text_document_did_open(
        types.DidOpenTextDocumentParams(
            types.TextDocumentItem(uri=uri, language_id="python", version=1, text=prefix + suffix)
        )
    )
    lines = prefix.split("\n")
    result = await client.text_document_inline_completion_async(
        types.InlineCompletionParams(
            text_document=types.TextDocumentIdentifier(uri=uri),
            position=types.Position(line=len(lines) - 1, character=len(lines[-1])),
            context=types.InlineCompletionContext(
                trigger_kind=types.InlineCompletionTriggerKind.Automatic
            ),
        )
    )
    client.text_document_did_close(
        types.DidCloseTextDocumentParams(types.TextDocumentIdentifier(uri=uri))
    )
    assert result is not None
    items = result.items if isinstance(result, types.InlineCompletionList) else result
    assert items, f"no ghost text for {name}"
    text = items[0].insert_text
    assert isinstance(text, str)
    assert not any(m in text for m in MARKERS), text
    return text


@pytest.mark.asyncio(loop_scope="module")
async def test_editor_fills_a_single_line_hole(editor: LanguageClient) -> None:
    text = await ghost_text(editor, "single", *SINGLE_LINE)
    assert first_line(text) == "    prod_value = 1"


@pytest.mark.asyncio(loop_scope="module")
async def test_editor_writes_a_multi_line_body(editor: LanguageClient) -> None:
    text = await ghost_text(editor, "body", *BODY)
    lines = [ln for ln in text.split("\n") if ln.strip()]
    assert len(lines) >= 2, text
    assert all(ln.startswith("    ") for ln in lines), text  # the body, not the next function
    assert "return" in text and "n" in text


@pytest.mark.asyncio(loop_scope="module")
async def test_editor_completes_after_an_auto_indented_new_line(editor: LanguageClient) -> None:
    text = await ghost_text(editor, "indented", *AUTO_INDENTED)
    assert not text[:1].isspace(), repr(text)  # the indentation is already typed
    # typed after the cursor's four spaces, every line stays in the body (greedy on another CPU
    # may open with a docstring before the return, which is as good)
    later = [ln for ln in text.split("\n")[1:] if ln.strip()]
    assert all(ln.startswith("    ") for ln in later), text
    assert "return" in text and "% 2" in text, text


@pytest.mark.asyncio(loop_scope="module")
async def test_editor_completes_at_the_start_of_a_file(editor: LanguageClient) -> None:
    text = await ghost_text(editor, "start", *FILE_START)
    assert first_line(text).startswith("def add(a"), text


@pytest.mark.asyncio(loop_scope="module")
async def test_editor_uses_another_open_file_through_repo_level_tokens(
    editor: LanguageClient,
) -> None:
    other = "file:///fim-real/checksums.py"
    editor.text_document_did_open(
        types.DidOpenTextDocumentParams(
            types.TextDocumentItem(
                uri=other,
                language_id="python",
                version=1,
                text="def crc_of_payload_v7(payload: bytes) -> int:\n"
                '    """The checksum the device expects."""\n'
                "    return sum(payload) % 65521\n",
            )
        )
    )
    prefix = "import checksums\n\n\ndef verify(payload: bytes, expected: int) -> bool:\n    return "
    text = await ghost_text(editor, "uses_other", prefix, "\n")
    # a name the model can only know from the other file
    assert "crc_of_payload_v7(payload)" in text, text


# -- the OpenAI port -----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def port(sidecar_env: dict[str, str], tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    srv = start_server(env_with_coder(sidecar_env), tmp_path_factory.mktemp("fim") / "server.log")
    yield srv
    stop_server(srv)


def complete(server: Server, prefix: str, suffix: str, **kw: Any) -> str:
    reply = server.client().completions.create(
        model=COMPLETION_MODEL, prompt=prefix, suffix=suffix, max_tokens=48, temperature=0, **kw
    )
    text = reply.choices[0].text
    assert not any(m in text for m in MARKERS), text
    return text


def test_http_fills_a_single_line_hole(port: Server) -> None:
    task = Task("single", SINGLE_LINE[0], "    prod_value = 1", SINGLE_LINE[1])
    assert exact_match(complete(port, task.prefix, task.suffix, stop=["\n"]), task)


def test_http_writes_a_multi_line_body(port: Server) -> None:
    text = complete(port, *BODY)
    assert text.count("\n") >= 1 and "return" in text, text


def test_http_completes_after_an_auto_indented_new_line(port: Server) -> None:
    text = complete(port, *AUTO_INDENTED, stop=["\n\n"])  # the body: up to a blank line
    assert not text[:1].isspace(), repr(text)  # the indentation is already typed
    later = [ln for ln in text.split("\n")[1:] if ln.strip()]
    assert all(ln.startswith("    ") for ln in later), text
    assert "return" in text and "% 2" in text, text


def test_http_completes_at_the_start_of_a_file(port: Server) -> None:
    text = complete(port, *FILE_START, stop=["\n"])
    assert text.startswith("def add(a"), text


def test_every_qwen_marker_is_a_stop() -> None:
    """The answer ends at any of the family's control tokens (they are never ghost text)."""
    stops = set(fim_stop_tokens("qwen"))
    assert set(FIM_TOKEN_SETS["qwen"]) <= stops
    assert {"<|file_sep|>", "<|repo_name|>", "<|endoftext|>", "<|fim_pad|>"} <= stops


def test_the_coder_is_installed_from_its_gguf(models_dir: Path) -> None:
    config = (models_dir / COMPLETION_MODEL / "config.json").read_text()
    assert '"model_type": "qwen2"' in config
    source = (models_dir / COMPLETION_MODEL / "sidecar_source.json").read_text()
    assert '"format": "gguf"' in source
