"""The supervisor with the real proxy in its server thread: start, stop, restart, a crash of the
server thread and the restart after it, a taken port, quitting with a turn running; the
status parsing and notices; the single-instance lock and handover."""

from __future__ import annotations

import asyncio
import json
import os
import socket
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import openai
import pytest
from conftest import claude_pids, proxy_env
from test_quota import limit_headers
from upstream import Upstream, text

from tray_app.integrations.keychain import KeychainUnavailable
from tray_app.server.app import serve
from tray_app.settings import Settings, load_settings
from tray_app.supervisor import Backoff, Notice, ProxyState, Status, Supervisor
from tray_app.supervisor.instance import InstanceLock, hand_over
from tray_app.supervisor.status import (
    Billing,
    SignIn,
    from_health,
    notices_between,
    parse_sessions,
)
from tray_app.tray.controller import Controller
from tray_app.tray.menu import UsePort

API_KEY = "sk-ctray-test-key-0123456789abcdef"


@pytest.fixture
def env(upstream: Upstream, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    """The proxy's environment, also made the test process's own: the SDK starts the CLI
    with os.environ under the variables claude-tray sets, so in-process they must agree
    (as they do in the real app, where env is os.environ)."""
    home = tmp_path / "home"
    home.mkdir()
    values = proxy_env(home, upstream, port="0", log_level="debug")
    for name in list(os.environ):
        if name not in values:
            monkeypatch.delenv(name)
    for name, value in values.items():
        monkeypatch.setenv(name, value)
    return values


class Recorder:
    """Collects what the supervisor publishes."""

    def __init__(self) -> None:
        self.states: list[ProxyState] = []
        self.notices: list[Notice] = []
        self._lock = threading.Lock()

    def status(self, status: Status) -> None:
        with self._lock:
            if not self.states or self.states[-1] is not status.state:
                self.states.append(status.state)

    def notice(self, notice: Notice) -> None:
        with self._lock:
            self.notices.append(notice)


def make_supervisor(
    env: Mapping[str, str],
    *,
    api_key: Callable[[], str] | None = lambda: API_KEY,
    serve_fn: object = serve,
    backoff: Backoff | None = None,
) -> tuple[Supervisor, Recorder]:
    recorder = Recorder()
    supervisor = Supervisor(
        lambda: load_settings(env),
        env,
        api_key=api_key,
        start_at_login=lambda: False,
        serve_fn=serve_fn,  # type: ignore[arg-type]
        backoff=backoff or Backoff(first=0.2, factor=2.0, cap=2.0),
        poll_interval=0.1,
    )
    supervisor.subscribe(recorder.status, recorder.notice)
    return supervisor, recorder


def running(status: Status) -> bool:
    return status.state is ProxyState.RUNNING


@pytest.fixture
def supervisors() -> Iterator[list[Supervisor]]:
    made: list[Supervisor] = []
    yield made
    for supervisor in made:
        assert supervisor.shutdown(20), "a supervisor did not stop"


def chat(url: str, key: str | None = API_KEY, **kw: object) -> str:
    client = openai.OpenAI(base_url=url + "/v1", api_key=key or "x", max_retries=0, **kw)  # type: ignore[arg-type]
    try:
        reply = client.chat.completions.create(
            model="sonnet", messages=[{"role": "user", "content": "hello tray"}]
        )
    finally:
        client.close()
    return reply.choices[0].message.content or ""


def test_start_serve_poll_and_stop(
    env: dict[str, str], upstream: Upstream, supervisors: list[Supervisor]
) -> None:
    before = claude_pids()  # other tests' proxies may hold some
    supervisor, recorder = make_supervisor(env)
    supervisors.append(supervisor)
    supervisor.start()
    status = supervisor.wait_for(running, 30)
    assert status.url and status.url.startswith("http://127.0.0.1:")
    assert status.has_api_key and supervisor.api_key() == API_KEY
    assert status.start_at_login is False and status.warm_pool is True

    # The proxy requires the keychain's key, and answers with it.
    assert httpx.get(status.url + "/v1/models").status_code == 401
    upstream.push(text("hello ", "from the tray"))
    assert chat(status.url) == "hello from the tray"

    # The poller reads /health and /v1/sessions like any client.
    status = supervisor.wait_for(lambda s: bool(s.sessions) and s.signin is not None, 10)
    assert status.signin is not None and status.signin.method == "api_key"
    assert status.billing is Billing.API_KEY
    assert status.sessions[0].title.startswith("hello tray")

    assert supervisor.stop(20)
    assert supervisor.status.state is ProxyState.STOPPED
    assert supervisor.status.url is None and supervisor.api_key() is None
    assert recorder.states[:2] == [ProxyState.STARTING, ProxyState.RUNNING]
    assert recorder.states[-2:] == [ProxyState.STOPPING, ProxyState.STOPPED]
    assert not claude_pids() - before, "stopping left claude processes"


def test_restart_serves_again(
    env: dict[str, str], upstream: Upstream, supervisors: list[Supervisor]
) -> None:
    supervisor, recorder = make_supervisor(env)
    supervisors.append(supervisor)
    supervisor.start()
    supervisor.wait_for(running, 30)
    supervisor.restart(20)
    status = supervisor.wait_for(running, 30)
    assert recorder.states.count(ProxyState.RUNNING) == 2
    upstream.push(text("again"))
    assert status.url is not None and chat(status.url) == "again"


def test_a_crashed_server_thread_is_restarted_with_backoff(
    env: dict[str, str], upstream: Upstream, supervisors: list[Supervisor]
) -> None:
    crash = threading.Event()
    runs: list[float] = []

    async def crashing_serve(
        settings: Settings,
        env: Mapping[str, str],
        stop: asyncio.Event,
        on_ready: Callable[[str], None],
    ) -> None:
        """The real server, until the test pulls the plug: then it stops and raises,
        the way an unexpected error ends the server thread."""
        runs.append(time.monotonic())
        inner = asyncio.Event()
        task = asyncio.create_task(serve(settings, env, inner, on_ready))
        waiters = [asyncio.create_task(stop.wait()), asyncio.create_task(_wait(crash))]
        await asyncio.wait(waiters, return_when=asyncio.FIRST_COMPLETED)
        for waiter in waiters:
            waiter.cancel()
        inner.set()
        await task
        if not stop.is_set():
            crash.clear()
            raise RuntimeError("the server thread blew up")

    supervisor, recorder = make_supervisor(env, serve_fn=crashing_serve)
    supervisors.append(supervisor)
    supervisor.start()
    supervisor.wait_for(running, 30)

    crash.set()
    status = supervisor.wait_for(lambda s: s.state is ProxyState.RESTARTING, 20)
    assert status.crashes == 1
    assert status.error is not None and "blew up" in status.error and "0.2 s" in status.error
    status = supervisor.wait_for(running, 30)
    assert [n.title for n in recorder.notices] == ["claude-tray restarted the proxy"]
    assert "blew up" in recorder.notices[0].message
    upstream.push(text("after the crash"))
    assert status.url is not None and chat(status.url) == "after the crash"

    # A second crash waits longer (the run did not stay up for stable_after).
    crash.set()
    status = supervisor.wait_for(lambda s: s.state is ProxyState.RESTARTING, 20)
    assert status.crashes == 2 and status.error is not None and "0.4 s" in status.error
    supervisor.wait_for(running, 30)
    assert len(runs) == 3
    assert runs[2] - runs[1] >= 0.4


async def _wait(event: threading.Event) -> None:
    while not event.is_set():  # noqa: ASYNC110 - a threading.Event, polled from a loop
        await asyncio.sleep(0.02)


def test_port_in_use_is_said_plainly_and_another_port_is_offered(
    env: dict[str, str], supervisors: list[Supervisor], tmp_path: Path
) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        port = taken.getsockname()[1]
        env["CLAUDE_TRAY_PORT"] = str(port)
        supervisor, recorder = make_supervisor(env)
        supervisors.append(supervisor)
        supervisor.start()
        status = supervisor.wait_for(lambda s: s.state is ProxyState.FAILED, 30)
        assert status.port_in_use and status.port == port
        assert status.error == f"port {port} is used by another program"
        assert status.free_port is not None and status.free_port != port
        time.sleep(0.5)  # refusing to start is not a crash: no restart loop
        assert supervisor.status.state is ProxyState.FAILED
        assert recorder.states == [ProxyState.STARTING, ProxyState.FAILED]

        # "Use port N instead" saves the port and starts there (the variable is gone, so
        # the settings file decides).
        del env["CLAUDE_TRAY_PORT"]
        paths = load_settings(env).paths
        controller = Controller(supervisor, paths, env, launch_command=["claude-tray"])
        free = status.free_port
        controller.handle(UsePort(free))
        status = supervisor.wait_for(running, 30)
        assert status.url == f"http://127.0.0.1:{free}"
        assert json.loads(paths.settings_file.read_text())["port"] == free


def test_quit_ends_a_running_turn_and_every_cli_process_within_seconds(
    env: dict[str, str], upstream: Upstream, supervisors: list[Supervisor]
) -> None:
    before = claude_pids()  # other tests' proxies may hold some
    supervisor, _ = make_supervisor(env)
    supervisors.append(supervisor)
    supervisor.start()
    url = supervisor.wait_for(running, 30).url
    assert url is not None
    # A turn that would stream for 15 s (the upstream stops when its client goes away).
    upstream.push(text(*["word "] * 60, delay=0.25))
    outcome: list[BaseException | str] = []

    def ask() -> None:
        try:
            outcome.append(chat(url, timeout=60))
        except BaseException as exc:
            outcome.append(exc)

    asker = threading.Thread(target=ask)
    asker.start()
    supervisor.wait_for(lambda s: s.active_turns == 1, 20)
    assert claude_pids() - before, "the turn's CLI process should be running"

    began = time.monotonic()
    assert supervisor.shutdown(20)
    took = time.monotonic() - began
    assert took < 8, f"quitting took {took:.1f} s"
    asker.join(20)
    assert outcome and isinstance(outcome[0], BaseException)  # the turn was cut off
    deadline = time.monotonic() + 2
    while claude_pids() - before and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not claude_pids() - before, "quitting left claude processes"
    supervisor.start()  # after Quit nothing starts again
    assert supervisor.status.state is ProxyState.STOPPED


def test_without_a_keychain_the_proxy_runs_keyless_and_says_why(
    env: dict[str, str], upstream: Upstream, supervisors: list[Supervisor]
) -> None:
    def locked() -> str:
        raise KeychainUnavailable("the keyring is locked")

    supervisor, _ = make_supervisor(env, api_key=locked)
    supervisors.append(supervisor)
    supervisor.start()
    status = supervisor.wait_for(running, 30)
    assert not status.has_api_key and status.api_key_problem is not None
    assert "locked" in status.api_key_problem
    upstream.push(text("keyless"))
    assert status.url is not None and chat(status.url, key=None) == "keyless"


def test_broken_settings_fail_with_the_reason(
    env: dict[str, str], supervisors: list[Supervisor]
) -> None:
    paths = load_settings(env).paths
    paths.config_dir.mkdir(parents=True, exist_ok=True)
    paths.settings_file.write_text("{ not json")
    loads = 0

    def load() -> Settings:
        nonlocal loads
        loads += 1
        return load_settings(env)

    supervisor = Supervisor(load, env, poll_interval=0.1)
    supervisors.append(supervisor)
    supervisor.start()
    status = supervisor.wait_for(lambda s: s.state is ProxyState.FAILED, 20)
    assert status.error is not None and "settings.json" in status.error
    assert "not valid JSON" in status.error
    assert loads == 1


def test_extra_usage_and_quota_reach_the_status_and_a_notice(
    env: dict[str, str],
    upstream: Upstream,
    supervisors: list[Supervisor],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Signed in like a subscriber (an OAuth token), the CLI reads the plan's headers.
    del env["CLAUDE_TRAY_UPSTREAM_API_KEY"]
    env["CLAUDE_CODE_OAUTH_TOKEN"] = "sk-ant-oat01-test-token"
    monkeypatch.delenv("CLAUDE_TRAY_UPSTREAM_API_KEY")
    monkeypatch.setenv("CLAUDE_CODE_OAUTH_TOKEN", env["CLAUDE_CODE_OAUTH_TOKEN"])
    supervisor, recorder = make_supervisor(env)
    supervisors.append(supervisor)
    supervisor.start()
    url = supervisor.wait_for(running, 30).url
    assert url is not None
    upstream.push(text("billed as extra", headers=limit_headers("rejected")))
    assert chat(url) == "billed as extra"
    status = supervisor.wait_for(lambda s: s.extra_usage_active, 10)
    assert status.billing is Billing.EXTRA_USAGE and status.on_extra_usage == "pause"
    assert [w.name for w in status.quota] == ["five_hour", "seven_day"]
    assert status.quota[0].utilization == 1.0 and status.quota[1].utilization == 0.4
    assert [n.title for n in recorder.notices] == ["Extra usage paused"]


# ---- pure parts ----


def signin(**kw: object) -> SignIn:
    values: dict[str, object] = {
        "method": "subscription",
        "signed_in": True,
        "plan": "max",
        "expires_at": None,
        "detail": "",
    }
    values.update(kw)
    return SignIn(**values)  # type: ignore[arg-type]


def test_from_health_reads_every_field() -> None:
    health = {
        "status": "ok",
        "cli": {"path": "/x/claude", "version": "2.1.330", "problem": None},
        "signin": {
            "method": "subscription",
            "signed_in": True,
            "plan": "pro",
            "expires_at": "2030-01-02T03:04:05+00:00",
            "source": "~/.claude/.credentials.json",
            "detail": "Signed in.",
        },
        "turns": {"active": 2, "queued": 1, "max_concurrent": 4, "max_queue": 16},
        "quota": {
            "windows": {
                "seven_day": {"utilization": 0.5, "resets_at": 2000},
                "five_hour": {"utilization": 0.25, "resets_at": 1000},
                "seven_day_opus": {"utilization": None, "resets_at": None},
            },
            "extra_usage": {"active": False, "since": None, "until": None},
            "on_extra_usage": "warn",
        },
    }
    fields = from_health(health)
    assert fields["active_turns"] == 2 and fields["queued_turns"] == 1
    assert fields["cli_path"] == "/x/claude" and fields["cli_problem"] is None
    assert fields["signin"] == SignIn(
        "subscription", True, "pro", datetime(2030, 1, 2, 3, 4, 5, tzinfo=UTC), "Signed in."
    )
    assert fields["billing"] is Billing.PLAN and fields["on_extra_usage"] == "warn"
    assert [w.name for w in fields["quota"]] == ["five_hour", "seven_day", "seven_day_opus"]
    # Garbage in, defaults out: never an exception from a strange body.
    garbage = from_health({"turns": "x", "quota": {"windows": [1]}, "signin": 5})
    assert garbage["active_turns"] == 0 and garbage["quota"] == () and garbage["signin"] is None


def test_parse_sessions_keeps_the_ten_most_recent() -> None:
    body = {"data": [{"id": f"s{i}", "title": f"t{i}", "last_used": i} for i in range(15)]}
    body["data"].append({"title": "no id"})
    lines = parse_sessions(body)
    assert [line.id for line in lines] == [f"s{i}" for i in range(14, 4, -1)]


def test_notices_between() -> None:
    now = datetime.now(UTC)
    expired = signin(signed_in=False, expires_at=now - timedelta(hours=1))
    base = Status(state=ProxyState.RUNNING, signin=signin())
    assert notices_between(base, base) == []
    titles = [
        n.title for n in notices_between(base, Status(state=ProxyState.RUNNING, signin=expired))
    ]
    assert titles == ["Claude sign-in expired"]
    # Already expired before: said once only.
    was = Status(state=ProxyState.RUNNING, signin=expired)
    assert notices_between(was, was) == []
    paused = Status(state=ProxyState.RUNNING, extra_usage_active=True, on_extra_usage="pause")
    assert [n.title for n in notices_between(base, paused)] == ["Extra usage paused"]
    warned = Status(state=ProxyState.RUNNING, extra_usage_active=True, on_extra_usage="warn")
    assert notices_between(base, warned) == []
    crashed = Status(state=ProxyState.STARTING, recovering_from="RuntimeError: boom")
    restarted = notices_between(crashed, Status(state=ProxyState.RUNNING))
    assert [n.title for n in restarted] == ["claude-tray restarted the proxy"]


# ---- one instance per user ----


def test_a_second_instance_hands_over_to_the_first(tmp_path: Path) -> None:
    first = InstanceLock.acquire(tmp_path / "run")
    assert first is not None
    try:
        assert InstanceLock.acquire(tmp_path / "run") is None
        requests: list[str] = []

        def answer(request: str) -> str:
            requests.append(request)
            return "Running on http://127.0.0.1:3456 · 0 active"

        first.listen(answer)
        assert hand_over(tmp_path / "run") == "Running on http://127.0.0.1:3456 · 0 active"
        assert requests == ["show"]
        handover = json.loads((tmp_path / "run" / "claude-tray.handover").read_text())
        assert (tmp_path / "run" / "claude-tray.handover").stat().st_mode & 0o077 == 0
        # A caller without the token is ignored.
        with socket.create_connection(("127.0.0.1", handover["port"]), timeout=5) as conn:
            conn.sendall(b"wrong-token show\n")
            assert conn.recv(100) == b""
        assert requests == ["show"]
        # Falling back from tray to headless listens again: the newer listener answers.
        first.listen(lambda _request: "running headless")
        assert hand_over(tmp_path / "run") == "running headless"
    finally:
        first.close()
    second = InstanceLock.acquire(tmp_path / "run")
    assert second is not None
    second.close()
    assert hand_over(tmp_path / "run", timeout=0.3) is None
