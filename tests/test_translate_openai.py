"""OpenAI Chat Completions: request bodies to turns, recorded transcripts to exact chunks."""

from __future__ import annotations

import dataclasses
import json
from typing import Any

import pytest
from transcripts import lines, replay

from tray_app.errors import InvalidRequest
from tray_app.protocol.common import Collector, tool_choice_hint
from tray_app.protocol.model import (
    CliEvent,
    ImagePart,
    Message,
    TextPart,
    ToolChoice,
    ToolResultPart,
    ToolSpec,
    ToolUsePart,
    Turn,
)
from tray_app.protocol.openai_chat import ChatStream, completion_body, parse_request

PNG = "iVBORw0KGgo="
TOOL_ID = "toolu_cb7d3dc9c3614dbbb648"


def user(content: Any) -> dict[str, Any]:
    return {"role": "user", "content": content}


def body(*messages: dict[str, Any], **fields: Any) -> dict[str, Any]:
    return {"model": "m", "messages": list(messages) or [user("hi")], **fields}


def turn(*prompt: Any, **fields: Any) -> Turn:
    base: dict[str, Any] = {
        "api": "openai",
        "model": "m",
        "system": None,
        "history": (),
        "prompt": prompt or (TextPart("hi"),),
        "stream": False,
    }
    return Turn(**{**base, **fields})


# ---- parse_request ----

WEATHER_CALL = {
    "id": "call_1",
    "type": "function",
    "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'},
}


@pytest.mark.parametrize(
    ("request_body", "expected"),
    [
        pytest.param(body(user("hi")), turn(TextPart("hi")), id="string-content"),
        pytest.param(
            body(user([{"type": "text", "text": "a"}, {"type": "text", "text": "b"}])),
            turn(TextPart("a"), TextPart("b")),
            id="array-content",
        ),
        pytest.param(
            body(
                user(
                    [
                        {"type": "text", "text": "look"},
                        {
                            "type": "image_url",
                            "image_url": {"url": f"data:image/png;base64,{PNG}", "detail": "low"},
                        },
                    ]
                )
            ),
            turn(TextPart("look"), ImagePart("image/png", PNG)),
            id="image-data-url",
        ),
        pytest.param(
            body(
                {"role": "system", "content": "Be brief."},
                {"role": "developer", "content": [{"type": "text", "text": "Use French."}]},
                user("hi"),
            ),
            turn(system="Be brief.\n\nUse French."),
            id="system-and-developer-joined",
        ),
        pytest.param(
            body(user("a"), user("b")),
            turn(TextPart("a"), TextPart("b")),
            id="consecutive-user-merged",
        ),
        pytest.param(
            body(user("q1"), {"role": "assistant", "content": "a1"}, user("q2")),
            turn(
                TextPart("q2"),
                history=(
                    Message("user", (TextPart("q1"),)),
                    Message("assistant", (TextPart("a1"),)),
                ),
            ),
            id="history",
        ),
        pytest.param(
            body(
                user("weather?"),
                {"role": "assistant", "content": None, "tool_calls": [WEATHER_CALL]},
                {"role": "tool", "tool_call_id": "call_1", "content": "sunny"},
            ),
            turn(
                ToolResultPart("call_1", (TextPart("sunny"),)),
                history=(
                    Message("user", (TextPart("weather?"),)),
                    Message(
                        "assistant", (ToolUsePart("call_1", "get_weather", {"city": "Paris"}),)
                    ),
                ),
            ),
            id="tool-message-becomes-tool-result",
        ),
        pytest.param(
            body(
                user("weather?"),
                {"role": "assistant", "content": None, "tool_calls": [WEATHER_CALL]},
                {"role": "tool", "tool_call_id": "call_1", "content": "sunny"},
                user("thanks"),
            ),
            turn(
                ToolResultPart("call_1", (TextPart("sunny"),)),
                TextPart("thanks"),
                history=(
                    Message("user", (TextPart("weather?"),)),
                    Message(
                        "assistant", (ToolUsePart("call_1", "get_weather", {"city": "Paris"}),)
                    ),
                ),
            ),
            id="tool-result-merged-with-next-user",
        ),
        pytest.param(
            body(max_completion_tokens=5, max_tokens=9),
            turn(max_tokens=5),
            id="max_completion_tokens-wins",
        ),
        pytest.param(body(max_tokens=9), turn(max_tokens=9), id="max_tokens"),
        pytest.param(body(max_tokens=9.0), turn(max_tokens=9), id="max_tokens-integral-float"),
        pytest.param(
            body(stream=True, stream_options={"include_usage": True}),
            turn(stream=True, include_usage=True),
            id="stream-with-usage",
        ),
        pytest.param(body(stop="END"), turn(stop=("END",)), id="stop-string"),
        pytest.param(body(stop=["a", "b"]), turn(stop=("a", "b")), id="stop-list"),
        pytest.param(body(n=1, user="u-1"), turn(user="u-1"), id="n-1-and-user"),
        pytest.param(
            body(
                tools=[{"type": "custom", "custom": {"name": "apply_patch"}}],
                temperature=0.2,
                seed=7,
                top_p=None,
            ),
            turn(ignored=("temperature", "seed", "tools[type=custom]")),
            id="ignored-fields",
        ),
        pytest.param(
            body({"role": "assistant", "content": "earlier"}, user("hi")),
            turn(
                history=(
                    Message("user", (TextPart("(conversation start)"),)),
                    Message("assistant", (TextPart("earlier"),)),
                ),
            ),
            id="history-opening-with-assistant",
        ),
    ],
)
def test_parse_request(request_body: dict[str, Any], expected: Turn) -> None:
    assert parse_request(request_body) == expected


