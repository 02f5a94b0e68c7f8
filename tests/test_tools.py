"""Client tools end to end: the real SDKs, the proxy, the real CLI and the scripted upstream.

The model (the upstream) sees the client's tools as `mcp__client__<name>` with the
schema exactly as declared, and nothing else; the client gets its own names back,
runs the tool, and the result reaches the upstream as a real tool_result in the same
conversation.
"""

from __future__ import annotations

import json
import time
from typing import Any

import httpx
import openai
import pytest
from conftest import Proxy, ant, oai
from upstream import Reply, Text, Thinking, ToolUse, Upstream, text

SCHEMA: dict[str, Any] = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "type": "object",
    "properties": {
        "city": {"type": "string", "description": "City name"},
        "days": {"type": "integer", "exclusiveMinimum": 0, "maximum": 14},
    },
    "required": ["city"],
    "additionalProperties": False,
}
OAI_TOOLS = [
    {
        "type": "function",
        "function": {
            "name": "get_weather",
            "description": "Weather for a city",
            "parameters": SCHEMA,
        },
    },
    {
        "type": "function",
        "function": {
            "name": "get_time",
            "description": "Local time in a city",
            "parameters": {"type": "object", "properties": {"city": {"type": "string"}}},
        },
    },
]


def offered(upstream: Upstream, n: int = 0) -> dict[str, Any]:
    """The tools the n-th upstream request offered the model, by name."""
    return {t["name"]: t for t in upstream.messages_requests()[n].body.get("tools", [])}


def tool_results(body: dict[str, Any]) -> list[dict[str, Any]]:
    return [
        block
        for m in body.get("messages", [])
        if isinstance(m.get("content"), list)
        for block in m["content"]
        if block.get("type") == "tool_result"
    ]


def test_openai_tool_call_and_round_trip(proxy: Proxy, upstream: Upstream) -> None:
    upstream.push(
        Reply(
            blocks=(
                Text(("Let me check.",)),
                ToolUse("mcp__client__get_weather", {"city": "Paris"}),
            ),
            stop_reason="tool_use",
        ),
        text("It is sunny in Paris."),
    )
    client = oai(proxy)
    messages: list[Any] = [{"role": "user", "content": "Weather in Paris?"}]
    first = client.chat.completions.create(model="sonnet", messages=messages, tools=OAI_TOOLS)  # type: ignore[arg-type]
    choice = first.choices[0]
    assert choice.finish_reason == "tool_calls"
    assert choice.message.tool_calls is not None
    call = choice.message.tool_calls[0]
    assert call.function.name == "get_weather"  # type: ignore[union-attr]
    assert json.loads(call.function.arguments) == {"city": "Paris"}  # type: ignore[union-attr]

    # The model saw the client's tools as real definitions, schema intact, and no
    # built-in Claude Code tool.
    tools = offered(upstream)
    assert set(tools) == {"mcp__client__get_weather", "mcp__client__get_time"}
    assert tools["mcp__client__get_weather"]["input_schema"] == SCHEMA
    assert tools["mcp__client__get_weather"]["description"] == "Weather for a city"

    messages += [
        choice.message.model_dump(exclude_none=True),
        {"role": "tool", "tool_call_id": call.id, "content": "sunny, 24 C"},
    ]
    second = client.chat.completions.with_raw_response.create(
        model="sonnet",
        messages=messages,
        tools=OAI_TOOLS,  # type: ignore[arg-type]
    )
    answer = second.parse()
    assert answer.choices[0].message.content == "It is sunny in Paris."
    assert answer.choices[0].finish_reason == "stop"
    assert second.headers["x-session-id"] == first.model_extra.get(
        "session_id", second.headers["x-session-id"]
    )  # type: ignore[union-attr]

    later = upstream.messages_requests()[1].body
    results = tool_results(later)
    assert [r["tool_use_id"] for r in results] == [call.id]
    assert "sunny, 24 C" in json.dumps(results[0]["content"])
    assert not results[0].get("is_error")
    # The same conversation: the first question and the tool call are in it once.
    user_texts = [
        b.get("text")
        for m in later["messages"]
        if m["role"] == "user" and isinstance(m["content"], list)
        for b in m["content"]
        if b.get("type") == "text"
    ]
    assert user_texts.count("Weather in Paris?") == 1


