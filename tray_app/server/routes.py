"""Thin route handlers: parse with protocol/, run with backend/, write frames or a body."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import logging
import re
import time
import uuid
from collections.abc import AsyncIterator, Callable, Mapping
from dataclasses import asdict, dataclass
from typing import Any, Protocol

from aiohttp import web

from tray_app import __version__
from tray_app.backend.claude_sessions import claude_code_sessions
from tray_app.backend.runner import Caller, CliInfo, TurnRunner
from tray_app.backend.store import SessionStore, StoreUnavailable, store_path
from tray_app.errors import InvalidRequest, NotFound, PayloadTooLarge
from tray_app.integrations.signin import SignInStatus
from tray_app.protocol import anthropic, extensions, openai_chat, openai_responses
from tray_app.protocol.common import (
    Collector,
    check_command_line_text,
    count_messages,
    json_too_deep,
    session_id_value,
    unencodable_text,
)
from tray_app.protocol.model import Api, CliEvent, Turn, TurnCompleted
from tray_app.protocol.models import model_body, models_body, resolve_model
from tray_app.protocol.tokens import estimate_input_tokens
from tray_app.server.errors import classify, error_body
from tray_app.settings import Settings

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Context:
    settings: Settings
    runner: TurnRunner
    cli: CliInfo
    signin: Callable[[], SignInStatus]
    store: SessionStore | None = None
    # The environment the CLI runs with (its config dir; the tools' config files).
    env: Mapping[str, str] = dataclasses.field(default_factory=dict)


CONTEXT = web.AppKey("context", Context)
REQUEST_ID = web.RequestKey("request_id", str)


class StreamTranslator(Protocol):
    def feed(self, event: CliEvent) -> list[bytes]: ...
    def error(self, body: dict[str, Any]) -> list[bytes]: ...


def api_of(request: web.Request) -> Api:
    path = request.path.rstrip("/")
    if path.endswith(("/messages", "/messages/count_tokens")):
        return "anthropic"
    return "responses" if path.endswith("/responses") else "openai"


_SESSION_HEADERS = ("X-Session-Id", "X-Claude-Session-ID")
_EPHEMERAL_HEADER = "X-Claude-Tray-Ephemeral"
_CLIENT_HEADER = "X-Claude-Tray-Client"


def with_headers(request: web.Request, turn: Turn) -> Turn:
    """Session controls that clients unable to change the body send as headers."""
    changes: dict[str, Any] = {}
    if turn.session_id is None:
        for name in _SESSION_HEADERS:
            value = request.headers.get(name, "").strip()
            if value:
                # Echoed back in X-Session-Id: a control character would break the answer.
                changes["session_id"] = session_id_value(value, name)
                break
    if request.headers.get(_EPHEMERAL_HEADER, "").strip().lower() in ("1", "true", "yes"):
        changes["ephemeral"] = True
    return dataclasses.replace(turn, **changes) if changes else turn


def client_of(request: web.Request) -> str:
    """A short client name for usage records: our header, else the User-Agent's product.

    Printable characters only: the name is stored, shown on the dashboard and logged.
    """
    named = _printable(request.headers.get(_CLIENT_HEADER, ""))
    if named:
        return named[:64]
    agent = _printable(request.headers.get("User-Agent", ""))
    return agent.split(" ")[0][:64] if agent else "unknown"


def _printable(text: str) -> str:
    # Header bytes that were not UTF-8 arrive as lone surrogates, which isprintable()
    # rejects along with control characters.
    return "".join(c for c in text if c.isprintable()).strip()


# A \uD800-\uDFFF escape may be half of a pair or a lone surrogate; only a body that
# has one is walked to find out (the check costs nothing for everything else).
_SURROGATE_ESCAPE = re.compile(rb"\\u[dD][89abcdefABCDEF]")


# Bodies above this are decoded in a thread: checking and parsing tens of megabytes
# takes long enough to stall every other stream on the event loop.
_DECODE_INLINE_BYTES = 1024 * 1024


async def read_json(request: web.Request) -> Any:
    """The request's JSON body, within the size, depth and message-count limits."""
    settings = request.app[CONTEXT].settings
    try:
        raw = await request.read()
    except web.HTTPRequestEntityTooLarge as exc:
        raise PayloadTooLarge(settings.max_body_bytes) from exc
    if not raw.strip():
        raise InvalidRequest("The request body is empty; send a JSON object.")
    if len(raw) > _DECODE_INLINE_BYTES:
        return await asyncio.to_thread(_decode, raw, settings)
    return _decode(raw, settings)


