"""Sessions end to end: continuation, isolation, restarts, forks, warm pool, sessions API."""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any

import httpx
from conftest import Proxy, oai, proxy_env, start_proxy
from upstream import Upstream, text

from tray_app.backend.transcript import write_transcript
from tray_app.protocol.model import Message, TextPart


def chat(proxy: Proxy, messages: list[dict[str, Any]], **headers: str) -> httpx.Response:
    r = httpx.post(
        proxy.openai_url + "/chat/completions",
        json={"model": "sonnet", "messages": messages},
        headers=headers,
        timeout=60,
    )
    assert r.status_code == 200, r.text
    return r


def answer(r: httpx.Response) -> str:
    return str(r.json()["choices"][0]["message"]["content"])


def turns_of(body: dict[str, Any]) -> list[tuple[str, str]]:
    """(role, text) of each message the upstream got, system reminders and the CLI's
    own role:system entries left out."""
    out = []
    for m in body["messages"]:
        if m["role"] == "system":
            continue
        content = m["content"]
        blocks = [{"type": "text", "text": content}] if isinstance(content, str) else content
        texts = [
            b["text"]
            for b in blocks
            if b.get("type") == "text" and not b["text"].startswith("<system-reminder>")
        ]
        out.append((m["role"], "\n".join(texts)))
    return out


def health(proxy: Proxy) -> dict[str, Any]:
    return dict(httpx.get(proxy.url + "/health").json())


def test_continuation_sends_only_the_new_turn_and_keeps_the_session(
    proxy: Proxy, upstream: Upstream
) -> None:
    upstream.push(text("first answer"), text("second answer"))
    messages: list[dict[str, Any]] = [{"role": "user", "content": "question one"}]
    r1 = chat(proxy, messages)
    messages += [
        {"role": "assistant", "content": answer(r1)},
        {"role": "user", "content": "question two"},
    ]
    r2 = chat(proxy, messages)
    assert answer(r2) == "second answer"
    assert r2.headers["x-session-id"] == r1.headers["x-session-id"]
    bodies = [r.body for r in upstream.messages_requests()]
    assert turns_of(bodies[1]) == [
        ("user", "question one"),
        ("assistant", "first answer"),
        ("user", "question two"),
    ]
    # The CLI got one new user turn in the process holding the conversation: the log
    # names the route, and the CLI's transcript holds each question exactly once.
    assert "continued (session " + r1.headers["x-session-id"] in proxy.log()
    transcript = _transcript(proxy.home, r1.headers["x-session-id"])
    assert transcript.count('"question one"') == 1
    assert transcript.count('"question two"') == 1


def _transcript(home: Path, session_id: str) -> str:
    # The CLI writes as it goes; give it a moment to flush.
    deadline = time.monotonic() + 5
    while True:
        files = list((home / "claude-config" / "projects").glob(f"*/{session_id}.jsonl"))
        if files or time.monotonic() > deadline:
            break
        time.sleep(0.1)
    assert files, f"no transcript for {session_id}"
    return files[0].read_text()


def test_interleaved_conversations_with_the_same_opening_never_cross(
    proxy: Proxy, upstream: Upstream
) -> None:
    """20 clients, one opening message, then each its own turns, all at once."""
    errors: list[BaseException] = []

    def converse(n: int) -> None:
        try:
            messages: list[dict[str, Any]] = [{"role": "user", "content": "hello"}]
            for turn in range(2):
                r = chat(proxy, messages)
                messages += [
                    {"role": "assistant", "content": answer(r)},
                    {"role": "user", "content": f"conversation {n} turn {turn}"},
                ]
            assert answer(chat(proxy, messages)) == f"echo: conversation {n} turn 1"
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=converse, args=(n,)) for n in range(20)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(240)
    assert not errors, errors[:3]
    requests = upstream.messages_requests()
    assert len(requests) == 60
    for request in requests:
        owners = {
            text.split()[1]
            for role, text in turns_of(request.body)
            if role == "user" and text.startswith("conversation ")
        }
        assert len(owners) <= 1, f"conversations crossed: {turns_of(request.body)}"


def test_continuation_after_a_restart(
    upstream_server: Upstream, upstream: Upstream, tmp_path: Path
) -> None:
    home = tmp_path / "home"
    env = proxy_env(home, upstream_server)
    upstream.push(text("before restart"), text("after restart"))
    first = start_proxy(home, env)
    try:
        messages: list[dict[str, Any]] = [{"role": "user", "content": "remember 42"}]
        r1 = chat(first, messages)
    finally:
        assert first.stop() == 0
    second = start_proxy(home, env)
    try:
        messages += [
            {"role": "assistant", "content": answer(r1)},
            {"role": "user", "content": "what number?"},
        ]
        r2 = chat(second, messages)
        assert r2.headers["x-session-id"] == r1.headers["x-session-id"]
        assert "resumed (session " + r1.headers["x-session-id"] in second.log()
        assert turns_of(upstream.messages_requests()[1].body) == [
            ("user", "remember 42"),
            ("assistant", "before restart"),
            ("user", "what number?"),
        ]
    finally:
        assert second.stop() == 0


