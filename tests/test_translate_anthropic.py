"""Anthropic Messages: request bodies to turns, recorded transcripts to exact SSE events."""

from __future__ import annotations

import json
from typing import Any

import pytest
from transcripts import lines, replay

from tray_app.errors import InvalidRequest
from tray_app.protocol.anthropic import (
    MessagesStream,
    count_tokens_body,
    message_body,
    parse_count_tokens,
    parse_request,
)
from tray_app.protocol.common import Collector
from tray_app.protocol.model import (
    CliEvent,
    ImagePart,
    Message,
    TextPart,
    ThinkingPart,
    ToolChoice,
    ToolResultPart,
    ToolSpec,
    ToolUsePart,
    Turn,
)

PNG = "iVBORw0KGgo="
TOOL_ID = "toolu_cb7d3dc9c3614dbbb648"


def user(content: Any) -> dict[str, Any]:
    return {"role": "user", "content": content}


def assistant(content: Any) -> dict[str, Any]:
    return {"role": "assistant", "content": content}


def body(*messages: dict[str, Any], **fields: Any) -> dict[str, Any]:
    return {"model": "m", "max_tokens": 64, "messages": list(messages) or [user("hi")], **fields}


def turn(*prompt: Any, **fields: Any) -> Turn:
    base: dict[str, Any] = {
        "api": "anthropic",
        "model": "m",
        "system": None,
        "history": (),
        "prompt": prompt or (TextPart("hi"),),
        "stream": False,
        "max_tokens": 64,
    }
    return Turn(**{**base, **fields})


def image(source: dict[str, Any]) -> dict[str, Any]:
    return {"type": "image", "source": source}


BASE64_PNG = {"type": "base64", "media_type": "image/png", "data": PNG}
TOOL_USE = {"type": "tool_use", "id": "toolu_1", "name": "get_weather", "input": {"city": "Paris"}}


# ---- parse_request ----


@pytest.mark.parametrize(
    ("request_body", "expected"),
    [
        pytest.param(body(user("hi")), turn(TextPart("hi")), id="string-content"),
        pytest.param(
            body(user([{"type": "text", "text": "a"}, {"type": "text", "text": "b"}])),
            turn(TextPart("a"), TextPart("b")),
            id="block-content",
        ),
        pytest.param(body(system="Be brief."), turn(system="Be brief."), id="system-string"),
        pytest.param(
            body(
                system=[
                    {"type": "text", "text": "Be brief."},
                    {"type": "text", "text": "Use French.", "cache_control": {"type": "ephemeral"}},
                ]
            ),
            turn(system="Be brief.\n\nUse French."),
            id="system-blocks",
        ),
        pytest.param(body(system=""), turn(), id="system-empty"),
        pytest.param(
            body(user([{"type": "text", "text": "look"}, image(BASE64_PNG)])),
            turn(TextPart("look"), ImagePart("image/png", PNG)),
            id="image-base64",
        ),
        pytest.param(
            body(user([image({"type": "url", "url": f"data:image/webp;base64,{PNG}"})])),
            turn(ImagePart("image/webp", PNG)),
            id="image-data-url",
        ),
        pytest.param(
            body(
                user("weather?"),
                assistant([{"type": "text", "text": "Checking."}, TOOL_USE]),
                user(
                    [
                        {
                            "type": "tool_result",
                            "tool_use_id": "toolu_1",
                            "content": "boom",
                            "is_error": True,
                        }
                    ]
                ),
            ),
            turn(
                ToolResultPart("toolu_1", (TextPart("boom"),), is_error=True),
                history=(
                    Message("user", (TextPart("weather?"),)),
                    Message(
                        "assistant",
                        (
                            TextPart("Checking."),
                            ToolUsePart("toolu_1", "get_weather", {"city": "Paris"}),
                        ),
                    ),
                ),
            ),
            id="tool_result-is_error",
        ),
        pytest.param(
            body(
                user(
                    [
                        {
                            "type": "tool_result",
                            "tool_use_id": "toolu_1",
                            "content": [{"type": "text", "text": "chart"}, image(BASE64_PNG)],
                        },
                        {"type": "text", "text": "what now?"},
                    ]
                )
            ),
            turn(
                ToolResultPart("toolu_1", (TextPart("chart"), ImagePart("image/png", PNG))),
                TextPart("what now?"),
            ),
            id="tool_result-blocks",
        ),
        pytest.param(
            body(
                user("2+2?"),
                assistant(
                    [
                        {"type": "thinking", "thinking": "easy", "signature": "sig"},
                        {"type": "redacted_thinking", "data": "opaque"},
                        {"type": "text", "text": "4"},
                    ]
                ),
                user("sure?"),
            ),
            turn(
                TextPart("sure?"),
                history=(
                    Message("user", (TextPart("2+2?"),)),
                    Message("assistant", (ThinkingPart("easy", "sig"), TextPart("4"))),
                ),
            ),
            id="thinking-kept-redacted-dropped",
        ),
        pytest.param(
            body(user("a"), user("b")),
            turn(TextPart("a"), TextPart("b")),
            id="consecutive-user-merged",
        ),
        pytest.param(body(metadata={"user_id": "u-1"}), turn(user="u-1"), id="metadata-user_id"),
        pytest.param(body(metadata={"user_id": 5}), turn(), id="metadata-user_id-not-string"),
        pytest.param(
            body(stop_sequences=["\n\nHuman:", "END"], stream=True),
            turn(stop=("\n\nHuman:", "END"), stream=True),
            id="stop_sequences-and-stream",
        ),
        pytest.param(
            {"model": "m", "messages": [user("hi")]}, turn(max_tokens=None), id="no-max_tokens"
        ),
        pytest.param(
            body(
                top_k=5,
                temperature=0.5,
                tools=[{"type": "web_search_20250305", "name": "web_search"}],
                context_management={"edits": []},
            ),
            turn(
                ignored=(
                    "temperature",
                    "top_k",
                    "context_management",
                    "tools[type=web_search_20250305]",
                )
            ),
            id="ignored-fields",
        ),
    ],
)
def test_parse_request(request_body: dict[str, Any], expected: Turn) -> None:
    assert parse_request(request_body) == expected


