"""The dashboard: its files and their policy, the JSON endpoints it reads (transcripts,
recent errors, tools), who may open it, and the real page in headless Chromium against
proxies that have answered requests through the real CLI and the scripted upstream."""

from __future__ import annotations

import asyncio
import json
import os
import re
import shutil
import socket
import threading
import time
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import httpx
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from browser import Browser, require_browser
from conftest import ROOT, Proxy, oai, proxy_env, start_proxy
from upstream import Reply, Text, ToolUse, Upstream, text

from tray_app.backend.runner import CliInfo, TurnRunner
from tray_app.backend.store import SessionStore, UsageEntry, store_path
from tray_app.backend.transcript import write_transcript
from tray_app.integrations.signin import read_signin_status
from tray_app.protocol.model import Message, TextPart
from tray_app.server import dashboard, routes
from tray_app.server.app import build_app
from tray_app.settings import load_settings, resolve_paths

ARTIFACTS = ROOT / "test-artifacts"
STATIC = ROOT / "tray_app" / "server" / "static" / "dashboard"


# ---- the page's files ----


class _Markup(HTMLParser):
    """What the CSP forbids, found in markup: inline scripts, style and event handlers."""

    def __init__(self) -> None:
        super().__init__()
        self.scripts: list[dict[str, str | None]] = []
        self.inline: list[str] = []
        self._in_script = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        names = dict(attrs)
        if tag == "script":
            self.scripts.append(names)
            self._in_script = True
        if tag == "style":
            self.inline.append("<style>")
        self.inline += [f"{tag} {n}" for n in names if n == "style" or n.startswith("on")]
        for name in ("src", "href"):
            if (names.get(name) or "").startswith(("http:", "https:", "//")):
                self.inline.append(f"{tag} {name}={names[name]} (not offline)")

    def handle_endtag(self, tag: str) -> None:
        self._in_script = self._in_script and tag != "script"

    def handle_data(self, data: str) -> None:
        if self._in_script and data.strip():
            self.inline.append("inline <script> body")


def test_the_page_is_static_files_under_a_strict_policy(proxy: Proxy) -> None:
    page = httpx.get(proxy.url + "/dashboard")
    assert page.status_code == 200
    assert page.headers["content-type"] == "text/html; charset=utf-8"
    policy = page.headers["content-security-policy"]
    assert "default-src 'none'" in policy and "script-src 'self'" in policy
    assert "unsafe" not in policy and "connect-src 'self'" in policy
    assert page.headers["x-content-type-options"] == "nosniff"
    assert page.headers["x-frame-options"] == "DENY"
    markup = _Markup()
    markup.feed(page.text)
    assert markup.inline == []
    assert [s.get("src") for s in markup.scripts] == ["/dashboard/dashboard.js"]
    assert httpx.get(proxy.url + "/dashboard/").text == page.text

    for name, kind in dashboard.FILES.items():
        r = httpx.get(f"{proxy.url}/dashboard/{name}")
        assert r.status_code == 200, name
        assert r.headers["content-type"] == kind
        assert r.headers["content-security-policy"] == policy
        assert r.content == (STATIC / name).read_bytes()
    # Every file the page names is served, and every file in the folder is named.
    assert sorted(p.name for p in STATIC.iterdir()) == sorted(dashboard.FILES)
    for script in ("dashboard.js", "charts.js"):
        source = (STATIC / script).read_text()
        assert not re.search(r"\.(inner|outer)HTML\s*=|insertAdjacentHTML|eval\(", source), script
        assert not re.search(r"https?://(?!www\.w3\.org/2000/svg)", source), script

    for bad in ("nope.js", "..%2f..%2fapp.py", "%2e%2e/routes.py"):
        assert httpx.get(f"{proxy.url}/dashboard/{bad}").status_code == 404, bad


# ---- recent errors ----


