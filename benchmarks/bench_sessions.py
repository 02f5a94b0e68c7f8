"""Sessions and the warm pool: new-conversation latency, a 10-turn conversation, memory.

Run from the repo root:

    python -m benchmarks.bench_sessions [--quick] [--requests 20] [--conversations 5]
                                        [--turns 10] [--held 5] [--kept 10] [--pause 1]
                                        [--json out.json]

Everything runs against the scripted local upstream `tests/upstream.py` (every reply
waits `--first-delay` before its first event and `--delay` between its `--chunks` text
deltas), with two claude-tray proxies side by side: one with its default warm pool
(`pool_size` 2) and one with `CLAUDE_TRAY_POOL_SIZE=0`.

1. Time to first token (TTFT: the first content delta) of a new conversation, a
   streaming request with one user message: (a) the upstream alone, (b) the bundled CLI
   started per request and spoken to in stream-json, (b) the CLI started per request
   through claude-agent-sdk (`ClaudeSDKClient`, the options claude-tray uses),
   (c) claude-tray with the pool off, (c) claude-tray with the pool on. The pool learns
   the spec of new conversations, so the warm-up rounds send one request of the same
   shape first; before each measured request the pool has refilled (see "settling").
   Then `--kept` new conversations in a row on the pool-on proxy, each left held: which
   of them still find a warm process (held ones count against `max_processes`), and
   whether the pool refills by itself once they end.
2. A `--turns`-turn OpenAI-style conversation (the whole history resent each turn, each
   answer appended as the client would): TTFT per turn through the upstream alone and
   both proxies (turn 1 new, later turns continued in the process the proxy holds), and
   the prefix stability of what the CLI sends upstream (defined at `stability`).
3. Memory: RSS (VmRSS) and PSS summed over each proxy and all its descendants, at idle
   and with `--held` conversations held, and the increase per held conversation; also
   the CPU the idle tree uses.

Settling: after every request the benchmark deletes the proxies' sessions (which ends
the processes holding them), waits until each warm pool is full and no CLI process is
still exiting, and after a pool-on request sleeps `--pause` more seconds (a process just
started keeps working for a second or two after it reports ready). The Markdown report
goes to stdout, progress to stderr; a failed request is reported and the run goes on.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import itertools
import json
import re
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx

from benchmarks import bench_core as core
from benchmarks import command_line
from benchmarks.tray_probe import Memory, TrayProbe, idle_cpu_share, tree_memory

if TYPE_CHECKING:
    from tests.upstream import Upstream

REQUEST_TIMEOUT = core.REQUEST_TIMEOUT
MB = 1024.0  # kB per MB (MiB, as /proc counts)
REFILL_WATCH = 5.0  # seconds to watch for the pool refilling by itself


def _log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


# --- the upstream, recording raw request bytes ----------------------------------------


class RawRecorder:
    """The raw bytes of every request an upstream received, in arrival order."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.bodies: list[tuple[str, bytes]] = []

    def messages_bodies(self) -> list[bytes]:
        with self.lock:
            return [raw for path, raw in self.bodies if path.endswith("/messages")]

    def clear(self) -> None:
        with self.lock:
            self.bodies.clear()


def raw_upstream(recorder: RawRecorder) -> Upstream:
    """tests/upstream.py's Upstream, also keeping each request body exactly as sent
    (its `Recorded.body` is the parsed JSON)."""
    from aiohttp import web

    from tests.upstream import Upstream

    class RawUpstream(Upstream):
        async def _handle(self, request: web.Request) -> web.StreamResponse:
            # aiohttp keeps the body once read: the parent's read gets the same bytes.
            raw = await request.read()
            with recorder.lock:
                recorder.bodies.append((request.path, raw))
            return await super()._handle(request)

        def clear(self) -> None:
            super().clear()
            recorder.clear()

    return RawUpstream()


# --- clients -----------------------------------------------------------------------


def chat_stream(client: httpx.Client, messages: list[dict[str, Any]]) -> core.Timing:
    """One streaming chat completion; TTFT is the first non-empty `delta.content`."""
    t0 = time.perf_counter()
    ttft: float | None = None
    parts: list[str] = []
    body = {"model": "sonnet", "messages": messages, "stream": True}
    with client.stream("POST", "/v1/chat/completions", json=body) as response:
        if response.status_code != 200:
            raise RuntimeError(f"HTTP {response.status_code}: {response.read()[:300]!r}")
        for line in response.iter_lines():
            if not line.startswith("data:"):
                continue
            data = line[5:].strip()
            if data == "[DONE]":
                break
            chunk = json.loads(data)
            if "error" in chunk:
                raise RuntimeError(f"stream error: {chunk['error']}")
            for choice in chunk.get("choices") or []:
                content = (choice.get("delta") or {}).get("content")
                if content:
                    if ttft is None:
                        ttft = time.perf_counter() - t0
                    parts.append(content)
    total = time.perf_counter() - t0
    if ttft is None:
        raise RuntimeError("the stream ended without delta.content")
    return core.Timing(ttft, total, "".join(parts))


