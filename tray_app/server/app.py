"""Build the aiohttp application (routes and middlewares) and run it until told to stop."""

from __future__ import annotations

import asyncio
import collections
import hashlib
import hmac
import ipaddress
import logging
import math
import re
import time
import uuid
from collections.abc import Awaitable, Callable, Mapping
from urllib.parse import urlsplit

from aiohttp import web
from aiohttp.typedefs import Middleware

from tray_app.backend.runner import TurnRunner, bundled_cli, probe_cli
from tray_app.backend.store import SessionStore, StoreUnavailable, store_path
from tray_app.errors import (
    ClaudeTrayError,
    Forbidden,
    MethodNotAllowed,
    NotFound,
    PayloadTooLarge,
    RateLimited,
    Unauthorized,
    UnsupportedMediaType,
)
from tray_app.integrations.signin import SignInStatus, read_signin_status
from tray_app.server import dashboard, openapi, routes
from tray_app.server.errors import classify, error_body
from tray_app.settings import Settings

log = logging.getLogger(__name__)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
_LOOPBACK_NAMES = {"localhost", "127.0.0.1", "::1", "[::1]"}


def is_loopback(host: str) -> bool:
    name = host.strip("[]").lower().rstrip(".")  # "localhost." is the same name
    if name == "localhost" or name.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False


# A client's own request id is kept when it is plain visible ASCII: it is echoed in a
# response header and starts every log line of the request.
_CLIENT_REQUEST_ID = re.compile(r"[\x21-\x7e]{1,100}")


@web.middleware
async def request_id_mw(request: web.Request, handler: Handler) -> web.StreamResponse:
    given = request.headers.get("X-Request-Id", "")
    rid = given if _CLIENT_REQUEST_ID.fullmatch(given) else f"req_{uuid.uuid4().hex[:20]}"
    request[routes.REQUEST_ID] = rid
    return await handler(request)


async def request_id_headers(request: web.Request, response: web.StreamResponse) -> None:
    """The request id on every answer, streams too (they are prepared inside the
    handler, before any middleware sees the response)."""
    rid = request.get(routes.REQUEST_ID)
    if rid is not None:
        response.headers.setdefault("X-Request-Id", rid)
        response.headers.setdefault("request-id", rid)


