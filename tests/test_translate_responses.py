"""OpenAI Responses: request bodies to turns, recorded transcripts to exact events, all
checked against the installed openai SDK's own types."""

from __future__ import annotations

import json
import typing
from typing import Any

import pytest
from openai import omit
from openai.lib.streaming.responses._responses import ResponseStreamState
from openai.types.responses import Response, ResponseStreamEvent
from pydantic import BaseModel
from transcripts import lines, replay

from tray_app.errors import InvalidRequest
from tray_app.protocol.common import Collector
from tray_app.protocol.model import (
    BlockStarted,
    BlockStopped,
    CliEvent,
    ImagePart,
    Message,
    MessageDelta,
    MessageStarted,
    SignatureDelta,
    TextDelta,
    TextPart,
    ToolChoice,
    ToolInputDelta,
    ToolResultPart,
    ToolSpec,
    ToolUsePart,
    Turn,
    TurnCompleted,
    Usage,
)
from tray_app.protocol.openai_responses import ResponsesStream, parse_request, response_body

PNG = "iVBORw0KGgo="
TOOL_ID = "toolu_cb7d3dc9c3614dbbb648"
RESP = "resp_x"


def user(content: Any) -> dict[str, Any]:
    return {"role": "user", "content": content}


def body(input: Any = "hi", **fields: Any) -> dict[str, Any]:
    return {"model": "m", "input": input, **fields}


def turn(*prompt: Any, **fields: Any) -> Turn:
    base: dict[str, Any] = {
        "api": "responses",
        "model": "m",
        "system": None,
        "history": (),
        "prompt": prompt or (TextPart("hi"),),
        "stream": False,
    }
    return Turn(**{**base, **fields})


# ---- parse_request ----

FREEFORM_SCHEMA = {
    "type": "object",
    "properties": {
        "input": {
            "type": "string",
            "description": "The tool's whole input, as raw text (not JSON).",
        }
    },
    "required": ["input"],
    "additionalProperties": False,
}
WEATHER = {"type": "function", "name": "get_weather", "parameters": {"type": "object"}}
WEATHER_SPEC = ToolSpec("get_weather", "", {"type": "object"})
CALL = {
    "type": "function_call",
    "id": "fc_1",
    "call_id": "call_1",
    "name": "get_weather",
    "arguments": '{"city": "Paris"}',
    "status": "completed",
}
CALL_PART = ToolUsePart("call_1", "get_weather", {"city": "Paris"})
ASKED = Message("user", (TextPart("weather?"),))


def output(text: str) -> dict[str, Any]:
    return {"type": "function_call_output", "call_id": "call_1", "output": text}