def anthropic_stream(client: Any, messages: list[dict[str, Any]]) -> core.Timing:
    """One streaming Messages request through the Anthropic SDK."""
    t0 = time.perf_counter()
    ttft: float | None = None
    parts: list[str] = []
    with client.messages.create(
        model="sonnet", max_tokens=1024, messages=messages, stream=True
    ) as stream:
        for event in stream:
            if event.type == "content_block_delta" and event.delta.type == "text_delta":
                if ttft is None and event.delta.text:
                    ttft = time.perf_counter() - t0
                parts.append(event.delta.text)
    total = time.perf_counter() - t0
    if ttft is None:
        raise RuntimeError("the stream ended without a text delta")
    return core.Timing(ttft, total, "".join(parts))


def sdk_runner(path: Path, env: dict[str, str], cwd: Path) -> Callable[[str], core.Timing]:
    """The CLI started per request through claude-agent-sdk, as claude-tray starts it
    (no built-in tools, partial messages, no setting sources); TTFT is its first
    `text_delta` stream event, measured from before the process is started."""
    from claude_agent_sdk import ClaudeAgentOptions, ClaudeSDKClient, ResultMessage, StreamEvent

    async def once(prompt: str) -> core.Timing:
        options = ClaudeAgentOptions(
            cli_path=str(path),
            tools=[],
            include_partial_messages=True,
            model="sonnet",
            setting_sources=[],
            cwd=str(cwd),
            env=env,
        )
        t0 = time.perf_counter()
        ttft: float | None = None
        parts: list[str] = []
        client = ClaudeSDKClient(options)
        await client.connect()
        try:
            await client.query(prompt)
            async for message in client.receive_response():
                if isinstance(message, StreamEvent):
                    event = message.event
                    delta = event.get("delta") or {}
                    if event.get("type") == "content_block_delta" and (
                        delta.get("type") == "text_delta"
                    ):
                        if ttft is None and delta.get("text"):
                            ttft = time.perf_counter() - t0
                        parts.append(str(delta.get("text", "")))
                elif isinstance(message, ResultMessage):
                    total = time.perf_counter() - t0
                    if message.is_error:
                        raise RuntimeError(f"CLI result is_error: {str(message.result)[:200]}")
                    if ttft is None:
                        raise RuntimeError("the CLI gave a result without a text_delta")
                    return core.Timing(ttft, total, "".join(parts))
        finally:
            await client.disconnect()
        raise RuntimeError("the CLI ended without a result")

    def run(prompt: str) -> core.Timing:
        async def bounded() -> core.Timing:
            return await asyncio.wait_for(once(prompt), REQUEST_TIMEOUT)

        return asyncio.run(bounded())

    return run


# --- the proxies --------------------------------------------------------------------


@dataclass
class Tray:
    key: str  # "on" or "off"
    label: str
    proxy: core.Proxy
    probe: TrayProbe
    http: httpx.Client
    pooled: bool

    def chat(self, messages: list[dict[str, Any]]) -> core.Timing:
        return chat_stream(self.http, messages)

    def runner(self) -> Callable[[str], core.Timing]:
        return lambda prompt: self.chat([{"role": "user", "content": prompt}])

    def routes(self) -> dict[str, int]:
        """How the proxy's turns so far were served, from its log."""
        path = self.proxy.home / "logs" / "claude-tray.log"
        try:
            text = path.read_text("utf-8", "replace")
        except OSError:
            return {}
        counts: dict[str, int] = {}
        for match in re.finditer(r"\] ([a-z ()]+?) \(session [^)]*\) ready in", text):
            counts[match.group(1)] = counts.get(match.group(1), 0) + 1
        return counts


def start_tray(key: str, label: str, upstream_url: str, home: Path, pool_size: int | None) -> Tray:
    env = core.proxy_env(upstream_url, home)
    if pool_size is not None:
        env["CLAUDE_TRAY_POOL_SIZE"] = str(pool_size)
    proxy = core.Proxy(env, home)
    url = proxy.start()
    assert proxy.proc is not None
    probe = TrayProbe(url, proxy.proc.pid)
    http = httpx.Client(base_url=url, timeout=REQUEST_TIMEOUT)
    pool = probe.pool()
    if pool["enabled"]:
        label += f" (size {pool['size']})"
    return Tray(key, label, proxy, probe, http, bool(pool["enabled"]))


class Settler:
    """After every request: delete sessions, wait for full pools, pause after pool-on."""

    def __init__(self, trays: list[Tray], pause: float) -> None:
        self.trays = trays
        self.pause = pause
        self.waits: list[float] = []
        self.problems: list[str] = []

    def __call__(self, after: Tray | None = None) -> None:
        for tray in self.trays:
            try:
                tray.probe.delete_sessions()
                wait = tray.probe.settle()
            except Exception as exc:
                problem = f"{tray.label}: {type(exc).__name__}: {exc}"[:500]
                _log(f"  {problem}")
                self.problems.append(problem)
                continue
            if tray is after and tray.pooled:
                self.waits.append(wait)
        if after is not None and after.pooled:
            time.sleep(self.pause)


