"""Thin route handlers: parse with protocol/, run with backend/, write frames or a body."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import asdict, dataclass
from typing import Any, Protocol

from aiohttp import web

from tray_app import __version__
from tray_app.backend.runner import CliInfo, TurnRunner
from tray_app.errors import InvalidRequest, PayloadTooLarge
from tray_app.integrations.signin import SignInStatus
from tray_app.protocol import anthropic, openai_chat
from tray_app.protocol.common import Collector
from tray_app.protocol.model import Api, CliEvent, Turn, TurnCompleted
from tray_app.protocol.models import model_body, models_body, resolve_model
from tray_app.server.errors import classify, error_body
from tray_app.settings import Settings

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Context:
    settings: Settings
    runner: TurnRunner
    cli: CliInfo
    signin: Callable[[], SignInStatus]


CONTEXT = web.AppKey("context", Context)
REQUEST_ID = "request_id"


class StreamTranslator(Protocol):
    def feed(self, event: CliEvent) -> list[bytes]: ...
    def error(self, body: dict[str, Any]) -> list[bytes]: ...


def api_of(request: web.Request) -> Api:
    return "anthropic" if request.path.rstrip("/").endswith("/messages") else "openai"


async def read_json(request: web.Request) -> Any:
    try:
        raw = await request.read()
    except web.HTTPRequestEntityTooLarge as exc:
        raise PayloadTooLarge(request.app[CONTEXT].settings.max_body_bytes) from exc
    if not raw.strip():
        raise InvalidRequest("The request body is empty; send a JSON object.")
    try:
        return json.loads(raw)
    except ValueError as exc:
        where = (
            f" (line {exc.lineno}, column {exc.colno})"
            if isinstance(exc, json.JSONDecodeError)
            else ""
        )
        raise InvalidRequest(f"The request body is not valid JSON{where}.") from exc


# ---- the two chat APIs ----


async def chat_completions(request: web.Request) -> web.StreamResponse:
    turn = openai_chat.parse_request(await read_json(request))
    return await _serve(request, turn)


async def messages(request: web.Request) -> web.StreamResponse:
    turn = anthropic.parse_request(await read_json(request))
    return await _serve(request, turn)


async def _serve(request: web.Request, turn: Turn) -> web.StreamResponse:
    ctx = request.app[CONTEXT]
    model = resolve_model(turn.model, ctx.settings.model_aliases)
    rid = request[REQUEST_ID]
    headers = {"X-Claude-Tray-Model": model}
    if turn.ignored:
        headers["X-Claude-Tray-Ignored"] = ",".join(turn.ignored)
    log.info(
        "[%s] %s turn: model=%s history=%d stream=%s user=%s",
        rid,
        turn.api,
        model,
        len(turn.history),
        turn.stream,
        turn.user or "-",
    )
    events = ctx.runner.events(turn, model, rid)
    async with _Pump(events) as pump:
        if not turn.stream:
            return await _whole(turn, pump, headers)
        return await _stream(request, turn, pump, headers, rid)


async def _whole(turn: Turn, pump: _Pump, headers: dict[str, str]) -> web.Response:
    collector = Collector(turn.stop)
    while (event := await pump.next(None)) is not None:
        collector.feed(event)
    if collector.session_id:
        headers["X-Session-Id"] = collector.session_id
    if turn.api == "anthropic":
        body = anthropic.message_body(collector, message_id=_message_id(), model=turn.model)
    else:
        body = openai_chat.completion_body(
            collector, completion_id=_completion_id(), model=turn.model, created=int(time.time())
        )
    return web.json_response(body, headers=headers)


async def _stream(
    request: web.Request, turn: Turn, pump: _Pump, headers: dict[str, str], rid: str
) -> web.StreamResponse:
    translator: StreamTranslator
    keepalive: bytes
    if turn.api == "anthropic":
        translator = anthropic.MessagesStream(
            message_id=_message_id(), model=turn.model, stops=turn.stop
        )
        keepalive = anthropic.PING
    else:
        translator = openai_chat.ChatStream(
            completion_id=_completion_id(),
            model=turn.model,
            created=int(time.time()),
            include_usage=turn.include_usage,
            stops=turn.stop,
        )
        keepalive = b": keepalive\n\n"
    response = web.StreamResponse(
        headers={
            **headers,
            "Content-Type": "text/event-stream; charset=utf-8",
            "Cache-Control": "no-cache",
            "X-Accel-Buffering": "no",
        }
    )
    interval = request.app[CONTEXT].settings.keepalive_interval
    # Headers wait for the first frame, so that a failure before any output (a 401 or
    # 429 from Anthropic, a missing CLI) still gets its own HTTP status.
    try:
        while True:
            try:
                event = await pump.next(interval)
            except TimeoutError:
                if not response.prepared:
                    await response.prepare(request)
                await response.write(keepalive)
                continue
            if event is None:
                break
            frames = translator.feed(event)
            if frames:
                if not response.prepared:
                    if isinstance(event, TurnCompleted) and event.session_id:
                        response.headers["X-Session-Id"] = event.session_id
                    await response.prepare(request)
                await response.write(b"".join(frames))
    except Exception as exc:
        if not response.prepared:
            raise
        wire = classify(exc)
        log.warning("[%s] stream failed after it began: %s", rid, wire.message)
        with contextlib.suppress(ConnectionError):
            await response.write(b"".join(translator.error(error_body(turn.api, wire, rid))))
    with contextlib.suppress(ConnectionError):
        await response.write_eof()
    return response


class _Pump:
    """Reads an event generator from one task, so waits can time out without
    cancelling it; closing it (or cancelling the handler) ends the turn."""

    def __init__(self, events: AsyncIterator[CliEvent]) -> None:
        self._events = events
        self._pending: asyncio.Task[CliEvent] | None = None

    async def __aenter__(self) -> _Pump:
        return self

    async def next(self, timeout: float | None) -> CliEvent | None:
        if self._pending is None:
            self._pending = asyncio.ensure_future(anext(self._events))
        done, _ = await asyncio.wait({self._pending}, timeout=timeout)
        if not done:
            raise TimeoutError
        task, self._pending = self._pending, None
        try:
            return task.result()
        except StopAsyncIteration:
            return None

    async def __aexit__(self, *exc: object) -> None:
        if self._pending is not None:
            self._pending.cancel()
            await asyncio.gather(self._pending, return_exceptions=True)
        aclose = getattr(self._events, "aclose", None)
        if aclose is not None:
            await aclose()


def _message_id() -> str:
    return f"msg_{uuid.uuid4().hex[:24]}"


def _completion_id() -> str:
    return f"chatcmpl-{uuid.uuid4().hex[:24]}"


# ---- models and health ----


async def list_models(request: web.Request) -> web.Response:
    return web.json_response(models_body(request.app[CONTEXT].settings.model_aliases))


async def get_model(request: web.Request) -> web.Response:
    aliases = request.app[CONTEXT].settings.model_aliases
    return web.json_response(model_body(request.match_info["model"], aliases))


async def health(request: web.Request) -> web.Response:
    ctx = request.app[CONTEXT]
    signin = await asyncio.to_thread(ctx.signin)
    status = asdict(signin)
    if signin.expires_at is not None:
        status["expires_at"] = signin.expires_at.isoformat()
    return web.json_response(
        {
            "status": "ok" if ctx.cli.problem is None else "degraded",
            "version": __version__,
            "cli": {"path": ctx.cli.path, "version": ctx.cli.version, "problem": ctx.cli.problem},
            "signin": status,
            "turns": ctx.runner.stats,
        }
    )


async def root(request: web.Request) -> web.Response:
    # Claude Code sends `HEAD /` before its first request; a plain 200 is what it wants.
    return web.json_response({"name": "claude-tray", "version": __version__})
