"""Run the proxy in a server thread of its own, restart it when it dies, publish its Status.

Each start gets a new thread with a new event loop running `server.app.serve`; nothing of
a crashed loop survives into the next one. Commands (start, stop, restart, shutdown) come
from any thread and are serialised by one lock; a server thread that ends on its own is a
crash, restarted after a growing delay. While the proxy runs, a poller in the same loop
reads `/health` and `/v1/sessions` through HTTP, as any other client of claude-tray would.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import errno
import http.client
import json
import logging
import socket
import sys
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol
from urllib.parse import urlsplit

from tray_app.errors import ClaudeTrayError
from tray_app.server.app import serve
from tray_app.settings import Settings
from tray_app.supervisor.status import (
    Notice,
    ProxyState,
    Status,
    client_host,
    from_health,
    notices_between,
    parse_sessions,
)

log = logging.getLogger(__name__)

# Stopping from the tray (Stop, Restart, Quit) waits at most this long for running turns:
# a person who clicks Quit expects the app gone in seconds, not after `shutdown_grace`.
STOP_GRACE = 3.0
SESSIONS_SHOWN = 10
POLL_TIMEOUT = 2.0  # seconds for one of the poller's requests


class ServeFn(Protocol):
    async def __call__(
        self,
        settings: Settings,
        env: Mapping[str, str],
        stop: asyncio.Event,
        on_ready: Callable[[str], None],
    ) -> None: ...


@dataclass(frozen=True, slots=True)
class Backoff:
    """Delays between restarts after crashes: first, first*factor, ... up to cap; a run that
    stayed up for `stable_after` seconds starts the series again."""

    first: float = 1.0
    factor: float = 2.0
    cap: float = 30.0
    stable_after: float = 60.0

    def delay(self, attempt: int) -> float:
        return float(min(self.cap, self.first * self.factor ** max(attempt, 0)))


@dataclass(eq=False)
class _Run:
    """One server thread's life; `stop()` may arrive before its loop exists."""

    generation: int
    thread: threading.Thread | None = None
    loop: asyncio.AbstractEventLoop | None = None
    stop_event: asyncio.Event | None = None
    stop_requested: bool = False
    ready_at: float | None = None
    settings: Settings | None = None

    def request_stop(self) -> None:
        self.stop_requested = True
        if self.loop is not None and self.stop_event is not None:
            with contextlib.suppress(RuntimeError):  # the loop already closed
                self.loop.call_soon_threadsafe(self.stop_event.set)


