"""Anthropic Messages: request body -> Turn, CLI events -> SSE events or a message body."""

from __future__ import annotations

import json
from typing import Any

from tray_app.errors import InvalidRequest
from tray_app.protocol.common import (
    Collector,
    StreamedText,
    add_tool,
    checked_tool_choice,
    field_of,
    ignored_tool,
    image_from_data_url,
    image_part,
    output_schema,
    positive_int,
    session_fields,
    split_conversation,
    tool_name,
    tool_schema,
)
from tray_app.protocol.model import (
    BlockStarted,
    BlockStopped,
    CliEvent,
    Effort,
    ImagePart,
    MessageStarted,
    Part,
    Role,
    SignatureDelta,
    TextPart,
    ThinkingDelta,
    ThinkingPart,
    ToolChoice,
    ToolChoiceMode,
    ToolInputDelta,
    ToolResultPart,
    ToolSpec,
    ToolUsePart,
    Turn,
    TurnCompleted,
    Usage,
)

# Accepted so clients do not break, but the Claude Code runtime has no knob for them.
IGNORED_FIELDS = (
    "temperature",
    "top_p",
    "top_k",
    "service_tier",
    "container",
    "mcp_servers",
    "context_management",
)

EFFORTS: tuple[Effort, ...] = ("low", "medium", "high", "xhigh", "max")
TOOL_CHOICES: dict[str, ToolChoiceMode] = {
    "auto": "auto",
    "any": "required",
    "tool": "tool",
    "none": "none",
}
# Server tools run on Anthropic's side (web search, code execution) or are Anthropic-
# defined client tools (bash, text editor, computer): only custom tools can be offered.
_CUSTOM_TOOL_TYPES = (None, "custom")
MIN_THINKING_BUDGET = 1024


def parse_request(body: Any) -> Turn:
    """A `POST /v1/messages` body."""
    return _parse(body, counting=False)


def parse_count_tokens(body: Any) -> Turn:
    """A `POST /v1/messages/count_tokens` body: a messages body without `max_tokens` or
    `stream` (ignored when sent), which may end on an assistant message."""
    return _parse(body, counting=True)


def count_tokens_body(n: int) -> dict[str, Any]:
    return {"input_tokens": n}


def _parse(body: Any, *, counting: bool) -> Turn:
    if not isinstance(body, dict):
        raise InvalidRequest("The request body must be a JSON object.")
    model = field_of(body, "model", str, required=True)
    raw_messages = field_of(body, "messages", list, required=True)
    if not raw_messages:
        raise InvalidRequest("'messages' must contain at least one message.", param="messages")
    max_tokens = None if counting else positive_int(body, "max_tokens")
    stream = False if counting else field_of(body, "stream", bool) or False
    stops = tuple(field_of(body, "stop_sequences", list) or ())
    if not all(isinstance(s, str) for s in stops):
        raise InvalidRequest(
            "'stop_sequences' must be an array of strings.", param="stop_sequences"
        )
    metadata = field_of(body, "metadata", dict) or {}
    user_id = metadata.get("user_id")

    system_value = field_of(body, "system", (str, list))
    if isinstance(system_value, list):
        system_texts = [p.text for p in _blocks(system_value, "system") if isinstance(p, TextPart)]
        system = "\n\n".join(t for t in system_texts if t) or None
    else:
        system = system_value or None

    tools, ignored_tools = _tools(body)
    tool_choice, parallel_tool_calls = _tool_choice(body, tools)
    thinking_budget = _thinking(body)
    effort, (schema, schema_field), ignored_output = _output_config(body)
    session_id, ephemeral = session_fields(body)

    turns: list[tuple[Role, list[Part]]] = []
    for i, raw in enumerate(raw_messages):
        where = f"messages[{i}]"
        if not isinstance(raw, dict):
            raise InvalidRequest(f"'{where}' must be an object.", param=where)
        role = field_of(raw, "role", str, required=True, where=f"{where}.")
        if role not in ("user", "assistant"):
            raise InvalidRequest(
                f"'{where}.role' must be 'user' or 'assistant', not '{role}'.",
                param=f"{where}.role",
            )
        content = raw.get("content")
        if isinstance(content, str):
            parts: list[Part] = [TextPart(content)]
        elif isinstance(content, list):
            parts = _blocks(content, where)
        else:
            raise InvalidRequest(
                f"'{where}.content' must be a string or an array of blocks.",
                param=f"{where}.content",
            )
        turns.append(("user" if role == "user" else "assistant", parts))
    history, prompt = split_conversation(turns, allow_assistant_last=counting)
    ignored = [k for k in IGNORED_FIELDS if body.get(k) is not None]
    return Turn(
        api="anthropic",
        model=model,
        system=system,
        history=history,
        prompt=prompt,
        stream=stream,
        max_tokens=max_tokens,
        stop=stops,
        ignored=(*ignored, *ignored_output, *ignored_tools),
        user=user_id if isinstance(user_id, str) else None,
        tools=tuple(tools),
        tool_choice=tool_choice,
        parallel_tool_calls=parallel_tool_calls,
        output_schema=schema,
        output_schema_field=schema_field,
        effort=effort,
        thinking_budget=thinking_budget,
        session_id=session_id,
        ephemeral=ephemeral,
    )