@pytest.mark.parametrize(
    ("request_body", "param"),
    [
        pytest.param(["not", "an", "object"], None, id="body-not-object"),
        pytest.param({"messages": [user("hi")]}, "model", id="model-missing"),
        pytest.param(body(model=5), "model", id="model-not-string"),
        pytest.param({"model": "m", "messages": {"role": "user"}}, "messages", id="messages-dict"),
        pytest.param({"model": "m", "messages": []}, "messages", id="messages-empty"),
        pytest.param(body(n=2), "n", id="n-2"),
        pytest.param(body({"role": "robot", "content": "x"}), "messages[0].role", id="bad-role"),
        pytest.param(body({"content": "x"}), "messages[0].role", id="role-missing"),
        pytest.param(body("hi"), "messages[0]", id="message-not-object"),
        pytest.param(body(user(5)), "messages[0].content", id="content-number"),
        pytest.param(body(stop=[1]), "stop", id="stop-not-strings"),
        pytest.param(body(stop=5), "stop", id="stop-number"),
        pytest.param(body(max_tokens=0), "max_tokens", id="max_tokens-0"),
        pytest.param(body(max_tokens=9.5), "max_tokens", id="max_tokens-fraction"),
        pytest.param(body(max_completion_tokens=True), "max_completion_tokens", id="max-bool"),
        pytest.param(
            body(stream_options={"include_usage": "yes"}),
            "stream_options.include_usage",
            id="include_usage-string",
        ),
        pytest.param(
            body(
                user(
                    [
                        {"type": "text", "text": "look"},
                        {"type": "image_url", "image_url": {"url": "https://x.test/cat.png"}},
                    ]
                )
            ),
            "messages[0].content[1].image_url",
            id="http-image-url",
        ),
        pytest.param(
            body(user([{"type": "image_url", "image_url": {"url": "data:image/bmp;base64,Qk0="}}])),
            "messages[0].content[0].image_url",
            id="image-type-unsupported",
        ),
        pytest.param(
            body(user([{"type": "input_audio", "input_audio": {}}])),
            "messages[0].content[0].type",
            id="part-type-unsupported",
        ),
        pytest.param(
            body(user([{"type": "text"}])), "messages[0].content[0].text", id="text-missing"
        ),
        pytest.param(
            body(user("hi"), {"role": "assistant", "content": "prefill"}),
            "messages",
            id="ends-with-assistant",
        ),
        pytest.param(
            body({"role": "system", "content": "only a system prompt"}),
            "messages",
            id="no-conversation",
        ),
        pytest.param(
            body(
                user("q"),
                {
                    "role": "assistant",
                    "tool_calls": [{"id": "c", "function": {"name": "f", "arguments": "{"}}],
                },
                user("r"),
            ),
            "messages[1].tool_calls[0].function.arguments",
            id="tool-arguments-not-json",
        ),
    ],
)
def test_parse_request_rejects(request_body: Any, param: str | None) -> None:
    with pytest.raises(InvalidRequest) as caught:
        parse_request(request_body)
    assert caught.value.param == param


# ---- tools, structured output, reasoning, sessions ----

WEATHER_SCHEMA = {
    "type": "object",
    "properties": {"city": {"type": "string"}},
    "required": ["city"],
}
WEATHER_SPEC = ToolSpec("get_weather", "Weather for a city.", WEATHER_SCHEMA)
NO_ARGS = {"type": "object", "properties": {}}


def function_tool(name: str = "get_weather", **fields: Any) -> dict[str, Any]:
    function = {"name": name, "description": "Weather for a city.", "parameters": WEATHER_SCHEMA}
    return {"type": "function", "function": {**function, **fields}}


def named(name: str) -> dict[str, Any]:
    return {"type": "function", "function": {"name": name}}


