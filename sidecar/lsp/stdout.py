"""stdout belongs to the JSON-RPC transport alone (kept light: `stdio --attach` imports it)."""

from __future__ import annotations

import os
import sys
from typing import BinaryIO


def claim_stdout() -> BinaryIO:
    """A private handle on the real stdout; fd 1 and sys.stdout now go to stderr."""
    transport = os.fdopen(os.dup(sys.stdout.fileno()), "wb", buffering=0)
    sys.stdout.flush()
    os.dup2(sys.stderr.fileno(), sys.stdout.fileno())
    sys.stdout = sys.stderr
    return transport
