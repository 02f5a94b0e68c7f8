"""OpenAI Responses: request body -> Turn, CLI events -> response events or a Response object."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Any

from tray_app.errors import InvalidRequest
from tray_app.protocol.common import (
    Block,
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
    NAMESPACE_SEPARATOR,
    BlockStarted,
    BlockStopped,
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
    "top_logprobs",
    "truncation",
    "service_tier",
    "include",
    "prompt_cache_key",
    "prompt_cache_retention",
    "max_tool_calls",
    "background",
    "stream_options",
    "context_management",
)

# The one argument a custom (free-text) tool is offered with.
FREEFORM_ARGUMENT = "input"
MAX_TOOL_NAME = 64

# Request fields naming state kept on OpenAI's side; claude-tray has none of it, and
# answering without it would silently drop context.
STORED_STATE_FIELDS = ("conversation", "prompt")

# `ignored` ends up in a response header: a client-sent type is named only when it is
# plainly a type name.
_TYPE_NAME = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")

EFFORTS: dict[str, Effort] = {
    "minimal": "low",
    "low": "low",
    "medium": "medium",
    "high": "high",
    "xhigh": "xhigh",
    "max": "max",
}

# stop_reason -> incomplete_details.reason; any other stop completes the response.
INCOMPLETE_REASONS = {
    "max_tokens": "max_output_tokens",
    "model_context_window_exceeded": "max_output_tokens",
    "refusal": "content_filter",
}


def parse_request(body: Any) -> Turn:
    """A Responses request -> Turn; InvalidRequest (naming the field) for what cannot be served."""
    if not isinstance(body, dict):
        raise InvalidRequest("The request body must be a JSON object.")
    model = field_of(body, "model", str, required=True)
    raw_input = field_of(body, "input", (str, list), required=True)
    for key in STORED_STATE_FIELDS:
        if body.get(key) is not None:
            raise InvalidRequest(
                f"'{key}' refers to state stored by OpenAI, which claude-tray does not have; "
                "send the conversation as input items (or use previous_response_id).",
                param=key,
            )
    stream = field_of(body, "stream", bool) or False
    store = field_of(body, "store", bool)
    previous_response_id = field_of(body, "previous_response_id", str)
    max_tokens = positive_int(body, "max_output_tokens")
    parallel_tool_calls = field_of(body, "parallel_tool_calls", bool)
    field_of(body, "metadata", dict)
    user = field_of(body, "user", str)
    user = field_of(body, "safety_identifier", str) or user
    session_id, ephemeral = session_fields(body)
    ignored: list[str] = [k for k in IGNORED_FIELDS if body.get(k) is not None]

    system: list[str] = []
    instructions = field_of(body, "instructions", str)
    if instructions:
        system.append(instructions)
    if isinstance(raw_input, str):
        turns: list[tuple[Role, list[Part]]] = [("user", [TextPart(raw_input)])]
    else:
        turns = _items(raw_input, system, ignored)
    try:
        history, prompt = split_conversation(turns)
    except InvalidRequest as exc:
        raise InvalidRequest(exc.message, param="input") from exc

    tools = _tools(field_of(body, "tools", list) or [], ignored)
    tool_choice = _tool_choice(body.get("tool_choice"), tools, ignored)
    schema, schema_field = _output_schema(field_of(body, "text", dict) or {}, ignored)
    effort, thinking_budget = _reasoning(field_of(body, "reasoning", dict) or {})
    return Turn(
        api="responses",
        model=model,
        system="\n\n".join(s for s in system if s) or None,
        history=history,
        prompt=prompt,
        stream=stream,
        max_tokens=max_tokens,
        ignored=tuple(dict.fromkeys(ignored)),
        user=user,
        tools=tools,
        tool_choice=tool_choice,
        parallel_tool_calls=parallel_tool_calls,
        output_schema=schema,
        output_schema_field=schema_field,
        effort=effort,
        thinking_budget=thinking_budget,
        session_id=session_id,
        previous_response_id=previous_response_id,
        ephemeral=ephemeral,
        store=store is not False,
    )


def _items(raw: list[Any], system: list[str], ignored: list[str]) -> list[tuple[Role, list[Part]]]:
    """Input items -> (role, parts) turns; system/developer text goes to `system`."""
    turns: list[tuple[Role, list[Part]]] = []
    for i, item in enumerate(raw):
        where = f"input[{i}]"
        if not isinstance(item, dict):
            raise InvalidRequest(f"'{where}' must be an object.", param=where)
        kind = field_of(item, "type", str, where=f"{where}.")
        if kind is None and "role" not in item:
            raise InvalidRequest(f"'{where}.type' is required.", param=f"{where}.type")
        if kind in (None, "message"):
            role = field_of(item, "role", str, required=True, where=f"{where}.")
            if role in ("system", "developer"):
                parts = _content(item.get("content"), where, images=False)
                system.extend(p.text for p in parts if isinstance(p, TextPart))
            elif role in ("user", "assistant"):
                parts = _content(item.get("content"), where, images=role == "user")
                turns.append(("user" if role == "user" else "assistant", parts))
            else:
                raise InvalidRequest(
                    f"'{where}.role' must be user, assistant, system or developer, not '{role}'.",
                    param=f"{where}.role",
                )
        elif kind == "function_call":
            turns.append(("assistant", [_function_call(item, where)]))
        elif kind == "custom_tool_call":
            turns.append(("assistant", [_custom_tool_call(item, where)]))
        elif kind in ("function_call_output", "custom_tool_call_output"):
            call_id = field_of(item, "call_id", str, required=True, where=f"{where}.")
            output = _tool_output(item.get("output"), where)
            turns.append(("user", [ToolResultPart(call_id, output)]))
        elif kind == "reasoning":
            # Our reasoning items carry no signature, so the thinking cannot be
            # replayed to the model; Claude does not need it to continue.
            continue
        elif kind == "item_reference":
            raise InvalidRequest(
                "Item references are not supported; send the items themselves.", param=where
            )
        else:
            # Calls of hosted tools (web search, shell, MCP, ...) that claude-tray never
            # offers; keeping them would need the tool they belong to.
            ignored.append(_ignored_type("input", kind))
    return turns


def _content(content: Any, where: str, *, images: bool) -> list[Part]:
    if isinstance(content, str):
        return [TextPart(content)]
    if not isinstance(content, list):
        raise InvalidRequest(
            f"'{where}.content' must be a string or an array of parts.", param=f"{where}.content"
        )
    return [_content_part(part, f"{where}.content[{j}]", images) for j, part in enumerate(content)]


def _content_part(part: Any, at: str, images: bool) -> TextPart | ImagePart:
    if not isinstance(part, dict):
        raise InvalidRequest(f"'{at}' must be an object.", param=at)
    kind = part.get("type")
    if kind in ("input_text", "output_text", "text"):
        return TextPart(field_of(part, "text", str, required=True, where=f"{at}."))
    if kind == "refusal":
        return TextPart(field_of(part, "refusal", str, required=True, where=f"{at}."))
    if kind == "input_image" and images:
        if part.get("file_id") is not None:
            raise InvalidRequest(
                "Uploaded files are not available here; send the image inline as a base64 "
                "data URL in image_url (data:image/png;base64,...).",
                param=f"{at}.file_id",
            )
        url = field_of(part, "image_url", str, required=True, where=f"{at}.")
        return image_from_data_url(url, f"{at}.image_url")
    if kind == "input_image":
        raise InvalidRequest(
            "Images are only accepted in user messages and function call outputs.",
            param=f"{at}.type",
        )
    raise InvalidRequest(
        f"Content part type '{kind}' is not supported here; send input_text or input_image parts.",
        param=f"{at}.type",
    )


def _called_name(item: dict[str, Any], where: str) -> str:
    """The name the model called, as it was offered: a namespaced tool's with its namespace."""
    name = field_of(item, "name", str, required=True, where=f"{where}.")
    namespace = field_of(item, "namespace", str, where=f"{where}.")
    return f"{namespace}{NAMESPACE_SEPARATOR}{name}" if namespace else name


