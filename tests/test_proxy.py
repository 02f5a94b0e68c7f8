"""The proxy end to end: real `claude-tray serve`, the real bundled CLI, the real OpenAI and
Anthropic SDKs, and the scripted upstream standing in for Anthropic."""

from __future__ import annotations

import json
import socket
import threading
import time
from typing import Any

import anthropic
import httpx
import openai
import pytest
from conftest import Proxy, ant, claude_pids, oai, proxy_env, run_serve
from upstream import Reply, Text, Upstream, error, text


def wait_for_active_turn(proxy: Proxy, timeout: float = 10) -> None:
    """Until the proxy reports a turn running (the request reached the CLI)."""
    deadline = time.monotonic() + timeout
    while httpx.get(proxy.url + "/health").json()["turns"]["active"] == 0:
        assert time.monotonic() < deadline, "no turn started"
        time.sleep(0.05)


# ---- answers ----


def test_openai_non_streaming_returns_upstream_text_and_usage(
    proxy: Proxy, upstream: Upstream
) -> None:
    upstream.push(text("Hello", " from", " Claude", input_tokens=21, output_tokens=5, cache_read=4))
    reply = oai(proxy).chat.completions.create(
        model="sonnet",
        messages=[
            {"role": "system", "content": "Be brief."},
            {"role": "user", "content": "Say hello"},
        ],
    )
    assert reply.choices[0].message.content == "Hello from Claude"
    assert reply.choices[0].finish_reason == "stop"
    assert reply.usage is not None
    assert (reply.usage.prompt_tokens, reply.usage.completion_tokens) == (25, 5)
    assert reply.usage.prompt_tokens_details.cached_tokens == 4  # type: ignore[union-attr]
    [sent] = upstream.messages_requests()
    assert sent.user_texts() == ["Say hello"]
    assert any("Be brief." in b.get("text", "") for b in sent.body["system"])
    assert sent.body["tools"] == []  # plain chat: no Claude Code tool is offered


def test_openai_streaming_sends_chunks_and_usage(proxy: Proxy, upstream: Upstream) -> None:
    upstream.push(text("one ", "two ", "three", output_tokens=3))
    stream = oai(proxy).chat.completions.create(
        model="claude-sonnet-4-5",
        stream=True,
        stream_options={"include_usage": True},
        messages=[{"role": "user", "content": "count"}],
    )
    chunks = list(stream)
    pieces = [
        c.choices[0].delta.content for c in chunks if c.choices and c.choices[0].delta.content
    ]
    assert pieces == ["one ", "two ", "three"]
    assert chunks[0].choices[0].delta.role == "assistant"
    finish = [
        c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason
    ]
    assert finish == ["stop"]
    assert chunks[-1].choices == [] and chunks[-1].usage is not None
    assert chunks[-1].usage.completion_tokens == 3


def test_anthropic_non_streaming_and_streaming(proxy: Proxy, upstream: Upstream) -> None:
    upstream.push(text("Bonjour", input_tokens=9, output_tokens=2), text("Hal", "lo"))
    client = ant(proxy)
    message = client.messages.create(
        model="sonnet",
        max_tokens=50,
        system="Speak French.",
        messages=[{"role": "user", "content": "hello"}],
    )
    assert [b.text for b in message.content if b.type == "text"] == ["Bonjour"]
    assert message.stop_reason == "end_turn"
    assert (message.usage.input_tokens, message.usage.output_tokens) == (9, 2)
    with client.messages.stream(
        model="haiku", max_tokens=50, messages=[{"role": "user", "content": "hi"}]
    ) as stream:
        deltas = list(stream.text_stream)
        final = stream.get_final_message()
    assert deltas == ["Hal", "lo"]
    assert final.stop_reason == "end_turn"


