"""Open buffers feed the cross-file context ring: the top of each opened buffer, the place of
each edit; a closed buffer leaves it. (pygls keeps the buffers themselves, full or incremental
sync.)"""

from __future__ import annotations

from urllib.parse import unquote

from lsprotocol import types

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