# --- 1. a new conversation ------------------------------------------------------------


def new_conversations(
    args: argparse.Namespace,
    upstream: Upstream,
    modes: list[tuple[core.Mode, Tray | None]],
    settle: Settler,
    pooled: Tray,
) -> int:
    """Run the rounds; returns how many measured requests `pooled` served warm."""
    reply, expected = core.scripted_reply(args)
    hits = 0
    for n in range(-core.WARMUP, args.requests):
        if n == 0:
            hits = -int(pooled.probe.pool()["warm_hits"])
        for mode, tray in modes:
            sample = core.measure(mode, upstream, reply, expected, n)
            if sample.error is not None:
                what = "warm-up" if n < 0 else f"request {n}"
                _log(f"  {mode.key} {what} failed: {sample.error}")
                if n < 0:
                    mode.warmup_errors.append(sample.error)
            if n >= 0:
                mode.samples.append(sample)
            settle(tray)
        _log(
            f"new conversations: round {n + 1} of {args.requests} done"
            if n >= 0
            else "new conversations: warm-up round done"
        )
    return hits + int(pooled.probe.pool()["warm_hits"])


def summarize_ttft(values: list[float]) -> dict[str, float | None]:
    return {
        "median_ms": statistics.median(values) if values else None,
        "p90_ms": core.percentile(values, 0.9) if values else None,
    }


def kept_conversations(
    args: argparse.Namespace, upstream: Upstream, tray: Tray, pause: float
) -> list[dict[str, Any]]:
    """New conversations one after another, each left held (as a client that comes
    back to them would want): does each still find a warm process?"""
    reply, expected = core.scripted_reply(args)
    rows: list[dict[str, Any]] = []
    for k in range(1, args.kept + 1):
        upstream.clear()
        upstream.push(reply)
        hits = tray.probe.pool()["warm_hits"]
        row: dict[str, Any] = {"conversation": k}
        try:
            timing = tray.chat([{"role": "user", "content": f"kept conversation {k}"}])
        except Exception as exc:
            row["error"] = f"{type(exc).__name__}: {exc}"[:300]
        else:
            row["ttft_ms"] = timing.ttft * 1000
            if timing.text != expected:
                row["error"] = f"unexpected text {timing.text[:80]!r}"
        tray.probe.settle(held=None, full=False)
        pool = tray.probe.pool()
        row.update(
            warm_hit=pool["warm_hits"] > hits,
            warm_after=pool["warm"],
            held_after=pool["holding_conversations"],
            processes_after=pool["processes"],
        )
        rows.append(row)
        time.sleep(pause)
    return rows


def refill_time(tray: Tray, watch: float) -> float | None:
    """Seconds until the pool is full again, or None if it is not within `watch`."""
    start = time.monotonic()
    while time.monotonic() - start < watch:
        pool = tray.probe.pool()
        if pool["warm"] >= pool["size"] and pool["starting"] == 0:
            return time.monotonic() - start
        time.sleep(0.1)
    return None


# --- 2. a conversation, and prefix stability --------------------------------------------


def compact(value: Any) -> bytes:
    """JSON as the CLI writes it (JSON.stringify: no spaces, UTF-8 as is)."""
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode()


def _strip_markers(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _strip_markers(v) for k, v in value.items() if k != "cache_control"}
    if isinstance(value, list):
        return [_strip_markers(v) for v in value]
    return value


def _blocks(content: Any) -> Any:
    return [{"type": "text", "text": content}] if isinstance(content, str) else content


def cache_view(body: dict[str, Any]) -> bytes:
    """The prompt in the order Anthropic's prompt cache reads it (tools, system,
    messages), with `cache_control` markers removed and string contents written as the
    one text block they stand for."""
    messages = [dict(m, content=_blocks(m.get("content"))) for m in body.get("messages", [])]
    view = [body.get("tools", []), _blocks(body.get("system", [])), messages]
    return compact(_strip_markers(view))


def common_prefix(a: bytes, b: bytes) -> int:
    """Length of the longest common prefix (binary search on slice equality)."""
    low, high = 0, min(len(a), len(b))
    while low < high:
        mid = (low + high + 1) // 2
        if a[:mid] == b[:mid]:
            low = mid
        else:
            high = mid - 1
    return low


def stability(prev_raw: bytes, cur_raw: bytes) -> dict[str, float]:
    """Prefix stability of one upstream request over the previous one, three ways.

    Each is len(longest common prefix of the two serialisations) / len(the previous
    one's), so 1.0 means the new request starts with the whole previous request:
      raw:      the request bodies, byte for byte as the CLI sent them;
      messages: the two `messages` arrays, each serialised as the CLI does (`compact`);
      cache:    `cache_view` of each body: what prompt caching can reuse.
    Also `raw_ceiling`: the most `raw` could be for a history that only grows, since the
    previous body's `]` closing `messages` (and every key after it) cannot repeat.
    """
    prev, cur = json.loads(prev_raw), json.loads(cur_raw)
    out: dict[str, float] = {}
    end = _messages_end(prev_raw)
    out["raw_ceiling"] = end / len(prev_raw) if end is not None else float("nan")
    pairs = {
        "raw": (prev_raw, cur_raw),
        "messages": (compact(prev.get("messages", [])), compact(cur.get("messages", []))),
        "cache": (cache_view(prev), cache_view(cur)),
    }
    for name, (a, b) in pairs.items():
        out[name] = common_prefix(a, b) / len(a) if a else 1.0
    return out