def test_recent_errors_keep_their_request_ids(proxy: Proxy) -> None:
    missing = httpx.get(proxy.url + "/v1/nowhere", headers={"X-Request-Id": "req_dash_404"})
    assert missing.status_code == 404
    unknown_model = httpx.post(
        proxy.openai_url + "/chat/completions",
        json={"model": "no-such-model", "messages": [{"role": "user", "content": "hi"}]},
        headers={"X-Claude-Tray-Client": "dash-test"},
    )
    assert unknown_model.status_code == 404
    listed = httpx.get(proxy.url + "/v1/errors").json()
    assert listed["object"] == "list"
    newest, before = listed["data"][0], listed["data"][1]
    assert newest["request_id"] == unknown_model.headers["x-request-id"]
    assert newest["status"] == 404 and newest["code"] == "model_not_found"
    assert newest["method"] == "POST" and newest["path"] == "/v1/chat/completions"
    assert newest["client"] == "dash-test"
    assert "no-such-model" in newest["message"]
    assert before["request_id"] == "req_dash_404" and before["path"] == "/v1/nowhere"
    assert newest["time"] >= before["time"] > time.time() - 60
    assert len(httpx.get(proxy.url + "/errors?limit=1").json()["data"]) == 1


def test_recent_errors_are_bounded_and_newest_first() -> None:
    errors = dashboard.RecentErrors(size=3)
    for n in range(5):
        errors.add({"request_id": f"req_{n}"})
    assert [e["request_id"] for e in errors.newest_first(10)] == ["req_4", "req_3", "req_2"]
    assert [e["request_id"] for e in errors.newest_first(1)] == ["req_4"]


# ---- transcripts ----


def test_a_sessions_transcript_shows_the_conversation_with_the_clients_tool_names(
    proxy: Proxy, upstream: Upstream
) -> None:
    upstream.push(
        Reply(
            blocks=(
                Text(("Let me check.",)),
                ToolUse("mcp__client__get_weather", {"city": "Lima"}),
            ),
            stop_reason="tool_use",
        ),
        text("Sunny in Lima."),
    )
    tools = [
        {
            "type": "function",
            "function": {
                "name": "get_weather",
                "parameters": {"type": "object", "properties": {"city": {"type": "string"}}},
            },
        }
    ]
    client = oai(proxy)
    messages: list[Any] = [{"role": "user", "content": "Weather in Lima?"}]
    first = client.chat.completions.with_raw_response.create(
        model="sonnet",
        messages=messages,
        tools=tools,  # type: ignore[arg-type]
    )
    session_id = first.headers["x-session-id"]
    message = first.parse().choices[0].message
    assert message.tool_calls
    messages += [
        message.model_dump(exclude_none=True),
        {"role": "tool", "tool_call_id": message.tool_calls[0].id, "content": "sunny, 24 C"},
    ]
    client.chat.completions.create(model="sonnet", messages=messages, tools=tools)  # type: ignore[arg-type]

    body = _transcript(proxy, session_id, lambda b: len(b["data"]) >= 4)
    assert body["object"] == "session.transcript" and body["id"] == session_id
    flat = [(m["role"], _summary(b)) for m in body["data"] for b in m["content"]]
    assert flat == [
        ("user", "text: Weather in Lima?"),
        ("assistant", "text: Let me check."),
        ("assistant", 'tool_use: get_weather {"city": "Lima"}'),
        ("user", "tool_result: sunny, 24 C"),
        ("assistant", "text: Sunny in Lima."),
    ]
    assert all(m.get("model") for m in body["data"] if m["role"] == "assistant")
    # Without the /v1 prefix too, and paged.
    paged = httpx.get(f"{proxy.url}/sessions/{session_id}/transcript?limit=1&offset=1").json()
    assert len(paged["data"]) == 1 and paged["has_more"] is True


def _transcript(proxy: Proxy, session_id: str, ready: Any, query: str = "") -> dict[str, Any]:
    # The CLI writes its transcript as it goes; give it a moment to flush.
    deadline = time.monotonic() + 5
    while True:
        r = httpx.get(f"{proxy.openai_url}/sessions/{session_id}/transcript{query}")
        assert r.status_code == 200, r.text
        body: dict[str, Any] = r.json()
        if ready(body) or time.monotonic() > deadline:
            return body
        time.sleep(0.1)


