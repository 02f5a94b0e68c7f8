"""The shape every tool writer fills in: where its files are, what it writes, how to
tell it is configured, and how its requests look for the connection test."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from tray_app.integrations.configure.context import Context
from tray_app.integrations.configure.core import Change

# How the tool talks to the proxy: OpenAI chat completions, OpenAI Responses, or
# Anthropic Messages (Claude Code).
WireApi = Literal["chat", "responses", "messages"]


@dataclass(frozen=True, slots=True)
class Tool:
    id: str
    label: str
    binaries: tuple[str, ...]
    wire: WireApi
    files: Callable[[Context], list[Path]]
    # Folders whose presence means the tool has been used here (besides its binary).
    marks: Callable[[Context], list[Path]]
    plan: Callable[[Context], list[Change]]
    is_configured: Callable[[Context], bool]
    usage: Callable[[Context], str]
    # Whether the connection test should send streaming requests, as the tool does.
    streams: bool = True
    # What of the tool's file counts when telling claude-tray's write from a later edit,
    # for a tool that rewrites its own file as it runs (None: every byte).
    settle: Callable[[str], str] | None = None
