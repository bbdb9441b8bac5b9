"""The configuration file: precedence CLI > environment > file > defaults, `config show` with the
source of each value and secrets masked, clear errors for bad files (no traceback, exit 2), and
the settings that were CLI-only (log level, CORS origins, allowed hosts) working from the file."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from sidecar.cli.main import main
from sidecar.config_file import ConfigError, load_settings
from tests.helpers.cli import cli
from tests.helpers.http_server import start_server, stop_server
from tests.tiny_models import tiny_fim_model

FILE = """
log_level = "info"
idle_ttl_s = 12
max_batch = 7
api_key = "file-secret-123"
cors_origins = ["http://app.example.test"]

[limits]
max_stops = 4
max_messages = 100

[prices."SmolLM2-135M-Instruct"]
input = 0.5
output = 1.5
"""


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    for name in list(os.environ):
        if name.startswith("MLX_SIDECAR_") and name != "MLX_SIDECAR_TEST_MODELS":
            monkeypatch.delenv(name)
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "xdg"))


def write(tmp_path: Path, text: str, name: str = "config.toml") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def test_cli_over_env_over_file_over_defaults(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = write(tmp_path, FILE)
    monkeypatch.setenv("MLX_SIDECAR_IDLE_TTL_S", "5")
    monkeypatch.setenv("MLX_SIDECAR_MAX_BATCH", "9")
    monkeypatch.setenv("MLX_SIDECAR_LIMITS__MAX_STOPS", "2")
    loaded = load_settings(path, {"max_batch": 3, "log_level": "ERROR"})
    s = loaded.settings
    assert s.max_batch == 3  # CLI over env over file
    assert s.log_level == "error"  # CLI over file
    assert s.idle_ttl_s == 5.0  # env over file
    assert s.limits.max_stops == 2  # env over file, inside a table
    assert s.limits.max_messages == 100  # the file's other key in the same table stays
    assert s.limits.max_embed_inputs == 512  # default
    assert s.cors_origins == ["http://app.example.test"]
    assert s.prices["SmolLM2-135M-Instruct"].output == 1.5
    sources = {k: src for k, _, src in loaded.effective()}
    assert sources["max_batch"] == "cli" and sources["idle_ttl_s"] == "env"
    assert sources["limits.max_stops"] == "env" and sources["limits.max_messages"] == "file"
    assert sources["limits.max_embed_inputs"] == "default" and sources["speculative"] == "default"


def test_config_file_from_env_var_and_xdg(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    xdg = tmp_path / "xdg" / "mlx-sidecar"
    xdg.mkdir(parents=True)
    write(xdg, "max_batch = 11\n")
    assert load_settings().settings.max_batch == 11
    assert load_settings().path.chosen_by == "default"
    monkeypatch.setenv("MLX_SIDECAR_CONFIG", str(write(tmp_path, "max_batch = 13\n", "o.toml")))
    assert load_settings().settings.max_batch == 13
    flag = write(tmp_path, "max_batch = 17\n", "flag.toml")
    assert load_settings(flag).settings.max_batch == 17  # --config over MLX_SIDECAR_CONFIG
    monkeypatch.setenv("MLX_SIDECAR_CONFIG", str(tmp_path / "missing.toml"))
    with pytest.raises(ConfigError, match="missing.toml: no such configuration file"):
        load_settings()


def run_main(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    with pytest.raises(SystemExit) as exit:
        main(argv)
    out, err = capsys.readouterr()
    return int(exit.value.code or 0), out, err


def test_config_show_names_sources_and_masks_keys(
    tmp_path: Path,
    models_dir: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    path = write(tmp_path, FILE)
    monkeypatch.setenv("MLX_SIDECAR_IDLE_TTL_S", "5")
    argv = ["--config", str(path), "--models-dir", str(models_dir), "config"]
    code, out, err = run_main([*argv, "show", "--json"], capsys)
    assert code == 0, err
    shown = json.loads(out)
    assert shown["idle_ttl_s"] == {"value": 5.0, "source": "env"}
    assert shown["max_batch"] == {"value": 7, "source": "file"}
    assert shown["models_dir"] == {"value": str(models_dir), "source": "cli"}
    assert shown["limits.max_stops"] == {"value": 4, "source": "file"}
    assert shown["http_port"] == {"value": None, "source": "default"}
    assert shown["api_key"]["value"] == "********"
    assert "file-secret-123" not in out + err
    code, out, err = run_main([*argv, "show"], capsys)
    assert code == 0 and "file-secret-123" not in out
    line = next(row for row in out.splitlines() if row.startswith("max_batch "))
    assert line.split()[-2:] == ["7", "file"]
    monkeypatch.setenv("MLX_SIDECAR_API_KEY", "env-secret-456")
    code, out, err = run_main([*argv, "show"], capsys)
    api = next(row for row in out.splitlines() if row.startswith("api_key "))
    assert api.split()[-2:] == ['"********"', "env"] and "env-secret-456" not in out
    assert run_main([*argv, "path"], capsys)[1].strip() == str(path)
    code, out, _ = run_main([*argv, "check"], capsys)
    assert code == 0 and out.startswith(f"ok: {path}")


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ('log_level = "info"\nidle_ttl_s = \n', ["TOML syntax error", "line 2"]),
        (
            'log_level = "info"\nidle_tll_s = 3\n[limits]\nmax_stopz = 1\n',
            [
                "config.toml:2: unknown key 'idle_tll_s' (did you mean 'idle_ttl_s'?)",
                "config.toml:4: unknown key 'limits.max_stopz' (did you mean 'limits.max_stops'?)",
            ],
        ),
        (
            '\n[limits]\nmax_stops = "many"\n',
            ["config.toml:3: key 'limits.max_stops': Input should be a valid integer", "'many'"],
        ),
        ('log_level = "loud"\n', ["config.toml:1: key 'log_level'", "'debug', 'info'"]),
        ('[prices.m]\ninput = "cheap"\n', ["config.toml:2: key 'prices.m.input'"]),
    ],
    ids=["syntax", "unknown-key", "wrong-type", "bad-level", "bad-price"],
)
def test_bad_file_is_a_clear_error_and_exit_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], text: str, expected: list[str]
) -> None:
    path = write(tmp_path, text)
    for command in (["config", "check"], ["models", "list"]):
        with pytest.raises(SystemExit) as exit:
            main(["--config", str(path), *command])
        err = capsys.readouterr().err
        assert exit.value.code == 2, err
        assert err.startswith("error: ") and "Traceback" not in err
        for part in expected:
            assert part in err


def test_a_bad_file_stops_serve_before_it_starts(tmp_path: Path, models_dir: Path) -> None:
    path = write(tmp_path, "[limits\nmax_stops = 1\n")
    run = cli(models_dir, "--config", str(path), "serve", "--port", "0")
    assert run.returncode == 2 and "Traceback" not in run.stderr
    assert "TOML syntax error" in run.stderr and "line 1" in run.stderr


def test_bad_environment_value_names_the_variable(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("MLX_SIDECAR_IDLE_TTL_S", "soon")
    with pytest.raises(SystemExit) as exit:
        main(["config", "check"])
    err = capsys.readouterr().err
    assert exit.value.code == 2 and "Traceback" not in err
    assert "environment MLX_SIDECAR_IDLE_TTL_S" in err and "'soon'" in err


def test_log_level_cors_and_allowed_hosts_from_the_file(
    tmp_path: Path, sidecar_env: dict[str, str], models_dir: Path
) -> None:
    tiny = tiny_fim_model(models_dir, "starcoder")
    path = write(
        tmp_path,
        f'log_level = "info"\nchat_model = "{tiny}"\nusage_db = "{tmp_path / "u.sqlite3"}"\n'
        'cors_origins = ["http://app.example.test"]\nallowed_hosts = ["sidecar.example.test"]\n',
    )
    env = {**sidecar_env, "MLX_SIDECAR_CONFIG": str(path)}
    server = start_server(env, tmp_path / "serve.log")
    try:
        # INFO lines reach stderr only because the file says so (the default is warning).
        assert "INFO sidecar.http.server: OpenAI API on" in (tmp_path / "serve.log").read_text()
        ok = {"Origin": "http://app.example.test"}
        assert server.raw("GET", "/health", headers=ok)[0] == 200
        status, body = server.raw("GET", "/health", headers={"Origin": "http://evil.test"})
        assert (status, body["error"]["code"]) == (403, "origin_not_allowed")
        assert server.raw("GET", "/health", headers={"Host": "sidecar.example.test"})[0] == 200
        assert server.raw("GET", "/health", headers={"Host": "other.test"})[0] == 421
    finally:
        stop_server(server)
    # The same settings from flags, which win over the file.
    flagged = start_server(env, tmp_path / "flagged.log", "--cors-origin", "http://evil.test")
    try:
        assert flagged.raw("GET", "/health", headers={"Origin": "http://evil.test"})[0] == 200
    finally:
        stop_server(flagged)


def test_the_issue_form_with_upstreams_and_fallback(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    text = (
        'log_level = "info"\n[upstreams.team]\nbase_url = "http://127.0.0.1:9000/v1"\n'
        'api_key_env = "TEAM_KEY"        # or api_key_keyring = "service/user"\n'
        '[fallback]\nchat = "team/SmolLM2-135M-Instruct"\n'
    )
    monkeypatch.setenv("MLX_SIDECAR_UPSTREAMS__TEAM__MAX_CONCURRENCY", "4")
    loaded = load_settings(write(tmp_path, text))
    team = loaded.settings.upstreams["team"]
    assert (team.base_url, team.api_key_env) == ("http://127.0.0.1:9000/v1", "TEAM_KEY")
    assert team.max_concurrency == 4  # env over the file, inside a named table
    assert loaded.settings.fallback.chat == "team/SmolLM2-135M-Instruct"
    sources = {k: src for k, _, src in loaded.effective()}
    assert sources["upstreams.team.base_url"] == "file"
    assert sources["upstreams.team.max_concurrency"] == "env"
    assert sources["fallback.chat"] == "file" and sources["fallback.embedding"] == "default"
    bad = write(tmp_path, text.replace("api_key_env", "api_key_evn"), "bad.toml")
    with pytest.raises(ConfigError) as error:
        load_settings(bad)
    assert "bad.toml:4: unknown key 'upstreams.team.api_key_evn'" in str(error.value)
    assert "did you mean 'upstreams.team.api_key_env'" in str(error.value)
    wrong = write(tmp_path, text.replace("http://127", "ftp://127"), "wrong.toml")
    with pytest.raises(ConfigError, match=r"wrong.toml:3: key 'upstreams.team.base_url'"):
        load_settings(wrong)
