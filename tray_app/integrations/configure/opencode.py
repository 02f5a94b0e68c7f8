"""OpenCode: a `claude-tray` provider in the global opencode.json(c), via
@ai-sdk/openai-compatible, optionally made the default model."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from tray_app.integrations.configure import jsonc
from tray_app.integrations.configure.context import PROVIDER_ID, Context
from tray_app.integrations.configure.core import Change, ConfigureError, Current, read_config
from tray_app.integrations.configure.spec import Tool

NAMES = ("opencode.jsonc", "opencode.json", "config.json")
NEW_FILE = '{\n  "$schema": "https://opencode.ai/config.json"\n}\n'


def config_path(ctx: Context) -> Path:
    """The global config OpenCode reads: the first of NAMES that exists, else opencode.json."""
    folder = ctx.config_home() / "opencode"
    for name in NAMES:
        if (folder / name).exists() or (folder / name).is_symlink():
            return folder / name
    return folder / "opencode.json"


def provider(ctx: Context) -> dict[str, Any]:
    return {
        "npm": "@ai-sdk/openai-compatible",
        "name": "claude-tray",
        "options": {"baseURL": ctx.openai_url, "apiKey": ctx.key},
        "models": {
            m.id: {"name": m.label, "limit": {"context": m.context, "output": m.output}}
            for m in ctx.models
        },
    }


def edit_jsonc(
    current: Current, new_file: str, edits: Sequence[tuple[tuple[str, ...], Any]]
) -> str:
    """Apply `(path, value)` merges to the file's text (`new_file` when it does not exist
    or holds only whitespace), turning errors into ConfigureError."""
    text = current.text if current.text and current.text.strip() else new_file
    try:
        for path, value in edits:
            text = jsonc.merge(text, path, value)
    except jsonc.JsoncError as exc:
        raise ConfigureError(
            current.path,
            f"is not valid JSON/JSONC: {exc.reason}, column {exc.column}",
            line=exc.line,
        ) from exc
    except jsonc.PathTypeError as exc:
        raise ConfigureError(
            current.path, f"{exc}; claude-tray will not replace it. Fix it and try again."
        ) from exc
    return text


def plan(ctx: Context) -> list[Change]:
    current = read_config(config_path(ctx), ctx.home)
    edits: list[tuple[tuple[str, ...], Any]] = [(("provider", PROVIDER_ID), provider(ctx))]
    if ctx.make_default:
        edits.append((("model",), f"{PROVIDER_ID}/{ctx.model}"))
    text = edit_jsonc(current, NEW_FILE, edits)
    return [Change(current, text, secret=ctx.secret)]


def has_path(path: Path, home: Path, keys: tuple[str, ...]) -> bool:
    """Whether the JSONC file at `path` has `keys`; False when it cannot be read."""
    try:
        current = read_config(path, home)
        node: jsonc.Node | None = jsonc.parse(current.text) if current.text else None
    except (ConfigureError, jsonc.JsoncError):
        return False
    for key in keys:
        if node is None or node.kind != "object":
            return False
        node = node.get(key)
    return node is not None


def is_configured(ctx: Context) -> bool:
    return has_path(config_path(ctx), ctx.home, ("provider", PROVIDER_ID))


def usage(ctx: Context) -> str:
    return f'opencode run -m {PROVIDER_ID}/{ctx.model} "..." (or pick it with /models)'


TOOL = Tool(
    id="opencode",
    label="OpenCode",
    binaries=("opencode",),
    wire="chat",
    files=lambda ctx: [config_path(ctx)],
    marks=lambda ctx: [ctx.config_home() / "opencode"],
    plan=plan,
    is_configured=is_configured,
    usage=usage,
)
