"""Which model names are served, what they resolve to, and the /v1/models body."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from tray_app.errors import ModelNotFound
from tray_app.protocol.common import plain_text

# The CLI resolves these aliases itself to the newest model of each family.
FAMILIES = ("opus", "sonnet", "haiku")
_DISPLAY = {
    "opus": "Claude Opus (latest)",
    "sonnet": "Claude Sonnet (latest)",
    "haiku": "Claude Haiku (latest)",
}
# A fixed date: clients only sort and display it.
_CREATED = 1767225600  # 2026-01-01


def resolve_model(requested: str, aliases: Mapping[str, str]) -> str:
    """The model name handed to the CLI, or ModelNotFound.

    Families and `claude-*` ids pass through; other names must be in the alias map.
    Surrounding whitespace and prefixes that routers add (`anthropic/`, `claude-tray/`)
    are dropped first. The name becomes a CLI argument and comes back in the
    X-Claude-Tray-Model header, so a control character inside it is a 400.
    """
    name = plain_text(requested.strip(), "model")
    for prefix in ("anthropic/", "claude-tray/", "openai/"):
        if name.startswith(prefix):
            name = name[len(prefix) :]
    lowered = name.lower()
    if lowered in FAMILIES or lowered.startswith("claude-"):
        return lowered
    target = aliases.get(name) or aliases.get(lowered)
    if target is None:
        raise ModelNotFound(requested)
    return target


def model_entry(model_id: str) -> dict[str, Any]:
    """One list item in both the OpenAI and the Anthropic shape at once."""
    return {
        "id": model_id,
        "object": "model",
        "created": _CREATED,
        "owned_by": "anthropic",
        "type": "model",
        "display_name": _DISPLAY.get(model_id, model_id),
        "created_at": "2026-01-01T00:00:00Z",
    }


def models_body(aliases: Mapping[str, str]) -> dict[str, Any]:
    ids = list(FAMILIES) + sorted(a for a in aliases if a not in FAMILIES)
    data = [model_entry(i) for i in ids]
    return {
        "object": "list",
        "data": data,
        "has_more": False,
        "first_id": ids[0],
        "last_id": ids[-1],
    }


def model_body(requested: str, aliases: Mapping[str, str]) -> dict[str, Any]:
    resolve_model(requested, aliases)
    return model_entry(requested)
