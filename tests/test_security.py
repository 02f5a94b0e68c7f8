"""Security and input limits end to end, against real `claude-tray serve` processes:
Host and Origin checks, browser (Sec-Fetch, CORS, content type) rules, the API key,
body, depth and message limits, text that must not reach headers or the CLI's argv,
and secrets kept out of the logs."""

from __future__ import annotations

import json
import signal
import socket
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest
from conftest import LIVE_PROXIES, Proxy, proxy_env, run_serve
from upstream import Upstream

CHAT = "/v1/chat/completions"
MESSAGES = "/v1/messages"
RESPONSES = "/v1/responses"


def chat_body(content: str = "x", **extra: Any) -> dict[str, Any]:
    return {"model": "sonnet", "messages": [{"role": "user", "content": content}], **extra}


def messages_body(content: str = "x", **extra: Any) -> dict[str, Any]:
    return {
        "model": "sonnet",
        "max_tokens": 20,
        "messages": [{"role": "user", "content": content}],
        **extra,
    }


def raw(
    proxy: Proxy,
    method: str,
    path: str,
    headers: list[tuple[bytes, bytes]] | None = None,
    body: bytes = b"",
    *,
    host: bytes | None = None,
) -> tuple[int, dict[str, str], bytes]:
    """One request written byte for byte (httpx refuses to send control characters or
    invalid bytes in headers, which is exactly what these tests need to send).

    Fails when the connection closes without any answer: that is the bug being tested.
    """
    parts = urlsplit(proxy.url)
    assert parts.hostname and parts.port
    sent_host = parts.netloc.encode() if host is None else host
    lines = [f"{method} {path} HTTP/1.1".encode(), b"Host: " + sent_host]
    lines += [k + b": " + v for k, v in headers or []]
    lines += [b"Content-Length: %d" % len(body), b"Connection: close", b"", b""]
    with socket.create_connection((parts.hostname, parts.port), timeout=60) as sock:
        sock.sendall(b"\r\n".join(lines) + body)
        chunks = []
        while chunk := sock.recv(65536):
            chunks.append(chunk)
    data = b"".join(chunks)
    assert data, "the proxy closed the connection without answering"
    head, _, rest = data.partition(b"\r\n\r\n")
    status_line, *header_lines = head.decode("latin-1").split("\r\n")
    answer_headers = {}
    for line in header_lines:
        name, _, value = line.partition(":")
        answer_headers[name.strip().lower()] = value.strip()
    return int(status_line.split()[1]), answer_headers, rest


def error_of(response: httpx.Response) -> dict[str, Any]:
    return response.json()["error"]  # type: ignore[no-any-return]


# ---- Host (DNS rebinding) ----


@pytest.mark.parametrize(
    ("host", "status"),
    [
        (b"localhost:1234", 200),  # the port is not part of the check
        (b"127.0.0.1", 200),
        (b"[::1]:3456", 200),
        (b"[::1]", 200),
        (b"dev.localhost:80", 200),
        (b"LOCALHOST", 200),
        (b"127.0.0.1.evil.example", 403),
        (b"localhost.evil.example:3456", 403),
        (b"0.0.0.0", 403),
        (b"[::ffff:1.2.3.4]", 403),
        (b"", 403),
    ],
)
def test_host_names(proxy: Proxy, host: bytes, status: int) -> None:
    got, _, body = raw(proxy, "GET", "/v1/models", host=host)
    assert got == status, body
    if status == 403:
        assert "allowed_hosts" in json.loads(body)["error"]["message"]


def test_allowed_hosts_setting(make_proxy: Any) -> None:
    proxy = make_proxy(allowed_hosts="tray.lan, other.example")
    assert raw(proxy, "GET", "/v1/models", host=b"tray.lan:3456")[0] == 200
    assert raw(proxy, "GET", "/v1/models", host=b"Other.Example")[0] == 200
    assert raw(proxy, "GET", "/v1/models", host=b"localhost")[0] == 200
    assert raw(proxy, "GET", "/v1/models", host=b"evil.lan")[0] == 403


