"""One claude-tray app per user: an OS file lock, and a loopback handover to the running one.

The lock (`fcntl.flock`, `msvcrt.locking` on Windows) lives in the runtime dir and is
released by the OS when the process dies, so a crash never leaves a stale lock. The first
instance also listens on a loopback port written, with a random token, to a 0600 file
beside the lock; a second launch connects, says what it wanted, prints the answer and
exits 0.
"""

from __future__ import annotations

import contextlib
import hmac
import json
import logging
import os
import secrets
import socket
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import IO

log = logging.getLogger(__name__)

LOCK_NAME = "claude-tray.lock"
HANDOVER_NAME = "claude-tray.handover"
_MAX_LINE = 4096


class InstanceLock:
    """The per-user lock, held for the life of the process; keep a reference to it
    (a garbage-collected file object releases the lock silently)."""

    def __init__(self, runtime_dir: Path, stream: IO[str]) -> None:
        self.runtime_dir = runtime_dir
        self._stream = stream
        self._server: socket.socket | None = None
        self._thread: threading.Thread | None = None
        self._closed = threading.Event()

    @classmethod
    def acquire(cls, runtime_dir: Path) -> InstanceLock | None:
        """The lock, or None when another claude-tray of this user holds it."""
        runtime_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        path = runtime_dir / LOCK_NAME
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
        stream = os.fdopen(fd, "r+", encoding="utf-8")
        try:
            _lock(stream)
        except OSError:
            stream.close()
            return None
        stream.seek(0)
        stream.truncate()
        stream.write(f"{os.getpid()}\n")
        stream.flush()
        return cls(runtime_dir, stream)

    def listen(self, on_handover: Callable[[str], str]) -> None:
        """Answer later launches: `on_handover(request)` runs on the listener thread and
        returns one line for the launch to print. A later call replaces the listener."""
        self._stop_listening()
        server = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        server.bind(("127.0.0.1", 0))
        server.listen(4)
        server.settimeout(0.5)  # so close() is noticed without another thread's help
        token = secrets.token_urlsafe(24)
        _write_private(
            self.runtime_dir / HANDOVER_NAME,
            json.dumps({"port": server.getsockname()[1], "token": token, "pid": os.getpid()}),
        )
        self._server = server
        self._thread = threading.Thread(
            target=self._serve,
            args=(server, token, on_handover),
            name="claude-tray-handover",
            daemon=True,
        )
        self._thread.start()

    def _serve(self, server: socket.socket, token: str, on_handover: Callable[[str], str]) -> None:
        while not self._closed.is_set():
            try:
                conn, _ = server.accept()
            except TimeoutError:
                continue
            except OSError:
                return  # closed
            with conn:
                try:
                    conn.settimeout(2)
                    line = _read_line(conn)
                    given, _, request = line.partition(" ")
                    if not hmac.compare_digest(given.encode(), token.encode()):
                        continue
                    answer = on_handover(request.strip() or "show")
                    conn.sendall((" ".join(answer.split()) + "\n").encode())
                except Exception:  # one bad caller must not end the listener
                    log.warning("a handover from another launch failed", exc_info=True)

    def _stop_listening(self) -> None:
        if self._server is not None:
            self._server.close()  # the listener's accept() fails and it returns
            self._server = None
        if self._thread is not None:
            self._thread.join(timeout=2)
            self._thread = None

    def close(self) -> None:
        self._closed.set()
        self._stop_listening()
        with contextlib.suppress(OSError):
            (self.runtime_dir / HANDOVER_NAME).unlink()
        self._stream.close()  # releases the lock


def hand_over(runtime_dir: Path, request: str = "show", timeout: float = 5.0) -> str | None:
    """Tell the running instance about this launch; its answer, or None if it did not answer."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            info = json.loads((runtime_dir / HANDOVER_NAME).read_text(encoding="utf-8"))
            with socket.create_connection(
                ("127.0.0.1", int(info["port"])), timeout=timeout
            ) as conn:
                conn.sendall(f"{info['token']} {request}\n".encode())
                return _read_line(conn) or None
        except (OSError, ValueError, KeyError, TypeError):
            # The first instance may hold the lock but not be listening yet.
            if time.monotonic() >= deadline:
                return None
            time.sleep(0.1)


def _read_line(conn: socket.socket) -> str:
    data = b""
    while b"\n" not in data and len(data) < _MAX_LINE:
        chunk = conn.recv(1024)
        if not chunk:
            break
        data += chunk
    return data.split(b"\n", 1)[0].decode("utf-8", errors="replace")


def _lock(stream: IO[str]) -> None:
    if sys.platform == "win32":
        import msvcrt

        stream.seek(0)
        msvcrt.locking(stream.fileno(), msvcrt.LK_NBLCK, 1)
    else:
        import fcntl

        fcntl.flock(stream.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)


def _write_private(path: Path, text: str) -> None:
    fd, temp = tempfile.mkstemp(prefix=".handover.", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as stream:
            stream.write(text)
        os.chmod(temp, 0o600)
        os.replace(temp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(temp)
        raise
