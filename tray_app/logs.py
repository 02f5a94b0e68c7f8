"""Set up logging to a private rotating file (and stderr) with secrets redacted from every line."""

from __future__ import annotations

import logging
import os
import re
import sys
from collections.abc import Iterable
from io import TextIOWrapper
from logging.handlers import RotatingFileHandler

from tray_app.settings import Settings

LOG_FILE_NAME = "claude-tray.log"
LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s [%(request_id)s] %(message)s"
REDACTED = "[redacted]"
# Handlers carry this name prefix so configure_logging can find and replace its own ones
# without keeping module state and without touching handlers others (pytest) installed.
HANDLER_NAME_PREFIX = "claude-tray."
_MAX_BYTES = 5 * 1024 * 1024
_BACKUP_COUNT = 3

_KEY_PATTERNS = (
    # Anthropic keys and OAuth tokens (sk-ant-api03-..., sk-ant-oat01-...); any length.
    re.compile(r"(?<![A-Za-z0-9])sk-ant-[A-Za-z0-9_\-]{4,}"),
    # OpenAI-style keys (sk-..., sk-proj-...): long enough not to hit words like "sk-learn".
    re.compile(r"(?<![A-Za-z0-9])sk-[A-Za-z0-9_\-]{20,}"),
)
_BEARER = re.compile(r"(?i)\b(bearer\s+)[A-Za-z0-9._~+/=\-]+")
# Secret-holding keys in JSON, Python reprs, headers and env dumps: `"accessToken": "..."`,
# `'refresh_token': '...'`, `x-api-key: ...`, `CLAUDE_CODE_OAUTH_TOKEN=...`.
_SECRET_FIELD = re.compile(
    r"""(?i)(["']?(?:access_?token|refresh_?token|oauth_?token|api_?key|x-api-key)["']?"""
    r"""\s*[:=]\s*["']?)([^"'\s,;}]+)"""
)


# Control characters in a message become visible escapes, so text a client sent (a
# model name, a header) cannot start a forged log line or hide one; tracebacks keep
# their own line breaks.
_ONE_LINE = {c: repr(chr(c))[1:-1] for c in (*range(0x20), 0x7F) if c != 0x09}


class RedactingFilter(logging.Filter):
    """Replace known secrets and anything that looks like a key or token with [redacted],
    and keep each message on one line.

    Also gives every record a `request_id` ("-" when the code logging it had none), so one
    format string serves request and non-request lines.
    """

    def __init__(self, secrets: Iterable[str | None] = ()) -> None:
        super().__init__()
        # Longest first, so a secret containing another is replaced whole.
        self._secrets = tuple(sorted({s for s in secrets if s}, key=len, reverse=True))

    def redact(self, text: str) -> str:
        for secret in self._secrets:
            text = text.replace(secret, REDACTED)
        for pattern in _KEY_PATTERNS:
            text = pattern.sub(REDACTED, text)
        text = _BEARER.sub(lambda m: m.group(1) + REDACTED, text)
        return _SECRET_FIELD.sub(lambda m: m.group(1) + REDACTED, text)

    def filter(self, record: logging.LogRecord) -> bool:
        if not hasattr(record, "request_id"):
            record.request_id = "-"
        try:
            message = record.getMessage()
        except Exception:  # a bad format string must not lose the line, nor leak its args
            message = f"{record.msg} (arguments that did not format: {record.args!r})"
        # Format now and drop the args: a secret inside an argument is only visible after
        # formatting, and logging's own error report would print the raw args.
        record.msg = self.redact(message).translate(_ONE_LINE)
        record.args = None
        if record.exc_info and not record.exc_text:
            # Formatter.format uses a pre-filled exc_text instead of formatting the traceback.
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = self.redact(record.exc_text)
        if record.stack_info:
            record.stack_info = self.redact(record.stack_info)
        return True


class _PrivateRotatingFileHandler(RotatingFileHandler):
    """A rotating file handler whose files, including the ones made at rollover, are 0600."""

    def _open(self) -> TextIOWrapper:
        # Overridden rather than changing the umask, which is process-wide.
        fd = os.open(self.baseFilename, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        # os.open's mode only applies to a new file; tighten one left by an older version.
        os.chmod(self.baseFilename, 0o600)
        return open(fd, "a", encoding=self.encoding, errors=self.errors)


def configure_logging(settings: Settings, *, to_stderr: bool = True) -> None:
    """Send logging to the log file (and stderr), replacing what an earlier call installed."""
    root = logging.getLogger()
    for handler in list(root.handlers):
        if (handler.get_name() or "").startswith(HANDLER_NAME_PREFIX):
            root.removeHandler(handler)
            handler.close()

    log_dir = settings.paths.log_dir
    log_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    handlers: list[logging.Handler] = [
        _PrivateRotatingFileHandler(
            log_dir / LOG_FILE_NAME,
            maxBytes=_MAX_BYTES,
            backupCount=_BACKUP_COUNT,
            encoding="utf-8",
        )
    ]
    handlers[0].set_name(HANDLER_NAME_PREFIX + "file")
    # sys.stderr is None in a windowed (pythonw / PyInstaller --windowed) build.
    if to_stderr and sys.stderr is not None:
        stderr_handler = logging.StreamHandler(sys.stderr)
        stderr_handler.set_name(HANDLER_NAME_PREFIX + "stderr")
        handlers.append(stderr_handler)

    redactor = RedactingFilter((settings.api_key, settings.upstream_api_key))
    formatter = logging.Formatter(LOG_FORMAT)
    for handler in handlers:
        handler.addFilter(redactor)
        handler.setFormatter(formatter)
        root.addHandler(handler)
    root.setLevel(logging.getLevelNamesMapping()[settings.log_level.upper()])
