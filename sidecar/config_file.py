"""The configuration file (`$XDG_CONFIG_HOME/mlx-sidecar/config.toml`) and where each effective
setting came from.

pydantic-settings reads the file (`Settings.settings_customise_sources`: CLI > environment >
file > defaults); this module finds the file, turns a bad one into one clear message per problem
(naming the key, the line where it can, and the source: file, environment variable or flag),
and says for `mlx-sidecar config show` which source each value came from. The checks for
unknown keys are hand-written because pydantic ignores extra keys in nested sections and names no
file or line; the walk follows the model's fields, so sections other features add (e.g.
`[upstreams.NAME]`, `[fallback]`) are checked the same way."""

from __future__ import annotations

import difflib
import os
import re
import tomllib
import types
import typing
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ValidationError
from pydantic_settings import EnvSettingsSource, SettingsError

from sidecar.config import CONFIG_FILE, Settings

ENV_CONFIG = "MLX_SIDECAR_CONFIG"
Source = Literal["default", "file", "env", "cli"]
MASK = "********"
# Values of these keys are secrets; `api_key_env`, `api_key_file`, `api_key_keyring` only name
# where a secret is, and are shown.
SECRET_NAMES = re.compile(r"(^|_)(api_key|key|secret|password|token)$")


class ConfigError(Exception):
    """A configuration the sidecar cannot start with; the message is meant for the user."""


def default_config_path() -> Path:
    base = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(base) / "mlx-sidecar" / "config.toml"


@dataclass(frozen=True)
class ConfigPath:
    path: Path
    chosen_by: Literal["--config", "MLX_SIDECAR_CONFIG", "default"]

    @property
    def required(self) -> bool:
        """A file named by flag or environment must exist; the default one may be absent."""
        return self.chosen_by != "default"


def config_path(flag: Path | None = None) -> ConfigPath:
    if flag is not None:
        return ConfigPath(Path(flag).expanduser().absolute(), "--config")
    if os.environ.get(ENV_CONFIG):
        path = Path(os.environ[ENV_CONFIG]).expanduser().absolute()
        return ConfigPath(path, "MLX_SIDECAR_CONFIG")
    return ConfigPath(default_config_path(), "default")


# -- reading -------------------------------------------------------------------------------------


def read_file(where: ConfigPath) -> tuple[dict[str, Any], str]:
    """The file's tables and its text; ({}, "") when the default file does not exist."""
    path = where.path
    if not path.exists():
        if where.required:
            raise ConfigError(f"{path}: no such configuration file (given by {where.chosen_by})")
        return {}, ""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        raise ConfigError(f"{path}: cannot read the configuration file: {e}") from e
    try:
        return tomllib.loads(text), text
    except tomllib.TOMLDecodeError as e:  # its message ends with "(at line L, column C)"
        raise ConfigError(f"{path}: TOML syntax error: {e}") from e
    except RecursionError:  # tomllib parses nested arrays and tables recursively
        raise ConfigError(f"{path}: arrays or tables nested too deeply") from None


