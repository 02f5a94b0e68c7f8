"""Load claude-tray's settings once (file, then environment, then flags) into a frozen value."""

from __future__ import annotations

import contextlib
import dataclasses
import ipaddress
import json
import math
import os
import sys
import tempfile
import types
import typing
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import platformdirs

from tray_app.errors import SettingsError

APP_NAME = "claude-tray"
HOME_ENV = "CLAUDE_TRAY_HOME"
ENV_PREFIX = "CLAUDE_TRAY_"
# The name the docs and CliUnavailable's message tell people to use for `cli_path`.
CLI_PATH_ENV = "CLAUDE_TRAY_CLI"
LOG_LEVELS = ("debug", "info", "warning", "error", "critical")

DEFAULT_MODEL_ALIASES: Mapping[str, str] = types.MappingProxyType(
    {
        "gpt-4o": "sonnet",
        "gpt-4o-mini": "haiku",
        "gpt-4.1": "sonnet",
        "gpt-4.1-mini": "haiku",
        "gpt-4-turbo": "sonnet",
        "gpt-4": "opus",
        "gpt-3.5-turbo": "haiku",
        "o1": "opus",
        "o3": "opus",
        "o4-mini": "sonnet",
        "gpt-5": "opus",
        "gpt-5-mini": "sonnet",
    }
)


@dataclass(frozen=True, slots=True)
class Paths:
    """Where claude-tray keeps its files; `home` is set when CLAUDE_TRAY_HOME moved them all."""

    home: Path | None
    config_dir: Path
    data_dir: Path
    log_dir: Path
    runtime_dir: Path

    @property
    def settings_file(self) -> Path:
        return self.config_dir / "settings.json"


def resolve_paths(env: Mapping[str, str]) -> Paths:
    """Work out the directories without creating any (see `ensure_dirs`)."""
    if home_value := env.get(HOME_ENV, "").strip():
        home = Path(home_value).expanduser().absolute()
        return Paths(
            home=home,
            config_dir=home / "config",
            data_dir=home / "data",
            log_dir=home / "logs",
            runtime_dir=home / "run",
        )
    # platformdirs reads os.environ (XDG_*, HOME) itself; `env` only decides CLAUDE_TRAY_HOME.
    data_dir = Path(platformdirs.user_data_dir(APP_NAME, appauthor=False))
    return Paths(
        home=None,
        config_dir=Path(platformdirs.user_config_dir(APP_NAME, appauthor=False)),
        data_dir=data_dir,
        log_dir=Path(platformdirs.user_log_dir(APP_NAME, appauthor=False)),
        runtime_dir=_runtime_dir(env, data_dir),
    )


def _runtime_dir(env: Mapping[str, str], data_dir: Path) -> Path:
    # Not platformdirs.user_runtime_dir: on Linux without XDG_RUNTIME_DIR it warns
    # (RuntimeDirWarning) and may create /tmp/runtime-<uid>, on macOS it is a cache folder the
    # OS may purge, on Windows a Temp folder. The runtime dir only holds the single-instance
    # lock, so a folder under data_dir is as good wherever XDG_RUNTIME_DIR is not usable.
    xdg = env.get("XDG_RUNTIME_DIR", "")
    if sys.platform.startswith("linux") and os.path.isabs(xdg) and os.path.isdir(xdg):
        return Path(xdg) / APP_NAME
    return data_dir / "run"


def user_home(env: Mapping[str, str]) -> Path:
    # From `env`, not os.path.expanduser, so a test (or a caller) can point it elsewhere.
    home = env.get("HOME") or env.get("USERPROFILE")
    return Path(home) if home else Path.home()


def claude_config_dir(env: Mapping[str, str]) -> Path:
    """Where the Claude Code CLI keeps its state: CLAUDE_CONFIG_DIR, else ~/.claude.

    Not a claude-tray setting, but both the backend (transcripts) and the sign-in
    reader need the same answer, and this is the layer below both.
    """
    if configured := env.get("CLAUDE_CONFIG_DIR"):
        return Path(configured)
    return user_home(env) / ".claude"


def ensure_dirs(paths: Paths) -> None:
    """Create every directory in `paths`, private to the user."""
    for directory in (paths.config_dir, paths.data_dir, paths.log_dir, paths.runtime_dir):
        directory.mkdir(mode=0o700, parents=True, exist_ok=True)