def _summary(block: dict[str, Any]) -> str:
    if block["type"] == "text":
        return f"text: {block['text']}"
    if block["type"] == "tool_use":
        return f"tool_use: {block['name']} {json.dumps(block['input'])}"
    if block["type"] == "tool_result":
        return "tool_result: " + " ".join(_summary(b)[6:] for b in block["content"])
    return block["type"]


def test_transcripts_of_claude_code_sessions_and_unknown_ids(proxy: Proxy) -> None:
    project = proxy.home / "transcript-project"
    project.mkdir(exist_ok=True)
    theirs = write_transcript(
        proxy.home / "claude-config",
        str(project),
        [
            Message("user", (TextPart("rename the module"),)),
            Message("assistant", (TextPart("Renamed it."),)),
        ],
    )
    body = httpx.get(f"{proxy.openai_url}/sessions/{theirs}/transcript?source=claude-code")
    assert body.status_code == 200, body.text
    assert [(m["role"], _summary(m["content"][0])) for m in body.json()["data"]] == [
        ("user", "text: rename the module"),
        ("assistant", "text: Renamed it."),
    ]
    # Not one of claude-tray's sessions; ids that are no session, or no file name.
    assert httpx.get(f"{proxy.openai_url}/sessions/{theirs}/transcript").status_code == 404
    for bad in ("not-a-uuid", "..%2F..%2Fsettings", "00000000-0000-0000-0000-000000000000"):
        r = httpx.get(f"{proxy.openai_url}/sessions/{bad}/transcript?source=claude-code")
        assert r.status_code == 404, bad
        assert r.json()["error"]["code"] == "not_found"
    wrong = httpx.get(f"{proxy.openai_url}/sessions/{theirs}/transcript?source=elsewhere")
    assert wrong.status_code == 400


# ---- tools ----


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_tools_are_listed_and_configured_from_the_api(make_proxy: Any) -> None:
    proxy = make_proxy("--port", str(_free_port()))
    listed = httpx.get(proxy.url + "/v1/tools").json()["data"]
    assert [t["id"] for t in listed] == [
        "opencode",
        "continue",
        "aider",
        "codex",
        "cline",
        "claude-code",
        "zed",
    ]
    assert not any(t["configured"] for t in listed)
    assert listed[0]["path"] == str(proxy.home / ".config" / "opencode" / "opencode.json")
    assert listed[0]["short_path"] == "~/.config/opencode/opencode.json"

    url = proxy.url + "/v1/tools/opencode/configure"
    assert httpx.post(url, content="{}").status_code == 400  # JSON only (see configure_tool)
    preview = httpx.post(url, json={"dry_run": True})
    assert preview.status_code == 200
    assert preview.json()["changed"] is False and "+++" in preview.json()["diff"]
    assert not (proxy.home / ".config" / "opencode" / "opencode.json").exists()

    done = httpx.post(url, json={})
    assert done.status_code == 200, done.text
    result = done.json()
    assert result["ok"] and result["changed"] and proxy.url in result["message"]
    assert result["files"][0]["path"] == listed[0]["path"]
    config = json.loads(Path(listed[0]["path"]).read_text())
    assert config["provider"]["claude-tray"]["options"]["baseURL"] == proxy.openai_url
    states = {t["id"]: t["configured"] for t in httpx.get(proxy.url + "/tools").json()["data"]}
    assert states == {
        "opencode": True,
        "continue": False,
        "aider": False,
        "codex": False,
        "cline": False,
        "claude-code": False,
        "zed": False,
    }
    again = httpx.post(url, json={}).json()
    assert again["ok"] and not again["changed"]

    assert httpx.post(proxy.url + "/v1/tools/vim/configure", json={}).status_code == 404
    bad = httpx.post(proxy.url + "/v1/tools/aider/configure", json={"dry_run": "yes"})
    assert bad.status_code == 400


