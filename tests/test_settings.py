"""Settings: defaults, the file → env → flags order, env parsing, errors that say where, saving."""

from __future__ import annotations

import json
import os
import stat
import sys
from collections.abc import Mapping
from pathlib import Path

import pytest

from tray_app.errors import SettingsError
from tray_app.settings import (
    DEFAULT_MODEL_ALIASES,
    Paths,
    Settings,
    configurable_fields,
    ensure_dirs,
    env_var_name,
    load_settings,
    resolve_paths,
    save_setting_values,
)


def home_env(tmp_path: Path, **extra: str) -> dict[str, str]:
    return {"CLAUDE_TRAY_HOME": str(tmp_path), **extra}


def write_settings(tmp_path: Path, content: object) -> Path:
    path = resolve_paths(home_env(tmp_path)).settings_file
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(content if isinstance(content, str) else json.dumps(content), "utf-8")
    return path


def mode_of(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


# ---- paths ----


def test_home_moves_every_path_and_creates_nothing(tmp_path: Path) -> None:
    home = tmp_path / "tray-home"
    paths = resolve_paths({"CLAUDE_TRAY_HOME": str(home)})

    assert paths == Paths(
        home=home,
        config_dir=home / "config",
        data_dir=home / "data",
        log_dir=home / "logs",
        runtime_dir=home / "run",
    )
    assert paths.settings_file == home / "config" / "settings.json"
    assert not home.exists()


def test_ensure_dirs_creates_private_dirs(tmp_path: Path) -> None:
    paths = resolve_paths(home_env(tmp_path / "h"))
    ensure_dirs(paths)
    ensure_dirs(paths)  # a second call is harmless

    for directory in (paths.config_dir, paths.data_dir, paths.log_dir, paths.runtime_dir):
        assert directory.is_dir()
        if os.name == "posix":
            assert mode_of(directory) == 0o700


def test_platform_paths_without_home() -> None:
    paths = resolve_paths({})

    assert paths.home is None
    for directory in (paths.config_dir, paths.data_dir, paths.log_dir, paths.runtime_dir):
        assert "claude-tray" in str(directory)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="XDG_RUNTIME_DIR is Linux's")
def test_runtime_dir_uses_xdg_runtime_dir_when_it_exists(tmp_path: Path) -> None:
    assert resolve_paths({"XDG_RUNTIME_DIR": str(tmp_path)}).runtime_dir == tmp_path / "claude-tray"
    missing = tmp_path / "missing"
    paths = resolve_paths({"XDG_RUNTIME_DIR": str(missing)})
    assert paths.runtime_dir == paths.data_dir / "run"


# ---- defaults and precedence ----


def test_defaults_without_file_or_env(tmp_path: Path) -> None:
    settings = load_settings(home_env(tmp_path))

    assert settings == Settings(paths=resolve_paths(home_env(tmp_path)))
    assert settings.host == "127.0.0.1"
    assert settings.port == 3456
    assert settings.api_key is None
    assert settings.max_body_bytes == 32 * 1024 * 1024
    assert (settings.max_json_depth, settings.max_messages) == (128, 10_000)
    assert settings.model_aliases == DEFAULT_MODEL_ALIASES
    assert settings.warnings == ()
    assert not settings.listens_beyond_loopback
    hash(settings)  # usable as a dict key / in sets


def test_file_then_env_then_overrides(tmp_path: Path) -> None:
    write_settings(
        tmp_path, {"port": 1001, "host": "127.0.0.2", "max_queue": 3, "log_level": "DEBUG"}
    )
    env = home_env(tmp_path, CLAUDE_TRAY_PORT="1002", CLAUDE_TRAY_MAX_QUEUE="4")

    from_file_and_env = load_settings(env)
    assert (from_file_and_env.port, from_file_and_env.max_queue) == (1002, 4)
    assert from_file_and_env.host == "127.0.0.2"
    assert from_file_and_env.log_level == "debug"

    with_flags = load_settings(env, {"port": 1003, "host": None, "max_queue": None})
    assert with_flags.port == 1003
    assert with_flags.host == "127.0.0.2"  # None means the flag was not given
    assert with_flags.max_queue == 4


