"""Offer a client's tools to the CLI as real tool definitions; hand it the client's results.

The tools live in an in-process MCP server attached to one CLI process (DESIGN.md §2:
the model then sees them as `mcp__client__<name>`, with the schema exactly as the
client declared it). When the model calls one, the CLI asks this server to run it;
the call waits here until the client's next request brings the result, so the CLI
continues the same turn in the same process, with nothing re-sent.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable
from typing import Any

from claude_agent_sdk import McpSdkServerConfig
from mcp.server import Server
from mcp.types import CallToolResult, ListToolsResult, Tool

from tray_app.protocol.model import ImagePart, TextPart, ToolResultPart, ToolSpec

log = logging.getLogger(__name__)

SERVER = "client"
PREFIX = f"mcp__{SERVER}__"
# Where the CLI puts the id of the tool_use block a call answers (CLI 2.1.330).
_TOOL_USE_ID = "claudecode/toolUseId"


class ToolBridge:
    """The client tools of one CLI process, and the results waiting to be handed over."""

    def __init__(self, tools: tuple[ToolSpec, ...]) -> None:
        self.tools = tools
        self._results: dict[str, ToolResultPart] = {}
        self._waiting: dict[str, asyncio.Future[ToolResultPart]] = {}

    @property
    def allowed(self) -> list[str]:
        """Pre-approval for every client tool: the CLI would otherwise deny the call."""
        return [PREFIX + t.name for t in self.tools]

    def server(self) -> McpSdkServerConfig:
        wire = [
            Tool.model_validate(
                {"name": t.name, "description": t.description, "inputSchema": t.input_schema}
            )
            for t in self.tools
        ]

        async def on_list_tools(ctx: Any, params: Any) -> ListToolsResult:
            return ListToolsResult(tools=wire)

        async def on_call_tool(ctx: Any, params: Any) -> CallToolResult:
            return await self._call(_tool_use_id(params), str(params.name))

        # A plain lowlevel server, not create_sdk_mcp_server: that one validates the
        # arguments and answers errors itself, but only the client may answer.
        instance = Server(
            SERVER, version="1", on_list_tools=on_list_tools, on_call_tool=on_call_tool
        )
        return McpSdkServerConfig(type="sdk", name=SERVER, instance=instance)

    @property
    def waiting(self) -> bool:
        """A call is waiting for the client: the CLI is inside a turn."""
        return any(not w.done() for w in self._waiting.values())

    def supply(self, results: Iterable[ToolResultPart]) -> None:
        """Results from the client's request; calls waiting for them go on at once."""
        for result in results:
            waiter = self._waiting.pop(result.tool_use_id, None)
            if waiter is not None and not waiter.done():
                waiter.set_result(result)
            else:
                self._results[result.tool_use_id] = result

    def abandon(self, reason: str) -> None:
        """Answer every waiting call with an error (the process is about to go)."""
        for tool_use_id, waiter in list(self._waiting.items()):
            if not waiter.done():
                waiter.set_result(ToolResultPart(tool_use_id, (TextPart(reason),), True))
        self._waiting.clear()

    async def _call(self, tool_use_id: str | None, name: str) -> CallToolResult:
        if tool_use_id is None:
            log.warning("the CLI called client tool %s without a tool_use id", name)
            return _result(ToolResultPart("", (TextPart("No result: unknown call."),), True))
        ready = self._results.pop(tool_use_id, None)
        if ready is not None:
            return _result(ready)
        waiter = asyncio.get_running_loop().create_future()
        self._waiting[tool_use_id] = waiter
        try:
            return _result(await waiter)
        finally:
            self._waiting.pop(tool_use_id, None)


def _tool_use_id(params: Any) -> str | None:
    meta = getattr(params, "meta", None)
    if meta is None:
        return None
    values = meta if isinstance(meta, dict) else (getattr(meta, "model_extra", None) or {})
    value = values.get(_TOOL_USE_ID)
    return value if isinstance(value, str) else None


def _result(part: ToolResultPart) -> CallToolResult:
    content = [
        {"type": "image", "data": item.data, "mimeType": item.media_type}
        if isinstance(item, ImagePart)
        else {"type": "text", "text": item.text}
        for item in part.content
    ]
    # The wire names (camelCase) validate on every mcp major the SDK supports.
    return CallToolResult.model_validate({"content": content, "isError": part.is_error})


def client_name(name: str) -> str:
    """The client's name for a tool the model called (our MCP prefix removed)."""
    return name[len(PREFIX) :] if name.startswith(PREFIX) else name
