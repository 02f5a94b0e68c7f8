"""The OpenAPI document: a valid OpenAPI 3.1 document, served at /openapi.json, naming
exactly the routes build_app registers, and true of what a live proxy really answers
(bodies, streamed events and their payloads, headers, error shapes)."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import httpx
import jsonschema
import pytest
from conftest import Proxy
from openapi_spec_validator import validate
from openapi_spec_validator.versions import consts as versions
from openapi_spec_validator.versions.shortcuts import get_spec_version
from upstream import Reply, Text, Thinking, ToolUse, Upstream, error, text

from tray_app.backend.runner import CliInfo, TurnRunner
from tray_app.integrations.signin import read_signin_status
from tray_app.server import openapi, routes
from tray_app.server.app import build_app
from tray_app.settings import load_settings

DOC: dict[str, Any] = json.loads(openapi.DOCUMENT.read_text(encoding="utf-8"))
METHODS = ("get", "put", "post", "delete", "options", "head", "patch", "trace")


# ---- reading the document ----


def resolve(node: Any) -> Any:
    """`node` with its `$ref` (a local JSON pointer) followed, repeatedly."""
    while isinstance(node, dict) and "$ref" in node:
        target: Any = DOC
        for part in node["$ref"].removeprefix("#/").split("/"):
            target = target[part.replace("~1", "/").replace("~0", "~")]
        node = target
    return node


def operation(method: str, path: str) -> dict[str, Any]:
    item = resolve(DOC["paths"][path])
    op: dict[str, Any] = item[method.lower()]
    return op


def documented_routes() -> set[tuple[str, str]]:
    return {
        (method.upper(), path)
        for path, item in DOC["paths"].items()
        for method in METHODS
        if method in resolve(item)
    }


def schema_validator(schema: dict[str, Any]) -> jsonschema.Draft202012Validator:
    # The wrapper carries the components, so the document's "#/components/..." refs
    # resolve inside it; keywords OpenAPI adds (contentSchema, example) are annotations.
    root = {"allOf": [schema], "components": DOC["components"]}
    return jsonschema.Draft202012Validator(root)


def assert_valid(instance: Any, schema: dict[str, Any], what: str) -> None:
    problems = sorted(schema_validator(schema).iter_errors(instance), key=lambda e: e.path)
    assert not problems, f"{what}: {instance!r}\n" + "\n".join(
        f"- at {list(p.absolute_path)}: {p.message[:300]}" for p in problems[:5]
    )


def sse_events(raw: str) -> list[dict[str, Any]]:
    """A text/event-stream body as events ({event, data}); comment lines dropped."""
    events = []
    for block in re.split(r"\r\n\r\n|\n\n|\r\r", raw):
        event: dict[str, Any] = {}
        data: list[str] = []
        for line in re.split(r"\r\n|\n|\r", block):
            if not line or line.startswith(":"):
                continue
            name, _, value = line.partition(":")
            value = value.removeprefix(" ")
            if name == "data":
                data.append(value)
            elif name in ("event", "id"):
                event[name] = value
        if data:
            event.setdefault("event", "message")
            event["data"] = "\n".join(data)
            events.append(event)
    return events


def payload_schema(event_schema: dict[str, Any]) -> dict[str, Any]:
    """The contentSchema of an event schema's `data` (what each JSON payload must be)."""
    data = resolve(event_schema)["properties"]["data"]
    for option in [data, *data.get("anyOf", [])]:
        if "contentSchema" in option:
            found: dict[str, Any] = option["contentSchema"]
            return found
    raise AssertionError(f"no contentSchema in {event_schema}")


def check(response: httpx.Response, method: str, path: str) -> list[dict[str, Any]]:
    """Validate `response` against what the document says `method path` answers: the
    status is documented, its headers match, and the body (or each streamed event and
    its JSON payload) matches the schema of its content type. Returns the stream's
    payloads (empty for a JSON body)."""
    status = str(response.status_code)
    responses = operation(method, path)["responses"]
    assert status in responses, f"{method} {path} answered an undocumented {status}"
    documented = resolve(responses[status])
    for name, header in documented.get("headers", {}).items():
        header = resolve(header)
        value = response.headers.get(name)
        if value is None:
            assert not header.get("required"), f"required header {name} missing"
        else:
            assert_valid(value, header["schema"], f"header {name}")
    content = documented.get("content")
    if not content:
        assert method == "HEAD" or not response.content, "a body where none is documented"
        return []
    media = response.headers["Content-Type"].split(";")[0].strip()
    assert media in content, f"{method} {path} {status}: undocumented content type {media}"
    schema = content[media]["schema"]
    if media != "text/event-stream":
        if media == "application/json":
            assert_valid(response.json(), schema, f"{method} {path} {status}")
        return []
    events = sse_events(response.text)
    assert events, "an empty stream"
    payloads = []
    inner = payload_schema(schema)
    for event in events:
        assert_valid(event, schema, f"{method} {path} event")
        if event["data"] != "[DONE]":
            payload = json.loads(event["data"])
            assert_valid(payload, inner, f"{method} {path} event {event['event']} payload")
            payloads.append(payload)
    return payloads


