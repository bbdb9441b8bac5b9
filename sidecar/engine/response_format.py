"""OpenAI's `response_format`, shared by the HTTP port and JSON-RPC `mlx/chat`:

    {"type": "text"}                                      free text (the default)
    {"type": "json_object"}                               one JSON object
    {"type": "json_schema", "json_schema": {"name": "...", "schema": {...}, "strict": true}}

Both JSON types are enforced by constrained decoding (`sidecar.engine.constraints`); a schema
that cannot be compiled is a validation error on `response_format`. A chat whose messages never
mention JSON also gets a system instruction to answer in JSON (OpenAI rejects such a request;
here the grammar would force JSON anyway, but a model that was told writes better JSON than one
that is only masked into it).
"""

from __future__ import annotations

import json
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, PrivateAttr, model_validator

from sidecar.engine.constraints import Constraint, ConstraintError

MAX_SCHEMA_IN_PROMPT = 4000  # characters of schema quoted in the instruction, at most


class ResponseFormat(BaseModel):
    """What the reply must be: `text`, any `json_object`, or JSON valid against
    `json_schema.schema` (`json_schema`: `{name, schema, strict?, description?}`)."""

    model_config = ConfigDict(extra="ignore", strict=True)

    type: Literal["text", "json_object", "json_schema"] = "text"
    json_schema: dict[str, Any] | None = None
    _constraint: Constraint | None = PrivateAttr(default=None)

    @model_validator(mode="after")
    def compile(self) -> ResponseFormat:
        try:
            if self.type == "json_object":
                self._constraint = Constraint.json_object()
            elif self.type == "json_schema":
                spec = self.json_schema
                if not isinstance(spec, dict) or "schema" not in spec:
                    raise ValueError(
                        'json_schema needs {"name": ..., "schema": {...}} (with type json_schema)'
                    )
                strict = spec.get("strict")
                if strict is not None and not isinstance(strict, bool):
                    raise ValueError("json_schema.strict must be a boolean")
                name = spec.get("name", "")
                if not isinstance(name, str):
                    raise ValueError("json_schema.name must be a string")
                self._constraint = Constraint.json_schema(
                    spec["schema"], strict=bool(strict), name=name
                )
        except ConstraintError as e:  # pydantic reports ValueErrors as field errors
            raise ValueError(str(e)) from None
        return self

    @property
    def constraint(self) -> Constraint | None:
        return self._constraint

    def instruction(self) -> str | None:
        """What to tell the model, for the JSON types."""
        if self.type == "json_object":
            return "Answer with a JSON object only."
        if self.type == "json_schema" and self.json_schema is not None:
            schema = json.dumps(self.json_schema["schema"], separators=(",", ":"))
            if len(schema) > MAX_SCHEMA_IN_PROMPT:
                return "Answer with a JSON object only."
            return f"Answer with a JSON object only, valid against this JSON schema: {schema}"
        return None


def constraint_of(fmt: ResponseFormat | None) -> Constraint | None:
    return fmt.constraint if fmt is not None else None


def _mentions_json(messages: list[dict[str, Any]]) -> bool:
    for m in messages:
        content = m.get("content")
        parts = content if isinstance(content, list) else [content]
        for part in parts:
            text = part.get("text") if isinstance(part, dict) else part
            if isinstance(text, str) and "json" in text.lower():
                return True
    return False


def with_json_instruction(
    messages: list[dict[str, Any]], fmt: ResponseFormat | None
) -> list[dict[str, Any]]:
    """`messages` (chat template form) with the JSON instruction in the system message, when
    `fmt` asks for JSON and no message mentions JSON."""
    note = fmt.instruction() if fmt is not None else None
    if note is None or _mentions_json(messages):
        return messages
    first = messages[0] if messages else None
    if first is not None and first.get("role") == "system" and isinstance(first["content"], str):
        return [{**first, "content": f"{first['content']}\n\n{note}"}, *messages[1:]]
    return [{"role": "system", "content": note}, *messages]
