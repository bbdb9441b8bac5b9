"""The typing replay asks for ghost text where the typist's cursor is, as the editor does."""

from __future__ import annotations

import json

from pygls.workspace import TextDocument

from sidecar.benchmarks.prompt_reuse import apply_insert
from sidecar.benchmarks.typing_rpc import SESSION, cursor_after


def test_every_keystroke_asks_at_the_cursor_the_insert_left() -> None:
    """Enter with the editor's indentation is one insert ("\\n    "): the cursor is on the new
    line, not past the end of the old one (where the server would answer for another place and
    no running generation would serve the typist)."""
    session = json.loads(SESSION.read_text())
    text = session["initial_text"]
    multi_line = 0
    for event in session["events"]:
        text, offset = apply_insert(text, event["line"], event["character"], event["insert"])
        cursor = cursor_after(event["line"], event["character"], event["insert"])
        assert TextDocument("file:///x.py", text).offset_at_position(cursor) == offset
        multi_line += "\n" in event["insert"]
    assert multi_line >= 3  # the session has Enter keystrokes to check