def test_listening_on_ipv6_loopback(make_proxy: Any) -> None:
    proxy = make_proxy("--host", "::1")
    assert proxy.url.startswith("http://[::1]:")
    assert httpx.get(proxy.url + "/v1/models").status_code == 200


# ---- Origin, Sec-Fetch-Site and CORS ----


def test_origin_null_is_foreign(proxy: Proxy) -> None:
    # Sandboxed iframes, file: pages and some redirects send "Origin: null".
    response = httpx.post(proxy.url + CHAT, json=chat_body(), headers={"Origin": "null"})
    assert response.status_code == 403
    assert "allowed_origins" in error_of(response)["message"]
    response = httpx.post(proxy.url + MESSAGES, json=messages_body(), headers={"Origin": "null"})
    assert response.status_code == 403 and response.json()["type"] == "error"


def test_origin_null_when_allow_listed(make_proxy: Any) -> None:
    proxy = make_proxy(allowed_origins="null")
    response = httpx.post(proxy.url + CHAT, json=chat_body("hi"), headers={"Origin": "null"})
    assert response.status_code == 200
    assert response.json()["choices"][0]["message"]["content"] == "echo: hi"
    assert response.headers["Access-Control-Allow-Origin"] == "null"


@pytest.mark.parametrize(
    ("headers", "status"),
    [
        ({"Sec-Fetch-Site": "cross-site"}, 403),
        ({"Sec-Fetch-Site": "cross-site", "Origin": "http://localhost:5173"}, 403),
        # Another port on this machine is the same site, not the same origin.
        ({"Sec-Fetch-Site": "same-site", "Origin": "http://localhost:5173"}, 403),
        ({"Sec-Fetch-Site": "same-site"}, 403),
        ({"Sec-Fetch-Site": "same-origin"}, 200),
        ({"Sec-Fetch-Site": "none"}, 200),  # typed into the address bar
    ],
)
def test_sec_fetch_site(proxy: Proxy, headers: dict[str, str], status: int) -> None:
    response = httpx.get(proxy.url + "/v1/models", headers=headers)
    assert response.status_code == status
    if status == 403:
        assert "allowed_origins" in error_of(response)["message"]


def test_sec_fetch_site_on_a_turn_and_the_dashboard_page(proxy: Proxy) -> None:
    refused = httpx.post(
        proxy.url + MESSAGES, json=messages_body(), headers={"Sec-Fetch-Site": "cross-site"}
    )
    assert refused.status_code == 403 and refused.json()["error"]["type"] == "permission_error"
    # The page's files hold no data: a link from elsewhere may open it.
    page = httpx.get(proxy.url + "/dashboard", headers={"Sec-Fetch-Site": "cross-site"})
    assert page.status_code == 200


def test_own_origin_is_not_foreign(make_proxy: Any) -> None:
    # The dashboard opened under an allowed host name posts with that name as Origin.
    proxy = make_proxy(allowed_hosts="tray.lan")
    status, _, _ = raw(
        proxy,
        "GET",
        "/v1/models",
        [(b"Origin", b"http://tray.lan:3456"), (b"Sec-Fetch-Site", b"same-origin")],
        host=b"tray.lan:3456",
    )
    assert status == 200
    status, _, _ = raw(
        proxy, "GET", "/v1/models", [(b"Origin", b"http://tray.lan:9999")], host=b"tray.lan:3456"
    )
    assert status == 403


@pytest.mark.parametrize(
    "content_type",
    [
        "text/plain",
        "text/plain;charset=UTF-8",
        "application/x-www-form-urlencoded",
        "multipart/form-data; boundary=x",
    ],
)
def test_post_needs_a_json_content_type(proxy: Proxy, content_type: str) -> None:
    # These are the types a web page may send without a CORS preflight.
    content = json.dumps(chat_body()).encode()
    response = httpx.post(proxy.url + CHAT, content=content, headers={"Content-Type": content_type})
    assert response.status_code == 415
    error = error_of(response)
    assert "application/json" in error["message"] and error["code"] == "unsupported_media_type"
    response = httpx.post(
        proxy.url + MESSAGES,
        content=json.dumps(messages_body()).encode(),
        headers={"Content-Type": content_type},
    )
    assert response.status_code == 415 and response.json()["type"] == "error"
    assert "application/json" in response.json()["error"]["message"]


