"""Shared fixtures: the scripted upstream, real `claude-tray serve` processes, and a
guard that fails any test which leaves a `claude` process behind."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import anthropic
import httpx
import openai
import pytest

sys.path.insert(0, str(Path(__file__).parent))

from upstream import Upstream

ROOT = Path(__file__).resolve().parent.parent


def bundled_cli() -> str:
    import claude_agent_sdk

    return str(Path(claude_agent_sdk.__file__).parent / "_bundled" / "claude")


# Proxies that are running now: the CLI processes they hold (warm, or keeping a
# conversation) are theirs, not leftovers. Their own shutdown must end them.
LIVE_PROXIES: set[int] = set()


# Every proxy this test run starts carries this marker in its environment, and so do
# the CLI processes it starts: other runs on the same machine are none of our business.
RUN_MARKER = f"CLAUDE_TRAY_TEST_RUN={os.getpid()}".encode()


def claude_pids(*, orphans_only: bool = False) -> set[int]:
    """Every running process this test run started from the bundled CLI binary (or
    only those no live proxy owns)."""
    cli = bundled_cli()
    pids = set()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmd = (entry / "cmdline").read_bytes().split(b"\0")[0].decode(errors="replace")
            if cmd != cli or RUN_MARKER not in (entry / "environ").read_bytes().split(b"\0"):
                continue
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        # Zombies are already dead; their parent just has not reaped them yet.
        owned = orphans_only and _under_live_proxy(int(entry.name))
        if cmd == cli and ") Z " not in stat and not owned:
            pids.add(int(entry.name))
    return pids


def _under_live_proxy(pid: int) -> bool:
    while pid > 1:
        if pid in LIVE_PROXIES:
            return True
        try:
            stat = Path(f"/proc/{pid}/stat").read_text()
        except OSError:
            return False
        pid = int(stat.rsplit(")", 1)[1].split()[1])
    return False


@pytest.fixture(autouse=True)
def no_leftover_claude() -> Iterator[None]:
    before = claude_pids()
    yield
    deadline = time.monotonic() + 5
    left = claude_pids(orphans_only=True) - before
    while left and time.monotonic() < deadline:
        time.sleep(0.1)
        left = claude_pids(orphans_only=True) - before
    if left:
        for pid in left:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        pytest.fail(f"test left claude processes behind: {sorted(left)}")


@pytest.fixture(scope="session")
def upstream_server() -> Iterator[Upstream]:
    up = Upstream().start()
    yield up
    up.stop()


@pytest.fixture
def upstream(upstream_server: Upstream) -> Iterator[Upstream]:
    upstream_server.clear()
    yield upstream_server
    upstream_server.clear()


@dataclass
class Proxy:
    url: str
    process: subprocess.Popen[str]
    home: Path
    env: dict[str, str]

    @property
    def openai_url(self) -> str:
        return self.url + "/v1"

    def stop(self, timeout: float = 20) -> int:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        try:
            self.process.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.communicate()
            raise
        finally:
            LIVE_PROXIES.discard(self.process.pid)
        return self.process.returncode

    def log(self) -> str:
        path = self.home / "logs" / "claude-tray.log"
        return path.read_text() if path.exists() else ""

    def stderr(self) -> str:
        path = self.home / "stderr.log"
        return path.read_text(errors="replace") if path.exists() else ""


def proxy_env(home: Path, upstream: Upstream | None, **settings: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("CLAUDE_TRAY_", "ANTHROPIC_"))}
    env.update(
        {
            "CLAUDE_TRAY_HOME": str(home),
            "HOME": str(home),
            "CLAUDE_CONFIG_DIR": str(home / "claude-config"),
            "CLAUDE_CODE_MAX_RETRIES": "0",
            "PYTHONUNBUFFERED": "1",
            RUN_MARKER.split(b"=")[0].decode(): RUN_MARKER.split(b"=")[1].decode(),
        }
    )
    if upstream is not None:
        env["CLAUDE_TRAY_UPSTREAM_URL"] = upstream.url
        env["CLAUDE_TRAY_UPSTREAM_API_KEY"] = "test"
    env.update({f"CLAUDE_TRAY_{k.upper()}": v for k, v in settings.items()})
    return env


def start_proxy(home: Path, env: dict[str, str], *args: str) -> Proxy:
    home.mkdir(parents=True, exist_ok=True)
    # To a file, not a pipe: nothing reads a pipe while the proxy runs, and a proxy
    # blocked writing its 64 KiB-th byte of log would hang every later request.
    stderr = home / "stderr.log"
    with stderr.open("ab") as sink:
        process = subprocess.Popen(
            [sys.executable, "-m", "tray_app", "serve", "--port", "0", *args],
            env=env,
            cwd=ROOT,
            stdout=subprocess.PIPE,
            stderr=sink,
            text=True,
        )
    assert process.stdout is not None
    line = process.stdout.readline()
    if "listening on" not in line:
        process.kill()
        process.communicate(timeout=10)
        err = stderr.read_text(errors="replace")
        raise AssertionError(f"proxy did not start: {line!r} {err[-2000:]}")
    LIVE_PROXIES.add(process.pid)
    return Proxy(line.split()[-1], process, home, env)


def wait_healthy(
    url: str, process: subprocess.Popen[str] | None = None, timeout: float = 30
) -> dict[str, Any]:
    """The proxy's /health body once it answers 200 (failing at once if `process`, the
    app that should answer, has exited)."""
    deadline = time.monotonic() + timeout
    while True:
        with contextlib.suppress(httpx.HTTPError):
            health = httpx.get(url + "/health", timeout=2)
            if health.status_code == 200:
                return health.json()  # type: ignore[no-any-return]
        if process is not None:
            assert process.poll() is None, f"the app exited with {process.returncode}"
        assert time.monotonic() < deadline, f"{url} never answered /health"
        time.sleep(0.1)


def run_serve(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    """`claude-tray serve` that is expected to refuse to start: its exit and output."""
    return subprocess.run(
        [sys.executable, "-m", "tray_app", "serve", *args],
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )


@pytest.fixture(scope="session")
def proxy(upstream_server: Upstream, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Proxy]:
    """One proxy shared by the tests that need nothing special."""
    home = tmp_path_factory.mktemp("proxy")
    before = claude_pids()
    p = start_proxy(home, proxy_env(home, upstream_server))
    yield p
    p.stop()
    # The processes it held (warm, or keeping conversations) must end with it.
    deadline = time.monotonic() + 5
    while (left := claude_pids() - before) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not left, f"the shared proxy left claude processes behind: {sorted(left)}"


@pytest.fixture
def make_proxy(upstream_server: Upstream, tmp_path: Path) -> Iterator[object]:
    """Start a proxy with its own settings: make_proxy(inactivity_timeout="1")."""
    started: list[Proxy] = []

    def make(*args: str, with_upstream: bool = True, **settings: str) -> Proxy:
        home = tmp_path / f"proxy{len(started)}"
        p = start_proxy(
            home, proxy_env(home, upstream_server if with_upstream else None, **settings), *args
        )
        started.append(p)
        return p

    yield make
    for p in started:
        if p.process.returncode is None:
            p.stop()


# ---- SDK clients, closed after each test ----

_clients: list[openai.OpenAI | anthropic.Anthropic] = []


@pytest.fixture(autouse=True)
def _close_clients() -> Iterator[None]:
    # An unclosed SDK client's sockets are reported (as errors) in whichever test
    # happens to run when they are collected.
    yield
    while _clients:
        _clients.pop().close()


def oai(proxy: Proxy, **kw: Any) -> openai.OpenAI:
    kw.setdefault("api_key", "x")
    client = openai.OpenAI(base_url=proxy.openai_url, max_retries=0, **kw)
    _clients.append(client)
    return client


def ant(proxy: Proxy, **kw: Any) -> anthropic.Anthropic:
    kw.setdefault("api_key", "x")
    client = anthropic.Anthropic(base_url=proxy.url, max_retries=0, **kw)
    _clients.append(client)
    return client