def test_configuring_a_tool_refuses_a_proxy_on_a_changing_port(proxy: Proxy) -> None:
    refused = httpx.post(proxy.url + "/v1/tools/aider/configure", json={})
    assert refused.status_code == 409
    assert refused.json()["ok"] is False and "port is 0" in refused.json()["message"]


# ---- who may open it ----


@web.middleware
async def _pretend_peer(request: web.Request, handler: Any) -> web.StreamResponse:
    """Tests cannot reach this server from another address (only loopback exists here):
    X-Test-Peer stands in for the TCP peer's address."""
    peer = request.headers.get("X-Test-Peer")
    return await handler(request.clone(remote=peer) if peer else request)


async def _probe(
    home: Path, api_key: str | None, calls: list[tuple[str, dict[str, str]]]
) -> list[int]:
    env = {"CLAUDE_TRAY_HOME": str(home), "HOME": str(home)}
    if api_key:
        env["CLAUDE_TRAY_API_KEY"] = api_key
    settings = load_settings(env)
    cli = CliInfo("/nonexistent/claude", None, "not installed")
    runner = TurnRunner(settings, env, cli.path)
    ctx = routes.Context(
        settings, runner, cli, lambda: read_signin_status(env, upstream_api_key=None), env=env
    )
    app = build_app(ctx)
    app.middlewares.insert(0, _pretend_peer)
    async with TestClient(TestServer(app)) as client:
        statuses = []
        for path, headers in calls:
            async with client.get(path, headers=headers) as r:
                await r.read()
                statuses.append(r.status)
        return statuses


# routes.REQUEST_ID is a plain string key; aiohttp 3.14 would have a web.RequestKey.
def test_the_page_is_for_this_machine_unless_the_key_comes_with_it(tmp_path: Path) -> None:
    far = {"X-Test-Peer": "203.0.113.9"}
    with_key = {**far, "x-api-key": "sekrit"}
    calls = [
        ("/dashboard", {}),  # this machine: the page, without the key
        ("/dashboard/dashboard.js", {}),
        ("/dashboard", {"X-Test-Peer": "::ffff:127.0.0.1"}),
        ("/v1/errors", {}),  # the data needs the key even here
        ("/v1/tools", {}),
        ("/v1/sessions/x/transcript", {}),
        ("/dashboard", far),  # from elsewhere: only with the key
        ("/dashboard/charts.js", far),
        ("/dashboard", {**far, "x-api-key": "wrong"}),
        ("/dashboard", with_key),
        ("/dashboard", {**far, "Authorization": "Bearer sekrit"}),
        ("/v1/errors", with_key),
        ("/dashboard", {"Host": "evil.example:80"}),  # DNS rebinding: still refused
    ]
    statuses = asyncio.run(_probe(tmp_path / "keyed", "sekrit", calls))
    assert statuses == [200, 200, 200, 401, 401, 401, 401, 401, 401, 200, 200, 200, 403]

    # No key configured: nothing can be presented, so only this machine gets the page.
    calls = [("/dashboard", {}), ("/dashboard", far), ("/dashboard/icon.svg", far)]
    assert asyncio.run(_probe(tmp_path / "open", None, calls)) == [200, 403, 403]


# ---- the real page in a real browser ----


@pytest.fixture
def browser() -> Any:
    chromium, module = require_browser()
    with Browser(chromium, module) as b:
        yield b


def _limit_headers(five_hour: float, seven_day: float) -> dict[str, str]:
    now = int(time.time())
    return {
        "anthropic-ratelimit-unified-status": "allowed",
        "anthropic-ratelimit-unified-representative-claim": "five_hour",
        "anthropic-ratelimit-unified-reset": str(now + 2 * 3600 + 900),
        "anthropic-ratelimit-unified-5h-utilization": str(five_hour),
        "anthropic-ratelimit-unified-5h-reset": str(now + 2 * 3600 + 900),
        "anthropic-ratelimit-unified-7d-utilization": str(seven_day),
        "anthropic-ratelimit-unified-7d-reset": str(now + 4 * 86400),
    }


