"""The inline completion session on the real engine: FIM prompts of a tiny random-weight model
with a real tokenizer, SmolLM2 completions, the time budget as a timer, typing through a running
generation (one engine request), reuse of prompt KV across keystrokes, the context warm-up."""

from __future__ import annotations

import asyncio
import contextlib
import json
import statistics
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from sidecar.benchmarks.prompt_reuse import keystroke_states
from sidecar.completion.generation import ORPHAN_GRACE_S, Generation, Place
from sidecar.completion.options import CompletionOptions
from sidecar.completion.session import CompletionSession
from sidecar.models.defaults import CHAT_MODEL
from tests.helpers.waiting import until
from tests.tiny_models import tiny_fim_model

SESSION = Path(__file__).parent.parent / "sidecar" / "benchmarks" / "typing-session.json"
PATIENT = {"max_time_ms": 60000}


def session_of(engine, **options) -> CompletionSession:
    return CompletionSession(engine, CompletionOptions(**{**PATIENT, **options}))


async def test_fim_model_completes_in_the_repo_format(engine, models_dir: Path) -> None:
    model = tiny_fim_model(models_dir, "qwen")
    session = session_of(engine, max_tokens=4)
    session.repo = "shop"
    session.note("file:///w/shop/util.py", "def helper(x):\n    return x * 2\n", 0)
    loaded = await engine.load(model)
    prompt = session.prompt_for(loaded, Place("file:///w/shop/main.py", "def f():\n    ", "\n"))
    assert prompt is not None and isinstance(prompt.prompt, list)
    vocab = loaded.tokenizer.get_vocab()
    head = prompt.prompt[: prompt.head_tokens]
    assert head.count(vocab["<|repo_name|>"]) == 1 and head.count(vocab["<|file_sep|>"]) == 2
    assert prompt.text.startswith("<|repo_name|>shop\n<|file_sep|>shop/util.py\n")
    completion = await session.complete(model, "def f():\n    ", "\n", "file:///w/shop/main.py")
    assert completion.model == model and completion.source == "model"
    assert completion.prompt_tokens == len(prompt.prompt)
    await engine.unload(model)


async def test_default_model_completes_a_function_body(engine) -> None:
    session = session_of(engine, max_tokens=8)
    prefix = 'def add(a: int, b: int) -> int:\n    """Return the sum of a and b."""\n    return '
    completion = await session.complete(CHAT_MODEL, prefix, "\n")
    assert "a" in completion.text and "b" in completion.text
    again = await session.complete(CHAT_MODEL, prefix, "\n")
    assert again.source == "cache" and again.text == completion.text


async def test_empty_buffer_gives_no_completion(engine) -> None:
    completion = await session_of(engine).complete(CHAT_MODEL, "", "  \n")
    assert completion.text == "" and completion.source == "empty"


async def test_other_buffers_enter_the_prompt_within_budget(engine) -> None:
    prefix = "def add(a, b):\n    return "

    async def prompt_tokens(**options) -> int:
        session = session_of(engine, max_tokens=1, **options)
        session.note("file:///w/util.py", "def helper(x):\n    return x * 2\n", 0)
        done = await session.complete(CHAT_MODEL, prefix, "\n", "file:///w/main.py")
        return done.prompt_tokens

    alone = await prompt_tokens(context_tokens=0)
    assert await prompt_tokens() > alone + 8
    assert await prompt_tokens(context_tokens=4) == alone  # no room for the chunk


