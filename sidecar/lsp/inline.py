"""`textDocument/inlineCompletion`: ghost text at the cursor from the completion model."""

from __future__ import annotations

import logging

from lsprotocol import types
from pygls.exceptions import JsonRpcInvalidParams

from sidecar.completion.service import complete_inline
from sidecar.lsp.errors import rpc_errors
from sidecar.lsp.session import SidecarServer

log = logging.getLogger(__name__)


async def inline_completion(
    ls: SidecarServer, params: types.InlineCompletionParams
) -> types.InlineCompletionList | None:
    options = ls.options.completion
    if not options.enabled:
        return None
    uri = params.text_document.uri
    document = ls.workspace.get_text_document(uri)  # an unopened one is read from disk
    try:
        source = document.source
    except (OSError, UnicodeDecodeError) as e:
        raise JsonRpcInvalidParams(f"{uri} is not open and cannot be read: {e}") from None
    offset = document.offset_at_position(params.position)
    prefix, suffix = source[:offset], source[offset:]
    text = ls.cache.get(prefix, suffix)
    if text is None:
        with rpc_errors():
            completion = await complete_inline(
                ls.engine, ls.roles["completion"], prefix, suffix, options, ls.ring, uri
            )
        log.debug("inline %s in %.2fs: %r", uri, completion.latency_s, completion.text)
        text = completion.text
        ls.cache.put(prefix, suffix, text)
    if not text:
        return types.InlineCompletionList(items=[])
    here = types.Range(start=params.position, end=params.position)
    return types.InlineCompletionList(
        items=[types.InlineCompletionItem(insert_text=text, range=here)]
    )