# ---- the document itself ----


def test_the_document_is_valid_openapi_3_1() -> None:
    assert get_spec_version(DOC) == versions.OPENAPIV31
    validate(DOC)
    for name in ("ApiKey", "Bearer"):
        assert name in DOC["components"]["securitySchemes"]
    scheme = DOC["components"]["securitySchemes"]["ApiKey"]
    assert (scheme["in"], scheme["name"]) == ("header", "x-api-key")
    assert DOC["components"]["securitySchemes"]["Bearer"]["scheme"] == "bearer"


def test_every_schema_in_the_document_is_a_valid_json_schema() -> None:
    for name, schema in DOC["components"]["schemas"].items():
        jsonschema.Draft202012Validator.check_schema(schema)
        schema_validator(schema)  # every $ref inside resolves
        assert name


@pytest.fixture
def app_routes(tmp_path: Path) -> set[tuple[str, str]]:
    env = {"CLAUDE_TRAY_HOME": str(tmp_path), "HOME": str(tmp_path)}
    settings = load_settings(env)
    cli = CliInfo("/nonexistent/claude", None, "not installed")
    ctx = routes.Context(
        settings,
        TurnRunner(settings, env, cli.path),
        cli,
        lambda: read_signin_status(env, upstream_api_key=None),
        env=env,
    )
    found = set()
    for route in build_app(ctx).router.routes():
        info = route.resource.get_info() if route.resource is not None else {}
        # A dynamic resource's formatter is its path without the regular expressions.
        path = info.get("path") or info.get("formatter")
        assert isinstance(path, str)
        found.add((route.method, path))
    return found


def test_every_route_is_documented_and_nothing_else(app_routes: set[tuple[str, str]]) -> None:
    documented = documented_routes()
    # aiohttp answers HEAD on every GET route by itself; the document names HEAD only
    # where a client relies on it (Claude Code's `HEAD /`).
    implicit_heads = {("HEAD", p) for m, p in app_routes if m == "GET"}
    served_heads = {r for r in app_routes if r[0] == "HEAD"}
    assert served_heads <= implicit_heads
    assert {r for r in documented if r[0] == "HEAD"} <= served_heads
    assert ("HEAD", "/") in documented
    assert {r for r in app_routes if r[0] != "HEAD"} == {r for r in documented if r[0] != "HEAD"}


def test_served_as_json_with_and_without_v1(proxy: Proxy) -> None:
    for path in ("/openapi.json", "/v1/openapi.json"):
        response = httpx.get(proxy.url + path)
        assert response.status_code == 200
        assert response.headers["Content-Type"] == "application/json; charset=utf-8"
        assert response.content == openapi.DOCUMENT.read_bytes()
        check(response, "GET", path)


# ---- what a live proxy answers matches it ----


def post(proxy: Proxy, path: str, body: Any, **kw: Any) -> httpx.Response:
    return httpx.post(proxy.url + path, json=body, timeout=60, **kw)


HI = [{"role": "user", "content": "hi"}]


def test_chat_completions_answers_match(proxy: Proxy, upstream: Upstream) -> None:
    path = "/v1/chat/completions"
    upstream.push(text("Hello", " there"))
    whole = post(proxy, path, {"model": "sonnet", "messages": HI, "temperature": 0})
    check(whole, "POST", path)
    assert whole.json()["choices"][0]["message"]["content"] == "Hello there"
    assert whole.headers["X-Claude-Tray-Ignored"] == "temperature"
    upstream.push(text("a", "b", "c"))
    body = {
        "model": "sonnet",
        "messages": HI,
        "stream": True,
        "stream_options": {"include_usage": True},
    }
    chunks = check(post(proxy, path, body), "POST", path)
    assert chunks[-1]["usage"]["total_tokens"] > 0
    tools = [{"type": "function", "function": {"name": "look", "parameters": {"type": "object"}}}]
    upstream.push(Reply(blocks=(ToolUse("mcp__client__look", {"q": "x"}),), stop_reason="tool_use"))
    called = post(proxy, "/chat/completions", {"model": "haiku", "messages": HI, "tools": tools})
    check(called, "POST", "/chat/completions")
    assert called.json()["choices"][0]["finish_reason"] == "tool_calls"


