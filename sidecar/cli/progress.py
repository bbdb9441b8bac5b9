"""Progress bars on stderr (stdout stays clean for JSON-RPC and for piping)."""

from __future__ import annotations

import sys

from tqdm import tqdm


class StepBar:
    """A tqdm bar fed by `progress(message, done, total)` callbacks."""

    def __init__(self, label: str) -> None:
        self.label = label
        self.bar: tqdm | None = None

    def update(self, message: str, done: int, total: int) -> None:
        if self.bar is None:
            self.bar = tqdm(total=total, desc=self.label, file=sys.stderr, leave=False)
        if total != self.bar.total:  # a step that learned how much work there is
            self.bar.total = total
        self.bar.set_postfix_str(message)
        self.bar.n = done
        self.bar.refresh()

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None

    def __enter__(self) -> StepBar:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