_MESSAGES_KEY = re.compile(r'"messages"\s*:\s*\[')


def _messages_end(raw: bytes) -> int | None:
    """Byte offset of the `]` closing the body's top-level `messages` array."""
    text = raw.decode("utf-8", "replace")
    wanted = json.loads(raw).get("messages")
    decoder = json.JSONDecoder()
    # The first match is the top-level key unless a string earlier holds the same text.
    for match in _MESSAGES_KEY.finditer(text):
        try:
            value, end = decoder.raw_decode(text, match.end() - 1)
        except ValueError:
            continue
        if value == wanted:
            return len(text[: end - 1].encode())
    return None


def _kind(value: Any) -> str:
    if isinstance(value, dict):
        return "object"
    if isinstance(value, str):
        return "string"
    return type(value).__name__


def first_difference(prev: Any, cur: Any, path: str = "") -> str | None:
    """Where, in serialisation order, `cur` stops repeating `prev` (None: it does not)."""
    if type(prev) is not type(cur):
        return f"{path or 'body'}: {_kind(prev)} → {_kind(cur)}"
    if isinstance(prev, dict):
        prev_keys, cur_keys = list(prev), list(cur)
        for i, key in enumerate(prev_keys):
            if i >= len(cur_keys) or cur_keys[i] != key:
                if key not in cur:
                    return f"{path or 'body'}: key `{key}` dropped"
                return f"{path or 'body'}: keys reordered at `{key}`"
            found = first_difference(prev[key], cur[key], f"{path}.{key}" if path else key)
            if found is not None:
                return found
        if len(cur_keys) > len(prev_keys):
            return f"{path or 'body'}: key `{cur_keys[len(prev_keys)]}` added"
        return None
    if isinstance(prev, list):
        for i, item in enumerate(prev):
            if i >= len(cur):
                return f"{path}: items from [{i}] dropped"
            where = f"{path}[{i}]"
            if path == "messages" and isinstance(item, dict):
                where += f" ({item.get('role')})"
            found = first_difference(item, cur[i], where)
            if found is not None:
                return found
        if len(cur) > len(prev):
            return f"{path}: grew by {len(cur) - len(prev)} item(s) (expected)"
        return None
    if prev != cur:
        return f"{path}: {str(prev)[:40]!r} → {str(cur)[:40]!r}"
    return None


@dataclass
class Conversation:
    mode: str
    round: int
    ttft_ms: list[float | None] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    stability: list[dict[str, float]] = field(default_factory=list)  # turn 2 on
    breaks: list[str | None] = field(default_factory=list)  # turn 2 on


def conversation(
    args: argparse.Namespace,
    upstream: Upstream,
    recorder: RawRecorder,
    mode: str,
    run: Callable[[list[dict[str, Any]]], core.Timing],
    r: int,
) -> Conversation:
    from tests.upstream import text

    result = Conversation(mode, r)
    messages: list[dict[str, Any]] = []
    bodies: list[bytes] = []
    for turn in range(1, args.turns + 1):
        upstream.clear()
        words = [f"Turn {turn}", " answer", " of", " conversation", f" {r}", " and", " more"]
        chunks = [words[i % len(words)] for i in range(args.chunks)]
        upstream.push(text(*chunks, first_delay=args.first_delay, delay=args.delay))
        messages.append(
            {"role": "user", "content": f"Conversation {r}, turn {turn}: tell me more."}
        )
        try:
            timing = run(messages)
        except Exception as exc:
            result.ttft_ms.append(None)
            result.errors.append(f"turn {turn}: {type(exc).__name__}: {exc}"[:500])
            break
        result.ttft_ms.append(timing.ttft * 1000)
        if timing.text != "".join(chunks):
            result.errors.append(f"turn {turn}: unexpected text {timing.text[:80]!r}")
        raw = recorder.messages_bodies()
        if len(raw) != 1:
            result.errors.append(f"turn {turn}: the upstream saw {len(raw)} requests, not 1")
            break
        bodies.append(raw[0])
        # The client appends the answer it got, as it got it.
        messages.append({"role": "assistant", "content": timing.text})
    for prev, cur in itertools.pairwise(bodies):
        result.stability.append(stability(prev, cur))
        result.breaks.append(first_difference(json.loads(prev), json.loads(cur)))
    return result


# --- 3. memory -----------------------------------------------------------------------


@dataclass
class MemoryState:
    label: str
    memory: Memory
    cpu_share: float


def memory_state(tray: Tray, label: str, window: float) -> MemoryState:
    # A process just started or just done with a turn keeps working for a moment.
    time.sleep(2.0)
    cpu = idle_cpu_share(tray.probe.pid, window)
    return MemoryState(label, tree_memory(tray.probe.pid), cpu)


