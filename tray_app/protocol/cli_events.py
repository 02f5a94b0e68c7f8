"""Turn one parsed stream-json line from the `claude` CLI into an event (or None)."""

from __future__ import annotations

import json
import logging
from typing import Any

from tray_app.protocol.model import (
    BlockStarted,
    BlockStopped,
    CallAbandoned,
    CliEvent,
    ErrorReported,
    MessageDelta,
    MessageStarted,
    QuotaWindow,
    RateLimitReported,
    SessionStarted,
    SignatureDelta,
    TextDelta,
    ThinkingDelta,
    ToolFinished,
    ToolInputDelta,
    TurnCompleted,
    Usage,
)

log = logging.getLogger(__name__)


def _obj(value: Any) -> dict[str, Any]:
    """A JSON object, or an empty one for anything else: a field of the wrong type
    from a newer (or broken) CLI is treated as absent, never as a crash."""
    return value if isinstance(value, dict) else {}


def _objs(value: Any) -> list[dict[str, Any]]:
    return [v for v in value if isinstance(v, dict)] if isinstance(value, list) else []


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
        return _stream_event(_obj(line.get("event")))
    if kind == "result":
        return [_result(line)]
    if kind == "system" and line.get("subtype") == "init":
        return [SessionStarted(str(line.get("session_id", "")), str(line.get("model", "")))]
    if kind == "rate_limit_event":
        return [_rate_limit(_obj(line.get("rate_limit_info")))]
    if kind == "user" and not line.get("parent_tool_use_id"):
        return _tool_results(_obj(line.get("message")))
    if kind not in _KNOWN_UNUSED:
        log.debug("ignoring CLI line of type %r", kind)
    return []


# Line types this version of the CLI sends that carry nothing a translator needs.
_KNOWN_UNUSED = {
    "assistant",
    "user",
    "system",
    "control_request",
    "control_response",
    "control_cancel_request",
    "keep_alive",
    "tool_progress",
    "auth_status",
}


def _tool_results(message: dict[str, Any]) -> list[CliEvent]:
    """What the CLI's own tools answered (agent mode), one line each."""
    out: list[CliEvent] = []
    for block in _objs(message.get("content")):
        if block.get("type") != "tool_result":
            continue
        content = block.get("content")
        if isinstance(content, list):
            content = " ".join(str(b.get("text", "")) for b in _objs(content))
        text = " ".join(str(content or "").split())
        out.append(
            ToolFinished(
                str(block.get("tool_use_id", "")),
                block.get("is_error") is True,
                text[:_OUTCOME_CHARS],
            )
        )
    return out


# An outcome line is a glimpse of what a tool answered, not its output.
_OUTCOME_CHARS = 160


def _stream_event(event: dict[str, Any]) -> list[CliEvent]:
    etype = event.get("type")
    index = event.get("index", 0)
    index = index if isinstance(index, int) else 0
    if etype == "message_start":
        message = _obj(event.get("message"))
        return [
            MessageStarted(
                message_id=str(message.get("id", "")),
                model=str(message.get("model", "")),
                usage=parse_usage(message.get("usage")),
            )
        ]
    if etype == "content_block_start":
        block = _obj(event.get("content_block"))
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
        delta = _obj(event.get("delta"))
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
        delta = _obj(event.get("delta"))
        out = _obj(event.get("usage")).get("output_tokens", 0)
        return [
            MessageDelta(
                stop_reason=_str_or_none(delta.get("stop_reason")),
                stop_sequence=_str_or_none(delta.get("stop_sequence")),
                output_tokens=out if isinstance(out, int) else 0,
            )
        ]
    return []


def _str_or_none(value: Any) -> str | None:
    return value if isinstance(value, str) else None


def _result(line: dict[str, Any]) -> TurnCompleted:
    status = line.get("api_error_status")
    cost = line.get("total_cost_usd")
    result = line.get("result")
    num_turns = line.get("num_turns")
    return TurnCompleted(
        session_id=_str_or_none(line.get("session_id")) or "",
        is_error=line.get("is_error") is True,
        usage=parse_usage(line.get("usage")),
        cost_usd=float(cost) if isinstance(cost, int | float) else None,
        stop_reason=line.get("stop_reason") if isinstance(line.get("stop_reason"), str) else None,
        result_text=result if isinstance(result, str) else "",
        num_turns=num_turns if isinstance(num_turns, int) else 0,
        api_error_status=status if isinstance(status, int) else None,
        subtype=str(line.get("subtype", "")),
        structured_output=line.get("structured_output"),
    )