@pytest.mark.parametrize(
    ("request_body", "expected"),
    [
        pytest.param(body("hi"), turn(TextPart("hi")), id="string-input"),
        pytest.param(body([user("hi")]), turn(TextPart("hi")), id="message-without-type"),
        pytest.param(
            body(
                [
                    {
                        "type": "message",
                        "role": "user",
                        "content": [
                            {"type": "input_text", "text": "look"},
                            {
                                "type": "input_image",
                                "image_url": f"data:image/png;base64,{PNG}",
                                "detail": "auto",
                            },
                        ],
                    }
                ]
            ),
            turn(TextPart("look"), ImagePart("image/png", PNG)),
            id="typed-message-with-image",
        ),
        pytest.param(
            body(
                [
                    {"role": "system", "content": "Be brief."},
                    {"role": "developer", "content": [{"type": "input_text", "text": "French."}]},
                    user("hi"),
                ],
                instructions="You are helpful.",
            ),
            turn(system="You are helpful.\n\nBe brief.\n\nFrench."),
            id="instructions-system-developer-joined",
        ),
        pytest.param(
            body(
                [
                    user("q1"),
                    {
                        "type": "message",
                        "role": "assistant",
                        "status": "completed",
                        "content": [
                            {"type": "output_text", "text": "a1", "annotations": []},
                            {"type": "refusal", "refusal": "no"},
                        ],
                    },
                    user("q2"),
                ]
            ),
            turn(
                TextPart("q2"),
                history=(
                    Message("user", (TextPart("q1"),)),
                    Message("assistant", (TextPart("a1"), TextPart("no"))),
                ),
            ),
            id="history",
        ),
        pytest.param(
            body([user("weather?"), CALL, output("sunny")]),
            turn(
                ToolResultPart("call_1", (TextPart("sunny"),)),
                history=(ASKED, Message("assistant", (CALL_PART,))),
            ),
            id="function-call-and-output",
        ),
        pytest.param(
            body(
                [
                    user("weather?"),
                    {"role": "assistant", "content": "Let me check."},
                    CALL,
                    {**CALL, "call_id": "call_2", "arguments": ""},
                    output("sunny"),
                    {
                        "type": "function_call_output",
                        "call_id": "call_2",
                        "output": [
                            {"type": "input_text", "text": "map:"},
                            {"type": "input_image", "image_url": f"data:image/png;base64,{PNG}"},
                        ],
                    },
                    {**output(""), "call_id": "call_3"},
                    user("thanks"),
                ]
            ),
            turn(
                ToolResultPart("call_1", (TextPart("sunny"),)),
                ToolResultPart("call_2", (TextPart("map:"), ImagePart("image/png", PNG))),
                ToolResultPart("call_3", ()),
                TextPart("thanks"),
                history=(
                    ASKED,
                    Message(
                        "assistant",
                        (
                            TextPart("Let me check."),
                            CALL_PART,
                            ToolUsePart("call_2", "get_weather", {}),
                        ),
                    ),
                ),
            ),
            id="parallel-calls-merged",
        ),
        pytest.param(
            body(
                [
                    user("q1"),
                    {"type": "reasoning", "id": "rs_1", "summary": [], "encrypted_content": "x"},
                    {"role": "assistant", "content": "a1"},
                    user("q2"),
                ]
            ),
            turn(
                TextPart("q2"),
                history=(
                    Message("user", (TextPart("q1"),)),
                    Message("assistant", (TextPart("a1"),)),
                ),
            ),
            id="reasoning-item-dropped",
        ),
        pytest.param(
            body(
                [
                    {"type": "web_search_call", "id": "ws_1", "status": "completed"},
                    {"type": "local_shell_call", "id": "ls_1"},
                    {"type": "web_search_call", "id": "ws_2", "status": "completed"},
                    user("hi"),
                ]
            ),
            turn(ignored=("input[type=web_search_call]", "input[type=local_shell_call]")),
            id="hosted-tool-items-dropped",
        ),
        pytest.param(
            body([{"role": "assistant", "content": "earlier"}, user("hi")]),
            turn(
                history=(
                    Message("user", (TextPart("(conversation start)"),)),
                    Message("assistant", (TextPart("earlier"),)),
                ),
            ),
            id="history-opening-with-assistant",
        ),
        pytest.param(
            body(
                tools=[
                    {
                        "type": "function",
                        "name": "get_weather",
                        "description": "Weather now.",
                        "parameters": {"type": "object", "properties": {"city": {}}},
                        "strict": True,
                    },
                    {"type": "function", "name": "ping"},
                    {"type": "web_search"},
                    {"type": "custom", "name": "apply_patch"},
                    {"type": "local_shell"},
                ]
            ),
            turn(
                tools=(
                    ToolSpec(
                        "get_weather",
                        "Weather now.",
                        {"type": "object", "properties": {"city": {}}},
                    ),
                    ToolSpec("ping", "", {"type": "object", "properties": {}}),
                    ToolSpec("apply_patch", "", FREEFORM_SCHEMA),
                ),
                ignored=("tools[type=web_search]", "tools[type=local_shell]"),
            ),
            id="tools",
        ),
        pytest.param(
            body(tools=[WEATHER], tool_choice="required", parallel_tool_calls=False),
            turn(
                tools=(WEATHER_SPEC,),
                tool_choice=ToolChoice("required"),
                parallel_tool_calls=False,
            ),
            id="tool_choice-required",
        ),
        pytest.param(
            body(tool_choice="none"), turn(tool_choice=ToolChoice("none")), id="tool_choice-none"
        ),
        pytest.param(
            body(tools=[WEATHER], tool_choice={"type": "function", "name": "get_weather"}),
            turn(tools=(WEATHER_SPEC,), tool_choice=ToolChoice("tool", "get_weather")),
            id="tool_choice-function",
        ),
        pytest.param(
            body(
                tools=[WEATHER],
                tool_choice={
                    "type": "allowed_tools",
                    "mode": "required",
                    "tools": [{"type": "function", "name": "get_weather"}],
                },
            ),
            turn(
                tools=(WEATHER_SPEC,),
                tool_choice=ToolChoice("required"),
                ignored=("tool_choice[type=allowed_tools].tools",),
            ),
            id="tool_choice-allowed_tools",
        ),
        pytest.param(
            body(tool_choice={"type": "web_search_preview"}),
            turn(ignored=("tool_choice[type=web_search_preview]",)),
            id="tool_choice-hosted",
        ),
        pytest.param(body(text={"format": {"type": "text"}}), turn(), id="format-text"),
        pytest.param(
            body(text={"format": {"type": "json_object"}}),
            turn(output_schema={"type": "object"}),
            id="format-json_object",
        ),
        pytest.param(
            body(
                text={
                    "format": {
                        "type": "json_schema",
                        "name": "city",
                        "schema": {"type": "object", "properties": {"name": {"type": "string"}}},
                        "strict": True,
                    },
                    "verbosity": "low",
                }
            ),
            turn(
                output_schema={"type": "object", "properties": {"name": {"type": "string"}}},
                output_schema_field="text.format.schema",
                ignored=("text.verbosity",),
            ),
            id="format-json_schema",
        ),
        pytest.param(
            body(reasoning={"effort": "minimal", "summary": "auto"}),
            turn(effort="low"),
            id="effort-minimal",
        ),
        pytest.param(body(reasoning={"effort": "high"}), turn(effort="high"), id="effort-high"),
        pytest.param(body(reasoning={"effort": "xhigh"}), turn(effort="xhigh"), id="effort-xhigh"),
        pytest.param(body(reasoning={"effort": "none"}), turn(thinking_budget=0), id="effort-none"),
        pytest.param(body(reasoning={"summary": "auto"}), turn(), id="reasoning-summary-only"),
        pytest.param(body(max_output_tokens=50), turn(max_tokens=50), id="max_output_tokens"),
        pytest.param(
            body(stream=True, store=False, previous_response_id="resp_prev"),
            turn(stream=True, store=False, previous_response_id="resp_prev"),
            id="stream-store-false-previous",
        ),
        pytest.param(body(store=True), turn(), id="store-true"),
        pytest.param(
            # claude-tray's own fields, sent through the SDK's extra_body.
            body(session_id="s-1", ephemeral=True),
            turn(session_id="s-1", ephemeral=True),
            id="session_id-and-ephemeral",
        ),
        pytest.param(
            body(
                [{"type": "x\r\nSet-Cookie: a", "id": "1"}, user("hi")],
                tools=[{"type": "a b"}],
                tool_choice={"type": "web search"},
            ),
            turn(
                ignored=("input[type=unknown]", "tools[type=unknown]", "tool_choice[type=unknown]")
            ),
            id="odd-type-names-not-echoed",
        ),
        pytest.param(body(user="u-1"), turn(user="u-1"), id="user"),
        pytest.param(
            body(user="u-1", safety_identifier="s-1"),
            turn(user="s-1"),
            id="safety_identifier-wins",
        ),
        pytest.param(
            body(
                metadata={"k": "v"},
                temperature=0.2,
                top_p=None,
                include=["reasoning.encrypted_content"],
                prompt_cache_key="abc",
                truncation="auto",
                service_tier="auto",
                top_logprobs=2,
            ),
            turn(
                ignored=(
                    "temperature",
                    "top_logprobs",
                    "truncation",
                    "service_tier",
                    "include",
                    "prompt_cache_key",
                )
            ),
            id="ignored-fields",
        ),
        pytest.param(
            # The shape Codex CLI sends (wire_api = "responses").
            {
                "model": "gpt-5-codex",
                "instructions": "You are Codex.",
                "input": [
                    {
                        "type": "message",
                        "role": "developer",
                        "content": [{"type": "input_text", "text": "<permissions/>"}],
                    },
                    {
                        "type": "message",
                        "role": "user",
                        "content": [{"type": "input_text", "text": "<environment_context/>"}],
                    },
                    {
                        "type": "message",
                        "role": "user",
                        "content": [{"type": "input_text", "text": "list files"}],
                    },
                ],
                "tools": [
                    {
                        "type": "function",
                        "name": "shell",
                        "description": "Runs a shell command.",
                        "strict": False,
                        "parameters": {
                            "type": "object",
                            "properties": {"command": {"type": "array"}},
                            "required": ["command"],
                            "additionalProperties": False,
                        },
                    },
                    {"type": "web_search"},
                ],
                "tool_choice": "auto",
                "parallel_tool_calls": False,
                "reasoning": {"effort": "medium", "summary": "auto"},
                "store": False,
                "stream": True,
                "include": ["reasoning.encrypted_content"],
                "prompt_cache_key": "0199a1b2",
                "text": {"verbosity": "medium"},
            },
            Turn(
                api="responses",
                model="gpt-5-codex",
                system="You are Codex.\n\n<permissions/>",
                history=(),
                prompt=(TextPart("<environment_context/>"), TextPart("list files")),
                stream=True,
                ignored=(
                    "include",
                    "prompt_cache_key",
                    "tools[type=web_search]",
                    "text.verbosity",
                ),
                tools=(
                    ToolSpec(
                        "shell",
                        "Runs a shell command.",
                        {
                            "type": "object",
                            "properties": {"command": {"type": "array"}},
                            "required": ["command"],
                            "additionalProperties": False,
                        },
                    ),
                ),
                tool_choice=ToolChoice("auto"),
                parallel_tool_calls=False,
                effort="medium",
                store=False,
            ),
            id="codex-request",
        ),
    ],
)
def test_parse_request(request_body: dict[str, Any], expected: Turn) -> None:
    assert parse_request(request_body) == expected


