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
    ToolChoice,
    ToolInputDelta,
    ToolSpec,
    Turn,
    TurnCompleted,
    Usage,
)
from tray_app.protocol.stops import StopScanner

T = TypeVar("T")

_DATA_URL = re.compile(r"^data:(?P<mime>image/[\w.+-]+);base64,(?P<data>.+)$", re.DOTALL)
IMAGE_TYPES = ("image/png", "image/jpeg", "image/gif", "image/webp")
# What both OpenAI and Anthropic accept as a function tool name.
_TOOL_NAME = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
# A tool type we only name in logs and the X-Claude-Tray-Ignored header: nothing else.
_TOOL_TYPE = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")
SESSION_ID_MAX = 256
# What no header value, log line or command-line argument may carry: control characters
# (aiohttp refuses to write CR/LF into a header and drops the connection; others break
# clients' header parsers) and lone surrogates (no UTF-8 encoding exists for them; a
# header of bytes that were not UTF-8 arrives as such, by surrogateescape).
_UNSAFE_TEXT = re.compile(r"[\x00-\x1f\x7f\ud800-\udfff]")


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
    # JSON Schema, and the APIs' own validation, count 3.0 as the integer 3 (clients send
    # it after arithmetic); 3.5 stays wrong.
    if int in kinds and float not in kinds and isinstance(value, float) and value.is_integer():
        value = int(value)
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


# ---- tools, structured output, sessions ----


def tool_name(value: Any, where: str) -> str:
    """A function tool's name, checked the way OpenAI and Anthropic both check it."""
    if not isinstance(value, str) or not value:
        raise InvalidRequest(f"'{where}' is required and must be a string.", param=where)
    if not _TOOL_NAME.match(value):
        raise InvalidRequest(
            f"Tool name '{value[:80]}' is not allowed: use 1 to 64 letters, digits, '_' or '-'.",
            param=where,
        )
    return value


def tool_schema(value: Any, where: str) -> dict[str, Any]:
    """A tool's JSON Schema for its arguments, kept exactly as sent.

    Nothing is rewritten (2020-12 keywords, `$schema`, huge bounds all pass through):
    the model must see the schema the client wrote. A missing schema means no arguments;
    a schema without a `type` (`{}`, only `properties`) gets `"type": "object"`, which
    MCP requires of a tool's input schema (without it the CLI drops every tool).
    """
    if value is None:
        return {"type": "object", "properties": {}}
    if not isinstance(value, dict):
        raise InvalidRequest(
            f"'{where}' must be a JSON Schema object, not {_json_type(type(value))}.", param=where
        )
    if "type" in value and value["type"] != "object":
        raise InvalidRequest(
            f"'{where}' must describe an object ('type': 'object'): a tool's arguments "
            "are always a JSON object.",
            param=where,
        )
    return value if "type" in value else {"type": "object", **value}


def add_tool(tools: list[ToolSpec], spec: ToolSpec, where: str) -> None:
    """Append `spec`, refusing a second tool of the same name (`where` names its name)."""
    if any(t.name == spec.name for t in tools):
        raise InvalidRequest(
            f"Two tools are named '{spec.name}'; tool names must be unique.", param=where
        )
    tools.append(spec)


def ignored_tool(kind: Any) -> str:
    """The `ignored` entry for a tool type the runtime cannot offer (a client-sent string
    only appears when it is plainly a type name: it ends up in a response header)."""
    shown = kind if isinstance(kind, str) and _TOOL_TYPE.match(kind) else "unknown"
    return f"tools[type={shown}]"


def checked_tool_choice(
    choice: ToolChoice, tools: list[ToolSpec], *, param: str, name_param: str
) -> ToolChoice:
    """`choice`, once it is known to be satisfiable with the declared tools."""
    if choice.mode in ("required", "tool") and not tools:
        raise InvalidRequest(
            f"'{param}' asks for a tool call, but the request declares no function tools "
            "to call; add them to 'tools' or drop the tool choice.",
            param=param,
        )
    if choice.mode == "tool" and not any(t.name == choice.name for t in tools):
        known = ", ".join(t.name for t in tools)
        raise InvalidRequest(
            f"'{param}' names the tool '{choice.name}', which is not among the declared "
            f"tools ({known}).",
            param=name_param,
        )
    return choice


