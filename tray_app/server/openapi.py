"""Serve the OpenAPI 3.1 document of claude-tray's own HTTP API (openapi.json beside this
module) at GET /openapi.json and /v1/openapi.json."""

from __future__ import annotations

from pathlib import Path

from aiohttp import web

DOCUMENT = Path(__file__).with_name("openapi.json")
CONTENT_TYPE = "application/json"
_BODY = web.AppKey("openapi_document", bytes)


async def document(request: web.Request) -> web.Response:
    return web.Response(body=request.app[_BODY], content_type=CONTENT_TYPE, charset="utf-8")


def add_routes(app: web.Application) -> None:
    """Register the document's routes; the file is read once, here, not at import."""
    # Served as stored: the file is the contract the tests validate, byte for byte.
    app[_BODY] = DOCUMENT.read_bytes()
    for prefix in ("/v1", ""):
        app.router.add_get(f"{prefix}/openapi.json", document)