def test_anthropic_sdk_bearer_auth_and_models(make_proxy: Any, upstream: Upstream) -> None:
    proxy = make_proxy(api_key="s3cret-key")
    # Anthropic SDK 2.x sends auth_token as Bearer; api_key as x-api-key: both work.
    for client in (
        ant(proxy, api_key=None, auth_token="s3cret-key"),
        ant(proxy, api_key="s3cret-key"),
    ):
        message = client.messages.create(
            model="sonnet", max_tokens=10, messages=[{"role": "user", "content": "ping"}]
        )
        assert message.content[0].text == "echo: ping"  # type: ignore[union-attr]
        assert [m.id for m in client.models.list()][:3] == ["opus", "sonnet", "haiku"]
    with pytest.raises(anthropic.AuthenticationError) as caught:
        ant(proxy, api_key="wrong").messages.create(
            model="sonnet", max_tokens=10, messages=[{"role": "user", "content": "x"}]
        )
    assert caught.value.body["error"]["type"] == "authentication_error"  # type: ignore[index]
    with pytest.raises(openai.AuthenticationError) as caught_oai:
        oai(proxy).chat.completions.create(
            model="sonnet", messages=[{"role": "user", "content": "x"}]
        )
    assert caught_oai.value.code == "invalid_api_key"
    assert "s3cret-key" not in proxy.log()


def test_history_reaches_the_model_as_real_turns(proxy: Proxy, upstream: Upstream) -> None:
    reply = oai(proxy).chat.completions.create(
        model="sonnet",
        messages=[
            {"role": "user", "content": "My name is Ada."},
            {"role": "assistant", "content": "Nice to meet you, Ada."},
            {"role": "user", "content": [{"type": "text", "text": "What is my name?"}]},
        ],
    )
    assert reply.choices[0].message.content == "echo: What is my name?"
    [sent] = upstream.messages_requests()
    turns = [(role, t) for role, t in sent.turns() if role != "system" and t]
    assert turns == [
        ("user", "My name is Ada."),
        ("assistant", "Nice to meet you, Ada."),
        ("user", "What is my name?"),
    ]


def test_image_reaches_upstream(proxy: Proxy, upstream: Upstream) -> None:
    pixel = (  # a 1x1 PNG
        "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8BQDwAEhQGAhKmMIQAAAABJRU5ErkJggg=="
    )
    oai(proxy).chat.completions.create(
        model="sonnet",
        messages=[
            {
                "role": "user",
                "content": [
                    {"type": "text", "text": "what is this"},
                    {"type": "image_url", "image_url": {"url": f"data:image/png;base64,{pixel}"}},
                ],
            }
        ],
    )
    [sent] = upstream.messages_requests()
    blocks = [
        b
        for m in sent.body["messages"]
        if m["role"] == "user" and isinstance(m["content"], list)
        for b in m["content"]
    ]
    assert {"type": "base64", "media_type": "image/png", "data": pixel} in [
        b.get("source") for b in blocks if b.get("type") == "image"
    ]


def test_streaming_is_token_by_token(proxy: Proxy, upstream: Upstream) -> None:
    upstream.push(text("a", "b", "c", "d", delay=0.6))
    stream = oai(proxy).chat.completions.create(
        model="sonnet", stream=True, messages=[{"role": "user", "content": "slow"}]
    )
    seen_while_streaming = None
    for chunk in stream:
        if chunk.choices and chunk.choices[0].delta.content and seen_while_streaming is None:
            # The upstream still has three delayed deltas to send.
            seen_while_streaming = upstream.streams_finished
    assert seen_while_streaming == 0
    assert upstream.streams_finished == 1


def test_routes_without_v1_prefix_and_models(proxy: Proxy, upstream: Upstream) -> None:
    client = openai.OpenAI(base_url=proxy.url, api_key="x", max_retries=0)
    reply = client.chat.completions.create(
        model="gpt-4o", messages=[{"role": "user", "content": "hey"}]
    )
    assert reply.choices[0].message.content == "echo: hey"
    body = httpx.get(proxy.url + "/v1/models").json()
    assert body["object"] == "list" and body["has_more"] is False
    assert {"opus", "sonnet", "haiku", "gpt-4o"} <= {m["id"] for m in body["data"]}
    assert httpx.get(proxy.url + "/models/claude-opus-4-1").json()["id"] == "claude-opus-4-1"
    health = httpx.get(proxy.url + "/health").json()
    assert health["cli"]["version"] and health["cli"]["problem"] is None
    assert health["signin"]["method"] == "api_key"
    assert health["turns"]["active"] == 0


# ---- bad input: the caller's own error shape, a status, a field name ----


