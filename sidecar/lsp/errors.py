"""Params for custom requests as pydantic models, and exceptions as JSON-RPC errors:
bad params -> -32602 naming the field; unknown model -> -32602 naming the model and the
local ones; other engine errors -> -32603 with the engine's message."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any, TypeVar

from pydantic import BaseModel, ConfigDict, ValidationError
from pydantic.alias_generators import to_camel
from pygls.exceptions import JsonRpcInternalError, JsonRpcInvalidParams

from sidecar.engine.requests import EngineError, PromptTooLongError
from sidecar.limits import Limits
from sidecar.models.store import InvalidModelIdError, ModelNotFoundError

P = TypeVar("P", bound=BaseModel)


class Params(BaseModel):
    """Base for custom request params: snake_case or camelCase keys; unknown keys rejected;
    strict types (`"pin": "yes"` is an error, not true)."""

    model_config = ConfigDict(
        alias_generator=to_camel, populate_by_name=True, extra="forbid", strict=True
    )


def describe_errors(exc: ValidationError) -> str:
    parts = []
    for err in exc.errors():
        field = ".".join(str(p) for p in err["loc"]) or "params"
        parts.append(f"{field}: {err['msg']}")
    return "invalid params: " + "; ".join(parts)


def parse(model: type[P], params: Any, limits: Limits | None = None) -> P:
    """Validate request params (within `limits`); raise -32602 naming each bad field."""
    if params is None:
        params = {}
    if not isinstance(params, dict):
        raise JsonRpcInvalidParams("invalid params: params must be an object")
    try:
        return model.model_validate(params, context=limits)
    except ValidationError as e:
        fields = [".".join(str(p) for p in err["loc"]) for err in e.errors()]
        raise JsonRpcInvalidParams(describe_errors(e), data={"fields": fields}) from None


@contextlib.contextmanager
def rpc_errors() -> Iterator[None]:
    """Turn the engine's and store's errors into JSON-RPC errors with a readable message."""
    try:
        yield
    except (ModelNotFoundError, InvalidModelIdError, PromptTooLongError) as e:
        raise JsonRpcInvalidParams(str(e).strip("'\"")) from None
    except EngineError as e:
        if type(e).__name__ == "WrongModelKindError":
            raise JsonRpcInvalidParams(str(e)) from None
        raise JsonRpcInternalError(str(e)) from None
    except (OSError, ValueError, RuntimeError) as e:
        raise JsonRpcInternalError(f"{type(e).__name__}: {e}") from None
