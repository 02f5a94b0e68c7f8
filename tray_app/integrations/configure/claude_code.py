"""Claude Code on another machine: its own profile (a CLAUDE_CONFIG_DIR holding a
settings.json whose `env` points the CLI at the proxy) plus a launcher script. The
user's own ~/.claude settings are never touched."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

from tray_app.integrations.configure.context import Context
from tray_app.integrations.configure.core import Change, read_config
from tray_app.integrations.configure.opencode import edit_jsonc, has_path
from tray_app.integrations.configure.spec import Tool

PROFILE_DIR = ".claude-via-tray"
NEW_FILE = "{\n}\n"


def profile_dir(ctx: Context) -> Path:
    return ctx.home / PROFILE_DIR


def settings_path(ctx: Context) -> Path:
    return profile_dir(ctx) / "settings.json"


def launcher_path(ctx: Context) -> Path:
    name = "claude-via-tray.cmd" if sys.platform == "win32" else "claude-via-tray"
    return profile_dir(ctx) / name


def launcher(ctx: Context) -> str:
    """A script that runs `claude` with this profile: it finds the profile beside itself,
    so the folder can be copied to the machine that needs it."""
    if sys.platform == "win32":
        return (
            "@echo off\r\n"
            "rem Written by claude-tray: Claude Code through claude-tray, in its own profile.\r\n"
            'set "CLAUDE_CONFIG_DIR=%~dp0."\r\n'
            "claude %*\r\n"
        )
    return (
        "#!/bin/sh\n"
        "# Written by claude-tray: Claude Code through claude-tray, in its own profile\n"
        "# (settings.json beside this file); your ~/.claude is not used.\n"
        'CLAUDE_CONFIG_DIR="$(cd "$(dirname "$0")" && pwd)" exec claude "$@"\n'
    )


def env_values(ctx: Context) -> dict[str, Any]:
    values = {
        # The root URL: Claude Code adds /v1/messages itself.
        "ANTHROPIC_BASE_URL": ctx.root_url,
        "ANTHROPIC_AUTH_TOKEN": ctx.key,
        # Nothing but model calls should go to the proxy (no telemetry, no update checks).
        "CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC": "1",
        "ANTHROPIC_MODEL": ctx.model,
    }
    return values


def plan(ctx: Context) -> list[Change]:
    current = read_config(settings_path(ctx), ctx.home)
    text = edit_jsonc(current, NEW_FILE, [(("env",), env_values(ctx))])
    script = read_config(launcher_path(ctx), ctx.home)
    return [
        Change(current, text, secret=ctx.secret),
        Change(script, launcher(ctx), executable=True),
    ]


def is_configured(ctx: Context) -> bool:
    return has_path(settings_path(ctx), ctx.home, ("env", "ANTHROPIC_BASE_URL"))


def usage(ctx: Context) -> str:
    note = ""
    if ctx.root_url.startswith(("http://127.", "http://localhost", "http://[::1]")):
        note = (
            " (this profile points at this machine; for another machine run "
            "`claude-tray configure claude-code --base-url http://HOST:PORT` there)"
        )
    return f"{launcher_path(ctx)} (Claude Code in its own profile){note}"


TOOL = Tool(
    id="claude-code",
    label="Claude Code (remote profile)",
    binaries=("claude",),
    wire="messages",
    files=lambda ctx: [settings_path(ctx), launcher_path(ctx)],
    marks=lambda ctx: [],
    plan=plan,
    is_configured=is_configured,
    usage=usage,
)
