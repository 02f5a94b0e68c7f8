"""Pieces both APIs share: field checks, conversation normalising, the answer collector."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Any, TypeVar

from tray_app.errors import InvalidRequest
from tray_app.protocol.model import (
    BlockStarted,
    BlockStopped,
    CliEvent,
    ImagePart,
    Message,
    MessageDelta,
    Part,
    Role,
    SignatureDelta,
    TextDelta,
    TextPart,
    ThinkingDelta,
    ToolInputDelta,
    TurnCompleted,
    Usage,
)
from tray_app.protocol.stops import StopScanner

T = TypeVar("T")

_DATA_URL = re.compile(r"^data:(?P<mime>image/[\w.+-]+);base64,(?P<data>.+)$", re.DOTALL)
IMAGE_TYPES = ("image/png", "image/jpeg", "image/gif", "image/webp")


def field_of(
    body: dict[str, Any],
    key: str,
    kind: type[T] | tuple[type, ...],
    *,
    required: bool = False,
    where: str = "",
) -> Any:
    """The value at `key`, checked against `kind`; a 400 naming the field otherwise."""
    name = f"{where}{key}"
    if key not in body or body[key] is None:
        if required:
            raise InvalidRequest(f"'{name}' is required.", param=name)
        return None
    value = body[key]
    kinds = kind if isinstance(kind, tuple) else (kind,)
    # bool is an int in Python, never in JSON Schema.
    value_ok = False if isinstance(value, bool) and bool not in kinds else isinstance(value, kinds)
    if not value_ok:
        names = " or ".join(_json_type(k) for k in kinds)
        raise InvalidRequest(
            f"'{name}' must be {names}, not {_json_type(type(value))}.", param=name
        )
    return value


def _json_type(kind: type) -> str:
    return {
        str: "a string",
        int: "an integer",
        float: "a number",
        bool: "a boolean",
        list: "an array",
        dict: "an object",
        type(None): "null",
    }.get(kind, kind.__name__)


def positive_int(body: dict[str, Any], key: str) -> int | None:
    value = field_of(body, key, int)
    if value is not None and value < 1:
        raise InvalidRequest(f"'{key}' must be at least 1.", param=key)
    return value  # type: ignore[no-any-return]


def image_from_data_url(url: str, where: str) -> ImagePart:
    if url.startswith(("http://", "https://")):
        raise InvalidRequest(
            "Image URLs are not fetched; send the image inline as a base64 data URL "
            "(data:image/png;base64,...).",
            param=where,
        )
    match = _DATA_URL.match(url)
    if not match:
        raise InvalidRequest(
            "An image must be a base64 data URL (data:image/png;base64,...).", param=where
        )
    return image_part(match["mime"], match["data"], where)


def image_part(media_type: str, data: str, where: str) -> ImagePart:
    if media_type not in IMAGE_TYPES:
        raise InvalidRequest(
            f"Image type '{media_type}' is not supported; use one of {', '.join(IMAGE_TYPES)}.",
            param=where,
        )
    return ImagePart(media_type, data.strip())


def split_conversation(
    messages: list[tuple[Role, list[Part]]],
) -> tuple[tuple[Message, ...], tuple[Part, ...]]:
    """Merge same-role neighbours, drop empty turns, and split off the final user turn.

    The CLI itself merges consecutive same-role turns, so merging here keeps what the
    model sees identical to what we record; a history must open with a user turn.
    """
    merged: list[tuple[Role, list[Part]]] = []
    for role, parts in messages:
        parts = [p for p in parts if not (isinstance(p, TextPart) and not p.text)]
        if not parts:
            continue
        if merged and merged[-1][0] == role:
            merged[-1][1].extend(parts)
        else:
            merged.append((role, list(parts)))
    if not merged:
        raise InvalidRequest("The request has no message with any content.", param="messages")
    if merged[-1][0] != "user":
        raise InvalidRequest(
            "The last message must come from the user; continuing a partial assistant "
            "message (prefill) is not supported by the Claude Code runtime.",
            param="messages",
        )
    if merged[0][0] != "user":
        merged.insert(0, ("user", [TextPart("(conversation start)")]))
    history = tuple(Message(role, tuple(parts)) for role, parts in merged[:-1])
    return history, tuple(merged[-1][1])


# ---- collecting a whole answer (non-streaming responses) ----


@dataclass
class Block:
    kind: str
    text: list[str] = field(default_factory=list)
    signature: str = ""
    id: str = ""
    name: str = ""
    data: str = ""

    @property
    def joined(self) -> str:
        return "".join(self.text)

    def tool_input(self) -> dict[str, Any]:
        raw = self.joined.strip()
        if not raw:
            return {}
        try:
            value = json.loads(raw)
        except ValueError:
            return {"_raw": raw}
        return value if isinstance(value, dict) else {"_value": value}


class Collector:
    """Accumulates one turn's events into whole blocks (non-streaming answers), with the
    same stop-sequence rules as a stream (StreamedText)."""

    def __init__(self, stops: tuple[str, ...] = ()) -> None:
        self.blocks: dict[int, Block] = {}
        self.stop_reason: str | None = None
        self.usage = Usage()
        self.session_id = ""
        self._text = StreamedText(stops)
        self._last_text: int | None = None  # where released text belongs

    @property
    def stop_sequence(self) -> str | None:
        return self._text.stop_sequence

    def feed(self, event: CliEvent) -> None:
        shown = self._text.feed(event)
        if shown and self._last_text in self.blocks:
            self.blocks[self._last_text].text.append(shown)
        if self._text.ended(event):
            return
        if isinstance(event, BlockStarted):
            self.blocks[event.index] = Block(
                event.kind, id=event.id, name=event.name, data=event.data
            )
            if event.kind == "text":
                self._last_text = event.index
        elif isinstance(event, ThinkingDelta | ToolInputDelta):
            block = self.blocks.get(event.index)
            if block is not None:
                block.text.append(
                    event.thinking if isinstance(event, ThinkingDelta) else event.partial_json
                )
        elif isinstance(event, SignatureDelta):
            block = self.blocks.get(event.index)
            if block is not None:
                block.signature += event.signature
        elif isinstance(event, TurnCompleted):
            self.usage = event.usage
            self.session_id = event.session_id
            self.stop_reason = self._text.final_stop_reason(event)

    def ordered(self) -> list[Block]:
        return [self.blocks[i] for i in sorted(self.blocks)]


class StreamedText:
    """Stop sequences applied to a stream: which text of each event may be shown now."""

    def __init__(self, stops: tuple[str, ...]) -> None:
        self._scanner = StopScanner(stops)
        self._index: int | None = None
        self.stop_reason: str | None = None

    @property
    def stop_sequence(self) -> str | None:
        return self._scanner.matched

    def ended(self, event: CliEvent) -> bool:
        """True once a stop sequence matched: later blocks are not part of the answer."""
        return self._scanner.matched is not None and not isinstance(
            event, TurnCompleted | BlockStopped
        )

    def feed(self, event: CliEvent) -> str:
        """Text to show for this event ('' for none); tails are released at block end."""
        if isinstance(event, TextDelta):
            self._index = event.index
            return self._scanner.feed(event.text)
        if isinstance(event, BlockStopped) and event.index == self._index:
            return self._scanner.flush()
        if isinstance(event, MessageDelta):
            self.stop_reason = event.stop_reason or self.stop_reason
        if isinstance(event, TurnCompleted):
            return self._scanner.flush()
        return ""

    def final_stop_reason(self, event: TurnCompleted) -> str:
        if self._scanner.matched is not None:
            return "stop_sequence"
        return self.stop_reason or event.stop_reason or "end_turn"