def test_messages_answers_match(proxy: Proxy, upstream: Upstream) -> None:
    path = "/v1/messages"
    upstream.push(text("Hello"))
    whole = post(proxy, path, {"model": "sonnet", "max_tokens": 50, "messages": HI})
    check(whole, "POST", path)
    upstream.push(Reply(blocks=(Thinking(("hmm",)), Text(("Hel", "lo")))))
    body = {"model": "sonnet", "max_tokens": 50, "messages": HI, "stream": True}
    events = check(post(proxy, path, body), "POST", path)
    kinds = [e["type"] for e in events]
    assert kinds[:2] == ["message_start", "ping"] and kinds[-1] == "message_stop"
    assert {"thinking_delta", "signature_delta", "text_delta"} <= {
        e["delta"]["type"] for e in events if e["type"] == "content_block_delta"
    }
    counted = post(proxy, "/anthropic/v1/messages/count_tokens", {"model": "opus", "messages": HI})
    check(counted, "POST", "/anthropic/v1/messages/count_tokens")


def test_responses_answers_match(proxy: Proxy, upstream: Upstream) -> None:
    path = "/v1/responses"
    upstream.push(text("Hello"))
    whole = post(proxy, path, {"model": "sonnet", "input": "hi", "store": False})
    check(whole, "POST", path)
    tools = [{"type": "function", "name": "look", "parameters": {"type": "object"}}]
    upstream.push(
        Reply(
            blocks=(
                Thinking(("plan",)),
                Text(("Looking",)),
                ToolUse("mcp__client__look", {"q": 1}),
            ),
            stop_reason="tool_use",
        )
    )
    body = {"model": "sonnet", "input": "find", "tools": tools, "stream": True}
    events = check(post(proxy, path, body), "POST", path)
    kinds = {e["type"] for e in events}
    assert {"response.function_call_arguments.delta", "response.completed"} <= kinds
    assert "response.reasoning_summary_text.delta" in kinds

    # Codex's kinds of tool: a function in a namespace, a custom (free-text) tool.
    tools = [
        {"type": "namespace", "name": "ns", "description": "", "tools": tools},
        {"type": "custom", "name": "patch", "format": {"type": "text"}},
    ]
    calls = (
        ToolUse("mcp__client__ns__look", {"q": 1}),
        ToolUse("mcp__client__patch", {"input": "x"}),
    )
    for stream in (False, True):
        upstream.push(Reply(blocks=calls, stop_reason="tool_use"))
        body = {"model": "sonnet", "input": "find", "tools": tools, "stream": stream}
        answer = post(proxy, path, body)
        events = check(answer, "POST", path)
        final = events[-1]["response"] if stream else answer.json()
        assert [item["type"] for item in final["output"]] == ["function_call", "custom_tool_call"]


def test_models_sessions_usage_and_service_routes_match(proxy: Proxy, upstream: Upstream) -> None:
    upstream.push(text("kept"))
    answer = post(proxy, "/v1/chat/completions", {"model": "sonnet", "messages": HI})
    session = answer.headers["X-Session-Id"]
    gets = [  # (the documented path, the URL asked for)
        ("/v1/models", "/v1/models"),
        ("/models/{model}", "/models/sonnet"),
        ("/v1/models/{model}", "/v1/models/openai/gpt-4o"),
        ("/v1/sessions", "/v1/sessions"),
        ("/sessions", "/sessions?limit=5&source=claude-code"),
        ("/v1/sessions/{id}", f"/v1/sessions/{session}"),
        ("/v1/sessions/{id}/transcript", f"/v1/sessions/{session}/transcript"),
        ("/v1/usage", "/v1/usage"),
        ("/usage", "/usage?since=0"),
        ("/v1/errors", "/v1/errors"),
        ("/v1/tools", "/v1/tools"),
        ("/health", "/health"),
        ("/v1/health", "/v1/health"),
        ("/", "/"),
        ("/ping", "/ping"),
        ("/dashboard", "/dashboard"),
        ("/dashboard/", "/dashboard/"),
        ("/dashboard/{name}", "/dashboard/dashboard.css"),
    ]
    for template, url in gets:
        response = httpx.get(proxy.url + url, timeout=30)
        assert response.status_code == 200, (url, response.text[:300])
        check(response, "GET", template)
    head = httpx.head(proxy.url + "/")
    check(head, "HEAD", "/")
    deleted = httpx.delete(f"{proxy.url}/v1/sessions/{session}")
    check(deleted, "DELETE", "/v1/sessions/{id}")
    assert deleted.json()["deleted"] is True


