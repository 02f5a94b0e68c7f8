"""Own every CLI process between turns: warm ones, and ones holding a conversation.

A process is started ahead of need for the specs new conversations recently used
(a client's title request and its main request use different ones, so several are
remembered), handed to the next new conversation with that spec, and replaced in
the background. After a turn the process stays with its conversation, so the next
turn of it starts at once. Processes holding a conversation are closed when idle
past `pool_idle_timeout` or when the total would pass `max_processes`; their
sessions can still be resumed from the CLI's transcript.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable

from tray_app.backend.process import CliProcess, Spec
from tray_app.errors import ShuttingDown

log = logging.getLogger(__name__)

Starter = Callable[[Spec, str | None], Awaitable[CliProcess]]


class ProcessPool:
    def __init__(
        self,
        start: Starter,
        *,
        size: int,
        idle_timeout: float,
        max_processes: int,
    ) -> None:
        self._start = start
        self.size = size
        self._idle_timeout = idle_timeout
        self._max = max_processes
        self._warm: list[CliProcess] = []
        self._starting: dict[str, int] = {}  # spec key -> warm starts in flight
        self._held: OrderedDict[str, CliProcess] = OrderedDict()  # session -> process, LRU first
        self._recent: OrderedDict[str, Spec] = OrderedDict()  # most recent last
        self._lent: set[CliProcess] = set()  # out with a running turn
        self._lending = 0  # being started for a turn
        self._tasks: set[asyncio.Task[None]] = set()
        self._closing = False
        self.warm_hits = 0
        self.warm_misses = 0

    @property
    def total(self) -> int:
        starting = sum(self._starting.values()) + self._lending
        return len(self._warm) + len(self._held) + len(self._lent) + starting

    @property
    def stats(self) -> dict[str, object]:
        return {
            "enabled": self.size > 0,
            "size": self.size,
            "warm": len(self._warm),
            "starting": sum(self._starting.values()),
            "holding_conversations": len(self._held),
            "running_turns": len(self._lent),
            "processes": self.total,
            "max_processes": self._max,
            "idle_timeout_seconds": self._idle_timeout,
            "warm_hits": self.warm_hits,
            "warm_misses": self.warm_misses,
        }

    def recent_specs(self) -> list[Spec]:
        return list(self._recent.values())

    # ---- lending processes to turns ----

    async def new_process(self, spec: Spec, *, resume: str | None = None) -> CliProcess:
        """A process for a turn: a warm one when a new conversation's spec matches."""
        if resume is None and self.size > 0:
            self._remember(spec)
            for i, process in enumerate(self._warm):
                if process.spec.key == spec.key and process.alive:
                    del self._warm[i]
                    self._lent.add(process)
                    self.warm_hits += 1
                    self._refill()
                    return process
            self.warm_misses += 1
        self._make_room(1)
        self._lending += 1
        try:
            process = await self._start(spec, resume)
        except Exception:
            self._forget(spec)
            raise
        finally:
            self._lending -= 1
        self._lent.add(process)
        if self._closing:
            # Shutdown began while it started: nobody may hold it now.
            self.discard(process)
            raise ShuttingDown
        self._refill()
        return process

    def take_held(self, session_id: str) -> CliProcess | None:
        process = self._held.pop(session_id, None)
        if process is not None:
            self._lent.add(process)
        return process

    def give_back(self, session_id: str | None, process: CliProcess) -> None:
        """A turn is done with `process`: hold it for its conversation, or close it."""
        self._lent.discard(process)
        process.last_used = time.monotonic()
        if session_id is None or self._closing or not process.alive:
            self._spawn_task(process.close())
            self._refill()
            return
        old = self._held.pop(session_id, None)
        if old is not None and old is not process:
            self._spawn_task(old.kill())
        self._held[session_id] = process
        self._trim()

    def discard(self, process: CliProcess) -> None:
        """A turn failed or was abandoned: its process goes at once."""
        self._lent.discard(process)
        self._spawn_task(process.kill())
        self._refill()

    def drop_session(self, session_id: str) -> None:
        process = self._held.pop(session_id, None)
        if process is not None:
            self._spawn_task(process.kill())
            self._refill()

    # ---- keeping warm processes ----

    def prewarm(self, specs: list[Spec]) -> None:
        for spec in specs:
            self._remember(spec)
        self._refill()

    def _remember(self, spec: Spec) -> None:
        self._recent.pop(spec.key, None)
        self._recent[spec.key] = spec
        while len(self._recent) > max(self.size, 1):
            self._recent.popitem(last=False)

    def _forget(self, spec: Spec) -> None:
        """A spec whose process would not start (a schema the CLI refuses, a missing CLI)
        is not kept warm: every refill would start, and lose, another process for it.
        The next request with that spec remembers it again."""
        self._recent.pop(spec.key, None)

    def _wanted(self) -> dict[str, int]:
        """How many warm processes each recent spec should have (newest first)."""
        specs = list(reversed(self._recent))
        wanted: dict[str, int] = {}
        for i in range(self.size if specs else 0):
            key = specs[i % len(specs)]
            wanted[key] = wanted.get(key, 0) + 1
        return wanted

    def _refill(self) -> None:
        if self._closing or self.size == 0:
            return
        have: dict[str, int] = {}
        for process in self._warm:
            have[process.spec.key] = have.get(process.spec.key, 0) + 1
        wanted = self._wanted()
        # Warm processes for a request shape no client sends any more (oldest first) make
        # way: otherwise each would hold ~180 MB until max_processes pressed on it.
        for process in list(self._warm):
            key = process.spec.key
            if have[key] > wanted.get(key, 0):
                have[key] -= 1
                self._warm.remove(process)
                self._spawn_task(process.close())
        for key, count in wanted.items():
            missing = count - have.get(key, 0) - self._starting.get(key, 0)
            for _ in range(missing):
                if self.total >= self._max and not self._evict_held():
                    return
                self._starting[key] = self._starting.get(key, 0) + 1
                self._spawn_task(self._warm_one(self._recent[key]))

    async def _warm_one(self, spec: Spec) -> None:
        try:
            process = await self._start(spec, None)
        except Exception as exc:
            log.warning("could not start a warm CLI process: %s", exc)
            self._forget(spec)
            return
        finally:
            self._starting[spec.key] -= 1
        if self._closing or spec.key not in self._recent:
            await process.close()
            return
        self._warm.append(process)

    # ---- limits and reaping ----

    def _make_room(self, needed: int) -> None:
        """Close warm, then least recently used held processes, to stay under the bound.

        The closes run in the background (a clean exit takes up to seconds) so the
        turn that needs the room does not wait for them.
        """
        while self.total + needed > self._max:
            if self._warm:
                self._spawn_task(self._warm.pop(0).close())
            elif self._held:
                _, process = self._held.popitem(last=False)
                self._spawn_task(process.close())
            else:
                return  # everything is running a turn; max_concurrent bounds that

    def _evict_held(self) -> bool:
        """Close the conversation process idle the longest (it can resume from its
        transcript later). The warm processes come first: they are what makes every
        new conversation fast, and held ones would otherwise crowd them out for good."""
        if not self._held:
            return False
        _, process = self._held.popitem(last=False)
        self._spawn_task(process.close())
        return True

    def _trim(self) -> None:
        while self.total > self._max and self._evict_held():
            pass
        self._refill()

    def reap(self) -> int:
        """Close conversation processes idle past the timeout, and any that died."""
        now = time.monotonic()
        gone = [
            sid
            for sid, p in self._held.items()
            if not p.alive or now - p.last_used > self._idle_timeout
        ]
        for sid in gone:
            self._spawn_task(self._held.pop(sid).close())
        dead = [p for p in self._warm if not p.alive]
        for process in dead:
            self._warm.remove(process)
            self._spawn_task(process.close())
        self._refill()
        return len(gone) + len(dead)

    async def run_reaper(self) -> None:
        interval = max(0.5, min(30.0, self._idle_timeout / 4))
        while not self._closing:
            await asyncio.sleep(interval)
            self.reap()

    def _spawn_task(self, coro: Awaitable[None]) -> None:
        async def run() -> None:
            await coro

        task = asyncio.get_running_loop().create_task(run())
        self._tasks.add(task)
        task.add_done_callback(self._task_done)

    def _task_done(self, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("a CLI process task failed", exc_info=task.exception())

    async def close(self) -> None:
        """Kill every process the pool holds and wait for every pending close."""
        self._closing = True
        processes = self._warm + list(self._held.values()) + list(self._lent)
        self._warm.clear()
        self._held.clear()
        await asyncio.gather(*(p.kill() for p in processes), return_exceptions=True)
        while self._tasks:
            await asyncio.gather(*list(self._tasks), return_exceptions=True)