def test_every_field_has_an_env_var(tmp_path: Path) -> None:
    samples: dict[object, tuple[str, object]] = {
        int: ("7", 7),
        float: ("2.5", 2.5),
        bool: ("true", True),
        str | None: ("value-x", "value-x"),
        tuple[str, ...]: ("a.test, b.test", ("a.test", "b.test")),
        Mapping[str, str]: ("my-model=haiku", {**DEFAULT_MODEL_ALIASES, "my-model": "haiku"}),
    }
    by_name: dict[str, tuple[str, object]] = {
        "host": ("example.test", "example.test"),
        "log_level": ("warning", "warning"),
        "on_extra_usage": ("warn", "warn"),
        "agent_activity": ("hide", "hide"),
        "upstream_url": ("https://upstream.test", "https://upstream.test"),
    }
    fields = configurable_fields()
    assert set(fields) == {
        "host", "port", "api_key", "upstream_url", "upstream_api_key", "cli_path",
        "max_concurrent", "max_queue", "inactivity_timeout", "request_timeout",
        "shutdown_grace", "keepalive_interval", "cli_max_retries", "max_body_bytes",
        "allowed_hosts", "allowed_origins", "model_aliases", "log_level",
        "pool_size", "pool_idle_timeout", "max_processes", "session_ttl_days",
        "on_extra_usage", "agent_mode", "agent_roots", "agent_mcp_config", "agent_activity",
        "rate_limit_per_minute", "max_json_depth", "max_messages",
    }  # fmt: skip

    for name, kind in fields.items():
        text, expected = by_name.get(name) or samples[kind]
        settings = load_settings(home_env(tmp_path, **{env_var_name(name): text}))
        assert getattr(settings, name) == expected, name


def test_documented_cli_env_var(tmp_path: Path) -> None:
    assert (
        load_settings(home_env(tmp_path, CLAUDE_TRAY_CLI="/opt/claude")).cli_path == "/opt/claude"
    )
    both = home_env(tmp_path, CLAUDE_TRAY_CLI="/opt/a", CLAUDE_TRAY_CLI_PATH="/opt/b")
    assert load_settings(both).cli_path == "/opt/a"


def test_empty_env_values(tmp_path: Path) -> None:
    write_settings(tmp_path, {"port": 1001, "api_key": "from-file", "allowed_hosts": ["a.test"]})
    env = home_env(
        tmp_path, CLAUDE_TRAY_PORT="", CLAUDE_TRAY_API_KEY="", CLAUDE_TRAY_ALLOWED_HOSTS=""
    )

    settings = load_settings(env)

    assert settings.port == 1001  # empty number: not set
    assert settings.api_key is None  # empty optional string: explicitly none
    assert settings.allowed_hosts == ()


def test_tuple_env_parsing(tmp_path: Path) -> None:
    env = home_env(tmp_path, CLAUDE_TRAY_ALLOWED_ORIGINS=" https://a.test, ,https://b.test ")
    assert load_settings(env).allowed_origins == ("https://a.test", "https://b.test")


@pytest.mark.parametrize(
    "text",
    ['{"my-model": "opus", "gpt-4o": "haiku"}', "my-model=opus, gpt-4o = haiku"],
)
def test_mapping_env_parsing(tmp_path: Path, text: str) -> None:
    aliases = load_settings(home_env(tmp_path, CLAUDE_TRAY_MODEL_ALIASES=text)).model_aliases
    assert aliases["my-model"] == "opus"
    assert aliases["gpt-4o"] == "haiku"
    assert aliases["gpt-4o-mini"] == DEFAULT_MODEL_ALIASES["gpt-4o-mini"]


def test_aliases_merge_over_defaults_layer_by_layer(tmp_path: Path) -> None:
    write_settings(tmp_path, {"model_aliases": {"gpt-4o": "opus", "from-file": "sonnet"}})
    env = home_env(tmp_path, CLAUDE_TRAY_MODEL_ALIASES="from-env=haiku")

    aliases = load_settings(env, {"model_aliases": {"from-flag": "opus"}}).model_aliases

    assert aliases == {
        **DEFAULT_MODEL_ALIASES,
        "gpt-4o": "opus",
        "from-file": "sonnet",
        "from-env": "haiku",
        "from-flag": "opus",
    }
    with pytest.raises(TypeError):
        aliases["gpt-4o"] = "haiku"  # type: ignore[index]


