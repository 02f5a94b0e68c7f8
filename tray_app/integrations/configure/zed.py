"""Zed: a `claude-tray` OpenAI-compatible provider in settings.json (JSONC), optionally the
agent's default model. Zed keeps the key itself (keychain, or CLAUDE_TRAY_API_KEY)."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

from tray_app.integrations.configure.context import KEY_ENV, PROVIDER_ID, Context
from tray_app.integrations.configure.core import Change, read_config
from tray_app.integrations.configure.opencode import edit_jsonc, has_path
from tray_app.integrations.configure.spec import Tool

NEW_FILE = "{\n}\n"


def config_dir(ctx: Context) -> Path:
    if sys.platform == "win32" and (appdata := ctx.env.get("APPDATA")):
        return Path(appdata) / "Zed"
    return ctx.config_home() / "zed"


def config_path(ctx: Context) -> Path:
    return config_dir(ctx) / "settings.json"


def provider(ctx: Context) -> dict[str, Any]:
    return {
        "api_url": ctx.openai_url,
        "available_models": [
            {
                "name": m.id,
                "display_name": m.label,
                "max_tokens": m.context,
                "max_output_tokens": m.output,
                "capabilities": {
                    "tools": True,
                    "images": True,
                    "parallel_tool_calls": False,
                    "prompt_cache_key": False,
                },
            }
            for m in ctx.models
        ],
    }


def plan(ctx: Context) -> list[Change]:
    current = read_config(config_path(ctx), ctx.home)
    edits: list[tuple[tuple[str, ...], Any]] = [
        (("language_models", "openai_compatible", PROVIDER_ID), provider(ctx))
    ]
    if ctx.make_default:
        edits.append((("agent", "default_model"), {"provider": PROVIDER_ID, "model": ctx.model}))
    text = edit_jsonc(current, NEW_FILE, edits)
    # No key is written: Zed reads it from its keychain or from KEY_ENV.
    return [Change(current, text)]


def is_configured(ctx: Context) -> bool:
    keys = ("language_models", "openai_compatible", PROVIDER_ID)
    return has_path(config_path(ctx), ctx.home, keys)


def usage(ctx: Context) -> str:
    return (
        f"enter the key ({'your CLAUDE_TRAY_API_KEY' if ctx.api_key else ctx.key}) once under "
        f"'{PROVIDER_ID}' in Zed's agent settings (or start Zed with {KEY_ENV} set), then "
        "pick its models in the agent panel"
    )


TOOL = Tool(
    id="zed",
    label="Zed",
    binaries=("zed", "zeditor"),
    wire="chat",
    files=lambda ctx: [config_path(ctx)],
    marks=lambda ctx: [config_dir(ctx)],
    plan=plan,
    is_configured=is_configured,
    usage=usage,
)
