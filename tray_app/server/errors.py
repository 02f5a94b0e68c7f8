"""The one place exceptions become HTTP errors: status, headers, and each API's error body."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

from tray_app.backend.runner import AnswerRestarted
from tray_app.backend.store import StoreUnavailable
from tray_app.errors import (
    Busy,
    ClaudeTrayError,
    CliFailed,
    CliUnavailable,
    ExtraUsagePaused,
    ExtraUsageRequired,
    Forbidden,
    InvalidRequest,
    MethodNotAllowed,
    ModelNotFound,
    NotFound,
    NotSignedIn,
    PayloadTooLarge,
    RateLimited,
    ShuttingDown,
    TurnTimeout,
    Unauthorized,
    UnsupportedMediaType,
    UpstreamError,
)
from tray_app.protocol.model import Api

SIGN_IN_HINT = (
    " Check how claude-tray signs in: run `claude` in a terminal and log in, or set "
    "CLAUDE_TRAY_UPSTREAM_API_KEY."
)


@dataclass(frozen=True, slots=True)
class WireError:
    status: int
    kind: str  # Anthropic's error type; OpenAI's is derived from it
    message: str
    code: str | None = None
    param: str | None = None
    headers: dict[str, str] = field(default_factory=dict)


def classify(exc: BaseException) -> WireError:
    if isinstance(exc, InvalidRequest):
        return WireError(400, "invalid_request_error", exc.message, param=exc.param)
    if isinstance(exc, ModelNotFound):
        return WireError(404, "not_found_error", exc.message, code="model_not_found", param="model")
    if isinstance(exc, NotFound):
        return WireError(404, "not_found_error", exc.message, code="not_found")
    if isinstance(exc, MethodNotAllowed):
        return WireError(
            405,
            "invalid_request_error",
            exc.message,
            code="method_not_allowed",
            headers={"Allow": ", ".join(exc.allowed)},
        )
    if isinstance(exc, Unauthorized):
        return WireError(401, "authentication_error", exc.message, code="invalid_api_key")
    if isinstance(exc, Forbidden):
        return WireError(403, "permission_error", exc.message, code="forbidden")
    if isinstance(exc, PayloadTooLarge):
        return WireError(413, "request_too_large", exc.message, code="request_too_large")
    if isinstance(exc, UnsupportedMediaType):
        return WireError(415, "invalid_request_error", exc.message, code="unsupported_media_type")
    if isinstance(exc, Busy):
        return WireError(
            429,
            "rate_limit_error",
            exc.message,
            code="rate_limit_exceeded",
            headers={"Retry-After": str(exc.retry_after)},
        )
    if isinstance(exc, RateLimited):
        return WireError(
            429,
            "rate_limit_error",
            exc.message,
            code="rate_limit_exceeded",
            headers={"Retry-After": str(exc.retry_after)},
        )
    if isinstance(exc, NotSignedIn):
        return WireError(401, "authentication_error", exc.message, code="not_signed_in")
    if isinstance(exc, UpstreamError):
        return _upstream(exc)
    if isinstance(exc, ExtraUsageRequired):
        return WireError(402, "billing_error", exc.message, code="extra_usage_required")
    if isinstance(exc, ExtraUsagePaused):
        retry = max(1, int(exc.until - time.time()))
        return WireError(
            402,
            "billing_error",
            exc.message,
            code="extra_usage_paused",
            headers={"Retry-After": str(retry)},
        )
    if isinstance(exc, ShuttingDown):
        return WireError(
            503, "overloaded_error", exc.message, code="shutting_down", headers={"Retry-After": "5"}
        )
    if isinstance(exc, CliUnavailable):
        return WireError(503, "api_error", exc.message, code="cli_unavailable")
    if isinstance(exc, CliFailed):
        return WireError(502, "api_error", exc.message, code="cli_failed")
    if isinstance(exc, AnswerRestarted):
        # Only ever sent mid-stream (as the stream's error event); the status is moot.
        return WireError(502, "api_error", exc.message, code="answer_restarted")
    if isinstance(exc, StoreUnavailable):
        return WireError(503, "api_error", exc.message, code="store_unavailable")
    if isinstance(exc, TurnTimeout):
        return WireError(504, "timeout_error", exc.message, code=f"{exc.kind}_timeout")
    if isinstance(exc, ClaudeTrayError):
        return WireError(500, "api_error", exc.message)
    return WireError(500, "api_error", "claude-tray hit an internal error; see its log.")


def _upstream(exc: UpstreamError) -> WireError:
    status = exc.status
    message = f"Anthropic answered: {exc.detail}"
    if status in (401, 403):
        return WireError(
            401, "authentication_error", message + SIGN_IN_HINT, code="upstream_authentication"
        )
    if status == 429:
        headers = {"Retry-After": str(exc.retry_after)} if exc.retry_after else {}
        return WireError(
            429, "rate_limit_error", message, code="upstream_rate_limited", headers=headers
        )
    if status == 529:
        return WireError(
            503,
            "overloaded_error",
            message,
            code="upstream_overloaded",
            headers={"Retry-After": "10"},
        )
    if status is not None and 400 <= status < 500:
        kind = {404: "not_found_error", 413: "request_too_large"}.get(
            status, "invalid_request_error"
        )
        return WireError(status, kind, message, code="upstream_rejected")
    return WireError(502, "api_error", message, code="upstream_error")


_OPENAI_TYPES = {
    "invalid_request_error": "invalid_request_error",
    "not_found_error": "invalid_request_error",
    "authentication_error": "authentication_error",
    "permission_error": "permission_error",
    "request_too_large": "invalid_request_error",
    "rate_limit_error": "rate_limit_error",
    "overloaded_error": "server_error",
    "timeout_error": "server_error",
    "api_error": "server_error",
    "billing_error": "insufficient_quota",
}


def error_body(api: Api, error: WireError, request_id: str) -> dict[str, Any]:
    if api == "anthropic":
        return {
            "type": "error",
            "error": {"type": error.kind, "message": error.message},
            "request_id": request_id,
        }
    return {
        "error": {
            "message": error.message,
            "type": _OPENAI_TYPES.get(error.kind, "server_error"),
            "param": error.param,
            "code": error.code,
        }
    }