def image(url: str, **fields: Any) -> dict[str, Any]:
    return {"type": "input_image", "image_url": url, **fields}


@pytest.mark.parametrize(
    ("request_body", "param"),
    [
        pytest.param(["not", "an", "object"], None, id="body-not-object"),
        pytest.param({"input": "hi"}, "model", id="model-missing"),
        pytest.param(body(model=5), "model", id="model-not-string"),
        pytest.param({"model": "m"}, "input", id="input-missing"),
        pytest.param(body(5), "input", id="input-number"),
        pytest.param(body([]), "input", id="input-empty"),
        pytest.param(body(""), "input", id="input-empty-string"),
        pytest.param(body(["hi"]), "input[0]", id="item-not-object"),
        pytest.param(body([{"content": "x"}]), "input[0].type", id="item-without-type-or-role"),
        pytest.param(body([{"type": 5}]), "input[0].type", id="item-type-number"),
        pytest.param(body([{"type": "message", "content": "x"}]), "input[0].role", id="no-role"),
        pytest.param(body([{"role": "tool", "content": "x"}]), "input[0].role", id="bad-role"),
        pytest.param(body([user(5)]), "input[0].content", id="content-number"),
        pytest.param(body([user(None)]), "input[0].content", id="content-missing"),
        pytest.param(body([user(["hi"])]), "input[0].content[0]", id="part-not-object"),
        pytest.param(
            body([user([{"type": "input_text"}])]), "input[0].content[0].text", id="text-missing"
        ),
        pytest.param(
            body([user([{"type": "input_file", "file_id": "file-1"}])]),
            "input[0].content[0].type",
            id="input_file-unsupported",
        ),
        pytest.param(
            body([user([image("https://x.test/cat.png")])]),
            "input[0].content[0].image_url",
            id="http-image-url",
        ),
        pytest.param(
            body([user([image("data:image/bmp;base64,Qk0=")])]),
            "input[0].content[0].image_url",
            id="image-type-unsupported",
        ),
        pytest.param(
            body([user([{"type": "input_image", "file_id": "file-1"}])]),
            "input[0].content[0].file_id",
            id="image-file_id",
        ),
        pytest.param(
            body([user([{"type": "input_image", "detail": "auto"}])]),
            "input[0].content[0].image_url",
            id="image-url-missing",
        ),
        pytest.param(
            body(
                [
                    user("q"),
                    {"role": "assistant", "content": [image(f"data:image/png;base64,{PNG}")]},
                    user("r"),
                ]
            ),
            "input[1].content[0].type",
            id="image-in-assistant-message",
        ),
        pytest.param(
            body([user("q"), {**CALL, "arguments": "{"}, output("x")]),
            "input[1].arguments",
            id="function-call-arguments-not-json",
        ),
        pytest.param(
            body([user("q"), {**CALL, "arguments": "[1]"}, output("x")]),
            "input[1].arguments",
            id="function-call-arguments-not-object",
        ),
        pytest.param(
            body([user("q"), {**CALL, "arguments": {"city": "Paris"}}, output("x")]),
            "input[1].arguments",
            id="function-call-arguments-not-string",
        ),
        pytest.param(
            body([user("q"), {k: v for k, v in CALL.items() if k != "call_id"}, output("x")]),
            "input[1].call_id",
            id="function-call-without-call_id",
        ),
        pytest.param(
            body([user("q"), {k: v for k, v in CALL.items() if k != "name"}, output("x")]),
            "input[1].name",
            id="function-call-without-name",
        ),
        pytest.param(
            body([user("q"), CALL, {"type": "function_call_output", "output": "x"}]),
            "input[2].call_id",
            id="function-call-output-without-call_id",
        ),
        pytest.param(
            body([user("q"), CALL, {**output("x"), "output": 5}]),
            "input[2].output",
            id="function-call-output-number",
        ),
        pytest.param(
            body([user("q"), CALL, {**output("x"), "output": [{"type": "input_file"}]}]),
            "input[2].output[0].type",
            id="function-call-output-file",
        ),
        pytest.param(
            body([{"type": "item_reference", "id": "msg_1"}, user("hi")]),
            "input[0]",
            id="item_reference",
        ),
        pytest.param(
            body([user("hi"), {"role": "assistant", "content": "prefill"}]),
            "input",
            id="ends-with-assistant",
        ),
        pytest.param(body([user("q"), CALL]), "input", id="ends-with-function-call"),
        pytest.param(
            body([{"role": "developer", "content": "only instructions"}]),
            "input",
            id="no-conversation",
        ),
        pytest.param(body(conversation="conv_1"), "conversation", id="conversation"),
        pytest.param(body(prompt={"id": "pmpt_1"}), "prompt", id="stored-prompt"),
        pytest.param(body(instructions=["x"]), "instructions", id="instructions-list"),
        pytest.param(body(stream="yes"), "stream", id="stream-string"),
        pytest.param(body(store=1), "store", id="store-number"),
        pytest.param(body(previous_response_id=7), "previous_response_id", id="previous-number"),
        pytest.param(body(metadata=["x"]), "metadata", id="metadata-list"),
        pytest.param(body(user=5), "user", id="user-number"),
        pytest.param(body(max_output_tokens=0), "max_output_tokens", id="max_output_tokens-0"),
        pytest.param(
            body(max_output_tokens=True), "max_output_tokens", id="max_output_tokens-bool"
        ),
        pytest.param(body(parallel_tool_calls="no"), "parallel_tool_calls", id="parallel-string"),
        pytest.param(body(tools={"type": "function"}), "tools", id="tools-object"),
        pytest.param(body(tools=["shell"]), "tools[0]", id="tool-not-object"),
        pytest.param(body(tools=[{"name": "f"}]), "tools[0].type", id="tool-without-type"),
        pytest.param(
            body(tools=[{"type": "function", "function": {"name": "f"}}]),
            "tools[0].name",
            id="tool-in-chat-shape",
        ),
        pytest.param(
            body(tools=[{"type": "function", "name": "get weather"}]),
            "tools[0].name",
            id="tool-name-with-space",
        ),
        pytest.param(
            body(tools=[{"type": "function", "name": "f" * 65}]),
            "tools[0].name",
            id="tool-name-too-long",
        ),
        pytest.param(body(tools=[WEATHER, WEATHER]), "tools[1].name", id="tool-declared-twice"),
        pytest.param(
            body(tools=[{**WEATHER, "parameters": "object"}]),
            "tools[0].parameters",
            id="tool-parameters-string",
        ),
        pytest.param(
            body(tools=[{**WEATHER, "description": 5}]),
            "tools[0].description",
            id="tool-description-number",
        ),
        pytest.param(body(tool_choice="any"), "tool_choice", id="tool_choice-unknown"),
        pytest.param(body(tool_choice="required"), "tool_choice", id="required-without-tools"),
        pytest.param(
            body(tools=[WEATHER], tool_choice={"type": "function", "name": "other"}),
            "tool_choice.name",
            id="tool_choice-names-unknown-tool",
        ),
        pytest.param(
            body(tool_choice={"name": "f"}), "tool_choice.type", id="tool_choice-without-type"
        ),
        pytest.param(body(text="json"), "text", id="text-string"),
        pytest.param(body(text={"format": "json"}), "text.format", id="format-string"),
        pytest.param(body(text={"format": {}}), "text.format.type", id="format-without-type"),
        pytest.param(
            body(text={"format": {"type": "xml"}}), "text.format.type", id="format-unknown"
        ),
        pytest.param(
            body(text={"format": {"type": "json_schema", "name": "x"}}),
            "text.format.schema",
            id="json_schema-without-schema",
        ),
        pytest.param(
            body(text={"format": {"type": "json_schema", "name": "x", "schema": "object"}}),
            "text.format.schema",
            id="json_schema-schema-string",
        ),
        pytest.param(body(reasoning="high"), "reasoning", id="reasoning-string"),
        pytest.param(
            body(reasoning={"effort": "extreme"}), "reasoning.effort", id="effort-unknown"
        ),
    ],
)
def test_parse_request_rejects(request_body: Any, param: str | None) -> None:
    with pytest.raises(InvalidRequest) as caught:
        parse_request(request_body)
    assert caught.value.param == param


