"""A scripted local stand-in for Anthropic's Messages API, the one thing tests simulate.

The real bundled `claude` CLI talks to it (see DESIGN.md section 2, "Testing against a
local upstream"). Each test queues replies; every request is recorded so tests can
assert exactly what reached "Anthropic". It runs its own event loop in a thread so
that synchronous SDK clients, the proxy's server thread and the CLI can all reach it.
"""

from __future__ import annotations

import asyncio
import json
import threading
import uuid
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web


@dataclass(frozen=True)
class Text:
    """A text block streamed as these chunks."""

    chunks: tuple[str, ...]


@dataclass(frozen=True)
class Thinking:
    chunks: tuple[str, ...]
    signature: str = "sig-test"


@dataclass(frozen=True)
class ToolUse:
    name: str
    input: dict[str, Any]
    id: str = ""
    # How the JSON of `input` is split into input_json_delta fragments.
    pieces: int = 3


@dataclass(frozen=True)
class Reply:
    """One scripted answer to one upstream request."""

    blocks: tuple[Text | Thinking | ToolUse, ...] = ()
    stop_reason: str | None = None
    input_tokens: int = 11
    output_tokens: int = 7
    cache_read: int = 0
    cache_creation: int = 0
    # Seconds before message_start, and between every delta.
    first_delay: float = 0.0
    delay: float = 0.0
    # An HTTP error instead of a stream.
    status: int = 200
    error_type: str = "api_error"
    error_message: str = "scripted error"
    headers: dict[str, str] = field(default_factory=dict)
    # Drop the connection after this many deltas (a cut stream).
    cut_after: int | None = None
    # Send an SSE `error` event after this many deltas (an overloaded mid-stream).
    error_after: int | None = None
    # Answer only a request whose JSON body this accepts: the first queued reply that
    # matches is used, so requests that race (a client's title request beside its main
    # one) each get their own reply. None matches any request.
    when: Callable[[dict[str, Any]], bool] | None = None


def text(*chunks: str, **kw: Any) -> Reply:
    return Reply(blocks=(Text(tuple(chunks)),), **kw)


def error(status: int, message: str = "scripted error", **kw: Any) -> Reply:
    kind = {
        400: "invalid_request_error",
        401: "authentication_error",
        403: "permission_error",
        404: "not_found_error",
        429: "rate_limit_error",
        529: "overloaded_error",
    }.get(status, "api_error")
    return Reply(status=status, error_type=kind, error_message=message, **kw)


@dataclass
class Recorded:
    method: str
    path: str
    query: str
    headers: dict[str, str]
    body: dict[str, Any]

    def user_texts(self) -> list[str]:
        """Every text the request's user turns carry, in order (system reminders dropped)."""
        out: list[str] = []
        for m in self.body.get("messages", []):
            if m.get("role") != "user":
                continue
            out.extend(t for t in _texts(m.get("content")) if not t.startswith("<system-reminder>"))
        return out

    def turns(self) -> list[tuple[str, str]]:
        """(role, joined text) per message, with system reminders removed."""
        out = []
        for m in self.body.get("messages", []):
            texts = [t for t in _texts(m.get("content")) if not t.startswith("<system-reminder>")]
            out.append((m.get("role", ""), "\n".join(texts)))
        return out


def _texts(content: Any) -> list[str]:
    if isinstance(content, str):
        return [content]
    out = []
    for block in content or []:
        if isinstance(block, dict) and block.get("type") == "text":
            out.append(block.get("text", ""))
    return out