def hold_conversations(args: argparse.Namespace, upstream: Upstream, tray: Tray) -> list[str]:
    """Start `--held` conversations (one turn each) and leave them held."""
    errors = []
    for k in range(args.held):
        upstream.clear()
        try:
            tray.chat([{"role": "user", "content": f"held conversation {k}"}])
        except Exception as exc:
            errors.append(f"{type(exc).__name__}: {exc}"[:300])
        tray.probe.settle(held=k + 1 - len(errors))
    return errors


def _anthropic(base_url: str, api_key: str) -> Any:
    import anthropic

    return anthropic.Anthropic(
        base_url=base_url, api_key=api_key, max_retries=0, timeout=REQUEST_TIMEOUT
    )


def _conversation_summary(
    conversations: list[Conversation],
    labels: dict[str, str],
    trays: list[Tray],
    routes_before: dict[str, dict[str, int]],
    turns: int,
) -> dict[str, Any]:
    rows = []
    for key, label in labels.items():
        convs = [c for c in conversations if c.mode == key]
        per_turn: list[float | None] = []
        for t in range(turns):
            values = [c.ttft_ms[t] for c in convs if len(c.ttft_ms) > t]
            ok = [v for v in values if v is not None]
            per_turn.append(statistics.median(ok) if ok else None)
        later = [v for c in convs for v in c.ttft_ms[1:] if v is not None]
        rows.append(
            {
                "key": key,
                "label": label,
                "per_turn_median_ms": per_turn,
                "later_median_ms": statistics.median(later) if later else None,
                "later_p90_ms": core.percentile(later, 0.9) if later else None,
            }
        )
    routes = {}
    for tray in trays:
        after = tray.routes()
        before = routes_before.get(tray.key, {})
        routes[tray.label] = {
            k: v - before.get(k, 0) for k, v in after.items() if v - before.get(k, 0)
        }
    proxied = [c for c in conversations if c.mode.startswith("tray") and c.stability]
    stab: dict[str, dict[str, Any]] = {}
    for name in ("raw", "raw_ceiling", "messages", "cache"):
        per_turn_min: list[float | None] = []
        for t in range(turns - 1):
            shares = [c.stability[t][name] for c in proxied if len(c.stability) > t]
            per_turn_min.append(min(shares) if shares else None)
        found = [v for v in per_turn_min if v is not None]
        stab[name] = {"per_turn_min": per_turn_min, "min": min(found) if found else None}
    breaks: dict[int, list[str]] = {}
    for c in proxied:
        for t, reason in enumerate(c.breaks, start=2):
            # Indexes differ from turn to turn; the kind of change is what matters.
            text = re.sub(r"\[\d+\]", "[i]", reason or "nothing changed")
            if text not in breaks.setdefault(t, []):
                breaks[t].append(text)
    client = [s["raw"] for c in conversations if c.mode == "upstream" for s in c.stability]
    client_ceiling = [
        s["raw_ceiling"] for c in conversations if c.mode == "upstream" for s in c.stability
    ]
    return {
        "ttft": rows,
        "routes": routes,
        "stability": stab,
        "stability_count": len(proxied),
        "client_stability_min": min(client) if client else None,
        "client_ceiling_min": min(client_ceiling) if client_ceiling else None,
        "breaks": breaks,
        "runs": [asdict(c) for c in conversations],
    }


# --- the report ------------------------------------------------------------------------


def _ms(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.0f} ms"


def _mb(kb: float) -> str:
    return f"{kb / MB:.0f} MB"


def _share(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.2f}"


