"""claude-tray's own request fields (pure parsing) and agent mode's rules (settings, paths)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest

from tray_app.backend.agent import outside_paths, resolve
from tray_app.errors import Forbidden, InvalidRequest
from tray_app.protocol import extensions
from tray_app.protocol.model import AgentRequest, Subagent, TextPart, Turn
from tray_app.settings import load_settings

BASE = Turn(
    api="openai", model="sonnet", system=None, history=(), prompt=(TextPart("hi"),), stream=False
)


def extended(body: dict[str, Any]) -> Turn:
    rest, names = extensions.split_tool_names(body)
    return extensions.with_extensions(BASE, rest, names)


def test_plain_requests_carry_no_extension() -> None:
    assert extended({"model": "sonnet"}) == BASE


def test_tool_names_are_agent_tools_and_objects_stay_client_tools() -> None:
    body = {"tools": ["Read", {"type": "function", "function": {"name": "f"}}, "Grep"]}
    rest, names = extensions.split_tool_names(body)
    assert names == ("Read", "Grep")
    assert rest["tools"] == [{"type": "function", "function": {"name": "f"}}]
    assert "tools" not in extensions.split_tool_names({"tools": ["Read"]})[0]


def test_every_agent_field() -> None:
    turn = extended(
        {
            "tools": ["Read"],
            "working_directory": "demo",
            "allowed_tools": ["Read"],
            "disallowed_tools": ["Bash"],
            "permission_mode": "plan",
            "agents": {
                "reviewer": {"description": "Reviews", "prompt": "Review it", "tools": ["Read"]}
            },
            "agent": "reviewer",
            "mcp_config": {"mcpServers": {"git": {"command": "ignored"}}},
            "max_budget_usd": 0.5,
            "fallback_model": "haiku",
            "json_schema": {"name": "x", "schema": {"type": "object"}},
            "continue_conversation": True,
        }
    )
    assert turn.agent == AgentRequest(
        working_directory="demo",
        tools=("Read",),
        allowed_tools=("Read",),
        disallowed_tools=("Bash",),
        permission_mode="plan",
        agents=(Subagent("reviewer", "Reviews", "Review it", ("Read",)),),
        agent="reviewer",
        mcp_servers=("git",),
    )
    assert (turn.max_budget_usd, turn.fallback_model) == (0.5, "haiku")
    assert turn.output_schema == {"type": "object"}
    assert turn.continue_conversation is True


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ({"permission_mode": "yolo"}, "permission_mode"),
        ({"allowed_tools": "Read"}, "allowed_tools"),
        ({"agents": []}, "agents"),
        ({"agents": {"a": {"prompt": "p"}}}, "agents.a.description"),
        ({"agent": "ghost"}, "agent"),
        ({"mcp_config": 3}, "mcp_config"),
        ({"max_budget_usd": 0}, "max_budget_usd"),
        ({"max_budget_usd": "1"}, "max_budget_usd"),
        ({"continue_conversation": "yes"}, "continue_conversation"),
    ],
)
def test_bad_fields_get_a_400_naming_them(body: dict[str, Any], param: str) -> None:
    with pytest.raises(InvalidRequest) as caught:
        extended(body)
    assert caught.value.param == param


def test_bypassing_permissions_is_never_available() -> None:
    with pytest.raises(Forbidden):
        extended({"permission_mode": "bypassPermissions"})


def settings_for(tmp_path: Path, **values: str) -> Any:
    env = {"CLAUDE_TRAY_HOME": str(tmp_path / "home"), "HOME": str(tmp_path / "home")}
    env.update({f"CLAUDE_TRAY_{k.upper()}": v for k, v in values.items()})
    return load_settings(env)


def test_resolve_confines_the_working_directory(tmp_path: Path) -> None:
    root = tmp_path / "root"
    (root / "demo").mkdir(parents=True)
    os.symlink(tmp_path, root / "up")
    settings = settings_for(tmp_path, agent_mode="true", agent_roots=str(root))
    assert resolve(AgentRequest(working_directory="demo"), settings).cwd == str(root / "demo")
    assert resolve(AgentRequest(), settings).cwd == str(root)
    for escape in ("..", "demo/../..", "up", str(tmp_path)):
        with pytest.raises(Forbidden):
            resolve(AgentRequest(working_directory=escape), settings)
    with pytest.raises(InvalidRequest):
        resolve(AgentRequest(working_directory="missing"), settings)


def test_resolve_needs_agent_mode_and_roots(tmp_path: Path) -> None:
    with pytest.raises(Forbidden, match="agent_mode"):
        resolve(AgentRequest(), settings_for(tmp_path))
    with pytest.raises(Forbidden, match="agent_roots"):
        resolve(AgentRequest(), settings_for(tmp_path, agent_mode="true"))


def test_mcp_servers_come_from_the_allow_list_file(tmp_path: Path) -> None:
    root = tmp_path / "root"
    root.mkdir()
    allow = tmp_path / "mcp.json"
    allow.write_text('{"mcpServers": {"git": {"command": "mcp-git", "args": []}}}')
    settings = settings_for(
        tmp_path, agent_mode="true", agent_roots=str(root), agent_mcp_config=str(allow)
    )
    spec = resolve(AgentRequest(mcp_servers=("git",)), settings)
    assert spec.mcp_servers == {"git": {"command": "mcp-git", "args": []}}
    with pytest.raises(Forbidden, match="agent_mcp_config"):
        resolve(AgentRequest(mcp_servers=("shell",)), settings)


def test_outside_paths(tmp_path: Path) -> None:
    cwd = tmp_path / "work"
    cwd.mkdir()
    os.symlink("/etc", cwd / "etc-link")
    assert outside_paths({"file_path": "notes.txt"}, str(cwd)) == []
    assert outside_paths({"file_path": str(cwd / "a" / "b")}, str(cwd)) == []
    assert outside_paths({"file_path": "/etc/passwd"}, str(cwd)) == ["/etc/passwd"]
    assert outside_paths({"path": "../"}, str(cwd)) == ["../"]
    assert outside_paths({"file_path": "etc-link/hosts"}, str(cwd)) == ["etc-link/hosts"]
    assert outside_paths({"pattern": "/etc/*.conf"}, str(cwd)) == ["/etc/"]
    assert outside_paths({"pattern": "**/*.py"}, str(cwd)) == []