def _custom_tool_call(item: dict[str, Any], where: str) -> ToolUsePart:
    call_id = field_of(item, "call_id", str, required=True, where=f"{where}.")
    name = _called_name(item, where)
    text = field_of(item, "input", str, where=f"{where}.") or ""
    return ToolUsePart(call_id, name, {FREEFORM_ARGUMENT: text})


def _function_call(item: dict[str, Any], where: str) -> ToolUsePart:
    call_id = field_of(item, "call_id", str, required=True, where=f"{where}.")
    name = _called_name(item, where)
    arguments = field_of(item, "arguments", str, where=f"{where}.") or "{}"
    try:
        args = json.loads(arguments)
    except ValueError:
        args = None
    if not isinstance(args, dict):
        raise InvalidRequest(
            f"'{where}.arguments' must be a JSON object encoded as a string.",
            param=f"{where}.arguments",
        )
    return ToolUsePart(call_id, name, args)


def _tool_output(output: Any, where: str) -> tuple[TextPart | ImagePart, ...]:
    if output is None or isinstance(output, str):
        text = output or ""
        # An empty text block is rejected upstream; an empty result says the same.
        return (TextPart(text),) if text else ()
    if not isinstance(output, list):
        raise InvalidRequest(
            f"'{where}.output' must be a string or an array of parts.", param=f"{where}.output"
        )
    parts = [_content_part(part, f"{where}.output[{j}]", True) for j, part in enumerate(output)]
    return tuple(p for p in parts if not (isinstance(p, TextPart) and not p.text))