class Upstream:
    """Start with `start()`, stop with `stop()`; queue replies with `push()`.

    With the queue empty it answers `echo: <last user text>`, so tests that run many
    conversations at once can tell from the answer which conversation was served.
    """

    def __init__(self) -> None:
        self.requests: list[Recorded] = []
        # Streams sent to the end: lets a test prove a chunk reached the client first.
        self.streams_finished = 0
        self._replies: deque[Reply] = deque()
        self._lock = threading.Lock()
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._run, name="upstream", daemon=True)
        self._ready = threading.Event()
        self._runner: web.AppRunner | None = None
        self.port = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def push(self, *replies: Reply) -> None:
        with self._lock:
            self._replies.extend(replies)

    def clear(self) -> None:
        with self._lock:
            self._replies.clear()
            self.requests.clear()
            self.streams_finished = 0

    def messages_requests(self) -> list[Recorded]:
        with self._lock:
            return [r for r in self.requests if r.path.endswith("/messages")]

    def start(self) -> Upstream:
        self._thread.start()
        if not self._ready.wait(10):
            raise RuntimeError("upstream did not start")
        return self

    def stop(self) -> None:
        async def shutdown() -> None:
            if self._runner is not None:
                await self._runner.cleanup()

        asyncio.run_coroutine_threadsafe(shutdown(), self._loop).result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)
        self._loop.close()

    def _run(self) -> None:
        asyncio.set_event_loop(self._loop)
        app = web.Application(client_max_size=64 * 1024 * 1024)
        app.router.add_route("*", "/{tail:.*}", self._handle)
        self._runner = web.AppRunner(app, access_log=None)
        self._loop.run_until_complete(self._runner.setup())
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        self._loop.run_until_complete(site.start())
        server = site._server  # noqa: SLF001 - the port chosen for port 0
        assert server is not None
        self.port = server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        self._ready.set()
        self._loop.run_forever()

    def _next_reply(self, body: dict[str, Any]) -> Reply:
        with self._lock:
            for reply in self._replies:
                if reply.when is None or reply.when(body):
                    self._replies.remove(reply)
                    return reply
        texts = Recorded("", "", "", {}, body).user_texts()
        return text("echo: ", texts[-1] if texts else "")

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        raw = await request.read()
        try:
            body = json.loads(raw) if raw else {}
        except ValueError:
            body = {"_raw": raw.decode("utf-8", "replace")}
        rec = Recorded(
            request.method, request.path, request.query_string, dict(request.headers), body
        )
        with self._lock:
            self.requests.append(rec)
        if request.method == "HEAD" or request.path in ("/", ""):
            return web.Response(status=200)
        if not request.path.endswith("/v1/messages"):
            return web.json_response(
                {"type": "error", "error": {"type": "not_found_error", "message": "no such route"}},
                status=404,
            )
        reply = self._next_reply(body)
        if reply.status != 200:
            return web.json_response(
                {
                    "type": "error",
                    "error": {"type": reply.error_type, "message": reply.error_message},
                },
                status=reply.status,
                headers=reply.headers,
            )
        if not body.get("stream"):
            return web.json_response(_message_body(reply, body))
        return await self._stream(request, reply, body)

    async def _stream(
        self, request: web.Request, reply: Reply, body: dict[str, Any]
    ) -> web.StreamResponse:
        resp = web.StreamResponse(
            headers={"Content-Type": "text/event-stream", "request-id": "req_test", **reply.headers}
        )
        await resp.prepare(request)
        if reply.first_delay:
            await asyncio.sleep(reply.first_delay)
        sent = 0

        async def send(event: str, data: dict[str, Any]) -> None:
            await resp.write(f"event: {event}\ndata: {json.dumps(data)}\n\n".encode())

        async def delta(event: dict[str, Any]) -> bool:
            """Send one delta; False when the script says to stop here."""
            nonlocal sent
            if reply.cut_after is not None and sent >= reply.cut_after:
                request.transport and request.transport.close()  # type: ignore[func-returns-value]
                return False
            if reply.error_after is not None and sent >= reply.error_after:
                await send(
                    "error",
                    {
                        "type": "error",
                        "error": {"type": "overloaded_error", "message": "Overloaded"},
                    },
                )
                return False
            if reply.delay and sent:
                await asyncio.sleep(reply.delay)
            await send("content_block_delta", event)
            sent += 1
            return True

        msg = _message_body(reply, body)
        start = dict(msg, content=[], stop_reason=None, stop_sequence=None)
        start["usage"] = dict(msg["usage"], output_tokens=1)
        await send("message_start", {"type": "message_start", "message": start})
        await send("ping", {"type": "ping"})
        for index, block in enumerate(reply.blocks):
            if isinstance(block, Text):
                await send(
                    "content_block_start",
                    {
                        "type": "content_block_start",
                        "index": index,
                        "content_block": {"type": "text", "text": ""},
                    },
                )
                for chunk in block.chunks:
                    if not await delta(
                        {
                            "type": "content_block_delta",
                            "index": index,
                            "delta": {"type": "text_delta", "text": chunk},
                        }
                    ):
                        return resp
            elif isinstance(block, Thinking):
                await send(
                    "content_block_start",
                    {
                        "type": "content_block_start",
                        "index": index,
                        "content_block": {"type": "thinking", "thinking": "", "signature": ""},
                    },
                )
                for chunk in block.chunks:
                    if not await delta(
                        {
                            "type": "content_block_delta",
                            "index": index,
                            "delta": {"type": "thinking_delta", "thinking": chunk},
                        }
                    ):
                        return resp
                await send(
                    "content_block_delta",
                    {
                        "type": "content_block_delta",
                        "index": index,
                        "delta": {"type": "signature_delta", "signature": block.signature},
                    },
                )
            else:
                await send(
                    "content_block_start",
                    {
                        "type": "content_block_start",
                        "index": index,
                        "content_block": {
                            "type": "tool_use",
                            "id": msg["content"][index]["id"],
                            "name": block.name,
                            "input": {},
                        },
                    },
                )
                doc = json.dumps(block.input)
                step = max(1, -(-len(doc) // max(1, block.pieces)))
                for i in range(0, len(doc), step):
                    if not await delta(
                        {
                            "type": "content_block_delta",
                            "index": index,
                            "delta": {
                                "type": "input_json_delta",
                                "partial_json": doc[i : i + step],
                            },
                        }
                    ):
                        return resp
            await send("content_block_stop", {"type": "content_block_stop", "index": index})
        await send(
            "message_delta",
            {
                "type": "message_delta",
                "delta": {"stop_reason": msg["stop_reason"], "stop_sequence": None},
                "usage": {"output_tokens": reply.output_tokens},
            },
        )
        await send("message_stop", {"type": "message_stop"})
        await resp.write_eof()
        with self._lock:
            self.streams_finished += 1
        return resp


def _message_body(reply: Reply, body: dict[str, Any]) -> dict[str, Any]:
    content: list[dict[str, Any]] = []
    for block in reply.blocks:
        if isinstance(block, Text):
            content.append({"type": "text", "text": "".join(block.chunks)})
        elif isinstance(block, Thinking):
            content.append(
                {
                    "type": "thinking",
                    "thinking": "".join(block.chunks),
                    "signature": block.signature,
                }
            )
        else:
            content.append(
                {
                    "type": "tool_use",
                    "id": block.id or f"toolu_{uuid.uuid4().hex[:20]}",
                    "name": block.name,
                    "input": block.input,
                }
            )
    stop = reply.stop_reason or (
        "tool_use" if any(isinstance(b, ToolUse) for b in reply.blocks) else "end_turn"
    )
    return {
        "id": f"msg_{uuid.uuid4().hex[:20]}",
        "type": "message",
        "role": "assistant",
        "model": body.get("model", "claude-test"),
        "content": content,
        "stop_reason": stop,
        "stop_sequence": None,
        "usage": {
            "input_tokens": reply.input_tokens,
            "output_tokens": reply.output_tokens,
            "cache_read_input_tokens": reply.cache_read,
            "cache_creation_input_tokens": reply.cache_creation,
        },
    }