def test_image_urls_are_refused_with_a_hint_to_inline_them() -> None:
    for part in (image("https://x.test/cat.png"), {"type": "input_image", "file_id": "f"}):
        with pytest.raises(InvalidRequest) as caught:
            parse_request(body([user([part])]))
        assert "data:image/png;base64" in caught.value.message


# ---- the SDK's types: every body and event must validate, with no field it lacks ----

EVENT_TYPES: dict[str, type[BaseModel]] = {
    typing.get_args(cls.model_fields["type"].annotation)[0]: cls
    for cls in typing.get_args(typing.get_args(ResponseStreamEvent)[0])
}

# Fields OpenAI's API reference documents that this SDK version's models lack.
DOCUMENTED_EXTRAS = {"Response": {"store"}, "ResponseFunctionCallArgumentsDoneEvent": {"name"}}


def no_extras(value: Any) -> None:
    """Every field we send is one the SDK knows (its models accept unknown ones silently)."""
    if isinstance(value, BaseModel):
        extra = set(value.model_extra or {})
        assert extra <= DOCUMENTED_EXTRAS.get(type(value).__name__, set()), (
            type(value).__name__,
            extra,
        )
        for name in type(value).model_fields:
            no_extras(getattr(value, name))
    elif isinstance(value, list | tuple):
        for item in value:
            no_extras(item)
    elif isinstance(value, dict):
        for item in value.values():
            no_extras(item)


def valid_response(payload: dict[str, Any]) -> Response:
    response = Response.model_validate(payload)
    no_extras(response)
    return response


def valid_event(payload: dict[str, Any]) -> BaseModel:
    event = EVENT_TYPES[payload["type"]].model_validate(payload)
    no_extras(event)
    return event


# ---- streaming ----


def decode(frames: list[bytes]) -> list[dict[str, Any]]:
    """The payloads, after checking each frame's SSE shape and its event name."""
    out: list[dict[str, Any]] = []
    for frame in frames:
        text = frame.decode()
        assert text.endswith("\n\n")
        event_line, data_line = text[:-2].split("\n")
        assert event_line.startswith("event: ") and data_line.startswith("data: ")
        payload = json.loads(data_line[len("data: ") :])
        assert event_line == f"event: {payload['type']}"
        out.append(payload)
    return out


