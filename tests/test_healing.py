"""Healing on the HTTP edge (`sidecar/completion/healing.py`): the text cut off the prompt is
taken off the answer, whole or streamed in pieces; an answer that does not start with it is
stopped at once and ends empty."""

from __future__ import annotations

from collections.abc import AsyncIterator

from sidecar.completion.healing import healed_events
from sidecar.completion.prompt import heal
from sidecar.engine.engine import Event
from sidecar.engine.requests import Delta, Result


def result(text: str, finish: str = "stop") -> Result:
    return Result("r", "m", text, finish, 5, 3, 0.1, 10.0)  # type: ignore[arg-type]


async def stream(pieces: list[str], finish: str = "stop") -> AsyncIterator[Event]:
    for piece in pieces:
        yield Delta("r", piece)
    yield result("".join(pieces), finish)


async def collect(events: AsyncIterator[Event]) -> tuple[list[str], Result]:
    deltas, final = [], None
    async for event in events:
        if isinstance(event, Delta):
            deltas.append(event.text)
        else:
            final = event
    assert final is not None
    return deltas, final


async def test_the_cut_indentation_is_taken_off_pieces_and_result() -> None:
    cancels: list[bool] = []
    events = healed_events(stream(["  ", "  ret", "urn n"]), "    ", lambda: cancels.append(True))
    deltas, final = await collect(events)
    assert "".join(deltas) == "return n" and final.text == "return n"
    assert deltas[0] == "ret"  # nothing of the cut text reaches the client
    assert not cancels


async def test_an_answer_that_does_not_start_with_the_cut_word_is_stopped_and_empty() -> None:
    cancels: list[bool] = []
    events = healed_events(
        stream(["ret", "ry()", " more"], finish="cancelled"), "retu", lambda: cancels.append(True)
    )
    deltas, final = await collect(events)
    assert deltas == [] and final.text == "" and final.finish_reason == "stop"
    assert cancels == [True]


async def test_an_answer_shorter_than_the_cut_text_is_empty() -> None:
    events = healed_events(stream(["  "]), "    ", lambda: None)
    deltas, final = await collect(events)
    assert deltas == [] and final.text == ""


def test_the_http_edge_cuts_what_the_editor_cuts() -> None:
    """A new line's whole indentation, or the word being typed with the space before it."""
    assert heal("def f(x):\n    ") == ("def f(x):\n", "    ")
    assert heal("x = foo(a, b") == ("x = foo(a,", " b")