async def test_time_budget_counts_decoding_and_never_cuts_the_first_line(engine) -> None:
    session = session_of(engine, max_tokens=48, max_time_ms=50)
    # A prompt no other test (or earlier run in this process) left in the KV cache: its prefill
    # alone outlasts 50 ms, and the continuation runs over many lines. The salt makes it new
    # however the tests are ordered.
    salt = uuid.uuid4().hex[:8]
    prefix = (
        f"# costs {salt}\n"
        # the cursor on a new line: the next line of the pattern is short and certain to end
        # (after "total = " the model could write one line of 48 tokens, then nothing is cut)
        + "".join(f"cost_{i} = {i}.25  # the {i}th cost\n" for i in range(40))
    )
    hurried = await session.complete(CHAT_MODEL, prefix, "\n")
    assert hurried.completion_tokens == 0  # the engine's result is not in yet: cut short
    assert hurried.cut_short
    assert hurried.text.strip() and "\n" not in hurried.text  # the finished first line only
    assert "\n" in hurried.raw  # it waited past the budget for that line to end
    assert session.cache.get(prefix, "\n") is None  # nothing cached while it still runs
    session.configure(session.options.model_copy(update=PATIENT))
    patient = await session.complete(CHAT_MODEL, prefix, "\n")
    assert patient.source in ("adopted", "model") and not patient.cut_short
    assert patient.text.strip()


async def test_typing_through_a_cut_short_answer_comes_from_the_cache(engine) -> None:
    """The time budget cut the answer short and nobody came back before its grace ended: the
    lines it finished stay in the completion cache, so typing through them is answered at once
    instead of by a new generation."""
    timers = Timers()
    options = CompletionOptions(max_time_ms=50, max_tokens=48)
    session = CompletionSession(engine, options, later=timers.later)
    prefix = f"# costs {uuid.uuid4().hex[:8]}\n" + "".join(
        f"cost_{i} = {i}.25  # the {i}th cost\n" for i in range(40)
    )
    hurried = await session.complete(CHAT_MODEL, prefix, "\n")
    assert hurried.cut_short and hurried.text.strip()
    gen = session.inflight.get(None)
    assert gen is not None, "it ended within the budget: the prefix should make it write more"
    assert timers.fire(ORPHAN_GRACE_S) == 1  # nobody came back: the grace ends
    await asyncio.wait_for(asyncio.shield(gen.task), 30)
    shown = gen.ghost_text(complete_lines=True)
    assert shown.startswith(hurried.text)
    typed = shown[:3]
    through = await session.complete(CHAT_MODEL, prefix + typed, "\n")
    assert through.source == "cache" and through.text == shown[3:]


async def test_typing_through_a_finished_line_shows_the_next_at_once(engine) -> None:
    """The user types the start of a line the running generation already finished: the
    request adopts it and answers with the rest of its finished lines at once (the editor
    cancels a request the next keystroke comes within ~130 ms of), not after the budget."""
    timers = Timers()
    options = CompletionOptions(max_time_ms=60000, max_tokens=96)
    session = CompletionSession(engine, options, later=timers.later)
    prefix = f"# costs {uuid.uuid4().hex[:8]}\n" + "".join(
        f"cost_{i} = {i}.25  # the {i}th cost\n" for i in range(40)
    )
    first = asyncio.create_task(session.complete(CHAT_MODEL, prefix, "\n"))
    await until(lambda: None in session.inflight, timeout=60)
    gen: Generation = session.inflight[None]
    await until(lambda: gen.first_line_done() or gen.done, timeout=60)
    assert not gen.done, "it ended with its first line: raise max_tokens"
    first.cancel()  # the editor's $/cancelRequest as the user types on
    with contextlib.suppress(asyncio.CancelledError):
        await first
    written = gen.ghost_text(complete_lines=True)
    typed = written[:2]
    through = await session.complete(CHAT_MODEL, prefix + typed, "\n")
    assert through.source == "adopted" and through.cut_short
    assert not gen.done, "it should answer while the generation still runs"
    assert through.text and written.startswith(typed + through.text)
    assert timers.fire(ORPHAN_GRACE_S) >= 1  # nobody waits: its grace runs again