@dataclass(frozen=True, slots=True)
class Settings:
    """Everything claude-tray can be configured with, validated; build it with `load_settings`."""

    paths: Paths
    host: str = "127.0.0.1"
    port: int = 3456
    # repr=False: a Settings value may end up in a log line or a traceback.
    api_key: str | None = field(default=None, repr=False)
    upstream_url: str | None = None
    upstream_api_key: str | None = field(default=None, repr=False)
    cli_path: str | None = None
    max_concurrent: int = 4
    max_queue: int = 16
    inactivity_timeout: float = 300.0
    request_timeout: float = 900.0
    shutdown_grace: float = 10.0
    keepalive_interval: float = 15.0
    cli_max_retries: int = 2
    max_body_bytes: int = 32 * 1024 * 1024
    # How deeply a request's JSON may nest ([ and { levels). Deep MCP tool schemas stay
    # well inside 128 (serde_json's default), and it is far below where parsing or
    # re-encoding the body would run out of Python stack.
    max_json_depth: int = 128
    # Messages (Responses API: input items) in one request. Long coding-agent sessions
    # (OpenCode, aider) send 1000+; the limit bounds the work one request can make.
    max_messages: int = 10_000
    allowed_hosts: tuple[str, ...] = ()
    allowed_origins: tuple[str, ...] = ()
    # hash=False: a mapping proxy is unhashable and Settings should stay hashable.
    model_aliases: Mapping[str, str] = field(
        default_factory=lambda: DEFAULT_MODEL_ALIASES, hash=False
    )
    log_level: str = "info"
    # Warm pool: CLI processes started ahead of need (0 turns the pool off), and how
    # long an unused process (warm or holding a conversation) lives.
    pool_size: int = 2
    pool_idle_timeout: float = 600.0
    # Every CLI process at once (warm, holding a conversation, or running a turn).
    max_processes: int = 8
    # Sessions unused for this many days are forgotten.
    session_ttl_days: float = 30.0
    # What to do when Anthropic says a request would be billed as extra usage.
    on_extra_usage: str = "pause"
    # Agent mode: requests may have Claude Code use its own tools (Read, Edit, Bash, ...)
    # in a working directory inside one of agent_roots; off, and no root, by default.
    agent_mode: bool = False
    agent_roots: tuple[str, ...] = ()
    # An MCP config file (mcpServers); its servers are the only ones a request may start.
    agent_mcp_config: str | None = None
    # Whether the agent's tool activity is streamed (as reasoning/thinking) or not.
    agent_activity: str = "show"
    # Requests per minute per client (API key, else address); 0 means no limit.
    rate_limit_per_minute: int = 0
    # Problems that did not stop loading (unknown keys in the file), for the caller to log.
    warnings: tuple[str, ...] = field(default=(), compare=False)

    @property
    def listens_beyond_loopback(self) -> bool:
        host = self.host.strip().strip("[]").lower()
        if host in ("localhost", "localhost."):
            return False
        try:
            address = ipaddress.ip_address(host)
        except ValueError:
            return True  # any other name may resolve to anything
        if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
            # Python < 3.13 does not count ::ffff:127.0.0.1 as loopback.
            address = address.ipv4_mapped
        return not address.is_loopback


# Fields that are computed, not configured: no file key, env var or flag sets them.
_NOT_CONFIGURABLE = frozenset({"paths", "warnings"})


def configurable_fields() -> dict[str, object]:
    """Each configurable field name with its resolved type (`int`, `str | None`, ...)."""
    hints = typing.get_type_hints(Settings)
    return {
        f.name: hints[f.name]
        for f in dataclasses.fields(Settings)
        if f.name not in _NOT_CONFIGURABLE
    }


def env_var_name(field_name: str) -> str:
    return ENV_PREFIX + field_name.upper()


def load_settings(
    env: Mapping[str, str], overrides: Mapping[str, object] | None = None
) -> Settings:
    """Read the settings file, then CLAUDE_TRAY_* variables, then `overrides` (flags).

    `overrides` is keyed by field name; a None value means the flag was not given.
    Raises SettingsError naming the file (and line), variable or option at fault.
    """
    paths = resolve_paths(env)
    fields = configurable_fields()
    # Any: each value was checked against its field's type at run time by _coerce/_parse_env.
    values: dict[str, Any] = {}
    sources: dict[str, str] = {}
    warnings: list[str] = []

    settings_file = paths.settings_file
    for key, raw in _read_settings_file(settings_file).items():
        if key not in fields:
            warnings.append(f"{settings_file}: unknown key '{key}' ignored")
            continue
        source = str(settings_file)
        _merge(values, key, _coerce(fields[key], raw, f"key '{key}'", source), sources, source)

    for name, kind in fields.items():
        for var in _env_var_names(name):
            text = env.get(var)
            if text is None:
                continue
            parsed = _parse_env(kind, text, var)
            if parsed is not _NOT_GIVEN:
                _merge(values, name, parsed, sources, var)

    for name, raw in (overrides or {}).items():
        if name not in fields:
            raise ValueError(f"unknown setting '{name}' in overrides")
        if raw is None:
            continue
        source = f"option {name}"
        _merge(values, name, _coerce(fields[name], raw, "the value", source), sources, source)

    if "model_aliases" in values:
        merged = {
            **DEFAULT_MODEL_ALIASES,
            **typing.cast(Mapping[str, str], values["model_aliases"]),
        }
        values["model_aliases"] = types.MappingProxyType(merged)

    if isinstance(level := values.get("log_level"), str):
        values["log_level"] = level.lower()
    for name, value in values.items():
        _check_range(name, value, sources[name])

    return dataclasses.replace(Settings(paths=paths), warnings=tuple(warnings), **values)


