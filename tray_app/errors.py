"""The typed exceptions every layer raises; `server/errors.py` maps them to the wire.

Exceptions carry fields, never messages meant to be parsed. `message` is for people.
"""

from __future__ import annotations

import time


class ClaudeTrayError(Exception):
    """Base of every error claude-tray raises on purpose."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class SettingsError(ClaudeTrayError):
    """The settings file or an environment variable holds something unusable."""

    def __init__(self, message: str, *, source: str, line: int | None = None) -> None:
        where = f"{source}:{line}" if line else source
        super().__init__(f"{where}: {message}")
        self.source = source
        self.line = line


# ---- request errors (the caller sent something we cannot serve) ----


class InvalidRequest(ClaudeTrayError):
    """A malformed or unsupported request; `param` names the offending field."""

    def __init__(self, message: str, *, param: str | None = None) -> None:
        super().__init__(message)
        self.param = param


class ModelNotFound(ClaudeTrayError):
    def __init__(self, model: str) -> None:
        super().__init__(
            f"The model '{model}' is not served here. Use opus, sonnet, haiku, a claude-* id, "
            "or add an alias in the settings (model_aliases)."
        )
        self.model = model


class NotFound(ClaudeTrayError):
    """A route or resource that does not exist."""


class MethodNotAllowed(ClaudeTrayError):
    """A route that exists, asked with a method it does not answer."""

    def __init__(self, method: str, path: str, allowed: frozenset[str] | set[str]) -> None:
        self.allowed = tuple(sorted(allowed))
        super().__init__(f"{method} is not allowed on {path}; use {', '.join(self.allowed)}.")


class Unauthorized(ClaudeTrayError):
    """The proxy's own API key was missing or wrong."""


class Forbidden(ClaudeTrayError):
    """Refused by policy (Host or Origin not allowed, a feature switched off)."""


class PayloadTooLarge(ClaudeTrayError):
    def __init__(self, limit: int) -> None:
        super().__init__(f"The request body is larger than the limit of {limit} bytes.")
        self.limit = limit


class UnsupportedMediaType(ClaudeTrayError):
    """A request body labelled as something other than JSON (a web page's form post)."""

    def __init__(self, content_type: str) -> None:
        super().__init__(
            f"The request body is labelled {content_type!r}; send JSON with the header "
            "'Content-Type: application/json'."
        )
        self.content_type = content_type


class Busy(ClaudeTrayError):
    """Every turn slot and queue place is taken."""

    def __init__(self, retry_after: int) -> None:
        super().__init__(
            "claude-tray is answering as many requests as it is allowed to; try again shortly."
        )
        self.retry_after = retry_after


# ---- runtime errors (the CLI or the upstream failed) ----


class CliUnavailable(ClaudeTrayError):
    """The `claude` binary is missing, not executable, or would not start."""

    def __init__(self, path: str, detail: str) -> None:
        super().__init__(
            f"The Claude Code CLI at '{path}' could not be started ({detail}). Reinstall "
            "claude-tray, or point CLAUDE_TRAY_CLI (setting cli_path) at a working `claude`."
        )
        self.path = path
        self.detail = detail


class RateLimited(ClaudeTrayError):
    """This client sent more requests than rate_limit_per_minute allows."""

    def __init__(self, limit: int, retry_after: int) -> None:
        super().__init__(
            f"More than {limit} requests in a minute from this client (setting "
            f"rate_limit_per_minute); try again in {retry_after} s."
        )
        self.retry_after = retry_after


class ExtraUsageRequired(ClaudeTrayError):
    """Anthropic refused the call: requests like this one are paid from extra usage."""

    def __init__(self, detail: str) -> None:
        super().__init__(
            f"Anthropic answered: {detail} claude-tray does not retry it. Turn on extra usage "
            "for your account (claude.ai settings) or sign claude-tray in with an API key "
            "(CLAUDE_TRAY_UPSTREAM_API_KEY); setting on_extra_usage decides whether "
            "claude-tray then lets such requests through."
        )
        self.detail = detail


class ExtraUsagePaused(ClaudeTrayError):
    """The plan's window is used up and further calls would be billed as extra usage."""

    def __init__(self, until: float) -> None:
        when = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime(until))
        super().__init__(
            "Your Claude plan's usage limit is reached, and further requests would be "
            f"billed as extra usage. claude-tray has paused until the limit resets ({when}) "
            "because the setting on_extra_usage is 'pause'. Set on_extra_usage to 'warn' "
            "or 'allow' (CLAUDE_TRAY_ON_EXTRA_USAGE) to go on and pay for extra usage."
        )
        self.until = until


class ShuttingDown(ClaudeTrayError):
    """claude-tray is stopping and takes no new turns."""

    def __init__(self) -> None:
        super().__init__("claude-tray is shutting down; send the request again once it is back.")


class CliFailed(ClaudeTrayError):
    """The CLI exited or broke its protocol before finishing the turn."""

    def __init__(self, exit_code: int | None, stderr_tail: str) -> None:
        tail = f": {stderr_tail.strip()[-300:]}" if stderr_tail.strip() else ""
        super().__init__(f"The Claude Code CLI stopped unexpectedly (exit code {exit_code}){tail}")
        self.exit_code = exit_code
        self.stderr_tail = stderr_tail


class TurnTimeout(ClaudeTrayError):
    """No output for `seconds` (kind 'inactivity') or the whole turn took too long ('total')."""

    def __init__(self, kind: str, seconds: float) -> None:
        what = "produced no output for" if kind == "inactivity" else "did not finish within"
        super().__init__(f"The model {what} {seconds:g} seconds; the turn was stopped.")
        self.kind = kind
        self.seconds = seconds


class NotSignedIn(ClaudeTrayError):
    def __init__(self, detail: str) -> None:
        super().__init__(
            "Claude Code is not signed in. Run `claude` in a terminal and log in (or set an "
            f"API key for claude-tray). The CLI said: {detail}"
        )
        self.detail = detail


class UpstreamError(ClaudeTrayError):
    """Anthropic (or the configured upstream) answered with an error status."""

    def __init__(self, status: int | None, detail: str, retry_after: int | None = None) -> None:
        super().__init__(detail)
        self.status = status
        self.detail = detail
        self.retry_after = retry_after