async def test_typing_through_a_running_completion_keeps_one_engine_request(engine) -> None:
    session = session_of(engine, max_tokens=16)
    prefix = "def area(width: float, height: float) -> float:\n    return"
    first = asyncio.create_task(session.complete(CHAT_MODEL, prefix, "\n"))
    await until(lambda: None in session.inflight, timeout=60)
    gen: Generation = session.inflight[None]
    healed = gen.prompt.healed
    await until(lambda: len(gen.text) >= len(healed) + 2 or gen.done, timeout=60)
    assert not gen.done, "the generation ended before the keystroke: raise max_tokens"
    first.cancel()  # the editor's $/cancelRequest for the old request
    typed = gen.text[len(healed) : len(healed) + 1]
    second = await session.complete(CHAT_MODEL, prefix + typed, "\n")
    assert second.source == "adopted"
    assert not session.inflight and gen.adoptions == 1 and not gen.abandoned
    assert gen.ghost_text() == typed + second.text  # the rest of the same answer
    assert second.raw == gen.text and second.completion_tokens >= 2


@dataclass
class Timer:
    delay: float
    fn: Callable[[], None]
    cancelled: bool = False

    def cancel(self) -> None:
        self.cancelled = True


class Timers:
    """The session's timers, fired by the test instead of the wall clock."""

    def __init__(self) -> None:
        self.made: list[Timer] = []

    def later(self, delay: float, fn: Callable[[], None]) -> Timer:
        self.made.append(Timer(delay, fn))
        return self.made[-1]

    def fire(self, delay: float) -> int:
        due = [t for t in self.made if t.delay == delay and not t.cancelled]
        for timer in due:
            timer.cancelled = True
            timer.fn()
        return len(due)


async def test_a_generation_nobody_adopts_is_cancelled_after_its_grace(engine) -> None:
    timers = Timers()
    options = CompletionOptions(max_time_ms=60000, max_tokens=64)
    session = CompletionSession(engine, options, later=timers.later)
    # A long line to write (it outlasts the test's steps) after a prompt no other test left cached.
    prefix = f"# {uuid.uuid4().hex[:8]}\nPRIMES = [2, 3, 5, 7, 11, "
    task = asyncio.create_task(session.complete(CHAT_MODEL, prefix, "]\n"))
    await until(lambda: None in session.inflight, timeout=60)
    gen: Generation = session.inflight[None]
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task
    assert not gen.done, "the generation ended before the test's steps: raise max_tokens"
    assert not gen.abandoned  # nobody waits now, but the next keystroke may still adopt it
    assert timers.fire(ORPHAN_GRACE_S) == 1  # the grace ends: nobody came
    await asyncio.wait_for(asyncio.shield(gen.task), 30)
    assert gen.abandoned and not gen.final
    assert session.cache.get(prefix, "]\n") is None


async def test_keystrokes_reuse_most_of_the_prompt(engine) -> None:
    """A real SmolLM2 replay of the recorded session's keystrokes (one at a time): each new
    prompt's KV comes mostly from the previous keystroke's."""
    session = session_of(engine, max_tokens=2, cache_size=0)
    recorded = json.loads(SESSION.read_text())
    uri = "file:///w/shop/inventory.py"
    session.note("file:///w/shop/other.py", recorded["initial_text"], 0)
    for prefix, suffix in keystroke_states(recorded)[:12]:
        await session.complete(CHAT_MODEL, prefix, suffix, uri)
    shares = [r.share for r in list(session.reuse)[1:]]
    assert len(shares) >= 4
    assert statistics.median(shares) >= 0.9, shares
    assert session.stats()["reuse_share_median"] is not None


async def test_warm_up_prefills_the_context_in_the_background(engine) -> None:
    session = session_of(engine, max_tokens=1)
    uri = "file:///w/shop/main.py"
    await session.complete(CHAT_MODEL, "x = 1\n", "\n", uri)  # the active document
    session.note("file:///w/shop/tax.py", "RATE = 0.2\n\ndef tax(p):\n    return p * RATE\n", 0)
    await until(lambda: not session.busy(), timeout=60)  # (other tests' sessions warm up too)
    warm = await asyncio.wait_for(session.warm(), 60)
    assert warm is not None and warm.prompt_tokens > warm.cached_prompt_tokens
    after = await session.complete(CHAT_MODEL, "y = 2\nz = ", "\n", uri)
    assert after.cached_prompt_tokens >= warm.prompt_tokens
    await until(lambda: not session.busy(), timeout=60)
    assert await session.warm() is None  # nothing new to warm