def _decode(raw: bytes, settings: Settings) -> Any:
    too_deep = InvalidRequest(
        f"The request body's JSON nests deeper than {settings.max_json_depth} levels "
        "(setting max_json_depth)."
    )
    if json_too_deep(raw, settings.max_json_depth):
        raise too_deep
    try:
        body = json.loads(raw)
    except RecursionError as exc:  # unbalanced brackets can still nest past the check
        raise too_deep from exc
    except ValueError as exc:
        where = (
            f" (line {exc.lineno}, column {exc.colno})"
            if isinstance(exc, json.JSONDecodeError)
            else ""
        )
        raise InvalidRequest(f"The request body is not valid JSON{where}.") from exc
    if _SURROGATE_ESCAPE.search(raw) and (bad := unencodable_text(body)) is not None:
        raise InvalidRequest(
            f"'{bad}' holds text with no UTF-8 form (an unpaired surrogate escape such "
            "as \\ud800); send valid Unicode text.",
            param=bad.split(" ")[0],
        )
    count_messages(body, settings.max_messages)
    return body


# ---- the two chat APIs ----


async def chat_completions(request: web.Request) -> web.StreamResponse:
    return await _serve(request, _parse(await read_json(request), openai_chat.parse_request))


async def messages(request: web.Request) -> web.StreamResponse:
    return await _serve(request, _parse(await read_json(request), anthropic.parse_request))


async def responses(request: web.Request) -> web.StreamResponse:
    return await _serve(request, _parse(await read_json(request), openai_responses.parse_request))


def _parse(body: Any, parse: Callable[[Any], Turn]) -> Turn:
    """The API's own fields, then claude-tray's extensions (the same in every API), then
    the check of the text that becomes the CLI's command line."""
    names = None
    if isinstance(body, dict):
        body, names = extensions.split_tool_names(body)
    turn = extensions.with_extensions(parse(body), body, names)
    check_command_line_text(turn)
    return turn


async def count_tokens(request: web.Request) -> web.Response:
    turn = anthropic.parse_count_tokens(await read_json(request))
    resolve_model(turn.model, request.app[CONTEXT].settings.model_aliases)
    return web.json_response(
        anthropic.count_tokens_body(estimate_input_tokens(turn)),
        headers={"X-Claude-Tray-Estimate": "true"},
    )


async def _serve(request: web.Request, turn: Turn) -> web.StreamResponse:
    ctx = request.app[CONTEXT]
    turn = with_headers(request, turn)
    chosen = request.headers.get("X-Model", "").strip()
    if chosen:
        # For clients that cannot change the body; the answer names this model too.
        turn = dataclasses.replace(turn, model=chosen)
    model = resolve_model(turn.model, ctx.settings.model_aliases)
    rid = request[REQUEST_ID]
    response_id = _response_id() if turn.api == "responses" else None
    linked = response_id if turn.store and not turn.ephemeral else None
    caller = Caller(rid, client_of(request), linked)
    headers = {"X-Claude-Tray-Model": model}
    if ctx.runner.quota.extra_usage():
        # on_extra_usage is warn or allow here (pause refuses before any work).
        headers["X-Claude-Tray-Warning"] = "billed-as-extra-usage"
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
    events = ctx.runner.events(turn, model, caller)
    async with _Pump(events) as pump:
        if not turn.stream:
            return await _whole(turn, pump, headers, response_id)
        return await _stream(request, turn, pump, headers, rid, response_id)


async def _whole(
    turn: Turn, pump: _Pump, headers: dict[str, str], response_id: str | None
) -> web.Response:
    collector = Collector(turn.stop)
    while (event := await pump.next(None)) is not None:
        collector.feed(event)
    if collector.session_id:
        headers["X-Session-Id"] = collector.session_id
    body: dict[str, Any]
    if turn.api == "anthropic":
        body = anthropic.message_body(collector, message_id=_message_id(), model=turn.model)
    elif turn.api == "responses":
        body = openai_responses.response_body(
            collector,
            response_id=response_id or _response_id(),
            model=turn.model,
            created=int(time.time()),
            previous_response_id=turn.previous_response_id,
            tools=turn.tools,
        )
    else:
        body = openai_chat.completion_body(
            collector, completion_id=_completion_id(), model=turn.model, created=int(time.time())
        )
    return web.json_response(body, headers=headers)


