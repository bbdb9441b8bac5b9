"""Inline completion building blocks: FIM templates per family (checked on tiny random-weight
models whose tokenizers carry each family's tokens), token budgets, word healing, post-processing
on recorded cases, the typed-through cache and the cross-file context ring."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from sidecar.completion.cache import CompletionCache
from sidecar.completion.context import ContextRing, as_files, sticky
from sidecar.completion.fim import (
    build_fim_prompt,
    fim_chat_messages,
    fim_parts,
    fim_stop_tokens,
)
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
        ("starcoder", f"<fim_prefix><fim_suffix>{SUFFIX}<fim_middle>{PREFIX}"),  # SPM
        ("qwen", f"<|fim_prefix|><|fim_suffix|>{SUFFIX}<|fim_middle|>{PREFIX}"),  # SPM
        ("codellama", f"<PRE> <SUF>{SUFFIX} <MID> {PREFIX}"),  # SPM
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
        f"<|fim_prefix|><|fim_suffix|>{SUFFIX}<|fim_middle|>{PREFIX}"
    )


def test_other_families_get_other_files_first() -> None:
    prompt = build_fim_prompt("deepseek", PREFIX, SUFFIX, [("util.py", "X = 1"), ("a.ts", "let y")])
    assert prompt.startswith("# util.py\nX = 1\n\n// a.ts\nlet y\n\n<｜fim▁begin｜>def add")
    assert prompt.endswith(f"<｜fim▁hole｜>{SUFFIX}<｜fim▁end｜>")


def test_starcoder2_repo_format_when_the_tokenizer_has_its_tokens() -> None:
    vocab = {"<repo_name>", "<file_sep>"}
    parts = fim_parts("starcoder", PREFIX, SUFFIX, [("u.py", "X = 1")], "shop", "m.py", vocab)
    assert parts.text == (
        "<repo_name>shop<file_sep>u.py\nX = 1\n<file_sep>m.py\n"
        f"<fim_prefix><fim_suffix>{SUFFIX}<fim_middle>{PREFIX}"
    )
    plain = fim_parts("starcoder", PREFIX, SUFFIX, [("u.py", "X = 1")], "shop", "m.py", set())
    assert plain.text.startswith("# u.py\nX = 1\n\n<fim_prefix>")


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
    assert isinstance(prompt.prompt, list)
    ids = prompt.prompt
    vocab = tokenizer.get_vocab()
    fim_ids = [vocab[t] for t in FIM_TOKEN_SETS[family]]
    present = [i for i in ids if i in fim_ids]
    expected_order = {
        "codestral": fim_ids[1::-1],  # suffix first, then prefix; no middle token
        "starcoder": fim_ids,  # SPM: <fim_prefix><fim_suffix>suffix<fim_middle>prefix
        "codellama": fim_ids,  # SPM: <PRE> <SUF>suffix <MID> prefix
    }.get(family, fim_ids)
    assert present == expected_order
    assert prompt.stop and all(s in prompt.stop for s in FIM_TOKEN_SETS[family])


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
    # a line's end is never healed; a new line's indentation is, whole
    assert heal("total = 0\n") == ("total = 0\n", "")
    assert heal("def f():\n    ") == ("def f():\n", "    ")  # the model writes it whole


def test_healed_answer_must_start_with_the_typed_word() -> None:
    prompt = build_completion_prompt(
        Chars(), None, "total = to", "\n", prefix_tokens=64, suffix_tokens=8
    )
    assert prompt.text == "total ="
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
    assert as_files(picked) == [("w/a.py", "a1\na2\na3\na4"), ("w/b.py", "b1\nb2")]
    assert as_files(ring.pick("file:///w/cur.py", budget_tokens=15, count_tokens=count)) == [
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


def test_prefix_window_moves_in_blocks_of_lines() -> None:
    """Typing line after line, the window's start moves once per block, not once per line."""
    starts = []
    for n in range(30, 60):
        prefix = "".join(f"v{i} = {i}\n" for i in range(n)) + "x"
        window = trim_prefix(prefix, 200, count, block=8)
        assert len(window) <= 200 and window.endswith("x")
        first = window.split("\n", 1)[0]
        starts.append(int(first.split(" ")[0][1:]))
    assert all(s % 8 == 0 for s in starts)
    assert len(set(starts)) <= -(-30 // 8) + 1  # at most one move per 8 lines typed


def test_sticky_picks_keep_their_order_when_new_chunks_come() -> None:
    ring = ContextRing(capacity=4, chunk_lines=4)
    ring.note("file:///w/a.py", "a1\na2", 0)
    ring.note("file:///w/b.py", "b1\nb2", 0)
    first = sticky([], ring.pick("file:///w/cur.py", 100, count))
    ring.note("file:///w/c.py", "c1\nc2", 0)
    ring.note("file:///w/a.py", "a1\na2", 0)  # a is newest now: the ring reorders, the picks not
    second = sticky(first, ring.pick("file:///w/cur.py", 100, count))
    assert [ch.uri for ch in second] == ["file:///w/a.py", "file:///w/b.py", "file:///w/c.py"]
    assert second[:2] == first


def test_ring_picks_real_chunks_under_the_default_budget(models_dir: Path) -> None:
    """With the default chunk size and budget, chunks of this repo's own files fit (the old
    128-token budget under 24-line chunks picked nothing)."""
    from mlx_lm.utils import load_tokenizer

    from sidecar.completion.options import CompletionOptions
    from sidecar.completion.prompt import token_counter

    tokenizer = load_tokenizer(models_dir / "SmolLM2-135M-Instruct")
    options = CompletionOptions()
    ring = ContextRing(options.ring_chunks, options.chunk_lines)
    sources = sorted((Path(__file__).parent.parent / "sidecar" / "completion").glob("*.py"))
    for path in sources:
        ring.note(path.as_uri(), path.read_text(), 30)
    picked = ring.pick("file:///w/cur.py", options.context_tokens, token_counter(tokenizer))
    assert len(picked) >= 2
    used = sum(len(tokenizer.encode(c.text)) + 8 for c in picked)
    assert used <= options.context_tokens


def test_the_editors_completion_defaults_are_the_sidecars() -> None:
    """The extension sends its settings' defaults: they must be the ones the benchmark chose."""
    from sidecar.completion.options import CompletionOptions

    manifest = Path(__file__).resolve().parents[1] / "editor-extension" / "package.json"
    properties = json.loads(manifest.read_text())["contributes"]["configuration"]["properties"]
    defaults = CompletionOptions()
    checked = 0
    for name, field in CompletionOptions.model_fields.items():
        setting = properties.get(f"mlxSidecar.completion.{field.alias}")
        if setting is not None:
            assert setting["default"] == getattr(defaults, name), field.alias
            checked += 1
    assert checked >= 5  # maxTokens, maxTimeMs, prefixTokens, suffixTokens, contextTokens, ...


def test_a_body_written_from_a_blank_line_ends_with_its_block() -> None:
    """The cursor at column 0 of the blank line under `def`: the answer indents the body itself
    and runs on into top-level code (the Qwen coder in SPM order); the ghost text is the body."""
    raw = (
        '    """The n-th Fibonacci number."""\n    if n <= 1:\n        return n\n'
        "    return fibonacci(n - 1) + fibonacci(n - 2)\n\nif __name__ == '__main__':\n"
        "    print(fib"
    )
    got = postprocess(raw, "def fibonacci(n):\n", "\n\n\nprint(fibonacci(10))\n")
    assert got.endswith("fibonacci(n - 2)") and "__main__" not in got
    top = postprocess("x = 1\ny = 2", "import os\n", "\n")  # top-level code stays whole
    assert top == "x = 1\ny = 2"