@pytest.mark.parametrize(
    ("request_body", "expected"),
    [
        pytest.param(
            body(tools=[function_tool(strict=True)]),
            turn(tools=(WEATHER_SPEC,)),
            id="function-tool",
        ),
        pytest.param(
            body(tools=[{"type": "function", "function": {"name": "now"}}]),
            turn(tools=(ToolSpec("now", "", NO_ARGS),)),
            id="function-tool-defaults",
        ),
        pytest.param(
            body(tools=[{"function": {"name": "now", "description": None, "parameters": None}}]),
            turn(tools=(ToolSpec("now", "", NO_ARGS),)),
            id="function-tool-type-omitted-nulls",
        ),
        pytest.param(
            body(tools=[{"type": "function", "function": {"name": "A-z_09", "parameters": {}}}]),
            turn(tools=(ToolSpec("A-z_09", "", {"type": "object"}),)),
            id="empty-parameters-object",
        ),
        pytest.param(
            body(tools=[function_tool(parameters={"properties": {"q": {"type": "string"}}})]),
            turn(
                tools=(
                    ToolSpec(
                        "get_weather",
                        "Weather for a city.",
                        {"type": "object", "properties": {"q": {"type": "string"}}},
                    ),
                )
            ),
            id="parameters-without-type-get-object",
        ),
        pytest.param(
            body(tools=[function_tool(name="a" * 64)]),
            turn(tools=(ToolSpec("a" * 64, "Weather for a city.", WEATHER_SCHEMA),)),
            id="name-64-characters",
        ),
        pytest.param(body(tools=[]), turn(), id="tools-empty"),
        pytest.param(
            body(
                tools=[
                    {"type": "custom", "custom": {"name": "apply_patch"}},
                    function_tool(),
                    {"type": "custom", "custom": {"name": "grep"}},
                    {"type": "web_search"},
                    {"type": "bad\r\nX-Evil: 1"},
                    {"type": 5},
                ]
            ),
            turn(
                tools=(WEATHER_SPEC,),
                ignored=(
                    "tools[type=custom]",
                    "tools[type=web_search]",
                    "tools[type=unknown]",
                ),
            ),
            id="non-function-tools-ignored",
        ),
        pytest.param(
            body(tools=[function_tool()], tool_choice="auto"),
            turn(tools=(WEATHER_SPEC,), tool_choice=ToolChoice("auto")),
            id="tool_choice-auto",
        ),
        pytest.param(
            body(tools=[function_tool()], tool_choice="none"),
            turn(tools=(WEATHER_SPEC,), tool_choice=ToolChoice("none")),
            id="tool_choice-none",
        ),
        pytest.param(
            body(tools=[function_tool()], tool_choice="required"),
            turn(tools=(WEATHER_SPEC,), tool_choice=ToolChoice("required")),
            id="tool_choice-required",
        ),
        pytest.param(
            body(tools=[function_tool()], tool_choice=named("get_weather")),
            turn(tools=(WEATHER_SPEC,), tool_choice=ToolChoice("tool", "get_weather")),
            id="tool_choice-named",
        ),
        pytest.param(
            body(tool_choice="none"), turn(tool_choice=ToolChoice("none")), id="none-without-tools"
        ),
        pytest.param(
            body(tool_choice="auto"), turn(tool_choice=ToolChoice("auto")), id="auto-without-tools"
        ),
        pytest.param(
            body(tools=[function_tool()], parallel_tool_calls=False),
            turn(tools=(WEATHER_SPEC,), parallel_tool_calls=False),
            id="parallel_tool_calls",
        ),
        pytest.param(
            body(
                functions=[{"name": "now"}, function_tool()["function"]],
                function_call={"name": "now"},
            ),
            turn(
                tools=(ToolSpec("now", "", NO_ARGS), WEATHER_SPEC),
                tool_choice=ToolChoice("tool", "now"),
            ),
            id="legacy-functions",
        ),
        pytest.param(
            body(functions=[{"name": "now"}], function_call="none"),
            turn(tools=(ToolSpec("now", "", NO_ARGS),), tool_choice=ToolChoice("none")),
            id="legacy-function_call-none",
        ),
        pytest.param(
            body(
                tools=[function_tool()],
                functions=[{"name": "now"}],
                tool_choice="required",
                function_call="none",
            ),
            turn(
                tools=(WEATHER_SPEC, ToolSpec("now", "", NO_ARGS)),
                tool_choice=ToolChoice("required"),
            ),
            id="tools-and-functions-tool_choice-wins",
        ),
        pytest.param(
            body(
                user("time?"),
                {"role": "assistant", "function_call": {"name": "now", "arguments": "{}"}},
                {"role": "function", "name": "now", "content": "noon"},
                functions=[{"name": "now"}],
            ),
            turn(
                ToolResultPart("call_legacy_1", (TextPart("noon"),)),
                history=(
                    Message("user", (TextPart("time?"),)),
                    Message("assistant", (ToolUsePart("call_legacy_1", "now", {}),)),
                ),
                tools=(ToolSpec("now", "", NO_ARGS),),
            ),
            id="legacy-function-history-paired",
        ),
        pytest.param(
            body(
                user("chart?"),
                {
                    "role": "assistant",
                    "content": None,
                    "tool_calls": [
                        {"id": "c1", "type": "function", "function": {"name": "f", "arguments": ""}}
                    ],
                },
                {
                    "role": "tool",
                    "tool_call_id": "c1",
                    "content": [
                        {"type": "text", "text": "chart:"},
                        {"type": "image_url", "image_url": {"url": f"data:image/png;base64,{PNG}"}},
                    ],
                },
            ),
            turn(
                ToolResultPart("c1", (TextPart("chart:"), ImagePart("image/png", PNG))),
                history=(
                    Message("user", (TextPart("chart?"),)),
                    Message("assistant", (ToolUsePart("c1", "f", {}),)),
                ),
            ),
            id="tool-message-text-and-image-parts",
        ),
        pytest.param(body(response_format={"type": "text"}), turn(), id="response_format-text"),
        pytest.param(
            body(response_format={"type": "json_object"}),
            turn(output_schema={"type": "object"}),
            id="response_format-json_object",
        ),
        pytest.param(
            body(
                response_format={
                    "type": "json_schema",
                    "json_schema": {"name": "w", "schema": WEATHER_SCHEMA, "strict": True},
                }
            ),
            turn(
                output_schema=WEATHER_SCHEMA,
                output_schema_field="response_format.json_schema.schema",
            ),
            id="response_format-json_schema",
        ),
        pytest.param(body(reasoning_effort="minimal"), turn(effort="low"), id="effort-minimal"),
        pytest.param(body(reasoning_effort="low"), turn(effort="low"), id="effort-low"),
        pytest.param(body(reasoning_effort="medium"), turn(effort="medium"), id="effort-medium"),
        pytest.param(body(reasoning_effort="high"), turn(effort="high"), id="effort-high"),
        pytest.param(body(reasoning_effort="xhigh"), turn(effort="xhigh"), id="effort-xhigh"),
        pytest.param(body(reasoning_effort="none"), turn(thinking_budget=0), id="effort-none"),
        pytest.param(
            body(session_id="s-1", ephemeral=True),
            turn(session_id="s-1", ephemeral=True),
            id="session_id-ephemeral",
        ),
        pytest.param(body(session_id="", ephemeral=False), turn(), id="session_id-empty"),
    ],
)
def test_parse_request_options(request_body: dict[str, Any], expected: Turn) -> None:
    assert parse_request(request_body) == expected