def report(data: dict[str, Any]) -> str:
    host = data["machine"]
    params = data["params"]
    lines = [
        "#### A new conversation: time to first token",
        "",
        "| Path | TTFT median | TTFT p90 | OK |",
        "|---|---:|---:|---:|",
    ]
    for mode in data["new_conversation"]["modes"]:
        s = mode["summary"]
        lines.append(
            f"| {mode['label']} | {_ms(s['median_ms'])} | {_ms(s['p90_ms'])} "
            f"| {mode['ok']}/{mode['n']} |"
        )
    nc = data["new_conversation"]
    lines += [
        "",
        f"{params['requests']} requests per path after {core.WARMUP} warm-up rounds, "
        "interleaved. After each request the proxies' sessions were deleted and the "
        "benchmark waited until the pool was full again "
        f"(median {_ms(nc['refill_wait_median_ms'])} after a pool-on request), then "
        f"{params['pause_s']:g} s more after a pool-on request. Pool-on: "
        f"{nc['warm_hits']} of {params['requests']} measured requests got a warm process.",
        "",
        f"#### New conversations that stay held ({params['kept']} in a row, pool on)",
        "",
        "| Conversation | "
        + " | ".join(str(r["conversation"]) for r in data["kept"]["rows"])
        + " |",
        "|---|" + "---:|" * len(data["kept"]["rows"]),
        "| TTFT | " + " | ".join(_ms(r.get("ttft_ms")) for r in data["kept"]["rows"]) + " |",
        "| warm process | "
        + " | ".join("yes" if r["warm_hit"] else "**no**" for r in data["kept"]["rows"])
        + " |",
        "| warm / held after | "
        + " | ".join(f"{r['warm_after']} / {r['held_after']}" for r in data["kept"]["rows"])
        + " |",
        "",
        "Each conversation is one request, left held (not deleted), "
        f"{params['pause_s']:g} s apart once the proxy is calm; `max_processes` is "
        f"{data['kept']['max_processes']} (the default). After deleting those sessions "
        + (
            f"the pool was full again in {data['kept']['refilled_within_s']:.1f} s."
            if data["kept"]["refilled_within_s"] is not None
            else f"the pool was still not refilled {REFILL_WATCH:g} s later (it refills "
            "only when a new conversation arrives)."
        ),
        "",
        f"#### A {params['turns']}-turn conversation (history resent every turn)",
        "",
    ]
    turns = params["turns"]
    head = " | ".join(f"turn {t}" for t in range(1, turns + 1))
    lines += [
        f"| TTFT median | {head} | turns 2-{turns} median | turns 2-{turns} p90 |",
        "|---|" + "---:|" * (turns + 2),
    ]
    for row in data["conversation"]["ttft"]:
        cells = " | ".join(_ms(v) for v in row["per_turn_median_ms"])
        lines.append(
            f"| {row['label']} | {cells} | {_ms(row['later_median_ms'])} "
            f"| {_ms(row['later_p90_ms'])} |"
        )
    conv = data["conversation"]
    routes = "; ".join(
        f"{label}: " + ", ".join(f"{n} {route}" for route, n in sorted(counts.items()))
        for label, counts in conv["routes"].items()
    )
    lines += [
        "",
        f"Medians over {params['conversations']} conversation(s) per path. How claude-tray "
        f"served the turns (from its log): {routes}.",
        "",
        "| Prefix stability (worst of "
        f"{conv['stability_count']} claude-tray conversations) | "
        + " | ".join(f"turn {t}" for t in range(2, turns + 1))
        + " | min |",
        "|---|" + "---:|" * turns,
    ]
    names = {
        "raw": "raw request body, bytes as sent",
        "raw_ceiling": "(raw: the most an append-only history could score)",
        "messages": "`messages` array, serialised as sent",
        "cache": "cache order (tools, system, messages), markers removed",
    }
    for name, label in names.items():
        per_turn = conv["stability"][name]["per_turn_min"]
        cells = " | ".join(_share(v) for v in per_turn)
        lines.append(f"| {label} | {cells} | {_share(conv['stability'][name]['min'])} |")
    client_min = conv["client_stability_min"]
    lines += [
        "",
        "Share of the previous upstream request repeated exactly at the start of the next: "
        "len(longest common prefix) / len(previous request). For comparison, the bodies "
        "the client itself sent to the upstream directly score at least "
        f"{_share(client_min)} raw (ceiling {_share(conv['client_ceiling_min'])}: its "
        "`messages` also come before other keys). Where the raw prefix first breaks, "
        "by turn:",
        "",
    ]
    for turn, reasons in conv["breaks"].items():
        lines.append(f"- turn {turn}: {'; '.join(reasons)}")
    mem = data["memory"]
    lines += [
        "",
        "#### Memory",
        "",
        "| State | claude processes | RSS (sum) | PSS (sum) | claude-tray itself (RSS) "
        "| idle CPU (cores) |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for state in mem["states"]:
        m = state["memory"]
        lines.append(
            f"| {state['label']} | {m['claude']} | {_mb(m['rss_kb'])} | {_mb(m['pss_kb'])} "
            f"| {_mb(m['proxy_rss_kb'])} | {state['cpu_share']:.3f} |"
        )
    for per in mem["per_conversation"]:
        lines.append(
            f"| {per['label']} | +{per['claude'] / params['held']:.0f} "
            f"| +{_mb(per['rss_kb'])} | +{_mb(per['pss_kb'])} | | |"
        )
    lines += [
        "",
        "RSS from /proc/<pid>/status (VmRSS) summed over the proxy and all its descendants "
        "(shared pages counted once per process); PSS from /proc/<pid>/smaps_rollup "
        "(shared pages split among their users). Per held conversation: (with "
        f"{params['held']} held − idle) / {params['held']}. Idle CPU: "
        f"{params['idle_window_s']:g} s of waiting, measured 2 s after the tree settled.",
        "",
        f"`{data['command']}` on {host['system']} ({host['cpu']}), nproc {host['nproc']}, "
        f"Python {host['python']}, Claude Code CLI {host['cli']} "
        f"(claude-agent-sdk {host['claude_agent_sdk']}); upstream first token after "
        f"{params['first_delay_s'] * 1000:.0f} ms, {params['chunks']} deltas "
        f"{params['delay_s'] * 1000:.0f} ms apart; run took {data['seconds']:.0f} s.",
    ]
    return "\n".join(lines)


# --- the run -------------------------------------------------------------------------


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.bench_sessions",
        description="Sessions and the warm pool: new conversations, a long one, memory.",
    )
    parser.add_argument("--quick", action="store_true", help="a short run (about a minute)")
    parser.add_argument("--requests", type=int, help="new-conversation requests per path (20)")
    parser.add_argument("--conversations", type=int, help="conversations per path (5)")
    parser.add_argument("--turns", type=int, default=10, help="turns per conversation")
    parser.add_argument("--held", type=int, help="conversations held for the memory test (5)")
    parser.add_argument(
        "--kept", type=int, default=10, help="new conversations left held, one after another"
    )
    parser.add_argument(
        "--pause", type=float, default=1.0, help="extra seconds after a pool-on request"
    )
    parser.add_argument(
        "--idle-window", type=float, help="seconds over which idle CPU is measured (5)"
    )
    parser.add_argument(
        "--first-delay", type=float, default=0.055, help="upstream seconds before the stream"
    )
    parser.add_argument(
        "--delay", type=float, default=0.01, help="upstream seconds between text deltas"
    )
    parser.add_argument("--chunks", type=int, default=5, help="text deltas per reply")
    parser.add_argument("--json", type=Path, help="write the raw numbers here")
    args = parser.parse_args(argv)
    defaults = {"requests": (20, 5), "conversations": (5, 1), "held": (5, 2)}
    for name, (full, quick) in defaults.items():
        if getattr(args, name) is None:
            setattr(args, name, quick if args.quick else full)
    if args.idle_window is None:
        args.idle_window = 2.0 if args.quick else 5.0
    counts = (args.requests, args.conversations, args.held, args.kept, args.chunks)
    if min(counts) < 1 or args.turns < 2:
        parser.error("counts must be at least 1 (--turns at least 2)")
    if min(args.pause, args.first_delay, args.delay) < 0 or args.idle_window <= 0:
        parser.error("times must not be negative")
    args.command = command_line(parser, args)
    return args


