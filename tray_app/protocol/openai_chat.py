"""OpenAI Chat Completions: request body -> Turn, CLI events -> chunks or a completion body."""

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
    output_schema,
    positive_int,
    session_fields,
    split_conversation,
    tool_name,
    tool_schema,
)
from tray_app.protocol.model import (
    BlockStarted,
    CliEvent,
    Effort,
    ImagePart,
    MessageStarted,
    Part,
    Role,
    TextPart,
    ThinkingDelta,
    ToolChoice,
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
    "presence_penalty",
    "frequency_penalty",
    "logit_bias",
    "seed",
    "logprobs",
    "top_logprobs",
    "service_tier",
    "store",
    "prediction",
    "modalities",
    "audio",
    "web_search_options",
    "verbosity",
    "prompt_cache_key",
    "safety_identifier",
)

# reasoning_effort -> the CLI's effort; "minimal" has no equivalent, "low" is nearest.
EFFORTS: dict[str, Effort] = {
    "minimal": "low",
    "low": "low",
    "medium": "medium",
    "high": "high",
    "xhigh": "xhigh",
}

FINISH_REASONS = {
    "end_turn": "stop",
    "stop_sequence": "stop",
    "pause_turn": "stop",
    "max_tokens": "length",
    "model_context_window_exceeded": "length",
    "tool_use": "tool_calls",
    "refusal": "content_filter",
}