def test_json_content_types_that_pass(proxy: Proxy) -> None:
    for content_type in ("application/json; charset=utf-8", "Application/JSON"):
        response = httpx.post(
            proxy.url + CHAT,
            content=json.dumps(chat_body("typed")).encode(),
            headers={"Content-Type": content_type},
        )
        assert response.status_code == 200, response.text
    # Scripts often send no type at all (curl --data-binary, requests' data=): no
    # browser does that without an Origin, so it is taken as JSON.
    response = httpx.post(proxy.url + CHAT, content=json.dumps(chat_body("untyped")).encode())
    assert response.status_code == 200
    assert response.json()["choices"][0]["message"]["content"] == "echo: untyped"


def test_never_a_wildcard_cors_header(proxy: Proxy) -> None:
    origin = {"Origin": "http://localhost:5173"}
    answers = [
        httpx.get(proxy.url + "/health", headers=origin),
        httpx.get(proxy.url + "/v1/models", headers=origin),
        httpx.post(proxy.url + CHAT, json=chat_body(), headers=origin),
        httpx.options(
            proxy.url + CHAT, headers={**origin, "Access-Control-Request-Method": "POST"}
        ),
        httpx.options(
            proxy.url + CHAT,
            headers={"Origin": "https://evil.example", "Access-Control-Request-Method": "POST"},
        ),
    ]
    for response in answers:
        assert "access-control-allow-origin" not in response.headers, response.request.url
    # A preflight from a page that is not allow-listed is refused outright.
    assert answers[3].status_code == 403 and answers[4].status_code == 403


def test_cors_for_an_allow_listed_origin(make_proxy: Any) -> None:
    app = "https://app.example"
    proxy = make_proxy(allowed_origins=app + "/", api_key="k-cors")
    preflight = httpx.options(
        proxy.url + CHAT,
        headers={
            "Origin": app,
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "content-type, authorization, x-stainless-os",
            "Sec-Fetch-Site": "cross-site",
        },
    )
    assert preflight.status_code == 204  # no API key: a preflight never carries one
    assert preflight.headers["Access-Control-Allow-Origin"] == app
    assert "POST" in preflight.headers["Access-Control-Allow-Methods"]
    allowed = preflight.headers["Access-Control-Allow-Headers"].lower()
    assert {"content-type", "authorization", "x-stainless-os"} <= {
        h.strip() for h in allowed.split(",")
    }
    assert "Origin" in preflight.headers["Vary"]
    assert "access-control-allow-credentials" not in preflight.headers

    response = httpx.post(
        proxy.url + CHAT,
        json=chat_body("from the app"),
        headers={"Origin": app, "Sec-Fetch-Site": "cross-site", "Authorization": "Bearer k-cors"},
    )
    assert response.status_code == 200
    assert response.headers["Access-Control-Allow-Origin"] == app
    assert "x-request-id" in response.headers["Access-Control-Expose-Headers"].lower()
    # Errors are readable by the page too (the 401 says what is missing).
    refused = httpx.get(proxy.url + "/v1/models", headers={"Origin": app})
    assert refused.status_code == 401
    assert refused.headers["Access-Control-Allow-Origin"] == app
    # Streams carry the header on their first bytes.
    with httpx.stream(
        "POST",
        proxy.url + CHAT,
        json=chat_body("streamed", stream=True),
        headers={"Origin": app, "x-api-key": "k-cors"},
        timeout=60,
    ) as streamed:
        assert streamed.headers["Access-Control-Allow-Origin"] == app
        assert streamed.read().rstrip().endswith(b"data: [DONE]")
    other = httpx.options(
        proxy.url + CHAT,
        headers={"Origin": "https://app.example.evil", "Access-Control-Request-Method": "POST"},
    )
    assert other.status_code == 403 and "access-control-allow-origin" not in other.headers


# ---- the API key ----


