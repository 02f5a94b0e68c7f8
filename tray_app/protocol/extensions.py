"""claude-tray's own request fields, the same in all three APIs: agent mode and the extras
scripts send through `extra_body` (a budget, a fallback model, a JSON schema, continuing
the client's last conversation).

Parsing only: whether agent mode is on, which working directories and MCP servers are
allowed, is policy the backend applies (backend/agent.py).
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any

from tray_app.errors import Forbidden, InvalidRequest
from tray_app.protocol.common import field_of
from tray_app.protocol.model import AgentRequest, Subagent, Turn

PERMISSION_MODES = ("default", "acceptEdits", "plan", "dontAsk")
# Never over HTTP: a web page or a stolen key could then run anything on the machine.
FORBIDDEN_PERMISSION_MODES = ("bypassPermissions",)
AGENT_FIELDS = (
    "working_directory",
    "allowed_tools",
    "disallowed_tools",
    "permission_mode",
    "agents",
    "agent",
    "mcp_config",
)


def split_tool_names(body: dict[str, Any]) -> tuple[dict[str, Any], tuple[str, ...] | None]:
    """`tools` given as names (agent mode's built-in set) apart from client tool objects."""
    tools = body.get("tools")
    if not isinstance(tools, list) or not any(isinstance(t, str) for t in tools):
        return body, None
    names = tuple(t for t in tools if isinstance(t, str))
    rest = [t for t in tools if not isinstance(t, str)]
    body = dict(body)
    if rest:
        body["tools"] = rest
    else:
        body.pop("tools")
    return body, names


def with_extensions(turn: Turn, body: Any, tool_names: tuple[str, ...] | None) -> Turn:
    """`turn` with claude-tray's own fields from `body` added."""
    if not isinstance(body, dict):
        return turn
    changes: dict[str, Any] = {}
    agent = _agent(body, tool_names)
    if agent is not None:
        changes["agent"] = agent
    budget = field_of(body, "max_budget_usd", (int, float))
    if budget is not None:
        if not (math.isfinite(budget) and budget > 0):
            raise InvalidRequest(
                "'max_budget_usd' must be a number above 0.", param="max_budget_usd"
            )
        changes["max_budget_usd"] = float(budget)
    fallback = field_of(body, "fallback_model", str)
    if fallback:
        changes["fallback_model"] = fallback
    schema = field_of(body, "json_schema", dict)
    if schema is not None and turn.output_schema is None:
        # Accept both the bare schema and OpenAI's {"name": ..., "schema": {...}} wrapper.
        inner = schema.get("schema")
        wrapped = isinstance(inner, dict)
        changes["output_schema"] = inner if wrapped else schema
        changes["output_schema_field"] = "json_schema.schema" if wrapped else "json_schema"
    if field_of(body, "continue_conversation", bool):
        changes["continue_conversation"] = True
    return dataclasses.replace(turn, **changes) if changes else turn


def _agent(body: dict[str, Any], tool_names: tuple[str, ...] | None) -> AgentRequest | None:
    if tool_names is None and not any(body.get(k) is not None for k in AGENT_FIELDS):
        return None
    mode = field_of(body, "permission_mode", str)
    if mode in FORBIDDEN_PERMISSION_MODES:
        raise Forbidden(
            f"permission_mode '{mode}' is never available over HTTP: it would let any "
            "request run anything on this machine. Use default, acceptEdits, plan or dontAsk."
        )
    if mode is not None and mode not in PERMISSION_MODES:
        raise InvalidRequest(
            f"'permission_mode' must be one of {', '.join(PERMISSION_MODES)}, not '{mode}'.",
            param="permission_mode",
        )
    agents = _subagents(body.get("agents"))
    agent = field_of(body, "agent", str)
    if agent and agent not in {a.name for a in agents}:
        # A name the CLI may know from elsewhere cannot be, with setting sources off.
        raise InvalidRequest(
            f"'agent' names '{agent}', which is not among the request's 'agents'.", param="agent"
        )
    return AgentRequest(
        working_directory=field_of(body, "working_directory", str),
        tools=tool_names,
        allowed_tools=_names(body, "allowed_tools"),
        disallowed_tools=_names(body, "disallowed_tools"),
        permission_mode=mode,
        agents=agents,
        agent=agent or None,
        mcp_servers=_mcp_names(body.get("mcp_config")),
    )


def _names(body: dict[str, Any], key: str) -> tuple[str, ...]:
    value = field_of(body, key, list)
    if value is None:
        return ()
    if not all(isinstance(v, str) and v for v in value):
        raise InvalidRequest(f"'{key}' must be a list of tool names.", param=key)
    return tuple(value)


def _subagents(raw: Any) -> tuple[Subagent, ...]:
    if raw is None:
        return ()
    if not isinstance(raw, dict):
        raise InvalidRequest(
            "'agents' must be an object: name -> {description, prompt}.", param="agents"
        )
    out = []
    for name, spec in raw.items():
        where = f"agents.{name}."
        if not isinstance(spec, dict):
            raise InvalidRequest(f"'agents.{name}' must be an object.", param=f"agents.{name}")
        tools = spec.get("tools")
        if tools is not None and not (
            isinstance(tools, list) and all(isinstance(t, str) for t in tools)
        ):
            raise InvalidRequest(
                f"'agents.{name}.tools' must be a list of tool names.", param=f"{where}tools"
            )
        out.append(
            Subagent(
                name=str(name),
                description=field_of(spec, "description", str, required=True, where=where),
                prompt=field_of(spec, "prompt", str, required=True, where=where),
                tools=tuple(tools) if tools is not None else None,
                model=field_of(spec, "model", str, where=where),
            )
        )
    return tuple(out)


def _mcp_names(raw: Any) -> tuple[str, ...]:
    """Server names from `mcp_config`: a list of names, {"mcpServers": {...}} or {name: ...}.

    Only names count: what a server runs comes from the allow-listed config file in
    the settings, never from the request.
    """
    if raw is None:
        return ()
    if isinstance(raw, list) and all(isinstance(n, str) for n in raw):
        return tuple(raw)
    if isinstance(raw, dict):
        servers = raw.get("mcpServers", raw)
        if isinstance(servers, dict):
            return tuple(str(n) for n in servers)
    raise InvalidRequest(
        "'mcp_config' must be a list of MCP server names or an object of servers by name.",
        param="mcp_config",
    )
