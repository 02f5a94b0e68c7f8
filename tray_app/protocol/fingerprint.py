"""Fingerprints of conversations, so a resent history can be matched to the session it extends.

OpenAI-style clients resend the whole conversation on every request. A request
continues a session only when the fingerprint of everything before its new turn
equals the session's tip: the fingerprint of the conversation as the client saw it
after our last answer. Any edit, truncation or branch changes the fingerprint, so it
can never continue the wrong session.

What is hashed is what a client resends faithfully: roles, text (trimmed, since some
clients trim), tool calls with parsed arguments, tool results and images. Thinking is
left out: OpenAI clients drop it and Anthropic clients may or may not send it back.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable
from typing import Any

from tray_app.protocol.model import (
    ImagePart,
    Message,
    Part,
    TextPart,
    ToolResultPart,
    ToolUsePart,
)

_VERSION = b"claude-tray/fingerprint/1"


def root(system: str | None) -> str:
    """The fingerprint of an empty conversation under this system prompt."""
    return hashlib.sha256(_VERSION + b"\0" + (system or "").encode()).hexdigest()


def extend(tip: str, message: Message) -> str:
    """The fingerprint after `message` is appended to the conversation at `tip`."""
    canon = json.dumps(_canonical(message), ensure_ascii=False, sort_keys=True)
    return hashlib.sha256(f"{tip}\0{canon}".encode()).hexdigest()


def of(system: str | None, messages: Iterable[Message]) -> str:
    tip = root(system)
    for message in messages:
        tip = extend(tip, message)
    return tip


def _canonical(message: Message) -> list[Any]:
    text = "".join(p.text for p in message.parts if isinstance(p, TextPart)).strip()
    out: list[Any] = [message.role, text]
    for part in message.parts:
        if isinstance(part, ToolUsePart):
            out.append(["tool_use", part.id, part.name, part.input])
        elif isinstance(part, ToolResultPart):
            out.append(["tool_result", part.tool_use_id, _content(part.content), part.is_error])
        elif isinstance(part, ImagePart):
            out.append(["image", _image(part)])
    return out


def _content(parts: Iterable[Part]) -> list[str]:
    return [
        p.text.strip() if isinstance(p, TextPart) else _image(p)
        for p in parts
        if isinstance(p, TextPart | ImagePart)
    ]


def _image(part: ImagePart) -> str:
    return hashlib.sha256(part.data.encode()).hexdigest()