def test_unknown_file_keys_are_warnings(tmp_path: Path) -> None:
    path = write_settings(tmp_path, {"port": 1001, "colour": "blue"})

    settings = load_settings(home_env(tmp_path))

    assert settings.port == 1001
    assert settings.warnings == (f"{path}: unknown key 'colour' ignored",)


def test_unknown_override_is_a_programming_error(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="colour"):
        load_settings(home_env(tmp_path), {"colour": "blue"})


# ---- errors say where ----


def test_corrupt_file_names_file_and_line(tmp_path: Path) -> None:
    path = write_settings(tmp_path, '{\n  "port": 1001,\n  oops\n}\n')

    with pytest.raises(SettingsError) as caught:
        load_settings(home_env(tmp_path))

    assert caught.value.source == str(path)
    assert caught.value.line == 3
    assert f"{path}:3" in str(caught.value)


def test_file_must_hold_an_object(tmp_path: Path) -> None:
    path = write_settings(tmp_path, "[1, 2]")
    with pytest.raises(SettingsError) as caught:
        load_settings(home_env(tmp_path))
    assert caught.value.source == str(path)


@pytest.mark.parametrize(
    ("content", "key"),
    [
        ({"port": "3456"}, "port"),
        ({"port": True}, "port"),
        ({"allowed_hosts": "a.test"}, "allowed_hosts"),
        ({"model_aliases": {"x": 1}}, "model_aliases"),
        ({"request_timeout": "soon"}, "request_timeout"),
        ({"port": 70000}, "port"),
        ({"max_concurrent": 0}, "max_concurrent"),
    ],
)
def test_bad_value_in_file_names_file_and_key(
    tmp_path: Path, content: dict[str, object], key: str
) -> None:
    path = write_settings(tmp_path, content)
    with pytest.raises(SettingsError) as caught:
        load_settings(home_env(tmp_path))
    assert caught.value.source == str(path)
    assert key in caught.value.message


@pytest.mark.parametrize(
    ("var", "value"),
    [
        ("CLAUDE_TRAY_PORT", "eighty"),
        ("CLAUDE_TRAY_PORT", "65536"),
        ("CLAUDE_TRAY_PORT", "-1"),
        ("CLAUDE_TRAY_REQUEST_TIMEOUT", "0"),
        ("CLAUDE_TRAY_INACTIVITY_TIMEOUT", "nan"),
        ("CLAUDE_TRAY_MAX_QUEUE", "-2"),
        ("CLAUDE_TRAY_LOG_LEVEL", "chatty"),
        ("CLAUDE_TRAY_UPSTREAM_URL", "ftp://x"),
        ("CLAUDE_TRAY_MODEL_ALIASES", "just-a-name"),
        ("CLAUDE_TRAY_MODEL_ALIASES", "{not json"),
        ("CLAUDE_TRAY_MAX_JSON_DEPTH", "0"),
        # Deeper than Python's recursion limit allows a body to be re-encoded.
        ("CLAUDE_TRAY_MAX_JSON_DEPTH", "501"),
        ("CLAUDE_TRAY_MAX_MESSAGES", "0"),
    ],
)
def test_bad_env_value_names_the_variable(tmp_path: Path, var: str, value: str) -> None:
    with pytest.raises(SettingsError) as caught:
        load_settings(home_env(tmp_path, **{var: value}))
    assert caught.value.source == var
    assert str(caught.value).startswith(var)


def test_bad_override_names_the_option(tmp_path: Path) -> None:
    with pytest.raises(SettingsError) as caught:
        load_settings(home_env(tmp_path), {"port": 99999})
    assert caught.value.source == "option port"


# ---- derived values ----


