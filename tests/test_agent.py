"""Agent mode and the request extensions, with the real CLI running its own tools on a
fixture folder, driven by the scripted upstream."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import httpx
import pytest
from conftest import Proxy
from upstream import Reply, ToolUse, Upstream, text


@pytest.fixture
def roots(tmp_path: Path) -> Path:
    root = tmp_path / "projects"
    project = root / "demo"
    project.mkdir(parents=True)
    (project / "notes.txt").write_text("hello from the fixture\nsecond line\n")
    (project / "main.py").write_text("print('hello')\n")
    return root


def agent_proxy(make_proxy: Any, roots: Path, **settings: str) -> Proxy:
    proxy: Proxy = make_proxy(agent_mode="true", agent_roots=str(roots), **settings)
    return proxy


def stream_chat(proxy: Proxy, body: dict[str, Any], **headers: str) -> tuple[str, str, str]:
    """(content, reasoning, finish_reason) of a streamed chat completion."""
    content, reasoning, finish = [], [], ""
    with httpx.stream(
        "POST",
        proxy.openai_url + "/chat/completions",
        json={"model": "sonnet", "stream": True, **body},
        headers=headers,
        timeout=60,
    ) as r:
        assert r.status_code == 200, r.read().decode()
        for line in r.iter_lines():
            if not line.startswith("data: {"):
                continue
            chunk = json.loads(line[6:])
            for choice in chunk.get("choices", []):
                delta = choice.get("delta", {})
                content.append(delta.get("content") or "")
                reasoning.append(delta.get("reasoning_content") or "")
                finish = choice.get("finish_reason") or finish
    return "".join(content), "".join(reasoning), finish


def results_in(upstream: Upstream, n: int) -> list[dict[str, Any]]:
    body = upstream.messages_requests()[n].body
    return [
        b
        for m in body["messages"]
        if isinstance(m.get("content"), list)
        for b in m["content"]
        if b.get("type") == "tool_result"
    ]


def ask(proxy: Proxy, body: dict[str, Any], path: str = "/v1/chat/completions") -> httpx.Response:
    return httpx.post(
        proxy.url + path,
        json={"model": "sonnet", "messages": [{"role": "user", "content": "go"}], **body},
        timeout=60,
    )


def test_read_then_grep_in_the_working_directory(
    make_proxy: Any, upstream: Upstream, roots: Path
) -> None:
    project = roots / "demo"
    proxy = agent_proxy(make_proxy, roots)
    upstream.push(
        Reply(
            blocks=(ToolUse("Read", {"file_path": str(project / "notes.txt")}),),
            stop_reason="tool_use",
        ),
        Reply(
            blocks=(ToolUse("Grep", {"pattern": "hello", "path": str(project)}),),
            stop_reason="tool_use",
        ),
        text("Both files say hello."),
    )
    content, reasoning, finish = stream_chat(
        proxy,
        {
            "messages": [{"role": "user", "content": "What do the files say?"}],
            "working_directory": "demo",
            "tools": ["Read", "Grep"],
        },
    )
    assert content == "Both files say hello."  # the final answer stays clean
    assert finish == "stop"
    assert "Read: " + str(project / "notes.txt") in reasoning
    assert "Grep: hello" in reasoning
    assert "-> " in reasoning  # each tool's outcome, in one line
    offered = {t["name"] for t in upstream.messages_requests()[0].body["tools"]}
    assert offered == {"Read", "Grep"}
    read_result = json.dumps(results_in(upstream, 1))
    assert "hello from the fixture" in read_result
    grep_result = json.dumps(results_in(upstream, 2)[-1])
    assert "notes.txt" in grep_result or "main.py" in grep_result


def test_activity_can_be_hidden(make_proxy: Any, upstream: Upstream, roots: Path) -> None:
    proxy = agent_proxy(make_proxy, roots, agent_activity="hide")
    upstream.push(
        Reply(
            blocks=(ToolUse("Read", {"file_path": str(roots / "demo" / "main.py")}),),
            stop_reason="tool_use",
        ),
        text("It prints hello."),
    )
    content, reasoning, _ = stream_chat(
        proxy,
        {"messages": [{"role": "user", "content": "main.py?"}], "tools": ["Read"]},
    )
    assert content == "It prints hello."
    assert reasoning == ""


@pytest.mark.parametrize(
    "where",
    ["/etc", "../", "demo/../../..", "link-out"],
    ids=["outside", "dotdot", "deep-dotdot", "symlink"],
)
def test_a_working_directory_outside_the_roots_is_refused(
    make_proxy: Any, upstream: Upstream, roots: Path, where: str
) -> None:
    os.symlink("/tmp", roots / "link-out")
    proxy = agent_proxy(make_proxy, roots)
    r = ask(proxy, {"working_directory": where, "tools": ["Read"]})
    assert r.status_code == 403, r.text
    assert "agent_roots" in r.json()["error"]["message"]
    assert upstream.messages_requests() == []


def test_a_path_outside_the_working_directory_is_denied(
    make_proxy: Any, upstream: Upstream, roots: Path
) -> None:
    proxy = agent_proxy(make_proxy, roots)
    upstream.push(
        Reply(blocks=(ToolUse("Read", {"file_path": "/etc/hostname"}),), stop_reason="tool_use"),
        text("I could not read it."),
    )
    content, reasoning, _ = stream_chat(
        proxy,
        {"messages": [{"role": "user", "content": "hostname?"}], "tools": ["Read"]},
    )
    assert content == "I could not read it."
    (result,) = results_in(upstream, 1)
    assert result.get("is_error") is True
    assert "outside the working directory" in json.dumps(result)
    assert "failed: " in reasoning


def test_an_edit_in_default_permission_mode_is_denied_and_reported(
    make_proxy: Any, upstream: Upstream, roots: Path
) -> None:
    target = roots / "demo" / "notes.txt"
    before = target.read_text()
    proxy = agent_proxy(make_proxy, roots)
    upstream.push(
        Reply(
            blocks=(
                ToolUse(
                    "Write",
                    {"file_path": str(target), "content": "overwritten"},
                ),
            ),
            stop_reason="tool_use",
        ),
        text("The edit was not allowed."),
    )
    content, reasoning, _ = stream_chat(
        proxy,
        {
            "messages": [{"role": "user", "content": "overwrite notes"}],
            "tools": ["Read", "Write"],
            "permission_mode": "default",
        },
    )
    assert content == "The edit was not allowed."
    assert target.read_text() == before
    (result,) = results_in(upstream, 1)
    assert result.get("is_error") is True
    assert "Write: " in reasoning and "failed: " in reasoning


def test_policy_refusals(make_proxy: Any, upstream: Upstream, roots: Path) -> None:
    off = make_proxy()
    r = ask(off, {"tools": ["Read"]})
    assert r.status_code == 403
    assert "agent_mode" in r.json()["error"]["message"]

    proxy = agent_proxy(make_proxy, roots)
    bypass = ask(proxy, {"permission_mode": "bypassPermissions"}, "/v1/messages")
    assert bypass.status_code == 403
    assert bypass.json()["type"] == "error"  # the caller's own shape
    mcp = ask(proxy, {"mcp_config": {"mcpServers": {"shell": {"command": "sh"}}}})
    assert mcp.status_code == 403
    assert "agent_mcp_config" in mcp.json()["error"]["message"]
    assert upstream.messages_requests() == []


def test_max_budget_stops_a_multi_step_turn(
    make_proxy: Any, upstream: Upstream, roots: Path
) -> None:
    proxy = agent_proxy(make_proxy, roots)
    upstream.push(
        Reply(
            blocks=(ToolUse("Read", {"file_path": str(roots / "demo" / "notes.txt")}),),
            stop_reason="tool_use",
            input_tokens=200_000,
        ),
        text("never reached"),
    )
    r = ask(proxy, {"tools": ["Read"], "max_budget_usd": 0.01})
    assert r.status_code == 200, r.text
    answer = r.json()["choices"][0]
    assert "stopped at max_budget_usd" in answer["message"]["content"]
    assert answer["finish_reason"] == "length"
    assert len(upstream.messages_requests()) == 1


def test_x_model_header_and_alias_routes(proxy: Proxy, upstream: Upstream) -> None:
    r = httpx.post(
        proxy.openai_url + "/chat/completions",
        json={"model": "sonnet", "messages": [{"role": "user", "content": "hi"}]},
        headers={"X-Model": "haiku"},
        timeout=60,
    )
    assert r.status_code == 200
    assert "haiku" in upstream.messages_requests()[-1].body["model"]
    for path in ("/anthropic/v1/messages", "/messages"):
        m = httpx.post(
            proxy.url + path,
            json={
                "model": "sonnet",
                "max_tokens": 20,
                "messages": [{"role": "user", "content": "x"}],
            },
            timeout=60,
        )
        assert m.status_code == 200, (path, m.text)
        assert m.json()["type"] == "message"
    assert httpx.get(proxy.url + "/ping").status_code == 200
    root = httpx.get(proxy.url + "/").json()
    assert root["status"] in ("ok", "degraded")
    assert "pool" in root


def test_rate_limit_per_client(make_proxy: Any, upstream: Upstream) -> None:
    proxy = make_proxy(rate_limit_per_minute="2")
    codes = [ask(proxy, {}).status_code for _ in range(3)]
    assert codes == [200, 200, 429]
    refused = ask(proxy, {})
    assert int(refused.headers["retry-after"]) >= 1
    assert refused.json()["error"]["code"] == "rate_limit_exceeded"
    assert httpx.get(proxy.url + "/health").status_code == 200  # not counted
