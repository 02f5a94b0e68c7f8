"""Configure editor tools to use claude-tray: one safe writer per tool, with preview, undo
and a connection test. `cli.main` is the `claude-tray configure` front end; the tray menu
uses `tool_states`, `configure`, `undo` and `check_connection`."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from tray_app.integrations.configure import (
    aider,
    claude_code,
    cline,
    codex,
    continue_,
    opencode,
    zed,
)
from tray_app.integrations.configure.context import Context, make_context
from tray_app.integrations.configure.core import (
    ConfigureError,
    FileResult,
    UndoRecord,
    apply,
    unified_diff,
)
from tray_app.integrations.configure.core import undo as undo_files
from tray_app.integrations.configure.probe import send_probe
from tray_app.integrations.configure.spec import Tool
from tray_app.settings import Settings

__all__ = [
    "TOOLS",
    "ConfigureError",
    "FileResult",
    "Result",
    "Tool",
    "ToolState",
    "check_connection",
    "configure",
    "tool_states",
    "undo",
]

log = logging.getLogger(__name__)

TOOLS: Mapping[str, Tool] = {
    t.id: t
    for t in (
        opencode.TOOL,
        continue_.TOOL,
        aider.TOOL,
        codex.TOOL,
        cline.TOOL,
        claude_code.TOOL,
        zed.TOOL,
    )
}


@dataclass(frozen=True, slots=True)
class ToolState:
    """One line of `configure --list` and of the tray's "Configure tools" menu."""

    tool: str
    label: str
    found: bool  # installed here (its command is on PATH, or its config folder exists)
    configured: bool  # claude-tray's entries are in its config
    path: Path  # the (main) file configure changes


@dataclass(frozen=True, slots=True)
class Result:
    """What configure, undo or a connection test did; `message` is for people."""

    tool: str
    ok: bool
    changed: bool
    message: str
    files: tuple[FileResult, ...] = ()
    diff: str = ""
    usage: str = ""


def _tool(tool: str) -> Tool:
    try:
        return TOOLS[tool]
    except KeyError:
        known = ", ".join(TOOLS)
        raise ConfigureError(None, f"unknown tool '{tool}' (known: {known})") from None


def _record(settings: Settings, tool: str) -> UndoRecord:
    return UndoRecord(settings.paths.data_dir / "configure", tool, _tool(tool).settle)


def _used_here(tool: Tool, ctx: Context) -> bool:
    """Whether the tool's own folder holds anything besides the files claude-tray writes."""
    ours = {path.name for path in tool.files(ctx)}
    for mark in tool.marks(ctx):
        try:
            if any(child.name not in ours for child in mark.iterdir()):
                return True
        except OSError:
            continue
    return False


def tool_states(settings: Settings, env: Mapping[str, str]) -> list[ToolState]:
    """Each tool: found here or not, configured or not, and the file it uses."""
    try:
        ctx = make_context(settings, env)
    except ConfigureError:
        ctx = make_context(settings, env, base_url="http://127.0.0.1:0")
    states = []
    for tool in TOOLS.values():
        found = ctx.which(*tool.binaries) is not None or _used_here(tool, ctx)
        try:
            configured = tool.is_configured(ctx)
        except Exception:  # a state line must never break the list or the menu
            log.exception("configure: could not read the state of %s", tool.id)
            configured = False
        states.append(ToolState(tool.id, tool.label, found, configured, tool.files(ctx)[0]))
    return states


def configure(
    tool: str,
    settings: Settings,
    env: Mapping[str, str],
    *,
    model: str | None = None,
    make_default: bool = False,
    dry_run: bool = False,
    base_url: str | None = None,
) -> Result:
    """Write claude-tray's entries into the tool's config (or, with dry_run, only show the
    diff). Never raises for a file it will not touch: the Result says why."""
    try:
        spec = _tool(tool)
        ctx = make_context(settings, env, model=model, make_default=make_default, base_url=base_url)
        changes = spec.plan(ctx)
        diff = unified_diff(changes, [settings.api_key])
        changed = any(c.changed for c in changes)
        if dry_run:
            message = "would change:" if changed else "already configured; nothing would change"
            return Result(tool, True, False, message, diff=diff, usage=spec.usage(ctx))
        if not changed:
            return Result(
                tool,
                True,
                False,
                f"{spec.label} is already configured; nothing changed",
                files=tuple(FileResult(c.path, "unchanged") for c in changes),
                usage=spec.usage(ctx),
            )
        files = apply(changes, _record(settings, tool))
        return Result(
            tool,
            True,
            True,
            f"{spec.label} now uses claude-tray at {ctx.root_url}",
            files=tuple(files),
            diff=diff,
            usage=spec.usage(ctx),
        )
    except ConfigureError as exc:
        return Result(tool, False, False, exc.message)
    except OSError as exc:
        where = f" ({exc.filename})" if exc.filename else ""
        return Result(tool, False, False, f"could not write{where}: {exc.strerror or exc}")
    except Exception as exc:  # a bug must not take the tray down; nothing was written
        log.exception("configure %s failed", tool)
        return Result(tool, False, False, f"could not configure {tool}: {exc!r} (see the log)")


def undo(tool: str, settings: Settings, env: Mapping[str, str]) -> Result:
    """Put the tool's files back exactly as they were before claude-tray configured it."""
    try:
        spec = _tool(tool)
        files = undo_files(_record(settings, tool))
    except ConfigureError as exc:
        return Result(tool, False, False, exc.message)
    except OSError as exc:
        where = f" ({exc.filename})" if exc.filename else ""
        return Result(tool, False, False, f"could not undo{where}: {exc.strerror or exc}")
    except Exception as exc:  # a bug must not take the tray down
        log.exception("configure %s: undo failed", tool)
        return Result(tool, False, False, f"could not undo {tool}: {exc!r} (see the log)")
    return Result(
        tool, True, True, f"{spec.label}: claude-tray's changes are undone", files=tuple(files)
    )


def check_connection(
    tool: str,
    settings: Settings,
    env: Mapping[str, str],
    *,
    model: str | None = None,
    base_url: str | None = None,
    timeout: float = 120.0,
) -> Result:
    """One real request through the proxy, the way the tool sends it."""
    try:
        spec = _tool(tool)
        ctx = make_context(settings, env, model=model, base_url=base_url)
    except ConfigureError as exc:
        return Result(tool, False, False, exc.message)
    probe = send_probe(spec, ctx, timeout=timeout)
    return Result(tool, probe.ok, False, probe.message)
