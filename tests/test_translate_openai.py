"""OpenAI Chat Completions: request bodies to turns, recorded transcripts to exact chunks."""

from __future__ import annotations

import json
from typing import Any

import pytest
from transcripts import lines, replay

from tray_app.errors import InvalidRequest
from tray_app.protocol.common import Collector
from tray_app.protocol.model import (
    CliEvent,
    ImagePart,
    Message,
    TextPart,
    ToolResultPart,
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
        pytest.param(
            body(stream=True, stream_options={"include_usage": True}),
            turn(stream=True, include_usage=True),
            id="stream-with-usage",
        ),
        pytest.param(body(stop="END"), turn(stop=("END",)), id="stop-string"),
        pytest.param(body(stop=["a", "b"]), turn(stop=("a", "b")), id="stop-list"),
        pytest.param(body(n=1, user="u-1"), turn(user="u-1"), id="n-1-and-user"),
        pytest.param(
            body(tools=[{"type": "function"}], temperature=0.2, seed=7, top_p=None),
            turn(ignored=("temperature", "seed", "tools")),
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
