"""The wire types: the extension's TypeScript (`editor-extension/src/protocol.ts`) matches the
pydantic models field for field (and the method map types every request), and `Engine.status()`
is the typed model.
No model runs here except the session engine's status (no generation)."""

from __future__ import annotations

import pytest

from sidecar import wire, wire_ts
from sidecar.engine.engine import Engine

TS = wire_ts.PROTOCOL_TS.read_text()


def test_protocol_ts_matches_the_models() -> None:
    stale = wire_ts.differences(TS, wire_ts.render())
    assert not stale, f"{stale} differ: run `python -m sidecar.wire_ts --write`"
    assert wire_ts.main(["--check"]) == 0


class UnloadResult(wire.UnloadResult):  # named like the real one: the TS name follows the class
    freed_bytes: int


def test_a_field_added_in_python_only_fails() -> None:
    sent = [UnloadResult if t is wire.UnloadResult else t for t in wire_ts.SENT]
    assert wire_ts.differences(TS, wire_ts.render(sent=sent)) == ["UnloadResult"]


def test_a_field_added_in_typescript_only_fails() -> None:
    edited = TS.replace("  unloaded: boolean;\n", "  unloaded: boolean;\n  freed_bytes: number;\n")
    assert edited != TS
    assert wire_ts.differences(edited, wire_ts.render()) == ["UnloadResult"]


def test_an_optional_field_made_required_in_typescript_fails() -> None:
    edited = TS.replace("  max_tokens?: number;\n", "  max_tokens: number;\n")
    assert edited != TS
    assert wire_ts.differences(edited, wire_ts.render()) == ["ChatParams"]


def test_fim_is_a_family_name_not_a_flag() -> None:
    entry = wire_ts.declarations(wire_ts.render())["ModelEntry"]
    assert "  fim: string | null;" in entry.splitlines()


def test_unknown_fields_are_refused() -> None:
    with pytest.raises(ValueError, match="extra"):
        wire.Usage(prompt_tokens=1, completion_tokens=0, total_tokens=1, cached=3)  # type: ignore[call-arg]
    assert wire.Usage.of(3, 2) == wire.Usage(prompt_tokens=3, completion_tokens=2, total_tokens=5)


async def test_engine_status_is_typed(engine: Engine) -> None:
    status = engine.status()
    assert isinstance(status, wire.EngineStatus)
    assert status.memory.active_bytes > 0
    assert {m.id for m in status.loaded} >= {"SmolLM2-135M-Instruct", "all-MiniLM-L6-v2"}
    assert wire.EngineStatus.model_validate(status.model_dump(mode="json")) == status


def test_every_custom_method_has_its_types_in_protocol_ts(engine: Engine) -> None:
    """The extension's `request()` is typed by `Requests`: a method the server registers but the
    map leaves out (or one the map names but nobody serves) fails here."""
    from sidecar.lsp.server import build_server

    served = {
        m
        for m in build_server(engine, engine.settings).protocol.fm.features
        if m.startswith("mlx/")
    }
    internal = {"mlx/completion/stats"}  # tests and benchmarks only
    assert served - internal == set(wire_ts.REQUESTS)
    block = wire_ts.declarations(wire_ts.render())
    for method in (*wire_ts.REQUESTS, *wire_ts.NOTIFICATIONS):
        assert f'"{method}"' in block["Requests"] + block["Notifications"]