def _rate_limit(info: dict[str, Any]) -> RateLimitReported:
    window = info.get("rateLimitType")
    windows = tuple(
        QuotaWindow(str(name), _number(w.get("utilization")), _int(w.get("resetsAt")))
        for name, w in _obj(info.get("unifiedWindows")).items()
        if isinstance(w, dict)
    )
    return RateLimitReported(
        status=str(info.get("status", "")),
        window=window if isinstance(window, str) else None,
        resets_at=_int(info.get("resetsAt")),
        utilization=_number(info.get("utilization")),
        raw=info,
        using_overage=info.get("isUsingOverage") is True,
        windows=windows,
    )


def _int(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value)


class CliStream:
    """Turns the CLI's lines for one turn into a clean, complete event sequence.

    What the raw lines do not guarantee, and translators rely on:
    - block indices restart at 0 for every model call in a turn; here they count up
      across the whole turn;
    - after a cut stream the CLI re-asks without streaming, so deltas stop short and
      only the `assistant` line has the whole answer. A retry that continues what was
      streamed is emitted as the missing tail; one that does not is announced by
      CallAbandoned (what was streamed of the cut call is no part of the answer) and
      emitted whole;
    - when a call stops for max_tokens the CLI asks the model to resume on its own.
      The client's limit was hit, so nothing after that stop is passed on.
    """

    def __init__(self) -> None:
        self._next_index = 0
        self._map: dict[int, int] = {}  # upstream index -> turn index, current message
        self._open: dict[int, tuple[str, list[str]]] = {}  # turn index -> (kind, text so far)
        self._streamed_ids: set[str] = set()
        self._limit_hit = False
        # The streamed message in progress: its blocks (turn index, kind, text so far),
        # and whether its message_delta arrived (a cut stream never sends one).
        self._blocks: list[tuple[int, str, list[str]]] = []
        self._finished = True

    def feed(self, line: dict[str, Any]) -> list[CliEvent]:
        if line.get("type") == "assistant" and not line.get("parent_tool_use_id"):
            message = _obj(line.get("message"))
            if message.get("model") == "<synthetic>":
                # A placeholder for a failed call; the result line follows with the details.
                texts = [str(b.get("text", "")) for b in _objs(message.get("content"))]
                return [ErrorReported(str(line.get("error") or ""), "".join(texts))]
            return [] if self._limit_hit or not message else self._reconcile(message)
        out: list[CliEvent] = []
        for event in parse_line(line):
            if self._limit_hit and not isinstance(event, TurnCompleted | RateLimitReported):
                continue
            out.extend(self._renumber(event))
            if isinstance(event, MessageDelta) and event.stop_reason == "max_tokens":
                self._limit_hit = True
        return out

    def _renumber(self, event: CliEvent) -> list[CliEvent]:
        if isinstance(event, MessageStarted):
            self._map = {}
            self._blocks = []
            self._finished = False
            self._streamed_ids.add(event.message_id)
            return [event]
        if isinstance(event, MessageDelta):
            self._finished = True
            return [event]
        if isinstance(event, BlockStarted):
            turn_index = self._new_index()
            self._map[event.index] = turn_index
            self._open[turn_index] = (event.kind, [])
            self._blocks.append((turn_index, event.kind, self._open[turn_index][1]))
            return [BlockStarted(turn_index, event.kind, event.id, event.name, event.data)]
        if isinstance(
            event, TextDelta | ThinkingDelta | SignatureDelta | ToolInputDelta | BlockStopped
        ):
            mapped = self._map.get(event.index)
            if mapped is None or mapped not in self._open:
                return []
            if isinstance(event, BlockStopped):
                del self._open[mapped]
                return [BlockStopped(mapped)]
            self._open[mapped][1].append(_piece(event))
            return [with_index(event, mapped)]
        return [event]

    def _new_index(self) -> int:
        self._next_index += 1
        return self._next_index - 1

    def _reconcile(self, message: dict[str, Any]) -> list[CliEvent]:
        blocks = _objs(message.get("content"))
        message_id = str(message.get("id", ""))
        if message_id in self._streamed_ids:
            return self._fill_gaps(blocks)
        # A message that was never streamed: a retry replacing a cut call, or an
        # answer that arrived whole. Blocks of a cut call it continues are completed;
        # everything else it holds is emitted whole.
        self._streamed_ids.add(message_id)
        out: list[CliEvent] = []
        cut = [] if self._finished else self._blocks
        self._blocks, self._finished = [], True
        if not _continues([(kind, pieces) for _, kind, pieces in cut], blocks):
            out.append(CallAbandoned())
            for turn_index, _, _ in cut:
                if self._open.pop(turn_index, None) is not None:
                    out.append(BlockStopped(turn_index))
            cut = []
        rest_blocks = list(blocks)
        for turn_index, kind, pieces in cut:
            # Each cut block is continued by the retry's next block (_continues).
            tail = (_block_text(rest_blocks.pop(0)) or "")[len("".join(pieces)) :]
            is_open = turn_index in self._open
            if tail and is_open:
                out.append(_text_event(kind, turn_index, tail))
            elif tail:
                index = self._new_index()
                out += [
                    BlockStarted(index, "text" if kind == "text" else "thinking"),
                    _text_event(kind, index, tail),
                    BlockStopped(index),
                ]
            if is_open:
                del self._open[turn_index]
                out.append(BlockStopped(turn_index))
        if rest_blocks:
            usage = parse_usage(message.get("usage"))
            out.append(MessageStarted(message_id, str(message.get("model", "")), usage))
            for block in rest_blocks:
                out.extend(self._whole_block(block))
        return out

    def _fill_gaps(self, blocks: list[dict[str, Any]]) -> list[CliEvent]:
        """Deltas the stream lost for a message it did stream (the block's final text
        is longer than what arrived)."""
        out: list[CliEvent] = []
        for turn_index, (kind, pieces) in self._open.items():
            final = _last_of_kind(blocks, kind)
            full = _block_text(final) if final is not None else None
            so_far = "".join(pieces)
            if full is not None and full.startswith(so_far) and len(full) > len(so_far):
                out.append(_text_event(kind, turn_index, full[len(so_far) :]))
                pieces.append(full[len(so_far) :])
        return out

    def _whole_block(self, block: dict[str, Any]) -> list[CliEvent]:
        btype = block.get("type")
        if btype not in ("text", "thinking", "tool_use"):
            return []
        index = self._new_index()
        if btype == "text":
            body: list[CliEvent] = [
                BlockStarted(index, "text"),
                TextDelta(index, str(block.get("text", ""))),
            ]
        elif btype == "thinking":
            body = [
                BlockStarted(index, "thinking"),
                ThinkingDelta(index, str(block.get("thinking", ""))),
                SignatureDelta(index, str(block.get("signature", ""))),
            ]
        else:
            body = [
                BlockStarted(
                    index, "tool_use", id=str(block.get("id", "")), name=str(block.get("name", ""))
                ),
                ToolInputDelta(index, json.dumps(block.get("input", {}))),
            ]
        return [*body, BlockStopped(index)]


def _continues(streamed: list[tuple[str, list[str]]], blocks: list[dict[str, Any]]) -> bool:
    """Whether a retry's blocks continue what was streamed of a cut call, block by
    block; a tool call (or anything but text and thinking) never does."""
    rest = list(blocks)
    for kind, pieces in streamed:
        first = rest.pop(0) if rest and rest[0].get("type") == kind else {}
        full = _block_text(first) if kind in ("text", "thinking") else None
        if full is None or not full.startswith("".join(pieces)):
            return False
    return True


def _text_event(kind: str, index: int, text: str) -> CliEvent:
    return TextDelta(index, text) if kind == "text" else ThinkingDelta(index, text)


def _piece(event: TextDelta | ThinkingDelta | SignatureDelta | ToolInputDelta) -> str:
    if isinstance(event, TextDelta):
        return event.text
    if isinstance(event, ThinkingDelta):
        return event.thinking
    if isinstance(event, ToolInputDelta):
        return event.partial_json
    return ""


def with_index(event: CliEvent, index: int) -> CliEvent:
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