# The conversations the proxy serves before the page opens: (client, model, title, answer).
CONVERSATIONS = [
    ("opencode", "sonnet", "Refactor the config loader", "Done: the loader is split in two."),
    ("aider", "opus", "Write the release notes", "Here are the notes for 0.2."),
    ("continue", "haiku", "Explain this stack trace", "The file handle was closed twice."),
    ("codex", "sonnet", "Add a test for the parser", "Added test_parser_rejects_tabs."),
]


def _seed_history(env: dict[str, str]) -> None:
    """Two weeks of earlier usage, so the day charts have days to show (the page reads it
    back from /v1/usage like any other)."""
    store = SessionStore.open(store_path(resolve_paths(env)))
    try:
        now = time.time()
        clients = ["opencode", "aider", "continue", "codex", "openai-python"]
        models = ["sonnet", "sonnet", "haiku", "opus"]
        for day in range(1, 15):
            for n in range(1 + (day * 7) % 5):
                size = 1 + (day * 13 + n * 7) % 9
                store.record_usage(
                    UsageEntry(
                        when=now - day * 86400 - n * 600,
                        request_id=f"req_seed_{day}_{n}",
                        session_id=None,
                        api="openai",
                        client=clients[(day + n) % len(clients)],
                        model=models[(day * 3 + n) % len(models)],
                        input_tokens=size * 900,
                        output_tokens=size * 260,
                        cache_read_tokens=size * 3100,
                        cache_write_tokens=size * 400,
                        cost_usd=size * 0.011,
                        status="ok",
                    )
                )
    finally:
        store.close()


def _serve_some_requests(proxy: Proxy, upstream: Upstream) -> list[str]:
    """The conversations above (one continued), and two refused requests."""
    headers = _limit_headers(0.42, 0.67)
    for _, _, _, answer in CONVERSATIONS:
        upstream.push(
            text(
                *re.findall(r"\S+\s*", answer),
                input_tokens=2400,
                output_tokens=310,
                cache_read=9000,
                headers=headers,
            )
        )
    upstream.push(
        text("And the docs.", input_tokens=300, output_tokens=90, cache_read=11000, headers=headers)
    )
    for client, model, title, _ in CONVERSATIONS:
        r = httpx.post(
            proxy.openai_url + "/chat/completions",
            json={"model": model, "messages": [{"role": "user", "content": title}]},
            headers={"X-Claude-Tray-Client": client},
            timeout=60,
        )
        assert r.status_code == 200, r.text
    client, model, title, answer = CONVERSATIONS[0]
    continued = [
        {"role": "user", "content": title},
        {"role": "assistant", "content": answer},
        {"role": "user", "content": "Update the docs too"},
    ]
    r = httpx.post(
        proxy.openai_url + "/chat/completions",
        json={"model": model, "messages": continued},
        headers={"X-Claude-Tray-Client": client},
        timeout=60,
    )
    assert r.status_code == 200, r.text
    refused = [
        httpx.post(
            proxy.openai_url + "/chat/completions",
            json={"model": "gpt-9-turbo", "messages": [{"role": "user", "content": "hi"}]},
            headers={"X-Claude-Tray-Client": "openai-python"},
        ),
        httpx.post(
            proxy.url + "/v1/messages",
            content=b"{not json",
            headers={"X-Claude-Tray-Client": "curl"},
        ),
    ]
    assert [r.status_code for r in refused] == [404, 400]
    return [r.headers["x-request-id"] for r in refused]


def _subscription_proxy(home: Path, upstream: Upstream) -> Proxy:
    """Signed in like a subscriber (an OAuth token): the CLI then reports the plan's
    usage windows from the upstream's rate-limit headers."""
    env = proxy_env(home, upstream)
    del env["CLAUDE_TRAY_UPSTREAM_API_KEY"]
    env["CLAUDE_CODE_OAUTH_TOKEN"] = "sk-ant-oat01-dashboard-test"
    home.mkdir(parents=True, exist_ok=True)
    _seed_history(env)
    return start_proxy(home, env)