@pytest.mark.parametrize(
    ("request_body", "param"),
    [
        pytest.param("text", None, id="body-not-object"),
        pytest.param({"messages": [user("hi")]}, "model", id="model-missing"),
        pytest.param({"model": "m", "messages": "hi"}, "messages", id="messages-string"),
        pytest.param({"model": "m", "messages": []}, "messages", id="messages-empty"),
        pytest.param(body(max_tokens=0), "max_tokens", id="max_tokens-0"),
        pytest.param(body(max_tokens="64"), "max_tokens", id="max_tokens-string"),
        pytest.param(body(stop_sequences="END"), "stop_sequences", id="stop_sequences-string"),
        pytest.param(body(stop_sequences=[1]), "stop_sequences", id="stop_sequences-numbers"),
        pytest.param(body(metadata="u-1"), "metadata", id="metadata-string"),
        pytest.param(body(system=5), "system", id="system-number"),
        pytest.param(body(system=[{"type": "document"}]), "system[0].type", id="system-block"),
        pytest.param(body({"role": "system", "content": "x"}), "messages[0].role", id="role"),
        pytest.param(body(user(None)), "messages[0].content", id="content-null"),
        pytest.param(
            body(user([{"type": "text", "text": "a"}, {"type": "document", "source": {}}])),
            "messages[0].content[1].type",
            id="unsupported-block",
        ),
        pytest.param(body(user(["text"])), "messages[0].content[0]", id="block-not-object"),
        pytest.param(
            body(user([{"type": "text", "text": 5}])), "messages[0].content[0].text", id="text-5"
        ),
        pytest.param(
            body(user([image({"type": "url", "url": "https://x.test/cat.png"})])),
            "messages[0].content[0].source.url",
            id="image-http-url",
        ),
        pytest.param(
            body(user([image({"type": "file", "file_id": "f"})])),
            "messages[0].content[0].source.type",
            id="image-file-source",
        ),
        pytest.param(
            body(user([image(dict(BASE64_PNG, media_type="image/bmp"))])),
            "messages[0].content[0].source",
            id="image-type-unsupported",
        ),
        pytest.param(
            body(user([image({"type": "base64", "media_type": "image/png"})])),
            "messages[0].content[0].source.data",
            id="image-data-missing",
        ),
        pytest.param(
            body(user([{"type": "image"}])), "messages[0].content[0].source", id="image-no-source"
        ),
        pytest.param(
            body(
                user(
                    [
                        {
                            "type": "tool_result",
                            "tool_use_id": "t",
                            "content": [{"type": "search_result"}],
                        }
                    ]
                )
            ),
            "messages[0].content[0].content[0].type",
            id="tool_result-inner-block",
        ),
        pytest.param(
            body(user("hi"), assistant("Sure, here")), "messages", id="ends-with-assistant"
        ),
    ],
)
def test_parse_request_rejects(request_body: Any, param: str | None) -> None:
    with pytest.raises(InvalidRequest) as caught:
        parse_request(request_body)
    assert caught.value.param == param


