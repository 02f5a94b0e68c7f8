"""The connection test: one real request through the proxy, shaped the way the tool sends
it, and a plain answer (works, or why not)."""

from __future__ import annotations

import http.client
import json
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from tray_app.integrations.configure.context import Context
from tray_app.integrations.configure.spec import Tool

PROMPT = "This is a connection test from claude-tray. Reply with the single word: ok"
TIMEOUT = 120.0


@dataclass(frozen=True, slots=True)
class ProbeResult:
    ok: bool
    message: str
    answer: str = ""
    seconds: float = 0.0


def _request(tool: Tool, ctx: Context) -> tuple[str, dict[str, str], dict[str, Any]]:
    headers = {"Content-Type": "application/json", "User-Agent": f"claude-tray-test/{tool.id}"}
    model = ctx.model
    if tool.wire == "messages":
        headers.update({"Authorization": f"Bearer {ctx.key}", "anthropic-version": "2023-06-01"})
        body: dict[str, Any] = {
            "model": model,
            "max_tokens": 1024,
            "stream": True,
            "messages": [{"role": "user", "content": [{"type": "text", "text": PROMPT}]}],
        }
        return ctx.root_url + "/v1/messages?beta=true", headers, body
    headers["Authorization"] = f"Bearer {ctx.key}"
    if tool.wire == "responses":
        body = {
            "model": model,
            "instructions": "You are a coding agent.",
            "input": [
                {
                    "type": "message",
                    "role": "user",
                    "content": [{"type": "input_text", "text": PROMPT}],
                }
            ],
            "stream": True,
            "store": False,
        }
        return ctx.openai_url + "/responses", headers, body
    body = {
        "model": model,
        "messages": [{"role": "user", "content": PROMPT}],
        "stream": tool.streams,
    }
    if tool.streams:
        body["stream_options"] = {"include_usage": True}
    if tool.id == "aider":
        body["temperature"] = 0
    return ctx.openai_url + "/chat/completions", headers, body


def _sse_data(response: http.client.HTTPResponse) -> Iterator[dict[str, Any]]:
    for raw in response:
        line = raw.decode("utf-8", "replace").strip()
        if not line.startswith("data:"):
            continue
        data = line[5:].strip()
        if data == "[DONE]":
            return
        try:
            event = json.loads(data)
        except ValueError:
            continue
        if isinstance(event, dict):
            yield event


def _text_of(event: dict[str, Any]) -> str:
    """The answer text an event carries, whichever API it belongs to."""
    kind = event.get("type")
    if kind == "content_block_delta":
        return str(event.get("delta", {}).get("text", ""))
    if kind == "response.output_text.delta":
        return str(event.get("delta", ""))
    parts = []
    for choice in event.get("choices") or []:
        delta = choice.get("delta") or choice.get("message") or {}
        if isinstance(delta.get("content"), str):
            parts.append(delta["content"])
    return "".join(parts)


def _error_of(event: dict[str, Any]) -> str | None:
    error = event.get("error")
    if event.get("type") in ("error", "response.failed") or isinstance(error, dict):
        detail = error if isinstance(error, dict) else event.get("response", {}).get("error")
        if isinstance(detail, dict):
            return str(detail.get("message") or detail)
        return json.dumps(event)[:300]
    return None


def send_probe(tool: Tool, ctx: Context, timeout: float = TIMEOUT) -> ProbeResult:
    url, headers, body = _request(tool, ctx)
    request = urllib.request.Request(
        url, data=json.dumps(body).encode(), headers=headers, method="POST"
    )
    started = time.monotonic()
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            if body.get("stream"):
                pieces = []
                for event in _sse_data(response):
                    if (problem := _error_of(event)) is not None:
                        return ProbeResult(False, f"the proxy answered with an error: {problem}")
                    pieces.append(_text_of(event))
                answer = "".join(pieces)
            else:
                answer = _text_of(json.loads(response.read()))
    except urllib.error.HTTPError as exc:
        return ProbeResult(False, _http_problem(exc, ctx))
    except (urllib.error.URLError, ConnectionError, TimeoutError) as exc:
        reason = getattr(exc, "reason", exc)
        return ProbeResult(
            False,
            f"claude-tray does not answer at {ctx.root_url} ({reason}). Is it running? "
            "Start it with `claude-tray serve` (or from the tray), then test again.",
        )
    except (OSError, ValueError, http.client.HTTPException) as exc:
        return ProbeResult(False, f"the request to {url} failed: {exc}")
    seconds = time.monotonic() - started
    if not answer.strip():
        return ProbeResult(False, "the proxy answered, but with no text", "", seconds)
    shown = answer.strip().replace("\n", " ")[:80]
    return ProbeResult(
        True,
        f"works: {tool.label} → claude-tray ({ctx.model}) answered “{shown}” in {seconds:.1f} s",
        answer,
        seconds,
    )


def _http_problem(exc: urllib.error.HTTPError, ctx: Context) -> str:
    try:
        detail = json.loads(exc.read() or b"{}")
    except (ValueError, OSError):
        detail = {}
    message = ""
    if isinstance(detail, dict):
        error = detail.get("error")
        if isinstance(error, dict):
            message = str(error.get("message", ""))
    if exc.code == 401:
        hint = (
            "the key written for this tool is not the proxy's key: set CLAUDE_TRAY_API_KEY "
            "to the proxy's key and configure again"
        )
        return f"the proxy refused the key (401): {hint}. {message}".strip()
    if exc.code == 403:
        return f"the proxy refused the request (403): {message or 'Host or Origin not allowed'}"
    if exc.code == 404:
        return f"not found (404) at {exc.url}: {message or 'is the base URL right?'}"
    return f"the proxy answered {exc.code}: {message or exc.reason}"