def parse_request(body: Any) -> Turn:
    if not isinstance(body, dict):
        raise InvalidRequest("The request body must be a JSON object.")
    model = field_of(body, "model", str, required=True)
    raw_messages = field_of(body, "messages", list, required=True)
    if not raw_messages:
        raise InvalidRequest("'messages' must contain at least one message.", param="messages")
    n = field_of(body, "n", int)
    if n is not None and n != 1:
        raise InvalidRequest(
            "Only n=1 is supported: the runtime answers once per request.", param="n"
        )
    stream = field_of(body, "stream", bool) or False
    options = field_of(body, "stream_options", dict) or {}
    include_usage = bool(field_of(options, "include_usage", bool, where="stream_options."))
    max_tokens = positive_int(body, "max_completion_tokens") or positive_int(body, "max_tokens")
    stop_value = field_of(body, "stop", (str, list))
    stops = (stop_value,) if isinstance(stop_value, str) else tuple(stop_value or ())
    if not all(isinstance(s, str) for s in stops):
        raise InvalidRequest("'stop' must be a string or an array of strings.", param="stop")

    tools, ignored_tools = _tools(body)
    tool_choice = _tool_choice(body, tools)
    parallel_tool_calls = field_of(body, "parallel_tool_calls", bool)
    effort, thinking_budget = _reasoning_effort(body)
    schema, schema_field = _response_format(body)
    session_id, ephemeral = session_fields(body)

    system: list[str] = []
    turns: list[tuple[Role, list[Part]]] = []
    legacy_call_id: str | None = None  # the id given to the last legacy function_call
    for i, raw in enumerate(raw_messages):
        where = f"messages[{i}]"
        if not isinstance(raw, dict):
            raise InvalidRequest(f"'{where}' must be an object.", param=where)
        role = field_of(raw, "role", str, required=True, where=f"{where}.")
        if role in ("system", "developer"):
            system.extend(
                p.text for p in _parts(raw.get("content"), where) if isinstance(p, TextPart)
            )
        elif role == "user":
            turns.append(("user", _parts(raw.get("content"), where)))
        elif role == "assistant":
            parts = _parts(raw.get("content"), where, allow_none=True)
            parts.extend(_tool_calls(raw.get("tool_calls"), where))
            legacy = _function_call(raw.get("function_call"), where, i)
            if legacy is not None:
                parts.append(legacy)
                legacy_call_id = legacy.id
            turns.append(("assistant", parts))
        elif role == "tool":
            call_id = field_of(raw, "tool_call_id", str, where=f"{where}.") or str(
                raw.get("name", "")
            )
            turns.append(("user", [_tool_result(call_id, raw.get("content"), where)]))
        elif role == "function":
            # Legacy function results carry no call id: they answer the latest function_call.
            name = field_of(raw, "name", str, where=f"{where}.") or ""
            call_id = legacy_call_id or name
            turns.append(("user", [_tool_result(call_id, raw.get("content"), where)]))
        else:
            raise InvalidRequest(
                f"'{where}.role' must be system, developer, user, assistant or tool, not '{role}'.",
                param=f"{where}.role",
            )
    history, prompt = split_conversation(turns)
    ignored = [k for k in IGNORED_FIELDS if body.get(k) is not None]
    return Turn(
        api="openai",
        model=model,
        system="\n\n".join(s for s in system if s) or None,
        history=history,
        prompt=prompt,
        stream=stream,
        max_tokens=max_tokens,
        stop=stops,
        include_usage=include_usage,
        ignored=(*ignored, *ignored_tools),
        user=body.get("user") if isinstance(body.get("user"), str) else None,
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
    """Function tools from `tools` and the legacy `functions`; other tool types are
    named for the ignored list (custom grammar tools have no counterpart)."""
    tools: list[ToolSpec] = []
    ignored: list[str] = []
    for i, raw in enumerate(field_of(body, "tools", list) or ()):
        where = f"tools[{i}]"
        if not isinstance(raw, dict):
            raise InvalidRequest(f"'{where}' must be an object.", param=where)
        kind = raw.get("type", "function")
        if kind != "function":
            entry = ignored_tool(kind)
            if entry not in ignored:
                ignored.append(entry)
            continue
        function = field_of(raw, "function", dict, required=True, where=f"{where}.")
        _add_function(tools, function, f"{where}.function")
    for i, raw in enumerate(field_of(body, "functions", list) or ()):
        where = f"functions[{i}]"
        if not isinstance(raw, dict):
            raise InvalidRequest(f"'{where}' must be an object.", param=where)
        _add_function(tools, raw, where)
    return tools, ignored


def _add_function(tools: list[ToolSpec], function: dict[str, Any], where: str) -> None:
    name = tool_name(function.get("name"), f"{where}.name")
    description = field_of(function, "description", str, where=f"{where}.") or ""
    field_of(function, "strict", bool, where=f"{where}.")
    schema = tool_schema(function.get("parameters"), f"{where}.parameters")
    add_tool(tools, ToolSpec(name, description, schema), f"{where}.name")


_CHOICE_FORMS = (
    '\'none\', \'auto\', \'required\' or {"type": "function", "function": {"name": ...}}'
)


def _tool_choice(body: dict[str, Any], tools: list[ToolSpec]) -> ToolChoice | None:
    """`tool_choice`, or the legacy `function_call` when `tool_choice` is absent."""
    if body.get("tool_choice") is not None:
        raw = body["tool_choice"]
        if raw in ("none", "auto", "required"):
            choice = ToolChoice(raw)
        elif isinstance(raw, dict) and raw.get("type") == "function":
            function = field_of(raw, "function", dict, required=True, where="tool_choice.")
            name = field_of(function, "name", str, required=True, where="tool_choice.function.")
            choice = ToolChoice("tool", name)
        else:
            raise InvalidRequest(
                f"'tool_choice' must be {_CHOICE_FORMS}; other forms are not supported.",
                param="tool_choice",
            )
        return checked_tool_choice(
            choice, tools, param="tool_choice", name_param="tool_choice.function.name"
        )
    if body.get("function_call") is not None:
        raw = body["function_call"]
        if raw in ("none", "auto"):
            choice = ToolChoice(raw)
        elif isinstance(raw, dict):
            choice = ToolChoice(
                "tool", field_of(raw, "name", str, required=True, where="function_call.")
            )
        else:
            raise InvalidRequest(
                "'function_call' must be 'none', 'auto' or {\"name\": ...}.",
                param="function_call",
            )
        return checked_tool_choice(
            choice, tools, param="function_call", name_param="function_call.name"
        )
    return None


def _response_format(body: dict[str, Any]) -> tuple[dict[str, Any] | None, str | None]:
    """(the output schema, the field that holds a client's own schema)."""
    raw = field_of(body, "response_format", dict)
    if raw is None:
        return None, None
    kind = raw.get("type")
    if kind == "text":
        return None, None
    if kind == "json_object":
        return {"type": "object"}, None
    if kind == "json_schema":
        spec = field_of(raw, "json_schema", dict, required=True, where="response_format.")
        where = "response_format.json_schema.schema"
        return output_schema(spec.get("schema"), where), where
    raise InvalidRequest(
        f"'response_format.type' must be 'text', 'json_object' or 'json_schema', not {kind!r}.",
        param="response_format.type",
    )


def _reasoning_effort(body: dict[str, Any]) -> tuple[Effort | None, int | None]:
    """(effort, thinking budget): "none" turns thinking off, the rest set an effort."""
    raw = field_of(body, "reasoning_effort", str)
    if raw is None:
        return None, None
    if raw == "none":
        return None, 0
    if raw not in EFFORTS:
        raise InvalidRequest(
            f"'reasoning_effort' must be one of none, {', '.join(EFFORTS)}; not '{raw}'.",
            param="reasoning_effort",
        )
    return EFFORTS[raw], None


def _parts(content: Any, where: str, *, allow_none: bool = False) -> list[Part]:
    if content is None:
        if allow_none:
            return []
        raise InvalidRequest(f"'{where}.content' is required.", param=f"{where}.content")
    if isinstance(content, str):
        return [TextPart(content)]
    if not isinstance(content, list):
        raise InvalidRequest(
            f"'{where}.content' must be a string or an array of parts.", param=f"{where}.content"
        )
    parts: list[Part] = []
    for j, part in enumerate(content):
        at = f"{where}.content[{j}]"
        if not isinstance(part, dict):
            raise InvalidRequest(f"'{at}' must be an object.", param=at)
        kind = part.get("type")
        if kind in ("text", "input_text", "output_text", "refusal"):
            key = "refusal" if kind == "refusal" else "text"
            parts.append(TextPart(field_of(part, key, str, required=True, where=f"{at}.")))
        elif kind == "image_url":
            image = part.get("image_url")
            url = image.get("url") if isinstance(image, dict) else image
            if not isinstance(url, str):
                raise InvalidRequest(
                    f"'{at}.image_url.url' must be a string.", param=f"{at}.image_url"
                )
            parts.append(image_from_data_url(url, f"{at}.image_url"))
        else:
            raise InvalidRequest(
                f"Content part type '{kind}' is not supported here; send text or image_url parts.",
                param=f"{at}.type",
            )
    return parts


def _tool_result(call_id: str, content: Any, where: str) -> ToolResultPart:
    """A tool message's content: text, or text and image parts."""
    parts = _parts(content, where)
    return ToolResultPart(call_id, tuple(p for p in parts if isinstance(p, TextPart | ImagePart)))


def _tool_calls(raw: Any, where: str) -> list[Part]:
    if raw is None:
        return []
    if not isinstance(raw, list):
        raise InvalidRequest(f"'{where}.tool_calls' must be an array.", param=f"{where}.tool_calls")
    parts: list[Part] = []
    for k, call in enumerate(raw):
        at = f"{where}.tool_calls[{k}]"
        fn = call.get("function") if isinstance(call, dict) else None
        if not isinstance(fn, dict):
            raise InvalidRequest(f"'{at}.function' must be an object.", param=f"{at}.function")
        parts.append(
            ToolUsePart(
                str(call.get("id", "")),
                str(fn.get("name", "")),
                _arguments(fn.get("arguments"), f"{at}.function.arguments"),
            )
        )
    return parts


def _function_call(raw: Any, where: str, index: int) -> ToolUsePart | None:
    """A legacy assistant `function_call`; it has no id, so one is made from its position."""
    if raw is None:
        return None
    if not isinstance(raw, dict):
        raise InvalidRequest(
            f"'{where}.function_call' must be an object.", param=f"{where}.function_call"
        )
    name = field_of(raw, "name", str, required=True, where=f"{where}.function_call.")
    arguments = _arguments(raw.get("arguments"), f"{where}.function_call.arguments")
    return ToolUsePart(f"call_legacy_{index}", name, arguments)


def _arguments(raw: Any, where: str) -> dict[str, Any]:
    """Tool-call arguments: a JSON object, usually sent encoded as a string."""
    if raw is None or raw == "":
        return {}
    try:
        value = json.loads(raw) if isinstance(raw, str) else raw
    except ValueError as exc:
        raise InvalidRequest(
            f"'{where}' is not valid JSON; it must be a JSON object encoded as a string.",
            param=where,
        ) from exc
    if not isinstance(value, dict):
        raise InvalidRequest(
            f"'{where}' must encode a JSON object (the tool's named arguments).", param=where
        )
    return value


# ---- answers ----


def usage_body(usage: Usage) -> dict[str, Any]:
    return {
        "prompt_tokens": usage.prompt_tokens,
        "completion_tokens": usage.output_tokens,
        "total_tokens": usage.prompt_tokens + usage.output_tokens,
        "prompt_tokens_details": {"cached_tokens": usage.cache_read_tokens},
        "completion_tokens_details": {"reasoning_tokens": 0},
    }


def completion_body(
    collector: Collector, *, completion_id: str, model: str, created: int
) -> dict[str, Any]:
    """The whole `chat.completion` object for a non-streaming request."""
    text = "".join(b.joined for b in collector.ordered() if b.kind == "text")
    reasoning = "".join(b.joined for b in collector.ordered() if b.kind == "thinking")
    calls = [
        {
            "id": b.id,
            "type": "function",
            "function": {"name": b.name, "arguments": json.dumps(b.tool_input())},
        }
        for b in collector.ordered()
        if b.kind == "tool_use"
    ]
    message: dict[str, Any] = {
        "role": "assistant",
        "content": text if text or not calls else None,
        "refusal": None,
    }
    if reasoning:
        message["reasoning_content"] = reasoning
    if calls:
        message["tool_calls"] = calls
    return {
        "id": completion_id,
        "object": "chat.completion",
        "created": created,
        "model": model,
        "choices": [
            {
                "index": 0,
                "message": message,
                "logprobs": None,
                "finish_reason": FINISH_REASONS.get(collector.stop_reason or "", "stop"),
            }
        ],
        "usage": usage_body(collector.usage),
        "system_fingerprint": None,
    }


def sse(data: dict[str, Any] | str) -> bytes:
    payload = data if isinstance(data, str) else json.dumps(data, separators=(",", ":"))
    return f"data: {payload}\n\n".encode()


class ChatStream:
    """CLI events -> `chat.completion.chunk` SSE frames, one event at a time."""

    def __init__(
        self,
        *,
        completion_id: str,
        model: str,
        created: int,
        include_usage: bool,
        stops: tuple[str, ...] = (),
    ) -> None:
        self._id = completion_id
        self._model = model
        self._created = created
        self._include_usage = include_usage
        self._text = StreamedText(stops)
        self._started = False
        self._tool_slots: dict[int, int] = {}  # block index -> tool_calls index

    def _chunk(self, delta: dict[str, Any], finish: str | None = None) -> bytes:
        body: dict[str, Any] = {
            "id": self._id,
            "object": "chat.completion.chunk",
            "created": self._created,
            "model": self._model,
            "system_fingerprint": None,
            "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}],
        }
        if self._include_usage:
            body["usage"] = None
        return sse(body)

    def start(self) -> list[bytes]:
        if self._started:
            return []
        self._started = True
        return [self._chunk({"role": "assistant", "content": ""})]

    def feed(self, event: CliEvent) -> list[bytes]:
        shown = self._text.feed(event)
        out = self.start() + [self._chunk({"content": shown})] if shown else []
        if self._text.ended(event):
            return out
        if isinstance(event, MessageStarted):
            out += self.start()
        elif isinstance(event, ThinkingDelta) and event.thinking:
            out += self.start() + [self._chunk({"reasoning_content": event.thinking})]
        elif isinstance(event, BlockStarted) and event.kind == "tool_use":
            slot = self._tool_slots[event.index] = len(self._tool_slots)
            out += self.start() + [
                self._chunk(
                    {
                        "tool_calls": [
                            {
                                "index": slot,
                                "id": event.id,
                                "type": "function",
                                "function": {"name": event.name, "arguments": ""},
                            }
                        ]
                    }
                )
            ]
        elif isinstance(event, ToolInputDelta) and event.index in self._tool_slots:
            out.append(
                self._chunk(
                    {
                        "tool_calls": [
                            {
                                "index": self._tool_slots[event.index],
                                "function": {"arguments": event.partial_json},
                            }
                        ]
                    }
                )
            )
        elif isinstance(event, TurnCompleted):
            out += self.start()
            reason = self._text.final_stop_reason(event)
            out.append(self._chunk({}, FINISH_REASONS.get(reason, "stop")))
            if self._include_usage:
                out.append(
                    sse(
                        {
                            "id": self._id,
                            "object": "chat.completion.chunk",
                            "created": self._created,
                            "model": self._model,
                            "system_fingerprint": None,
                            "choices": [],
                            "usage": usage_body(event.usage),
                        }
                    )
                )
            out.append(sse("[DONE]"))
        return out

    def error(self, body: dict[str, Any]) -> list[bytes]:
        """Frames that end a stream which failed after it began (OpenAI's error chunk)."""
        return [sse(body)]
