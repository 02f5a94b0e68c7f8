"""The local dashboard: its page under /dashboard, and the JSON endpoints it reads that
the API did not have (a session's transcript, recent errors, the configured tools).

The page is static (hand-written HTML, CSS and JS in static/dashboard, no CDN, no build
step) and gets everything from the same JSON API the tray uses. It is served to this
machine only (a loopback peer) unless the API key comes with the request; the data it
shows comes from API routes that the guard protects like any other.
"""

from __future__ import annotations

import asyncio
import dataclasses
import functools
import hmac
import ipaddress
import time
from collections import deque
from pathlib import Path
from typing import Any

from aiohttp import web

from tray_app.backend.store import SessionStore
from tray_app.backend.transcripts_read import read_messages
from tray_app.errors import Forbidden, InvalidRequest, NotFound
from tray_app.integrations import configure as tools
from tray_app.server import routes
from tray_app.server.errors import WireError
from tray_app.settings import claude_config_dir, user_home

STATIC = Path(__file__).with_name("static") / "dashboard"
# Every file the page is made of, with its type: nothing else under /dashboard is served.
FILES = {
    "index.html": "text/html; charset=utf-8",
    "dashboard.css": "text/css; charset=utf-8",
    "dashboard.js": "text/javascript; charset=utf-8",
    "charts.js": "text/javascript; charset=utf-8",
    "icon.svg": "image/svg+xml",
}
# No inline script or style, nothing from elsewhere, no framing, no form posts.
CSP = "; ".join(
    (
        "default-src 'none'",
        "script-src 'self'",
        "style-src 'self'",
        "img-src 'self'",
        "connect-src 'self'",
        "base-uri 'none'",
        "form-action 'none'",
        "frame-ancestors 'none'",
    )
)
PAGE_HEADERS = {
    "Content-Security-Policy": CSP,
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-cache",
}
PREFIX = "/dashboard"
KEEP_ERRORS = 100


# ---- who may see the page ----


def peer_is_loopback(request: web.Request) -> bool:
    """Whether the TCP peer is this machine (not what Host or any header claims)."""
    try:
        address = ipaddress.ip_address((request.remote or "").split("%")[0])
    except ValueError:
        return False
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped.is_loopback
    return address.is_loopback


def is_page(request: web.Request) -> bool:
    """A request for the page's own files from this machine: the guard lets it through
    without the API key (the files hold no data; the page sends the key for the data)."""
    path = request.path
    return (
        request.method in ("GET", "HEAD")
        and (path == PREFIX or path.startswith(PREFIX + "/"))
        and peer_is_loopback(request)
    )


def _presented_key(request: web.Request) -> str:
    given = request.headers.get("x-api-key") or ""
    auth = request.headers.get("Authorization") or ""
    if not given and auth[:7].lower() == "bearer ":
        given = auth[7:].strip()
    return given


def _check_peer(request: web.Request) -> None:
    if peer_is_loopback(request):
        return
    key = request.app[routes.CONTEXT].settings.api_key
    if key and hmac.compare_digest(_presented_key(request).encode(), key.encode()):
        return
    raise Forbidden(
        "The dashboard answers this machine only, or a request carrying the API key. "
        "Open it on the machine claude-tray runs on (an SSH tunnel works too)."
    )


async def page(request: web.Request) -> web.Response:
    _check_peer(request)
    name = request.match_info.get("name") or "index.html"
    kind = FILES.get(name)
    if kind is None:
        raise NotFound(f"The dashboard has no file '{name}'.")
    try:
        body = await asyncio.to_thread((STATIC / name).read_bytes)
    except FileNotFoundError as exc:
        raise NotFound(f"The dashboard's file '{name}' is missing from this installation.") from exc
    return web.Response(body=body, headers={**PAGE_HEADERS, "Content-Type": kind})


# ---- recent errors ----


class RecentErrors:
    """The last few error answers, newest last; filled by the errors middleware."""

    def __init__(self, size: int = KEEP_ERRORS) -> None:
        self._items: deque[dict[str, Any]] = deque(maxlen=size)

    def add(self, item: dict[str, Any]) -> None:
        self._items.append(item)

    def newest_first(self, limit: int) -> list[dict[str, Any]]:
        return list(reversed(self._items))[:limit]


ERRORS = web.AppKey("recent_errors", RecentErrors)


def record_error(request: web.Request, wire: WireError) -> None:
    """Keep one error answer for the dashboard (called by the errors middleware)."""
    errors = request.app.get(ERRORS)
    if errors is None:
        return
    errors.add(
        {
            "time": time.time(),
            "request_id": request.get(routes.REQUEST_ID, "-"),
            "method": request.method,
            "path": request.path,
            "status": wire.status,
            "type": wire.kind,
            "code": wire.code,
            "message": wire.message,
            "client": routes.client_of(request),
        }
    )


async def recent_errors(request: web.Request) -> web.Response:
    limit = _int_query(request, "limit", 50, 1, KEEP_ERRORS)
    return web.json_response(
        {"object": "list", "data": request.app[ERRORS].newest_first(limit)},
    )


# ---- a session's transcript ----


