"""Read a conversation back from the CLI's own transcript, for people (the dashboard).

The transcript is found in the config dir claude-tray runs the CLI with (not wherever
this process's environment points), and its lines are turned into messages by the SDK's
chain builder, fed through an in-memory `SessionStore` holding the parsed file.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from pathlib import Path
from typing import Any

from claude_agent_sdk import (
    InMemorySessionStore,
    SessionKey,
    SessionStoreEntry,
    get_session_messages_from_store,
    project_key_for_directory,
)

from tray_app.backend.client_tools import client_name


def is_session_id(value: str) -> bool:
    """Whether `value` is a CLI session id (a UUID), so it is safe in a file name."""
    try:
        return str(uuid.UUID(value)) == value.lower()
    except ValueError:
        return False


def find_transcript(config_dir: Path, session_id: str, cwd: str | None = None) -> Path | None:
    """The transcript file of a CLI session: under `cwd`'s project when given, else in
    any project (Claude Code's own sessions)."""
    if not is_session_id(session_id):
        return None
    projects = config_dir / "projects"
    name = f"{session_id}.jsonl"
    if cwd is not None:
        path = projects / project_key_for_directory(cwd) / name
        return path if path.is_file() else None
    try:
        folders = sorted(projects.iterdir())
    except OSError:
        return None
    return next((f / name for f in folders if (f / name).is_file()), None)


def _entries(path: Path) -> list[SessionStoreEntry]:
    out: list[SessionStoreEntry] = []
    with path.open(encoding="utf-8", errors="replace") as lines:
        for line in lines:
            try:
                entry = json.loads(line)
            except ValueError:
                continue  # a line being written right now, or damage: skip it
            if isinstance(entry, dict):
                out.append(entry)  # type: ignore[arg-type]  # the SDK's TypedDict is open
    return out


async def read_messages(
    config_dir: Path,
    session_id: str,
    *,
    cwd: str | None = None,
    limit: int | None = None,
    offset: int = 0,
) -> list[dict[str, Any]] | None:
    """The session's user and assistant messages in order, or None when there is no
    transcript. Images are left out (their size and kind kept); tool names are the
    client's own."""
    path = await asyncio.to_thread(find_transcript, config_dir, session_id, cwd)
    if path is None:
        return None
    try:
        entries = await asyncio.to_thread(_entries, path)
    except OSError:
        return None
    store = InMemorySessionStore()
    key: SessionKey = {"project_key": project_key_for_directory(cwd), "session_id": session_id}
    await store.append(key, entries)
    messages = await get_session_messages_from_store(
        store, session_id, directory=cwd, limit=limit, offset=offset
    )
    out = []
    for message in messages:
        raw = message.message if isinstance(message.message, dict) else {}
        item: dict[str, Any] = {
            "role": message.type,
            "uuid": message.uuid,
            "content": _blocks(raw.get("content")),
        }
        if message.type == "assistant" and isinstance(raw.get("model"), str):
            item["model"] = raw["model"]
        out.append(item)
    return out


def _blocks(content: Any) -> list[dict[str, Any]]:
    if isinstance(content, str):
        return [{"type": "text", "text": content}]
    if not isinstance(content, list):
        return []
    return [b for b in (_block(item) for item in content) if b is not None]


def _block(item: Any) -> dict[str, Any] | None:
    if not isinstance(item, dict):
        return None
    kind = item.get("type")
    if kind == "text":
        return {"type": "text", "text": str(item.get("text", ""))}
    if kind == "thinking":
        return {"type": "thinking", "thinking": str(item.get("thinking", ""))}
    if kind == "redacted_thinking":
        return None
    if kind == "tool_use":
        return {
            "type": "tool_use",
            "id": item.get("id"),
            "name": client_name(str(item.get("name", ""))),
            "input": item.get("input"),
        }
    if kind == "tool_result":
        return {
            "type": "tool_result",
            "tool_use_id": item.get("tool_use_id"),
            "is_error": bool(item.get("is_error")),
            "content": _blocks(item.get("content")),
        }
    if kind == "image":
        source = item.get("source")
        data = source.get("data") if isinstance(source, dict) else None
        kind_of = source.get("media_type") if isinstance(source, dict) else None
        return {
            "type": "image",
            "media_type": kind_of,
            "bytes": len(data) * 3 // 4 if isinstance(data, str) else None,
        }
    return {"type": str(kind)}
