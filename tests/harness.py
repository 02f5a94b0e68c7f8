"""Helpers for fault tests: the CLI processes a proxy runs, its session store as a file,
requests in either API's shape, raw-socket clients that hang up, and file systems
that refuse writes."""

from __future__ import annotations

import contextlib
import errno
import json
import os
import socket
import sqlite3
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
from conftest import Proxy, claude_pids
from upstream import Upstream

STORE = Path("data") / "sessions.sqlite3"


# ---- the proxy's CLI processes ----


def cli_children(proxy: Proxy) -> set[int]:
    """The `claude` processes `proxy` started that are still running."""
    out = set()
    for pid in claude_pids():
        with contextlib.suppress(OSError):
            stat = Path(f"/proc/{pid}/stat").read_text()
            if int(stat.rsplit(")", 1)[1].split()[1]) == proxy.process.pid:
                out.add(pid)
    return out


def busy_cli(proxy: Proxy, upstream: Upstream) -> int:
    """The CLI process that sent the upstream's latest request: the one answering now.

    The CLI names its session in a header, and the process carries it on its command
    line (--session-id=<id> for a new conversation, --resume=<id> for a continued one); warm
    processes and ones holding other conversations do not match.
    """
    session = upstream.messages_requests()[-1].headers["X-Claude-Code-Session-Id"]
    for pid in cli_children(proxy):
        with contextlib.suppress(OSError):
            args = Path(f"/proc/{pid}/cmdline").read_bytes().decode().split("\0")
            if any(a == session or a.endswith("=" + session) for a in args):
                return pid
    raise AssertionError(f"no CLI process of the proxy serves session {session}")


