"""`textDocument/inlineCompletion`: ghost text at the cursor from the completion model (the
work is `sidecar.completion.session.CompletionSession`'s)."""

from __future__ import annotations

import logging

from lsprotocol import types
from pygls.exceptions import JsonRpcInvalidParams

from sidecar.lsp.errors import rpc_errors
from sidecar.lsp.session import SidecarServer

log = logging.getLogger(__name__)


async def inline_completion(
    ls: SidecarServer, params: types.InlineCompletionParams
) -> types.InlineCompletionList | None:
    if not ls.options.completion.enabled:
        return None
    uri = params.text_document.uri
    document = ls.workspace.get_text_document(uri)  # an unopened one is read from disk
    try:
        source = document.source
    except (OSError, UnicodeDecodeError) as e:
        raise JsonRpcInvalidParams(f"{uri} is not open and cannot be read: {e}") from None
    offset = document.offset_at_position(params.position)
    with rpc_errors():
        completion = await ls.completions.complete(
            ls.roles["completion"], source[:offset], source[offset:], uri
        )
    log.debug(
        "inline %s %s in %.2fs: %r", uri, completion.source, completion.latency_s, completion.text
    )
    if not completion.text:
        return types.InlineCompletionList(items=[])
    here = types.Range(start=params.position, end=params.position)
    return types.InlineCompletionList(
        items=[types.InlineCompletionItem(insert_text=completion.text, range=here)]
    )


async def completion_stats(ls: SidecarServer, params: object = None) -> dict[str, object]:
    """`mlx/completion/stats`: prompt reuse and answer sources of the inline completions
    (`CompletionSession.stats`); `mlx/status` can carry the same under `completion_session`."""
    return ls.completions.stats()
