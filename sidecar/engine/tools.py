"""Tools a chat request offers the model: their definitions, the caller's choice, how they reach
the prompt, and the grammar that forces a call when the caller requires one.

Both edges (HTTP `/v1/chat/completions`, JSON-RPC `mlx/chat`) take the same OpenAI shapes, so
the request models live here, beside the engine, not in either edge.

A template that renders tools (mlx_lm infers the family's tool parser from it: Qwen, Mistral,
Llama 3.x, …) gets them as `apply_chat_template(..., tools=...)`. A template without a tools
section (SmolLM2, the default chat model) still takes them: they are described in a system
message that asks for mlx_lm's json_tools markup (`<tool_call>{"name", "arguments"}</tool_call>`),
which the same parser reads back.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from sidecar.engine.messages import added_tokens
from sidecar.engine.reply import Markers
from sidecar.errors import EngineError

FALLBACK_PARSER = "json_tools"  # mlx_lm.tool_parsers.json_tools
# Calls one forced reply may make (tool_choice "required" with parallel calls): a weak model
# repeats calls until max_tokens otherwise.
MAX_FORCED_CALLS = 4


class ToolsError(EngineError):
    param = "tools"


class ToolChoiceError(EngineError):
    param = "tool_choice"


class Strict(BaseModel):
    model_config = ConfigDict(extra="ignore", strict=True)


class FunctionDef(Strict):
    name: Annotated[str, Field(pattern=r"^[A-Za-z0-9_.-]{1,64}$")]
    description: str | None = None
    parameters: dict[str, Any] | None = None
    strict: bool | None = None

    def arguments_schema(self) -> dict[str, Any]:
        """The arguments' JSON schema (no parameters: an object of anything)."""
        return self.parameters or {"type": "object"}


class ToolDef(Strict):
    type: Literal["function"]
    function: FunctionDef


class FunctionName(Strict):
    name: str


class NamedToolChoice(Strict):
    type: Literal["function"]
    function: FunctionName


ToolChoice = Literal["auto", "none", "required"] | NamedToolChoice


class CallFunction(Strict):
    name: str
    arguments: str | dict[str, Any] = "{}"


class ToolCallIn(Strict):
    """An earlier reply's call, sent back in an assistant message."""

    id: str | None = None
    type: Literal["function"] = "function"
    function: CallFunction

    def to_template(self) -> dict[str, Any]:
        """Arguments as an object: templates print them with `tojson` (or print a string
        as it is), as mlx_lm.server hands them."""
        args = self.function.arguments
        if isinstance(args, str):
            try:
                args = json.loads(args or "{}")
            except json.JSONDecodeError as e:
                raise EngineError(
                    f"tool call {self.function.name!r}: arguments are not JSON: {e}"
                ) from e  # the edge names `messages`
        out: dict[str, Any] = {
            "type": "function",
            "function": {"name": self.function.name, "arguments": args},
        }
        if self.id:
            out["id"] = self.id
        return out


@dataclass
class ToolRequest:
    """The tools of one request and what the caller allows the model to do with them."""

    tools: list[ToolDef]
    choice: ToolChoice = "auto"
    parallel: bool = True

    def __post_init__(self) -> None:
        names = [t.function.name for t in self.tools]
        if len(set(names)) != len(names):
            raise ToolsError("tool names must be unique")
        if isinstance(self.choice, NamedToolChoice) and self.choice.function.name not in names:
            raise ToolChoiceError(
                f"tool_choice names {self.choice.function.name!r}, which is not among the tools"
            )
        if self.choice == "required" and not self.tools:
            raise ToolChoiceError("tool_choice 'required' needs tools")

    @property
    def active(self) -> bool:
        """Whether the model sees the tools and its calls are parsed."""
        return bool(self.tools) and self.choice != "none"

    def forced(self) -> list[ToolDef] | None:
        """The tools the reply must call one of; None: the model chooses (or no tools)."""
        if not self.active or self.choice == "auto":
            return None
        if isinstance(self.choice, NamedToolChoice):
            name = self.choice.function.name
            return [t for t in self.tools if t.function.name == name]
        return list(self.tools)

    def template_tools(self) -> list[dict[str, Any]]:
        return [t.model_dump(exclude_none=True) for t in self.tools]


