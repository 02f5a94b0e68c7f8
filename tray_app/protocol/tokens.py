"""An estimate of a turn's input tokens, for count_tokens answers (no tokenizer here)."""

from __future__ import annotations

import json
from typing import Any, assert_never

from tray_app.protocol.model import (
    ImagePart,
    Message,
    Part,
    TextPart,
    ThinkingPart,
    ToolResultPart,
    ToolUsePart,
    Turn,
)

# About 4 characters of English or code per token; counted in UTF-8 bytes so text in
# other scripts (a CJK character is 3 bytes and about one token) is not undercounted.
BYTES_PER_TOKEN = 4
# What a typical image of about a megapixel costs ((width * height) / 750, capped).
IMAGE_TOKENS = 1600
# Role markers and separators around each message.
MESSAGE_TOKENS = 4
# The tool-use system prompt the API adds whenever tools are offered.
TOOLS_TOKENS = 346


def estimate_input_tokens(turn: Turn) -> int:
    """An estimate, not a count: the Claude tokenizer is not available offline.

    Text (system prompt, messages, tool inputs and results) counts one token per 4 bytes
    of UTF-8; tool definitions and an output schema count as their JSON text; each
    image counts IMAGE_TOKENS; each message adds MESSAGE_TOKENS, and offering tools adds
    TOOLS_TOKENS. Thinking from earlier turns is left out, as the API leaves it out. The
    figure grows with everything a request adds, and is at least 1.
    """
    messages = turn.history + ((Message("user", turn.prompt),) if turn.prompt else ())
    size = _bytes(turn.system or "")
    images = 0
    for message in messages:
        for part in message.parts:
            part_size, part_images = _part(part)
            size += part_size
            images += part_images
    for tool in turn.tools:
        size += _bytes(tool.name) + _bytes(tool.description) + _json_bytes(tool.input_schema)
    if turn.output_schema is not None:
        size += _json_bytes(turn.output_schema)
    tokens = -(-size // BYTES_PER_TOKEN)  # rounded up
    tokens += images * IMAGE_TOKENS + len(messages) * MESSAGE_TOKENS
    if turn.tools:
        tokens += TOOLS_TOKENS
    return max(tokens, 1)


def _part(part: Part) -> tuple[int, int]:
    """(bytes of text, number of images) in one part."""
    if isinstance(part, TextPart):
        return _bytes(part.text), 0
    if isinstance(part, ImagePart):
        return 0, 1
    if isinstance(part, ToolUsePart):
        return _bytes(part.name) + _json_bytes(part.input), 0
    if isinstance(part, ToolResultPart):
        inner = [_part(p) for p in part.content]
        return sum(s for s, _ in inner), sum(n for _, n in inner)
    if isinstance(part, ThinkingPart):
        return 0, 0
    assert_never(part)


def _bytes(text: str) -> int:
    return len(text.encode("utf-8"))


def _json_bytes(value: Any) -> int:
    return _bytes(json.dumps(value, ensure_ascii=False, separators=(",", ":")))
