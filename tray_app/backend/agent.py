"""Agent mode's rules: whether a request may have Claude Code use its own tools, where, and
with which MCP servers; and the check on every path a tool call names.

The CLI's permission checks are not a sandbox (DESIGN.md §6: in plan mode or with Read
pre-approved it reads outside its working directory, and a symlinked directory is taken
as its target), so every path is resolved with realpath and checked here, before the
tool runs.
"""

from __future__ import annotations

import json
import logging
import os
from dataclasses import dataclass
from typing import Any

from claude_agent_sdk import HookCallback, HookContext, HookInput, HookJSONOutput

from tray_app.errors import Forbidden, InvalidRequest
from tray_app.protocol.model import AgentRequest, Subagent
from tray_app.settings import Settings

log = logging.getLogger(__name__)

# Tool input keys that name a file or directory, across Claude Code's built-in tools.
_PATH_KEYS = ("file_path", "path", "notebook_path")


@dataclass(frozen=True, slots=True)
class AgentSpec:
    """An agent request made safe: a resolved working directory inside a root, and MCP
    server definitions from the settings' allow-list, never from the request."""

    cwd: str
    tools: tuple[str, ...] | None
    allowed_tools: tuple[str, ...]
    disallowed_tools: tuple[str, ...]
    permission_mode: str | None
    agents: tuple[Subagent, ...]
    agent: str | None
    mcp_servers_json: str  # {name: definition}, as JSON so the spec stays hashable

    @property
    def mcp_servers(self) -> dict[str, Any]:
        servers: dict[str, Any] = json.loads(self.mcp_servers_json)
        return servers

    def to_json(self) -> dict[str, Any]:
        return {
            "cwd": self.cwd,
            "tools": None if self.tools is None else list(self.tools),
            "allowed_tools": list(self.allowed_tools),
            "disallowed_tools": list(self.disallowed_tools),
            "permission_mode": self.permission_mode,
            "agents": [
                [a.name, a.description, a.prompt, a.tools and list(a.tools), a.model]
                for a in self.agents
            ],
            "agent": self.agent,
            "mcp_servers": self.mcp_servers,
        }

    @classmethod
    def from_json(cls, raw: dict[str, Any]) -> AgentSpec:
        return cls(
            cwd=str(raw["cwd"]),
            tools=None if raw.get("tools") is None else tuple(raw["tools"]),
            allowed_tools=tuple(raw.get("allowed_tools", ())),
            disallowed_tools=tuple(raw.get("disallowed_tools", ())),
            permission_mode=raw.get("permission_mode"),
            agents=tuple(
                Subagent(n, d, p, tuple(t) if t else None, m)
                for n, d, p, t, m in raw.get("agents", ())
            ),
            agent=raw.get("agent"),
            mcp_servers_json=json.dumps(raw.get("mcp_servers") or {}, sort_keys=True),
        )


def resolve(request: AgentRequest, settings: Settings) -> AgentSpec:
    """Check an agent request against the settings; Forbidden or InvalidRequest if not allowed."""
    if not settings.agent_mode:
        raise Forbidden(
            "This request asks for agent mode (Claude Code's own tools on this machine), "
            "which is off. Turn it on with the setting agent_mode "
            "(CLAUDE_TRAY_AGENT_MODE=true) and name the folders it may work in with "
            "agent_roots."
        )
    roots = [os.path.realpath(os.path.expanduser(r)) for r in settings.agent_roots]
    if not roots:
        raise Forbidden(
            "Agent mode is on but no folder is allowed: set agent_roots "
            "(CLAUDE_TRAY_AGENT_ROOTS) to the folders agent requests may work in."
        )
    asked = request.working_directory or roots[0]
    base = asked if os.path.isabs(os.path.expanduser(asked)) else os.path.join(roots[0], asked)
    cwd = os.path.realpath(os.path.expanduser(base))
    if not any(_inside(cwd, root) for root in roots):
        raise Forbidden(
            f"working_directory '{asked}' resolves to '{cwd}', which is outside the "
            f"folders agent mode may use (agent_roots: {', '.join(roots)})."
        )
    if not os.path.isdir(cwd):
        raise InvalidRequest(
            f"working_directory '{asked}' is not a folder.", param="working_directory"
        )
    return AgentSpec(
        cwd=cwd,
        tools=request.tools,
        allowed_tools=request.allowed_tools,
        disallowed_tools=request.disallowed_tools,
        permission_mode=request.permission_mode,
        agents=request.agents,
        agent=request.agent,
        mcp_servers_json=json.dumps(_mcp_servers(request.mcp_servers, settings), sort_keys=True),
    )


def _mcp_servers(names: tuple[str, ...], settings: Settings) -> dict[str, Any]:
    if not names:
        return {}
    allowed = _allow_list(settings)
    refused = [n for n in names if n not in allowed]
    if refused:
        raise Forbidden(
            f"MCP server(s) {', '.join(refused)} are not in the allow-list: only servers "
            "defined in the file named by the setting agent_mcp_config "
            f"({settings.agent_mcp_config or 'not set'}) may be started."
        )
    return {n: allowed[n] for n in names}


def _allow_list(settings: Settings) -> dict[str, Any]:
    if not settings.agent_mcp_config:
        return {}
    try:
        with open(os.path.expanduser(settings.agent_mcp_config), encoding="utf-8") as f:
            raw = json.load(f)
    except (OSError, ValueError) as exc:
        raise Forbidden(
            f"The MCP allow-list file {settings.agent_mcp_config} (setting agent_mcp_config) "
            f"cannot be read: {exc}"
        ) from exc
    servers = raw.get("mcpServers", raw) if isinstance(raw, dict) else None
    return {str(k): v for k, v in servers.items()} if isinstance(servers, dict) else {}


def _inside(path: str, root: str) -> bool:
    return path == root or path.startswith(root.rstrip(os.sep) + os.sep)


def outside_paths(tool_input: dict[str, Any], cwd: str) -> list[str]:
    """The paths a tool call names that resolve outside `cwd` (after realpath)."""
    names = [tool_input.get(k) for k in _PATH_KEYS]
    pattern = tool_input.get("pattern")
    if isinstance(pattern, str) and os.path.isabs(pattern):
        # Glob takes an absolute pattern as where to look.
        names.append(pattern.split("*", 1)[0] or os.sep)
    out = []
    for name in names:
        if not isinstance(name, str) or not name:
            continue
        full = os.path.realpath(os.path.join(cwd, os.path.expanduser(name)))
        if not _inside(full, cwd):
            out.append(name)
    return out


def path_guard(cwd: str) -> HookCallback:
    """A PreToolUse hook that denies any tool call naming a path outside `cwd`."""

    async def check(
        hook_input: HookInput, tool_use_id: str | None, context: HookContext
    ) -> HookJSONOutput:
        tool_input = hook_input.get("tool_input")
        if not isinstance(tool_input, dict):
            return {}
        outside = outside_paths(tool_input, cwd)
        if not outside:
            return {}
        name = hook_input.get("tool_name") or "a tool"
        log.warning("agent mode: denied %s on %s (outside %s)", name, ", ".join(outside), cwd)
        return {
            "hookSpecificOutput": {
                "hookEventName": "PreToolUse",
                "permissionDecision": "deny",
                "permissionDecisionReason": (
                    f"{', '.join(outside)} is outside the working directory {cwd}; "
                    "claude-tray's agent mode only works inside it."
                ),
            }
        }

    return check