def test_openai_streaming_parallel_tool_calls(proxy: Proxy, upstream: Upstream) -> None:
    upstream.push(
        Reply(
            blocks=(
                ToolUse("mcp__client__get_weather", {"city": "Oslo", "days": 2}, pieces=4),
                ToolUse("mcp__client__get_time", {"city": "Oslo"}),
            ),
            stop_reason="tool_use",
        ),
        text("Cold, and it is noon."),
    )
    client = oai(proxy)
    messages: list[Any] = [{"role": "user", "content": "Oslo?"}]
    stream = client.chat.completions.create(
        model="sonnet",
        messages=messages,
        tools=OAI_TOOLS,  # type: ignore[arg-type]
        stream=True,
    )
    calls: dict[int, dict[str, str]] = {}
    fragments = 0
    finish = None
    for chunk in stream:
        if not chunk.choices:
            continue
        delta = chunk.choices[0].delta
        for tc in delta.tool_calls or []:
            slot = calls.setdefault(tc.index, {"id": "", "name": "", "arguments": ""})
            if tc.id:
                slot["id"] = tc.id
            if tc.function and tc.function.name:
                slot["name"] = tc.function.name
            if tc.function and tc.function.arguments:
                slot["arguments"] += tc.function.arguments
                fragments += 1
        finish = chunk.choices[0].finish_reason or finish
    assert finish == "tool_calls"
    assert [calls[i]["name"] for i in sorted(calls)] == ["get_weather", "get_time"]
    assert json.loads(calls[0]["arguments"]) == {"city": "Oslo", "days": 2}
    assert json.loads(calls[1]["arguments"]) == {"city": "Oslo"}
    assert fragments >= 4  # arguments arrive as they are generated, not in one piece

    messages.append(
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [
                {
                    "id": calls[i]["id"],
                    "type": "function",
                    "function": {"name": calls[i]["name"], "arguments": calls[i]["arguments"]},
                }
                for i in sorted(calls)
            ],
        }
    )
    messages += [
        {"role": "tool", "tool_call_id": calls[0]["id"], "content": "-3 C"},
        {"role": "tool", "tool_call_id": calls[1]["id"], "content": "12:00"},
    ]
    text_out = "".join(
        c.choices[0].delta.content or ""
        for c in client.chat.completions.create(
            model="sonnet",
            messages=messages,
            tools=OAI_TOOLS,  # type: ignore[arg-type]
            stream=True,
        )
        if c.choices
    )
    assert text_out == "Cold, and it is noon."
    results = tool_results(upstream.messages_requests()[1].body)
    assert [r["tool_use_id"] for r in results] == [calls[0]["id"], calls[1]["id"]]


def test_anthropic_tool_use_round_trip_streaming_and_not(proxy: Proxy, upstream: Upstream) -> None:
    tools: list[Any] = [
        {
            "name": "lookup",
            "description": "Look a word up",
            "input_schema": {"type": "object", "properties": {"word": {"type": "string"}}},
            "cache_control": {"type": "ephemeral"},
            "eager_input_streaming": True,
        }
    ]
    upstream.push(
        Reply(blocks=(ToolUse("mcp__client__lookup", {"word": "tray"}),), stop_reason="tool_use"),
        text("A tray holds things."),
    )
    client = ant(proxy)
    messages: list[Any] = [{"role": "user", "content": "Define tray"}]
    with client.messages.stream(
        model="sonnet", max_tokens=200, messages=messages, tools=tools
    ) as stream:
        partial = [e for e in stream if e.type == "input_json"]
        first = stream.get_final_message()
    assert first.stop_reason == "tool_use"
    use = next(b for b in first.content if b.type == "tool_use")
    assert use.name == "lookup"
    assert use.input == {"word": "tray"}
    assert partial, "input_json_delta events were streamed"

    messages += [
        {"role": "assistant", "content": [b.model_dump() for b in first.content]},
        {
            "role": "user",
            "content": [
                {
                    "type": "tool_result",
                    "tool_use_id": use.id,
                    "content": [{"type": "text", "text": "not found"}],
                    "is_error": True,
                }
            ],
        },
    ]
    second = client.messages.create(model="sonnet", max_tokens=200, messages=messages, tools=tools)
    assert second.content[0].text == "A tray holds things."  # type: ignore[union-attr]
    results = tool_results(upstream.messages_requests()[1].body)
    assert results[0]["tool_use_id"] == use.id
    assert results[0]["is_error"] is True