def test_an_edited_history_forks_instead_of_continuing(proxy: Proxy, upstream: Upstream) -> None:
    upstream.push(text("A1"), text("A2"), text("B2"))
    messages: list[dict[str, Any]] = [{"role": "user", "content": "start"}]
    r1 = chat(proxy, messages)
    base = [*messages, {"role": "assistant", "content": answer(r1)}]
    r2 = chat(proxy, [*base, {"role": "user", "content": "path A"}])
    assert r2.headers["x-session-id"] == r1.headers["x-session-id"]
    # The user edits their second message: the same prefix, a different turn.
    edited = [*base, {"role": "user", "content": "path B"}]
    r3 = chat(proxy, edited)
    assert answer(r3) == "B2"
    assert r3.headers["x-session-id"] != r1.headers["x-session-id"]
    assert turns_of(upstream.messages_requests()[2].body) == [
        ("user", "start"),
        ("assistant", "A1"),
        ("user", "path B"),
    ]
    # An "undo" that resends the history up to A1 with an edited reply also forks.
    changed = [
        messages[0],
        {"role": "assistant", "content": "A1 (edited)"},
        {"role": "user", "content": "go on"},
    ]
    r4 = chat(proxy, changed)
    assert r4.headers["x-session-id"] not in (
        r1.headers["x-session-id"],
        r3.headers["x-session-id"],
    )


def test_the_pool_hands_out_warm_processes_and_reaps_idle_ones(
    make_proxy: Any, upstream: Upstream
) -> None:
    proxy = make_proxy(pool_size="1", pool_idle_timeout="2")
    chat(proxy, [{"role": "user", "content": "one"}])
    deadline = time.monotonic() + 20
    while health(proxy)["pool"]["warm"] < 1:
        assert time.monotonic() < deadline, health(proxy)["pool"]
        time.sleep(0.1)
    assert health(proxy)["pool"]["holding_conversations"] == 1
    chat(proxy, [{"role": "user", "content": "two"}])
    pool = health(proxy)["pool"]
    assert pool["warm_hits"] == 1
    # Idle conversation processes go after pool_idle_timeout; the warm one stays.
    deadline = time.monotonic() + 20
    while health(proxy)["pool"]["holding_conversations"] > 0:
        assert time.monotonic() < deadline, health(proxy)["pool"]
        time.sleep(0.2)
    assert health(proxy)["pool"]["warm"] == 1


def test_warm_processes_follow_the_requests_clients_send_now(
    make_proxy: Any, upstream: Upstream
) -> None:
    proxy = make_proxy(pool_size="1")

    def ask(content: str, max_tokens: int) -> None:
        body = {
            "model": "sonnet",
            "max_tokens": max_tokens,
            "messages": [{"role": "user", "content": content}],
        }
        r = httpx.post(proxy.openai_url + "/chat/completions", json=body, timeout=60)
        assert r.status_code == 200, r.text

    def settled_warm() -> int:
        deadline = time.monotonic() + 20
        while (pool := health(proxy)["pool"])["starting"] or pool["warm"] < 1:
            assert time.monotonic() < deadline, pool
            time.sleep(0.1)
        time.sleep(0.5)  # a surplus one would be closed by now
        return int(health(proxy)["pool"]["warm"])

    # A different max_tokens is a different CLI command line: its own warm process.
    ask("one", 100)
    assert settled_warm() == 1
    ask("two", 200)
    assert settled_warm() == 1
    # The process warmed for max_tokens 100 went; the one for 200 serves the next request.
    ask("three", 200)
    assert health(proxy)["pool"]["warm_hits"] == 1


def test_the_pool_can_be_turned_off(make_proxy: Any, upstream: Upstream) -> None:
    proxy = make_proxy(pool_size="0")
    chat(proxy, [{"role": "user", "content": "one"}])
    time.sleep(1)
    pool = health(proxy)["pool"]
    assert pool["enabled"] is False
    assert pool["warm"] == 0
    assert pool["starting"] == 0


def test_sessions_api_and_usage_totals(make_proxy: Any, upstream: Upstream) -> None:
    proxy = make_proxy()
    upstream.push(
        text("one", input_tokens=100, output_tokens=10, cache_read=50),
        text("two", input_tokens=200, output_tokens=20),
    )
    messages: list[dict[str, Any]] = [{"role": "user", "content": "Plan a trip to Lisbon"}]
    r1 = chat(proxy, messages, **{"User-Agent": "test-client/1.0"})
    messages += [
        {"role": "assistant", "content": answer(r1)},
        {"role": "user", "content": "and Porto"},
    ]
    chat(proxy, messages, **{"User-Agent": "test-client/1.0"})
    sid = r1.headers["x-session-id"]

    listed = httpx.get(proxy.openai_url + "/sessions").json()["data"]
    assert [s["id"] for s in listed] == [sid]
    one = httpx.get(f"{proxy.openai_url}/sessions/{sid}").json()
    assert one["title"] == "Plan a trip to Lisbon"
    assert one["client"] == "test-client/1.0"
    assert one["turns"] == 2
    assert one["input_tokens"] == 300
    assert one["output_tokens"] == 30
    assert one["cache_read_tokens"] == 50

    usage = httpx.get(proxy.openai_url + "/usage").json()
    assert usage["total"]["requests"] == 2
    assert usage["total"]["input_tokens"] == 300
    assert usage["total"]["output_tokens"] == 30
    assert [c["client"] for c in usage["by_client"]] == ["test-client/1.0"]

    assert httpx.delete(f"{proxy.openai_url}/sessions/{sid}").json()["deleted"] is True
    assert httpx.get(f"{proxy.openai_url}/sessions/{sid}").status_code == 404
    assert httpx.get(proxy.openai_url + "/sessions").json()["data"] == []
    # Usage stays true after the session is gone.
    assert httpx.get(proxy.openai_url + "/usage").json()["total"]["requests"] == 2


