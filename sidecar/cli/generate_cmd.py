"""`mlx-sidecar generate`: run a raw prompt through the engine and stream it to the terminal."""

from __future__ import annotations

import argparse
import asyncio
import sys
from typing import TYPE_CHECKING

from sidecar.config import Settings
from sidecar.errors import SidecarError

if TYPE_CHECKING:  # the engine loads in `run`: every command line builds this parser
    from sidecar.engine.requests import Result


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("generate", help="generate from a raw prompt (no chat template)")
    p.add_argument("prompt")
    p.add_argument("--model", help="model id (default: the chat model)")
    p.add_argument("--max-tokens", type=int, default=128)
    p.add_argument("--temperature", type=float, default=0.0)
    p.add_argument("--top-p", type=float, default=1.0)
    p.add_argument("--seed", type=int)
    p.add_argument("--stop", action="append", default=[], help="stop string (repeatable)")
    p.add_argument("--chat", action="store_true", help="wrap the prompt in the chat template")
    p.set_defaults(run=run)


async def _generate(args: argparse.Namespace, settings: Settings) -> Result:
    from sidecar.engine.chat import chat_prompt
    from sidecar.engine.engine import Engine
    from sidecar.engine.requests import Delta, GenerateRequest

    async with Engine(settings) as engine:
        prompt: str | list[int] = args.prompt
        if args.chat:
            loaded = await engine.text_model(args.model)
            prompt = chat_prompt(loaded, [{"role": "user", "content": args.prompt}])
        request = GenerateRequest(
            prompt=prompt,
            model=args.model,
            max_tokens=args.max_tokens,
            temperature=args.temperature,
            top_p=args.top_p,
            seed=args.seed,
            stop=args.stop,
        )
        result = None
        async for event in engine.generate(request):
            if isinstance(event, Delta):
                sys.stdout.write(event.text)
                sys.stdout.flush()
            else:
                result = event
        assert result is not None
        return result


def run(args: argparse.Namespace, settings: Settings) -> int:
    try:
        result = asyncio.run(_generate(args, settings))
    except SidecarError as e:  # any error meant for the user: its message, no traceback
        print(f"error: {e}", file=sys.stderr)
        return 2
    print()
    ttft = f"{result.time_to_first_token_s:.2f} s" if result.time_to_first_token_s else "-"
    tps = f"{result.tokens_per_s:.1f}" if result.tokens_per_s else "-"
    print(
        f"[{result.finish_reason}; {result.prompt_tokens} prompt + {result.completion_tokens} "
        f"completion tokens; first token {ttft}; {tps} tokens/s]",
        file=sys.stderr,
    )
    return 1 if result.finish_reason == "error" else 0