@pytest.mark.parametrize(
    ("path", "body", "status", "param"),
    [
        ("/v1/chat/completions", {"model": "sonnet", "messages": "hi"}, 400, "messages"),
        ("/v1/chat/completions", {"messages": [{"role": "user", "content": "x"}]}, 400, "model"),
        (
            "/v1/chat/completions",
            {"model": "sonnet", "n": 2, "messages": [{"role": "user", "content": "x"}]},
            400,
            "n",
        ),
        (
            "/v1/chat/completions",
            {"model": "gpt-9-unknown", "messages": [{"role": "user", "content": "x"}]},
            404,
            "model",
        ),
        (
            "/v1/chat/completions",
            {"model": "sonnet", "messages": [{"role": "wizard", "content": "x"}]},
            400,
            "messages[0].role",
        ),
        (
            "/v1/messages",
            {
                "model": "sonnet",
                "max_tokens": "ten",
                "messages": [{"role": "user", "content": "x"}],
            },
            400,
            None,
        ),
        (
            "/v1/messages",
            {"model": "nope", "max_tokens": 5, "messages": [{"role": "user", "content": "x"}]},
            404,
            None,
        ),
    ],
)
def test_bad_requests(
    proxy: Proxy, path: str, body: dict[str, Any], status: int, param: str | None
) -> None:
    response = httpx.post(proxy.url + path, json=body)
    assert response.status_code == status
    error_body = response.json()
    if path.endswith("/messages"):
        assert error_body["type"] == "error"
        assert error_body["error"]["type"] in ("invalid_request_error", "not_found_error")
    else:
        assert error_body["error"]["param"] == param
        assert error_body["error"]["message"]


def test_malformed_json_and_unknown_route(proxy: Proxy) -> None:
    response = httpx.post(
        proxy.url + "/v1/chat/completions", content=b'{"model": "sonnet",\n "messages": [}'
    )
    assert response.status_code == 400
    assert "line 2" in response.json()["error"]["message"]
    response = httpx.post(proxy.url + "/v1/embeddings", json={})
    assert (
        response.status_code == 404 and response.json()["error"]["type"] == "invalid_request_error"
    )
    response = httpx.post(proxy.url + "/v1/messages", content=b"nope")
    assert response.status_code == 400 and response.json()["type"] == "error"
    # A route that exists, with the wrong method: 405 saying which methods it takes.
    response = httpx.get(proxy.url + "/v1/chat/completions")
    assert response.status_code == 405 and response.headers["Allow"] == "POST"
    assert "use POST" in response.json()["error"]["message"]


def test_streamed_answers_carry_the_request_id(proxy: Proxy, upstream: Upstream) -> None:
    upstream.push(text("streamed"))
    body = {"model": "sonnet", "stream": True, "messages": [{"role": "user", "content": "hi"}]}
    with httpx.stream(
        "POST", proxy.url + "/v1/chat/completions", json=body, headers={"X-Request-Id": "rid-42"}
    ) as response:
        assert response.status_code == 200
        assert response.headers["X-Request-Id"] == "rid-42"
        assert "streamed" in response.read().decode()


# ---- upstream errors map to fitting statuses, in each API's shape ----


@pytest.mark.parametrize(
    ("status", "expected", "openai_error"),
    [
        (401, 401, openai.AuthenticationError),
        (429, 429, openai.RateLimitError),
        (500, 502, openai.InternalServerError),
        (529, 503, openai.InternalServerError),
    ],
)
def test_upstream_errors(
    proxy: Proxy,
    upstream: Upstream,
    status: int,
    expected: int,
    openai_error: type[openai.APIStatusError],
) -> None:
    upstream.push(error(status, "scripted failure"))
    with pytest.raises(openai_error) as caught:
        oai(proxy).chat.completions.create(
            model="sonnet", stream=True, messages=[{"role": "user", "content": "x"}]
        )
    assert caught.value.status_code == expected
    if status == 429:
        assert caught.value.response.headers["Retry-After"].isdigit()
    if status == 401:
        assert "sign" in caught.value.message.lower()
    upstream.push(error(status, "scripted failure"))
    with pytest.raises(anthropic.APIStatusError) as caught_ant:
        ant(proxy).messages.create(
            model="sonnet", max_tokens=5, messages=[{"role": "user", "content": "x"}]
        )
    assert caught_ant.value.status_code == expected
    assert caught_ant.value.body["type"] == "error"  # type: ignore[index]