def call(arguments: Any) -> dict[str, Any]:
    return {"id": "c", "type": "function", "function": {"name": "f", "arguments": arguments}}


@pytest.mark.parametrize(
    ("request_body", "param", "says"),
    [
        pytest.param(body(tools={"a": 1}), "tools", "must be an array", id="tools-object"),
        pytest.param(body(tools=["f"]), "tools[0]", "must be an object", id="tool-string"),
        pytest.param(
            body(tools=[{"type": "function"}]),
            "tools[0].function",
            "is required",
            id="function-missing",
        ),
        pytest.param(
            body(tools=[{"type": "function", "function": {}}]),
            "tools[0].function.name",
            "is required",
            id="name-missing",
        ),
        pytest.param(
            body(tools=[function_tool(name="get weather")]),
            "tools[0].function.name",
            "1 to 64 letters, digits, '_' or '-'",
            id="name-space",
        ),
        pytest.param(
            body(tools=[function_tool(name="a" * 65)]),
            "tools[0].function.name",
            "1 to 64",
            id="name-65-characters",
        ),
        pytest.param(
            body(tools=[function_tool(name="fs.read")]),
            "tools[0].function.name",
            "not allowed",
            id="name-dot",
        ),
        pytest.param(
            body(tools=[function_tool(description=5)]),
            "tools[0].function.description",
            "must be a string",
            id="description-number",
        ),
        pytest.param(
            body(tools=[function_tool(parameters=["city"])]),
            "tools[0].function.parameters",
            "must be a JSON Schema object, not an array",
            id="parameters-array",
        ),
        pytest.param(
            body(tools=[function_tool(parameters={"type": "string"})]),
            "tools[0].function.parameters",
            "'type': 'object'",
            id="parameters-not-object-schema",
        ),
        pytest.param(
            body(tools=[function_tool(strict="yes")]),
            "tools[0].function.strict",
            "must be a boolean",
            id="strict-string",
        ),
        pytest.param(
            body(tools=[function_tool(), function_tool()]),
            "tools[1].function.name",
            "Two tools are named 'get_weather'",
            id="duplicate-names",
        ),
        pytest.param(
            body(tools=[function_tool()], functions=[{"name": "get_weather"}]),
            "functions[0].name",
            "must be unique",
            id="duplicate-across-tools-and-functions",
        ),
        pytest.param(
            body(functions=[{"name": "now", "parameters": "{}"}]),
            "functions[0].parameters",
            "not a string",
            id="legacy-parameters-string",
        ),
        pytest.param(
            body(tools=[function_tool()], tool_choice=named("get_time")),
            "tool_choice.function.name",
            "'get_time', which is not among the declared tools (get_weather)",
            id="tool_choice-unknown-tool",
        ),
        pytest.param(
            body(tool_choice="required"),
            "tool_choice",
            "declares no function tools",
            id="required-without-tools",
        ),
        pytest.param(
            body(tool_choice=named("f")),
            "tool_choice",
            "declares no function tools",
            id="named-without-tools",
        ),
        pytest.param(
            body(tools=[{"type": "custom", "custom": {"name": "f"}}], tool_choice="required"),
            "tool_choice",
            "declares no function tools",
            id="required-with-only-custom-tools",
        ),
        pytest.param(
            body(tools=[function_tool()], tool_choice="sometimes"),
            "tool_choice",
            "must be 'none', 'auto', 'required' or",
            id="tool_choice-unknown-string",
        ),
        pytest.param(
            body(
                tools=[function_tool()],
                tool_choice={"type": "allowed_tools", "allowed_tools": {"mode": "auto"}},
            ),
            "tool_choice",
            "other forms are not supported",
            id="tool_choice-allowed_tools",
        ),
        pytest.param(
            body(tools=[function_tool()], tool_choice={"type": "function", "function": {}}),
            "tool_choice.function.name",
            "is required",
            id="tool_choice-name-missing",
        ),
        pytest.param(
            body(functions=[{"name": "now"}], function_call="required"),
            "function_call",
            "must be 'none', 'auto' or",
            id="function_call-required",
        ),
        pytest.param(
            body(functions=[{"name": "now"}], function_call={"name": "later"}),
            "function_call.name",
            "'later', which is not among the declared tools (now)",
            id="function_call-unknown",
        ),
        pytest.param(
            body(parallel_tool_calls="no"),
            "parallel_tool_calls",
            "must be a boolean",
            id="parallel_tool_calls-string",
        ),
        pytest.param(
            body(response_format={"type": "xml"}),
            "response_format.type",
            "'text', 'json_object' or 'json_schema'",
            id="response_format-unknown",
        ),
        pytest.param(
            body(response_format="json"),
            "response_format",
            "must be an object",
            id="response_format-string",
        ),
        pytest.param(
            body(response_format={"type": "json_schema"}),
            "response_format.json_schema",
            "is required",
            id="json_schema-missing",
        ),
        pytest.param(
            body(response_format={"type": "json_schema", "json_schema": {"name": "w"}}),
            "response_format.json_schema.schema",
            "must be a JSON Schema object, not missing",
            id="schema-missing",
        ),
        pytest.param(
            body(
                response_format={"type": "json_schema", "json_schema": {"name": "w", "schema": []}}
            ),
            "response_format.json_schema.schema",
            "must be a JSON Schema object, not an array",
            id="schema-array",
        ),
        pytest.param(
            body(reasoning_effort="max"),
            "reasoning_effort",
            "must be one of none, minimal, low, medium, high, xhigh",
            id="effort-max",
        ),
        pytest.param(
            body(reasoning_effort=1), "reasoning_effort", "must be a string", id="effort-number"
        ),
        pytest.param(body(session_id=5), "session_id", "must be a string", id="session_id-5"),
        pytest.param(
            body(session_id="s" * 257), "session_id", "longer than 256", id="session_id-long"
        ),
        pytest.param(body(ephemeral="yes"), "ephemeral", "must be a boolean", id="ephemeral-yes"),
        pytest.param(
            body(user("q"), {"role": "assistant", "tool_calls": [call("[1, 2]")]}, user("r")),
            "messages[1].tool_calls[0].function.arguments",
            "must encode a JSON object",
            id="arguments-array",
        ),
        pytest.param(
            body(user("q"), {"role": "assistant", "tool_calls": [call('"x"')]}, user("r")),
            "messages[1].tool_calls[0].function.arguments",
            "must encode a JSON object",
            id="arguments-string",
        ),
        pytest.param(
            body(user("q"), {"role": "assistant", "tool_calls": [call("{'a': 1}")]}, user("r")),
            "messages[1].tool_calls[0].function.arguments",
            "is not valid JSON",
            id="arguments-python-repr",
        ),
        pytest.param(
            body(
                user("q"),
                {"role": "assistant", "function_call": {"name": "f", "arguments": "{"}},
                user("r"),
            ),
            "messages[1].function_call.arguments",
            "is not valid JSON",
            id="legacy-arguments-not-json",
        ),
        pytest.param(
            body(user("q"), {"role": "assistant", "function_call": "f"}, user("r")),
            "messages[1].function_call",
            "must be an object",
            id="legacy-function_call-string",
        ),
        pytest.param(
            body(
                user("q"),
                {"role": "assistant", "tool_calls": [call("{}")]},
                {"role": "tool", "tool_call_id": "c", "content": [{"type": "file", "file": {}}]},
            ),
            "messages[2].content[0].type",
            "send text or image_url parts",
            id="tool-message-file-part",
        ),
    ],
)
def test_parse_request_rejects_options(request_body: Any, param: str, says: str) -> None:
    with pytest.raises(InvalidRequest) as caught:
        parse_request(request_body)
    assert (caught.value.param, says in caught.value.message) == (param, True), caught.value.message


