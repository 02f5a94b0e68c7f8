"""Cline CLI (3.x): its OpenAI-compatible provider, in $CLINE_DATA_DIR/settings/providers.json
(~/.cline/data), pointed at claude-tray; with --default, the provider Cline uses.

Cline has one OpenAI-compatible provider slot, not one per service: when it already
points somewhere else, configure refuses rather than replace the user's choice. Cline
saves the file again on every run with new timestamps, which undo does not count as an
edit (`settle`).
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from tray_app.integrations.configure.context import Context
from tray_app.integrations.configure.core import Change, ConfigureError, read_config
from tray_app.integrations.configure.spec import Tool

SLOT = "openai-compatible"


def data_dir(ctx: Context) -> Path:
    if data := ctx.env.get("CLINE_DATA_DIR"):
        return Path(data)
    return ctx.home / ".cline" / "data"


def config_path(ctx: Context) -> Path:
    return data_dir(ctx) / "settings" / "providers.json"


def settings(ctx: Context) -> dict[str, Any]:
    return {"provider": SLOT, "apiKey": ctx.key, "model": ctx.model, "baseUrl": ctx.openai_url}


def _load(path: Path, text: str | None) -> dict[str, Any]:
    if not text or not text.strip():
        return {"version": 1, "modes": {}, "providers": {}}
    try:
        doc = json.loads(text)
    except ValueError as exc:
        raise ConfigureError(path, f"is not valid JSON: {exc}") from exc
    except RecursionError as exc:
        raise ConfigureError(path, "is nested too deeply to edit") from exc
    if not isinstance(doc, dict):
        raise ConfigureError(path, "should hold a JSON object but does not")
    if not isinstance(doc.setdefault("providers", {}), dict):
        raise ConfigureError(path, "'providers' should be an object but is not")
    return doc


def _slot_url(doc: dict[str, Any]) -> str | None:
    entry = doc["providers"].get(SLOT)
    values = entry.get("settings") if isinstance(entry, dict) else None
    url = values.get("baseUrl") if isinstance(values, dict) else None
    return url if isinstance(url, str) else None


def _ordered(value: dict[str, Any], first: tuple[str, ...]) -> dict[str, Any]:
    head = {key: value[key] for key in first if key in value}
    return head | {key: item for key, item in value.items() if key not in head}


def plan(ctx: Context) -> list[Change]:
    current = read_config(config_path(ctx), ctx.home)
    doc = _load(current.path, current.text)
    before = json.loads(json.dumps(doc))
    taken = _slot_url(doc)
    if SLOT in doc["providers"] and taken != ctx.openai_url:
        raise ConfigureError(
            current.path,
            f"Cline's one OpenAI-compatible provider is set to {taken or 'something else'}; "
            "claude-tray will not replace it. Remove it with `cline auth` (or, if it was "
            "claude-tray at an earlier address, `claude-tray configure cline --undo`) first",
        )
    entry = doc["providers"].get(SLOT)
    entry = dict(entry) if isinstance(entry, dict) else {"tokenSource": "manual"}
    wanted = settings(ctx)
    if entry.get("settings") != wanted or not isinstance(entry.get("updatedAt"), str):
        entry["settings"] = wanted
        # Cline ignores the whole file (and falls back to its own cloud provider)
        # when an entry has no updatedAt.
        entry["updatedAt"] = datetime.now(UTC).isoformat(timespec="milliseconds")[:-6] + "Z"
    doc["providers"][SLOT] = _ordered(entry, ("settings", "updatedAt", "tokenSource"))
    if ctx.make_default:
        doc["lastUsedProvider"] = SLOT
    # In the order and form Cline writes its file, which it saves again on every run:
    # what changes between the two is its timestamp alone.
    doc = _ordered(doc, ("version", "lastUsedProvider", "modes", "providers"))
    text = json.dumps(doc, indent=2, ensure_ascii=False) + "\n"
    if current.text is not None and before == doc:
        text = current.text  # nothing to change: keep the bytes as they are
    return [Change(current, text, secret=ctx.secret)]


def settle(text: str) -> str:
    """The file without the timestamps Cline rewrites on every run."""
    try:
        doc = json.loads(text)
        for entry in doc["providers"].values():
            entry.pop("updatedAt", None)
    except (ValueError, RecursionError, KeyError, TypeError, AttributeError):
        return text
    return json.dumps(doc, sort_keys=True)


def is_configured(ctx: Context) -> bool:
    try:
        current = read_config(config_path(ctx), ctx.home)
        return _slot_url(_load(current.path, current.text)) == ctx.openai_url
    except ConfigureError:
        return False


def usage(ctx: Context) -> str:
    if ctx.make_default:
        return f'cline "<task>" (uses {ctx.model} through claude-tray)'
    return f'cline -P {SLOT} -m {ctx.model} "<task>"'


TOOL = Tool(
    id="cline",
    label="Cline CLI",
    binaries=("cline",),
    wire="chat",
    files=lambda ctx: [config_path(ctx)],
    marks=lambda ctx: [data_dir(ctx)],
    plan=plan,
    is_configured=is_configured,
    usage=usage,
    settle=settle,
)
