"""Inline completion building blocks: FIM templates per family (checked on tiny random-weight
models whose tokenizers carry each family's tokens), token budgets, word healing, post-processing
on recorded cases, the typed-through cache and the cross-file context ring."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from sidecar.completion.cache import CompletionCache
from sidecar.completion.context import ContextRing
from sidecar.completion.fim import build_fim_prompt, fim_chat_messages, fim_stop_tokens
from sidecar.completion.postprocess import postprocess
from sidecar.completion.prompt import build_completion_prompt, heal, trim_prefix, trim_suffix
from sidecar.models.kinds import FIM_TOKEN_SETS
from sidecar.models.store import ModelStore
from tests.tiny_models import tiny_fim_model

FIXTURES = Path(__file__).parent / "fixtures"
CASES = json.loads((FIXTURES / "postprocess_cases.json").read_text())
PREFIX = "def add(a, b):\n    "
SUFFIX = "\n\nprint(add(1, 2))\n"


@pytest.mark.parametrize(
    ("family", "expected"),
    [
        ("starcoder", f"<fim_prefix>{PREFIX}<fim_suffix>{SUFFIX}<fim_middle>"),
        ("qwen", f"<|fim_prefix|>{PREFIX}<|fim_suffix|>{SUFFIX}<|fim_middle|>"),
        ("codellama", f"<PRE> {PREFIX} <SUF>{SUFFIX} <MID>"),
        ("deepseek", f"<｜fim▁begin｜>{PREFIX}<｜fim▁hole｜>{SUFFIX}<｜fim▁end｜>"),
        ("codestral", f"[SUFFIX]{SUFFIX}[PREFIX]{PREFIX}"),
        (None, PREFIX),
    ],
)
def test_fim_templates(family: str | None, expected: str) -> None:
    assert build_fim_prompt(family, PREFIX, SUFFIX) == expected


def test_qwen_puts_other_files_in_its_repo_format() -> None:
    prompt = build_fim_prompt(
        "qwen", PREFIX, SUFFIX, [("lib/util.py", "X = 1\n")], repo="shop", path="main.py"
    )
    assert prompt == (
        "<|repo_name|>shop\n<|file_sep|>lib/util.py\nX = 1\n\n<|file_sep|>main.py\n"
        f"<|fim_prefix|>{PREFIX}<|fim_suffix|>{SUFFIX}<|fim_middle|>"
    )


def test_other_families_get_other_files_before_the_prefix() -> None:
    prompt = build_fim_prompt(
        "starcoder", PREFIX, SUFFIX, [("util.py", "X = 1"), ("a.ts", "let y")]
    )
    assert prompt.startswith("<fim_prefix># util.py\nX = 1\n\n// a.ts\nlet y\n\ndef add")
    assert prompt.endswith(f"<fim_suffix>{SUFFIX}<fim_middle>")


def test_fim_stop_tokens_include_the_family_markers() -> None:
    assert "<|file_sep|>" in fim_stop_tokens("qwen")
    assert "<fim_middle>" in fim_stop_tokens("starcoder")
    assert fim_stop_tokens(None) == []


def test_chat_fallback_marks_the_hole() -> None:
    messages = fim_chat_messages(PREFIX, SUFFIX, [("util.py", "X = 1")], path="main.py")
    assert messages[0]["role"] == "system" and "code" in messages[0]["content"]
    assert f"{PREFIX}<HOLE>{SUFFIX}" in messages[1]["content"]
    assert "util.py" in messages[1]["content"]


@pytest.fixture(scope="module")
def tiny_models(models_dir: Path) -> dict[str, str]:
    return {family: tiny_fim_model(models_dir, family) for family in FIM_TOKEN_SETS}


def test_tiny_models_are_detected_with_their_family(
    tiny_models: dict[str, str], models_dir: Path
) -> None:
    store = ModelStore(models_dir, use_hf_cache=False)
    for family, model_id in tiny_models.items():
        info = store.info(model_id)
        assert info.kind == "text"
        assert info.fim == family


@pytest.mark.parametrize("family", list(FIM_TOKEN_SETS))
def test_fim_tokens_reach_the_model_as_single_special_ids(
    family: str, tiny_models: dict[str, str], models_dir: Path
) -> None:
    from mlx_lm.utils import load_tokenizer

    tokenizer = load_tokenizer(models_dir / tiny_models[family])
    prompt = build_completion_prompt(
        tokenizer, family, PREFIX, SUFFIX, prefix_tokens=64, suffix_tokens=16
    )
    assert isinstance(prompt.prompt, str)
    ids = tokenizer.encode(prompt.prompt, add_special_tokens=False)
    vocab = tokenizer.get_vocab()
    fim_ids = [vocab[t] for t in FIM_TOKEN_SETS[family]]
    present = [i for i in ids if i in fim_ids]
    expected_order = {
        "codestral": fim_ids[1::-1],  # suffix first, then prefix; no middle token
    }.get(family, fim_ids)
    assert present == expected_order
    assert prompt.stop and all(s in prompt.stop for s in FIM_TOKEN_SETS[family])


async def test_fim_model_completes_through_the_engine(engine, tiny_models: dict[str, str]) -> None:
    from sidecar.completion.service import CompletionOptions, complete_inline

    options = CompletionOptions(max_tokens=4, max_time_ms=60000)
    completion = await complete_inline(engine, tiny_models["qwen"], PREFIX, SUFFIX, options)
    assert completion.model == tiny_models["qwen"]
    assert completion.prompt_tokens > 0
    # Greedy decoding of the seed-0 random weights is deterministic: their first token is a stop
    # token, so the request ends at once on "stop". Without the stop tokens reaching the engine
    # it would run to "length" (4 tokens); a spurious cancel would say "cancelled".
    assert (completion.finish_reason, completion.completion_tokens) == ("stop", 1)
    assert completion.raw == completion.text == ""
    await engine.unload(tiny_models["qwen"])


async def test_default_model_completes_a_function_body(engine) -> None:
    from sidecar.completion.service import CompletionOptions, complete_inline

    options = CompletionOptions(max_tokens=8, max_time_ms=60000)
    prefix = 'def add(a: int, b: int) -> int:\n    """Return the sum of a and b."""\n    return '
    completion = await complete_inline(engine, "SmolLM2-135M-Instruct", prefix, "\n", options)
    assert completion.text.strip()
    assert "a" in completion.text and "b" in completion.text


async def test_other_buffers_enter_the_prompt_within_budget(engine) -> None:
    from sidecar.completion.service import CompletionOptions, complete_inline

    ring = ContextRing()
    ring.note("file:///w/util.py", "def helper(x):\n    return x * 2\n", 0)
    prefix = "def add(a, b):\n    return "
    alone = await complete_inline(
        engine,
        "SmolLM2-135M-Instruct",
        prefix,
        "\n",
        CompletionOptions(max_tokens=1, max_time_ms=60000),
    )
    with_context = await complete_inline(
        engine,
        "SmolLM2-135M-Instruct",
        prefix,
        "\n",
        CompletionOptions(max_tokens=1, max_time_ms=60000),
        ring=ring,
        uri="file:///w/main.py",
    )
    assert with_context.prompt_tokens > alone.prompt_tokens + 8
    no_room = await complete_inline(
        engine,
        "SmolLM2-135M-Instruct",
        prefix,
        "\n",
        CompletionOptions(max_tokens=1, max_time_ms=60000, context_tokens=4),
        ring=ring,
        uri="file:///w/main.py",
    )
    assert no_room.prompt_tokens == alone.prompt_tokens


async def test_empty_buffer_gives_no_completion(engine) -> None:
    from sidecar.completion.service import CompletionOptions, complete_inline

    completion = await complete_inline(engine, "SmolLM2-135M-Instruct", "", "", CompletionOptions())
    assert completion.text == "" and completion.completion_tokens == 0


async def test_replay_reports_latency_and_cancellations(engine, tmp_path: Path) -> None:
    from sidecar.completion.replay import replay_typing_session
    from sidecar.completion.service import CompletionOptions

    session = {
        "initial_text": "def add(a, b):\n\n",
        "events": [
            {"t_ms": 0, "line": 1, "character": 0, "insert": "    "},
            {"t_ms": 20, "line": 1, "character": 4, "insert": "r"},
            {"t_ms": 40, "line": 1, "character": 5, "insert": "e"},
        ],
    }
    path = tmp_path / "session.json"
    path.write_text(json.dumps(session))
    report = await replay_typing_session(
        engine, path, with_chat=False, options=CompletionOptions(max_tokens=4, max_time_ms=60000)
    )
    assert report["keystrokes"] == 3
    assert report["finished"] + report["cancelled"] == 3
    assert report["finished"] >= 1  # the last one always runs to the end
    assert report["latency_ms"]["median"] > 0
    status = engine.status()
    assert status["running"] == 0


class Chars:
    """A stand-in tokenizer: one token per character (budgets are then easy to check)."""

    def encode(self, text: str, add_special_tokens: bool = False) -> list[int]:
        return [ord(c) for c in text]


def count(text: str) -> int:
    return len(text)


def test_prefix_budget_keeps_whole_lines_nearest_the_cursor() -> None:
    prefix = "line one\nline two\nline three\n    cur"
    assert trim_prefix(prefix, 20, count) == "line three\n    cur"
    assert trim_prefix(prefix, 5, count) == "    cur"  # the cursor's line always stays


def test_budgets_never_keep_a_line_cut_by_the_character_cap() -> None:
    long_line = "x" * 1000
    assert trim_prefix(f"{long_line}\nshort\ncur", 100, lambda t: 0) == "short\ncur"
    assert trim_suffix(f"tail\nshort\n{long_line}", 100, lambda t: 0) == "tail\nshort"


def test_suffix_budget_keeps_whole_lines_after_the_cursor() -> None:
    suffix = "tail\nnext one\nnext two\n"
    assert trim_suffix(suffix, 14, count) == "tail\nnext one"
    assert trim_suffix(suffix, 0, count) == "tail"


def test_prompt_respects_token_budgets() -> None:
    prefix = "".join(f"x{i} = {i}\n" for i in range(200)) + "y = "
    prompt = build_completion_prompt(
        Chars(), "starcoder", prefix, "\nz = 1\n" * 50, prefix_tokens=64, suffix_tokens=16
    )
    assert len(prompt.prefix) <= 64 and len(prompt.suffix) <= 16
    assert prompt.prefix.endswith("y = ")


def test_heal_splits_the_partial_word() -> None:
    assert heal("    total = tota") == ("    total =", " tota")
    assert heal("x = foo.ba") == ("x = foo.", "ba")
    assert heal("print(") == ("print(", "")
    assert heal("    return ") == ("    return", " ")


def test_healed_answer_must_start_with_the_typed_word() -> None:
    prompt = build_completion_prompt(
        Chars(), None, "total = to", "\n", prefix_tokens=64, suffix_tokens=8
    )
    assert prompt.prompt == "total ="
    assert prompt.answer(" total_value()") == "tal_value()"
    assert prompt.answer(" sum(x)") is None


@pytest.mark.parametrize("case", CASES, ids=[c["name"] for c in CASES])
def test_postprocess_recorded_cases(case: dict) -> None:
    got = postprocess(case["raw"], case["prefix"], case["suffix"], chat=case["chat"])
    assert got == case["expected"]


def test_cache_serves_typing_through_the_suggestion() -> None:
    cache = CompletionCache(4)
    cache.put("def f():\n    ret", "\n", "urn a + b")
    assert cache.get("def f():\n    ret", "\n") == "urn a + b"
    assert cache.get("def f():\n    retu", "\n") == "rn a + b"
    assert cache.get("def f():\n    return a", "\n") == " + b"
    assert cache.get("def f():\n    rex", "\n") is None  # typed something else
    assert cache.get("def f():\n    return a + b", "\n") is None  # nothing left


def test_cache_is_bounded() -> None:
    cache = CompletionCache(2)
    for i in range(3):
        cache.put(f"p{i}", "", "x")
    assert len(cache) == 2 and cache.get("p0", "") is None


def test_context_ring_picks_other_documents_within_budget() -> None:
    ring = ContextRing(capacity=3, chunk_lines=4)
    ring.note("file:///w/a.py", "a1\na2\na3\na4\na5\na6", 0)
    ring.note("file:///w/b.py", "b1\nb2", 1)
    ring.note("file:///w/cur.py", "c1\nc2", 0)
    picked = ring.pick("file:///w/cur.py", budget_tokens=100, count_tokens=count)
    assert picked == [("w/a.py", "a1\na2\na3\na4"), ("w/b.py", "b1\nb2")]
    assert ring.pick("file:///w/cur.py", budget_tokens=15, count_tokens=count) == [
        ("w/b.py", "b1\nb2")
    ]


def test_context_ring_replaces_overlapping_chunks_and_stays_bounded() -> None:
    ring = ContextRing(capacity=2, chunk_lines=4)
    text = "\n".join(f"l{i}" for i in range(40))
    ring.note("file:///a.py", text, 10)
    ring.note("file:///a.py", text, 11)  # same place edited again: one chunk
    assert len(ring.chunks) == 1
    ring.note("file:///b.py", text, 0)
    ring.note("file:///c.py", text, 20)
    assert [c.uri for c in ring.chunks] == ["file:///b.py", "file:///c.py"]
    ring.note("file:///d.py", text, 20)  # the same text again: kept once, newest
    assert [c.uri for c in ring.chunks] == ["file:///b.py", "file:///d.py"]


async def test_time_budget_shows_what_is_ready(engine) -> None:
    from sidecar.completion.service import CompletionOptions, complete_inline

    prefix = "def describe(items):\n    # Print every item with its index and price, then "
    patient = await complete_inline(
        engine,
        "SmolLM2-135M-Instruct",
        prefix,
        "\n",
        CompletionOptions(max_tokens=12, max_time_ms=60000),
    )
    hurried = await complete_inline(
        engine,
        "SmolLM2-135M-Instruct",
        prefix,
        "\n",
        CompletionOptions(max_tokens=12, max_time_ms=50),
    )
    assert hurried.text.strip()
    assert hurried.completion_tokens < patient.completion_tokens
    assert patient.text.startswith(hurried.text)  # a prefix of the full answer, not another one