# ---- errors, in each caller's shape ----


@pytest.mark.parametrize(
    ("method", "path", "body", "status"),
    [
        ("POST", "/v1/chat/completions", b"{not json", 400),
        ("POST", "/v1/chat/completions", {"model": "sonnet", "messages": []}, 400),
        ("POST", "/chat/completions", {"model": "gpt-0", "messages": HI}, 404),
        ("POST", "/v1/chat/completions", {"model": "sonnet", "messages": HI, "n": 2}, 400),
        (
            "POST",
            "/v1/chat/completions",
            {"model": "sonnet", "messages": HI, "permission_mode": "plan"},
            403,
        ),
        ("POST", "/v1/messages", {"model": "sonnet"}, 400),
        ("POST", "/messages", {"model": "nope", "messages": HI}, 404),
        ("POST", "/anthropic/v1/messages", {"model": "sonnet", "messages": "hi"}, 400),
        ("POST", "/v1/messages/count_tokens", {"messages": HI}, 400),
        ("POST", "/v1/responses", {"model": "sonnet"}, 400),
        (
            "POST",
            "/v1/responses",
            {"model": "sonnet", "input": "hi", "previous_response_id": "resp_gone"},
            404,
        ),
        ("POST", "/responses", {"model": "sonnet", "input": "x", "conversation": "c"}, 400),
        ("GET", "/v1/models/{model}", None, 404),
        ("GET", "/v1/sessions/{id}", None, 404),
        ("DELETE", "/sessions/{id}", None, 404),
        ("GET", "/v1/sessions/{id}/transcript", None, 404),
        ("GET", "/v1/sessions", "?limit=many", 400),
        ("GET", "/v1/usage", "?since=yesterday", 400),
        ("GET", "/dashboard/{name}", None, 404),
        ("POST", "/v1/tools/{tool}/configure", b"model=x", 400),
    ],
)
def test_errors_match(proxy: Proxy, method: str, path: str, body: Any, status: int) -> None:
    url = proxy.url + path.format(model="gpt-0", id="no-such-session", name="x.js", tool="zed")
    if isinstance(body, str):  # a query string
        response = httpx.request(method, url + body)
    elif isinstance(body, bytes):
        response = httpx.request(method, url, content=body)
    else:
        response = httpx.request(method, url, json=body, timeout=60)
    assert response.status_code == status, response.text
    check(response, method, path)
    anthropic_shape = "/messages" in path
    assert ("type" in response.json()) == anthropic_shape
    assert response.headers["X-Request-Id"]


@pytest.mark.parametrize("path", ["/v1/chat/completions", "/v1/messages", "/v1/responses"])
def test_upstream_errors_match(proxy: Proxy, upstream: Upstream, path: str) -> None:
    body: dict[str, Any] = {"model": "sonnet", "stream": True}
    body.update({"input": "hi"} if path.endswith("responses") else {"messages": HI})
    for status, expected in ((429, 429), (529, 503), (500, 502)):
        upstream.push(error(status, headers={"retry-after": "7"} if status == 429 else {}))
        response = post(proxy, path, body)
        assert response.status_code == expected, response.text
        check(response, "POST", path)
    # A failure after streaming began ends the stream with that API's error event.
    upstream.push(text("par", "tial", error_after=1))
    payloads = check(post(proxy, path, body), "POST", path)
    last = payloads[-1]
    assert last.get("type") in ("error", "response.failed") or "error" in last


def test_key_and_size_errors_match(make_proxy: Any) -> None:
    proxy = make_proxy(api_key="sekrit", max_body_bytes="2000")
    for path in ("/v1/chat/completions", "/v1/messages"):
        refused = post(proxy, path, {"model": "sonnet", "messages": HI})
        assert refused.status_code == 401
        check(refused, "POST", path)
        big = {"model": "sonnet", "messages": [{"role": "user", "content": "x" * 5000}]}
        too_big = post(proxy, path, big, headers={"Authorization": "Bearer sekrit"})
        assert too_big.status_code == 413
        check(too_big, "POST", path)
    for path in ("/v1/models", "/ping", "/v1/openapi.json"):
        refused = httpx.get(proxy.url + path)
        assert refused.status_code == 401
        check(refused, "GET", path)
        allowed = httpx.get(proxy.url + path, headers={"x-api-key": "sekrit"})
        check(allowed, "GET", path)
    foreign = httpx.get(proxy.url + "/health", headers={"Host": "evil.example"})
    assert foreign.status_code == 403
    check(foreign, "GET", "/health")