def test_api_key_forms(make_proxy: Any) -> None:
    proxy = make_proxy(api_key="right-key")
    url = proxy.url + "/v1/models"
    for headers in (
        {"Authorization": "bearer right-key"},  # the scheme is case-insensitive
        {"Authorization": "Bearer   right-key"},
        # Some clients send both; either carrying the key is enough.
        {"x-api-key": "right-key", "Authorization": "Bearer something-else"},
        {"x-api-key": "something-else", "Authorization": "Bearer right-key"},
    ):
        assert httpx.get(url, headers=headers).status_code == 200, headers
    for headers in (
        {},
        {"x-api-key": "right-ke"},
        {"x-api-key": "right-key-and-more"},
        {"Authorization": "right-key"},  # no scheme
        {"Authorization": "Basic right-key"},
    ):
        response = httpx.get(url, headers=headers)
        assert response.status_code == 401, headers
        assert error_of(response)["code"] == "invalid_api_key"
    # Bytes that are not UTF-8 are a wrong key, not a crash.
    status, _, _ = raw(proxy, "GET", "/v1/models", [(b"x-api-key", b"\xff\xfe-key")])
    assert status == 401
    # /health answers without the key on loopback (the tray polls it).
    assert httpx.get(proxy.url + "/health").status_code == 200


@pytest.mark.parametrize("host", ["0.0.0.0", "::", "my-laptop.example"])
def test_refuses_other_hosts_without_a_key(tmp_path: Path, host: str) -> None:
    done = run_serve(proxy_env(tmp_path, None), "--host", host, "--port", "0")
    assert done.returncode == 2
    assert f"Refusing to listen on {host} without an API key" in done.stderr
    assert "CLAUDE_TRAY_API_KEY" in done.stderr


def test_beyond_loopback_with_a_key(make_proxy: Any) -> None:
    proxy = make_proxy("--host", "0.0.0.0", api_key="open-key")
    port = urlsplit(proxy.url).port
    url = f"http://127.0.0.1:{port}"
    assert httpx.get(url + "/v1/models").status_code == 401
    # Reached over the network, any host name may be used: the key is what protects it.
    assert (
        httpx.get(
            url + "/v1/models", headers={"Host": "192.0.2.7", "x-api-key": "open-key"}
        ).status_code
        == 200
    )
    health = httpx.get(url + "/health")
    assert health.status_code == 401  # beyond loopback even /health needs the key


# ---- body, depth and message limits ----


def test_body_size_limit(make_proxy: Any) -> None:
    proxy = make_proxy(max_body_bytes="2000")
    big = chat_body("y" * 3000)
    response = httpx.post(proxy.url + CHAT, json=big)
    assert response.status_code == 413
    assert "2000 bytes" in error_of(response)["message"]
    response = httpx.post(proxy.url + MESSAGES, json=messages_body("y" * 3000))
    assert response.status_code == 413 and response.json()["error"]["type"] == "request_too_large"

    def chunks() -> Any:  # no Content-Length: the limit holds for chunked bodies too
        yield json.dumps(big).encode()

    response = httpx.post(proxy.url + CHAT, content=chunks())
    assert response.status_code == 413


def test_deep_json_is_refused(proxy: Proxy) -> None:
    deep = b'{"model": "sonnet", "messages": ' + b"[" * 100_000 + b"]" * 100_000 + b"}"
    response = httpx.post(
        proxy.url + CHAT, content=deep, headers={"Content-Type": "application/json"}
    )
    assert response.status_code == 400
    assert "max_json_depth" in error_of(response)["message"]
    response = httpx.post(
        proxy.url + MESSAGES, content=deep, headers={"Content-Type": "application/json"}
    )
    assert response.status_code == 400 and response.json()["type"] == "error"
    # Past the default limit of 128, inside a tool schema (two levels per property).
    schema: dict[str, Any] = {"type": "object"}
    for _ in range(64):
        schema = {"type": "object", "properties": {"a": schema}}
    tools = [{"type": "function", "function": {"name": "t", "parameters": schema}}]
    response = httpx.post(proxy.url + CHAT, json=chat_body(tools=tools))
    assert response.status_code == 400
    assert "128" in error_of(response)["message"]