@web.middleware
async def errors_mw(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Every failure leaves in the caller's own error shape."""
    try:
        return await handler(request)
    except web.HTTPRequestEntityTooLarge:
        exc: BaseException = PayloadTooLarge(request.app[routes.CONTEXT].settings.max_body_bytes)
    except web.HTTPNotFound:
        exc = NotFound(
            f"There is no route {request.method} {request.path} here. The OpenAI "
            "API lives under /v1 (chat/completions, models), the Anthropic API at "
            "/v1/messages."
        )
    except web.HTTPMethodNotAllowed as http:
        exc = MethodNotAllowed(request.method, request.path, set(http.allowed_methods))
    except web.HTTPException:
        raise
    except ClaudeTrayError as err:
        exc = err
    except Exception as err:
        log.exception("[%s] unexpected error", request.get(routes.REQUEST_ID, "-"))
        exc = err
    wire = classify(exc)
    rid = request.get(routes.REQUEST_ID, "-")
    dashboard.record_error(request, wire)
    if wire.status >= 500 or wire.status == 429:
        log.warning(
            "[%s] %s %s -> %d: %s", rid, request.method, request.path, wire.status, wire.message
        )
    else:
        log.info(
            "[%s] %s %s -> %d: %s", rid, request.method, request.path, wire.status, wire.message
        )
    if wire.status == 404 and isinstance(exc, NotFound) and request.method == "HEAD":
        return web.Response(status=404)
    return web.json_response(
        error_body(routes.api_of(request), wire, rid), status=wire.status, headers=wire.headers
    )


def _is_json_type(content_type: str) -> bool:
    """application/json or application/*+json: types a web page cannot send to another
    origin without a CORS preflight."""
    media = content_type.split(";")[0].strip().lower()
    return media == "application/json" or (
        media.startswith("application/") and media.endswith("+json")
    )


def _normal_origin(origin: str) -> str:
    return origin.strip().rstrip("/").lower()


def _presented_keys(request: web.Request) -> list[bytes]:
    """What the caller offers as the API key: `x-api-key` and a Bearer token (some
    clients send both; either may carry it). Bytes that were not UTF-8 arrive as
    surrogate escapes and go back to those bytes, so they compare (unequal), not crash."""
    given = [request.headers.get("x-api-key", "")]
    auth = request.headers.get("Authorization", "")
    if auth[:7].lower() == "bearer ":
        given.append(auth[7:].strip())
    return [g.encode("utf-8", "surrogateescape") for g in given if g]


def guard_mw(settings: Settings) -> Middleware:
    """Host, Origin and Sec-Fetch-Site checks (DNS rebinding, other web pages), CORS
    preflights, the proxy's API key, and JSON-only request bodies."""
    allowed_hosts = {h.lower().rstrip(".") for h in settings.allowed_hosts}
    allowed_origins = {_normal_origin(o) for o in settings.allowed_origins}
    open_network = settings.listens_beyond_loopback
    key = (settings.api_key or "").encode()

    @web.middleware
    async def guard(request: web.Request, handler: Handler) -> web.StreamResponse:
        host = (request.headers.get("Host") or "").lower()
        hostname = (urlsplit(f"//{host}").hostname or "").rstrip(".")
        if not open_network and not (is_loopback(hostname) or hostname in allowed_hosts):
            raise Forbidden(
                f"Host {host!r} is not allowed. claude-tray answers loopback names; "
                "add other names to the allowed_hosts setting."
            )
        origin = request.headers.get("Origin")
        listed = origin is not None and _normal_origin(origin) in allowed_origins
        if origin is not None and not listed and not _own_or_loopback(origin, host):
            # "null" too: sandboxed iframes and file: pages send it, and any site can
            # make one of those.
            raise Forbidden(
                f"Requests from the web page at {origin!r} are refused; add it to "
                "the allowed_origins setting to allow it."
            )
        # A browser names the relation outright. Another port on this machine is the
        # "same-site", which is still another page (a dev server, a notebook's output).
        site = request.headers.get("Sec-Fetch-Site", "").lower()
        if site in ("cross-site", "same-site") and not listed and not dashboard.is_page(request):
            raise Forbidden(
                f"Requests from other web pages ({site}, origin {origin or 'not sent'!r}) "
                "are refused; add the page's origin to the allowed_origins setting."
            )
        if request.method == "OPTIONS" and "Access-Control-Request-Method" in request.headers:
            # A CORS preflight carries no credentials; only allow-listed pages pass.
            if not listed:
                raise Forbidden(
                    f"Cross-origin requests from {origin or 'a page'!r} are refused; add "
                    "the page's origin to the allowed_origins setting to allow them."
                )
            return web.Response(status=204, headers=_preflight_headers(request))
        if (
            key
            and not (request.path == "/health" and not open_network)
            and not dashboard.is_page(request)  # files only; the page sends the key for data
            and request.method != "OPTIONS"
        ):
            # Every candidate is compared, each in constant time, so the answer's timing
            # says nothing about the key.
            matched = False
            for given in _presented_keys(request):
                matched |= hmac.compare_digest(given, key)
            if not matched:
                raise Unauthorized(
                    "A valid claude-tray API key is required: send it as "
                    "'x-api-key' or 'Authorization: Bearer <key>'."
                )
        if request.method == "POST":
            # text/plain, form and multipart bodies are what a page may send without a
            # preflight. No type at all is a script (curl --data-binary, requests' data=);
            # a browser always sends an Origin with a POST, so from one it is refused.
            content_type = request.headers.get("Content-Type")
            if content_type is None:
                if origin is not None and not listed:
                    raise UnsupportedMediaType("(none)")
            elif not _is_json_type(content_type):
                raise UnsupportedMediaType(content_type)
        return await handler(request)

    return guard


def _own_or_loopback(origin: str, host: str) -> bool:
    """A page served by this proxy itself (its origin is the Host asked for), or one
    from a loopback address (the tray's own tools; non-browser clients that set it)."""
    if origin == "null":
        return False
    parts = urlsplit(origin.strip())
    if parts.netloc.lower() == host:
        return True
    return is_loopback(parts.hostname or "")


_ALLOW_METHODS = "GET, POST, DELETE, OPTIONS"
# What a page may read from an answer besides the CORS-safelisted headers.
_EXPOSE_HEADERS = ", ".join(
    (
        "X-Request-Id",
        "request-id",
        "X-Session-Id",
        "X-Claude-Tray-Model",
        "X-Claude-Tray-Warning",
        "X-Claude-Tray-Ignored",
        "X-Claude-Tray-Estimate",
        "Retry-After",
    )
)
_HEADER_LIST = re.compile(r"[A-Za-z0-9!#$%&'*+.^_`|~-]+(\s*,\s*[A-Za-z0-9!#$%&'*+.^_`|~-]+)*")


def _preflight_headers(request: web.Request) -> dict[str, str]:
    # The page is allow-listed, so the headers it asks for (SDKs add their own
    # x-stainless-*, anthropic-* ones) are allowed, as long as they are header names.
    asked = request.headers.get("Access-Control-Request-Headers", "").strip()
    headers = {
        "Access-Control-Allow-Methods": _ALLOW_METHODS,
        "Access-Control-Max-Age": "600",
    }
    if asked and _HEADER_LIST.fullmatch(asked):
        headers["Access-Control-Allow-Headers"] = asked
    return headers


def cors_headers(
    settings: Settings,
) -> Callable[[web.Request, web.StreamResponse], Awaitable[None]]:
    """Add CORS headers to every answer (errors and streams too) for an allow-listed
    Origin, naming that origin: never `*`, and nothing for any other page."""
    allowed_origins = {_normal_origin(o) for o in settings.allowed_origins}

    async def on_prepare(request: web.Request, response: web.StreamResponse) -> None:
        if not allowed_origins:
            return
        origin = request.headers.get("Origin")
        # The answer depends on the Origin, so caches must keep them apart.
        vary = response.headers.get("Vary")
        if "origin" not in (vary or "").lower():
            response.headers["Vary"] = f"{vary}, Origin" if vary else "Origin"
        if origin is None or _normal_origin(origin) not in allowed_origins:
            return
        response.headers["Access-Control-Allow-Origin"] = origin.strip()
        response.headers["Access-Control-Expose-Headers"] = _EXPOSE_HEADERS

    return on_prepare


# The routes that start a turn (and cost the user); everything else is never limited.
_LIMITED_SUFFIXES = ("/chat/completions", "/messages", "/responses")


def rate_limit_mw(settings: Settings) -> Middleware:
    """At most rate_limit_per_minute turns per client in any 60 s (0: no limit). A
    client is its API key when it sends one, else its address."""
    limit = settings.rate_limit_per_minute
    seen: dict[str, collections.deque[float]] = {}

    @web.middleware
    async def rate_limit(request: web.Request, handler: Handler) -> web.StreamResponse:
        if limit <= 0 or request.method != "POST" or not request.path.endswith(_LIMITED_SUFFIXES):
            return await handler(request)
        key = _client_key(request)
        now = time.monotonic()
        stamps = seen.setdefault(key, collections.deque())
        while stamps and now - stamps[0] >= 60:
            stamps.popleft()
        if len(stamps) >= limit:
            raise RateLimited(limit, max(1, math.ceil(stamps[0] + 60 - now)))
        stamps.append(now)
        if len(seen) > 10_000:  # a bound on memory against many addresses
            for stale in [k for k, v in seen.items() if not v or now - v[-1] >= 60]:
                del seen[stale]
        return await handler(request)

    return rate_limit


def _client_key(request: web.Request) -> str:
    auth = request.headers.get("Authorization", "")
    key = request.headers.get("x-api-key") or (
        auth[7:] if auth.lower().startswith("bearer ") else ""
    )
    if key:
        # Never the key itself in memory longer than needed: a digest tells clients apart.
        # surrogateescape: header bytes that were not UTF-8 arrive as surrogate escapes.
        return "key:" + hashlib.sha256(key.encode("utf-8", "surrogateescape")).hexdigest()[:16]
    return "addr:" + (request.remote or "-")


def build_app(ctx: routes.Context) -> web.Application:
    app = web.Application(
        client_max_size=ctx.settings.max_body_bytes,
        middlewares=[request_id_mw, errors_mw, guard_mw(ctx.settings), rate_limit_mw(ctx.settings)],
    )
    app[routes.CONTEXT] = ctx
    app.on_response_prepare.append(request_id_headers)
    app.on_response_prepare.append(cors_headers(ctx.settings))
    for prefix in ("/v1", ""):
        app.router.add_post(f"{prefix}/chat/completions", routes.chat_completions)
        app.router.add_post(f"{prefix}/messages", routes.messages)
        app.router.add_get(f"{prefix}/models", routes.list_models)
        app.router.add_get(prefix + "/models/{model:.+}", routes.get_model)
        app.router.add_post(f"{prefix}/responses", routes.responses)
        app.router.add_post(f"{prefix}/messages/count_tokens", routes.count_tokens)
        app.router.add_get(f"{prefix}/sessions", routes.list_sessions)
        app.router.add_get(prefix + "/sessions/{id}", routes.get_session)
        app.router.add_delete(prefix + "/sessions/{id}", routes.delete_session)
        app.router.add_get(f"{prefix}/usage", routes.usage)
    app.router.add_get("/health", routes.health)
    app.router.add_get("/v1/health", routes.health)
    app.router.add_get("/", routes.root)  # also answers HEAD
    app.router.add_get("/ping", routes.ping)
    # Some clients put the provider's name in the path (LiteLLM-style base URLs).
    app.router.add_post("/anthropic/v1/messages", routes.messages)
    app.router.add_post("/anthropic/v1/messages/count_tokens", routes.count_tokens)
    dashboard.add_routes(app)
    openapi.add_routes(app)
    return app


class RefusedToStart(ClaudeTrayError):
    """A configuration the proxy must not run with."""


async def serve(
    settings: Settings, env: Mapping[str, str], stop: asyncio.Event, on_ready: Callable[[str], None]
) -> None:
    """Run the proxy until `stop` is set, then shut down gracefully."""
    if settings.listens_beyond_loopback and not settings.api_key:
        raise RefusedToStart(
            f"Refusing to listen on {settings.host} without an API key: anyone who can reach "
            "this port could use your Claude account. Set CLAUDE_TRAY_API_KEY (or api_key)."
        )
    cli_path = settings.cli_path or bundled_cli()
    cli = await probe_cli(cli_path)
    if cli.problem:
        log.warning("Claude Code CLI at %s: %s", cli_path, cli.problem)
    else:
        log.info("Claude Code CLI %s at %s", cli.version, cli_path)
    store = await asyncio.to_thread(_open_store, settings)
    runner = TurnRunner(settings, env, cli_path, store)

    def signin() -> SignInStatus:
        return read_signin_status(env, upstream_api_key=settings.upstream_api_key)

    app = build_app(routes.Context(settings, runner, cli, signin, store, env))
    app_runner = web.AppRunner(
        app, handler_cancellation=True, access_log=None, shutdown_timeout=settings.shutdown_grace
    )
    await app_runner.setup()
    site = web.TCPSite(app_runner, settings.host, settings.port)
    try:
        await site.start()
    except OSError as exc:
        await app_runner.cleanup()
        raise RefusedToStart(
            f"Cannot listen on {settings.host}:{settings.port}: "
            f"{exc.strerror or exc}. Is another program using that port?"
        ) from exc
    sockets = getattr(site._server, "sockets", None) or ()  # noqa: SLF001 - port 0 needs the bound port
    port = sockets[0].getsockname()[1] if sockets else settings.port
    host = f"[{settings.host}]" if ":" in settings.host else settings.host
    await runner.open()
    on_ready(f"http://{host}:{port}")
    try:
        await stop.wait()
    finally:
        log.info("shutting down: finishing running turns (up to %gs)", settings.shutdown_grace)
        await site.stop()  # stop accepting
        await runner.close(settings.shutdown_grace)
        await app_runner.cleanup()
        if store is not None:
            await asyncio.to_thread(store.close)
        log.info("stopped")


def _open_store(settings: Settings) -> SessionStore | None:
    """The session store, with expired sessions dropped; None (logged) when unusable."""
    try:
        store = SessionStore.open(store_path(settings.paths))
        expired = store.expire(time.time() - settings.session_ttl_days * 86400)
    except StoreUnavailable as exc:
        log.warning("sessions will not be kept: %s", exc)
        return None
    if expired:
        log.info("forgot %d sessions unused for %g days", expired, settings.session_ttl_days)
    return store