@pytest.mark.parametrize(
    ("host", "beyond"),
    [
        ("127.0.0.1", False),
        ("127.1.2.3", False),
        ("::1", False),
        ("[::1]", False),
        ("localhost", False),
        ("LOCALHOST", False),
        ("::ffff:127.0.0.1", False),
        ("0.0.0.0", True),
        ("::", True),
        ("192.168.1.10", True),
        ("my-laptop.local", True),
    ],
)
def test_listens_beyond_loopback(tmp_path: Path, host: str, beyond: bool) -> None:
    settings = Settings(paths=resolve_paths(home_env(tmp_path)), host=host)
    assert settings.listens_beyond_loopback is beyond


def test_repr_hides_keys(tmp_path: Path) -> None:
    settings = load_settings(
        home_env(
            tmp_path, CLAUDE_TRAY_API_KEY="proxy-secret", CLAUDE_TRAY_UPSTREAM_API_KEY="up-secret"
        )
    )
    assert settings.api_key == "proxy-secret"
    assert "proxy-secret" not in repr(settings)
    assert "up-secret" not in repr(settings)


# ---- saving ----


def test_save_keeps_unknown_keys_and_is_private(tmp_path: Path) -> None:
    path = write_settings(tmp_path, {"colour": "blue", "port": 1001, "notes": {"a": [1, 2]}})
    if os.name == "posix":
        path.chmod(0o644)
    paths = resolve_paths(home_env(tmp_path))

    save_setting_values(
        paths, {"port": 1002, "api_key": "secret-key", "allowed_hosts": ("a.test",)}
    )

    assert json.loads(path.read_text("utf-8")) == {
        "colour": "blue",
        "port": 1002,
        "notes": {"a": [1, 2]},
        "api_key": "secret-key",
        "allowed_hosts": ["a.test"],
    }
    if os.name == "posix":
        assert mode_of(path) == 0o600
    settings = load_settings(home_env(tmp_path))
    assert (settings.port, settings.api_key) == (1002, "secret-key")


def test_save_none_removes_the_key(tmp_path: Path) -> None:
    path = write_settings(tmp_path, {"port": 1001, "api_key": "old"})
    save_setting_values(resolve_paths(home_env(tmp_path)), {"api_key": None})
    assert json.loads(path.read_text("utf-8")) == {"port": 1001}


def test_save_creates_the_file(tmp_path: Path) -> None:
    paths = resolve_paths(home_env(tmp_path / "fresh"))
    save_setting_values(paths, {"port": 1002})
    assert json.loads(paths.settings_file.read_text("utf-8")) == {"port": 1002}


def test_save_replaces_the_file_atomically(tmp_path: Path) -> None:
    path = write_settings(tmp_path, {"port": 1001})
    before = path.stat().st_ino

    save_setting_values(resolve_paths(home_env(tmp_path)), {"port": 1002})

    # A new inode: the content was written to a temp file and renamed over the old one,
    # so a reader (or a crash) never sees a half-written file.
    assert path.stat().st_ino != before
    assert sorted(p.name for p in path.parent.iterdir()) == ["settings.json"]


def test_save_refuses_bad_values_and_leaves_the_file_alone(tmp_path: Path) -> None:
    path = write_settings(tmp_path, '{"port": 1001, "colour": "blue"}')
    original = path.read_bytes()
    paths = resolve_paths(home_env(tmp_path))

    with pytest.raises(SettingsError):
        save_setting_values(paths, {"port": 70000})
    with pytest.raises(ValueError, match="colour"):
        save_setting_values(paths, {"colour": "red"})

    assert path.read_bytes() == original
    assert sorted(p.name for p in path.parent.iterdir()) == ["settings.json"]


def test_save_refuses_to_overwrite_a_corrupt_file(tmp_path: Path) -> None:
    path = write_settings(tmp_path, "{ broken")
    with pytest.raises(SettingsError):
        save_setting_values(resolve_paths(home_env(tmp_path)), {"port": 1002})
    assert path.read_text("utf-8") == "{ broken"


def test_file_with_byte_order_mark(tmp_path: Path) -> None:
    path = resolve_paths(home_env(tmp_path)).settings_file
    path.parent.mkdir(parents=True)
    path.write_bytes(b'\xef\xbb\xbf{"port": 1001}')
    assert load_settings(home_env(tmp_path)).port == 1001
