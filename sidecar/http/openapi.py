"""`/openapi.json` with the real request bodies. The routes read bodies themselves (orjson, any
Content-Type: `curl -d` sends a form type), so FastAPI sees no body parameter; each route
declares its pydantic model here instead, and the schema carries the models' JSON schemas."""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi
from pydantic import BaseModel

REF = "#/components/schemas/{model}"
ERROR_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "error": {
            "type": "object",
            "properties": {
                "message": {"type": "string"},
                "type": {"type": "string"},
                "param": {"type": ["string", "null"]},
                "code": {"type": ["string", "null"]},
            },
            "required": ["message", "type", "param", "code"],
        }
    },
    "required": ["error"],
}


ANTHROPIC_ERROR_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "type": {"const": "error"},
        "error": {
            "type": "object",
            "properties": {"type": {"type": "string"}, "message": {"type": "string"}},
            "required": ["type", "message"],
        },
    },
    "required": ["type", "error"],
}


def request_body(model: type[BaseModel], error_model: str = "Error") -> dict[str, Any]:
    """`openapi_extra` for a route whose body is `model` as JSON (errors: `error_model`,
    "Error" or "AnthropicError")."""
    error = {"application/json": {"schema": {"$ref": REF.format(model=error_model)}}}
    return {
        "x-body-model": model,  # replaced by the $ref in `install`
        "requestBody": {
            "required": True,
            "content": {"application/json": {"schema": {"$ref": REF.format(model=model.__name__)}}},
        },
        "responses": {"400": {"description": "invalid request", "content": error}},
    }


def install(app: FastAPI) -> None:
    """Serve the schema with the body models' components (built once, on first request)."""

    def schema() -> dict[str, Any]:
        if app.openapi_schema:
            return app.openapi_schema
        models: dict[str, type[BaseModel]] = {}
        for route in app.routes:
            extra = getattr(route, "openapi_extra", None) or {}
            model = extra.pop("x-body-model", None)
            if model is not None:
                models[model.__name__] = model
        doc = get_openapi(title=app.title, version=app.version, routes=app.routes)
        components = doc.setdefault("components", {}).setdefault("schemas", {})
        components["Error"] = ERROR_SCHEMA
        components["AnthropicError"] = ANTHROPIC_ERROR_SCHEMA
        for name, model in models.items():
            body = model.model_json_schema(ref_template=REF, mode="validation")
            components.update(body.pop("$defs", {}))
            components[name] = body
        app.openapi_schema = doc
        return doc

    app.openapi = schema  # type: ignore[method-assign]