def wait_for_upstream_requests(upstream: Upstream, count: int, timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while len(upstream.messages_requests()) < count:
        assert time.monotonic() < deadline, "the CLI never called the upstream"
        time.sleep(0.02)


def health(proxy: Proxy) -> dict[str, Any]:
    return dict(httpx.get(proxy.url + "/health", timeout=10).json())


def settled(proxy: Proxy, timeout: float = 15) -> dict[str, Any]:
    """Wait until no turn runs and every CLI process of the proxy is one its pool
    accounts for (warm or holding a conversation): nothing leaked. The pool."""
    deadline = time.monotonic() + timeout
    while True:
        state = health(proxy)
        pool = state["pool"]
        children = cli_children(proxy)
        quiet = state["turns"]["active"] == 0 and pool["running_turns"] == 0
        if quiet and pool["starting"] == 0 and len(children) == pool["processes"]:
            return dict(pool)
        assert time.monotonic() < deadline, f"not settled: {state}, CLI pids {children}"
        time.sleep(0.1)


# ---- the session store, read as a file ----


def store_sessions(home: Path) -> set[str]:
    """The session ids in the store under `home`, after SQLite's own integrity check."""
    conn = sqlite3.connect(f"file:{home / STORE}?mode=ro", uri=True)
    try:
        assert conn.execute("PRAGMA integrity_check").fetchall() == [("ok",)]
        return {row[0] for row in conn.execute("SELECT id FROM sessions")}
    finally:
        conn.close()


# ---- requests in each API's shape ----

PATHS = {"openai": "/v1/chat/completions", "anthropic": "/v1/messages"}


def body(api: str, prompt: str, *, stream: bool = False, **extra: Any) -> dict[str, Any]:
    out: dict[str, Any] = {
        "model": "sonnet",
        "stream": stream,
        "messages": [{"role": "user", "content": prompt}],
        **extra,
    }
    if api == "anthropic":
        out.setdefault("max_tokens", 100)
    return out


def ask(proxy: Proxy, api: str, prompt: str, **extra: Any) -> httpx.Response:
    """A non-streaming request."""
    return httpx.post(proxy.url + PATHS[api], json=body(api, prompt, **extra), timeout=60)


def answer_text(api: str, response: httpx.Response) -> str:
    data = response.json()
    if api == "anthropic":
        return "".join(b.get("text", "") for b in data["content"] if b["type"] == "text")
    return str(data["choices"][0]["message"]["content"] or "")


def sse_text(api: str, events: list[dict[str, Any]]) -> str:
    """The answer's text from parsed stream events."""
    if api == "anthropic":
        return "".join(
            e["delta"].get("text", "") for e in events if e.get("type") == "content_block_delta"
        )
    return "".join(
        (c["choices"][0]["delta"].get("content") or "") for c in events if c.get("choices")
    )


def stream_events(response: httpx.Response) -> list[dict[str, Any]]:
    """Every JSON `data:` payload of an SSE response, in order ([DONE] left out)."""
    out = []
    for line in response.iter_lines():
        if line.startswith("data:") and line[5:].strip() != "[DONE]":
            out.append(json.loads(line[5:]))
    return out


def stream_error(api: str, events: list[dict[str, Any]]) -> dict[str, Any]:
    """The error a stream ended with, as {type, message[, code]}."""
    last = events[-1]
    if api == "anthropic":
        assert last["type"] == "error", last
    else:
        assert "error" in last, last
    return dict(last["error"])


# ---- clients that hang up ----


def hang_up(
    proxy: Proxy, path: str, payload: dict[str, Any], *, after: bytes | None, then: float
) -> bytes:
    """Send a request on a raw socket and close it `then` seconds after `after` arrived
    (or after sending, with None): a client going away at a chosen point. What arrived."""
    host, port = proxy.url.removeprefix("http://").split(":")
    data = json.dumps(payload).encode()
    head = (
        f"POST {path} HTTP/1.1\r\nHost: {host}:{port}\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(data)}\r\n\r\n"
    ).encode()
    received = b""
    with socket.create_connection((host, int(port)), timeout=30) as sock:
        sock.sendall(head + data)
        while after is not None and after not in received:
            chunk = sock.recv(65536)
            assert chunk, f"the proxy closed before {after!r}: {received[-500:]!r}"
            received += chunk
        end = time.monotonic() + then
        while (left := end - time.monotonic()) > 0:
            sock.settimeout(left)
            try:
                chunk = sock.recv(65536)
            except TimeoutError:
                break
            if not chunk:
                break
            received += chunk
    return received


# ---- file systems that refuse writes (needs root, as in CI) ----


def _mount(*args: str) -> None:
    subprocess.run(["mount", *args], check=True, capture_output=True, text=True)


@contextlib.contextmanager
def read_only(folder: Path) -> Iterator[None]:
    """`folder` on a read-only bind mount of itself: refused even to root, as a read-only
    volume would (file permissions do not stop root)."""
    assert os.geteuid() == 0, "read-only mounts need root (CI runs tests as root)"
    _mount("--bind", str(folder), str(folder))
    try:
        _mount("-o", "remount,bind,ro", str(folder))
        yield
    finally:
        _mount_off(folder)


@contextlib.contextmanager
def small_disk(folder: Path, size: str) -> Iterator[None]:
    """A tmpfs of `size` mounted at `folder`: a disk that really fills up."""
    assert os.geteuid() == 0, "mounting a tmpfs needs root (CI runs tests as root)"
    folder.mkdir(parents=True, exist_ok=True)
    _mount("-t", "tmpfs", "-o", f"size={size},mode=0700", "tmpfs", str(folder))
    try:
        yield
    finally:
        _mount_off(folder)


def _mount_off(folder: Path) -> None:
    # A file the proxy still held open would make umount fail: retry briefly, then lazily.
    for _ in range(20):
        if subprocess.run(["umount", str(folder)], capture_output=True).returncode == 0:
            return
        time.sleep(0.1)
    subprocess.run(["umount", "-l", str(folder)], check=True)


def fill(folder: Path) -> Path:
    """Write a file in `folder` until its file system is full; the file, to delete later."""
    filler = folder / "filler"
    written = 0
    with open(filler, "wb", buffering=0) as out:
        # Big blocks, then small ones for what is left: down to the last free byte.
        for size in (65536, 512, 1):
            block = b"\0" * size
            try:
                while True:
                    written += out.write(block)
            except OSError as exc:
                full = exc.errno == errno.ENOSPC
            assert full, "writing failed for another reason than a full disk"
    assert written > 0
    return filler