def _tools(body: dict[str, Any]) -> tuple[list[ToolSpec], list[str]]:
    """Custom tools; server and Anthropic-defined tools are named for the ignored list.

    Keys the runtime has no use for (cache_control, eager_input_streaming, strict,
    input_examples, defer_loading, ...) are tolerated on custom tools.
    """
    tools: list[ToolSpec] = []
    ignored: list[str] = []
    for i, raw in enumerate(field_of(body, "tools", list) or ()):
        where = f"tools[{i}]"
        if not isinstance(raw, dict):
            raise InvalidRequest(f"'{where}' must be an object.", param=where)
        kind = raw.get("type")
        if kind not in _CUSTOM_TOOL_TYPES:
            entry = ignored_tool(kind)
            if entry not in ignored:
                ignored.append(entry)
            continue
        name = tool_name(raw.get("name"), f"{where}.name")
        description = field_of(raw, "description", str, where=f"{where}.") or ""
        field_of(raw, "input_schema", dict, required=True, where=f"{where}.")
        schema = tool_schema(raw["input_schema"], f"{where}.input_schema")
        add_tool(tools, ToolSpec(name, description, schema), f"{where}.name")
    return tools, ignored


def _tool_choice(
    body: dict[str, Any], tools: list[ToolSpec]
) -> tuple[ToolChoice | None, bool | None]:
    """(tool choice, parallel tool calls) from `tool_choice`."""
    raw = field_of(body, "tool_choice", dict)
    if raw is None:
        return None, None
    kind = raw.get("type")
    mode = TOOL_CHOICES.get(kind) if isinstance(kind, str) else None
    if mode is None:
        raise InvalidRequest(
            f"'tool_choice.type' must be auto, any, tool or none, not {kind!r}.",
            param="tool_choice.type",
        )
    name = field_of(raw, "name", str, required=mode == "tool", where="tool_choice.")
    choice = checked_tool_choice(
        ToolChoice(mode, name if mode == "tool" else None),
        tools,
        param="tool_choice",
        name_param="tool_choice.name",
    )
    disable = field_of(raw, "disable_parallel_tool_use", bool, where="tool_choice.")
    return choice, None if disable is None else not disable


def _thinking(body: dict[str, Any]) -> int | None:
    """The thinking budget: tokens when enabled, 0 when disabled, None for adaptive."""
    raw = field_of(body, "thinking", dict)
    if raw is None:
        return None
    kind = raw.get("type")
    if kind == "adaptive":
        return None
    if kind == "disabled":
        return 0
    if kind != "enabled":
        raise InvalidRequest(
            f"'thinking.type' must be enabled, disabled or adaptive, not {kind!r}.",
            param="thinking.type",
        )
    budget = field_of(raw, "budget_tokens", int, required=True, where="thinking.")
    if budget < MIN_THINKING_BUDGET:
        raise InvalidRequest(
            f"'thinking.budget_tokens' must be at least {MIN_THINKING_BUDGET}, not {budget}.",
            param="thinking.budget_tokens",
        )
    return budget  # type: ignore[no-any-return]