def test_a_tool_result_for_a_conversation_not_held_is_restored(
    proxy: Proxy, upstream: Upstream
) -> None:
    """A history the proxy never served, ending in a tool call and its result, still
    reaches the model as a tool_use followed by its tool_result."""
    upstream.push(text("Done."))
    messages: list[Any] = [
        {"role": "user", "content": "What time is it in Rome?"},
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [
                {
                    "id": "call_ext1",
                    "type": "function",
                    "function": {"name": "get_time", "arguments": '{"city": "Rome"}'},
                }
            ],
        },
        {"role": "tool", "tool_call_id": "call_ext1", "content": "09:30"},
    ]
    answer = oai(proxy).chat.completions.create(model="sonnet", messages=messages, tools=OAI_TOOLS)  # type: ignore[arg-type]
    assert answer.choices[0].message.content == "Done."
    body = upstream.messages_requests()[0].body
    uses = [
        b
        for m in body["messages"]
        if m["role"] == "assistant" and isinstance(m["content"], list)
        for b in m["content"]
        if b.get("type") == "tool_use"
    ]
    assert [(u["id"], u["name"]) for u in uses] == [("call_ext1", "mcp__client__get_time")]
    results = tool_results(body)
    assert [r["tool_use_id"] for r in results] == ["call_ext1"]
    assert "09:30" in json.dumps(results[0]["content"])


def test_structured_output_with_a_schema(proxy: Proxy, upstream: Upstream) -> None:
    schema = {
        "type": "object",
        "properties": {"name": {"type": "string"}, "age": {"type": "integer"}},
        "required": ["name", "age"],
    }
    upstream.push(
        Reply(
            blocks=(ToolUse("StructuredOutput", {"name": "Ada", "age": 36}),),
            stop_reason="tool_use",
        ),
        text("ok"),
    )
    answer = oai(proxy).chat.completions.create(
        model="sonnet",
        messages=[{"role": "user", "content": "Who wrote the first program?"}],
        response_format={
            "type": "json_schema",
            "json_schema": {"name": "person", "schema": schema},
        },
    )
    assert json.loads(answer.choices[0].message.content or "") == {"name": "Ada", "age": 36}
    assert answer.choices[0].finish_reason == "stop"
    assert answer.choices[0].message.tool_calls is None


def test_count_tokens_is_an_estimate(proxy: Proxy) -> None:
    r = httpx.post(
        proxy.url + "/v1/messages/count_tokens",
        json={"model": "sonnet", "messages": [{"role": "user", "content": "hello " * 100}]},
    )
    assert r.status_code == 200
    assert r.headers["x-claude-tray-estimate"] == "true"
    assert 100 <= r.json()["input_tokens"] <= 400


# ---- the Responses API ----


RESPONSES_TOOLS: list[Any] = [
    {
        "type": "function",
        "name": "get_weather",
        "description": "Weather for a city",
        "parameters": SCHEMA,
    },
    {"type": "web_search"},  # a hosted tool we cannot serve: ignored, never fatal
]


def test_responses_text_streaming_and_not(proxy: Proxy, upstream: Upstream) -> None:
    client = oai(proxy)
    upstream.push(text("Hello ", "there"))
    plain = client.responses.create(model="sonnet", instructions="Be brief.", input="Say hello")
    assert plain.output_text == "Hello there"
    assert plain.status == "completed"
    assert plain.usage is not None and plain.usage.output_tokens == 7
    assert upstream.messages_requests()[0].body["system"][-1]["text"] == "Be brief."

    upstream.push(text("one ", "two"))
    kinds: list[str] = []
    deltas: list[str] = []
    with client.responses.stream(model="sonnet", input="Count") as stream:
        for event in stream:
            kinds.append(event.type)
            if event.type == "response.output_text.delta":
                deltas.append(event.delta)
        final = stream.get_final_response()
    assert deltas == ["one ", "two"]
    assert kinds[0] == "response.created"
    assert kinds[-1] == "response.completed"
    assert "response.output_item.done" in kinds
    assert final.output_text == "one two"


def test_responses_function_call_round_trip(proxy: Proxy, upstream: Upstream) -> None:
    client = oai(proxy)
    upstream.push(
        Reply(
            blocks=(ToolUse("mcp__client__get_weather", {"city": "Lima"}),), stop_reason="tool_use"
        ),
        text("Lima is mild."),
    )
    first = client.responses.create(model="sonnet", input="Weather in Lima?", tools=RESPONSES_TOOLS)
    call = next(item for item in first.output if item.type == "function_call")
    assert call.name == "get_weather"
    assert json.loads(call.arguments) == {"city": "Lima"}
    assert set(offered(upstream)) == {"mcp__client__get_weather"}

    second = client.responses.create(
        model="sonnet",
        previous_response_id=first.id,
        input=[{"type": "function_call_output", "call_id": call.call_id, "output": "18 C, cloudy"}],
        tools=RESPONSES_TOOLS,
    )
    assert second.output_text == "Lima is mild."
    results = tool_results(upstream.messages_requests()[1].body)
    assert [r["tool_use_id"] for r in results] == [call.call_id]
    assert "18 C, cloudy" in json.dumps(results[0]["content"])