# A JSON Schema 2020-12 document as a client sends it, with keywords and numbers that a
# rewrite would damage: $schema, $defs/$ref, exclusiveMinimum as a number, 2**70 bounds.
SCHEMA_2020_12 = (
    '{"$schema":"https://json-schema.org/draft/2020-12/schema","type":"object",'
    '"properties":{"n":{"type":"integer","exclusiveMinimum":0,'
    '"maximum":1180591620717411303424,"minimum":-1180591620717411303424},'
    '"ratio":{"type":"number","exclusiveMaximum":0.1},'
    '"tags":{"type":"array","prefixItems":[{"type":"string"}],"unevaluatedItems":false},'
    '"when":{"$ref":"#/$defs/when"}},'
    '"required":["n"],"additionalProperties":false,'
    '"$defs":{"when":{"type":["string","null"],"format":"date-time","$comment":"é"}}}'
)


def compact(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"))


def test_schemas_pass_through_byte_identical() -> None:
    raw = (
        '{"model":"m","messages":[{"role":"user","content":"hi"}],'
        '"tools":[{"type":"function","function":{"name":"f","parameters":SCHEMA}}],'
        '"response_format":{"type":"json_schema","json_schema":{"name":"o","schema":SCHEMA}}}'
    ).replace("SCHEMA", SCHEMA_2020_12)
    parsed = parse_request(json.loads(raw))
    assert compact(parsed.tools[0].input_schema) == SCHEMA_2020_12
    assert compact(parsed.output_schema) == SCHEMA_2020_12


# ---- streaming ----


def sse_payloads(frames: list[bytes]) -> list[Any]:
    out: list[Any] = []
    for frame in frames:
        assert frame.startswith(b"data: ")
        assert frame.endswith(b"\n\n")
        payload = frame[len(b"data: ") : -2].decode()
        out.append(payload if payload == "[DONE]" else json.loads(payload))
    return out


def chat_stream(events: list[CliEvent], **options: Any) -> list[Any]:
    translator = ChatStream(completion_id="chatcmpl-x", model="m", created=1, **options)
    return sse_payloads([frame for event in events for frame in translator.feed(event)])


def chunk(delta: dict[str, Any], finish: str | None = None, *, usage: bool) -> dict[str, Any]:
    out: dict[str, Any] = {
        "id": "chatcmpl-x",
        "object": "chat.completion.chunk",
        "created": 1,
        "model": "m",
        "system_fingerprint": None,
        "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}],
    }
    if usage:
        out["usage"] = None
    return out


def usage_chunk(prompt: int, completion: int) -> dict[str, Any]:
    return {
        "id": "chatcmpl-x",
        "object": "chat.completion.chunk",
        "created": 1,
        "model": "m",
        "system_fingerprint": None,
        "choices": [],
        "usage": {
            "prompt_tokens": prompt,
            "completion_tokens": completion,
            "total_tokens": prompt + completion,
            "prompt_tokens_details": {"cached_tokens": 0},
            "completion_tokens_details": {"reasoning_tokens": 0},
        },
    }


def tool_call(index: int, **fields: Any) -> dict[str, Any]:
    return {"tool_calls": [{"index": index, **fields}]}


TRANSCRIPT_DELTAS = [
    pytest.param(
        "text",
        [{"content": "Hel"}, {"content": "lo, "}, {"content": "world"}, {"content": "!"}],
        (11, 7),
        id="text",
    ),
    pytest.param(
        "thinking_text",
        [
            {"reasoning_content": "Let me "},
            {"reasoning_content": "think."},
            {"content": "The answer"},
            {"content": " is 4."},
        ],
        (11, 7),
        id="thinking_text",
    ),
    pytest.param(
        "tool_use",
        [
            {"content": "Checking."},
            tool_call(
                0,
                id=TOOL_ID,
                type="function",
                function={"name": "lookup", "arguments": ""},
            ),
            tool_call(0, function={"arguments": '{"q": "w'}),
            tool_call(0, function={"arguments": 'eather",'}),
            tool_call(0, function={"arguments": ' "n": 2}'}),
            {"content": "echo: "},
            {"content": "hi"},
        ],
        (22, 14),
        id="tool_use",
    ),
    pytest.param("cut_stream", [{"content": "echo: hi"}], (11, 7), id="cut_stream"),
]


@pytest.mark.parametrize(("name", "deltas", "tokens"), TRANSCRIPT_DELTAS)
def test_stream_with_usage(
    name: str, deltas: list[dict[str, Any]], tokens: tuple[int, int]
) -> None:
    assert chat_stream(replay(lines(name)), include_usage=True) == [
        chunk({"role": "assistant", "content": ""}, usage=True),
        *[chunk(d, usage=True) for d in deltas],
        chunk({}, "stop", usage=True),
        usage_chunk(*tokens),
        "[DONE]",
    ]


@pytest.mark.parametrize(("name", "deltas", "tokens"), TRANSCRIPT_DELTAS)
def test_stream_without_usage(
    name: str, deltas: list[dict[str, Any]], tokens: tuple[int, int]
) -> None:
    payloads = chat_stream(replay(lines(name)), include_usage=False)
    assert payloads == [
        chunk({"role": "assistant", "content": ""}, usage=False),
        *[chunk(d, usage=False) for d in deltas],
        chunk({}, "stop", usage=False),
        "[DONE]",
    ]
    assert all("usage" not in p for p in payloads[:-1])


def test_usage_counts_cached_tokens_as_prompt_tokens() -> None:
    raw = lines("text")
    result = raw[-1]
    assert result["type"] == "result"
    usage = dict(result["usage"], cache_read_input_tokens=100, cache_creation_input_tokens=5)
    payloads = chat_stream(replay([*raw[:-1], dict(result, usage=usage)]), include_usage=True)
    assert payloads[-2]["usage"] == {
        "prompt_tokens": 116,
        "completion_tokens": 7,
        "total_tokens": 123,
        "prompt_tokens_details": {"cached_tokens": 100},
        "completion_tokens_details": {"reasoning_tokens": 0},
    }


def content_of(payloads: list[Any]) -> str:
    return "".join(
        p["choices"][0]["delta"].get("content", "")
        for p in payloads
        if isinstance(p, dict) and p["choices"]
    )


def finish_of(payloads: list[Any]) -> list[str]:
    return [
        p["choices"][0]["finish_reason"]
        for p in payloads
        if isinstance(p, dict) and p["choices"] and p["choices"][0]["finish_reason"]
    ]


def test_max_tokens_first_model_call_finishes_with_length() -> None:
    # max_tokens.jsonl up to the end of its first model call, then its result line.
    raw = lines("max_tokens")
    first_stop = next(
        i for i, line in enumerate(raw) if line.get("event", {}).get("type") == "message_stop"
    )
    payloads = chat_stream(replay([*raw[: first_stop + 1], raw[-1]]), include_usage=False)
    assert content_of(payloads) == "cut short"
    assert finish_of(payloads) == ["length"]


def test_max_tokens_transcript_finishes_with_length() -> None:
    # The model stopped for max_tokens; CLI 2.1.330 then asked again by itself
    # ("Output token limit hit. Resume directly ..."). The client's limit was hit, so
    # the answer ends there with finish_reason "length".
    payloads = chat_stream(replay(lines("max_tokens")), include_usage=False)
    assert (content_of(payloads), finish_of(payloads)) == ("cut short", ["length"])


@pytest.mark.parametrize(
    ("stops", "content"),
    [
        pytest.param(("lo, w",), "Hel", id="spans-two-deltas"),
        pytest.param(("world",), "Hello, ", id="one-delta"),
        pytest.param(("Hel",), "", id="at-the-start"),
        pytest.param(("!",), "Hello, world", id="last-delta"),
        pytest.param(("o", "lo, "), "Hel", id="earliest-wins"),
        pytest.param(("zzz",), "Hello, world!", id="no-match"),
    ],
)
def test_stream_stop_sequences(stops: tuple[str, ...], content: str) -> None:
    payloads = chat_stream(replay(lines("text")), include_usage=False, stops=stops)
    assert payloads[0] == chunk({"role": "assistant", "content": ""}, usage=False)
    assert content_of(payloads) == content
    assert all(
        p["choices"][0]["delta"] != {"content": ""} for p in payloads[1:] if isinstance(p, dict)
    )
    assert payloads[-2:] == [chunk({}, "stop", usage=False), "[DONE]"]


def test_stream_stop_sequence_ends_the_answer_before_later_tool_calls() -> None:
    # "Check" matches at the very start: nothing the model produced after it may be
    # sent, neither its text nor the tool call that followed.
    payloads = chat_stream(replay(lines("tool_use")), include_usage=False, stops=("Check",))
    assert payloads == [
        chunk({"role": "assistant", "content": ""}, usage=False),
        chunk({}, "stop", usage=False),
        "[DONE]",
    ]


# ---- whole answers ----


def collect(events: list[CliEvent], stops: tuple[str, ...] = ()) -> Collector:
    collector = Collector(stops)
    for event in events:
        collector.feed(event)
    return collector


def completion(message: dict[str, Any], finish: str, prompt: int, out: int) -> dict[str, Any]:
    return {
        "id": "chatcmpl-x",
        "object": "chat.completion",
        "created": 1,
        "model": "m",
        "choices": [{"index": 0, "message": message, "logprobs": None, "finish_reason": finish}],
        "usage": {
            "prompt_tokens": prompt,
            "completion_tokens": out,
            "total_tokens": prompt + out,
            "prompt_tokens_details": {"cached_tokens": 0},
            "completion_tokens_details": {"reasoning_tokens": 0},
        },
        "system_fingerprint": None,
    }


@pytest.mark.parametrize(
    ("name", "stops", "expected"),
    [
        pytest.param(
            "text",
            (),
            completion(
                {"role": "assistant", "content": "Hello, world!", "refusal": None}, "stop", 11, 7
            ),
            id="text",
        ),
        pytest.param(
            "text",
            ("lo, w",),
            completion({"role": "assistant", "content": "Hel", "refusal": None}, "stop", 11, 7),
            id="text-with-stop",
        ),
        pytest.param(
            "thinking_text",
            (),
            completion(
                {
                    "role": "assistant",
                    "content": "The answer is 4.",
                    "refusal": None,
                    "reasoning_content": "Let me think.",
                },
                "stop",
                11,
                7,
            ),
            id="thinking_text",
        ),
        pytest.param(
            "tool_use",
            (),
            completion(
                {
                    "role": "assistant",
                    "content": "Checking.echo: hi",
                    "refusal": None,
                    "tool_calls": [
                        {
                            "id": TOOL_ID,
                            "type": "function",
                            "function": {"name": "lookup", "arguments": '{"q": "weather", "n": 2}'},
                        }
                    ],
                },
                "stop",
                22,
                14,
            ),
            id="tool_use",
        ),
        pytest.param(
            "cut_stream",
            (),
            completion(
                {"role": "assistant", "content": "echo: hi", "refusal": None}, "stop", 11, 7
            ),
            id="cut_stream",
        ),
    ],
)
def test_completion_body(name: str, stops: tuple[str, ...], expected: dict[str, Any]) -> None:
    collector = collect(replay(lines(name)), stops)
    assert completion_body(collector, completion_id="chatcmpl-x", model="m", created=1) == expected


def test_completion_body_stop_sequence_drops_later_tool_calls() -> None:
    collector = collect(replay(lines("tool_use")), ("Check",))
    body = completion_body(collector, completion_id="chatcmpl-x", model="m", created=1)
    assert body["choices"][0]["message"] == {"role": "assistant", "content": "", "refusal": None}
    assert body["choices"][0]["finish_reason"] == "stop"


@pytest.mark.parametrize(
    ("choice", "parallel", "hint"),
    [
        (None, None, None),
        (ToolChoice("auto"), None, None),
        (ToolChoice("auto"), False, "(Call at most one tool in this answer.)"),
        (ToolChoice("none"), None, "(Answer this message without calling any tool.)"),
        (
            ToolChoice("required"),
            None,
            "(Answer this message by calling at least one of the available tools.)",
        ),
        (
            ToolChoice("tool", "get_weather"),
            False,
            "(Answer this message by calling the tool `get_weather`. Call exactly one tool.)",
        ),
    ],
)
def test_tool_choice_hint(
    choice: ToolChoice | None, parallel: bool | None, hint: str | None
) -> None:
    turn = Turn(
        api="openai",
        model="sonnet",
        system=None,
        history=(),
        prompt=(TextPart("hi"),),
        stream=False,
        tools=(ToolSpec("get_weather", "", {"type": "object"}),),
        tool_choice=choice,
        parallel_tool_calls=parallel,
    )
    assert tool_choice_hint(turn) == hint
    assert tool_choice_hint(dataclasses.replace(turn, tools=())) is None