def test_limits_hold_for_bodies_decoded_off_the_event_loop(proxy: Proxy) -> None:
    pad = b'"pad": "' + b"x" * 1_500_000 + b'", '
    deep = b"{" + pad + b'"model": "sonnet", "messages": ' + b"[" * 500 + b"]" * 500 + b"}"
    response = httpx.post(proxy.url + CHAT, content=deep)
    assert response.status_code == 400 and "max_json_depth" in error_of(response)["message"]
    lone = b"{" + pad + b'"model": "sonnet", "messages": [{"role": "user", "content": "\\udc00"}]}'
    response = httpx.post(proxy.url + CHAT, content=lone)
    assert response.status_code == 400 and error_of(response)["param"] == "messages[0].content"


@pytest.mark.parametrize(
    ("raw_json", "limit", "too_deep"),
    [
        (b"{}", 1, False),
        (b"[[]]", 1, True),
        (b'{"a": [1, {"b": []}]}', 4, False),
        (b'{"a": [1, {"b": []}]}', 3, True),
        (b'["[[[[", "\\"[[[["]', 1, False),  # brackets in strings, escaped quotes
        (b"[[[[[[", 2, False),  # unbalanced: invalid JSON, left for json.loads to say
        (b"[" * 10_000 + b"]" * 10_000, 128, True),
        (b"[]" * 10_000, 1, False),  # wide is not deep
    ],
)
def test_json_depth_table(raw_json: bytes, limit: int, too_deep: bool) -> None:
    from tray_app.protocol.common import json_too_deep

    assert json_too_deep(raw_json, limit) is too_deep


@pytest.mark.parametrize(
    ("document", "where"),
    [
        ({"a": ["ok", "\U0001f600"]}, None),
        ({"a": ["ok", "x\ud800"]}, "a[1]"),
        ({"m": [{"content": [{"text": "\udfff"}]}]}, "m[0].content[0].text"),
        ({"meta": {"\ud800": 1}}, "meta (an object key)"),
        ("\ud800", "body"),
    ],
)
def test_unencodable_text_table(document: Any, where: str | None) -> None:
    from tray_app.protocol.common import unencodable_text

    assert unencodable_text(document) == where


def test_log_messages_stay_on_one_line() -> None:
    import logging

    from tray_app.logs import RedactingFilter

    record = logging.LogRecord(
        "t", logging.INFO, __file__, 1, "model=%s", ("a\nb\r\x00\x1b[31m\tc",), None
    )
    RedactingFilter().filter(record)
    assert record.getMessage() == "model=a\\nb\\r\\x00\\x1b[31m\tc"


def test_brackets_inside_strings_do_not_count(proxy: Proxy) -> None:
    text = "[{" * 200 + '\\" ]' + "}]" * 50
    response = httpx.post(proxy.url + CHAT, json=chat_body(text))
    assert response.status_code == 200
    assert response.json()["choices"][0]["message"]["content"] == "echo: " + text


def test_depth_limit_setting(make_proxy: Any) -> None:
    proxy = make_proxy(max_json_depth="3")
    ok = httpx.post(proxy.url + CHAT, json=chat_body("shallow"))
    assert ok.status_code == 200
    parts = [{"type": "text", "text": "nested"}]
    response = httpx.post(
        proxy.url + CHAT,
        json={"model": "sonnet", "messages": [{"role": "user", "content": parts}]},
    )
    assert response.status_code == 400
    assert "max_json_depth" in error_of(response)["message"]


def test_message_count_limit(make_proxy: Any) -> None:
    proxy = make_proxy(max_messages="3")
    turns = [{"role": r, "content": "m"} for r in ("user", "assistant", "user", "assistant")]
    ok = httpx.post(proxy.url + CHAT, json={"model": "sonnet", "messages": turns[:3]})
    assert ok.status_code == 200
    response = httpx.post(
        proxy.url + CHAT, json={"model": "sonnet", "messages": [*turns, turns[0]]}
    )
    assert response.status_code == 400
    error = error_of(response)
    assert error["param"] == "messages" and "max_messages" in error["message"]
    response = httpx.post(
        proxy.url + MESSAGES,
        json={"model": "sonnet", "max_tokens": 5, "messages": [*turns, turns[0]]},
    )
    assert response.status_code == 400 and "max_messages" in response.json()["error"]["message"]
    items = [{"role": "user", "content": "m"}] * 4
    response = httpx.post(proxy.url + RESPONSES, json={"model": "sonnet", "input": items})
    assert response.status_code == 400 and error_of(response)["param"] == "input"


