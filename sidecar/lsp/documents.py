"""Open buffers feed the cross-file context ring: the top of each opened buffer, the place of
each edit, the middle of each range the editor reports as viewed (`mlx/context/viewed`); a
closed buffer leaves it. (pygls keeps the buffers themselves, full or incremental sync.)"""

from __future__ import annotations

from typing import Any
from urllib.parse import unquote

from lsprotocol import types
from pydantic import BaseModel, ConfigDict, ValidationError
from pydantic.alias_generators import to_camel

from sidecar.lsp.session import SidecarServer


def did_open(ls: SidecarServer, params: types.DidOpenTextDocumentParams) -> None:
    ls.completions.note(params.text_document.uri, params.text_document.text, 0)


def did_change(ls: SidecarServer, params: types.DidChangeTextDocumentParams) -> None:
    uri = params.text_document.uri
    if not params.content_changes or unquote(uri) not in ls.workspace.text_documents:
        return  # a change to a buffer never opened: nothing to note
    change = params.content_changes[-1]
    line = (
        change.range.start.line if isinstance(change, types.TextDocumentContentChangePartial) else 0
    )
    ls.completions.note(uri, ls.workspace.get_text_document(uri).source, line)


def did_close(ls: SidecarServer, params: types.DidCloseTextDocumentParams) -> None:
    ls.completions.closed(params.text_document.uri)


class ViewedRange(BaseModel):
    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True)

    uri: str
    start_line: int
    end_line: int


def viewed(ls: SidecarServer, params: Any) -> None:
    """`mlx/context/viewed {uri, start_line, end_line}` (a notification): lines the user looked
    at in an open buffer. Bad params are dropped: a notification has no reply to carry an error."""
    try:
        seen = ViewedRange.model_validate(params if isinstance(params, dict) else {})
    except ValidationError:
        return
    if unquote(seen.uri) not in ls.workspace.text_documents:
        return
    middle = (seen.start_line + seen.end_line) // 2
    ls.completions.note(seen.uri, ls.workspace.get_text_document(seen.uri).source, middle)