# ---- tools, structured output, thinking, sessions ----

WEATHER_SCHEMA = {
    "type": "object",
    "properties": {"city": {"type": "string"}},
    "required": ["city"],
}
WEATHER_SPEC = ToolSpec("get_weather", "Weather for a city.", WEATHER_SCHEMA)
WEATHER_TOOL = {
    "name": "get_weather",
    "description": "Weather for a city.",
    "input_schema": WEATHER_SCHEMA,
}


def tool(**fields: Any) -> dict[str, Any]:
    return {**WEATHER_TOOL, **fields}


@pytest.mark.parametrize(
    ("request_body", "expected"),
    [
        pytest.param(body(tools=[tool()]), turn(tools=(WEATHER_SPEC,)), id="custom-tool"),
        pytest.param(
            body(
                tools=[
                    tool(
                        type="custom",
                        cache_control={"type": "ephemeral"},
                        eager_input_streaming=True,
                        strict=True,
                        input_examples=[{"city": "Paris"}],
                        defer_loading=False,
                    )
                ]
            ),
            turn(tools=(WEATHER_SPEC,)),
            id="custom-tool-extra-keys-tolerated",
        ),
        pytest.param(
            body(tools=[{"name": "now", "input_schema": {"type": "object"}}]),
            turn(tools=(ToolSpec("now", "", {"type": "object"}),)),
            id="custom-tool-no-description",
        ),
        pytest.param(
            body(
                tools=[
                    {"type": "web_search_20250305", "name": "web_search", "max_uses": 3},
                    tool(),
                    {"type": "bash_20250124", "name": "bash"},
                    {"type": "text_editor_20250728", "name": "str_replace_based_edit_tool"},
                    {"type": "computer_20250124", "name": "computer", "display_width_px": 1024},
                    {"type": "code_execution_20250825", "name": "code_execution"},
                    {"type": "web_search_20250305", "name": "web_search_2"},
                    {"type": "evil\nheader"},
                ]
            ),
            turn(
                tools=(WEATHER_SPEC,),
                ignored=(
                    "tools[type=web_search_20250305]",
                    "tools[type=bash_20250124]",
                    "tools[type=text_editor_20250728]",
                    "tools[type=computer_20250124]",
                    "tools[type=code_execution_20250825]",
                    "tools[type=unknown]",
                ),
            ),
            id="server-tools-ignored",
        ),
        pytest.param(
            body(tools=[tool()], tool_choice={"type": "auto"}),
            turn(tools=(WEATHER_SPEC,), tool_choice=ToolChoice("auto")),
            id="tool_choice-auto",
        ),
        pytest.param(
            body(tools=[tool()], tool_choice={"type": "any"}),
            turn(tools=(WEATHER_SPEC,), tool_choice=ToolChoice("required")),
            id="tool_choice-any",
        ),
        pytest.param(
            body(tools=[tool()], tool_choice={"type": "tool", "name": "get_weather"}),
            turn(tools=(WEATHER_SPEC,), tool_choice=ToolChoice("tool", "get_weather")),
            id="tool_choice-tool",
        ),
        pytest.param(
            body(tools=[tool()], tool_choice={"type": "none"}),
            turn(tools=(WEATHER_SPEC,), tool_choice=ToolChoice("none")),
            id="tool_choice-none",
        ),
        pytest.param(
            body(tool_choice={"type": "auto"}),
            turn(tool_choice=ToolChoice("auto")),
            id="tool_choice-auto-without-tools",
        ),
        pytest.param(
            body(tools=[tool()], tool_choice={"type": "auto", "disable_parallel_tool_use": True}),
            turn(tools=(WEATHER_SPEC,), tool_choice=ToolChoice("auto"), parallel_tool_calls=False),
            id="disable_parallel_tool_use",
        ),
        pytest.param(
            body(tools=[tool()], tool_choice={"type": "any", "disable_parallel_tool_use": False}),
            turn(
                tools=(WEATHER_SPEC,), tool_choice=ToolChoice("required"), parallel_tool_calls=True
            ),
            id="parallel-allowed",
        ),
        pytest.param(
            body(thinking={"type": "enabled", "budget_tokens": 1024}),
            turn(thinking_budget=1024),
            id="thinking-enabled",
        ),
        pytest.param(
            body(thinking={"type": "disabled"}), turn(thinking_budget=0), id="thinking-disabled"
        ),
        pytest.param(body(thinking={"type": "adaptive"}), turn(), id="thinking-adaptive"),
        *[
            pytest.param(
                body(output_config={"effort": effort}), turn(effort=effort), id=f"effort-{effort}"
            )
            for effort in ("low", "medium", "high", "xhigh", "max")
        ],
        pytest.param(
            body(output_config={"format": {"type": "json_schema", "schema": WEATHER_SCHEMA}}),
            turn(output_schema=WEATHER_SCHEMA, output_schema_field="output_config.format.schema"),
            id="output_config-format",
        ),
        pytest.param(
            body(output_format={"type": "json_schema", "schema": WEATHER_SCHEMA}),
            turn(output_schema=WEATHER_SCHEMA, output_schema_field="output_format.schema"),
            id="output_format",
        ),
        pytest.param(
            body(
                output_config={
                    "effort": "high",
                    "format": {"type": "json_schema", "schema": WEATHER_SCHEMA},
                },
                output_format={"type": "json_schema", "schema": {"type": "object"}},
            ),
            turn(
                effort="high",
                output_schema=WEATHER_SCHEMA,
                output_schema_field="output_config.format.schema",
            ),
            id="output_config-format-wins",
        ),
        pytest.param(
            body(output_config={"task_budget": {"total": 10}, "effort": None}),
            turn(ignored=("output_config.task_budget",)),
            id="output_config-unknown-key-ignored",
        ),
        pytest.param(
            body(session_id="s-1", ephemeral=True),
            turn(session_id="s-1", ephemeral=True),
            id="session_id-ephemeral",
        ),
    ],
)
def test_parse_request_options(request_body: dict[str, Any], expected: Turn) -> None:
    assert parse_request(request_body) == expected


