"""Load and soak: a burst far past the concurrency limit, then a long run of sequential turns.

Run from the repo root:

    python -m benchmarks.bench_load [--concurrent 200] [--sequential 1000] [--every 100]
                                    [--max-concurrent 4] [--max-queue 16]
                                    [--pool-size N ...] [--timeout 120] [--first-delay 0.055]
                                    [--delay 0.01] [--chunks 5] [--json out.json]

`--sequential 100` (or `--concurrent 0`) gives a shorter run.

Everything goes to the scripted local upstream `tests/upstream.py` (each reply waits
`--first-delay` before its first event and `--delay` between its `--chunks` deltas) and
to real `claude-tray serve` processes with `max_concurrent` = `--max-concurrent` and
`max_queue` = `--max-queue`. Each `--pool-size N` starts one proxy (default: 2, the
default warm pool, and 0, no pool), side by side.

1. Burst: `--concurrent` requests at once to one proxy (half streaming OpenAI chat
   completions, half non-streaming Anthropic messages), each bounded by `--timeout`.
   Every one must either succeed or get a 429 carrying Retry-After; a request still
   open at the bound counts as hung. Reported: the counts, p50/p95 latency of each
   outcome, and what the upstream received. The proxies take their bursts in turn.
2. Soak: `--sequential` requests, sent to the proxies alternately, request by request, so
   machine noise hits them alike. The requests are conversations of
   `CONVERSATION_TURNS` turns in three APIs (OpenAI chat resending its history, streamed;
   Anthropic messages resending its history, not streamed; the Responses API continuing
   by `previous_response_id`, streamed), with two faults mixed in: every `ABANDON_EVERY`th
   request the client hangs up after the first streamed token, and every
   `FAULT_EVERY`th the upstream answers 529 (the proxy must say 503). At the start
   (after `WARMUP` requests), every `--every` requests and at the end each proxy's
   sessions are deleted, its pool left to refill, and then the proxy process is sampled
   from /proc/<pid>: RSS, open file descriptors, threads, and its `claude` children.
   After the proxies stop, any process still carrying one of their homes in its
   environment is a leftover, counted and killed.

The Markdown report goes to stdout, progress to stderr. The exit status is 1 when a
request hung, failed unexpectedly, got a 5xx it was not meant to, or a process was left
over. `tests/test_load.py` runs a short version of both parts.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import os
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Protocol

import httpx

from benchmarks import bench_core as core
from benchmarks import command_line
from benchmarks.tray_probe import TrayProbe, claude_children, tree_memory

MODEL = "sonnet"
_TICK = os.sysconf("SC_CLK_TCK")
WARMUP = 10
CONVERSATION_TURNS = 5
ABANDON_EVERY = 25
FAULT_EVERY = 50
# The status the proxy gives for Anthropic's 529 (README "Errors": 5xx / 529 -> 502 / 503).
FAULT_STATUS = 503
# Seconds a settled sample waits for the proxy's FDs and threads to stop changing.
QUIET_TIMEOUT = 10.0


class Script(Protocol):
    """The scripted upstream as the caller imported it.

    The caller passes its own `tests/upstream.py` module's objects in: the upstream tells
    replies apart by class, and pytest imports that file as `upstream`, not
    `tests.upstream`, so replies built here from another import would not be recognised.
    """

    @property
    def url(self) -> str: ...

    def push(self, *replies: Any) -> None: ...

    def clear(self) -> None: ...

    def messages_requests(self) -> list[Any]: ...


@dataclass(frozen=True)
class Replies:
    """Builds the upstream's scripted answers: `text(*chunks, **kw)` and `error(status)`."""

    text: Callable[..., Any]
    error: Callable[..., Any]
    first_delay: float = 0.055
    delay: float = 0.01
    chunks: int = 5

    def answer(self, tag: str) -> tuple[Any, str]:
        """A reply of `chunks` deltas that names `tag`, and the text it streams."""
        parts = [f"{tag}" if i == 0 else f" part{i}" for i in range(self.chunks)]
        reply = self.text(*parts, first_delay=self.first_delay, delay=self.delay)
        return reply, "".join(parts)

    def slow(self, tag: str) -> Any:
        """A reply that is still streaming well after its first token (for hang-ups)."""
        parts = [tag, *(f" slow{i}" for i in range(20))]
        return self.text(*parts, first_delay=self.first_delay, delay=0.1)