def _tools(raw: list[Any], ignored: list[str]) -> tuple[ToolSpec, ...]:
    tools: list[ToolSpec] = []
    for i, tool in enumerate(raw):
        where = f"tools[{i}]"
        if not isinstance(tool, dict):
            raise InvalidRequest(f"'{where}' must be an object.", param=where)
        kind = field_of(tool, "type", str, required=True, where=f"{where}.")
        if kind == "namespace":
            _namespace(tools, tool, where, ignored)
        elif kind in ("function", "custom"):
            add_tool(tools, _tool(tool, kind, where), f"{where}.name")
        else:
            # Hosted tools (web_search, file_search, code_interpreter, mcp, ...) run on
            # OpenAI's side; the model is simply not offered them.
            ignored.append(ignored_tool(kind))
    return tuple(tools)


def _tool(
    tool: dict[str, Any], kind: str, where: str, namespace: tuple[str, str] | None = None
) -> ToolSpec:
    """A function or custom tool; `namespace` is (name, description) of the one it is in."""
    name = tool_name(tool.get("name"), f"{where}.name")
    description = field_of(tool, "description", str, where=f"{where}.") or ""
    if kind == "function":
        field_of(tool, "strict", bool, where=f"{where}.")
        schema = tool_schema(tool.get("parameters"), f"{where}.parameters")
    else:
        schema = _freeform_schema(tool, where)
    if namespace is None:
        return ToolSpec(name, description, schema, freeform=kind == "custom")
    space, about = namespace
    offered = f"{space}{NAMESPACE_SEPARATOR}{name}"
    if len(offered) > MAX_TOOL_NAME:
        raise InvalidRequest(
            f"Namespace '{space}' and tool '{name}' make the name '{offered}', longer than "
            f"the {MAX_TOOL_NAME} characters a tool name may have.",
            param=f"{where}.name",
        )
    if about:
        description = f"{description}\n\n(In {space}: {about})".strip()
    return ToolSpec(offered, description, schema, namespace=space, freeform=kind == "custom")


def _namespace(tools: list[ToolSpec], tool: dict[str, Any], where: str, ignored: list[str]) -> None:
    """A namespace's functions and custom tools, each offered under "<namespace>__<name>"."""
    space = tool_name(tool.get("name"), f"{where}.name")
    about = field_of(tool, "description", str, where=f"{where}.") or ""
    members = field_of(tool, "tools", list, required=True, where=f"{where}.")
    for j, member in enumerate(members):
        at = f"{where}.tools[{j}]"
        if not isinstance(member, dict):
            raise InvalidRequest(f"'{at}' must be an object.", param=at)
        kind = field_of(member, "type", str, required=True, where=f"{at}.")
        if kind not in ("function", "custom"):
            ignored.append(ignored_tool(kind))
            continue
        add_tool(tools, _tool(member, kind, at, (space, about)), f"{at}.name")


def _freeform_schema(tool: dict[str, Any], where: str) -> dict[str, Any]:
    """A custom tool takes free text: offered as one string argument, with its grammar
    (if it has one) told to the model, which cannot be held to it."""
    about = "The tool's whole input, as raw text (not JSON)."
    fmt = field_of(tool, "format", dict, where=f"{where}.")
    kind = field_of(fmt, "type", str, required=True, where=f"{where}.format.") if fmt else "text"
    if fmt is not None and kind == "grammar":
        syntax = field_of(fmt, "syntax", str, where=f"{where}.format.") or "lark"
        definition = field_of(fmt, "definition", str, required=True, where=f"{where}.format.")
        about += f" It must follow this {syntax} grammar:\n{definition}"
    elif kind != "text":
        raise InvalidRequest(
            f"'{where}.format.type' must be text or grammar, not '{kind}'.",
            param=f"{where}.format.type",
        )
    return {
        "type": "object",
        "properties": {FREEFORM_ARGUMENT: {"type": "string", "description": about}},
        "required": [FREEFORM_ARGUMENT],
        "additionalProperties": False,
    }