def model_of(annotation: Any) -> type[BaseModel] | None:
    """The pydantic model a field holds directly (`Limits`, `Limits | None`), else None."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        for arg in typing.get_args(annotation):
            found = model_of(arg)
            if found is not None:
                return found
    return None


def mapped_model_of(annotation: Any) -> type[BaseModel] | None:
    """The value model of a `dict[str, Model]` field (`prices`, `upstreams`), else None."""
    if typing.get_origin(annotation) in (dict, Mapping):
        args = typing.get_args(annotation)
        return model_of(args[1]) if len(args) == 2 else None
    return None


def unknown_keys(
    data: Mapping[str, Any], model: type[BaseModel], prefix: str = ""
) -> Iterator[str]:
    """Dotted keys in `data` that `model` has no field for, each with a close match if any."""
    fields = model.model_fields
    names = {name: name for name in fields} | {
        f.alias: name for name, f in fields.items() if f.alias
    }
    for key, value in data.items():
        dotted = f"{prefix}{key}"
        if key not in names:
            close = difflib.get_close_matches(key, list(fields), n=1)
            hint = f" (did you mean {prefix + close[0]!r}?)" if close else ""
            yield f"unknown key {dotted!r}{hint}"
            continue
        annotation = fields[names[key]].annotation
        nested = model_of(annotation)
        if nested is not None and isinstance(value, Mapping):
            yield from unknown_keys(value, nested, f"{dotted}.")
        mapped = mapped_model_of(annotation)
        if mapped is not None and isinstance(value, Mapping):
            for name, entry in value.items():
                if isinstance(entry, Mapping):
                    yield from unknown_keys(entry, mapped, f"{dotted}.{name}.")


def line_of(text: str, dotted: str) -> int | None:
    """The line that sets `dotted` (`limits.max_stops`) in TOML `text`: a `key = ` line under
    the matching `[table]` header, or a dotted key at the top. Best effort, for messages."""
    parts = dotted.split(".")
    table: list[str] = []
    for number, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        header = re.match(r"^\[+\s*([^\]]+?)\s*\]+", line)
        if header:
            table = [p.strip().strip("\"'") for p in header.group(1).split(".")]
            if table == parts:
                return number
            continue
        key = re.match(r"^([A-Za-z0-9_\-\"'. ]+?)\s*=", line)
        if key and table + [p.strip().strip("\"'") for p in key.group(1).split(".")] == parts:
            return number
    return None


# -- provenance ----------------------------------------------------------------------------------


def flatten(data: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in data.items():
        if isinstance(value, Mapping) and value:
            out |= flatten(value, f"{prefix}{key}.")
        else:
            out[f"{prefix}{key}"] = value
    return out


def env_values() -> dict[str, Any]:
    """What the environment sets (nested `MLX_SIDECAR_LIMITS__X` as nested dicts)."""
    return EnvSettingsSource(Settings)()


def env_name(dotted: str) -> str:
    return "MLX_SIDECAR_" + dotted.replace(".", "__").upper()


def sets(layer: Mapping[str, Any], dotted: str) -> bool:
    """Whether `layer` gives `dotted`, a key under it, or a whole value above it."""
    flat = flatten(layer)
    if dotted in flat or any(k.startswith(dotted + ".") for k in flat):
        return True
    parts = dotted.split(".")
    return any(".".join(parts[:i]) in flat for i in range(1, len(parts)))


def source_of(
    dotted: str, cli: Mapping[str, Any], env: Mapping[str, Any], file: Mapping[str, Any]
) -> Source:
    if sets(cli, dotted):
        return "cli"
    if sets(env, dotted):
        return "env"
    return "file" if sets(file, dotted) else "default"


@dataclass
class Loaded:
    settings: Settings
    path: ConfigPath
    file: dict[str, Any]
    env: dict[str, Any]
    cli: dict[str, Any]

    def source(self, dotted: str) -> Source:
        return source_of(dotted, self.cli, self.env, self.file)

    def effective(self) -> list[tuple[str, Any, Source]]:
        """(dotted key, value with secrets masked, source), in the model's field order."""
        rows = []
        for key, value in flatten(self.settings.model_dump(mode="json")).items():
            rows.append((key, masked(key, value), self.source(key)))
        return rows


def masked(dotted: str, value: Any) -> Any:
    if value in (None, "", [], {}):
        return value
    return MASK if SECRET_NAMES.search(dotted.split(".")[-1]) else value


def describe(
    error: dict[str, Any], loaded: tuple[ConfigPath, dict[str, Any], str, dict[str, Any], dict]
) -> str:
    """One pydantic error as `WHERE: KEY: MESSAGE (got VALUE)`, naming the source."""
    where, file, text, env, cli = loaded
    dotted = ".".join(str(p) for p in error["loc"])
    top = str(error["loc"][0]) if error["loc"] else ""
    got = error.get("input")
    shown = MASK if SECRET_NAMES.search(dotted.split(".")[-1] if dotted else "") else got
    detail = f"{error['msg']} (got {shown!r})" if not isinstance(got, dict) else error["msg"]
    flags = cli.get("__flags__", {})
    source = source_of(dotted, {k: v for k, v in cli.items() if k != "__flags__"}, env, file)
    if source == "cli":
        return f"{flags.get(top, '--' + top.replace('_', '-'))}: {detail}"
    if source == "env":
        return f"environment {env_name(dotted)}: {detail}"
    line = line_of(text, dotted)
    at = f":{line}" if line else ""
    return f"{where.path}{at}: key {dotted!r}: {detail}"


def load_settings(
    config_flag: Path | None = None,
    cli: Mapping[str, Any] | None = None,
    flags: Mapping[str, str] | None = None,
) -> Loaded:
    """The effective settings: `cli` (setting name -> value from flags) over the environment
    over the configuration file over defaults. Raises ConfigError with every problem found."""
    where = config_path(config_flag)
    file, text = read_file(where)
    problems = [f"{where.path}{_at(text, k)}: {msg}" for k, msg in _unknown(file)]
    if problems:
        raise ConfigError("\n".join(problems))
    cli = dict(cli or {})
    token = CONFIG_FILE.set(where.path if file else None)
    try:
        env = env_values()
        settings = Settings(**cli)
    except SettingsError as e:  # an environment value that is not valid JSON for its field
        raise ConfigError(f"environment: {e}") from None
    except ValidationError as e:
        ctx = (where, file, text, env, {**cli, "__flags__": dict(flags or {})})
        raise ConfigError(
            "\n".join(describe(dict(err), ctx) for err in e.errors(include_url=False))
        ) from None
    finally:
        CONFIG_FILE.reset(token)
    return Loaded(settings, where, file, env, cli)


def _unknown(file: dict[str, Any]) -> Iterator[tuple[str, str]]:
    for message in unknown_keys(file, Settings):
        yield message.split("'")[1], message


def _at(text: str, dotted: str) -> str:
    line = line_of(text, dotted)
    return f":{line}" if line else ""