@pytest.mark.parametrize(
    ("request_body", "param", "says"),
    [
        pytest.param(body(tools="all"), "tools", "must be an array", id="tools-string"),
        pytest.param(body(tools=[5]), "tools[0]", "must be an object", id="tool-number"),
        pytest.param(
            body(tools=[tool(name=None)]), "tools[0].name", "is required", id="name-missing"
        ),
        pytest.param(
            body(tools=[tool(name="get weather")]),
            "tools[0].name",
            "1 to 64 letters, digits, '_' or '-'",
            id="name-space",
        ),
        pytest.param(
            body(tools=[tool(name="x" * 65)]), "tools[0].name", "1 to 64", id="name-65-characters"
        ),
        pytest.param(
            body(tools=[tool(description=["a"])]),
            "tools[0].description",
            "must be a string",
            id="description-array",
        ),
        pytest.param(
            body(tools=[{"name": "now"}]),
            "tools[0].input_schema",
            "is required",
            id="input_schema-missing",
        ),
        pytest.param(
            body(tools=[tool(input_schema=[])]),
            "tools[0].input_schema",
            "must be an object",
            id="input_schema-array",
        ),
        pytest.param(
            body(tools=[tool(input_schema={"type": "array"})]),
            "tools[0].input_schema",
            "'type': 'object'",
            id="input_schema-not-object-schema",
        ),
        pytest.param(
            body(tools=[tool(), tool(type="custom")]),
            "tools[1].name",
            "Two tools are named 'get_weather'",
            id="duplicate-names",
        ),
        pytest.param(
            body(tools=[tool()], tool_choice="auto"),
            "tool_choice",
            "must be an object",
            id="tool_choice-string",
        ),
        pytest.param(
            body(tools=[tool()], tool_choice={"type": "required"}),
            "tool_choice.type",
            "must be auto, any, tool or none",
            id="tool_choice-unknown-type",
        ),
        pytest.param(
            body(tools=[tool()], tool_choice={"type": "tool"}),
            "tool_choice.name",
            "is required",
            id="tool_choice-tool-without-name",
        ),
        pytest.param(
            body(tools=[tool()], tool_choice={"type": "tool", "name": "get_time"}),
            "tool_choice.name",
            "'get_time', which is not among the declared tools (get_weather)",
            id="tool_choice-unknown-tool",
        ),
        pytest.param(
            body(tool_choice={"type": "any"}),
            "tool_choice",
            "declares no function tools",
            id="any-without-tools",
        ),
        pytest.param(
            body(
                tools=[{"type": "web_search_20250305", "name": "web_search"}],
                tool_choice={"type": "tool", "name": "web_search"},
            ),
            "tool_choice",
            "declares no function tools",
            id="tool_choice-server-tool",
        ),
        pytest.param(
            body(tools=[tool()], tool_choice={"type": "auto", "disable_parallel_tool_use": 1}),
            "tool_choice.disable_parallel_tool_use",
            "must be a boolean",
            id="disable_parallel_tool_use-number",
        ),
        pytest.param(
            body(thinking={"type": "enabled", "budget_tokens": 1023}),
            "thinking.budget_tokens",
            "must be at least 1024, not 1023",
            id="budget-too-small",
        ),
        pytest.param(
            body(thinking={"type": "enabled"}),
            "thinking.budget_tokens",
            "is required",
            id="budget-missing",
        ),
        pytest.param(
            body(thinking={"type": "enabled", "budget_tokens": "2048"}),
            "thinking.budget_tokens",
            "must be an integer",
            id="budget-string",
        ),
        pytest.param(
            body(thinking={"type": "on"}),
            "thinking.type",
            "must be enabled, disabled or adaptive",
            id="thinking-unknown-type",
        ),
        pytest.param(body(thinking=True), "thinking", "must be an object", id="thinking-bool"),
        pytest.param(
            body(output_config={"effort": "extreme"}),
            "output_config.effort",
            "must be one of low, medium, high, xhigh, max",
            id="effort-unknown",
        ),
        pytest.param(
            body(output_config="high"), "output_config", "must be an object", id="output_config-str"
        ),
        pytest.param(
            body(output_config={"format": {"type": "json"}}),
            "output_config.format.type",
            '{"type": "json_schema", "schema": {...}}',
            id="format-type",
        ),
        pytest.param(
            body(output_config={"format": {"type": "json_schema"}}),
            "output_config.format.schema",
            "not missing",
            id="format-schema-missing",
        ),
        pytest.param(
            body(output_format={"type": "json_schema", "schema": "{}"}),
            "output_format.schema",
            "not a string",
            id="output_format-schema-string",
        ),
        pytest.param(body(session_id=["s"]), "session_id", "must be a string", id="session_id"),
        pytest.param(body(ephemeral=1), "ephemeral", "must be a boolean", id="ephemeral-1"),
    ],
)
def test_parse_request_rejects_options(request_body: Any, param: str, says: str) -> None:
    with pytest.raises(InvalidRequest) as caught:
        parse_request(request_body)
    assert (caught.value.param, says in caught.value.message) == (param, True), caught.value.message