def test_ephemeral_and_explicit_sessions(make_proxy: Any, upstream: Upstream) -> None:
    proxy = make_proxy()
    r = chat(proxy, [{"role": "user", "content": "secret"}], **{"X-Claude-Tray-Ephemeral": "1"})
    assert answer(r) == "echo: secret"
    assert httpx.get(proxy.openai_url + "/sessions").json()["data"] == []

    client = oai(proxy)
    first = client.chat.completions.with_raw_response.create(
        model="sonnet",
        messages=[{"role": "user", "content": "my name is Ada"}],
        extra_headers={"X-Session-Id": "project-notes"},
    )
    assert first.headers["x-session-id"] == "project-notes"
    # Only the new message, naming the session: the conversation goes on.
    second = client.chat.completions.with_raw_response.create(
        model="sonnet",
        messages=[{"role": "user", "content": "what is my name?"}],
        extra_body={"session_id": "project-notes"},
    )
    assert second.headers["x-session-id"] == "project-notes"
    assert turns_of(upstream.messages_requests()[-1].body) == [
        ("user", "my name is Ada"),
        ("assistant", "echo: my name is Ada"),
        ("user", "what is my name?"),
    ]


def test_a_named_request_of_another_kind_starts_its_own_session(
    make_proxy: Any, upstream: Upstream
) -> None:
    """OpenCode sends its x-session-id on its title request too (another system prompt,
    no tools): that must not put the title prompt into the main conversation."""
    proxy = make_proxy()
    title = httpx.post(
        proxy.openai_url + "/chat/completions",
        json={
            "model": "sonnet",
            "messages": [
                {"role": "system", "content": "You are a title generator."},
                {"role": "user", "content": "make a title"},
            ],
        },
        headers={"X-Session-Id": "ses_oc"},
        timeout=60,
    )
    main = httpx.post(
        proxy.openai_url + "/chat/completions",
        json={
            "model": "sonnet",
            "messages": [
                {"role": "system", "content": "You are a coding agent."},
                {"role": "user", "content": "fix the bug"},
            ],
        },
        headers={"X-Session-Id": "ses_oc"},
        timeout=60,
    )
    assert title.headers["x-session-id"] == "ses_oc"
    assert main.headers["x-session-id"] != "ses_oc"
    assert turns_of(upstream.messages_requests()[-1].body) == [("user", "fix the bug")]


def test_claude_codes_own_sessions_are_listed_read_only(
    make_proxy: Any, upstream: Upstream
) -> None:
    proxy = make_proxy()
    chat(proxy, [{"role": "user", "content": "a proxy conversation"}])
    # A session the user had with Claude Code itself, in another project.
    project = proxy.home / "my-project"
    project.mkdir()
    theirs = write_transcript(
        proxy.home / "claude-config",
        str(project),
        [Message("user", (TextPart("refactor the parser"),))],
    )
    listed = httpx.get(proxy.openai_url + "/sessions?source=claude-code").json()["data"]
    assert [s["id"] for s in listed] == [theirs]
    assert listed[0]["read_only"] is True
    assert listed[0]["cwd"] == str(project)
    assert "refactor the parser" in listed[0]["title"]
    bad = httpx.get(proxy.openai_url + "/sessions?source=elsewhere")
    assert bad.status_code == 400
    assert bad.json()["error"]["param"] == "source"


def test_held_conversations_never_crowd_out_the_warm_pool(
    make_proxy: Any, upstream: Upstream
) -> None:
    proxy = make_proxy(pool_size="1", max_processes="3", max_concurrent="1")

    def warm_again() -> dict[str, Any]:
        deadline = time.monotonic() + 20
        while (pool := health(proxy)["pool"])["warm"] < 1:
            assert time.monotonic() < deadline, pool
            time.sleep(0.1)
        return pool

    chat(proxy, [{"role": "user", "content": "conversation 0"}])
    warm_again()
    for n in range(1, 5):
        chat(proxy, [{"role": "user", "content": f"conversation {n}"}])
        pool = warm_again()
        assert pool["processes"] <= 3
    # Every conversation after the first found a warm process, though three or more
    # conversations held processes along the way (the oldest were closed instead).
    assert pool["warm_hits"] == 4
    assert pool["holding_conversations"] == 2
