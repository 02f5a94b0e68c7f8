"""Run one turn in a `claude` process: admission, spawn, events out, deadlines, cleanup.

Every process has one owner (the turn that spawned it), a deadline, and a cleanup
that always runs: a finished turn closes stdin and lets the CLI flush its transcript;
an abandoned one (client gone, timeout, shutdown) is killed at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import time
from collections import deque
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from claude_agent_sdk import (
    ClaudeAgentOptions,
    ClaudeSDKClient,
    ClaudeSDKError,
    CLIConnectionError,
    CLINotFoundError,
)

from tray_app import __version__
from tray_app.backend.env import child_env
from tray_app.backend.transcript import user_line, write_transcript
from tray_app.errors import (
    Busy,
    ClaudeTrayError,
    CliFailed,
    CliUnavailable,
    NotSignedIn,
    TurnTimeout,
    UpstreamError,
)
from tray_app.protocol.cli_events import CliStream
from tray_app.protocol.model import CliEvent, ErrorReported, Turn, TurnCompleted
from tray_app.settings import Settings, claude_config_dir

log = logging.getLogger(__name__)

# Anthropic's 429 reaches us through the CLI without its Retry-After header.
UPSTREAM_RETRY_AFTER = 30
STDERR_LINES = 50
# Seconds a caller turned away at a full queue should wait; turns take seconds each.
BUSY_RETRY_AFTER = 5
_KILL_WAIT = 0.5


def bundled_cli() -> str:
    import claude_agent_sdk

    return str(Path(claude_agent_sdk.__file__).parent / "_bundled" / "claude")


@dataclass(frozen=True, slots=True)
class CliInfo:
    path: str
    version: str | None
    problem: str | None  # why it cannot run, for /health and 503s


async def probe_cli(path: str) -> CliInfo:
    """`claude --version`, bounded; never raises."""
    if not os.path.isfile(path):
        return CliInfo(path, None, "not found")
    if not os.access(path, os.X_OK):
        return CliInfo(path, None, "not executable")
    try:
        proc = await asyncio.create_subprocess_exec(
            path, "--version", stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
        )
    except OSError as exc:
        return CliInfo(path, None, exc.strerror or str(exc))
    try:
        out, _ = await asyncio.wait_for(proc.communicate(), 20)
    except TimeoutError:
        proc.kill()
        await proc.wait()
        return CliInfo(path, None, "did not answer --version")
    if proc.returncode != 0:
        return CliInfo(path, None, f"--version exited with {proc.returncode}")
    return CliInfo(path, out.decode(errors="replace").split()[0] if out.strip() else "", None)


def failure_of(done: TurnCompleted, reported: ErrorReported | None) -> ClaudeTrayError:
    """The typed error for a result line with is_error set."""
    status = done.api_error_status
    detail = done.result_text or (reported.message if reported else "") or "unknown error"
    if status is None and reported is not None and reported.kind == "authentication_failed":
        return NotSignedIn(detail)
    if status == 429:
        return UpstreamError(429, detail, retry_after=UPSTREAM_RETRY_AFTER)
    return UpstreamError(status, detail)


class TurnRunner:
    """Admits turns up to the limits and runs each in its own CLI process."""

    def __init__(self, settings: Settings, parent_env: Mapping[str, str], cli_path: str) -> None:
        self._settings = settings
        self._parent_env = dict(parent_env)
        self.cli_path = cli_path
        self._work_dir = os.path.realpath(settings.paths.data_dir / "work")
        self._slots = asyncio.Semaphore(settings.max_concurrent)
        self._waiting = 0
        self._running = 0
        self._closing = False
        self._live: set[ClaudeSDKClient] = set()
        self._cleanups: set[asyncio.Task[None]] = set()

    @property
    def stats(self) -> dict[str, int]:
        return {
            "active": self._running,
            "queued": self._waiting,
            "max_concurrent": self._settings.max_concurrent,
            "max_queue": self._settings.max_queue,
        }

    async def events(self, turn: Turn, model: str, request_id: str) -> AsyncIterator[CliEvent]:
        """The turn's events, ending with its TurnCompleted; failures raise typed errors.

        Consume it inside `contextlib.aclosing` so that leaving early (a client that
        went away) runs the cleanup at once.
        """
        if self._closing:
            raise CliUnavailable(self.cli_path, "claude-tray is shutting down")
        if self._waiting >= self._settings.max_queue and self._slots.locked():
            raise Busy(retry_after=BUSY_RETRY_AFTER)
        self._waiting += 1
        try:
            await self._slots.acquire()
        finally:
            self._waiting -= 1
        self._running += 1
        client: ClaudeSDKClient | None = None
        completed = False
        stderr: deque[str] = deque(maxlen=STDERR_LINES)
        try:
            started = time.monotonic()
            client = await self._spawn(turn, model, stderr)
            await client.query(_one(user_line(turn.prompt)))
            stream = CliStream()
            reported: ErrorReported | None = None
            deadline = started + self._settings.request_timeout
            # The SDK's parsed message types drop fields we need (the `error` kind,
            # unknown line types); its raw lines feed the same parser as the recorded
            # transcripts in tests/data.
            raw = client._query.receive_messages()  # type: ignore[union-attr]  # noqa: SLF001
            while True:
                line = await self._next(raw, deadline)
                if line is None:
                    raise CliFailed(_exit_code(client), "\n".join(stderr))
                for event in stream.feed(line):
                    if isinstance(event, ErrorReported):
                        reported = event
                    elif isinstance(event, TurnCompleted):
                        if event.is_error:
                            raise failure_of(event, reported)
                        completed = True
                        log.info(
                            "[%s] turn done in %.0f ms (session %s)",
                            request_id,
                            (time.monotonic() - started) * 1000,
                            event.session_id,
                        )
                        yield event
                        return
                    else:
                        yield event
        finally:
            self._finish(client, completed)

    async def _next(
        self, raw: AsyncIterator[dict[str, Any]], deadline: float
    ) -> dict[str, Any] | None:
        left = deadline - time.monotonic()
        limit = min(self._settings.inactivity_timeout, left)
        try:
            async with asyncio.timeout(max(limit, 0)):
                return await anext(raw)
        except StopAsyncIteration:
            return None
        except TimeoutError:
            if left <= self._settings.inactivity_timeout:
                raise TurnTimeout("total", self._settings.request_timeout) from None
            raise TurnTimeout("inactivity", self._settings.inactivity_timeout) from None
        except ClaudeSDKError as exc:
            log.warning("CLI stream failed: %s", exc)
            return None

    async def _spawn(self, turn: Turn, model: str, stderr: deque[str]) -> ClaudeSDKClient:
        os.makedirs(self._work_dir, mode=0o700, exist_ok=True)
        resume = None
        if turn.history:
            config_dir = claude_config_dir(self._parent_env)
            resume = await asyncio.to_thread(
                write_transcript, config_dir, self._work_dir, turn.history
            )
        options = ClaudeAgentOptions(
            cli_path=self.cli_path,
            # Plain chat: no built-in tool can touch this machine.
            tools=[],
            max_turns=1,
            include_partial_messages=True,
            model=model,
            system_prompt=turn.system,
            # The user's settings, hooks and plugins belong to their own Claude Code
            # sessions; a proxy turn starts from a clean slate (and starts faster).
            setting_sources=[],
            cwd=self._work_dir,
            resume=resume,
            env=child_env(self._settings, self._parent_env, max_tokens=turn.max_tokens),
            stderr=stderr.append,
            # Names us to the CLI, and spares the SDK deriving a label on every spawn.
            client_app=f"claude-tray/{__version__}",
        )
        client = ClaudeSDKClient(options)
        self._live.add(client)
        try:
            await client.connect()
        except (CLINotFoundError, FileNotFoundError, PermissionError) as exc:
            raise CliUnavailable(self.cli_path, str(exc) or type(exc).__name__) from exc
        except CLIConnectionError as exc:
            raise CliUnavailable(self.cli_path, f"{exc}; {' '.join(stderr)[-300:]}") from exc
        return client

    def _finish(self, client: ClaudeSDKClient | None, completed: bool) -> None:
        """Release the turn: a background task closes the process, then frees the slot."""
        task = asyncio.get_running_loop().create_task(self._close(client, completed))
        self._cleanups.add(task)
        task.add_done_callback(self._cleanup_done)

    def _cleanup_done(self, task: asyncio.Task[None]) -> None:
        self._cleanups.discard(task)
        self._running -= 1
        self._slots.release()
        if not task.cancelled() and task.exception() is not None:
            log.error("closing a CLI process failed", exc_info=task.exception())

    async def _close(self, client: ClaudeSDKClient | None, completed: bool) -> None:
        if client is None:
            return
        try:
            if not completed:
                await _kill(client)
            # Bounded: the SDK waits up to 5 s for a clean exit after stdin EOF.
            async with asyncio.timeout(8):
                await client.disconnect()
        except TimeoutError:
            await _kill(client)
        finally:
            self._live.discard(client)

    async def close(self, grace: float) -> None:
        """Stop admitting turns, let running ones finish within `grace`, then kill them."""
        self._closing = True
        end = time.monotonic() + grace
        # Runs once, at shutdown, and is bounded by `grace`: a poll is simpler than an event.
        while self._running - len(self._cleanups) > 0 and time.monotonic() < end:  # noqa: ASYNC110
            await asyncio.sleep(0.05)
        for client in list(self._live):
            await _kill(client)
        while self._cleanups:
            await asyncio.gather(*list(self._cleanups), return_exceptions=True)


async def _one(line: dict[str, Any]) -> AsyncIterator[dict[str, Any]]:
    yield line


def _process(client: ClaudeSDKClient) -> Any:
    # The SDK does not expose its child; we need it to kill within our own deadline
    # (its close() waits up to 5 s, too long for a client that has gone away).
    transport = getattr(client, "_transport", None)
    return getattr(transport, "_process", None)


def _exit_code(client: ClaudeSDKClient) -> int | None:
    proc = _process(client)
    code = getattr(proc, "returncode", None)
    return code if isinstance(code, int) else None


async def _kill(client: ClaudeSDKClient) -> None:
    proc = _process(client)
    if proc is None or proc.returncode is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        proc.terminate()
    try:
        async with asyncio.timeout(_KILL_WAIT):
            await proc.wait()
    except TimeoutError:
        with contextlib.suppress(ProcessLookupError):
            proc.kill()
        await proc.wait()