def _tool_choice(raw: Any, tools: tuple[ToolSpec, ...], ignored: list[str]) -> ToolChoice | None:
    if raw is None:
        return None
    if raw in ("auto", "none", "required"):
        choice = ToolChoice(raw)
    elif not isinstance(raw, dict):
        raise InvalidRequest(
            "'tool_choice' must be 'auto', 'none', 'required' or an object such as "
            '{"type": "function", "name": ...}.',
            param="tool_choice",
        )
    else:
        kind = field_of(raw, "type", str, required=True, where="tool_choice.")
        if kind in ("function", "custom"):
            name = _called_name(raw, "tool_choice")
            choice = ToolChoice("tool", name)
        elif kind == "allowed_tools":
            # Approximated: the mode is kept, every declared tool stays on offer.
            ignored.append("tool_choice[type=allowed_tools].tools")
            choice = ToolChoice("required" if raw.get("mode") == "required" else "auto")
        else:
            # Forcing a hosted tool, which is never offered: the model chooses freely.
            ignored.append(_ignored_type("tool_choice", kind))
            return None
    return checked_tool_choice(
        choice, list(tools), param="tool_choice", name_param="tool_choice.name"
    )


def _ignored_type(field: str, kind: Any) -> str:
    shown = kind if isinstance(kind, str) and _TYPE_NAME.match(kind) else "unknown"
    return f"{field}[type={shown}]"


def _output_schema(
    text: dict[str, Any], ignored: list[str]
) -> tuple[dict[str, Any] | None, str | None]:
    """(the output schema, the field that holds a client's own schema)."""
    if text.get("verbosity") is not None:
        ignored.append("text.verbosity")
    fmt = field_of(text, "format", dict, where="text.")
    if fmt is None:
        return None, None
    kind = field_of(fmt, "type", str, required=True, where="text.format.")
    if kind == "text":
        return None, None
    if kind == "json_object":
        return {"type": "object"}, None
    if kind == "json_schema":
        return output_schema(fmt.get("schema"), "text.format.schema"), "text.format.schema"
    raise InvalidRequest(
        f"'text.format.type' must be text, json_object or json_schema, not '{kind}'.",
        param="text.format.type",
    )


def _reasoning(reasoning: dict[str, Any]) -> tuple[Effort | None, int | None]:
    effort = field_of(reasoning, "effort", str, where="reasoning.")
    if effort is None:
        return None, None
    if effort == "none":
        return None, 0
    if effort not in EFFORTS:
        raise InvalidRequest(
            "'reasoning.effort' must be none, minimal, low, medium, high, xhigh or max, "
            f"not '{effort}'.",
            param="reasoning.effort",
        )
    return EFFORTS[effort], None


# ---- answers ----


def usage_body(usage: Usage) -> dict[str, Any]:
    return {
        "input_tokens": usage.prompt_tokens,
        "input_tokens_details": {
            "cached_tokens": usage.cache_read_tokens,
            "cache_write_tokens": usage.cache_creation_tokens,
        },
        "output_tokens": usage.output_tokens,
        "output_tokens_details": {"reasoning_tokens": 0},
        "total_tokens": usage.prompt_tokens + usage.output_tokens,
    }


def item_id(prefix: str, response_id: str, output_index: int) -> str:
    """A stable id for an output item, so a stream and a body agree on it."""
    return f"{prefix}_{response_id.removeprefix('resp_')}_{output_index}"


def _output_text(text: str) -> dict[str, Any]:
    return {"type": "output_text", "text": text, "annotations": [], "logprobs": []}


def _message_item(id_: str, text: str | None) -> dict[str, Any]:
    """A message item; `text` None while it is still being written."""
    return {
        "id": id_,
        "type": "message",
        "status": "in_progress" if text is None else "completed",
        "role": "assistant",
        "content": [] if text is None else [_output_text(text)],
    }


