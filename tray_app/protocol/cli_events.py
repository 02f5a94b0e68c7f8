"""Turn one parsed stream-json line from the `claude` CLI into an event (or None)."""

from __future__ import annotations

import json
import logging
from typing import Any

from tray_app.protocol.model import (
    BlockStarted,
    BlockStopped,
    CliEvent,
    ErrorReported,
    MessageDelta,
    MessageStarted,
    RateLimitReported,
    SessionStarted,
    SignatureDelta,
    TextDelta,
    ThinkingDelta,
    ToolInputDelta,
    TurnCompleted,
    Usage,
)

log = logging.getLogger(__name__)


def parse_usage(raw: Any) -> Usage:
    if not isinstance(raw, dict):
        return Usage()

    def num(key: str) -> int:
        value = raw.get(key)
        return value if isinstance(value, int) and not isinstance(value, bool) else 0

    return Usage(
        input_tokens=num("input_tokens"),
        output_tokens=num("output_tokens"),
        cache_read_tokens=num("cache_read_input_tokens"),
        cache_creation_tokens=num("cache_creation_input_tokens"),
    )


def parse_line(line: dict[str, Any]) -> list[CliEvent]:
    """Events carried by one stream-json object; unknown shapes yield nothing.

    Only `stream_event` lines are used for content: the `assistant` line repeats what
    the stream already delivered. Lines from subagents (`parent_tool_use_id` set)
    belong to a nested conversation and are not part of the answer.
    """
    kind = line.get("type")
    if kind == "stream_event":
        if line.get("parent_tool_use_id"):
            return []
        event = line.get("event")
        return _stream_event(event) if isinstance(event, dict) else []
    if kind == "result":
        return [_result(line)]
    if kind == "system" and line.get("subtype") == "init":
        return [SessionStarted(str(line.get("session_id", "")), str(line.get("model", "")))]
    if kind == "rate_limit_event":
        info = line.get("rate_limit_info")
        return [_rate_limit(info if isinstance(info, dict) else {})]
    return []


def _stream_event(event: dict[str, Any]) -> list[CliEvent]:
    etype = event.get("type")
    index = event.get("index", 0)
    index = index if isinstance(index, int) else 0
    if etype == "message_start":
        message = event.get("message") or {}
        return [
            MessageStarted(
                message_id=str(message.get("id", "")),
                model=str(message.get("model", "")),
                usage=parse_usage(message.get("usage")),
            )
        ]
    if etype == "content_block_start":
        block = event.get("content_block") or {}
        btype = block.get("type")
        if btype == "text":
            return [BlockStarted(index, "text")]
        if btype == "thinking":
            return [BlockStarted(index, "thinking")]
        if btype == "redacted_thinking":
            return [BlockStarted(index, "redacted_thinking", data=str(block.get("data", "")))]
        if btype == "tool_use":
            return [
                BlockStarted(
                    index, "tool_use", id=str(block.get("id", "")), name=str(block.get("name", ""))
                )
            ]
        log.debug("ignoring content block of type %r", btype)
        return []
    if etype == "content_block_delta":
        delta = event.get("delta") or {}
        dtype = delta.get("type")
        if dtype == "text_delta":
            return [TextDelta(index, str(delta.get("text", "")))]
        if dtype == "thinking_delta":
            return [ThinkingDelta(index, str(delta.get("thinking", "")))]
        if dtype == "signature_delta":
            return [SignatureDelta(index, str(delta.get("signature", "")))]
        if dtype == "input_json_delta":
            return [ToolInputDelta(index, str(delta.get("partial_json", "")))]
        return []
    if etype == "content_block_stop":
        return [BlockStopped(index)]
    if etype == "message_delta":
        delta = event.get("delta") or {}
        usage = event.get("usage") or {}
        out = usage.get("output_tokens", 0) if isinstance(usage, dict) else 0
        return [
            MessageDelta(
                stop_reason=delta.get("stop_reason"),
                stop_sequence=delta.get("stop_sequence"),
                output_tokens=out if isinstance(out, int) else 0,
            )
        ]
    return []


def _result(line: dict[str, Any]) -> TurnCompleted:
    status = line.get("api_error_status")
    cost = line.get("total_cost_usd")
    result = line.get("result")
    num_turns = line.get("num_turns")
    return TurnCompleted(
        session_id=str(line.get("session_id", "")),
        is_error=bool(line.get("is_error")),
        usage=parse_usage(line.get("usage")),
        cost_usd=float(cost) if isinstance(cost, int | float) else None,
        stop_reason=line.get("stop_reason") if isinstance(line.get("stop_reason"), str) else None,
        result_text=result if isinstance(result, str) else "",
        num_turns=num_turns if isinstance(num_turns, int) else 0,
        api_error_status=status if isinstance(status, int) else None,
        subtype=str(line.get("subtype", "")),
    )


def _rate_limit(info: dict[str, Any]) -> RateLimitReported:
    resets = info.get("resetsAt")
    utilization = info.get("utilization")
    window = info.get("rateLimitType")
    return RateLimitReported(
        status=str(info.get("status", "")),
        window=window if isinstance(window, str) else None,
        resets_at=resets if isinstance(resets, int) else None,
        utilization=float(utilization) if isinstance(utilization, int | float) else None,
        raw=info,
    )


