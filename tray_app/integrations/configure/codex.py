"""Codex CLI: a `[model_providers.claude-tray]` table (Responses wire API) in
$CODEX_HOME/config.toml, and with --default `model_provider`/`model` (and Claude's
context window) at the top."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import tomlkit
import tomlkit.exceptions
from tomlkit.items import InlineTable, Table

from tray_app.integrations.configure.context import CONTEXT_TOKENS, KEY_ENV, PROVIDER_ID, Context
from tray_app.integrations.configure.core import Change, ConfigureError, read_config
from tray_app.integrations.configure.spec import Tool

WINDOW_KEY = "model_context_window"


def config_dir(ctx: Context) -> Path:
    if codex_home := ctx.env.get("CODEX_HOME"):
        return Path(codex_home)
    return ctx.home / ".codex"


def config_path(ctx: Context) -> Path:
    return config_dir(ctx) / "config.toml"


def provider(ctx: Context) -> dict[str, Any]:
    values: dict[str, Any] = {
        "name": "claude-tray",
        "base_url": ctx.openai_url,
        "wire_api": "responses",
    }
    if ctx.api_key:
        # Codex reads provider keys from an environment variable, never from the file.
        values["env_key"] = KEY_ENV
    return values


def _plain(value: Any) -> Any:
    unwrap = getattr(value, "unwrap", None)
    return unwrap() if callable(unwrap) else value


def plan(ctx: Context) -> list[Change]:
    current = read_config(config_path(ctx), ctx.home)
    text = current.text or ""
    try:
        doc = tomlkit.parse(text)
    except tomlkit.exceptions.ParseError as exc:
        raise ConfigureError(
            current.path, f"is not valid TOML: {exc}", line=getattr(exc, "line", None)
        ) from exc
    except RecursionError as exc:
        raise ConfigureError(current.path, "is nested too deeply to edit") from exc
    expected = doc.unwrap()
    wanted = provider(ctx)
    providers = doc.get("model_providers")
    if providers is None:
        providers = tomlkit.table(is_super_table=True)
        doc["model_providers"] = providers
    elif not isinstance(providers, Table | InlineTable):
        raise ConfigureError(current.path, "'model_providers' should be a table but is not")
    ours = providers.get(PROVIDER_ID)
    if ours is None:
        table = tomlkit.table()
        for key, value in wanted.items():
            table[key] = value
        if isinstance(providers, InlineTable):
            providers[PROVIDER_ID] = wanted
        else:
            providers[PROVIDER_ID] = table
    elif isinstance(ours, Table | InlineTable):
        for key, value in wanted.items():
            if _plain(ours.get(key)) != value:
                ours[key] = value
        if "env_key" not in wanted and "env_key" in ours:
            del ours["env_key"]
    else:
        raise ConfigureError(
            current.path, f"'model_providers.{PROVIDER_ID}' should be a table but is not"
        )
    expected.setdefault("model_providers", {})[PROVIDER_ID] = {
        **expected.get("model_providers", {}).get(PROVIDER_ID, {}),
        **wanted,
    }
    if "env_key" not in wanted:
        expected["model_providers"][PROVIDER_ID].pop("env_key", None)
    if ctx.make_default:
        for key, value in (("model_provider", PROVIDER_ID), ("model", ctx.model)):
            if _plain(doc.get(key)) != value:
                doc[key] = value
            expected[key] = value
        # Codex knows no Claude model and assumes a 272k window, so it would let a
        # conversation grow past Claude's 200k before compacting it. Its setting can
        # only narrow that; a smaller window the user chose is kept.
        window = _plain(doc.get(WINDOW_KEY))
        if not isinstance(window, int) or isinstance(window, bool) or window > CONTEXT_TOKENS:
            doc[WINDOW_KEY] = CONTEXT_TOKENS
        expected[WINDOW_KEY] = _plain(doc[WINDOW_KEY])
    new_text = doc.as_string()
    if ours is None and not isinstance(providers, InlineTable):
        new_text = _space_after_our_table(new_text)
    if tomlkit.parse(new_text).unwrap() != expected:
        raise ConfigureError(current.path, "claude-tray could not change it without side effects")
    # No secret inside: the key stays in the environment (env_key).
    return [Change(current, new_text)]


def _space_after_our_table(text: str) -> str:
    """Our new table, when tomlkit put it right before another table, gets the blank line
    after it that people write between tables."""
    lines = text.splitlines(keepends=True)
    header = f"[model_providers.{PROVIDER_ID}]"
    try:
        start = next(i for i, line in enumerate(lines) if line.strip() == header)
    except StopIteration:
        return text
    for index in range(start + 1, len(lines)):
        if lines[index].lstrip().startswith("["):
            if lines[index - 1].strip():
                newline = "\r\n" if lines[index - 1].endswith("\r\n") else "\n"
                lines.insert(index, newline)
            break
    return "".join(lines)


def is_configured(ctx: Context) -> bool:
    try:
        current = read_config(config_path(ctx), ctx.home)
        doc = tomlkit.parse(current.text or "")
    except (ConfigureError, tomlkit.exceptions.ParseError):
        return False
    providers = doc.get("model_providers")
    return isinstance(providers, Table | InlineTable) and PROVIDER_ID in providers


def usage(ctx: Context) -> str:
    key = f"export {KEY_ENV}=<the key>; " if ctx.api_key else ""
    if ctx.make_default:
        return f"{key}codex (uses {ctx.model} through claude-tray)"
    return (
        f"{key}codex -c model_provider={PROVIDER_ID} -m {ctx.model} "
        f"-c {WINDOW_KEY}={CONTEXT_TOKENS}"
    )


TOOL = Tool(
    id="codex",
    label="Codex CLI",
    binaries=("codex",),
    wire="responses",
    files=lambda ctx: [config_path(ctx)],
    marks=lambda ctx: [config_dir(ctx)],
    plan=plan,
    is_configured=is_configured,
    usage=usage,
)