def test_the_dashboard_in_a_real_browser(
    upstream_server: Upstream, upstream: Upstream, tmp_path: Path, browser: Browser
) -> None:
    proxy = _subscription_proxy(tmp_path / "home", upstream_server)
    try:
        refused_ids = _serve_some_requests(proxy, upstream)
        browser.goto(proxy.url + "/dashboard?poll=400")
        browser.wait_until(
            "Number(document.body.dataset.polls) >= 1 && document.querySelector('#tool-list li')"
        )

        # Proxy, sign-in and billing, the plan's windows: what /health says.
        health = httpx.get(proxy.url + "/health").json()
        assert browser.texts("#proxy-pill") == ["running"]
        assert browser.texts("#cli-version") == [health["cli"]["version"]]
        assert browser.texts("#signin-state")[0].startswith("signed in")
        assert browser.texts("#billing-route span")[0] == "Plan"
        assert browser.texts("#on-extra-usage")[0].startswith("pause")
        windows = health["quota"]["windows"]
        assert windows["five_hour"]["utilization"] == 0.42
        quota = dict(
            zip(
                browser.evaluate(
                    "[...document.querySelectorAll('#quota-bars .quota')]"
                    ".map(q => q.dataset.window)"
                ),
                browser.texts("#quota-bars .quota"),
                strict=True,
            )
        )
        assert "42% used" in quota["five_hour"] and "5-hour window" in quota["five_hour"]
        assert "67% used" in quota["seven_day"] and "Weekly window" in quota["seven_day"]
        assert "resets in 2 h" in quota["five_hour"]

        # Usage: the totals, the days, the clients and models /v1/usage reports.
        since = int(time.time() - 30 * 86400)
        usage = httpx.get(f"{proxy.url}/v1/usage?since={since}").json()
        shown = browser.evaluate(
            "Object.fromEntries([...document.querySelectorAll('#usage-totals [data-field]')]"
            ".map(b => [b.dataset.field, b.title]))"
        )
        for field in (
            "requests",
            "input_tokens",
            "output_tokens",
            "cache_read_tokens",
            "cache_write_tokens",
        ):
            assert int(shown[field]) == usage["total"][field], field
        assert float(shown["cost_usd"].lstrip("$")) == pytest.approx(usage["total"]["cost_usd"])
        assert usage["total"]["requests"] > 5
        columns = browser.evaluate(
            "[...document.querySelectorAll('#chart-days-tokens g.column')]"
            ".map(g => [g.dataset.label, g.querySelectorAll('rect.bar').length])"
        )
        assert len(columns) == 30
        assert {day for day, bars in columns if bars} == {d["day"] for d in usage["by_day"]}
        names = "[...document.querySelectorAll('{} .row')].map(r => r.dataset.name)"
        assert set(browser.evaluate(names.format("#by-client"))) == {
            c["client"] for c in usage["by_client"]
        }
        assert set(browser.evaluate(names.format("#by-model"))) == {
            m["model"] for m in usage["by_model"]
        }

        # Sessions: the rows /v1/sessions lists, in its order.
        sessions = httpx.get(proxy.url + "/v1/sessions").json()["data"]
        assert len(sessions) == len(CONVERSATIONS)
        assert _rows(browser) == [s["id"] for s in sessions]
        titles = browser.texts("#session-rows td.title span:first-child")
        assert titles == [s["title"] for s in sessions]

        # Recent errors, with the request ids the callers got.
        browser.wait_until(
            f"document.querySelector('#error-rows tr[data-request-id=\"{refused_ids[-1]}\"]')"
        )
        errors = browser.evaluate(
            "[...document.querySelectorAll('#error-rows tr')].map(r => r.dataset.requestId)"
        )
        assert errors[:2] == refused_ids[::-1]

        # Tools, each with its button.
        assert (
            browser.evaluate("document.querySelectorAll('#tool-list li button.configure').length")
            == 7
        )

        # A request in flight shows up while it runs (and leaves the screenshot a live one).
        upstream.push(text("slow", "answer", first_delay=4, headers=_limit_headers(0.43, 0.67)))
        slow = threading.Thread(
            target=httpx.post,
            args=(proxy.openai_url + "/chat/completions",),
            kwargs={
                "json": {
                    "model": "sonnet",
                    "messages": [{"role": "user", "content": "Review the diff"}],
                },
                "headers": {"X-Claude-Tray-Client": "opencode"},
                "timeout": 60,
            },
        )
        slow.start()
        try:
            browser.wait_until(
                "document.getElementById('inflight-active').textContent === '1'", timeout=4
            )
            _screenshot(browser)
        finally:
            slow.join(60)
        browser.wait_until("document.getElementById('inflight-active').textContent === '0'")

        # Search asks the API (?q=) and shows what it finds.
        browser.fill("#session-search", "release")
        wanted = [s["id"] for s in httpx.get(proxy.url + "/v1/sessions?q=release").json()["data"]]
        assert len(wanted) == 1
        browser.wait_until(
            f"document.querySelectorAll('#session-rows tr').length === {len(wanted)}"
        )
        assert _rows(browser) == wanted
        browser.fill("#session-search", "")
        browser.wait_until(
            f"document.querySelectorAll('#session-rows tr').length === {len(sessions) + 1}"
        )

        # A transcript opens in a dialog.
        target = next(s for s in sessions if s["title"] == CONVERSATIONS[0][2])
        browser.click(f"#session-rows tr[data-id='{target['id']}'] button.open")
        browser.wait_until("document.querySelectorAll('#transcript-body .message').length >= 4")
        said = browser.texts("#transcript-body .message .text")
        assert said[:4] == [
            CONVERSATIONS[0][2],
            CONVERSATIONS[0][3],
            "Update the docs too",
            "And the docs.",
        ]
        browser.click("#transcript-close")

        # Deleting a session: the row goes, and the API agrees.
        gone = next(s for s in sessions if s["title"] == CONVERSATIONS[2][2])["id"]
        browser.click(f"#session-rows tr[data-id='{gone}'] button.delete")
        browser.wait_until(f"!document.querySelector(\"#session-rows tr[data-id='{gone}']\")")
        left = [s["id"] for s in httpx.get(proxy.url + "/v1/sessions").json()["data"]]
        assert gone not in left and len(left) == len(sessions)  # the slow one came, this went
        time.sleep(1)  # a few more polls: the row stays gone
        assert _rows(browser) == left

        assert browser.problems() == []
    finally:
        assert proxy.stop() == 0