class CliStream:
    """Turns the CLI's lines for one turn into a clean, complete event sequence.

    Two things the raw lines do not guarantee, and translators rely on:
    - block indices restart at 0 for every model call in a turn; here they count up
      across the whole turn;
    - after a cut stream the CLI re-asks without streaming, so deltas stop short and
      only the `assistant` line has the whole text. The missing tail is emitted as a
      delta, and blocks of a message that was never streamed are emitted whole.
    """

    def __init__(self) -> None:
        self._next_index = 0
        self._map: dict[int, int] = {}  # upstream index -> turn index, current message
        self._open: dict[int, tuple[str, list[str]]] = {}  # turn index -> (kind, text so far)
        self._streamed_ids: set[str] = set()

    def feed(self, line: dict[str, Any]) -> list[CliEvent]:
        if line.get("type") == "assistant" and not line.get("parent_tool_use_id"):
            message = line.get("message")
            if not isinstance(message, dict):
                return []
            if message.get("model") == "<synthetic>":
                # A placeholder for a failed call; the result line follows with the details.
                texts = [
                    b.get("text", "") for b in message.get("content") or [] if isinstance(b, dict)
                ]
                return [ErrorReported(str(line.get("error") or ""), "".join(map(str, texts)))]
            return self._reconcile(message)
        out: list[CliEvent] = []
        for event in parse_line(line):
            out.extend(self._renumber(event))
        return out

    def _renumber(self, event: CliEvent) -> list[CliEvent]:
        if isinstance(event, MessageStarted):
            self._map = {}
            self._streamed_ids.add(event.message_id)
            return [event]
        if isinstance(event, BlockStarted):
            turn_index = self._next_index
            self._next_index += 1
            self._map[event.index] = turn_index
            self._open[turn_index] = (event.kind, [])
            return [BlockStarted(turn_index, event.kind, event.id, event.name, event.data)]
        if isinstance(
            event, TextDelta | ThinkingDelta | SignatureDelta | ToolInputDelta | BlockStopped
        ):
            mapped = self._map.get(event.index)
            if mapped is None or mapped not in self._open:
                return []
            turn_index = mapped
            if isinstance(event, BlockStopped):
                del self._open[turn_index]
                return [BlockStopped(turn_index)]
            piece = (
                event.text
                if isinstance(event, TextDelta)
                else event.thinking
                if isinstance(event, ThinkingDelta)
                else event.partial_json
                if isinstance(event, ToolInputDelta)
                else ""
            )
            self._open[turn_index][1].append(piece)
            return [_with_index(event, turn_index)]
        return [event]

    def _reconcile(self, message: dict[str, Any]) -> list[CliEvent]:
        blocks = [b for b in message.get("content") or [] if isinstance(b, dict)]
        out: list[CliEvent] = []
        # A block cut short: its text must be a prefix of the final block of that kind.
        for turn_index, (kind, pieces) in list(self._open.items()):
            final = _last_of_kind(blocks, kind)
            if final is None:
                continue
            so_far = "".join(pieces)
            full = _block_text(final)
            if full is not None and full.startswith(so_far) and len(full) > len(so_far):
                rest = full[len(so_far) :]
                out.append(
                    TextDelta(turn_index, rest)
                    if kind == "text"
                    else ThinkingDelta(turn_index, rest)
                )
                pieces.append(rest)
            if str(message.get("id", "")) not in self._streamed_ids:
                del self._open[turn_index]
                out.append(BlockStopped(turn_index))
        if str(message.get("id", "")) in self._streamed_ids or out:
            return out
        # A message that was never streamed at all: emit it whole.
        self._streamed_ids.add(str(message.get("id", "")))
        out.append(
            MessageStarted(
                str(message.get("id", "")),
                str(message.get("model", "")),
                parse_usage(message.get("usage")),
            )
        )
        for block in blocks:
            turn_index = self._next_index
            self._next_index += 1
            btype = block.get("type")
            if btype == "text":
                out += [
                    BlockStarted(turn_index, "text"),
                    TextDelta(turn_index, str(block.get("text", ""))),
                ]
            elif btype == "thinking":
                out += [
                    BlockStarted(turn_index, "thinking"),
                    ThinkingDelta(turn_index, str(block.get("thinking", ""))),
                    SignatureDelta(turn_index, str(block.get("signature", ""))),
                ]
            elif btype == "tool_use":
                out += [
                    BlockStarted(
                        turn_index,
                        "tool_use",
                        id=str(block.get("id", "")),
                        name=str(block.get("name", "")),
                    ),
                    ToolInputDelta(turn_index, json.dumps(block.get("input", {}))),
                ]
            else:
                continue
            out.append(BlockStopped(turn_index))
        return out


def _with_index(event: CliEvent, index: int) -> CliEvent:
    if isinstance(event, TextDelta):
        return TextDelta(index, event.text)
    if isinstance(event, ThinkingDelta):
        return ThinkingDelta(index, event.thinking)
    if isinstance(event, SignatureDelta):
        return SignatureDelta(index, event.signature)
    if isinstance(event, ToolInputDelta):
        return ToolInputDelta(index, event.partial_json)
    return event


def _last_of_kind(blocks: list[dict[str, Any]], kind: str) -> dict[str, Any] | None:
    return next((b for b in reversed(blocks) if b.get("type") == kind), None)


def _block_text(block: dict[str, Any]) -> str | None:
    value = block.get("text") if block.get("type") == "text" else block.get("thinking")
    return value if isinstance(value, str) else None