def translator(**options: Any) -> ResponsesStream:
    return ResponsesStream(response_id=RESP, model="m", created=1, **options)


def stream(events: list[CliEvent], **options: Any) -> list[dict[str, Any]]:
    responses = translator(**options)
    return decode([frame for event in events for frame in responses.feed(event)])


def numbered(events: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [{**event, "sequence_number": n} for n, event in enumerate(events)]


def usage(prompt: int, out: int, cached: int = 0, written: int = 0) -> dict[str, Any]:
    return {
        "input_tokens": prompt,
        "input_tokens_details": {"cached_tokens": cached, "cache_write_tokens": written},
        "output_tokens": out,
        "output_tokens_details": {"reasoning_tokens": 0},
        "total_tokens": prompt + out,
    }


def response(
    status: str,
    output: list[dict[str, Any]],
    usage: dict[str, Any] | None = None,
    *,
    incomplete: str | None = None,
    error: dict[str, Any] | None = None,
    previous: str | None = None,
) -> dict[str, Any]:
    return {
        "id": RESP,
        "object": "response",
        "created_at": 1,
        "status": status,
        "error": error,
        "incomplete_details": {"reason": incomplete} if incomplete else None,
        "instructions": None,
        "max_output_tokens": None,
        "model": "m",
        "output": output,
        "parallel_tool_calls": True,
        "previous_response_id": previous,
        "reasoning": {"effort": None, "summary": None},
        "store": True,
        "temperature": None,
        "text": {"format": {"type": "text"}},
        "tool_choice": "auto",
        "tools": [],
        "top_p": None,
        "truncation": "disabled",
        "usage": usage,
        "user": None,
        "metadata": {},
    }


STARTED = [
    {"type": "response.created", "response": response("in_progress", [])},
    {"type": "response.in_progress", "response": response("in_progress", [])},
]


def text_part(text: str) -> dict[str, Any]:
    return {"type": "output_text", "text": text, "annotations": [], "logprobs": []}


def message(n: int, text: str | None) -> dict[str, Any]:
    return {
        "id": f"msg_x_{n}",
        "type": "message",
        "status": "in_progress" if text is None else "completed",
        "role": "assistant",
        "content": [] if text is None else [text_part(text)],
    }


def call(n: int, arguments: str | None) -> dict[str, Any]:
    return {
        "id": f"fc_x_{n}",
        "type": "function_call",
        "status": "in_progress" if arguments is None else "completed",
        "call_id": TOOL_ID,
        "name": "lookup",
        "arguments": arguments or "",
    }


def reasoning(n: int, summary: str) -> dict[str, Any]:
    return {
        "id": f"rs_x_{n}",
        "type": "reasoning",
        "summary": [{"type": "summary_text", "text": summary}] if summary else [],
    }


def text_item(n: int, deltas: list[str]) -> list[dict[str, Any]]:
    """The events of one streamed message item."""
    at = {"item_id": f"msg_x_{n}", "output_index": n, "content_index": 0}
    text = "".join(deltas)
    return [
        {"type": "response.output_item.added", "output_index": n, "item": message(n, None)},
        {"type": "response.content_part.added", **at, "part": text_part("")},
        *[{"type": "response.output_text.delta", **at, "delta": d, "logprobs": []} for d in deltas],
        {"type": "response.output_text.done", **at, "text": text, "logprobs": []},
        {"type": "response.content_part.done", **at, "part": text_part(text)},
        {"type": "response.output_item.done", "output_index": n, "item": message(n, text)},
    ]


def call_item(n: int, deltas: list[str]) -> list[dict[str, Any]]:
    at = {"item_id": f"fc_x_{n}", "output_index": n}
    arguments = "".join(deltas)
    return [
        {"type": "response.output_item.added", "output_index": n, "item": call(n, None)},
        *[{"type": "response.function_call_arguments.delta", **at, "delta": d} for d in deltas],
        {
            "type": "response.function_call_arguments.done",
            **at,
            "name": "lookup",
            "arguments": arguments,
        },
        {"type": "response.output_item.done", "output_index": n, "item": call(n, arguments)},
    ]


def reasoning_item(n: int, deltas: list[str]) -> list[dict[str, Any]]:
    at = {"item_id": f"rs_x_{n}", "output_index": n, "summary_index": 0}
    text = "".join(deltas)
    part = {"type": "summary_text", "text": text}
    return [
        {"type": "response.output_item.added", "output_index": n, "item": reasoning(n, "")},
        {
            "type": "response.reasoning_summary_part.added",
            **at,
            "part": {"type": "summary_text", "text": ""},
        },
        *[{"type": "response.reasoning_summary_text.delta", **at, "delta": d} for d in deltas],
        {"type": "response.reasoning_summary_text.done", **at, "text": text},
        {"type": "response.reasoning_summary_part.done", **at, "part": part},
        {"type": "response.output_item.done", "output_index": n, "item": reasoning(n, text)},
    ]


def completed(output: list[dict[str, Any]], prompt: int, out: int) -> dict[str, Any]:
    return {
        "type": "response.completed",
        "response": response("completed", output, usage(prompt, out)),
    }


TRANSCRIPTS = [
    pytest.param(
        "text",
        [
            *text_item(0, ["Hel", "lo, ", "world", "!"]),
            completed([message(0, "Hello, world!")], 11, 7),
        ],
        id="text",
    ),
    pytest.param(
        "thinking_text",
        [
            *reasoning_item(0, ["Let me ", "think."]),
            *text_item(1, ["The answer", " is 4."]),
            completed([reasoning(0, "Let me think."), message(1, "The answer is 4.")], 11, 7),
        ],
        id="thinking_text",
    ),
    pytest.param(
        "tool_use",
        [
            *text_item(0, ["Checking."]),
            *call_item(1, ['{"q": "w', 'eather",', ' "n": 2}']),
            *text_item(2, ["echo: ", "hi"]),
            completed(
                [
                    message(0, "Checking."),
                    call(1, '{"q": "weather", "n": 2}'),
                    message(2, "echo: hi"),
                ],
                22,
                14,
            ),
        ],
        id="tool_use",
    ),
    pytest.param(
        "max_tokens",
        [
            *text_item(0, ["cut ", "short"]),
            {
                "type": "response.incomplete",
                "response": response(
                    "incomplete",
                    [message(0, "cut short")],
                    usage(22, 14),
                    incomplete="max_output_tokens",
                ),
            },
        ],
        id="max_tokens",
    ),
    pytest.param(
        "cut_stream",
        [*text_item(0, ["echo: hi"]), completed([message(0, "echo: hi")], 11, 7)],
        id="cut_stream",
    ),
]


@pytest.mark.parametrize(("name", "expected"), TRANSCRIPTS)
def test_stream(name: str, expected: list[dict[str, Any]]) -> None:
    assert stream(replay(lines(name))) == numbered([*STARTED, *expected])


@pytest.mark.parametrize(("name", "expected"), TRANSCRIPTS)
def test_stream_events_are_valid_sdk_events(name: str, expected: list[dict[str, Any]]) -> None:
    payloads = stream(replay(lines(name)))
    for payload in payloads:
        valid_event(payload)
    # The SDK's own stream accumulator (client.responses.stream) accepts the sequence
    # and ends with the output the last event carries.
    state: ResponseStreamState[Any] = ResponseStreamState(input_tools=omit, text_format=omit)
    for payload in payloads:
        state.handle_event(typing.cast(Any, valid_event(payload)))
    final = valid_response(payloads[-1]["response"])
    assert [item.id for item in final.output] == [
        e["item"]["id"] for e in expected if e["type"] == "response.output_item.done"
    ]


@pytest.mark.parametrize(("name", "expected"), TRANSCRIPTS)
def test_stream_ends_with_the_body_a_plain_request_gets(
    name: str, expected: list[dict[str, Any]]
) -> None:
    assert stream(replay(lines(name)))[-1]["response"] == body_of(replay(lines(name)))


def test_stream_exact_bytes() -> None:
    responses = translator()
    frames = [f for e in replay(lines("text")) for f in responses.feed(e)]
    assert frames[4] == (
        b"event: response.output_text.delta\n"
        b'data: {"type":"response.output_text.delta","item_id":"msg_x_0","output_index":0,'
        b'"content_index":0,"delta":"Hel","logprobs":[],"sequence_number":4}\n\n'
    )


def test_stream_previous_response_id_is_echoed() -> None:
    payloads = stream(replay(lines("text")), previous_response_id="resp_prev")
    assert {p["response"]["previous_response_id"] for p in payloads if "response" in p} == {
        "resp_prev"
    }


def test_usage_counts_cached_tokens_as_input_tokens() -> None:
    raw = lines("text")
    result = raw[-1]
    assert result["type"] == "result"
    cached = dict(result["usage"], cache_read_input_tokens=100, cache_creation_input_tokens=5)
    payloads = stream(replay([*raw[:-1], dict(result, usage=cached)]))
    assert payloads[-1]["response"]["usage"] == usage(116, 7, cached=100, written=5)


def text_of(payloads: list[dict[str, Any]]) -> str:
    return "".join(p["delta"] for p in payloads if p["type"] == "response.output_text.delta")


@pytest.mark.parametrize(
    ("stops", "text"),
    [
        pytest.param(("lo, w",), "Hel", id="spans-two-deltas"),
        pytest.param(("world",), "Hello, ", id="one-delta"),
        pytest.param(("Hel",), "", id="at-the-start"),
        pytest.param(("!",), "Hello, world", id="last-delta"),
        pytest.param(("zzz",), "Hello, world!", id="no-match"),
    ],
)
def test_stream_stop_sequences(stops: tuple[str, ...], text: str) -> None:
    payloads = stream(replay(lines("text")), stops=stops)
    assert text_of(payloads) == text
    assert all(p.get("delta") != "" for p in payloads)
    assert payloads[-1] == {
        "type": "response.completed",
        "response": response("completed", [message(0, text)], usage(11, 7)),
        "sequence_number": len(payloads) - 1,
    }
    assert payloads[-1]["response"] == body_of(replay(lines("text")), stops)


def test_stream_stop_sequence_ends_the_answer_before_later_tool_calls() -> None:
    # "Check" matches at the very start: nothing the model produced after it is sent.
    payloads = stream(replay(lines("tool_use")), stops=("Check",))
    assert payloads == numbered([*STARTED, *text_item(0, []), completed([message(0, "")], 22, 14)])
    assert payloads[-1]["response"] == body_of(replay(lines("tool_use")), ("Check",))


HAND_BUILT: list[CliEvent] = [
    MessageStarted("msg_1", "claude", Usage(input_tokens=3)),
    # A thinking block without text (only a signature) and a redacted one.
    BlockStarted(0, "thinking"),
    SignatureDelta(0, "sig"),
    BlockStopped(0),
    BlockStarted(1, "redacted_thinking", data="opaque"),
    BlockStopped(1),
    BlockStarted(2, "tool_use", id=TOOL_ID, name="lookup"),
    BlockStopped(2),
    # A text block the stream never closed.
    BlockStarted(3, "text"),
    TextDelta(3, "partial"),
    MessageDelta("refusal", None, 2),
    TurnCompleted("s", False, Usage(3, 2), None, "refusal", "partial", 1),
]


def test_stream_hand_built_edge_cases() -> None:
    payloads = stream(HAND_BUILT)
    empty_call = call_item(1, [])
    empty_call[-2]["arguments"] = "{}"
    empty_call[-1]["item"] = call(1, "{}")
    assert payloads == numbered(
        [
            *STARTED,
            {"type": "response.output_item.added", "output_index": 0, "item": reasoning(0, "")},
            {"type": "response.output_item.done", "output_index": 0, "item": reasoning(0, "")},
            *empty_call,
            *text_item(2, ["partial"]),
            {
                "type": "response.incomplete",
                "response": response(
                    "incomplete",
                    [reasoning(0, ""), call(1, "{}"), message(2, "partial")],
                    usage(3, 2),
                    incomplete="content_filter",
                ),
            },
        ]
    )
    assert payloads[-1]["response"] == body_of(HAND_BUILT)
    for payload in payloads:
        valid_event(payload)


def test_error_after_output_began() -> None:
    responses = translator()
    events = replay(lines("tool_use"))
    frames = [f for e in events[:4] for f in responses.feed(e)]  # up to "Checking."
    error = {
        "error": {
            "message": "Anthropic answered: rate limited",
            "type": "rate_limit_error",
            "param": None,
            "code": "upstream_rate_limited",
        }
    }
    payloads = decode(frames + responses.error(error))
    assert payloads[-2:] == [
        {
            "type": "error",
            "code": "upstream_rate_limited",
            "message": "Anthropic answered: rate limited",
            "param": None,
            "sequence_number": 5,
        },
        {
            "type": "response.failed",
            "response": response(
                "failed",
                [],
                error={
                    "code": "rate_limit_exceeded",
                    "message": "Anthropic answered: rate limited",
                },
            ),
            "sequence_number": 6,
        },
    ]
    for payload in payloads:
        valid_event(payload)


def test_error_before_any_output_still_opens_the_response() -> None:
    error = {"error": {"message": "boom", "type": "server_error", "param": None, "code": None}}
    payloads = decode(translator().error(error))
    assert payloads == numbered(
        [
            *STARTED,
            {"type": "error", "code": None, "message": "boom", "param": None},
            {
                "type": "response.failed",
                "response": response(
                    "failed", [], error={"code": "server_error", "message": "boom"}
                ),
            },
        ]
    )
    for payload in payloads:
        valid_event(payload)


# ---- whole answers ----


def collect(events: list[CliEvent], stops: tuple[str, ...] = ()) -> Collector:
    collector = Collector(stops)
    for event in events:
        collector.feed(event)
    return collector


def body_of(events: list[CliEvent], stops: tuple[str, ...] = ()) -> dict[str, Any]:
    return response_body(collect(events, stops), response_id=RESP, model="m", created=1)


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        pytest.param(
            "text", response("completed", [message(0, "Hello, world!")], usage(11, 7)), id="text"
        ),
        pytest.param(
            "thinking_text",
            response(
                "completed",
                [reasoning(0, "Let me think."), message(1, "The answer is 4.")],
                usage(11, 7),
            ),
            id="thinking_text",
        ),
        pytest.param(
            "tool_use",
            response(
                "completed",
                [
                    message(0, "Checking."),
                    call(1, '{"q": "weather", "n": 2}'),
                    message(2, "echo: hi"),
                ],
                usage(22, 14),
            ),
            id="tool_use",
        ),
        pytest.param(
            "max_tokens",
            response(
                "incomplete",
                [message(0, "cut short")],
                usage(22, 14),
                incomplete="max_output_tokens",
            ),
            id="max_tokens",
        ),
        pytest.param(
            "cut_stream", response("completed", [message(0, "echo: hi")], usage(11, 7)), id="cut"
        ),
    ],
)
def test_response_body(name: str, expected: dict[str, Any]) -> None:
    got = body_of(replay(lines(name)))
    assert got == expected
    valid_response(got)