def _call_item(
    id_: str, call_id: str, name: str, tool: ToolSpec | None, payload: str | None
) -> dict[str, Any]:
    """A function_call item, or a custom_tool_call for a custom tool, under the name the
    client declared (and its namespace); `payload` (arguments or input) None while it is
    still being written."""
    item: dict[str, Any]
    if tool is not None and tool.freeform:
        item = {"id": id_, "type": "custom_tool_call", "call_id": call_id}
        item.update(name=tool.client_name, input=payload or "")
    else:
        item = {
            "id": id_,
            "type": "function_call",
            "status": "in_progress" if payload is None else "completed",
            "call_id": call_id,
            "name": tool.client_name if tool is not None else name,
            "arguments": payload or "",
        }
    if tool is not None and tool.namespace is not None:
        item["namespace"] = tool.namespace
    return item


def _payload(block: Block, tool: ToolSpec | None) -> str:
    """What a finished call passes: a custom tool's text, or the function arguments."""
    if tool is None or not tool.freeform:
        return _arguments(block)
    text = block.tool_input().get(FREEFORM_ARGUMENT)
    return text if isinstance(text, str) else block.joined


def _summary_text(text: str) -> dict[str, Any]:
    return {"type": "summary_text", "text": text}


def _reasoning_item(id_: str, summary: str) -> dict[str, Any]:
    # Thinking is shown as the summary; there is no encrypted_content to hand back.
    return {"id": id_, "type": "reasoning", "summary": [_summary_text(summary)] if summary else []}


def _arguments(block: Block) -> str:
    """The function arguments as a JSON string; what the model streamed, when it is one."""
    raw = block.joined.strip()
    if not raw:
        return "{}"
    try:
        value = json.loads(raw)
    except ValueError:
        return json.dumps(block.tool_input())
    return raw if isinstance(value, dict) else json.dumps(block.tool_input())


def _response(
    *,
    response_id: str,
    model: str,
    created: int,
    previous_response_id: str | None,
    status: str,
    output: list[dict[str, Any]],
    usage: Usage | None = None,
    incomplete_reason: str | None = None,
    error: dict[str, Any] | None = None,
) -> dict[str, Any]:
    return {
        "id": response_id,
        "object": "response",
        "created_at": created,
        "status": status,
        "error": error,
        "incomplete_details": {"reason": incomplete_reason} if incomplete_reason else None,
        "instructions": None,
        "max_output_tokens": None,
        "model": model,
        "output": output,
        "parallel_tool_calls": True,
        "previous_response_id": previous_response_id,
        "reasoning": {"effort": None, "summary": None},
        "store": True,
        "temperature": None,
        "text": {"format": {"type": "text"}},
        "tool_choice": "auto",
        "tools": [],
        "top_p": None,
        "truncation": "disabled",
        "usage": usage_body(usage) if usage is not None else None,
        "user": None,
        "metadata": {},
    }


def _finished(
    *,
    response_id: str,
    model: str,
    created: int,
    previous_response_id: str | None,
    stop_reason: str | None,
    output: list[dict[str, Any]],
    usage: Usage,
) -> dict[str, Any]:
    reason = INCOMPLETE_REASONS.get(stop_reason or "")
    return _response(
        response_id=response_id,
        model=model,
        created=created,
        previous_response_id=previous_response_id,
        status="incomplete" if reason else "completed",
        output=output,
        usage=usage,
        incomplete_reason=reason,
    )


def response_body(
    collector: Collector,
    *,
    response_id: str,
    model: str,
    created: int,
    previous_response_id: str | None = None,
    tools: tuple[ToolSpec, ...] = (),
) -> dict[str, Any]:
    """The whole `response` object for a non-streaming request."""
    by_name = {tool.name: tool for tool in tools}
    output: list[dict[str, Any]] = []
    for block in collector.ordered():
        n = len(output)
        if block.kind == "text":
            output.append(_message_item(item_id("msg", response_id, n), block.joined))
        elif block.kind == "thinking":
            output.append(_reasoning_item(item_id("rs", response_id, n), block.joined))
        elif block.kind == "tool_use":
            tool = by_name.get(block.name)
            output.append(
                _call_item(
                    item_id("fc", response_id, n),
                    block.id,
                    block.name,
                    tool,
                    _payload(block, tool),
                )
            )
        # redacted_thinking has nothing a client could show or send back.
    return _finished(
        response_id=response_id,
        model=model,
        created=created,
        previous_response_id=previous_response_id,
        stop_reason=collector.stop_reason,
        output=output,
        usage=collector.usage,
    )


