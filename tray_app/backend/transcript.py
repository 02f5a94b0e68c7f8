"""Write an earlier conversation as a Claude Code transcript, so `--resume` restores it.

Replaying history by writing user/assistant lines to the CLI's stdin does not work
(they are reordered and merged), and the SDK's session_store route copies the user's
credentials into a temp dir. A transcript file in the CLI's own config dir restores
every earlier turn faithfully and moves no secret. The line format is internal to the
CLI; the minimum it needs is type, uuid, parentUuid (a chain) and message.
"""

from __future__ import annotations

import json
import os
import uuid
from collections.abc import Iterable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from claude_agent_sdk import project_key_for_directory

from tray_app.protocol.model import (
    ImagePart,
    Message,
    Part,
    TextPart,
    ToolResultPart,
    ToolUsePart,
)


def block(part: Part, tool_prefix: str = "") -> dict[str, Any]:
    """One Anthropic content block for a part (tool names as the model sees them)."""
    if isinstance(part, TextPart):
        return {"type": "text", "text": part.text}
    if isinstance(part, ImagePart):
        return {
            "type": "image",
            "source": {"type": "base64", "media_type": part.media_type, "data": part.data},
        }
    if isinstance(part, ToolUsePart):
        name = tool_prefix + part.name
        return {"type": "tool_use", "id": part.id, "name": name, "input": part.input}
    if isinstance(part, ToolResultPart):
        return {
            "type": "tool_result",
            "tool_use_id": part.tool_use_id,
            "content": [block(p) for p in part.content],
            "is_error": part.is_error,
        }
    return {"type": "thinking", "thinking": part.thinking, "signature": part.signature}


def user_line(parts: Iterable[Part]) -> dict[str, Any]:
    """The stream-json input line that asks the CLI to answer `parts`."""
    return {
        "type": "user",
        "message": {"role": "user", "content": [block(p) for p in parts]},
        "parent_tool_use_id": None,
    }


def transcript_lines(
    session_id: str, history: Iterable[Message], cwd: str, tool_prefix: str = ""
) -> list[dict[str, Any]]:
    now = datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
    lines: list[dict[str, Any]] = []
    parent: str | None = None
    for message in history:
        line_id = str(uuid.uuid4())
        body: dict[str, Any] = {
            "role": message.role,
            "content": [block(p, tool_prefix) for p in message.parts],
        }
        if message.role == "assistant":
            body.update(
                {
                    "id": f"msg_{line_id.replace('-', '')[:24]}",
                    "type": "message",
                    "model": "claude-tray-history",
                    "stop_reason": "end_turn",
                    "stop_sequence": None,
                    "usage": {"input_tokens": 0, "output_tokens": 0},
                }
            )
        lines.append(
            {
                "type": message.role,
                "uuid": line_id,
                "parentUuid": parent,
                "sessionId": session_id,
                "message": body,
                "isSidechain": False,
                "cwd": cwd,
                "timestamp": now,
                "userType": "external",
            }
        )
        parent = line_id
    return lines


def write_transcript(
    config_dir: Path, cwd: str, history: Iterable[Message], tool_prefix: str = ""
) -> str:
    """Write `history` as a new session; returns its id for `resume=`."""
    session_id = str(uuid.uuid4())
    folder = config_dir / "projects" / project_key_for_directory(cwd)
    folder.mkdir(parents=True, exist_ok=True, mode=0o700)
    path = folder / f"{session_id}.jsonl"
    # O_EXCL: a fresh uuid never names an existing file; never overwrite one that does.
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        for line in transcript_lines(session_id, history, cwd, tool_prefix):
            f.write(json.dumps(line, ensure_ascii=False) + "\n")
    return session_id