def test_response_body_previous_response_id() -> None:
    got = response_body(
        collect(replay(lines("text"))),
        response_id=RESP,
        model="m",
        created=1,
        previous_response_id="resp_prev",
    )
    assert got == response(
        "completed", [message(0, "Hello, world!")], usage(11, 7), previous="resp_prev"
    )


def test_response_body_wraps_tool_arguments_that_are_not_json() -> None:
    # A call cut off mid-arguments still yields a JSON object string a client can parse.
    events: list[CliEvent] = [
        BlockStarted(0, "tool_use", id=TOOL_ID, name="lookup"),
        ToolInputDelta(0, '{"q": '),
        BlockStopped(0),
        TurnCompleted("s", False, Usage(3, 2), None, "end_turn", "", 1),
    ]
    got = body_of(events)
    assert got["output"] == [call(0, '{"_raw": "{\\"q\\":"}')]
    valid_response(got)
    assert stream(events)[-1]["response"] == got


# ---- namespaces and custom (free-text) tools, as Codex sends them ----

PATCH_GRAMMAR = 'start: "*** Begin Patch" LF hunk+ "*** End Patch"'
AGENTS = {
    "type": "namespace",
    "name": "multi_agent_v1",
    "description": "Tools for sub-agents.",
    "tools": [
        {
            "type": "function",
            "name": "spawn_agent",
            "description": "Start an agent.",
            "parameters": {"type": "object", "properties": {"task": {"type": "string"}}},
        },
        {"type": "custom", "name": "note", "description": "Free text."},
        {"type": "web_search"},
    ],
}
PATCH = {
    "type": "custom",
    "name": "apply_patch",
    "description": "Edit files.",
    "format": {"type": "grammar", "syntax": "lark", "definition": PATCH_GRAMMAR},
}