def sse(data: dict[str, Any]) -> bytes:
    payload = json.dumps(data, separators=(",", ":"))
    return f"event: {data['type']}\ndata: {payload}\n\n".encode()


# What error(body) reports as the failed response's `error.code`: the Response object
# allows only a fixed set of codes (the `error` event carries ours unchanged).
_FAILED_CODES = {
    "rate_limit_error": "rate_limit_exceeded",
    "invalid_request_error": "invalid_prompt",
}


@dataclass
class _Item:
    """An output item being streamed: where it sits and what it has said so far."""

    kind: str
    output_index: int
    id: str
    call_id: str = ""
    name: str = ""
    tool: ToolSpec | None = None  # what a tool_use item calls, when the client declared it
    pieces: list[str] = field(default_factory=list)
    summary_open: bool = False

    @property
    def text(self) -> str:
        return "".join(self.pieces)


class ResponsesStream:
    """CLI events -> Responses SSE events (response.created ... response.completed)."""

    def __init__(
        self,
        *,
        response_id: str,
        model: str,
        created: int,
        stops: tuple[str, ...] = (),
        previous_response_id: str | None = None,
        tools: tuple[ToolSpec, ...] = (),
    ) -> None:
        self._id = response_id
        self._tools = {tool.name: tool for tool in tools}
        self._model = model
        self._created = created
        self._previous = previous_response_id
        self._text = StreamedText(stops)
        self._started = False
        self._sequence = 0
        self._open: dict[int, _Item] = {}  # block index -> item being streamed
        self._output: list[dict[str, Any]] = []  # finished items, in output order
        self._count = 0  # output items started so far
        self._last_text = -1  # block index of the latest text item, where held-back text goes

    def _event(self, kind: str, **fields: Any) -> bytes:
        body = {"type": kind, **fields, "sequence_number": self._sequence}
        self._sequence += 1
        return sse(body)

    def _snapshot(self, status: str, **extra: Any) -> dict[str, Any]:
        return _response(
            response_id=self._id,
            model=self._model,
            created=self._created,
            previous_response_id=self._previous,
            status=status,
            output=list(self._output),
            **extra,
        )

    def start(self) -> list[bytes]:
        if self._started:
            return []
        self._started = True
        return [
            self._event("response.created", response=self._snapshot("in_progress")),
            self._event("response.in_progress", response=self._snapshot("in_progress")),
        ]

    def feed(self, event: CliEvent) -> list[bytes]:
        shown = self._text.feed(event)
        out: list[bytes] = []
        if shown and self._last_text in self._open:
            out.append(self._text_delta(self._open[self._last_text], shown))
        if self._text.ended(event):
            return out
        if isinstance(event, MessageStarted):
            out += self.start()
        elif isinstance(event, BlockStarted) and event.kind != "redacted_thinking":
            out += self.start() + self._open_item(event)
        elif isinstance(event, ThinkingDelta) and event.index in self._open and event.thinking:
            out += self._summary_delta(self._open[event.index], event.thinking)
        elif isinstance(event, ToolInputDelta) and event.index in self._open:
            item = self._open[event.index]
            item.pieces.append(event.partial_json)
            if item.tool is not None and item.tool.freeform:
                return out  # its text is known once its JSON is whole (_close)
            out.append(
                self._event(
                    "response.function_call_arguments.delta",
                    item_id=item.id,
                    output_index=item.output_index,
                    delta=event.partial_json,
                )
            )
        elif isinstance(event, BlockStopped) and event.index in self._open:
            out += self._close(event.index)
        elif isinstance(event, TurnCompleted):
            out += self._complete(event)
        return out

    def _open_item(self, event: BlockStarted) -> list[bytes]:
        n = self._count
        self._count += 1
        if event.kind == "text":
            item = _Item("text", n, item_id("msg", self._id, n))
            self._last_text = event.index
            added = _message_item(item.id, None)
        elif event.kind == "thinking":
            item = _Item("thinking", n, item_id("rs", self._id, n))
            added = _reasoning_item(item.id, "")
        else:
            tool = self._tools.get(event.name)
            item = _Item("tool_use", n, item_id("fc", self._id, n), event.id, event.name, tool)
            added = _call_item(item.id, item.call_id, item.name, tool, None)
        self._open[event.index] = item
        out = [self._event("response.output_item.added", output_index=n, item=added)]
        if item.kind == "text":
            out.append(
                self._event(
                    "response.content_part.added",
                    item_id=item.id,
                    output_index=n,
                    content_index=0,
                    part=_output_text(""),
                )
            )
        return out

    def _text_delta(self, item: _Item, text: str) -> bytes:
        item.pieces.append(text)
        return self._event(
            "response.output_text.delta",
            item_id=item.id,
            output_index=item.output_index,
            content_index=0,
            delta=text,
            logprobs=[],
        )

    def _summary_delta(self, item: _Item, thinking: str) -> list[bytes]:
        out: list[bytes] = []
        where = {"item_id": item.id, "output_index": item.output_index, "summary_index": 0}
        if not item.summary_open:
            # Opened on the first words, so a thinking block with no text (only a
            # signature) ends as a reasoning item with an empty summary, as in the body.
            item.summary_open = True
            out.append(
                self._event(
                    "response.reasoning_summary_part.added", **where, part=_summary_text("")
                )
            )
        item.pieces.append(thinking)
        out.append(self._event("response.reasoning_summary_text.delta", **where, delta=thinking))
        return out

    def _close(self, index: int) -> list[bytes]:
        item = self._open.pop(index)
        n = item.output_index
        out: list[bytes] = []
        if item.kind == "text":
            where = {"item_id": item.id, "output_index": n, "content_index": 0}
            out += [
                self._event("response.output_text.done", **where, text=item.text, logprobs=[]),
                self._event("response.content_part.done", **where, part=_output_text(item.text)),
            ]
            done = _message_item(item.id, item.text)
        elif item.kind == "thinking":
            if item.summary_open:
                where = {"item_id": item.id, "output_index": n, "summary_index": 0}
                out += [
                    self._event("response.reasoning_summary_text.done", **where, text=item.text),
                    self._event(
                        "response.reasoning_summary_part.done",
                        **where,
                        part=_summary_text(item.text),
                    ),
                ]
            done = _reasoning_item(item.id, item.text)
        elif item.tool is not None and item.tool.freeform:
            text = _payload(Block("tool_use", text=item.pieces), item.tool)
            where = {"item_id": item.id, "output_index": n}
            out += [
                self._event("response.custom_tool_call_input.delta", **where, delta=text),
                self._event("response.custom_tool_call_input.done", **where, input=text),
            ]
            done = _call_item(item.id, item.call_id, item.name, item.tool, text)
        else:
            arguments = _arguments(Block("tool_use", text=item.pieces))
            out.append(
                self._event(
                    "response.function_call_arguments.done",
                    item_id=item.id,
                    output_index=n,
                    name=item.tool.client_name if item.tool is not None else item.name,
                    arguments=arguments,
                )
            )
            done = _call_item(item.id, item.call_id, item.name, item.tool, arguments)
        self._output.append(done)
        out.append(self._event("response.output_item.done", output_index=n, item=done))
        return out

    def _complete(self, event: TurnCompleted) -> list[bytes]:
        out = self.start()
        for index in sorted(self._open, key=lambda i: self._open[i].output_index):
            out += self._close(index)
        response = _finished(
            response_id=self._id,
            model=self._model,
            created=self._created,
            previous_response_id=self._previous,
            stop_reason=self._text.final_stop_reason(event),
            output=list(self._output),
            usage=event.usage,
        )
        kind = "response.incomplete" if response["status"] == "incomplete" else "response.completed"
        out.append(self._event(kind, response=response))
        return out

    def error(self, body: dict[str, Any]) -> list[bytes]:
        """Frames that end a stream which failed after it began: an `error` event, then
        `response.failed` carrying the error."""
        raw = body.get("error")
        error: dict[str, Any] = raw if isinstance(raw, dict) else body
        message = str(error.get("message") or "claude-tray hit an error.")
        code = error.get("code")
        param = error.get("param")
        out = self.start()
        out.append(
            self._event(
                "error",
                code=code if isinstance(code, str) else None,
                message=message,
                param=param if isinstance(param, str) else None,
            )
        )
        failed_code = _FAILED_CODES.get(str(error.get("type")), "server_error")
        out.append(
            self._event(
                "response.failed",
                response=self._snapshot("failed", error={"code": failed_code, "message": message}),
            )
        )
        return out