def _output_config(
    body: dict[str, Any],
) -> tuple[Effort | None, tuple[dict[str, Any] | None, str | None], list[str]]:
    """(effort, (output schema, its field), ignored keys) from `output_config` and
    `output_format`."""
    config = field_of(body, "output_config", dict) or {}
    effort = field_of(config, "effort", str, where="output_config.")
    if effort is not None and effort not in EFFORTS:
        raise InvalidRequest(
            f"'output_config.effort' must be one of {', '.join(EFFORTS)}; not '{effort}'.",
            param="output_config.effort",
        )
    schema, schema_field = None, None
    for value, where in (
        (config.get("format"), "output_config.format"),
        (body.get("output_format"), "output_format"),
    ):
        if value is not None and schema is None:
            schema, schema_field = _format(value, where), f"{where}.schema"
    ignored = [
        f"output_config.{key}"
        for key, value in config.items()
        if key not in ("effort", "format") and value is not None
    ]
    return effort, (schema, schema_field), ignored


def _format(value: Any, where: str) -> dict[str, Any]:
    if not isinstance(value, dict) or value.get("type") != "json_schema":
        raise InvalidRequest(
            f'\'{where}\' must be {{"type": "json_schema", "schema": {{...}}}}.',
            param=f"{where}.type",
        )
    return output_schema(value.get("schema"), f"{where}.schema")


def _blocks(content: list[Any], where: str) -> list[Part]:
    parts: list[Part] = []
    for j, block in enumerate(content):
        at = f"{where}.content[{j}]" if where != "system" else f"system[{j}]"
        if not isinstance(block, dict):
            raise InvalidRequest(f"'{at}' must be an object.", param=at)
        kind = block.get("type")
        if kind == "text":
            parts.append(TextPart(field_of(block, "text", str, required=True, where=f"{at}.")))
        elif kind == "image":
            parts.append(_image(block, at))
        elif kind == "tool_use":
            tool_input = field_of(block, "input", dict, where=f"{at}.") or {}
            parts.append(
                ToolUsePart(str(block.get("id", "")), str(block.get("name", "")), tool_input)
            )
        elif kind == "tool_result":
            raw = block.get("content")
            inner: list[TextPart | ImagePart] = []
            if isinstance(raw, str):
                inner.append(TextPart(raw))
            elif isinstance(raw, list):
                inner.extend(p for p in _blocks(raw, at) if isinstance(p, TextPart | ImagePart))
            parts.append(
                ToolResultPart(
                    str(block.get("tool_use_id", "")), tuple(inner), bool(block.get("is_error"))
                )
            )
        elif kind == "thinking":
            parts.append(
                ThinkingPart(str(block.get("thinking", "")), str(block.get("signature", "")))
            )
        elif kind == "redacted_thinking":
            continue  # opaque to us, and meaningless to a new session
        else:
            raise InvalidRequest(
                f"Content block type '{kind}' is not supported here.", param=f"{at}.type"
            )
    return parts


def _image(block: dict[str, Any], at: str) -> ImagePart:
    source = field_of(block, "source", dict, required=True, where=f"{at}.")
    kind = source.get("type")
    if kind == "base64":
        media_type = field_of(source, "media_type", str, required=True, where=f"{at}.source.")
        data = field_of(source, "data", str, required=True, where=f"{at}.source.")
        return image_part(media_type, data, f"{at}.source")
    if kind == "url":
        return image_from_data_url(str(source.get("url", "")), f"{at}.source.url")
    raise InvalidRequest(
        f"Image source type '{kind}' is not supported; use base64.", param=f"{at}.source.type"
    )


# ---- answers ----


def usage_body(usage: Usage, *, output_tokens: int | None = None) -> dict[str, Any]:
    return {
        "input_tokens": usage.input_tokens,
        "output_tokens": usage.output_tokens if output_tokens is None else output_tokens,
        "cache_read_input_tokens": usage.cache_read_tokens,
        "cache_creation_input_tokens": usage.cache_creation_tokens,
    }


def _content_block(
    kind: str,
    *,
    text: str = "",
    id: str = "",
    name: str = "",
    tool_input: dict[str, Any] | None = None,
    signature: str = "",
    data: str = "",
) -> dict[str, Any]:
    if kind == "text":
        return {"type": "text", "text": text}
    if kind == "thinking":
        return {"type": "thinking", "thinking": text, "signature": signature}
    if kind == "redacted_thinking":
        return {"type": "redacted_thinking", "data": data}
    return {"type": "tool_use", "id": id, "name": name, "input": tool_input or {}}