def test_not_signed_in_is_401_with_a_hint(make_proxy: Any) -> None:
    proxy = make_proxy(with_upstream=False)  # no key, no OAuth sign-in in this HOME
    with pytest.raises(openai.AuthenticationError) as caught:
        oai(proxy).chat.completions.create(
            model="sonnet", messages=[{"role": "user", "content": "x"}]
        )
    assert caught.value.code == "not_signed_in"
    assert "log in" in caught.value.message


# ---- limits, faults, disconnects: no process is ever left behind ----


def test_client_disconnect_ends_the_turn(proxy: Proxy, upstream: Upstream) -> None:
    upstream.push(text("first", *["x"] * 20, delay=0.5))
    with httpx.stream(
        "POST",
        proxy.openai_url + "/chat/completions",
        timeout=30,
        json={"model": "sonnet", "stream": True, "messages": [{"role": "user", "content": "go"}]},
    ) as r:
        for line in r.iter_lines():
            if "first" in line:
                break
    # Leaving the block closed the connection; the CLI must be gone within a second or so.
    deadline = time.monotonic() + 3
    while (
        time.monotonic() < deadline and httpx.get(proxy.url + "/health").json()["turns"]["active"]
    ):
        time.sleep(0.05)
    assert httpx.get(proxy.url + "/health").json()["turns"]["active"] == 0


def test_inactivity_timeout(make_proxy: Any, upstream: Upstream) -> None:
    proxy = make_proxy(inactivity_timeout="1.5")
    upstream.push(text("late", first_delay=6))
    with pytest.raises(openai.APIStatusError) as caught:
        oai(proxy).chat.completions.create(
            model="sonnet", messages=[{"role": "user", "content": "x"}]
        )
    assert caught.value.status_code == 504
    assert caught.value.code == "inactivity_timeout"
    upstream.clear()
    assert (
        oai(proxy)
        .chat.completions.create(model="sonnet", messages=[{"role": "user", "content": "again"}])
        .choices[0]
        .message.content
        == "echo: again"
    )


def test_cli_killed_mid_stream(make_proxy: Any, upstream: Upstream) -> None:
    proxy = make_proxy()
    upstream.push(text("start", *["x"] * 30, delay=0.3))
    before = claude_pids()
    events: list[str] = []
    with httpx.stream(
        "POST",
        proxy.url + "/v1/messages",
        timeout=30,
        json={
            "model": "sonnet",
            "max_tokens": 50,
            "stream": True,
            "messages": [{"role": "user", "content": "go"}],
        },
    ) as r:
        assert r.status_code == 200
        for line in r.iter_lines():
            if line.startswith("event:"):
                events.append(line.split(":", 1)[1].strip())
            if "start" in line and "text_delta" in line:
                for pid in _children_running_cli(proxy, before):
                    import os
                    import signal

                    os.kill(pid, signal.SIGKILL)
    assert events[-1] == "error"
    reply = ant(proxy).messages.create(
        model="sonnet", max_tokens=5, messages=[{"role": "user", "content": "still there?"}]
    )
    assert reply.content[0].text == "echo: still there?"  # type: ignore[union-attr]


def _children_running_cli(proxy: Proxy, before: set[int]) -> list[int]:
    from pathlib import Path

    out = []
    for pid in claude_pids() - before:
        stat = Path(f"/proc/{pid}/stat").read_text()
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        if ppid == proxy.process.pid:
            out.append(pid)
    assert out, "no CLI process found under the proxy"
    return out


def test_missing_cli_is_503_with_what_to_do(make_proxy: Any) -> None:
    proxy = make_proxy(cli="/nonexistent/claude")
    assert httpx.get(proxy.url + "/health").json()["cli"]["problem"] == "not found"
    with pytest.raises(openai.APIStatusError) as caught:
        oai(proxy).chat.completions.create(
            model="sonnet", messages=[{"role": "user", "content": "x"}]
        )
    assert caught.value.status_code == 503
    assert "CLAUDE_TRAY_CLI" in caught.value.message