def test_namespaced_and_custom_tools_are_offered_as_functions() -> None:
    parsed = parse_request(
        body(tools=[AGENTS, PATCH], tool_choice={"type": "custom", "name": "apply_patch"})
    )
    spawn, note, patch = parsed.tools
    assert (spawn.name, spawn.namespace, spawn.client_name, spawn.freeform) == (
        "multi_agent_v1__spawn_agent",
        "multi_agent_v1",
        "spawn_agent",
        False,
    )
    assert spawn.description == "Start an agent.\n\n(In multi_agent_v1: Tools for sub-agents.)"
    assert spawn.input_schema == AGENTS["tools"][0]["parameters"]  # type: ignore[index]
    assert (note.name, note.namespace, note.freeform) == (
        "multi_agent_v1__note",
        "multi_agent_v1",
        True,
    )
    assert (patch.name, patch.namespace, patch.freeform) == ("apply_patch", None, True)
    about = patch.input_schema["properties"]["input"]["description"]
    assert about.endswith(f"It must follow this lark grammar:\n{PATCH_GRAMMAR}")
    assert patch.input_schema["required"] == ["input"]
    assert parsed.ignored == ("tools[type=web_search]",)
    assert parsed.tool_choice == ToolChoice("tool", "apply_patch")


def test_custom_and_namespaced_calls_in_history_are_replayed_under_the_offered_names() -> None:
    parsed = parse_request(
        body(
            [
                user("go"),
                {
                    "type": "function_call",
                    "call_id": "c1",
                    "namespace": "multi_agent_v1",
                    "name": "spawn_agent",
                    "arguments": '{"task": "t"}',
                },
                {"type": "function_call_output", "call_id": "c1", "output": "agent-1"},
                {
                    "type": "custom_tool_call",
                    "call_id": "c2",
                    "name": "apply_patch",
                    "input": "*** Begin Patch",
                },
                {"type": "custom_tool_call_output", "call_id": "c2", "output": "Done!"},
            ],
            tools=[AGENTS, PATCH],
        )
    )
    assert parsed.history[1:] == (
        Message("assistant", (ToolUsePart("c1", "multi_agent_v1__spawn_agent", {"task": "t"}),)),
        Message("user", (ToolResultPart("c1", (TextPart("agent-1"),)),)),
        Message("assistant", (ToolUsePart("c2", "apply_patch", {"input": "*** Begin Patch"}),)),
    )
    assert parsed.prompt == (ToolResultPart("c2", (TextPart("Done!"),)),)