async def _stream(
    request: web.Request,
    turn: Turn,
    pump: _Pump,
    headers: dict[str, str],
    rid: str,
    response_id: str | None,
) -> web.StreamResponse:
    translator: StreamTranslator
    keepalive: bytes
    if turn.api == "anthropic":
        translator = anthropic.MessagesStream(
            message_id=_message_id(), model=turn.model, stops=turn.stop
        )
        keepalive = anthropic.PING
    elif turn.api == "responses":
        translator = openai_responses.ResponsesStream(
            response_id=response_id or _response_id(),
            model=turn.model,
            created=int(time.time()),
            stops=turn.stop,
            previous_response_id=turn.previous_response_id,
            tools=turn.tools,
        )
        keepalive = b": keepalive\n\n"
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


def _response_id() -> str:
    return f"resp_{uuid.uuid4().hex}"


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
            "pool": ctx.runner.pool.stats,
            "quota": {**ctx.runner.quota.to_json(), "on_extra_usage": ctx.settings.on_extra_usage},
            "sessions_kept": ctx.store is not None,
        }
    )


async def root(request: web.Request) -> web.Response:
    # Claude Code sends `HEAD /` before its first request (a 200 is all it wants);
    # people and monitors asking `GET /` get what /health says.
    if request.method == "HEAD":
        return web.json_response({"name": "claude-tray", "version": __version__})
    return await health(request)


async def ping(request: web.Request) -> web.Response:
    return web.json_response({"status": "ok"})


# ---- sessions and usage ----


def _store(request: web.Request) -> SessionStore:
    ctx = request.app[CONTEXT]
    if ctx.store is None:
        # 503, not 404: the sessions exist (or will, once the file can be opened); the
        # store is what is unusable, and restarting after fixing it brings them back.
        raise StoreUnavailable(
            str(store_path(ctx.settings.paths)),
            "it could not be opened when claude-tray started, so sessions are not kept; "
            "the log says why",
        )
    return ctx.store


def _session_json(record: Any) -> dict[str, Any]:
    body = dataclasses.asdict(record)
    body.pop("tip", None)
    body.pop("spawn_key", None)
    body["object"] = "session"
    body["source"] = "claude-tray"
    return body


async def list_sessions(request: web.Request) -> web.Response:
    source = request.query.get("source", "claude-tray")
    if source not in ("claude-tray", "claude-code"):
        raise InvalidRequest("'source' must be claude-tray or claude-code.", param="source")
    try:
        limit = min(max(int(request.query.get("limit", "100")), 1), 1000)
        offset = max(int(request.query.get("offset", "0")), 0)
    except ValueError as exc:
        raise InvalidRequest("'limit' and 'offset' must be integers.", param="limit") from exc
    if source == "claude-code":
        found = await asyncio.to_thread(
            claude_code_sessions, request.app[CONTEXT].runner.work_dir, limit, offset
        )
        return web.json_response({"object": "list", "data": found, "has_more": len(found) == limit})
    store = _store(request)
    query = request.query.get("q") or None
    records = await asyncio.to_thread(store.list, limit=limit, offset=offset, query=query)
    return web.json_response(
        {
            "object": "list",
            "data": [_session_json(r) for r in records],
            "has_more": len(records) == limit,
        }
    )


async def get_session(request: web.Request) -> web.Response:
    store = _store(request)
    record = await asyncio.to_thread(store.get, request.match_info["id"])
    if record is None:
        raise NotFound(f"No session with id '{request.match_info['id']}'.")
    return web.json_response(_session_json(record))


async def delete_session(request: web.Request) -> web.Response:
    store = _store(request)
    session_id = request.match_info["id"]
    if not await asyncio.to_thread(store.delete, session_id):
        raise NotFound(f"No session with id '{session_id}'.")
    request.app[CONTEXT].runner.pool.drop_session(session_id)
    return web.json_response({"id": session_id, "object": "session.deleted", "deleted": True})


async def usage(request: web.Request) -> web.Response:
    store = _store(request)
    since = request.query.get("since")
    try:
        since_value = float(since) if since else None
    except ValueError as exc:
        raise InvalidRequest("'since' must be a Unix time in seconds.", param="since") from exc
    totals = await asyncio.to_thread(store.usage_totals, since_value)
    ctx = request.app[CONTEXT]
    quota = {**ctx.runner.quota.to_json(), "on_extra_usage": ctx.settings.on_extra_usage}
    return web.json_response({"object": "usage", **totals, "quota": quota})