# ---- reasoning ----


def test_reasoning_effort_reaches_the_model(proxy: Proxy, upstream: Upstream) -> None:
    oai(proxy).chat.completions.create(
        model="sonnet",
        messages=[{"role": "user", "content": "think hard"}],
        reasoning_effort="high",
    )
    body = upstream.messages_requests()[0].body
    assert body.get("output_config", {}).get("effort") == "high"


def test_anthropic_thinking_round_trip_keeps_the_signature(
    proxy: Proxy, upstream: Upstream
) -> None:
    upstream.push(
        Reply(blocks=(Thinking(("Let me ", "think."), signature="sig-abc"), Text(("Four.",)))),
        text("Eight."),
    )
    client = ant(proxy)
    messages: list[Any] = [{"role": "user", "content": "2+2?"}]
    thinking: Any = {"type": "enabled", "budget_tokens": 2048}
    with client.messages.stream(
        model="sonnet", max_tokens=4096, messages=messages, thinking=thinking
    ) as stream:
        deltas = [e.thinking for e in stream if e.type == "thinking"]
        first = stream.get_final_message()
    assert "".join(deltas) == "Let me think."
    block = first.content[0]
    assert block.type == "thinking"
    assert block.signature == "sig-abc"
    # Claude Code 2.1.330 asks for adaptive thinking on models that have it, whatever
    # budget it is given (the README lists the budget as approximated).
    assert upstream.messages_requests()[0].body["thinking"]["type"] in ("adaptive", "enabled")

    messages += [
        {"role": "assistant", "content": [b.model_dump() for b in first.content]},
        {"role": "user", "content": "and 4+4?"},
    ]
    second = client.messages.create(
        model="sonnet", max_tokens=4096, messages=messages, thinking=thinking
    )
    assert second.content[-1].text == "Eight."  # type: ignore[union-attr]
    later = upstream.messages_requests()[1].body
    kept = [
        b
        for m in later["messages"]
        if m["role"] == "assistant"
        for b in m["content"]
        if b.get("type") == "thinking"
    ]
    assert [(b["thinking"], b["signature"]) for b in kept] == [("Let me think.", "sig-abc")]


def test_an_image_url_gets_a_clear_400(proxy: Proxy) -> None:
    r = httpx.post(
        proxy.openai_url + "/chat/completions",
        json={
            "model": "sonnet",
            "messages": [
                {
                    "role": "user",
                    "content": [
                        {"type": "image_url", "image_url": {"url": "https://example.com/a.png"}}
                    ],
                }
            ],
        },
    )
    assert r.status_code == 400
    assert "data:" in r.json()["error"]["message"]


def test_tool_choice_is_passed_on_as_an_instruction(proxy: Proxy, upstream: Upstream) -> None:
    oai(proxy).chat.completions.create(
        model="sonnet",
        messages=[{"role": "user", "content": "Paris?"}],
        tools=OAI_TOOLS,  # type: ignore[arg-type]
        tool_choice={"type": "function", "function": {"name": "get_time"}},
    )
    users = [m for m in upstream.messages_requests()[0].body["messages"] if m["role"] == "user"]
    texts = [b.get("text", "") for b in users[-1]["content"] if b.get("type") == "text"]
    assert "Paris?" in texts
    assert "(Answer this message by calling the tool `get_time`.)" in texts


def test_responses_like_codex_store_false_and_history_resent(
    proxy: Proxy, upstream: Upstream
) -> None:
    """Codex sends store: false and the whole input every time: the conversation still
    continues in its process, tool results handed to the waiting call."""
    client = oai(proxy)
    upstream.push(
        Reply(
            blocks=(ToolUse("mcp__client__get_weather", {"city": "Oslo"}),), stop_reason="tool_use"
        ),
        text("Oslo is cold."),
    )
    items: list[Any] = [
        {"type": "message", "role": "developer", "content": "You are Codex."},
        {"type": "message", "role": "user", "content": [{"type": "input_text", "text": "Oslo?"}]},
    ]
    first = client.responses.create(model="sonnet", input=items, tools=RESPONSES_TOOLS, store=False)
    call = next(item for item in first.output if item.type == "function_call")
    items += [
        {
            "type": "function_call",
            "call_id": call.call_id,
            "name": call.name,
            "arguments": call.arguments,
        },
        {"type": "function_call_output", "call_id": call.call_id, "output": "-5 C"},
    ]
    second = client.responses.create(
        model="sonnet", input=items, tools=RESPONSES_TOOLS, store=False
    )
    assert second.output_text == "Oslo is cold."
    assert "continued (tools)" in proxy.log()
    # store: false means that answer cannot be named later, as at OpenAI.
    with pytest.raises(openai.NotFoundError):
        client.responses.create(model="sonnet", input="and now?", previous_response_id=second.id)