def of_request(
    tools: list[ToolDef] | None, choice: ToolChoice | None, parallel: bool | None
) -> ToolRequest | None:
    """The edges' fields -> a ToolRequest (None when the request offers no tools)."""
    if not tools:
        if choice is not None and choice not in ("none", "auto"):
            raise ToolChoiceError("tool_choice needs tools")
        return None
    return ToolRequest(tools, choice or "auto", True if parallel is None else parallel)


def template_messages(messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Messages as templates take them: no None contents, earlier calls' arguments as objects
    (either edge may hand them as OpenAI sends them: a JSON string)."""
    out = []
    for m in messages:
        m = {**m, "content": m.get("content") or ""}
        if m.get("tool_calls"):
            m["tool_calls"] = [
                ToolCallIn.model_validate(c, strict=False).to_template() for c in m["tool_calls"]
            ]
        out.append(m)
    return out


# -- markers, from the tokenizer mlx_lm loaded -------------------------------------------------


def think_markers(tokenizer: Any) -> tuple[str, str] | None:
    """`<think>`/`</think>` (or the family's pair) when the vocabulary has them (mlx_lm's
    TokenizerWrapper infers them)."""
    if getattr(tokenizer, "has_thinking", False):
        return (tokenizer.think_start, tokenizer.think_end)
    return None


def native_tools(tokenizer: Any) -> bool:
    """Whether the chat template renders tools itself (mlx_lm found the family's parser)."""
    return bool(getattr(tokenizer, "has_tool_calling", False)) and tokenizer.tool_parser is not None


def reply_markers(tokenizer: Any, tools: ToolRequest | None) -> Markers:
    markers = Markers(think=think_markers(tokenizer))
    if tools is None or not tools.active:
        return markers
    if native_tools(tokenizer):
        markers.tool = (tokenizer.tool_call_start, tokenizer.tool_call_end)
        markers.parser = tokenizer.tool_parser
    else:
        from mlx_lm.tool_parsers import json_tools

        markers.tool = (json_tools.tool_call_start, json_tools.tool_call_end)
        markers.parser = json_tools.parse_tool_call
    markers.tools = tools.template_tools()
    return markers


def prompt_opens_think(tokenizer: Any, prompt: list[int]) -> bool:
    """Whether the rendered prompt ends inside a think block (DeepSeek-R1, Qwen3-Thinking open
    `<think>` in the generation prompt): the reply starts as reasoning."""
    if think_markers(tokenizer) is None:
        return False
    start = tokenizer.rfind_think_start(prompt)
    return bool(start >= 0 and start > tokenizer.rfind_think_end(prompt))


# -- the prompt --------------------------------------------------------------------------------


def fallback_system_text(tools: ToolRequest) -> str:
    """The tools described for a template that has no tools section, asking for json_tools
    markup (the format Qwen's and Hermes' templates teach, parsed by mlx_lm)."""
    lines = [
        "You can call functions to help with the user's request. They are given as JSON "
        "schemas inside <tools></tools>:",
        "<tools>",
        *(json.dumps(t, ensure_ascii=False) for t in tools.template_tools()),
        "</tools>",
        "To call a function, answer with a JSON object of its name and arguments inside "
        "<tool_call></tool_call> tags, and nothing else:",
        '<tool_call>\n{"name": <function-name>, "arguments": <args-json-object>}\n</tool_call>',
    ]
    forced = tools.forced()
    if forced is not None:
        names = ", ".join(t.function.name for t in forced)
        lines.append(f"You must call one of: {names}.")
    return "\n".join(lines)


def fallback_messages(messages: list[dict[str, Any]], tools: ToolRequest | None) -> list[dict]:
    """Messages for a template without tools: the tools in a system message; earlier calls and
    tool results written as the json_tools markup the model is asked for."""
    out: list[dict[str, Any]] = []
    for m in messages:
        m = dict(m)
        calls = m.pop("tool_calls", None)
        m.pop("tool_call_id", None)
        if calls:
            marked = [
                "<tool_call>\n"
                + json.dumps(
                    {"name": c["function"]["name"], "arguments": c["function"]["arguments"]},
                    ensure_ascii=False,
                )
                + "\n</tool_call>"
                for c in calls
            ]
            m["content"] = "\n".join([*([m["content"]] if m.get("content") else []), *marked])
        if m["role"] == "tool":
            m = {"role": "user", "content": f"<tool_response>\n{m['content']}\n</tool_response>"}
        out.append(m)
    if tools is not None and tools.active:
        text = fallback_system_text(tools)
        if out and out[0]["role"] == "system" and isinstance(out[0].get("content"), str):
            out[0] = {**out[0], "content": out[0]["content"] + "\n\n" + text}
        else:
            out.insert(0, {"role": "system", "content": text})
    return out


# -- the grammar of a forced call ----------------------------------------------------------------


def call_schema(tools: list[ToolDef]) -> dict[str, Any]:
    """`{"name": <one of the tools>, "arguments": <that tool's parameters>}`."""
    options = [
        {
            "type": "object",
            "properties": {
                "name": {"const": t.function.name},
                "arguments": t.function.arguments_schema(),
            },
            "required": ["name", "arguments"],
            "additionalProperties": False,
        }
        for t in tools
    ]
    return options[0] if len(options) == 1 else {"anyOf": options}


def lark_string(text: str) -> str:
    return json.dumps(text)  # a JSON string literal is a Lark string literal


def lark_marker(marker: str, tokenizer: Any) -> str:
    """A marker in the grammar: an added token (Qwen's `<tool_call>`) by its id, since
    llguidance keeps added tokens apart from the text they spell; other markers as text."""
    token = added_tokens(tokenizer).get(marker)
    return f"<[{token}]>" if token is not None else lark_string(marker)


def forced_call_grammar(
    markers: Markers, tools: ToolRequest, tokenizer: Any, in_reasoning: bool = False
) -> str | None:
    """A Lark grammar (llguidance dialect) that holds the reply to one call of a forced tool
    (one or more for "required" with `parallel`), in the markup the parser reads. None when no call is forced, or
    for a family whose markup is not JSON inside start/end markers (only json_tools is).
    `in_reasoning`: the prompt opened a think block, which the reply closes first (a forced
    call skips thinking)."""
    forced = tools.forced()
    if forced is None or markers.tool is None:
        return None
    if getattr(markers.parser, "__module__", "").rsplit(".", 1)[-1] != FALLBACK_PARSER:
        return None
    start, end = markers.tool
    open_, close = lark_marker(start, tokenizer), lark_marker(end, tokenizer)
    call = f'{open_} "\\n" body "\\n" {close}'
    # a named function is called once; "required" with parallel calls allows more
    several = tools.parallel and not isinstance(tools.choice, NamedToolChoice)
    more = f" ({lark_string(chr(10))} call){{0,{MAX_FORCED_CALLS - 1}}}" if several else ""
    # compact JSON: with flexible whitespace a weak model can emit blanks forever
    options = {"x-guidance": {"whitespace_flexible": False, "lenient": True}}
    schema = json.dumps({**call_schema(forced), **options}, ensure_ascii=False)
    think = ""
    if in_reasoning and markers.think is not None:
        think = f'{lark_marker(markers.think[1], tokenizer)} "\\n\\n" '
    return f"start: {think}call{more}\ncall: {call}\nbody: %json{schema}\n"
