"""Logging: secrets never reach a log line, the log file is private, setup can be redone."""

from __future__ import annotations

import io
import logging
import logging.handlers
import os
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest

from tray_app.logs import (
    HANDLER_NAME_PREFIX,
    LOG_FILE_NAME,
    LOG_FORMAT,
    RedactingFilter,
    configure_logging,
)
from tray_app.settings import Settings, resolve_paths

PROXY_KEY = "tray-proxy-key-4711"
UPSTREAM_KEY = "upstream-key-0815"


def _is_ours(handler: logging.Handler) -> bool:
    return (handler.get_name() or "").startswith(HANDLER_NAME_PREFIX)


@pytest.fixture
def capture() -> Iterator[tuple[logging.Logger, io.StringIO]]:
    """A private logger whose one handler carries the filter, as configure_logging sets it up."""
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.addFilter(RedactingFilter([PROXY_KEY, None, ""]))
    handler.setFormatter(logging.Formatter(LOG_FORMAT))
    logger = logging.getLogger("test_logs.capture")
    logger.propagate = False
    logger.setLevel(logging.DEBUG)
    logger.addHandler(handler)
    yield logger, stream
    logger.removeHandler(handler)


@pytest.fixture
def root_logging() -> Iterator[None]:
    """Undo configure_logging's changes to the root logger after the test."""
    root = logging.getLogger()
    level = root.level
    yield
    for handler in list(root.handlers):
        if _is_ours(handler):
            root.removeHandler(handler)
            handler.close()
    root.setLevel(level)


@pytest.mark.parametrize(
    ("msg", "args", "secret"),
    [
        ("configured key %s", (PROXY_KEY,), PROXY_KEY),
        (f"configured key inline {PROXY_KEY}", (), PROXY_KEY),
        ("anthropic key %s", ("sk-ant-api03-AbC_dEf-0123456789xyz",), "sk-ant-api03"),
        ("oauth token sk-ant-oat01-ZZZZyyyyXXXX", (), "sk-ant-oat01"),
        ("openai key %s", ("sk-proj-abcdefghijklmnopqrstuvwxyz012345",), "sk-proj-abc"),
        ("plain openai key sk-abcdefghijklmnopqrstuvwx", (), "sk-abcdefghij"),
        ("headers %r", ({"Authorization": "Bearer eyJhbGciOi.J9.xyz"},), "eyJhbGciOi"),
        ('{"accessToken": "tok-access-1", "expiresAt": 1}', (), "tok-access-1"),
        ("creds %r", ({"refreshToken": "tok-refresh-2"},), "tok-refresh-2"),
        ("env CLAUDE_CODE_OAUTH_TOKEN=%s", ("oat-value-3",), "oat-value-3"),
        ("header x-api-key: %s", ("client-key-4",), "client-key-4"),
    ],
)
def test_secrets_are_redacted(
    capture: tuple[logging.Logger, io.StringIO], msg: str, args: tuple[object, ...], secret: str
) -> None:
    logger, stream = capture
    logger.info(msg, *args)
    line = stream.getvalue()
    assert secret not in line
    assert "[redacted]" in line


def test_ordinary_text_is_left_alone(capture: tuple[logging.Logger, io.StringIO]) -> None:
    logger, stream = capture
    logger.info("task-runner uses sk-learn and %d workers on disk-backed storage", 3)
    assert "task-runner uses sk-learn and 3 workers on disk-backed storage" in stream.getvalue()


def test_exceptions_and_bad_format_args_are_redacted(
    capture: tuple[logging.Logger, io.StringIO],
) -> None:
    logger, stream = capture
    try:
        raise RuntimeError(f"upstream refused {PROXY_KEY}")
    except RuntimeError:
        logger.exception("request failed")
    logger.info("too few %s %s", PROXY_KEY)

    text = stream.getvalue()
    assert "RuntimeError: upstream refused [redacted]" in text
    assert PROXY_KEY not in text


def test_request_id_in_every_line(capture: tuple[logging.Logger, io.StringIO]) -> None:
    logger, stream = capture
    logger.info("no request")
    logger.info("in a request", extra={"request_id": "req_42"})
    first, second = stream.getvalue().splitlines()
    assert " [-] no request" in first
    assert " [req_42] in a request" in second


@pytest.mark.usefixtures("root_logging")
def test_configure_logging_writes_a_private_redacted_file(tmp_path: Path) -> None:
    paths = resolve_paths({"CLAUDE_TRAY_HOME": str(tmp_path)})
    settings = Settings(
        paths=paths, api_key=PROXY_KEY, upstream_api_key=UPSTREAM_KEY, log_level="debug"
    )

    configure_logging(settings, to_stderr=False)
    configure_logging(settings, to_stderr=False)  # idempotent: still one handler
    logging.getLogger("tray_app.test").debug("keys %s and %s", PROXY_KEY, UPSTREAM_KEY)

    ours = [h for h in logging.getLogger().handlers if _is_ours(h)]
    assert len(ours) == 1
    for handler in ours:
        handler.flush()
    log_file = paths.log_dir / LOG_FILE_NAME
    text = log_file.read_text("utf-8")
    assert "DEBUG tray_app.test [-] keys [redacted] and [redacted]" in text
    assert PROXY_KEY not in text
    assert UPSTREAM_KEY not in text
    if os.name == "posix":
        assert stat.S_IMODE(log_file.stat().st_mode) == 0o600
        assert stat.S_IMODE(paths.log_dir.stat().st_mode) == 0o700


@pytest.mark.usefixtures("root_logging")
def test_rotated_log_files_stay_private(tmp_path: Path) -> None:
    paths = resolve_paths({"CLAUDE_TRAY_HOME": str(tmp_path)})
    configure_logging(Settings(paths=paths), to_stderr=False)
    logging.getLogger("tray_app.test").warning("before rollover")
    (handler,) = [h for h in logging.getLogger().handlers if h.get_name() == "claude-tray.file"]
    assert isinstance(handler, logging.handlers.RotatingFileHandler)

    handler.doRollover()

    files = sorted(p.name for p in paths.log_dir.iterdir())
    assert files == [LOG_FILE_NAME, LOG_FILE_NAME + ".1"]
    if os.name == "posix":
        for name in files:
            assert stat.S_IMODE((paths.log_dir / name).stat().st_mode) == 0o600


@pytest.mark.usefixtures("root_logging")
def test_configure_logging_adds_stderr_when_asked(tmp_path: Path) -> None:
    settings = Settings(paths=resolve_paths({"CLAUDE_TRAY_HOME": str(tmp_path)}))
    configure_logging(settings)
    names = sorted(h.get_name() for h in logging.getLogger().handlers if _is_ours(h))
    assert names == [
        "claude-tray.file",
        "claude-tray.stderr",
    ]
    assert logging.getLogger().level == logging.INFO