async def transcript(request: web.Request) -> web.Response:
    """GET /v1/sessions/{id}/transcript: the conversation as the CLI recorded it."""
    ctx = request.app[routes.CONTEXT]
    session_id = request.match_info["id"]
    source = request.query.get("source", "claude-tray")
    if source not in ("claude-tray", "claude-code"):
        raise InvalidRequest("'source' must be claude-tray or claude-code.", param="source")
    limit = _int_query(request, "limit", 500, 1, 5000)
    offset = _int_query(request, "offset", 0, 0, 10**9)
    config_dir = claude_config_dir(ctx.env)
    if source == "claude-code":
        cli_session_id, cwd = session_id, None
    else:
        record = await asyncio.to_thread(_store(ctx.store).get, session_id)
        if record is None:
            raise NotFound(f"No session with id '{session_id}'.")
        cli_session_id, cwd = record.cli_session_id, ctx.runner.work_dir
    messages = await read_messages(config_dir, cli_session_id, cwd=cwd, limit=limit, offset=offset)
    if messages is None:
        raise NotFound(
            f"Session '{session_id}' has no transcript: the CLI's file "
            f"({cli_session_id}.jsonl) is gone."
        )
    return web.json_response(
        {
            "object": "session.transcript",
            "id": session_id,
            "source": source,
            "cli_session_id": cli_session_id,
            "data": messages,
            "has_more": len(messages) == limit,
        }
    )


def _store(store: SessionStore | None) -> SessionStore:
    if store is None:
        raise NotFound("Sessions are not kept: the session store could not be opened.")
    return store


# ---- the tools claude-tray can configure ----


def _state_json(state: tools.ToolState, home: Path) -> dict[str, Any]:
    try:
        short = "~/" + state.path.relative_to(home).as_posix()
    except ValueError:
        short = str(state.path)
    return {
        "id": state.tool,
        "label": state.label,
        "found": state.found,
        "configured": state.configured,
        "path": str(state.path),
        "short_path": short,  # for people: under the home folder, as ~/...
    }


async def list_tools(request: web.Request) -> web.Response:
    ctx = request.app[routes.CONTEXT]
    states = await asyncio.to_thread(tools.tool_states, ctx.settings, ctx.env)
    home = user_home(ctx.env)
    return web.json_response({"object": "list", "data": [_state_json(s, home) for s in states]})


async def configure_tool(request: web.Request) -> web.Response:
    """POST /v1/tools/{tool}/configure, body {"model"?, "make_default"?, "dry_run"?}:
    what `claude-tray configure TOOL` does, with the same safety (backup, undo)."""
    ctx = request.app[routes.CONTEXT]
    tool = request.match_info["tool"]
    if tool not in tools.TOOLS:
        raise NotFound(f"No tool '{tool}'; known: {', '.join(tools.TOOLS)}.")
    # JSON only: from another web page (even one whose Origin is "null") that content
    # type needs a CORS preflight, which this server never approves.
    if request.content_type != "application/json":
        raise InvalidRequest("Send the options as JSON (Content-Type: application/json).")
    options = await routes.read_json(request) if request.body_exists else {}
    if not isinstance(options, dict):
        raise InvalidRequest("The body must be a JSON object.")
    model = options.get("model")
    make_default = options.get("make_default", False)
    dry_run = options.get("dry_run", False)
    if model is not None and not isinstance(model, str):
        raise InvalidRequest("'model' must be a string.", param="model")
    if not isinstance(make_default, bool) or not isinstance(dry_run, bool):
        raise InvalidRequest("'make_default' and 'dry_run' must be true or false.")
    result = await asyncio.to_thread(
        functools.partial(
            tools.configure,
            tool,
            ctx.settings,
            ctx.env,
            model=model,
            make_default=make_default,
            dry_run=dry_run,
        )
    )
    body = dataclasses.asdict(result)
    body["files"] = [
        {
            "path": str(f.path),
            "action": f.action,
            "backup": None if f.backup is None else str(f.backup),
        }
        for f in result.files
    ]
    body["object"] = "tool.configure"
    # A file claude-tray will not touch (it does not parse, say) is a conflict to resolve
    # by hand; the message says which and why.
    return web.json_response(body, status=200 if result.ok else 409)


# ---- wiring ----


def _int_query(request: web.Request, name: str, default: int, low: int, high: int) -> int:
    raw = request.query.get(name)
    if raw is None:
        return default
    try:
        return min(max(int(raw), low), high)
    except ValueError as exc:
        raise InvalidRequest(f"'{name}' must be an integer.", param=name) from exc


def add_routes(app: web.Application) -> None:
    """The page and its endpoints (each JSON route also without the /v1 prefix)."""
    app[ERRORS] = RecentErrors()
    app.router.add_get(PREFIX, page)
    app.router.add_get(PREFIX + "/", page)
    app.router.add_get(PREFIX + "/{name}", page)
    for prefix in ("/v1", ""):
        app.router.add_get(prefix + "/sessions/{id}/transcript", transcript)
        app.router.add_get(f"{prefix}/errors", recent_errors)
        app.router.add_get(f"{prefix}/tools", list_tools)
        app.router.add_post(prefix + "/tools/{tool}/configure", configure_tool)