@contextlib.contextmanager
def _tempdir(prefix: str) -> Iterator[Path]:
    with tempfile.TemporaryDirectory(prefix=prefix, ignore_cleanup_errors=True) as name:
        yield Path(name)


def run(args: argparse.Namespace) -> int:
    if str(core.REPO) not in sys.path:
        sys.path.insert(0, str(core.REPO))
    started = time.monotonic()
    host = core.machine()
    command = args.command
    problems: list[str] = []
    recorder = RawRecorder()
    upstream = raw_upstream(recorder).start()
    trays: list[Tray] = []
    settle = Settler(trays, args.pause)
    data: dict[str, Any] = {
        "command": command,
        "machine": host,
        "params": {
            "requests": args.requests,
            "conversations": args.conversations,
            "turns": args.turns,
            "held": args.held,
            "kept": args.kept,
            "pause_s": args.pause,
            "idle_window_s": args.idle_window,
            "first_delay_s": args.first_delay,
            "delay_s": args.delay,
            "chunks": args.chunks,
            "warmup_rounds": core.WARMUP,
        },
    }
    with contextlib.ExitStack() as stack:
        cli_home = stack.enter_context(_tempdir("bench-sessions-cli-"))
        homes = [cli_home]
        try:
            claude = core.cli_path()
            env = core.cli_env(upstream.url, cli_home)
            (cli_home / "cfg").mkdir()
            work = cli_home / "work"
            work.mkdir()
            host["cli"] = core.cli_version(claude, env, work)
            _log(f"upstream {upstream.url}; CLI {claude} ({host['cli']})")
            for key, label, size in (
                ("off", "claude-tray, pool off", 0),
                ("on", "claude-tray, pool on", None),
            ):
                home = stack.enter_context(_tempdir(f"bench-sessions-{key}-"))
                homes.append(home)
                tray = start_tray(key, label, upstream.url, home, size)
                trays.append(tray)
                _log(f"{tray.label}: {tray.proxy.banner}")
            off, on = trays
            upstream_client = _anthropic(upstream.url, "test")
            stack.callback(upstream_client.close)

            # 1. New conversations.
            modes: list[tuple[core.Mode, Tray | None]] = [
                (
                    core.Mode(
                        "upstream",
                        "(a) upstream alone, Anthropic SDK",
                        core.anthropic_runner(upstream.url, "test"),
                    ),
                    None,
                ),
                (
                    core.Mode(
                        "cli",
                        "(b) CLI started per request, stream-json",
                        core.cli_runner(claude, env, work),
                    ),
                    None,
                ),
                (
                    core.Mode(
                        "sdk",
                        "(b) CLI started per request, claude-agent-sdk",
                        sdk_runner(claude, env, work),
                    ),
                    None,
                ),
                (core.Mode("tray-off", f"(c) {off.label}", off.runner()), off),
                (core.Mode("tray-on", f"(c) {on.label}, warm", on.runner()), on),
            ]
            hits = new_conversations(args, upstream, modes, settle, on)
            data["new_conversation"] = {
                "modes": [
                    {
                        "key": mode.key,
                        "label": mode.label,
                        "n": len(mode.samples),
                        "ok": len(mode.ok()),
                        "summary": summarize_ttft(
                            [s.ttft_ms for s in mode.ok() if s.ttft_ms is not None]
                        ),
                        "samples": [asdict(s) for s in mode.samples],
                        "warmup_errors": mode.warmup_errors,
                    }
                    for mode, _ in modes
                ],
                "warm_hits": hits,
                "refill_wait_median_ms": (
                    statistics.median(settle.waits) * 1000 if settle.waits else None
                ),
            }

            # 1b. New conversations that stay held.
            on.probe.delete_sessions()
            on.probe.settle()
            time.sleep(args.pause)
            data["kept"] = {
                "rows": kept_conversations(args, upstream, on, args.pause),
                "max_processes": on.probe.pool()["max_processes"],
            }
            for row in data["kept"]["rows"]:
                if "error" in row:
                    problems.append(f"kept conversation {row['conversation']}: {row['error']}")
            # Once those conversations end, does the pool fill up again by itself?
            on.probe.delete_sessions()
            data["kept"]["refilled_within_s"] = refill_time(on, REFILL_WATCH)
            # If not, the next new conversation (a cold one) makes it refill.
            upstream.clear()
            on.chat([{"role": "user", "content": "start the pool again"}])
            settle(on)
            _log("kept conversations done")

            # 2. Conversations.
            routes_before = {t.key: t.routes() for t in trays}
            runs: dict[str, tuple[str, Callable[[list[dict[str, Any]]], core.Timing]]] = {
                "upstream": (
                    "(a) upstream alone, Anthropic SDK",
                    lambda m: anthropic_stream(upstream_client, m),
                ),
                "tray-on": (f"(c) {on.label}", on.chat),
                "tray-off": (f"(c) {off.label}", off.chat),
            }
            conversations: list[Conversation] = []
            for r in range(args.conversations):
                for key, (_, fn) in runs.items():
                    conv = conversation(args, upstream, recorder, key, fn, r)
                    for error in conv.errors:
                        _log(f"  {key} conversation {r}: {error}")
                    conversations.append(conv)
                    settle(on if key == "tray-on" else off if key == "tray-off" else None)
                _log(f"conversations: {r + 1} of {args.conversations} done")
            data["conversation"] = _conversation_summary(
                conversations,
                {key: label for key, (label, _) in runs.items()},
                trays,
                routes_before,
                args.turns,
            )

            # 3. Memory.
            states: list[MemoryState] = []
            per_conversation: list[dict[str, Any]] = []
            for tray in (on, off):
                tray.probe.delete_sessions()
                tray.probe.settle()
                idle = memory_state(tray, f"{tray.label}, idle", args.idle_window)
                errors = hold_conversations(args, upstream, tray)
                problems += [f"{tray.label}, held conversation: {e}" for e in errors]
                held = memory_state(
                    tray, f"{tray.label}, {args.held} conversations held", args.idle_window
                )
                states += [idle, held]
                per_conversation.append(
                    {
                        "label": f"{tray.label}: per held conversation",
                        "claude": held.memory.claude - idle.memory.claude,
                        "rss_kb": (held.memory.rss_kb - idle.memory.rss_kb) / args.held,
                        "pss_kb": (held.memory.pss_kb - idle.memory.pss_kb) / args.held,
                    }
                )
                tray.probe.delete_sessions()
                tray.probe.settle()
                _log(f"memory: {tray.label} done")
            data["memory"] = {
                "states": [asdict(s) for s in states],
                "per_conversation": per_conversation,
            }
            data["pool_stats"] = {t.key: t.probe.pool() for t in trays}
        finally:
            for tray in trays:
                tray.http.close()
                tray.probe.close()
                tray.proxy.stop()
                if tray.proxy.killed:
                    problems.append(f"{tray.label} ignored SIGTERM and was killed")
                elif tray.proxy.exit_code != 0:
                    problems.append(
                        f"{tray.label} exited with {tray.proxy.exit_code}; stderr tail: "
                        f"{tray.proxy.stderr_tail(500)!r}"
                    )
            upstream.stop()
            for home in homes:
                stray = core.end_leftovers(str(home))
                if stray:
                    problems.append(f"processes left running with {home} in their env: {stray}")
    problems += settle.problems
    data["seconds"] = time.monotonic() - started
    data["problems"] = problems
    print(report(data))
    failures = [
        (m["label"], s["round"], s["error"])
        for m in data.get("new_conversation", {}).get("modes", [])
        for s in m["samples"]
        if s["error"] is not None
    ]
    failures += [
        (c["mode"], c["round"], e)
        for c in data.get("conversation", {}).get("runs", [])
        for e in c["errors"]
    ]
    if failures or problems:
        print()
        for label, n, error in failures:
            print(f"- {label}, round {n}: {error}")
        for problem in problems:
            print(f"- {problem}")
    if args.json is not None:
        args.json.write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8")
        _log(f"raw numbers written to {args.json}")
    return 1 if failures or problems else 0


def main(argv: list[str] | None = None) -> int:
    return run(parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