def message_body(collector: Collector, *, message_id: str, model: str) -> dict[str, Any]:
    """The whole `message` object for a non-streaming request."""
    content = [
        _content_block(
            b.kind,
            text=b.joined,
            id=b.id,
            name=b.name,
            tool_input=b.tool_input(),
            signature=b.signature,
            data=b.data,
        )
        for b in collector.ordered()
    ]
    return {
        "id": message_id,
        "type": "message",
        "role": "assistant",
        "model": model,
        "content": content,
        "stop_reason": collector.stop_reason or "end_turn",
        "stop_sequence": collector.stop_sequence,
        "usage": usage_body(collector.usage),
    }


def sse(event: str, data: dict[str, Any]) -> bytes:
    return f"event: {event}\ndata: {json.dumps(data, separators=(',', ':'))}\n\n".encode()


PING = sse("ping", {"type": "ping"})


class MessagesStream:
    """CLI events -> Anthropic SSE events (message_start ... message_stop)."""

    def __init__(self, *, message_id: str, model: str, stops: tuple[str, ...] = ()) -> None:
        self._id = message_id
        self._model = model
        self._text = StreamedText(stops)
        self._started = False
        self._open: set[int] = set()
        self._input_usage = Usage()
        self._last_text = -1  # index of the latest text block, where held-back text belongs

    def start(self, usage: Usage | None = None) -> list[bytes]:
        if self._started:
            return []
        self._started = True
        self._input_usage = usage or Usage()
        message: dict[str, Any] = {
            "id": self._id,
            "type": "message",
            "role": "assistant",
            "model": self._model,
            "content": [],
            "stop_reason": None,
            "stop_sequence": None,
            "usage": usage_body(self._input_usage, output_tokens=1),
        }
        return [sse("message_start", {"type": "message_start", "message": message}), PING]

    def feed(self, event: CliEvent) -> list[bytes]:
        shown = self._text.feed(event)
        out: list[bytes] = []
        if shown and self._last_text in self._open:
            out.append(self._delta(self._last_text, {"type": "text_delta", "text": shown}))
        if self._text.ended(event):
            return out
        if isinstance(event, MessageStarted):
            out += self.start(event.usage)
        elif isinstance(event, BlockStarted):
            out += self.start()
            self._open.add(event.index)
            if event.kind == "text":
                self._last_text = event.index
            block = _content_block(event.kind, id=event.id, name=event.name, data=event.data)
            out.append(
                sse(
                    "content_block_start",
                    {"type": "content_block_start", "index": event.index, "content_block": block},
                )
            )
        elif isinstance(event, ThinkingDelta) and event.index in self._open:
            out.append(
                self._delta(event.index, {"type": "thinking_delta", "thinking": event.thinking})
            )
        elif isinstance(event, SignatureDelta) and event.index in self._open:
            out.append(
                self._delta(event.index, {"type": "signature_delta", "signature": event.signature})
            )
        elif isinstance(event, ToolInputDelta) and event.index in self._open:
            out.append(
                self._delta(
                    event.index, {"type": "input_json_delta", "partial_json": event.partial_json}
                )
            )
        elif isinstance(event, BlockStopped) and event.index in self._open:
            self._open.discard(event.index)
            out.append(
                sse("content_block_stop", {"type": "content_block_stop", "index": event.index})
            )
        elif isinstance(event, TurnCompleted):
            out = self.start() + out
            for index in sorted(self._open):
                out.append(
                    sse("content_block_stop", {"type": "content_block_stop", "index": index})
                )
            self._open.clear()
            out.append(
                sse(
                    "message_delta",
                    {
                        "type": "message_delta",
                        "delta": {
                            "stop_reason": self._text.final_stop_reason(event),
                            "stop_sequence": self._text.stop_sequence,
                        },
                        "usage": usage_body(event.usage),
                    },
                )
            )
            out.append(sse("message_stop", {"type": "message_stop"}))
        return out

    def _delta(self, index: int, delta: dict[str, Any]) -> bytes:
        return sse(
            "content_block_delta", {"type": "content_block_delta", "index": index, "delta": delta}
        )

    def error(self, body: dict[str, Any]) -> list[bytes]:
        """The `error` event that ends a stream which failed after it began."""
        return [sse("error", body)]
