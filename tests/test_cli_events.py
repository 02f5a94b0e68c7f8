"""CliStream replays the recorded CLI transcripts (tests/data) into exact event sequences."""

from __future__ import annotations

import logging
from typing import Any, get_args

import pytest
from transcripts import lines, replay

from tray_app.protocol.cli_events import CliStream, parse_line
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

MODEL = "claude-sonnet-5-5"
EVENT_TYPES = get_args(CliEvent)
# What the CLI asked after the model stopped for max_tokens; the test upstream echoes it.
RESUME_PROMPT = (
    "Output token limit hit. Resume directly — no apology, no recap of what you were "
    "doing. Pick up mid-thought if that is where the cut happened. Break remaining work "
    "into smaller pieces."
)


def stream_events(raw: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [line["event"] for line in raw if line.get("type") == "stream_event"]


def unstopped_blocks(events: list[CliEvent]) -> set[int]:
    started = {e.index for e in events if isinstance(e, BlockStarted)}
    return started - {e.index for e in events if isinstance(e, BlockStopped)}


def joined_text(events: list[CliEvent]) -> str:
    return "".join(e.text for e in events if isinstance(e, TextDelta))


# ---- successful transcripts ----


def test_text() -> None:
    sid = "1d6289a4-95ed-409b-a016-71b952f0c163"
    assert replay(lines("text")) == [
        SessionStarted(sid, MODEL),
        MessageStarted("msg_877810587ce148908139", MODEL, Usage(11, 1)),
        BlockStarted(0, "text"),
        TextDelta(0, "Hel"),
        TextDelta(0, "lo, "),
        TextDelta(0, "world"),
        TextDelta(0, "!"),
        BlockStopped(0),
        MessageDelta("end_turn", None, 7),
        TurnCompleted(
            session_id=sid,
            is_error=False,
            usage=Usage(11, 7),
            cost_usd=9.199999999999999e-05,
            stop_reason="end_turn",
            result_text="Hello, world!",
            num_turns=1,
            api_error_status=None,
            subtype="success",
        ),
    ]


def test_thinking_then_text_count_indices_across_the_turn() -> None:
    sid = "9f61ba14-2f13-4562-b269-a08c0c16ad7b"
    assert replay(lines("thinking_text")) == [
        SessionStarted(sid, MODEL),
        MessageStarted("msg_910fc07b802e4232957b", MODEL, Usage(11, 1)),
        BlockStarted(0, "thinking"),
        ThinkingDelta(0, "Let me "),
        ThinkingDelta(0, "think."),
        SignatureDelta(0, "sig-test"),
        BlockStopped(0),
        BlockStarted(1, "text"),
        TextDelta(1, "The answer"),
        TextDelta(1, " is 4."),
        BlockStopped(1),
        MessageDelta("end_turn", None, 7),
        TurnCompleted(
            session_id=sid,
            is_error=False,
            usage=Usage(11, 7),
            cost_usd=9.199999999999999e-05,
            stop_reason="end_turn",
            result_text="The answer is 4.",
            num_turns=1,
            subtype="success",
        ),
    ]


def test_tool_use_transcript_really_holds_two_model_calls() -> None:
    # The model called the unknown tool "lookup"; the CLI answered it with an error
    # (a `user` line) and asked again, so upstream block indices restart at 0.
    raw = lines("tool_use")
    events = stream_events(raw)
    assert [e["message"]["id"] for e in events if e["type"] == "message_start"] == [
        "msg_80da4a4e8ce74639a7ea",
        "msg_f1c067ed482a46678d06",
    ]
    assert [e["index"] for e in events if e["type"] == "content_block_start"] == [0, 1, 0]
    results = [
        block
        for line in raw
        if line["type"] == "user"
        for block in line["message"]["content"]
        if block["type"] == "tool_result"
    ]
    assert [(r["tool_use_id"], r["is_error"]) for r in results] == [
        ("toolu_cb7d3dc9c3614dbbb648", True)
    ]


def test_tool_use_indices_keep_counting_up_across_model_calls() -> None:
    sid = "f392e160-98d8-40e0-88ab-f3ebe71aa49e"
    events = replay(lines("tool_use"))
    assert events == [
        SessionStarted(sid, MODEL),
        MessageStarted("msg_80da4a4e8ce74639a7ea", MODEL, Usage(11, 1)),
        BlockStarted(0, "text"),
        TextDelta(0, "Checking."),
        BlockStopped(0),
        BlockStarted(1, "tool_use", id="toolu_cb7d3dc9c3614dbbb648", name="lookup"),
        ToolInputDelta(1, '{"q": "w'),
        ToolInputDelta(1, 'eather",'),
        ToolInputDelta(1, ' "n": 2}'),
        ToolFinished(
            "toolu_cb7d3dc9c3614dbbb648",
            True,
            "<tool_use_error>Error: No such tool available: lookup</tool_use_error>",
        ),
        BlockStopped(1),
        MessageDelta("tool_use", None, 7),
        MessageStarted("msg_f1c067ed482a46678d06", MODEL, Usage(11, 1)),
        BlockStarted(2, "text"),
        TextDelta(2, "echo: "),
        TextDelta(2, "hi"),
        BlockStopped(2),
        MessageDelta("end_turn", None, 7),
        TurnCompleted(
            session_id=sid,
            is_error=False,
            usage=Usage(22, 14),
            cost_usd=0.00018399999999999997,
            stop_reason="end_turn",
            result_text="echo: hi",
            num_turns=2,
            subtype="success",
        ),
    ]
    started = [e.index for e in events if isinstance(e, BlockStarted)]
    assert started == [0, 1, 2]


def test_max_tokens_transcript_ends_at_the_limit() -> None:
    # CLI 2.1.330 answers a max_tokens stop by asking again itself ("Output token
    # limit hit. Resume directly ..."): two model calls, and the result says end_turn.
    # The client's limit was hit, so CliStream passes nothing after that stop.
    sid = "25e6dddb-8c18-4eac-847c-3630257958ec"
    assert replay(lines("max_tokens")) == [
        SessionStarted(sid, MODEL),
        MessageStarted("msg_004b34ab3f944a6eb1f6", MODEL, Usage(11, 1)),
        BlockStarted(0, "text"),
        TextDelta(0, "cut "),
        TextDelta(0, "short"),
        BlockStopped(0),
        MessageDelta("max_tokens", None, 7),
        TurnCompleted(
            session_id=sid,
            is_error=False,
            usage=Usage(22, 14),
            cost_usd=0.00018399999999999997,
            stop_reason="end_turn",
            result_text="echo: " + RESUME_PROMPT,
            num_turns=2,
            subtype="success",
        ),
    ]


# ---- cut streams ----


def test_cut_stream_transcript_has_only_the_unstreamed_retry() -> None:
    # The recording's upstream served its one scripted reply ("ab" "cd" "ef") to the
    # streamed request it cut; the CLI forwarded none of those deltas, and its
    # non-streaming retry got the upstream's default echo answer.
    raw = lines("cut_stream")
    assert stream_events(raw) == []
    assistant = [line for line in raw if line["type"] == "assistant"]
    assert [line["message"]["content"] for line in assistant] == [
        [{"type": "text", "text": "echo: hi"}]
    ]


def test_cut_stream_message_that_was_never_streamed_is_emitted_whole() -> None:
    sid = "4504ff34-db00-4c96-856c-5d5f6d0bcf29"
    events = replay(lines("cut_stream"))
    assert events == [
        SessionStarted(sid, MODEL),
        MessageStarted("msg_a5f10e75862b40c3a42f", MODEL, Usage(11, 7)),
        BlockStarted(0, "text"),
        TextDelta(0, "echo: hi"),
        BlockStopped(0),
        TurnCompleted(
            session_id=sid,
            is_error=False,
            usage=Usage(11, 7),
            cost_usd=9.199999999999999e-05,
            stop_reason="end_turn",
            result_text="echo: hi",
            num_turns=1,
            subtype="success",
        ),
    ]
    assert joined_text(events) == "echo: hi"
    assert unstopped_blocks(events) == set()


def _text_lines_without_deltas(*dropped: str) -> list[dict[str, Any]]:
    """text.jsonl with the text deltas carrying these pieces removed (a stream cut short)."""
    return [
        line
        for line in lines("text")
        if not (
            line["type"] == "stream_event" and line["event"].get("delta", {}).get("text") in dropped
        )
    ]


def test_deltas_cut_short_get_their_tail_from_the_assistant_line() -> None:
    events = replay(_text_lines_without_deltas("world", "!"))
    assert [e for e in events if isinstance(e, TextDelta | BlockStarted | BlockStopped)] == [
        BlockStarted(0, "text"),
        TextDelta(0, "Hel"),
        TextDelta(0, "lo, "),
        TextDelta(0, "world!"),
        BlockStopped(0),
    ]


def _cut_then(name: str, upto: int, content: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The transcript `name` cut before its line `upto`, then cut_stream.jsonl's
    unstreamed retry (a new message id) carrying `content`, and its result line."""
    retry, result = [line for line in lines("cut_stream") if line["type"] != "system"]
    text = "".join(str(block.get("text", "")) for block in content)
    message = dict(retry["message"], content=content)
    return [*lines(name)[:upto], dict(retry, message=message), dict(result, result=text)]


def _cut_after_hel_then(retry_text: str) -> list[dict[str, Any]]:
    """text.jsonl cut after its first delta ("Hel"), then a retry carrying `retry_text`."""
    return _cut_then("text", 5, [{"type": "text", "text": retry_text}])


def blocks_of(events: list[CliEvent]) -> list[CliEvent]:
    kinds = TextDelta | ThinkingDelta | BlockStarted | BlockStopped | CallAbandoned
    return [e for e in events if isinstance(e, kinds)]


def test_cut_stream_retry_that_extends_the_partial_text_adds_only_the_tail() -> None:
    events = replay(_cut_after_hel_then("Hello, world!"))
    assert joined_text(events) == "Hello, world!"
    assert unstopped_blocks(events) == set()
    assert blocks_of(events) == [
        BlockStarted(0, "text"),
        TextDelta(0, "Hel"),
        TextDelta(0, "lo, world!"),
        BlockStopped(0),
    ]


def test_cut_stream_retry_with_a_different_answer_abandons_the_cut_call() -> None:
    # A retry samples again, so its text need not start with what was streamed: the
    # consumer is told, the cut block is stopped, and the retry comes whole.
    events = replay(_cut_after_hel_then("echo: hi"))
    assert unstopped_blocks(events) == set()
    assert blocks_of(events) == [
        BlockStarted(0, "text"),
        TextDelta(0, "Hel"),
        CallAbandoned(),
        BlockStopped(0),
        BlockStarted(1, "text"),
        TextDelta(1, "echo: hi"),
        BlockStopped(1),
    ]


THINKING = {"type": "thinking", "thinking": "Let me think.", "signature": "sig-test"}
# What thinking_text.jsonl streamed before line 13: the thinking whole, then "The answer".
STREAMED_BEFORE_THE_CUT = [
    BlockStarted(0, "thinking"),
    ThinkingDelta(0, "Let me "),
    ThinkingDelta(0, "think."),
    BlockStopped(0),
    BlockStarted(1, "text"),
    TextDelta(1, "The answer"),
]


def test_a_retry_continuing_every_cut_block_completes_the_open_one() -> None:
    # Cut after "The answer": the thinking block was whole and stopped, the text open.
    retry = [THINKING, {"type": "text", "text": "The answer is 4."}]
    events = replay(_cut_then("thinking_text", 13, retry))
    assert unstopped_blocks(events) == set()
    assert blocks_of(events) == [
        *STREAMED_BEFORE_THE_CUT,
        TextDelta(1, " is 4."),
        BlockStopped(1),
    ]


def test_a_retry_continuing_only_some_cut_blocks_abandons_the_call() -> None:
    retry = [THINKING, {"type": "text", "text": "Four."}]
    events = replay(_cut_then("thinking_text", 13, retry))
    assert unstopped_blocks(events) == set()
    assert blocks_of(events) == [
        *STREAMED_BEFORE_THE_CUT,
        CallAbandoned(),
        BlockStopped(1),
        BlockStarted(2, "thinking"),
        ThinkingDelta(2, "Let me think."),
        BlockStopped(2),
        BlockStarted(3, "text"),
        TextDelta(3, "Four."),
        BlockStopped(3),
    ]


def test_a_cut_tool_call_is_never_continued() -> None:
    # Cut inside the tool call's input: even the same call again is a new call.
    call = {"type": "tool_use", "id": "toolu_2", "name": "lookup", "input": {"q": "weather"}}
    events = replay(_cut_then("tool_use", 9, [{"type": "text", "text": "Checking."}, call]))
    assert CallAbandoned() in events
    assert unstopped_blocks(events) == set()
    started = [e for e in events if isinstance(e, BlockStarted)]
    assert [(e.kind, e.id) for e in started][-2:] == [("text", ""), ("tool_use", "toolu_2")]


# ---- failures ----


@pytest.mark.parametrize(
    ("name", "session_id", "kind", "message", "status"),
    [
        (
            "error_401",
            "e11f240e-e5f6-413d-bd0f-04413bcbacb7",
            "authentication_failed",
            "Invalid API key · Fix external API key",
            401,
        ),
        (
            "error_429",
            "e8d133e7-cf53-40c8-9c73-15f50264b3b1",
            "rate_limit",
            "API Error: Request rejected (429) · rate limited",
            429,
        ),
        (
            "error_500",
            "30550921-714d-435a-b8f6-bea545875b64",
            "server_error",
            "API Error: 500 boom. This is a server-side issue, usually temporary — try again "
            "in a moment. If it persists, check your inference gateway (127.0.0.1:46525).",
            500,
        ),
        (
            "error_529",
            "93f6e5a8-3614-4e91-9725-1aa006b0357e",
            "server_error",
            "API Error: 529 overloaded. This is a server-side issue, usually temporary — try "
            "again in a moment. If it persists, check your inference gateway "
            "(127.0.0.1:46525).",
            529,
        ),
        (
            "not_signed_in",
            "169769ed-025e-44cc-b088-2c63f3bc6d7e",
            "authentication_failed",
            "Not logged in · Please run /login",
            None,
        ),
    ],
    ids=["error_401", "error_429", "error_500", "error_529", "not_signed_in"],
)
def test_failed_turns(
    name: str, session_id: str, kind: str, message: str, status: int | None
) -> None:
    raw = lines(name)
    # The kind is the assistant placeholder's machine-readable `error` field.
    assert [line["error"] for line in raw if line["type"] == "assistant"] == [kind]
    assert replay(raw) == [
        SessionStarted(session_id, MODEL),
        ErrorReported(kind, message),
        TurnCompleted(
            session_id=session_id,
            is_error=True,
            usage=Usage(),
            cost_usd=0.0,
            stop_reason="stop_sequence",
            result_text=message,
            num_turns=1,
            api_error_status=status,
            subtype="success",
        ),
    ]


# ---- single lines ----


@pytest.mark.parametrize(
    "line",
    [
        {"type": "system", "subtype": "status", "status": "requesting", "session_id": "s"},
        {"type": "system", "subtype": "thinking_tokens", "estimated_tokens": 2},
        {"type": "user", "message": {"role": "user", "content": "hi"}},
        {"type": "tool_progress", "tool_use_id": "t", "elapsed": 1.5},
        {"type": "a_line_type_from_a_future_cli", "payload": {"x": 1}},
        {"type": 7},
        {},
        {"type": "stream_event", "event": {"type": "ping"}},
        {"type": "stream_event", "event": {"type": "message_stop"}},
        {"type": "stream_event", "event": {"type": "some_new_sse_event", "index": 0}},
    ],
)
def test_unknown_lines_are_ignored(line: dict[str, Any]) -> None:
    assert parse_line(line) == []
    assert CliStream().feed(line) == []


def test_an_unknown_line_type_is_logged(caplog: pytest.LogCaptureFixture) -> None:
    # STYLE.md item 2: "an unknown line type is logged and skipped, never fatal".
    caplog.set_level(logging.DEBUG, logger="tray_app.protocol.cli_events")
    line = {"type": "a_line_type_from_a_future_cli", "payload": {"x": 1}}
    assert CliStream().feed(line) == []
    assert any("a_line_type_from_a_future_cli" in r.getMessage() for r in caplog.records)


def _mid_text_block() -> CliStream:
    """A CliStream that has seen text.jsonl up to its first delta (block 0 open)."""
    stream = CliStream()
    for line in lines("text")[:5]:
        stream.feed(line)
    return stream


@pytest.mark.parametrize(
    "line",
    [
        {
            "type": "stream_event",
            "parent_tool_use_id": "toolu_sub",
            "event": {
                "type": "content_block_delta",
                "index": 0,
                "delta": {"type": "text_delta", "text": "from a subagent"},
            },
        },
        {
            "type": "stream_event",
            "parent_tool_use_id": "toolu_sub",
            "event": {"type": "content_block_start", "index": 0, "content_block": {"type": "text"}},
        },
        {
            "type": "stream_event",
            "parent_tool_use_id": "toolu_sub",
            "event": {"type": "content_block_stop", "index": 0},
        },
        {
            "type": "assistant",
            "parent_tool_use_id": "toolu_sub",
            "message": {
                "id": "msg_sub",
                "model": MODEL,
                "content": [{"type": "text", "text": "from a subagent"}],
            },
        },
    ],
)
def test_subagent_lines_yield_nothing(line: dict[str, Any]) -> None:
    assert parse_line(line) == []
    assert CliStream().feed(line) == []
    stream = _mid_text_block()
    assert stream.feed(line) == []
    # The main block is still open and still numbered 0.
    assert stream.feed(lines("text")[5]) == [TextDelta(0, "lo, ")]


def test_delta_for_a_block_never_started_is_dropped() -> None:
    stream = _mid_text_block()
    line = {
        "type": "stream_event",
        "event": {"type": "content_block_delta", "index": 3, "delta": {"type": "text_delta"}},
    }
    assert stream.feed(line) == []


def test_rate_limit_event() -> None:
    info = {
        "status": "allowed_warning",
        "resetsAt": 1767225600,
        "rateLimitType": "five_hour",
        "utilization": 0.8,
    }
    assert parse_line({"type": "rate_limit_event", "rate_limit_info": info}) == [
        RateLimitReported("allowed_warning", "five_hour", 1767225600, 0.8, raw=info)
    ]


def test_rate_limit_event_with_windows_and_extra_usage() -> None:
    # As CLI 2.1.330 reports it when the five-hour window is used up and overage is on.
    info = {
        "status": "rejected",
        "resetsAt": 1795318521,
        "rateLimitType": "five_hour",
        "overageStatus": "allowed",
        "overageResetsAt": 1795401321,
        "isUsingOverage": True,
        "overageInUse": True,
        "unifiedWindows": {
            "five_hour": {"utilization": 1, "resetsAt": 1795318521},
            "seven_day": {"utilization": 0.4, "resetsAt": 1795574121},
            "odd": "not an object",
        },
    }
    (event,) = parse_line({"type": "rate_limit_event", "rate_limit_info": info})
    assert isinstance(event, RateLimitReported)
    assert event.using_overage is True
    assert event.windows == (
        QuotaWindow("five_hour", 1.0, 1795318521),
        QuotaWindow("seven_day", 0.4, 1795574121),
    )


def _se(event: Any) -> dict[str, Any]:
    return {"type": "stream_event", "event": event}


GARBAGE = [
    pytest.param(_se("not an object"), id="event-string"),
    pytest.param(_se({"type": "message_start", "message": "x"}), id="message-string"),
    pytest.param(_se({"type": "message_start", "message": [1]}), id="message-list"),
    pytest.param(
        _se({"type": "message_start", "message": {"id": 5, "usage": "x"}}), id="usage-string"
    ),
    pytest.param(
        _se({"type": "content_block_start", "index": 0, "content_block": "text"}),
        id="content_block-string",
    ),
    pytest.param(
        _se({"type": "content_block_start", "index": "0", "content_block": {"type": 1}}),
        id="index-string",
    ),
    pytest.param(
        _se({"type": "content_block_delta", "index": 0, "delta": "hi"}), id="delta-string"
    ),
    pytest.param(
        _se(
            {"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": 5}}
        ),
        id="text-number",
    ),
    pytest.param(_se({"type": "content_block_stop", "index": None}), id="stop-index-null"),
    pytest.param(
        _se({"type": "message_delta", "delta": "x", "usage": 5}), id="message_delta-string"
    ),
    pytest.param(
        _se({"type": "message_delta", "delta": {}, "usage": {"output_tokens": "7"}}),
        id="output_tokens-string",
    ),
    pytest.param(
        {
            "type": "result",
            "usage": "x",
            "total_cost_usd": "1",
            "num_turns": "2",
            "api_error_status": "401",
            "result": 5,
            "stop_reason": 7,
        },
        id="result-fields",
    ),
    pytest.param({"type": "system", "subtype": "init", "session_id": 5}, id="init-session-number"),
    pytest.param({"type": "rate_limit_event", "rate_limit_info": "x"}, id="rate_limit-string"),
    pytest.param({"type": "assistant", "message": "x"}, id="assistant-message-string"),
    pytest.param({"type": "assistant", "message": {"id": "m", "content": 5}}, id="content-number"),
    pytest.param(
        {"type": "assistant", "message": {"id": "m", "content": "x"}}, id="content-string"
    ),
    pytest.param(
        {
            "type": "assistant",
            "message": {"id": "m", "content": [{"type": "tool_use", "input": 1}]},
        },
        id="tool_use-input-number",
    ),
    pytest.param(
        {"type": "assistant", "message": {"model": "<synthetic>", "content": 5}, "error": 1},
        id="synthetic-content-number",
    ),
    pytest.param(
        {"type": "assistant", "message": {"model": "<synthetic>", "content": [1, {"text": None}]}},
        id="synthetic-blocks",
    ),
]


@pytest.mark.parametrize("line", GARBAGE)
def test_wrong_types_never_raise(line: dict[str, Any]) -> None:
    for stream in (CliStream(), _mid_text_block()):
        events = stream.feed(line)
        assert all(isinstance(e, EVENT_TYPES) for e in events)