def output_schema(value: Any, where: str) -> dict[str, Any]:
    """A structured-output JSON Schema, kept exactly as sent."""
    if not isinstance(value, dict):
        shown = "missing" if value is None else _json_type(type(value))
        raise InvalidRequest(f"'{where}' must be a JSON Schema object, not {shown}.", param=where)
    return value


def session_fields(body: dict[str, Any]) -> tuple[str | None, bool]:
    """`session_id` and `ephemeral`: claude-tray's own body fields (sent via extra_body)."""
    session_id = field_of(body, "session_id", str) or None
    if session_id is not None:
        session_id = session_id_value(session_id, "session_id")
    return session_id, bool(field_of(body, "ephemeral", bool))


def session_id_value(value: str, param: str) -> str:
    """A client's session id (body field or header `param`): it comes back in the
    X-Session-Id response header, so it must be plain text of bounded length."""
    if len(value) > SESSION_ID_MAX:
        raise InvalidRequest(f"'{param}' is longer than {SESSION_ID_MAX} characters.", param=param)
    return plain_text(value, param)


def plain_text(value: str, param: str) -> str:
    """`value` when it has no control character and no invalid byte, else a 400 naming
    `param`; for text that ends up in a header, a log line or the CLI's command line."""
    if _UNSAFE_TEXT.search(value):
        raise InvalidRequest(
            f"'{param}' must be plain text, without control characters (line breaks, tabs, "
            f"NUL) or bytes that are not UTF-8; got {value[:80]!r}.",
            param=param,
        )
    return value


# Where the system prompt came from, per API (the CLI gets it as one argument).
_SYSTEM_PARAM = {"anthropic": "system", "openai": "messages", "responses": "instructions"}


def check_command_line_text(turn: Turn) -> None:
    """Refuse a turn whose text would reach the CLI's command line with a NUL in it.

    The system prompt, the fallback model and agent-mode names become arguments of the
    `claude` process; an argument cannot hold a NUL (the operating system ends it
    there; Python refuses to start the process at all), so the request is at fault.
    """
    if turn.system is not None and "\x00" in turn.system:
        param = _SYSTEM_PARAM.get(turn.api, "system")
        raise InvalidRequest(
            f"The system prompt ('{param}') contains a NUL character, which cannot be "
            "passed to Claude Code; remove it.",
            param=param,
        )
    if turn.fallback_model is not None:
        plain_text(turn.fallback_model, "fallback_model")
    agent = turn.agent
    if agent is None:
        return
    named: list[tuple[str, str | None]] = [
        ("working_directory", agent.working_directory),
        ("permission_mode", agent.permission_mode),
        ("agent", agent.agent),
    ]
    for key, values in (
        ("tools", agent.tools or ()),
        ("allowed_tools", agent.allowed_tools),
        ("disallowed_tools", agent.disallowed_tools),
        ("mcp_config", agent.mcp_servers),
    ):
        named.extend((key, v) for v in values)
    for key, value in named:
        if value is not None and "\x00" in value:
            raise InvalidRequest(f"'{key}' contains a NUL character.", param=key)


# ---- limits on a request body as a whole ----

# A JSON string (escapes included), so the brackets inside strings are not counted.
_JSON_STRING = re.compile(rb'"[^"\\]*(?:\\.[^"\\]*)*"', re.DOTALL)
# Keep only the brackets, both kinds written as one pair of bytes.
_BRACKETS = bytes.maketrans(b"[{]}", b"(())")
_NOT_BRACKETS = bytes(b for b in range(256) if b not in b"[{]}")