def test_default_message_limit_is_generous(proxy: Proxy) -> None:
    turns = [{"role": "user", "content": "m"}] * 10_001
    response = httpx.post(proxy.url + CHAT, json={"model": "sonnet", "messages": turns})
    assert response.status_code == 400
    assert "10000" in error_of(response)["message"]


# ---- text that cannot be stored, put in a header, or passed to the CLI ----


def test_lone_surrogates_are_refused(proxy: Proxy) -> None:
    body = b'{"model": "sonnet", "messages": [{"role": "user", "content": "a\\ud800b"}]}'
    response = httpx.post(proxy.url + CHAT, content=body)
    assert response.status_code == 400
    error = error_of(response)
    assert error["param"] == "messages[0].content" and "UTF-8" in error["message"]
    keyed = b'{"model": "sonnet", "metadata": {"\\udfff": 1}, "max_tokens": 5, "messages": []}'
    response = httpx.post(proxy.url + MESSAGES, content=keyed)
    assert response.status_code == 400 and "metadata" in response.json()["error"]["message"]
    # A proper pair (an emoji written as escapes) is fine.
    pair = b'{"model": "sonnet", "messages": [{"role": "user", "content": "\\ud83d\\ude00"}]}'
    response = httpx.post(proxy.url + CHAT, content=pair)
    assert response.status_code == 200
    assert response.json()["choices"][0]["message"]["content"] == "echo: \U0001f600"


@pytest.mark.parametrize(
    ("path", "body", "param"),
    [
        (MESSAGES, messages_body(system="be\x00kind"), "system"),
        (
            CHAT,
            {
                "model": "sonnet",
                "messages": [
                    {"role": "system", "content": "be\x00kind"},
                    {"role": "user", "content": "x"},
                ],
            },
            "messages",
        ),
        (RESPONSES, {"model": "sonnet", "input": "x", "instructions": "a\x00b"}, "instructions"),
        (CHAT, chat_body(fallback_model="haiku\x00"), "fallback_model"),
        (CHAT, {"model": "son\x00net", "messages": [{"role": "user", "content": "x"}]}, "model"),
    ],
)
def test_nul_in_what_reaches_the_cli_command_line(
    proxy: Proxy, path: str, body: dict[str, Any], param: str
) -> None:
    response = httpx.post(proxy.url + path, json=body)
    assert response.status_code == 400, response.text
    if path == MESSAGES:
        assert param in response.json()["error"]["message"]
    else:
        assert error_of(response)["param"] == param


@pytest.mark.parametrize("session_id", ["a\nb", "a\rb", "tab\there", "nul\x00", "del\x7f"])
def test_control_characters_in_session_id(proxy: Proxy, session_id: str) -> None:
    response = httpx.post(proxy.url + CHAT, json=chat_body(session_id=session_id))
    assert response.status_code == 400
    assert error_of(response)["param"] == "session_id"


@pytest.mark.parametrize(
    ("header", "value", "param"),
    [
        (b"X-Session-Id", b"caf\xc3\xa9\xff", "X-Session-Id"),  # not UTF-8
        (b"X-Claude-Session-ID", b"\x80abc", "X-Claude-Session-ID"),
        (b"X-Model", b"sonnet\xff", "model"),
    ],
)
def test_header_bytes_that_are_not_text_are_refused(
    proxy: Proxy, header: bytes, value: bytes, param: str
) -> None:
    body = json.dumps(chat_body()).encode()
    status, _, answer = raw(
        proxy, "POST", CHAT, [(header, value), (b"Content-Type", b"application/json")], body
    )
    assert status == 400
    assert json.loads(answer)["error"]["param"] == param