@pytest.mark.parametrize(
    ("tools", "param"),
    [
        pytest.param([{**PATCH, "format": {"type": "xml"}}], "tools[0].format.type", id="format"),
        pytest.param(
            [{**PATCH, "format": {"type": "grammar", "syntax": "lark"}}],
            "tools[0].format.definition",
            id="grammar-without-definition",
        ),
        pytest.param([{**AGENTS, "tools": None}], "tools[0].tools", id="namespace-without-tools"),
        pytest.param(
            [{**AGENTS, "name": "n" * 60}], "tools[0].tools[0].name", id="name-too-long-together"
        ),
        pytest.param([{**AGENTS, "name": "bad name"}], "tools[0].name", id="namespace-name"),
        pytest.param(
            [AGENTS, {"type": "function", "name": "multi_agent_v1__spawn_agent"}],
            "tools[1].name",
            id="same-name-as-a-namespaced-tool",
        ),
    ],
)
def test_namespace_and_custom_tool_mistakes_are_named(tools: list[Any], param: str) -> None:
    with pytest.raises(InvalidRequest) as caught:
        parse_request(body(tools=tools))
    assert caught.value.param == param


PATCH_TEXT = "*** Begin Patch\n*** Add File: a.txt\n+hi\n*** End Patch"
CALLS = [
    MessageStarted("msg_1", "m", Usage(5, 0)),
    BlockStarted(0, "tool_use", id="c1", name="multi_agent_v1__spawn_agent"),
    ToolInputDelta(0, '{"task":'),
    ToolInputDelta(0, ' "t"}'),
    BlockStopped(0),
    BlockStarted(1, "tool_use", id="c2", name="apply_patch"),
    ToolInputDelta(1, json.dumps({"input": PATCH_TEXT})[:20]),
    ToolInputDelta(1, json.dumps({"input": PATCH_TEXT})[20:]),
    BlockStopped(1),
    MessageDelta("tool_use", None, 9),
    TurnCompleted("s", False, Usage(5, 9), None, "tool_use", "", 1),
]
SPAWN_ITEM = {
    "id": "fc_x_0",
    "type": "function_call",
    "status": "completed",
    "call_id": "c1",
    "name": "spawn_agent",
    "arguments": '{"task": "t"}',
    "namespace": "multi_agent_v1",
}
PATCH_ITEM = {
    "id": "fc_x_1",
    "type": "custom_tool_call",
    "call_id": "c2",
    "name": "apply_patch",
    "input": PATCH_TEXT,
}


def test_calls_go_back_under_the_declared_name_namespace_and_kind() -> None:
    tools = parse_request(body(tools=[AGENTS, PATCH])).tools
    whole = response_body(collect(CALLS), response_id=RESP, model="m", created=1, tools=tools)
    assert whole["output"] == [SPAWN_ITEM, PATCH_ITEM]
    parsed = valid_response(whole)
    assert [item.type for item in parsed.output] == ["function_call", "custom_tool_call"]

    payloads = stream(CALLS, tools=tools)
    assert payloads[-1]["response"] == whole
    state: ResponseStreamState[Any] = ResponseStreamState(input_tools=omit, text_format=omit)
    for payload in payloads:
        state.handle_event(typing.cast(Any, valid_event(payload)))
    custom = [p for p in payloads if p["type"].startswith("response.custom_tool_call_input")]
    assert custom == [
        {
            "type": "response.custom_tool_call_input.delta",
            "item_id": "fc_x_1",
            "output_index": 1,
            "delta": PATCH_TEXT,
            "sequence_number": custom[0]["sequence_number"],
        },
        {
            "type": "response.custom_tool_call_input.done",
            "item_id": "fc_x_1",
            "output_index": 1,
            "input": PATCH_TEXT,
            "sequence_number": custom[0]["sequence_number"] + 1,
        },
    ]
    added = [p["item"] for p in payloads if p["type"] == "response.output_item.added"]
    assert added[0]["namespace"] == "multi_agent_v1" and added[0]["name"] == "spawn_agent"
    assert added[1] == {**PATCH_ITEM, "input": ""}
    deltas = [p["delta"] for p in payloads if p["type"] == "response.function_call_arguments.delta"]
    assert deltas == ['{"task":', ' "t"}']  # the custom tool's JSON wrapping never shows


def test_a_custom_tool_call_whose_arguments_are_not_the_wrapper_passes_them_as_text() -> None:
    events = [
        BlockStarted(0, "tool_use", id="c2", name="apply_patch"),
        ToolInputDelta(0, "not json"),
        BlockStopped(0),
        TurnCompleted("s", False, Usage(5, 9), None, "tool_use", "", 1),
    ]
    tools = parse_request(body(tools=[PATCH])).tools
    whole = response_body(collect(events), response_id=RESP, model="m", created=1, tools=tools)
    assert whole["output"][0]["input"] == "not json"
