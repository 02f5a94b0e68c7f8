"""Claude Code's own sessions on this machine (the user's, not the proxy's), read-only."""

from __future__ import annotations

import os
from typing import Any

from claude_agent_sdk import list_sessions


def claude_code_sessions(work_dir: str, limit: int, offset: int = 0) -> list[dict[str, Any]]:
    """The user's Claude Code sessions, newest first, without the proxy's own."""
    ours = os.path.realpath(work_dir)
    out: list[dict[str, Any]] = []
    # The proxy's sessions live in its work dir; skip them and page over the rest.
    for info in list_sessions():
        if info.cwd and os.path.realpath(info.cwd) == ours:
            continue
        out.append(
            {
                "id": info.session_id,
                "object": "session",
                "source": "claude-code",
                "read_only": True,
                "title": info.custom_title or info.summary or info.first_prompt or "",
                "cwd": info.cwd,
                "git_branch": info.git_branch,
                "created": (info.created_at or info.last_modified) / 1000,
                "last_used": info.last_modified / 1000,
                "size_bytes": info.file_size,
            }
        )
    return out[offset : offset + limit]