# --- sampling the proxy process --------------------------------------------------------


@dataclass(frozen=True)
class ProcSample:
    requests: int  # soak requests sent before this sample
    rss_kb: int  # the proxy process alone (VmRSS)
    fds: int  # its open file descriptors
    threads: int
    claude: int  # `claude` processes below it
    tree_rss_kb: int  # the proxy and every descendant


def sample_process(pid: int, requests: int) -> ProcSample:
    """The proxy as /proc shows it now (Linux only)."""
    status = Path(f"/proc/{pid}/status").read_text()
    fields = dict(line.split(":", 1) for line in status.splitlines() if ":" in line)
    memory = tree_memory(pid)
    return ProcSample(
        requests=requests,
        rss_kb=int(fields["VmRSS"].split()[0]),
        fds=len(list(Path(f"/proc/{pid}/fd").iterdir())),
        threads=int(fields["Threads"]),
        claude=len(claude_children(pid)),
        tree_rss_kb=memory.rss_kb,
    )


def process_cpu_seconds(pid: int) -> float:
    """User + system CPU time of one process so far (its children not included)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / _TICK


def settled_sample(probe: TrayProbe, requests: int) -> ProcSample:
    """Delete every session (ending the processes holding them), wait for a full warm
    pool and no turn running, then sample: so that samples taken at different times
    count the same processes and can be compared."""
    probe.delete_sessions()
    probe.settle()
    # A CLI process that just exited can hold its pipes (3 FDs) and its asyncio
    # child-watcher thread for a moment after /proc stops listing it: wait until two
    # samples in a row agree (bounded), so that a moment's stragglers read as none.
    sample = sample_process(probe.pid, requests)
    deadline = time.monotonic() + QUIET_TIMEOUT
    while time.monotonic() < deadline:
        time.sleep(0.5)
        again = sample_process(probe.pid, requests)
        if (again.fds, again.threads, again.claude) == (sample.fds, sample.threads, sample.claude):
            return again
        sample = again
    return sample


# --- part 1: the burst ----------------------------------------------------------------


@dataclass
class Shot:
    """One request of the burst."""

    index: int
    kind: str  # "chat-stream" or "messages"
    status: int | None = None  # None: no answer (hung past the bound, or a transport error)
    retry_after: str | None = None
    seconds: float = 0.0
    error: str | None = None

    @property
    def outcome(self) -> str:
        if self.error is not None:
            return "hung" if self.error.startswith("timeout") else "error"
        if self.status == 200:
            return "ok"
        if self.status == 429:
            return "429" if _positive_int(self.retry_after) else "429 without Retry-After"
        return f"status {self.status}"


@dataclass
class BurstResult:
    label: str
    shots: list[Shot]
    wall_seconds: float
    upstream_requests: int
    # CPU time the proxy process itself used (its CLI children not counted), or None.
    proxy_cpu_seconds: float | None = None
    health_after: dict[str, Any] = field(default_factory=dict)

    def counts(self) -> Counter[str]:
        return Counter(s.outcome for s in self.shots)


def _positive_int(value: str | None) -> bool:
    return value is not None and value.isdigit() and int(value) > 0


async def _shoot(
    client: httpx.AsyncClient, shot: Shot, expected: str, start: asyncio.Event
) -> None:
    body: dict[str, Any]
    if shot.kind == "chat-stream":
        path = "/v1/chat/completions"
        body = {
            "model": MODEL,
            "stream": True,
            "messages": [{"role": "user", "content": f"burst {shot.index}"}],
        }
    else:
        path = "/v1/messages"
        body = {
            "model": MODEL,
            "max_tokens": 256,
            "messages": [{"role": "user", "content": f"burst {shot.index}"}],
        }
    await start.wait()  # every request is built and waiting: they go out together
    t0 = time.perf_counter()
    try:
        async with client.stream("POST", path, json=body) as response:
            shot.status = response.status_code
            shot.retry_after = response.headers.get("retry-after")
            raw = (await response.aread()).decode("utf-8", "replace")
        if shot.status == 200:
            got = (
                _chat_stream_text(raw)
                if shot.kind == "chat-stream"
                else _messages_text(json.loads(raw))
            )
            if got != expected:
                shot.error = f"unexpected answer {got[:80]!r}"
    except httpx.TimeoutException as exc:
        shot.error = f"timeout: {type(exc).__name__}"
    except (httpx.HTTPError, ValueError) as exc:
        shot.error = f"{type(exc).__name__}: {exc}"[:300]
    shot.seconds = time.perf_counter() - t0


async def _burst(url: str, n: int, expected: str, timeout: float) -> list[Shot]:
    shots = [Shot(i, "chat-stream" if i % 2 == 0 else "messages") for i in range(n)]
    # One connection per request: httpx's default pool (100) would queue the rest
    # on our side, and the proxy would never see the burst.
    limits = httpx.Limits(max_connections=n + 8, max_keepalive_connections=n + 8)
    start = asyncio.Event()
    async with httpx.AsyncClient(
        base_url=url,
        headers={"x-api-key": "x", "authorization": "Bearer x"},
        timeout=httpx.Timeout(timeout, connect=timeout),
        limits=limits,
    ) as client:
        tasks = [asyncio.create_task(_shoot(client, s, expected, start)) for s in shots]
        await asyncio.sleep(0)  # let every task reach start.wait()
        start.set()
        await asyncio.gather(*tasks)
    return shots


def burst(
    label: str,
    url: str,
    upstream: Script,
    replies: Replies,
    n: int,
    timeout: float,
    pid: int | None = None,
) -> BurstResult:
    """`n` requests at once; every answer checked (see the module docstring). With the
    proxy's `pid`, also the CPU time it spent: the latencies include the load generator's
    own work (one Python process with the upstream), which on 2 cores is the larger part."""
    upstream.clear()
    reply, expected = replies.answer("burst")
    # Every admitted request takes one; the refused ones never reach the upstream.
    upstream.push(*([reply] * n))
    cpu = None if pid is None else process_cpu_seconds(pid)
    t0 = time.perf_counter()
    shots = asyncio.run(_burst(url, n, expected, timeout))
    wall = time.perf_counter() - t0
    result = BurstResult(label, shots, wall, len(upstream.messages_requests()))
    if pid is not None and cpu is not None:
        result.proxy_cpu_seconds = process_cpu_seconds(pid) - cpu
    upstream.clear()
    return result


# --- part 2: the soak -------------------------------------------------------------------


@dataclass
class Conversation:
    api: str  # "chat", "messages" or "responses"
    history: list[dict[str, Any]] = field(default_factory=list)
    previous_response_id: str | None = None
    turns: int = 0


@dataclass
class Turn:
    """What became of one soak request."""

    number: int
    api: str
    plan: str  # "answer", "abandon" or "fault"
    status: int | None = None
    error: str | None = None

    @property
    def outcome(self) -> str:
        if self.error is not None:
            return "failed"
        if self.plan == "abandon":
            return "abandoned as planned"
        if self.plan == "fault":
            return "upstream fault -> 503" if self.status == FAULT_STATUS else "failed"
        return "ok"


def api_for(conversation_number: int) -> str:
    return ("chat", "messages", "responses")[conversation_number % 3]


def plan_for(number: int) -> str:
    """What request `number` (counted from 1) of the soak does."""
    if number % FAULT_EVERY == 0:
        return "fault"
    if number % ABANDON_EVERY == 0:
        return "abandon"
    return "answer"


class Soaker:
    """Sends one proxy its sequence of conversation turns, one request at a time."""

    def __init__(self, url: str, upstream: Script, replies: Replies, timeout: float) -> None:
        self.upstream = upstream
        self.replies = replies
        self.http = httpx.Client(
            base_url=url, headers={"authorization": "Bearer x"}, timeout=timeout
        )
        self.sent = 0
        self.turns: list[Turn] = []
        self._conversation: Conversation | None = None
        self._conversations = 0

    def close(self) -> None:
        self.http.close()

    def next(self) -> Turn:
        """Send the next request; never raises."""
        if self._conversation is None or self._conversation.turns >= CONVERSATION_TURNS:
            self._conversation = Conversation(api_for(self._conversations))
            self._conversations += 1
        conversation = self._conversation
        self.sent += 1
        turn = Turn(self.sent, conversation.api, plan_for(self.sent))
        prompt = f"soak request {self.sent}, turn {conversation.turns + 1}"
        self.upstream.clear()
        reply, expected = self.replies.answer(f"answer-{self.sent}")
        if turn.plan == "fault":
            reply = self.replies.error(529, "Overloaded")
        elif turn.plan == "abandon":
            reply = self.replies.slow(f"answer-{self.sent}")
        self.upstream.push(reply)
        try:
            answer, response_id = self._send(conversation, prompt, turn)
        except (httpx.HTTPError, ValueError, KeyError, TypeError) as exc:
            turn.error = f"{type(exc).__name__}: {exc}"[:300]
            answer, response_id = None, None
        if turn.plan == "answer" and turn.error is None:
            if turn.status != 200:
                turn.error = f"status {turn.status}"
            elif answer != expected:
                turn.error = f"unexpected answer {str(answer)[:80]!r}"
            else:
                # The client keeps what it got; faults and hang-ups leave no answer, and
                # the next request is sent as if this one had never happened.
                self._remember(conversation, prompt, answer, response_id)
        elif turn.plan == "fault" and turn.status != FAULT_STATUS and turn.error is None:
            turn.error = f"status {turn.status} for an upstream 529, not {FAULT_STATUS}"
        conversation.turns += 1
        self.turns.append(turn)
        return turn

    def _send(
        self, conversation: Conversation, prompt: str, turn: Turn
    ) -> tuple[str | None, str | None]:
        api = conversation.api
        # Hang-ups need a stream to hang up on.
        stream = api != "messages" or turn.plan == "abandon"
        body: dict[str, Any]
        if api == "chat":
            path = "/v1/chat/completions"
            messages = [*conversation.history, {"role": "user", "content": prompt}]
            body = {"model": MODEL, "messages": messages, "stream": stream}
        elif api == "messages":
            path = "/v1/messages"
            messages = [*conversation.history, {"role": "user", "content": prompt}]
            body = {"model": MODEL, "max_tokens": 1024, "messages": messages, "stream": stream}
        else:
            path = "/v1/responses"
            body = {"model": MODEL, "input": prompt, "stream": stream}
            if conversation.previous_response_id:
                body["previous_response_id"] = conversation.previous_response_id
        with self.http.stream("POST", path, json=body) as response:
            turn.status = response.status_code
            if turn.plan == "abandon" and response.status_code == 200:
                for line in response.iter_lines():
                    if '"answer-' in line:  # the first token reached us: hang up
                        return None, None
                turn.error = "the stream ended before its first token"
                return None, None
            raw = response.read().decode("utf-8", "replace")
        if turn.status != 200:
            return None, None
        if api == "chat":
            return _chat_stream_text(raw), None
        if api == "messages":
            return _messages_text(json.loads(raw)), None
        return _responses_stream(raw)

    @staticmethod
    def _remember(
        conversation: Conversation, prompt: str, answer: str | None, response_id: str | None
    ) -> None:
        if conversation.api == "responses":
            conversation.previous_response_id = response_id
            return
        conversation.history += [
            {"role": "user", "content": prompt},
            {"role": "assistant", "content": answer or ""},
        ]


def _sse_data(raw: str) -> Iterator[Any]:
    for line in raw.splitlines():
        if line.startswith("data:"):
            data = line[5:].strip()
            if data and data != "[DONE]":
                yield json.loads(data)


def _chat_stream_text(raw: str) -> str:
    if "data: [DONE]" not in raw:
        raise ValueError("the chat stream did not end with [DONE]")
    parts: list[str] = []
    for chunk in _sse_data(raw):
        if "error" in chunk:
            raise ValueError(f"the stream carried an error: {chunk['error']}")
        for choice in chunk.get("choices", []):
            parts.append(choice.get("delta", {}).get("content") or "")
    return "".join(parts)


def _messages_text(body: dict[str, Any]) -> str:
    return "".join(b.get("text", "") for b in body["content"] if b.get("type") == "text")


def _responses_stream(raw: str) -> tuple[str, str]:
    parts: list[str] = []
    response_id = ""
    for event in _sse_data(raw):
        if event.get("type") == "response.output_text.delta":
            parts.append(event["delta"])
        elif event.get("type") == "response.completed":
            response_id = event["response"]["id"]
    if not response_id:
        raise ValueError("the Responses stream did not complete")
    return "".join(parts), response_id


# --- the run ----------------------------------------------------------------------------


@dataclass
class Subject:
    """One proxy under load: its settings, process, probe and results."""

    pool_size: int
    proxy: core.Proxy
    home: Path
    probe: TrayProbe | None = None
    soaker: Soaker | None = None
    burst: BurstResult | None = None
    samples: list[ProcSample] = field(default_factory=list)
    peak_claude: int = 0
    leftovers: list[int] = field(default_factory=list)

    @property
    def label(self) -> str:
        return "pool off" if self.pool_size == 0 else f"pool {self.pool_size}"


def load_env(
    upstream_url: str, home: Path, *, max_concurrent: int, max_queue: int, pool_size: int
) -> dict[str, str]:
    env = core.proxy_env(upstream_url, home)
    env.update(
        CLAUDE_TRAY_MAX_CONCURRENT=str(max_concurrent),
        CLAUDE_TRAY_MAX_QUEUE=str(max_queue),
        CLAUDE_TRAY_POOL_SIZE=str(pool_size),
        # The soak is meant to reach this; warnings would only fill the log.
        CLAUDE_TRAY_LOG_LEVEL="error",
    )
    return env


def percentile(values: list[float], q: float) -> float | None:
    return core.percentile(values, q) if values else None


def _ms(seconds: float | None) -> str:
    return "n/a" if seconds is None else f"{seconds * 1000:.0f} ms"


def burst_table(results: list[BurstResult], max_concurrent: int, max_queue: int) -> str:
    lines = [
        "| proxy | requests | succeeded | 429 + Retry-After | other | hung | "
        "p50 / p95, succeeded | p50 / p95, 429 | all done after | upstream calls "
        "| proxy CPU |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in results:
        counts = r.counts()
        ok = [s.seconds for s in r.shots if s.outcome == "ok"]
        busy = [s.seconds for s in r.shots if s.outcome == "429"]
        other = len(r.shots) - counts["ok"] - counts["429"] - counts["hung"]
        lines.append(
            f"| {r.label} | {len(r.shots)} | {counts['ok']} | {counts['429']} | {other} "
            f"| {counts['hung']} | {_ms(percentile(ok, 0.5))} / {_ms(percentile(ok, 0.95))} "
            f"| {_ms(percentile(busy, 0.5))} / {_ms(percentile(busy, 0.95))} "
            f"| {r.wall_seconds:.1f} s | {r.upstream_requests} "
            f"| {'n/a' if r.proxy_cpu_seconds is None else f'{r.proxy_cpu_seconds:.2f} s'} |"
        )
    lines.append(
        f"\n(max_concurrent {max_concurrent}, max_queue {max_queue}: at least "
        f"{max_concurrent + max_queue} of a burst that arrives at once are admitted. "
        "Latencies are as the load generator saw them; it shares the 2 cores with the "
        "proxy and the CLI processes, and proxy CPU is what the proxy process itself "
        "used for the whole burst.)"
    )
    return "\n".join(lines)


def soak_table(subjects: list[Subject]) -> str:
    head = "| after requests |"
    rule = "|---:|"
    for s in subjects:
        head += f" {s.label}: proxy RSS | FDs | threads | claude |"
        rule += "---:|---:|---:|---:|"
    lines = [head, rule]
    rows = max(len(s.samples) for s in subjects)
    for i in range(rows):
        label = ""
        cells = ""
        for s in subjects:
            if i < len(s.samples):
                p = s.samples[i]
                label = label or ("idle, before any" if p.requests < 0 else str(p.requests))
                cells += f" {p.rss_kb / 1024:.0f} MB | {p.fds} | {p.threads} | {p.claude} |"
            else:
                cells += " | | | |"
        lines.append(f"| {label} |{cells}")
    return "\n".join(lines)


def soak_summary(subjects: list[Subject]) -> str:
    lines = [
        "| proxy | requests | ok | abandoned as planned | upstream fault -> 503 | failed "
        "| most claude processes alive | FDs start -> end | threads start -> end "
        "| claude left after stop |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for s in subjects:
        turns = s.soaker.turns if s.soaker else []
        counts = Counter(t.outcome for t in turns)
        start = next((p for p in s.samples if p.requests >= 0), None)
        end = s.samples[-1] if s.samples else None
        fds = f"{start.fds} -> {end.fds}" if start and end else "n/a"
        threads = f"{start.threads} -> {end.threads}" if start and end else "n/a"
        lines.append(
            f"| {s.label} | {len(turns)} | {counts['ok']} | {counts['abandoned as planned']} "
            f"| {counts['upstream fault -> 503']} | {counts['failed']} | {s.peak_claude} "
            f"| {fds} | {threads} | {len(s.leftovers)} |"
        )
    return "\n".join(lines)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.bench_load",
        description="A burst past the concurrency limit, then a soak of sequential turns.",
    )
    parser.add_argument("--concurrent", type=int, default=200, help="requests in the burst")
    parser.add_argument("--sequential", type=int, default=1000, help="soak requests per proxy")
    parser.add_argument("--every", type=int, default=100, help="sample every N soak requests")
    parser.add_argument("--max-concurrent", type=int, default=4, help="the proxies' limit")
    parser.add_argument("--max-queue", type=int, default=16, help="the proxies' queue")
    parser.add_argument(
        "--pool-size",
        type=int,
        action="append",
        dest="pool_sizes",
        metavar="N",
        help="start a proxy with this warm pool (repeat; default: 2 and 0)",
    )
    parser.add_argument(
        "--timeout", type=float, default=120.0, help="seconds before a request counts as hung"
    )
    parser.add_argument("--first-delay", type=float, default=0.055)
    parser.add_argument("--delay", type=float, default=0.01)
    parser.add_argument("--chunks", type=int, default=5)
    parser.add_argument("--json", type=Path, help="write the raw numbers here")
    args = parser.parse_args(argv)
    if args.pool_sizes is None:
        args.pool_sizes = [2, 0]
    if min(args.concurrent, args.sequential, args.every, args.chunks) < 0 or args.every == 0:
        parser.error("counts must not be negative, --every at least 1")
    if args.max_concurrent < 1 or args.max_queue < 0 or any(n < 0 for n in args.pool_sizes):
        parser.error("--max-concurrent at least 1; --max-queue and --pool-size not negative")
    args.command = command_line(parser, args)
    return args


def _log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def run(args: argparse.Namespace) -> int:
    if str(core.REPO) not in sys.path:
        sys.path.insert(0, str(core.REPO))
    from tests.upstream import Upstream, error, text

    # The scripted upstream logs a traceback each time the CLI of a hung-up turn goes away
    # mid-stream; the soak does that on purpose, and checks every outcome itself.
    logging.getLogger("aiohttp.server").setLevel(logging.CRITICAL)
    host = core.machine()
    command = args.command
    replies = Replies(text, error, args.first_delay, args.delay, args.chunks)
    upstream = Upstream().start()
    subjects: list[Subject] = []
    problems: list[str] = []
    t_start = time.perf_counter()
    with contextlib.ExitStack() as stack:
        try:
            for size in args.pool_sizes:
                home = Path(
                    stack.enter_context(
                        tempfile.TemporaryDirectory(
                            prefix="bench-load-", ignore_cleanup_errors=True
                        )
                    )
                )
                env = load_env(
                    upstream.url,
                    home,
                    max_concurrent=args.max_concurrent,
                    max_queue=args.max_queue,
                    pool_size=size,
                )
                subject = Subject(size, core.Proxy(env, home), home)
                subjects.append(subject)
                url = subject.proxy.start()
                assert subject.proxy.proc is not None
                subject.probe = TrayProbe(url, subject.proxy.proc.pid)
                subject.samples.append(sample_process(subject.probe.pid, -1))
                _log(f"{subject.label}: {subject.proxy.banner}")

            for s in subjects if args.concurrent else []:
                assert s.probe is not None
                _log(f"{s.label}: burst of {args.concurrent}")
                s.burst = burst(
                    s.label,
                    s.probe.url,
                    upstream,
                    replies,
                    args.concurrent,
                    args.timeout,
                    pid=s.probe.pid,
                )
                s.burst.health_after = s.probe.health()
                _log(f"  {dict(s.burst.counts())} in {s.burst.wall_seconds:.1f} s")
                s.probe.delete_sessions()
                s.probe.settle()

            for s in subjects:
                assert s.probe is not None
                s.soaker = Soaker(s.probe.url, upstream, replies, args.timeout)
            warmup = min(WARMUP, args.sequential)
            for n in range(1, args.sequential + 1):
                for s in subjects:
                    assert s.soaker is not None
                    assert s.probe is not None
                    turn = s.soaker.next()
                    if turn.error is not None:
                        _log(f"  {s.label} request {n} ({turn.api}, {turn.plan}): {turn.error}")
                    s.peak_claude = max(s.peak_claude, len(claude_children(s.probe.pid)))
                    if n == warmup or (n > warmup and n % args.every == 0) or n == args.sequential:
                        s.samples.append(settled_sample(s.probe, n))
                if n % args.every == 0:
                    _log(f"soak: {n} of {args.sequential}")
        finally:
            for s in subjects:
                if s.soaker is not None:
                    s.soaker.close()
                if s.probe is not None:
                    s.probe.close()
                s.proxy.stop()
                if s.proxy.killed:
                    problems.append(f"{s.label} ignored SIGTERM and was killed")
                elif s.proxy.exit_code not in (0, None):
                    problems.append(f"{s.label} exited with {s.proxy.exit_code} after SIGTERM")
                # Anything still running with this proxy's home in its environment.
                s.leftovers = core.end_leftovers(str(s.home))
            upstream.stop()
    elapsed = time.perf_counter() - t_start

    bursts = [s.burst for s in subjects if s.burst is not None]
    if bursts:
        print("**Burst**\n")
        print(burst_table(bursts, args.max_concurrent, args.max_queue))
        print()
    print("**Soak**, the proxy process after each stretch (sessions deleted, pool refilled)\n")
    print(soak_table(subjects))
    print()
    print(soak_summary(subjects))
    print(
        f"\n`{command}` on {host['system']} ({host['cpu']}), nproc {host['nproc']}, "
        f"Python {host['python']}, claude-agent-sdk {host['claude_agent_sdk']}; "
        f"upstream first token after {args.first_delay * 1000:.0f} ms, {args.chunks} deltas "
        f"{args.delay * 1000:.0f} ms apart; {elapsed / 60:.1f} minutes in all."
    )

    for r in bursts:
        bad = [s for s in r.shots if s.outcome not in ("ok", "429")]
        for shot in bad[:5]:
            problems.append(f"{r.label} burst request {shot.index}: {shot.outcome} {shot.error}")
        if len(bad) > 5:
            problems.append(f"{r.label}: {len(bad) - 5} more burst requests went wrong")
    for s in subjects:
        failed = [t for t in (s.soaker.turns if s.soaker else []) if t.outcome == "failed"]
        for t in failed[:5]:
            problems.append(f"{s.label} soak request {t.number} ({t.api}, {t.plan}): {t.error}")
        if len(failed) > 5:
            problems.append(f"{s.label}: {len(failed) - 5} more soak requests failed")
        if s.leftovers:
            problems.append(f"{s.label} left processes behind: {s.leftovers}")
    if problems:
        print()
        for problem in problems:
            print(f"- {problem}")
    if args.json is not None:
        data = {
            "command": command,
            "machine": host,
            "elapsed_s": elapsed,
            "subjects": {
                s.label: {
                    "burst": (
                        {
                            "counts": dict(s.burst.counts()),
                            "wall_s": s.burst.wall_seconds,
                            "proxy_cpu_s": s.burst.proxy_cpu_seconds,
                            "upstream_requests": s.burst.upstream_requests,
                            "shots": [asdict(x) for x in s.burst.shots],
                        }
                        if s.burst
                        else None
                    ),
                    "samples": [asdict(p) for p in s.samples],
                    "soak": [asdict(t) for t in (s.soaker.turns if s.soaker else [])],
                    "peak_claude": s.peak_claude,
                    "leftovers": s.leftovers,
                }
                for s in subjects
            },
            "problems": problems,
        }
        args.json.write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8")
    return 1 if problems else 0


def main(argv: list[str] | None = None) -> int:
    return run(parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
