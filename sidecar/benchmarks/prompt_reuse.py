"""How much of each keystroke's prompt the previous keystroke's prompt already holds, from the
prompt layout alone (no model runs): the shared leading token ids of consecutive prompts are
what the engine's prompt cache can reuse at best. Used to choose the FIM order per family
(PSM vs SPM) and to check the prefix window on a long file.

    python -m sidecar.benchmarks.prompt_reuse MODELS_DIR [MODEL ...]
"""

from __future__ import annotations

import json
import statistics
import sys
from pathlib import Path
from typing import Any

from sidecar.completion.context import ContextRing, as_files, sticky
from sidecar.completion.fim import Order
from sidecar.completion.options import CompletionOptions
from sidecar.completion.prompt import build_completion_prompt, token_counter, vocab_of

SESSION = Path(__file__).with_name("typing-session.json")
REPO = Path(__file__).resolve().parents[2]


def apply_insert(text: str, line: int, character: int, insert: str) -> tuple[str, int]:
    lines = text.split("\n")
    offset = sum(len(ln) + 1 for ln in lines[:line]) + character
    return text[:offset] + insert + text[offset:], offset + len(insert)


def padded_session(session: dict[str, Any], lines: int = 300) -> dict[str, Any]:
    """The session typed into a long file: `lines` lines of this repo's own code above it, so
    the prefix window has to slide."""
    sources = sorted((REPO / "sidecar").rglob("*.py"))
    pad: list[str] = []
    for path in sources:
        pad += path.read_text().split("\n")
        if len(pad) >= lines:
            break
    pad = pad[:lines]
    events = [{**e, "line": e["line"] + len(pad)} for e in session["events"]]
    return {
        **session,
        "initial_text": "\n".join(pad) + "\n" + session["initial_text"],
        "events": events,
    }


def keystroke_states(session: dict[str, Any]) -> list[tuple[str, str]]:
    text = session["initial_text"]
    states = []
    for e in session["events"]:
        text, offset = apply_insert(text, e["line"], e["character"], e["insert"])
        states.append((text[:offset], text[offset:]))
    return states


def shared(a: list[int], b: list[int]) -> int:
    n = 0
    for x, y in zip(a, b, strict=False):
        if x != y:
            break
        n += 1
    return n


def replay(
    tokenizer: Any,
    family: str | None,
    states: list[tuple[str, str]],
    order: Order | None = None,
    context: list[tuple[str, str]] | None = None,
) -> dict[str, Any]:
    """Median share of each prompt's tokens already in the previous prompt."""
    options = CompletionOptions()
    vocab = vocab_of(tokenizer)
    shares, sizes = [], []
    previous: list[int] = []
    for prefix, suffix in states:
        prompt = build_completion_prompt(
            tokenizer,
            family,
            prefix,
            suffix,
            prefix_tokens=options.prefix_tokens,
            suffix_tokens=options.suffix_tokens,
            extra_files=context,
            path="shop/inventory.py",
            repo="shop",
            vocab=vocab,
            order=order,
        )
        ids = [int(t) for t in prompt.prompt]
        if previous:
            shares.append(shared(previous, ids) / len(ids))
        sizes.append(len(ids))
        previous = ids
    return {
        "median_share": round(statistics.median(shares), 4),
        "p10_share": round(sorted(shares)[len(shares) // 10], 4),
        "min_share": round(min(shares), 4),
        "changed_median_share": round(statistics.median([x for x in shares if x < 1] or [1]), 4),
        "prompt_tokens_median": statistics.median(sizes),
    }


def context_from_repo(tokenizer: Any, budget: int) -> list[tuple[str, str]]:
    """Other files as the ring would pick them: chunks of this repo's files."""
    options = CompletionOptions()
    ring = ContextRing(options.ring_chunks, options.chunk_lines)
    for path in sorted((REPO / "sidecar" / "completion").glob("*.py"))[:4]:
        ring.note(f"file:///repo/{path.name}", path.read_text(), 40)
    return as_files(sticky([], ring.pick("file:///repo/shop.py", budget, token_counter(tokenizer))))


def main(models_dir: str, models: list[str]) -> None:
    from mlx_lm.utils import load_tokenizer

    from sidecar.models.store import ModelStore

    store = ModelStore(Path(models_dir), use_hf_cache=False)
    session = json.loads(SESSION.read_text())
    files = {"session file": session, "long file (+300 lines)": padded_session(session)}
    print(
        "| model | family | order | file | median share | median where the prompt changed "
        "| p10 | min | prompt tokens |"
    )
    print("|---|---|---|---|---:|---:|---:|---:|---:|")
    for model in models:
        info = store.info(model)
        tokenizer = load_tokenizer(info.path)
        context = context_from_repo(tokenizer, CompletionOptions().context_tokens)
        orders: list[Order | None] = (
            ["psm", "spm"] if info.fim in ("starcoder", "codellama") else [None]
        )
        for name, s in files.items():
            states = keystroke_states(s)
            for order in orders:
                r = replay(tokenizer, info.fim, states, order, context)
                print(
                    f"| {model} | {info.fim} | {order or '-'} | {name} | {r['median_share']} | "
                    f"{r['changed_median_share']} | {r['p10_share']} | {r['min_share']} | "
                    f"{r['prompt_tokens_median']} |"
                )


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2:])
