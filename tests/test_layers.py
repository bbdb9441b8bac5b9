"""The two edges are peers: the language server (`sidecar/lsp/`) and the OpenAI port
(`sidecar/http/`) import nothing from each other, and the core imports neither; the command
line (`sidecar/cli/`) composes them. Checked on the source (imports, and module names in strings
for `importlib`), so it needs no model and runs in well under a second."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

SIDECAR = Path(__file__).resolve().parent.parent / "sidecar"
FORBIDDEN = {
    "lsp": ("sidecar.http", "sidecar.cli"),
    "http": ("sidecar.lsp", "sidecar.cli"),
    "engine": ("sidecar.lsp", "sidecar.http", "sidecar.cli"),
    "models": ("sidecar.lsp", "sidecar.http", "sidecar.cli"),
    "completion": ("sidecar.lsp", "sidecar.http", "sidecar.cli"),
    "daemon": ("sidecar.http", "sidecar.cli", "sidecar.engine"),  # the CLI composes the port
    "upstreams": ("sidecar.lsp", "sidecar.http", "sidecar.cli"),
    "workspace": ("sidecar.lsp", "sidecar.http", "sidecar.cli"),
}


def imported_names(path: Path) -> list[tuple[int, str]]:
    """Every module `path` imports, and every string that names a `sidecar.` module."""
    names: list[tuple[int, str]] = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.append((node.lineno, node.module))
            names += [(node.lineno, f"{node.module}.{alias.name}") for alias in node.names]
        elif (
            isinstance(node, ast.Constant)
            and isinstance(node.value, str)
            and node.value.startswith("sidecar.")
        ):
            names.append((node.lineno, node.value))
    return names


def is_under(name: str, package: str) -> bool:
    return name == package or name.startswith(package + ".")


@pytest.mark.parametrize("layer", sorted(FORBIDDEN))
def test_layer_does_not_import_its_peers(layer: str) -> None:
    found = [
        f"{path.relative_to(SIDECAR.parent)}:{line} imports {name}"
        for path in sorted((SIDECAR / layer).rglob("*.py"))
        for line, name in imported_names(path)
        if any(is_under(name, bad) for bad in FORBIDDEN[layer])
    ]
    assert not found, "\n".join(found)


def test_the_check_sees_a_function_level_import(tmp_path: Path) -> None:
    module = tmp_path / "m.py"
    module.write_text(
        "def f():\n    from sidecar.http.server import serve_http\n"
        "    import importlib; importlib.util.find_spec('sidecar.http.server')\n"
    )
    assert [name for _, name in imported_names(module)] == [
        "sidecar.http.server",
        "sidecar.http.server.serve_http",
        "importlib",
        "sidecar.http.server",
    ]
