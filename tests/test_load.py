"""Load and soak, the short version of `benchmarks/bench_load.py`: a burst of 200 against
a concurrency limit of 4, and a hundred sequential turns that must leave the proxy's
file descriptors, threads and processes where they started.

Counts and outcomes only: how long anything took is the benchmark's business.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from typing import Any

from conftest import ROOT, Proxy
from upstream import Upstream, error, text

if str(ROOT) not in sys.path:  # `pytest` run without `python -m` from the repo root
    sys.path.insert(0, str(ROOT))

from benchmarks import bench_core, bench_load
from benchmarks.tray_probe import TrayProbe

MAX_CONCURRENT = 4
MAX_QUEUE = 16
MAX_PROCESSES = 8
BURST = 200
SOAK = 100
# A request still unanswered after this long counts as hung (a bound, not a measure).
HANG_BOUND = 60.0
# The settled proxy may differ from its baseline by a connection or two, or a thread
# of asyncio's default executor; a leak grows with the requests (one per turn or per
# fault would be 10-100 here).
FD_TOLERANCE = 4
THREAD_TOLERANCE = 2

# No upstream delays: the counts do not depend on them, and the suite stays quick.
REPLIES = bench_load.Replies(text, error, first_delay=0.0, delay=0.0)
MakeProxy = Callable[..., Proxy]


def _limited(make_proxy: MakeProxy) -> Proxy:
    return make_proxy(
        max_concurrent=str(MAX_CONCURRENT),
        max_queue=str(MAX_QUEUE),
        max_processes=str(MAX_PROCESSES),
        pool_size="2",
        log_level="error",
    )


def _wait_idle(probe: TrayProbe) -> dict[str, Any]:
    """/health once no turn runs or waits (or whatever it says after the bound)."""
    deadline = time.monotonic() + 30
    while True:
        health = probe.health()
        turns = health["turns"]
        if (turns["active"] == 0 and turns["queued"] == 0) or time.monotonic() > deadline:
            return health
        time.sleep(0.1)


def _back_to(baseline: bench_load.ProcSample, probe: TrayProbe, sent: int) -> bench_load.ProcSample:
    """Settled samples until the FDs and threads are back within tolerance, or the last
    one after a bound. A CLI process that just exited can still hold its pipes (3 FDs)
    and its child-watcher thread for a moment after /proc stops listing it: that passes,
    a leak does not."""
    deadline = time.monotonic() + 20
    while True:
        end = bench_load.settled_sample(probe, sent)
        back = (
            end.fds <= baseline.fds + FD_TOLERANCE
            and end.threads <= baseline.threads + THREAD_TOLERANCE
        )
        if back or time.monotonic() > deadline:
            return end
        time.sleep(0.5)


def test_a_burst_past_the_limit_is_answered_or_turned_away_with_retry_after(
    make_proxy: MakeProxy, upstream: Upstream
) -> None:
    proxy = _limited(make_proxy)
    probe = TrayProbe(proxy.url, proxy.process.pid)
    try:
        result = bench_load.burst("burst", proxy.url, upstream, REPLIES, BURST, HANG_BOUND)
        health = _wait_idle(probe)
    finally:
        probe.close()

    counts = result.counts()
    bad = [(s.index, s.outcome, s.error) for s in result.shots if s.outcome not in ("ok", "429")]
    # Every request got an answer: a success, or a 429 whose Retry-After is a number of
    # seconds. Nothing hung, nothing failed with a 5xx.
    assert bad == []
    assert counts["ok"] + counts["429"] == BURST
    # All arrive at once: the running turns and the queue are admitted, the rest refused.
    assert counts["ok"] >= MAX_CONCURRENT + MAX_QUEUE
    assert counts["429"] > 0
    # A refused request never reached Anthropic; an admitted one did, once.
    assert result.upstream_requests == counts["ok"]
    # The admission counters came back to zero, and the pool kept within its bound.
    assert health["turns"]["active"] == 0
    assert health["turns"]["queued"] == 0
    assert health["pool"]["processes"] <= MAX_PROCESSES


def test_a_hundred_sequential_turns_leave_no_fds_threads_or_processes_behind(
    make_proxy: MakeProxy, upstream: Upstream
) -> None:
    proxy = _limited(make_proxy)
    probe = TrayProbe(proxy.url, proxy.process.pid)
    soaker = bench_load.Soaker(proxy.url, upstream, REPLIES, HANG_BOUND)
    peak = 0
    try:
        # Warm-up: every API once (the pool learns their specs, the executor its threads).
        for _ in range(bench_load.WARMUP):
            soaker.next()
        baseline = bench_load.settled_sample(probe, soaker.sent)
        while soaker.sent < SOAK:
            soaker.next()
            # What max_processes bounds: the processes the pool keeps (warm, holding a
            # conversation, running a turn, starting). One it is closing to make room
            # finishes its clean exit (up to ~5 s) beside them, so /proc may briefly
            # show one more; those are counted by the settled samples instead.
            peak = max(peak, probe.pool()["processes"])
        end = _back_to(baseline, probe, soaker.sent)
    finally:
        soaker.close()
        probe.close()

    outcomes = [t.outcome for t in soaker.turns]
    failed = [(t.number, t.api, t.plan, t.error) for t in soaker.turns if t.outcome == "failed"]
    assert failed == []
    # The faults were really exercised: hang-ups mid-stream and upstream 529s (-> 503).
    plans = [bench_load.plan_for(n) for n in range(1, SOAK + 1)]
    assert outcomes.count("abandoned as planned") == plans.count("abandon") > 0
    assert outcomes.count("upstream fault -> 503") == plans.count("fault") > 0
    assert {t.api for t in soaker.turns} == {"chat", "messages", "responses"}

    assert end.fds <= baseline.fds + FD_TOLERANCE, (baseline, end)
    assert end.threads <= baseline.threads + THREAD_TOLERANCE, (baseline, end)
    assert peak <= MAX_PROCESSES
    assert end.claude <= MAX_PROCESSES

    # Stopped, the proxy takes every process it started with it.
    assert proxy.stop() == 0
    assert bench_core.leftover_processes(str(proxy.home)) == []