class Supervisor:
    """Owns the server thread. Every public method may be called from any thread; the ones
    that wait (stop, restart, shutdown) must not be called from the tray's main thread."""

    def __init__(
        self,
        load_settings: Callable[[], Settings],
        env: Mapping[str, str],
        *,
        api_key: Callable[[], str] | None = None,
        start_at_login: Callable[[], bool | None] | None = None,
        serve_fn: ServeFn = serve,
        backoff: Backoff = Backoff(),
        poll_interval: float = 2.0,
        stop_grace: float = STOP_GRACE,
    ) -> None:
        """`load_settings` is called at every start (so Restart picks up saved changes);
        `api_key` gives the proxy's own key when the settings name none, raising
        ClaudeTrayError when the keychain cannot."""
        self._load_settings = load_settings
        self._env = dict(env)
        self._api_key_source = api_key
        self._start_at_login = start_at_login
        self._serve = serve_fn
        self._backoff = backoff
        self._poll_interval = poll_interval
        self._stop_grace = stop_grace
        self._lock = threading.RLock()
        self._changed = threading.Condition(self._lock)
        self._status = Status()
        self._listeners: list[Callable[[Status], None]] = []
        self._notice_listeners: list[Callable[[Notice], None]] = []
        self._run: _Run | None = None
        self._generation = 0
        self._attempt = 0
        self._want_running = False
        self._quitting = False
        self._timer: threading.Timer | None = None
        self._api_key: str | None = None

    # ---- reading ----

    @property
    def status(self) -> Status:
        with self._lock:
            return self._status

    def api_key(self) -> str | None:
        """The key the running proxy requires (None: it requires none)."""
        with self._lock:
            return self._api_key

    def subscribe(
        self,
        on_status: Callable[[Status], None] | None = None,
        on_notice: Callable[[Notice], None] | None = None,
    ) -> None:
        """Listeners run on whichever thread changed the status, under the supervisor's
        lock: they must only hand the news on (to the main thread), never block."""
        with self._lock:
            if on_status is not None:
                self._listeners.append(on_status)
            if on_notice is not None:
                self._notice_listeners.append(on_notice)

    def wait_for(self, predicate: Callable[[Status], bool], timeout: float) -> Status:
        """Block until the status satisfies `predicate`; TimeoutError with the last one."""
        deadline = time.monotonic() + timeout
        with self._changed:
            while not predicate(self._status):
                left = deadline - time.monotonic()
                if left <= 0:
                    raise TimeoutError(f"status did not change as expected: {self._status}")
                self._changed.wait(left)
            return self._status

    # ---- commands ----

    def start(self) -> None:
        with self._lock:
            if self._quitting or self._run is not None:
                return
            self._cancel_timer()
            self._want_running = True
            self._attempt = 0
            self._launch()

    def stop(self, timeout: float | None = None) -> bool:
        """Stop the proxy and wait for its thread (and every CLI process) to end.
        False when it was still running after `timeout`."""
        with self._lock:
            self._want_running = False
            self._cancel_timer()
            run = self._run
            if run is None:
                if self._status.state is ProxyState.RESTARTING:
                    self._publish(state=ProxyState.STOPPED, error=None, recovering_from=None)
                return True
            self._publish(state=ProxyState.STOPPING)
            run.request_stop()
        return self._join(run, timeout)

    def restart(self, timeout: float | None = None) -> None:
        if self.stop(timeout):
            self.start()

    def shutdown(self, timeout: float | None = None) -> bool:
        """Quit: stop for good (no restart after this)."""
        with self._lock:
            self._quitting = True
        return self.stop(timeout)

    def reload_settings(self) -> None:
        """Show saved settings (toggles, port) now, without restarting."""
        try:
            settings = self._load_settings()
        except ClaudeTrayError as exc:
            with self._lock:
                self._publish(error=exc.message)
            return
        login = self._probe_start_at_login()
        with self._lock:
            self._publish(**self._settings_fields(settings), start_at_login=login)

    # ---- the server thread ----

    def _launch(self) -> None:
        """Start a server thread (with the lock held)."""
        self._generation += 1
        run = _Run(self._generation)
        run.thread = threading.Thread(
            target=self._thread_main, args=(run,), name="claude-tray-server", daemon=True
        )
        self._run = run
        self._publish(
            state=ProxyState.STARTING, url=None, error=None, port_in_use=False, free_port=None
        )
        run.thread.start()

    def _thread_main(self, run: _Run) -> None:
        failure: BaseException | None = None
        try:
            asyncio.run(self._serve_run(run))
        except BaseException as exc:  # whatever ended the thread is reported, then handled
            failure = exc
        self._thread_ended(run, failure)

    async def _serve_run(self, run: _Run) -> None:
        loop = asyncio.get_running_loop()
        stop = asyncio.Event()
        with self._lock:
            run.loop, run.stop_event = loop, stop
            if run.stop_requested:
                return
        # The server stops only after the poller has: a poll that connected while the
        # server was closing would be accepted after its listener closed, and that
        # socket was never closed by anyone.
        server_stop = asyncio.Event()
        pollers: set[asyncio.Task[None]] = set()

        async def stop_in_order() -> None:
            await stop.wait()
            if pollers:
                await asyncio.wait(pollers, timeout=POLL_TIMEOUT + 1)
            server_stop.set()

        stopper = loop.create_task(stop_in_order())
        settings = await asyncio.to_thread(self._prepare)
        settings = dataclasses.replace(
            settings, shutdown_grace=min(settings.shutdown_grace, self._stop_grace)
        )
        run.settings = settings

        def on_ready(url: str) -> None:
            log.info("proxy listening on %s", url)
            run.ready_at = time.monotonic()
            with self._lock:
                if self._run is run and not run.stop_requested:
                    self._publish(
                        state=ProxyState.RUNNING, url=url, error=None, recovering_from=None
                    )
            pollers.add(loop.create_task(self._poll(run, url, stop)))

        try:
            await self._serve(settings, self._env, server_stop, on_ready)
        finally:
            for task in (*pollers, stopper):
                task.cancel()

    def _prepare(self) -> Settings:
        """Load settings and, when they name no API key, take the proxy's own from the
        keychain; a keychain that cannot answer leaves the proxy keyless (loopback only)."""
        settings = self._load_settings()
        key, problem = settings.api_key, None
        if key is None and self._api_key_source is not None:
            try:
                key = self._api_key_source()
            except ClaudeTrayError as exc:
                problem = exc.message
                log.warning("running without the proxy's API key: %s", problem)
        login = self._probe_start_at_login()
        with self._lock:
            self._api_key = key
            self._publish(
                **self._settings_fields(settings),
                has_api_key=key is not None,
                api_key_problem=problem,
                start_at_login=login,
            )
        return dataclasses.replace(settings, api_key=key)

    def _thread_ended(self, run: _Run, failure: BaseException | None) -> None:
        with self._lock:
            if self._run is not run:
                return
            self._run = None
            self._api_key = None
            cleared: dict[str, Any] = {"url": None, "active_turns": 0, "queued_turns": 0}
            if isinstance(failure, ClaudeTrayError) and run.ready_at is None:
                # Refused to start (port taken, bad settings): retrying cannot help.
                self._want_running = False
                self._publish(
                    state=ProxyState.FAILED, error=failure.message, recovering_from=None, **cleared
                )
                self._port_problem(failure, run.settings)
                log.error("the proxy did not start: %s", failure.message)
            elif failure is None and run.stop_requested:
                self._publish(state=ProxyState.STOPPED, error=None, recovering_from=None, **cleared)
                log.info("proxy stopped")
            else:
                self._crashed(run, failure, cleared)
            self._changed.notify_all()

    def _crashed(self, run: _Run, failure: BaseException | None, cleared: dict[str, Any]) -> None:
        what = (
            f"{type(failure).__name__}: {failure}" if failure is not None else "it returned early"
        )
        log.error("the proxy's server thread died (%s)", what, exc_info=failure)
        crashes = self._status.crashes + 1
        if not self._want_running or self._quitting:
            self._publish(
                state=ProxyState.STOPPED,
                error=None,
                crashes=crashes,
                recovering_from=None,
                **cleared,
            )
            return
        stable = run.ready_at is not None and (
            time.monotonic() - run.ready_at >= self._backoff.stable_after
        )
        if stable:
            self._attempt = 0
        delay = self._backoff.delay(self._attempt)
        self._attempt += 1
        self._publish(
            state=ProxyState.RESTARTING,
            error=f"the proxy crashed ({what}); restarting in {delay:g} s",
            crashes=crashes,
            recovering_from=what,
            **cleared,
        )
        generation = self._generation
        self._timer = threading.Timer(delay, self._restart_after_crash, args=(generation,))
        self._timer.daemon = True
        self._timer.start()

    def _restart_after_crash(self, generation: int) -> None:
        with self._lock:
            if (
                self._generation != generation
                or self._run is not None
                or not self._want_running
                or self._quitting
            ):
                return
            self._timer = None
            log.info("restarting the proxy after a crash")
            self._launch()

    def _port_problem(self, failure: ClaudeTrayError, settings: Settings | None) -> None:
        cause = failure.__cause__
        if not (isinstance(cause, OSError) and cause.errno == errno.EADDRINUSE):
            return
        port = settings.port if settings is not None else self._status.port
        host = settings.host if settings is not None else self._status.host
        self._publish(
            port_in_use=True,
            free_port=find_free_port(host, port + 1),
            error=f"port {port} is used by another program",
        )

    def _join(self, run: _Run, timeout: float | None) -> bool:
        thread = run.thread
        if thread is None or thread is threading.current_thread():
            return True
        thread.join(timeout)
        if thread.is_alive():
            log.warning("the proxy did not stop within %s s", timeout)
            return False
        return True

    def _cancel_timer(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    # ---- polling claude-tray's own API ----

    async def _poll(self, run: _Run, url: str, stop: asyncio.Event) -> None:
        """Until `stop`: read the proxy's state. It ends on its own (rather than being
        cancelled) so that no request of its is in flight when the server closes."""
        poll_url = _loopback_url(url)
        while not stop.is_set():
            fields: dict[str, Any] = {}
            with contextlib.suppress(OSError, ValueError, http.client.HTTPException):
                health = await asyncio.to_thread(self._get_json, poll_url, "/health")
                fields.update(from_health(health))
            if stop.is_set():
                return
            with contextlib.suppress(OSError, ValueError, http.client.HTTPException):
                sessions = await asyncio.to_thread(
                    self._get_json, poll_url, f"/v1/sessions?limit={SESSIONS_SHOWN}"
                )
                fields["sessions"] = parse_sessions(sessions, SESSIONS_SHOWN)
            login = await asyncio.to_thread(self._probe_start_at_login)
            with self._lock:
                if self._run is run and self._status.state is ProxyState.RUNNING:
                    self._publish(**fields, start_at_login=login)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), self._poll_interval)

    def _get_json(self, base: str, path: str) -> Any:
        parts = urlsplit(base)
        conn = http.client.HTTPConnection(
            parts.hostname or "127.0.0.1", parts.port, timeout=POLL_TIMEOUT
        )
        headers = {"User-Agent": "claude-tray-tray", "X-Claude-Tray-Client": "claude-tray-tray"}
        key = self.api_key()
        if key:
            headers["x-api-key"] = key
        try:
            conn.request("GET", path, headers=headers)
            response = conn.getresponse()
            body = response.read()
        finally:
            conn.close()
        if response.status in (404, 503) and path.startswith("/v1/sessions"):
            return {"data": []}  # sessions are not kept (or the store is unusable)
        if response.status != 200:
            raise ValueError(f"{path} answered {response.status}")
        return json.loads(body)

    def _probe_start_at_login(self) -> bool | None:
        if self._start_at_login is None:
            return None
        try:
            return self._start_at_login()
        except OSError:
            log.warning("could not tell whether claude-tray starts at login", exc_info=True)
            return None

    # ---- publishing ----

    def _settings_fields(self, settings: Settings) -> dict[str, Any]:
        agent_mode = getattr(settings, "agent_mode", None)
        return {
            "host": settings.host,
            "port": settings.port,
            "warm_pool": settings.pool_size > 0,
            "agent_mode": agent_mode if isinstance(agent_mode, bool) else None,
            "on_extra_usage": settings.on_extra_usage,
            "log_dir": str(settings.paths.log_dir),
            "settings_file": str(settings.paths.settings_file),
        }

    def _publish(self, **changes: Any) -> None:
        """Replace the snapshot (lock held) and tell the listeners."""
        before = self._status
        after = dataclasses.replace(before, **changes)
        if after == before:
            return
        self._status = after
        self._changed.notify_all()
        for listener in list(self._listeners):
            try:
                listener(after)
            except Exception:
                log.exception("a status listener failed")
        for notice in notices_between(before, after):
            log.info("notice: %s: %s", notice.title, notice.message)
            for notify in list(self._notice_listeners):
                try:
                    notify(notice)
                except Exception:
                    log.exception("a notice listener failed")


def _loopback_url(url: str) -> str:
    parts = urlsplit(url)
    return f"http://{client_host(parts.hostname or '')}:{parts.port}"


def find_free_port(host: str, start: int, tries: int = 50) -> int | None:
    """The first port from `start` that can be bound on `host` now."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    for port in range(start, min(start + tries, 65536)):
        with socket.socket(family, socket.SOCK_STREAM) as probe:
            if sys.platform != "win32":  # as aiohttp does: a port in TIME_WAIT is free
                probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                probe.bind((host.strip("[]"), port))
            except OSError:
                continue
            return port
    return None