def json_too_deep(raw: bytes, limit: int) -> bool:
    """Whether the JSON text `raw` nests more than `limit` levels of [ and {.

    Checked on the bytes before parsing, without recursion (json.loads recurses once
    per level and would raise RecursionError): with strings blanked out and everything
    but brackets dropped, each pass of removing the innermost "()" pairs lowers the
    deepest nesting by exactly one, and every pass runs at C speed.
    """
    brackets = _JSON_STRING.sub(b'""', raw).translate(_BRACKETS, _NOT_BRACKETS)
    for _ in range(limit):
        if b"()" not in brackets:
            return False
        brackets = brackets.replace(b"()", b"")
    # Pairs left after `limit` passes sit deeper than `limit`. (Unbalanced brackets
    # without pairs are not deep, just invalid: json.loads says so.)
    return b"()" in brackets


def count_messages(body: Any, limit: int) -> None:
    """Refuse more than `limit` messages: `messages` (Chat, Messages, count_tokens) or
    `input` items (Responses)."""
    if not isinstance(body, dict):
        return
    for key in ("messages", "input"):
        items = body.get(key)
        if isinstance(items, list) and len(items) > limit:
            raise InvalidRequest(
                f"'{key}' holds {len(items)} items, more than the limit of {limit} "
                "(setting max_messages).",
                param=key,
            )


def unencodable_text(value: Any) -> str | None:
    """The path to the first string (or object key) in a parsed JSON document that has
    no UTF-8 form (a lone surrogate from an escape like \\ud800), else None.

    Such text cannot be stored, logged or sent on, so the request is refused up front.
    Walks with an explicit stack: the document may be as deep as max_json_depth.
    """
    stack: list[tuple[str, Any]] = [("", value)]
    while stack:
        path, item = stack.pop()
        if isinstance(item, str):
            if _has_surrogate(item):
                return path or "body"
        elif isinstance(item, dict):
            for key, child in reversed(list(item.items())):
                if _has_surrogate(key):
                    return f"{path or 'body'} (an object key)"
                stack.append((f"{path}.{key}" if path else key, child))
        elif isinstance(item, list):
            stack.extend((f"{path}[{i}]", child) for i, child in reversed(list(enumerate(item))))
    return None


def _has_surrogate(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return True
    return False


def split_conversation(
    messages: list[tuple[Role, list[Part]]], *, allow_assistant_last: bool = False
) -> tuple[tuple[Message, ...], tuple[Part, ...]]:
    """Merge same-role neighbours, drop empty turns, and split off the final user turn.

    The CLI itself merges consecutive same-role turns, so merging here keeps what the
    model sees identical to what we record; a history must open with a user turn.
    With `allow_assistant_last` (token counting, where nothing is answered) a
    conversation may end on the assistant: all of it is history and the prompt is empty.
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
    if merged[-1][0] != "user" and not allow_assistant_last:
        raise InvalidRequest(
            "The last message must come from the user; continuing a partial assistant "
            "message (prefill) is not supported by the Claude Code runtime.",
            param="messages",
        )
    if merged[0][0] != "user":
        merged.insert(0, ("user", [TextPart("(conversation start)")]))
    if merged[-1][0] != "user":
        return tuple(Message(role, tuple(parts)) for role, parts in merged), ()
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


def tool_choice_hint(turn: Turn) -> str | None:
    """What to tell the model about tool_choice and parallel_tool_calls.

    Claude Code has no switch to force, forbid or limit tool calls, so the client's
    choice is passed on as an instruction beside its message (an approximation the
    README lists).
    """
    choice = turn.tool_choice
    if not turn.tools or choice is None:
        return None
    if choice.mode == "none":
        return "(Answer this message without calling any tool.)"
    one = " Call exactly one tool." if turn.parallel_tool_calls is False else ""
    if choice.mode == "tool" and choice.name:
        return f"(Answer this message by calling the tool `{choice.name}`.{one})"
    if choice.mode == "required":
        return f"(Answer this message by calling at least one of the available tools.{one})"
    if turn.parallel_tool_calls is False:
        return "(Call at most one tool in this answer.)"
    return None