@pytest.mark.parametrize("value", [b"abc\x01def", b"a\x7fb", b"a\x00b"])
def test_control_characters_in_a_header_get_an_answer(proxy: Proxy, value: bytes) -> None:
    # aiohttp's HTTP parser refuses these itself (a plain-text 400): still an answer.
    body = json.dumps(chat_body()).encode()
    status, _, _ = raw(proxy, "POST", CHAT, [(b"X-Session-Id", value)], body)
    assert status == 400


def test_odd_request_id_and_client_headers_are_not_echoed(proxy: Proxy, upstream: Upstream) -> None:
    body = json.dumps(chat_body("odd headers", session_id="sess-ok_1")).encode()
    status, headers, answer = raw(
        proxy,
        "POST",
        CHAT,
        [
            (b"Content-Type", b"application/json"),
            (b"X-Request-Id", b"id\xff\xfe"),
            (b"User-Agent", b"agent\xff/1.0"),
            (b"X-Claude-Tray-Client", b"\xff\xfe"),
        ],
        body,
    )
    assert status == 200, answer
    assert headers["x-session-id"] == "sess-ok_1"
    assert headers["x-request-id"].startswith("req_")  # a new id instead of the odd one
    clients = {c["client"] for c in httpx.get(proxy.url + "/v1/usage").json()["by_client"]}
    assert "agent/1.0" in clients  # the unreadable X-Claude-Tray-Client was dropped
    assert all(name.isprintable() for name in clients)
    assert httpx.delete(proxy.url + "/v1/sessions/sess-ok_1").status_code == 200


def test_a_readable_request_id_is_kept(proxy: Proxy) -> None:
    response = httpx.get(proxy.url + "/v1/models", headers={"X-Request-Id": "trace-42.a:b"})
    assert response.headers["X-Request-Id"] == "trace-42.a:b"


# ---- secrets stay out of the logs ----


def test_secrets_never_reach_the_logs(make_proxy: Any, upstream: Upstream) -> None:
    key = "tray-key-7f3a9c"
    upstream_key = "sk-ant-api03-" + "Q" * 40
    wrong = "sk-proj-" + "W" * 30  # a real key for something else, typed by mistake
    proxy = make_proxy(api_key=key, upstream_api_key=upstream_key, log_level="debug")
    assert httpx.get(proxy.url + "/v1/models", headers={"x-api-key": wrong}).status_code == 401
    assert (
        httpx.get(proxy.url + "/v1/models", headers={"Authorization": f"Bearer {wrong}x"})
    ).status_code == 401
    ok = httpx.post(
        proxy.url + CHAT, json=chat_body("secret test"), headers={"Authorization": f"Bearer {key}"}
    )
    assert ok.status_code == 200
    assert upstream.messages_requests()  # the turn really reached the upstream
    # A request that fails inside: the error path logs too.
    refused = httpx.post(
        proxy.url + CHAT,
        json={"model": "nope", "messages": []},
        headers={"x-api-key": key, "X-Request-Id": f"rid-{key}"},
    )
    assert refused.status_code in (400, 404)
    proxy.process.send_signal(signal.SIGTERM)
    stdout, _ = proxy.process.communicate(timeout=30)
    stderr = proxy.stderr()
    LIVE_PROXIES.discard(proxy.process.pid)
    logged = proxy.log()
    assert "openai turn" in logged and "-> 401" in logged  # it did log these requests
    for text_out in (logged, stdout, stderr):
        for secret in (key, upstream_key, wrong, upstream_key[:20]):
            assert secret not in text_out


def test_client_text_is_one_log_line(make_proxy: Any) -> None:
    proxy = make_proxy()
    forged = "x\n1999-01-01 00:00:00,000 ERROR forged line"
    response = httpx.post(proxy.url + CHAT, json={**chat_body(), "model": forged})
    assert response.status_code == 400
    assert error_of(response)["param"] == "model"
    assert proxy.stop() == 0
    logged = proxy.log()
    assert "forged line" in logged  # the refusal is logged, quoted, on its own line
    assert not any(line.startswith("1999-01-01") for line in logged.splitlines())