def _rows(browser: Browser) -> list[str]:
    return list(
        browser.evaluate(
            "[...document.querySelectorAll('#session-rows tr')].map(r => r.dataset.id)"
        )
    )


def _screenshot(browser: Browser) -> None:
    shot = ARTIFACTS / "dashboard.png"
    browser.screenshot(shot)
    if os.environ.get("UPDATE_SCREENSHOTS") == "1":
        shutil.copy(shot, ROOT / "docs" / "dashboard.png")


def test_a_proxy_with_a_key_has_the_page_ask_for_it(make_proxy: Any, browser: Browser) -> None:
    proxy = make_proxy(api_key="dash-key")
    # The tray opens the page with the key in the fragment, which no server or log sees.
    browser.goto(proxy.url + "/dashboard?poll=400#key=dash-key")
    browser.wait_until("Number(document.body.dataset.polls) >= 1")
    assert browser.evaluate("location.hash") == ""
    assert browser.evaluate("document.getElementById('key-form').hidden") is True
    assert browser.texts("#proxy-pill") == ["running"]
    assert browser.problems() == []

    # Without it, the page asks, and goes on once given the key.
    browser.evaluate("sessionStorage.clear()")
    browser.goto(proxy.url + "/dashboard?poll=400")
    browser.wait("#key-form")
    browser.fill("#key-input", "dash-key")
    browser.click("#key-form button")
    browser.wait_until(
        "Number(document.body.dataset.polls) >= 1 && document.querySelector('#tool-list li')"
    )
    assert browser.texts("#proxy-pill") == ["running"]
    # The only complaints are the 401s the page got before it had the key.
    problems = browser.problems()
    assert problems and all("401" in p for p in problems), problems