def test_queue_full_is_429_with_retry_after(make_proxy: Any, upstream: Upstream) -> None:
    proxy = make_proxy(max_concurrent="1", max_queue="0")
    upstream.push(text("slow", first_delay=2))
    results: dict[str, Any] = {}

    def first() -> None:
        results["first"] = oai(proxy).chat.completions.create(
            model="sonnet", messages=[{"role": "user", "content": "one"}]
        )

    worker = threading.Thread(target=first)
    worker.start()
    wait_for_active_turn(proxy)
    response = httpx.post(
        proxy.openai_url + "/chat/completions",
        json={"model": "sonnet", "messages": [{"role": "user", "content": "two"}]},
    )
    worker.join(30)
    assert response.status_code == 429
    assert response.headers["Retry-After"].isdigit()
    assert response.json()["error"]["code"] == "rate_limit_exceeded"
    assert results["first"].choices[0].message.content == "slow"


def test_sigterm_lets_the_running_turn_finish(make_proxy: Any, upstream: Upstream) -> None:
    proxy = make_proxy()
    upstream.push(text("finished", first_delay=1.5))
    results: dict[str, Any] = {}
    worker = threading.Thread(
        target=lambda: results.setdefault(
            "reply",
            oai(proxy).chat.completions.create(
                model="sonnet", messages=[{"role": "user", "content": "x"}]
            ),
        )
    )
    worker.start()
    wait_for_active_turn(proxy)
    assert proxy.stop() == 0
    worker.join(10)
    assert results["reply"].choices[0].message.content == "finished"


# ---- security defaults ----


def test_host_and_origin_checks(proxy: Proxy) -> None:
    body = {"model": "sonnet", "messages": [{"role": "user", "content": "x"}]}
    rebinding = httpx.post(
        proxy.openai_url + "/chat/completions", json=body, headers={"Host": "evil.example"}
    )
    assert rebinding.status_code == 403
    cross_site = httpx.post(
        proxy.openai_url + "/chat/completions",
        json=body,
        headers={"Origin": "https://evil.example"},
    )
    assert cross_site.status_code == 403
    assert "allowed_origins" in cross_site.json()["error"]["message"]
    assert (
        httpx.get(proxy.url + "/health", headers={"Origin": "http://localhost:5173"}).status_code
        == 200
    )


def test_port_taken_is_a_clear_error(tmp_path: Any) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        done = run_serve(proxy_env(tmp_path, None), "--port", str(port))
    assert done.returncode == 2
    assert f"127.0.0.1:{port}" in done.stderr and "another program" in done.stderr


def test_upstream_cut_stream_still_answers_whole(proxy: Proxy, upstream: Upstream) -> None:
    cut = Reply(blocks=(Text(("ab", "cd", "ef")),), cut_after=1)
    upstream.push(cut, cut)  # the CLI re-asks without streaming after a cut
    stream = oai(proxy).chat.completions.create(
        model="sonnet", stream=True, messages=[{"role": "user", "content": "x"}]
    )
    text_out = "".join(c.choices[0].delta.content or "" for c in stream if c.choices)
    assert text_out == "abcdef"


def test_settings_file_env_and_flags(tmp_path: Any, upstream: Upstream, make_proxy: Any) -> None:
    proxy = make_proxy(model_aliases=json.dumps({"my-model": "haiku"}))
    reply = oai(proxy).chat.completions.create(
        model="my-model", messages=[{"role": "user", "content": "x"}]
    )
    assert reply.choices[0].message.content == "echo: x"
    [sent] = upstream.messages_requests()
    assert "haiku" in sent.body["model"]


def test_keepalive_during_a_long_silence(make_proxy: Any, upstream: Upstream) -> None:
    proxy = make_proxy(keepalive_interval="0.3")
    upstream.push(text("after the pause", first_delay=1.5))
    lines: list[str] = []
    with httpx.stream(
        "POST",
        proxy.openai_url + "/chat/completions",
        timeout=30,
        json={"model": "sonnet", "stream": True, "messages": [{"role": "user", "content": "x"}]},
    ) as r:
        assert r.status_code == 200
        lines = [line for line in r.iter_lines() if line]
    first_data = next(i for i, line in enumerate(lines) if line.startswith("data:"))
    assert lines[0] == ": keepalive"
    assert first_data > 0
    assert lines[-1] == "data: [DONE]"