def save_setting_values(paths: Paths, values: Mapping[str, object]) -> None:
    """Set (or, with None, remove) these keys in the settings file, keeping everything else.

    The write is atomic and the file ends up 0600, since it may hold api_key.
    """
    fields = configurable_fields()
    target = Path(os.path.realpath(paths.settings_file))  # a symlinked dotfile stays a symlink
    data = dict(_read_settings_file(target))
    for name, value in values.items():
        if name not in fields:
            raise ValueError(f"unknown setting '{name}'")
        if value is None:
            data.pop(name, None)
            continue
        source = f"value for {name}"
        coerced = _coerce(fields[name], value, "the value", source)
        _check_range(name, coerced, source)
        data[name] = _to_json(coerced)

    target.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    fd, temp_name = tempfile.mkstemp(prefix=".settings.", suffix=".tmp", dir=target.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as stream:
            json.dump(data, stream, indent=2, ensure_ascii=False)
            stream.write("\n")
            stream.flush()
            os.fsync(stream.fileno())
        os.chmod(temp_name, 0o600)
        os.replace(temp_name, target)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(temp_name)
        raise


# ---- reading the three sources ----


class _NotGiven:
    """Marks an empty environment variable for a field where empty means 'not set'."""


_NOT_GIVEN = _NotGiven()


def _env_var_names(name: str) -> tuple[str, ...]:
    # Later names win; the documented CLAUDE_TRAY_CLI beats the generic CLAUDE_TRAY_CLI_PATH.
    if name == "cli_path":
        return (env_var_name(name), CLI_PATH_ENV)
    return (env_var_name(name),)


def _read_settings_file(path: Path) -> dict[str, object]:
    try:
        # utf-8-sig: Windows Notepad starts the files it saves with a byte order mark.
        text = path.read_text(encoding="utf-8-sig")
    except FileNotFoundError:
        return {}
    except (OSError, UnicodeDecodeError) as exc:
        raise SettingsError(f"cannot be read ({exc})", source=str(path)) from exc
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise SettingsError(
            f"is not valid JSON ({exc.msg}, column {exc.colno})", source=str(path), line=exc.lineno
        ) from exc
    if not isinstance(data, dict):
        raise SettingsError("must hold a JSON object ({ ... })", source=str(path))
    return data


def _merge(
    values: dict[str, Any], name: str, value: object, sources: dict[str, str], source: str
) -> None:
    # Aliases add up layer by layer (defaults, file, env, flags); everything else is replaced.
    previous = values.get(name)
    if isinstance(value, Mapping) and isinstance(previous, Mapping):
        value = {**previous, **value}
    values[name] = value
    sources[name] = source


def _parse_env(kind: object, text: str, var: str) -> object:
    """Turn an environment variable's text into a value of `kind`."""
    text = text.strip()
    if kind == str | None:
        return text or None
    if kind == tuple[str, ...]:
        return _split_list(text)
    if kind == Mapping[str, str]:
        return _parse_mapping_text(text, var)
    if not text:
        return _NOT_GIVEN  # `CLAUDE_TRAY_PORT= claude-tray` reads as "not set", not as an error
    parse = _ENV_SCALARS.get(kind)
    if parse is None:
        raise TypeError(f"no environment parser for {kind!r}")
    try:
        return parse(text)
    except ValueError as exc:
        raise SettingsError(f"expected {_describe(kind)}, got {text!r}", source=var) from exc


def _parse_bool(text: str) -> bool:
    lowered = text.lower()
    if lowered in ("1", "true", "yes", "on"):
        return True
    if lowered in ("0", "false", "no", "off"):
        return False
    raise ValueError(text)


_ENV_SCALARS: dict[object, Callable[[str], object]] = {
    str: str,
    int: int,
    float: float,
    bool: _parse_bool,
}


def _split_list(text: str) -> tuple[str, ...]:
    return tuple(part.strip() for part in text.split(",") if part.strip())


def _parse_mapping_text(text: str, var: str) -> dict[str, str]:
    if text.startswith("{"):
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise SettingsError(f"is not a valid JSON object ({exc.msg})", source=var) from exc
        return typing.cast(dict[str, str], _coerce(Mapping[str, str], data, "the value", var))
    mapping: dict[str, str] = {}
    for item in _split_list(text):
        key, sep, value = item.partition("=")
        if not sep or not key.strip() or not value.strip():
            raise SettingsError(
                f"expected name=value pairs separated by commas, got {item!r}", source=var
            )
        mapping[key.strip()] = value.strip()
    return mapping


def _coerce(kind: object, raw: object, what: str, source: str) -> object:
    """Check a value from JSON or a flag against the field's type; `what` names it in errors."""

    def wrong() -> SettingsError:
        return SettingsError(
            f"{what} must be {_describe(kind)}, not {type(raw).__name__} {raw!r}", source=source
        )

    if kind == str | None:
        if raw is None:
            return None
        if not isinstance(raw, str):
            raise wrong()
        return raw.strip() or None
    if kind is str:
        if not isinstance(raw, str):
            raise wrong()
        return raw.strip()
    if kind is bool:
        if not isinstance(raw, bool):
            raise wrong()
        return raw
    if kind is int:
        # bool is an int subclass, and `"port": true` is surely a mistake.
        if isinstance(raw, bool) or not isinstance(raw, int):
            raise wrong()
        return raw
    if kind is float:
        if isinstance(raw, bool) or not isinstance(raw, int | float):
            raise wrong()
        return float(raw)
    if kind == tuple[str, ...]:
        if not isinstance(raw, list | tuple) or not all(isinstance(item, str) for item in raw):
            raise wrong()
        return tuple(item.strip() for item in raw if item.strip())
    if kind == Mapping[str, str]:
        if not isinstance(raw, Mapping) or not all(
            isinstance(k, str) and isinstance(v, str) and k.strip() and v.strip()
            for k, v in raw.items()
        ):
            raise wrong()
        return {k.strip(): v.strip() for k, v in raw.items()}
    raise TypeError(f"no coercion for {kind!r}")


def _describe(kind: object) -> str:
    descriptions: dict[object, str] = {
        str: "a string",
        str | None: "a string or null",
        int: "a whole number",
        float: "a number",
        bool: "true or false",
        tuple[str, ...]: "a list of strings",
        Mapping[str, str]: "an object of non-empty strings (name: model)",
    }
    return descriptions.get(kind, repr(kind))


# ---- ranges ----

_AT_LEAST_ONE = ("max_concurrent", "max_body_bytes", "max_processes", "max_messages")
# Deeper than this and Python's own recursion limit (1000 frames) is close.
MAX_JSON_DEPTH_CAP = 500
_AT_LEAST_ZERO = ("max_queue", "cli_max_retries", "pool_size", "rate_limit_per_minute")
EXTRA_USAGE_POLICIES = ("pause", "warn", "allow")
AGENT_ACTIVITY = ("show", "hide")
_POSITIVE_SECONDS = (
    "pool_idle_timeout",
    "session_ttl_days",
    "inactivity_timeout",
    "request_timeout",
    "shutdown_grace",
    "keepalive_interval",
)


def _check_range(name: str, value: object, source: str) -> None:
    problem: str | None = None
    if name == "port" and isinstance(value, int) and not 0 <= value <= 65535:
        problem = "must be between 0 and 65535"
    elif name in _AT_LEAST_ONE and isinstance(value, int) and value < 1:
        problem = "must be at least 1"
    elif name == "max_json_depth" and isinstance(value, int):
        if not 1 <= value <= MAX_JSON_DEPTH_CAP:
            problem = f"must be between 1 and {MAX_JSON_DEPTH_CAP}"
    elif name in _AT_LEAST_ZERO and isinstance(value, int) and value < 0:
        problem = "must not be negative"
    elif name in _POSITIVE_SECONDS and isinstance(value, float):
        if not (math.isfinite(value) and value > 0):
            problem = "must be a number of seconds greater than 0"
    elif name == "on_extra_usage" and value not in EXTRA_USAGE_POLICIES:
        problem = f"must be one of {', '.join(EXTRA_USAGE_POLICIES)}"
    elif name == "agent_activity" and value not in AGENT_ACTIVITY:
        problem = f"must be one of {', '.join(AGENT_ACTIVITY)}"
    elif name == "host" and not value:
        problem = "must not be empty"
    elif name == "log_level" and isinstance(value, str) and value.lower() not in LOG_LEVELS:
        problem = f"must be one of {', '.join(LOG_LEVELS)}"
    elif name == "upstream_url" and isinstance(value, str):
        parts = urlsplit(value)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            problem = "must be an http:// or https:// URL"
    if problem is not None:
        raise SettingsError(f"{name} {problem}, got {value!r}", source=source)


def _to_json(value: object) -> object:
    if isinstance(value, tuple):
        return list(value)
    if isinstance(value, Mapping):
        return dict(value)
    return value