CODEX_LIKE_TOOLS: list[Any] = [
    {
        "type": "namespace",
        "name": "agents",
        "description": "Sub-agents.",
        "tools": [
            {
                "type": "function",
                "name": "spawn",
                "description": "Start one.",
                "parameters": {"type": "object", "properties": {"task": {"type": "string"}}},
            }
        ],
    },
    {
        "type": "custom",
        "name": "apply_patch",
        "description": "Edit files with a patch.",
        "format": {"type": "grammar", "syntax": "lark", "definition": 'start: "*** Begin Patch"'},
    },
    {"type": "web_search"},
]


def test_responses_namespaced_and_custom_tools_round_trip(proxy: Proxy, upstream: Upstream) -> None:
    """Codex's tool kinds: a function in a namespace and a custom (free-text) tool are
    offered to the model, called, and handed back as the client declared them; their
    outputs continue the same process."""
    patch = "*** Begin Patch\n*** Add File: a.txt\n+hi\n*** End Patch"
    upstream.push(
        Reply(
            blocks=(
                ToolUse("mcp__client__agents__spawn", {"task": "tests"}),
                ToolUse("mcp__client__apply_patch", {"input": patch}),
            ),
            stop_reason="tool_use",
        ),
        text("Both done."),
    )
    client = oai(proxy)
    items: list[Any] = [{"type": "message", "role": "user", "content": "Go."}]
    with client.responses.stream(
        model="sonnet", input=items, tools=CODEX_LIKE_TOOLS, store=False
    ) as stream:
        first = stream.get_final_response()
    spawn, edit = first.output
    assert spawn.type == "function_call" and edit.type == "custom_tool_call"
    assert (spawn.namespace, spawn.name, json.loads(spawn.arguments)) == (
        "agents",
        "spawn",
        {"task": "tests"},
    )
    assert (edit.name, edit.input) == ("apply_patch", patch)
    model_saw = offered(upstream)
    assert set(model_saw) == {"mcp__client__agents__spawn", "mcp__client__apply_patch"}
    grammar = model_saw["mcp__client__apply_patch"]["input_schema"]["properties"]["input"]
    assert "*** Begin Patch" in grammar["description"]

    items += [
        spawn.model_dump(exclude_none=True),
        {"type": "function_call_output", "call_id": spawn.call_id, "output": "agent-7"},
        edit.model_dump(exclude_none=True),
        {"type": "custom_tool_call_output", "call_id": edit.call_id, "output": "Patched."},
    ]
    second = client.responses.create(
        model="sonnet", input=items, tools=CODEX_LIKE_TOOLS, store=False
    )
    assert second.output_text == "Both done."
    assert "continued (tools)" in proxy.log()
    results = tool_results(upstream.messages_requests()[1].body)
    assert [r["tool_use_id"] for r in results] == [spawn.call_id, edit.call_id]
    assert "agent-7" in json.dumps(results[0]) and "Patched." in json.dumps(results[1])


def test_a_conversation_waiting_for_tool_results_is_reaped_without_a_new_call(
    make_proxy: Any, upstream: Upstream
) -> None:
    proxy = make_proxy(pool_idle_timeout="1", pool_size="0")
    upstream.push(
        Reply(blocks=(ToolUse("mcp__client__get_time", {"city": "Rome"}),), stop_reason="tool_use")
    )
    answer = oai(proxy).chat.completions.create(
        model="sonnet",
        messages=[{"role": "user", "content": "time?"}],
        tools=OAI_TOOLS,  # type: ignore[arg-type]
    )
    assert answer.choices[0].finish_reason == "tool_calls"
    deadline = time.monotonic() + 20
    while httpx.get(proxy.url + "/health").json()["pool"]["holding_conversations"]:
        assert time.monotonic() < deadline
        time.sleep(0.2)
    time.sleep(1)
    # Answering the waiting call would have made the CLI ask the model again.
    assert len(upstream.messages_requests()) == 1