# As in the OpenAI test: JSON Schema 2020-12 with keywords and numbers a rewrite would damage.
SCHEMA_2020_12 = (
    '{"$schema":"https://json-schema.org/draft/2020-12/schema","type":"object",'
    '"properties":{"n":{"type":"integer","exclusiveMinimum":0,'
    '"maximum":1180591620717411303424,"minimum":-1180591620717411303424},'
    '"tags":{"type":"array","prefixItems":[{"type":"string"}],"unevaluatedItems":false},'
    '"when":{"$ref":"#/$defs/when"}},"required":["n"],'
    '"$defs":{"when":{"type":["string","null"],"$comment":"é"}}}'
)


def compact(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"))


def test_schemas_pass_through_byte_identical() -> None:
    raw = (
        '{"model":"m","max_tokens":64,"messages":[{"role":"user","content":"hi"}],'
        '"tools":[{"name":"f","input_schema":SCHEMA}],'
        '"output_config":{"format":{"type":"json_schema","schema":SCHEMA}}}'
    ).replace("SCHEMA", SCHEMA_2020_12)
    parsed = parse_request(json.loads(raw))
    assert compact(parsed.tools[0].input_schema) == SCHEMA_2020_12
    assert compact(parsed.output_schema) == SCHEMA_2020_12


# ---- count_tokens ----


def test_count_tokens_needs_no_max_tokens_and_never_streams() -> None:
    request = {"model": "m", "messages": [user("hi")], "stream": True, "tools": [WEATHER_TOOL]}
    assert parse_count_tokens(request) == turn(max_tokens=None, tools=(WEATHER_SPEC,))


def test_count_tokens_ignores_max_tokens() -> None:
    assert parse_count_tokens(body(max_tokens=0)) == turn(max_tokens=None)


def test_count_tokens_may_end_with_the_assistant() -> None:
    request = {"model": "m", "messages": [user("hi"), assistant("Hello")]}
    assert parse_count_tokens(request) == turn(
        max_tokens=None,
        prompt=(),
        history=(Message("user", (TextPart("hi"),)), Message("assistant", (TextPart("Hello"),))),
    )


@pytest.mark.parametrize(
    ("request_body", "param"),
    [
        pytest.param({"messages": [user("hi")]}, "model", id="model-missing"),
        pytest.param({"model": "m", "messages": []}, "messages", id="messages-empty"),
        pytest.param(
            {"model": "m", "messages": [user("hi")], "thinking": {"type": "enabled"}},
            "thinking.budget_tokens",
            id="thinking-budget-missing",
        ),
    ],
)
def test_count_tokens_rejects(request_body: Any, param: str) -> None:
    with pytest.raises(InvalidRequest) as caught:
        parse_count_tokens(request_body)
    assert caught.value.param == param


def test_count_tokens_body() -> None:
    assert count_tokens_body(42) == {"input_tokens": 42}


# ---- streaming ----


def decode(frames: list[bytes]) -> list[tuple[str, dict[str, Any]]]:
    out = []
    for frame in frames:
        head, data, tail = frame.split(b"\n", 2)
        assert head.startswith(b"event: ")
        assert data.startswith(b"data: ")
        assert tail == b"\n"
        name, payload = head[len(b"event: ") :].decode(), json.loads(data[len(b"data: ") :])
        assert payload["type"] == name
        out.append((name, payload))
    return out


def messages_stream(events: list[CliEvent], stops: tuple[str, ...] = ()) -> list[Any]:
    translator = MessagesStream(message_id="msg_x", model="m", stops=stops)
    return decode([frame for event in events for frame in translator.feed(event)])


def usage(inp: int, out: int) -> dict[str, int]:
    return {
        "input_tokens": inp,
        "output_tokens": out,
        "cache_read_input_tokens": 0,
        "cache_creation_input_tokens": 0,
    }


def message_start(input_tokens: int) -> tuple[str, dict[str, Any]]:
    message = {
        "id": "msg_x",
        "type": "message",
        "role": "assistant",
        "model": "m",
        "content": [],
        "stop_reason": None,
        "stop_sequence": None,
        "usage": usage(input_tokens, 1),
    }
    return ("message_start", {"type": "message_start", "message": message})


PING = ("ping", {"type": "ping"})


def block_start(index: int, block: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    return (
        "content_block_start",
        {"type": "content_block_start", "index": index, "content_block": block},
    )


def delta(index: int, kind: str, **fields: str) -> tuple[str, dict[str, Any]]:
    body = {"type": "content_block_delta", "index": index, "delta": {"type": kind, **fields}}
    return ("content_block_delta", body)


def text(index: int, piece: str) -> tuple[str, dict[str, Any]]:
    return delta(index, "text_delta", text=piece)


def block_stop(index: int) -> tuple[str, dict[str, Any]]:
    return ("content_block_stop", {"type": "content_block_stop", "index": index})


def ending(
    reason: str, inp: int, out: int, stop_sequence: str | None = None
) -> list[tuple[str, dict[str, Any]]]:
    return [
        (
            "message_delta",
            {
                "type": "message_delta",
                "delta": {"stop_reason": reason, "stop_sequence": stop_sequence},
                "usage": usage(inp, out),
            },
        ),
        ("message_stop", {"type": "message_stop"}),
    ]


TEXT_BLOCK = {"type": "text", "text": ""}

TRANSCRIPTS = [
    pytest.param(
        "text",
        [
            message_start(11),
            PING,
            block_start(0, TEXT_BLOCK),
            text(0, "Hel"),
            text(0, "lo, "),
            text(0, "world"),
            text(0, "!"),
            block_stop(0),
            *ending("end_turn", 11, 7),
        ],
        id="text",
    ),
    pytest.param(
        "thinking_text",
        [
            message_start(11),
            PING,
            block_start(0, {"type": "thinking", "thinking": "", "signature": ""}),
            delta(0, "thinking_delta", thinking="Let me "),
            delta(0, "thinking_delta", thinking="think."),
            delta(0, "signature_delta", signature="sig-test"),
            block_stop(0),
            block_start(1, TEXT_BLOCK),
            text(1, "The answer"),
            text(1, " is 4."),
            block_stop(1),
            *ending("end_turn", 11, 7),
        ],
        id="thinking_text",
    ),
    pytest.param(
        "tool_use",
        [
            message_start(11),
            PING,
            block_start(0, TEXT_BLOCK),
            text(0, "Checking."),
            block_stop(0),
            block_start(1, {"type": "tool_use", "id": TOOL_ID, "name": "lookup", "input": {}}),
            delta(1, "input_json_delta", partial_json='{"q": "w'),
            delta(1, "input_json_delta", partial_json='eather",'),
            delta(1, "input_json_delta", partial_json=' "n": 2}'),
            block_stop(1),
            block_start(2, TEXT_BLOCK),
            text(2, "echo: "),
            text(2, "hi"),
            block_stop(2),
            *ending("end_turn", 22, 14),
        ],
        id="tool_use",
    ),
    pytest.param(
        "cut_stream",
        [
            message_start(11),
            PING,
            block_start(0, TEXT_BLOCK),
            text(0, "echo: hi"),
            block_stop(0),
            *ending("end_turn", 11, 7),
        ],
        id="cut_stream",
    ),
]


@pytest.mark.parametrize(("name", "expected"), TRANSCRIPTS)
def test_stream(name: str, expected: list[tuple[str, dict[str, Any]]]) -> None:
    assert messages_stream(replay(lines(name))) == expected


def test_stream_event_order() -> None:
    names = [name for name, _ in messages_stream(replay(lines("text")))]
    assert names == [
        "message_start",
        "ping",
        "content_block_start",
        "content_block_delta",
        "content_block_delta",
        "content_block_delta",
        "content_block_delta",
        "content_block_stop",
        "message_delta",
        "message_stop",
    ]


def texts_of(events: list[tuple[str, dict[str, Any]]]) -> str:
    return "".join(
        e["delta"]["text"]
        for name, e in events
        if name == "content_block_delta" and e["delta"]["type"] == "text_delta"
    )


def stop_of(events: list[tuple[str, dict[str, Any]]]) -> list[dict[str, Any]]:
    return [e["delta"] for name, e in events if name == "message_delta"]


def test_max_tokens_transcript_stops_with_max_tokens() -> None:
    # As in the OpenAI test: the CLI's own "Resume directly" continuation is not part of
    # the answer the client limited with max_tokens.
    events = messages_stream(replay(lines("max_tokens")))
    assert (texts_of(events), stop_of(events)) == (
        "cut short",
        [{"stop_reason": "max_tokens", "stop_sequence": None}],
    )


@pytest.mark.parametrize(
    ("stops", "content", "matched"),
    [
        pytest.param(("lo, w",), "Hel", "lo, w", id="spans-two-deltas"),
        pytest.param(("world", "o"), "Hell", "o", id="earliest-wins"),
        pytest.param(("!",), "Hello, world", "!", id="last-delta"),
    ],
)
def test_stream_stop_sequences(stops: tuple[str, ...], content: str, matched: str) -> None:
    events = messages_stream(replay(lines("text")), stops)
    assert texts_of(events) == content
    assert [name for name, _ in events if name != "content_block_delta"] == [
        "message_start",
        "ping",
        "content_block_start",
        "content_block_stop",
        "message_delta",
        "message_stop",
    ]
    assert events[-2:] == ending("stop_sequence", 11, 7, matched)


def test_stream_stop_sequence_not_found() -> None:
    events = messages_stream(replay(lines("text")), ("zzz",))
    assert texts_of(events) == "Hello, world!"
    assert events[-2:] == ending("end_turn", 11, 7)


def test_stream_stop_sequence_ends_the_answer_before_later_blocks() -> None:
    # "Check" matches at the very start of block 0: no later block (the tool call, the
    # second model call's text) belongs to the answer.
    events = messages_stream(replay(lines("tool_use")), ("Check",))
    assert events == [
        message_start(11),
        PING,
        block_start(0, TEXT_BLOCK),
        block_stop(0),
        *ending("stop_sequence", 22, 14, "Check"),
    ]


# ---- whole answers ----


def collect(events: list[CliEvent], stops: tuple[str, ...] = ()) -> Collector:
    collector = Collector(stops)
    for event in events:
        collector.feed(event)
    return collector


def message(
    content: list[dict[str, Any]],
    reason: str,
    inp: int,
    out: int,
    stop_sequence: str | None = None,
) -> dict[str, Any]:
    return {
        "id": "msg_x",
        "type": "message",
        "role": "assistant",
        "model": "m",
        "content": content,
        "stop_reason": reason,
        "stop_sequence": stop_sequence,
        "usage": usage(inp, out),
    }


@pytest.mark.parametrize(
    ("name", "stops", "expected"),
    [
        pytest.param(
            "text",
            (),
            message([{"type": "text", "text": "Hello, world!"}], "end_turn", 11, 7),
            id="text",
        ),
        pytest.param(
            "text",
            ("lo, w",),
            message([{"type": "text", "text": "Hel"}], "stop_sequence", 11, 7, "lo, w"),
            id="text-with-stop",
        ),
        pytest.param(
            "thinking_text",
            (),
            message(
                [
                    {"type": "thinking", "thinking": "Let me think.", "signature": "sig-test"},
                    {"type": "text", "text": "The answer is 4."},
                ],
                "end_turn",
                11,
                7,
            ),
            id="thinking_text",
        ),
        pytest.param(
            "tool_use",
            (),
            message(
                [
                    {"type": "text", "text": "Checking."},
                    {
                        "type": "tool_use",
                        "id": TOOL_ID,
                        "name": "lookup",
                        "input": {"q": "weather", "n": 2},
                    },
                    {"type": "text", "text": "echo: hi"},
                ],
                "end_turn",
                22,
                14,
            ),
            id="tool_use",
        ),
        pytest.param(
            "cut_stream",
            (),
            message([{"type": "text", "text": "echo: hi"}], "end_turn", 11, 7),
            id="cut_stream",
        ),
    ],
)
def test_message_body(name: str, stops: tuple[str, ...], expected: dict[str, Any]) -> None:
    collector = collect(replay(lines(name)), stops)
    assert message_body(collector, message_id="msg_x", model="m") == expected


def test_message_body_max_tokens_transcript() -> None:
    collector = collect(replay(lines("max_tokens")))
    body = message_body(collector, message_id="msg_x", model="m")
    assert (body["content"], body["stop_reason"]) == (
        [{"type": "text", "text": "cut short"}],
        "max_tokens",
    )


def test_message_body_stop_sequence_drops_later_blocks() -> None:
    collector = collect(replay(lines("tool_use")), ("Check",))
    body = message_body(collector, message_id="msg_x", model="m")
    assert (body["content"], body["stop_reason"], body["stop_sequence"]) == (
        [{"type": "text", "text": ""}],
        "stop_sequence",
        "Check",
    )
