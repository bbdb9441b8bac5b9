"""Prompt-lookup speculative decoding for a greedy completion decoding alone.

Code completions copy a lot: a second function like the first, a call site of a signature in
view. When the last few tokens also occur earlier in the prompt or the output, the tokens that
followed them there are a cheap draft; one forward pass over [last token, draft...] checks the
whole draft, and greedy decoding keeps the draft's longest prefix that equals the model's own
argmax, plus the model's next token. The output is the same as plain greedy decoding, token
for token; what changes is how many tokens one forward pass yields.

mlx_lm's `speculative_generate_step` needs a draft model and its BatchGenerator has no
speculation, so this is written here: the text runner takes a completion out of the batch
when it is the only sequence (and puts it back when another arrives), and steps it with
`SoloSpeculator`.

Runs only on the engine's worker thread.
"""

from __future__ import annotations

from typing import Any, cast

import mlx.core as mx
from mlx_lm.models.cache import can_trim_prompt_cache, trim_prompt_cache

NGRAMS = (3, 2)  # match lengths tried, longest first
MAX_DRAFT = 16  # draft tokens checked per forward pass, at most
LOOKBACK = 2048  # tokens searched for a match
# On a CPU a forward pass over 9 tokens costs about two single-token steps, so a wrong draft is
# not free: the draft length follows what was accepted lately, and after a fully rejected draft
# drafting pauses for a few steps (doubling while it keeps failing), which keeps text that does
# not repeat at the speed of plain decoding.
FIRST_DRAFT = 4
MAX_BACKOFF = 16


def find_draft(tokens: list[int], max_draft: int = MAX_DRAFT) -> list[int]:
    """The tokens that followed the latest earlier occurrence of the last n tokens."""
    window = tokens[-LOOKBACK:]
    for n in NGRAMS:
        if len(window) <= n:
            continue
        tail = window[-n:]
        for start in range(len(window) - n - 1, -1, -1):
            if window[start : start + n] == tail:
                draft = window[start + n : start + n + max_draft]
                if draft:
                    return draft
    return []


class DraftPolicy:
    """How long one sequence's next draft may be: it follows what was accepted lately, and after
    a fully rejected draft drafting pauses (doubling while drafts keep failing)."""

    def __init__(self) -> None:
        self.length = FIRST_DRAFT
        self._pause = 0  # steps left without drafting
        self._backoff = 1

    def draft(self, tokens: list[int], limit: int = MAX_DRAFT) -> list[int]:
        """The draft to check after `tokens` (empty while drafting pauses), at most `limit`."""
        if self._pause:
            self._pause -= 1
            return []
        return find_draft(tokens, min(self.length, limit)) if limit > 0 else []

    def adapt(self, accepted: int, drafted: int) -> None:
        if not drafted:
            return
        if accepted == 0:
            self._pause, self._backoff = self._backoff, min(self._backoff * 2, MAX_BACKOFF)
            self.length = max(1, self.length // 2)
            return
        self._backoff = 1
        grown = self.length * 2 if accepted == drafted else accepted + 1
        self.length = min(MAX_DRAFT, grown)


class SoloSpeculator:
    """One sequence's decoding outside the batch. `cache` holds every token but `last`, the
    newest one, which the next forward pass feeds first."""

    def __init__(self, model: Any, cache: list[Any], cached: list[int], last: int) -> None:
        self.model = model
        self.cache = cache
        self.cached = cached  # the tokens in `cache`
        self.last = last
        self.drafted = 0
        self.accepted = 0
        self.policy = DraftPolicy()

    @staticmethod
    def usable(cache: list[Any]) -> bool:
        return bool(cache) and can_trim_prompt_cache(cache)

    def step(self) -> list[int]:
        """One forward pass; the new tokens it settles (at least one)."""
        draft = self.policy.draft([*self.cached, self.last])
        logits = self.model(mx.array([[self.last, *draft]]), cache=self.cache)
        picks = mx.argmax(logits[0], axis=-1)
        mx.eval(picks, [c.state for c in self.cache])
        greedy = cast(list[int], picks.tolist())
        n = 0
        while n < len(draft) and draft[n] == greedy[n]:
            n += 1
        if len(draft) > n:  # the cache holds [last, draft...]: drop the rejected tail
            trim_prompt_cache(self.cache, len(draft) - n)
        self.cached += [self.last, *draft[:n]]
        self.last = greedy[n]
        self.drafted += len(draft)
        self.accepted += n
        self.policy.adapt(n, len(draft))
        return greedy[: n + 1]
