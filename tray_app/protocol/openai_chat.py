"""OpenAI Chat Completions: request body -> Turn, CLI events -> chunks or a completion body."""

from __future__ import annotations

import json
from typing import Any

from tray_app.errors import InvalidRequest
from tray_app.protocol.common import (
    Collector,
    StreamedText,
    field_of,
    image_from_data_url,
    positive_int,
    split_conversation,
)
from tray_app.protocol.model import (
    BlockStarted,
    CliEvent,
    MessageStarted,
    Part,
    Role,
    TextPart,
    ThinkingDelta,
    ToolInputDelta,
    ToolResultPart,
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
    "tools",
    "tool_choice",
    "parallel_tool_calls",
    "response_format",
    "reasoning_effort",
    "functions",
    "function_call",
    "web_search_options",
    "verbosity",
    "prompt_cache_key",
    "safety_identifier",
)

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

    system: list[str] = []
    turns: list[tuple[Role, list[Part]]] = []
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
            turns.append(("assistant", parts))
        elif role in ("tool", "function"):
            call_id = field_of(raw, "tool_call_id", str, where=f"{where}.") or str(
                raw.get("name", "")
            )
            content = tuple(p for p in _parts(raw.get("content"), where) if isinstance(p, TextPart))
            turns.append(("user", [ToolResultPart(call_id, content)]))
        else:
            raise InvalidRequest(
                f"'{where}.role' must be system, developer, user, assistant or tool, not '{role}'.",
                param=f"{where}.role",
            )
    history, prompt = split_conversation(turns)
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
        ignored=tuple(k for k in IGNORED_FIELDS if body.get(k) is not None),
        user=body.get("user") if isinstance(body.get("user"), str) else None,
    )


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
        arguments = fn.get("arguments") or "{}"
        try:
            args = json.loads(arguments) if isinstance(arguments, str) else arguments
        except ValueError as exc:
            raise InvalidRequest(
                f"'{at}.function.arguments' is not valid JSON.", param=f"{at}.function.arguments"
            ) from exc
        parts.append(
            ToolUsePart(
                str(call.get("id", "")),
                str(fn.get("name", "")),
                args if isinstance(args, dict) else {"value": args},
            )
        )
    return parts


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
