"""Time to first token and total time: the upstream alone, the bare CLI, and claude-tray.

Run from the repo root:

    python -m benchmarks.bench_core [--requests 20] [--first-delay 0.055] [--delay 0.01]
                                    [--chunks 5] [--pool-size N ...] [--pause 0]
                                    [--json out.json]

Every request goes to the scripted local upstream `tests/upstream.py`; before each one a
reply is queued that waits `--first-delay` seconds before its first event and `--delay`
seconds between its `--chunks` text deltas, so every path sees the same upstream. Paths:

  (a) the Anthropic Python SDK straight to the upstream: the floor;
  (b) the bundled `claude` CLI started fresh per request, spoken to in stream-json with no
      SDK in between (TTFT: its first `text_delta` stream event; total: its `result` line);
  (c) claude-tray (`python -m tray_app serve`), through the OpenAI SDK (streaming chat
      completions) and through the Anthropic SDK (streaming messages). Each
      `--pool-size N` starts one proxy with CLAUDE_TRAY_POOL_SIZE=N (0: no warm pool),
      so `--pool-size 2 --pool-size 0` compares the pool on and off in one run; without
      it one proxy runs with its default settings.

After warm-up requests, the paths take turns request by request (a, b, c, c, a, b, ...)
so that machine noise hits all of them alike. Every request is a new conversation:
after each one the benchmark deletes the proxies' sessions (which ends the processes
holding them, so they do not pile up to `max_processes`), waits until every warm pool
is full again and no CLI process is left exiting, then sleeps `--pause` seconds (a
process just started keeps a core busy for a second or two after it is ready). The
Markdown report goes to stdout, progress and problems to stderr; a failed request is
reported and the run goes on.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import re
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from importlib import metadata
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

from benchmarks import command_line
from benchmarks.tray_probe import TrayProbe

if TYPE_CHECKING:
    from tests.upstream import Reply, Upstream

REPO = Path(__file__).resolve().parent.parent
WARMUP = 2
REQUEST_TIMEOUT = 60.0  # seconds for one request, whatever the path
PROXY_START_TIMEOUT = 60.0
PROXY_STOP_TIMEOUT = 20.0
# Never let the user's own Anthropic/OpenAI settings leak into a child: the benchmark
# must only ever talk to its local upstream.
_STRIPPED_ENV = (
    "ANTHROPIC_BASE_URL",
    "ANTHROPIC_AUTH_TOKEN",
    "ANTHROPIC_API_KEY",
    "ANTHROPIC_MODEL",
    "OPENAI_BASE_URL",
    "OPENAI_API_KEY",
    "CLAUDE_CONFIG_DIR",
)
_LISTENING = re.compile(r"listening on (https?://\S+)")


@dataclass(frozen=True)
class Timing:
    ttft: float  # seconds from the start of the request to the first text token
    total: float  # seconds from the start of the request to its end
    text: str


@dataclass
class Sample:
    round: int
    ttft_ms: float | None = None
    total_ms: float | None = None
    upstream_requests: int = 0
    error: str | None = None


@dataclass
class Mode:
    key: str
    label: str
    run: Callable[[str], Timing]
    samples: list[Sample] = field(default_factory=list)
    warmup_errors: list[str] = field(default_factory=list)

    def ok(self) -> list[Sample]:
        return [s for s in self.samples if s.error is None]


@dataclass
class Tray:
    """One claude-tray proxy of the run: its pool size (None: its default) and probe."""

    pool_size: int | None
    proxy: Proxy
    probe: TrayProbe | None = None

    @property
    def label(self) -> str:
        if self.pool_size is None:
            return "claude-tray"
        if self.pool_size == 0:
            return "claude-tray, pool off"
        return f"claude-tray, pool {self.pool_size}"

    @property
    def key(self) -> str:
        return "tray" if self.pool_size is None else f"tray-pool{self.pool_size}"


# --- environment -------------------------------------------------------------------


def _base_env() -> dict[str, str]:
    env = dict(os.environ)
    for name in _STRIPPED_ENV:
        env.pop(name, None)
    return env


def cli_path() -> Path:
    import claude_agent_sdk

    return Path(claude_agent_sdk.__file__).parent / "_bundled" / "claude"


def cli_env(upstream_url: str, home: Path) -> dict[str, str]:
    env = _base_env()
    env.update(
        ANTHROPIC_BASE_URL=upstream_url,
        ANTHROPIC_API_KEY="test",
        CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC="1",
        CLAUDE_CODE_MAX_RETRIES="0",
        CLAUDE_CONFIG_DIR=str(home / "cfg"),
        HOME=str(home),
    )
    return env


def proxy_env(upstream_url: str, home: Path) -> dict[str, str]:
    env = _base_env()
    for name in [n for n in env if n.startswith("CLAUDE_TRAY_")]:
        del env[name]
    env.update(
        CLAUDE_TRAY_HOME=str(home),
        HOME=str(home),
        CLAUDE_CONFIG_DIR=str(home / "cfg"),
        CLAUDE_TRAY_UPSTREAM_URL=upstream_url,
        CLAUDE_TRAY_UPSTREAM_API_KEY="test",
        CLAUDE_CODE_MAX_RETRIES="0",
        PYTHONUNBUFFERED="1",
    )
    # `python -m tray_app` must find the package even when it is not installed.
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO), env.get("PYTHONPATH")) if p)
    return env


# --- (a) and (c): SDK clients ----------------------------------------------------


def anthropic_runner(base_url: str, api_key: str) -> Callable[[str], Timing]:
    import anthropic

    client = anthropic.Anthropic(
        base_url=base_url, api_key=api_key, max_retries=0, timeout=REQUEST_TIMEOUT
    )

    def run(prompt: str) -> Timing:
        t0 = time.perf_counter()
        ttft: float | None = None
        parts: list[str] = []
        with client.messages.create(
            model="sonnet",
            max_tokens=1024,
            messages=[{"role": "user", "content": prompt}],
            stream=True,
        ) as stream:
            for event in stream:
                if event.type == "content_block_delta" and event.delta.type == "text_delta":
                    if ttft is None and event.delta.text:
                        ttft = time.perf_counter() - t0
                    parts.append(event.delta.text)
        total = time.perf_counter() - t0
        if ttft is None:
            raise RuntimeError("the stream ended without a text delta")
        return Timing(ttft, total, "".join(parts))

    return run


def openai_runner(base_url: str) -> Callable[[str], Timing]:
    import openai

    client = openai.OpenAI(base_url=base_url, api_key="x", max_retries=0, timeout=REQUEST_TIMEOUT)

    def run(prompt: str) -> Timing:
        t0 = time.perf_counter()
        ttft: float | None = None
        parts: list[str] = []
        with client.chat.completions.create(
            model="sonnet",
            messages=[{"role": "user", "content": prompt}],
            stream=True,
        ) as stream:
            for chunk in stream:
                for choice in chunk.choices:
                    content = choice.delta.content
                    if content:
                        if ttft is None:
                            ttft = time.perf_counter() - t0
                        parts.append(content)
        total = time.perf_counter() - t0
        if ttft is None:
            raise RuntimeError("the stream ended without delta.content")
        return Timing(ttft, total, "".join(parts))

    return run


# --- (b): the bare CLI ----------------------------------------------------------------


def cli_command(path: Path) -> list[str]:
    return [
        str(path),
        "--output-format",
        "stream-json",
        "--verbose",
        "--input-format",
        "stream-json",
        "--include-partial-messages",
        "--tools",
        "",
        "--max-turns",
        "1",
        "--model",
        "sonnet",
        "--setting-sources",
        "",
    ]


def _end(proc: subprocess.Popen[Any], grace: float) -> None:
    """Close stdin, wait up to `grace` seconds, then kill. Safe to call twice."""
    if proc.stdin is not None:
        with contextlib.suppress(OSError, ValueError):
            proc.stdin.close()
    try:
        proc.wait(grace)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(10)


def cli_runner(path: Path, env: dict[str, str], cwd: Path) -> Callable[[str], Timing]:
    command = cli_command(path)

    def run(prompt: str) -> Timing:
        line = {
            "type": "user",
            "message": {"role": "user", "content": [{"type": "text", "text": prompt}]},
            "parent_tool_use_id": None,
        }
        with tempfile.TemporaryFile() as stderr:
            t0 = time.perf_counter()
            proc = subprocess.Popen(
                command,
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=stderr,
                env=env,
                cwd=cwd,
            )
            # A hung CLI is killed, which ends the read loop below with EOF.
            watchdog = threading.Timer(REQUEST_TIMEOUT, proc.kill)
            watchdog.start()
            try:
                return _read_cli(proc, line, t0, stderr)
            finally:
                watchdog.cancel()
                _end(proc, 10)

    return run


def _read_cli(
    proc: subprocess.Popen[bytes], line: dict[str, Any], t0: float, stderr: IO[bytes]
) -> Timing:
    assert proc.stdin is not None
    assert proc.stdout is not None
    proc.stdin.write((json.dumps(line) + "\n").encode())
    proc.stdin.flush()
    ttft: float | None = None
    parts: list[str] = []
    for raw in proc.stdout:
        try:
            msg = json.loads(raw)
        except ValueError:
            continue
        if not isinstance(msg, dict):
            continue
        kind = msg.get("type")
        if kind == "stream_event":
            event = msg.get("event") or {}
            delta = event.get("delta") or {}
            if event.get("type") == "content_block_delta" and delta.get("type") == "text_delta":
                if ttft is None and delta.get("text"):
                    ttft = time.perf_counter() - t0
                parts.append(str(delta.get("text", "")))
        elif kind == "result":
            total = time.perf_counter() - t0
            if msg.get("is_error"):
                raise RuntimeError(f"CLI result is_error: {str(msg.get('result'))[:200]}")
            if ttft is None:
                raise RuntimeError("the CLI gave a result without a text_delta")
            return Timing(ttft, total, "".join(parts))
    stderr.seek(0)
    tail = stderr.read().decode("utf-8", "replace").strip()[-300:]
    raise RuntimeError(f"the CLI ended (exit {proc.poll()}) without a result line: {tail!r}")


def cli_version(path: Path, env: dict[str, str], cwd: Path) -> str:
    try:
        out = subprocess.run(
            [str(path), "--version"], env=env, cwd=cwd, capture_output=True, text=True, timeout=60
        )
    except (OSError, subprocess.SubprocessError) as exc:
        return f"unknown ({exc})"
    return out.stdout.strip().split(" ")[0] or "unknown"


# --- (c): the proxy process ----------------------------------------------------------


class Proxy:
    """`python -m tray_app serve --port 0` in a subprocess; `url` once it listens."""

    def __init__(self, env: dict[str, str], home: Path) -> None:
        self.env = env
        self.home = home
        self.proc: subprocess.Popen[str] | None = None
        self.url = ""
        self.banner = ""
        self.stdout: list[str] = []
        self.exit_code: int | None = None
        self.killed = False
        self._stderr: IO[str] | None = None
        self._ready = threading.Event()
        self._drain: threading.Thread | None = None

    @property
    def stderr_path(self) -> Path:
        return self.home / "proxy-stderr.log"

    def start(self) -> str:
        self._stderr = self.stderr_path.open("w", encoding="utf-8")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "tray_app", "serve", "--port", "0"],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=self._stderr,
            env=self.env,
            cwd=REPO,
            text=True,
        )
        self._drain = threading.Thread(target=self._read, name="proxy-stdout", daemon=True)
        self._drain.start()
        deadline = time.monotonic() + PROXY_START_TIMEOUT
        while not self._ready.wait(0.1):
            if self.proc.poll() is not None or time.monotonic() > deadline:
                break
        if not self.url:
            state = (
                f"exited with {self.proc.poll()}"
                if self.proc.poll() is not None
                else f"printed no URL in {PROXY_START_TIMEOUT:.0f} s"
            )
            raise RuntimeError(
                f"claude-tray {state}; stdout {self.stdout!r}; stderr: {self.stderr_tail()!r}"
            )
        return self.url

    def _read(self) -> None:
        assert self.proc is not None
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.stdout.append(line.rstrip("\n"))
            if not self.url:
                match = _LISTENING.search(line)
                if match:
                    self.banner = line.strip()
                    self.url = match.group(1).rstrip("/")
                    self._ready.set()

    def stderr_tail(self, chars: int = 2000) -> str:
        try:
            return self.stderr_path.read_text("utf-8", "replace")[-chars:]
        except OSError:
            return ""

    def stop(self) -> None:
        if self.proc is None:
            return
        try:
            if self.proc.poll() is None:
                self.proc.send_signal(signal.SIGTERM)
                try:
                    self.proc.wait(PROXY_STOP_TIMEOUT)
                except subprocess.TimeoutExpired:
                    self.killed = True
                    self.proc.kill()
                    self.proc.wait(10)
            self.exit_code = self.proc.returncode
        finally:
            if self._drain is not None:
                self._drain.join(5)
            if self._stderr is not None:
                self._stderr.close()


def leftover_processes(marker: str) -> list[int]:
    """PIDs (Linux only) of processes whose environment still mentions `marker`."""
    found: list[int] = []
    proc = Path("/proc")
    if not proc.is_dir():
        return found
    needle = marker.encode()
    for entry in proc.iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            if needle in (entry / "environ").read_bytes():
                found.append(int(entry.name))
        except OSError:
            continue
    return found


def end_leftovers(marker: str) -> list[int]:
    """End, by PID, stray descendants of what this run started (they carry its temp dir)."""
    pids = leftover_processes(marker)
    for pid in pids:
        with contextlib.suppress(OSError):
            os.kill(pid, signal.SIGKILL)
    return pids


# --- the run ----------------------------------------------------------------------


def scripted_reply(args: argparse.Namespace) -> tuple[Reply, str]:
    from tests.upstream import text

    words = ["Hello", " from", " the", " benchmark", " upstream", " again", " and", " again"]
    chunks = [words[i % len(words)] for i in range(args.chunks)]
    return text(*chunks, first_delay=args.first_delay, delay=args.delay), "".join(chunks)


def measure(mode: Mode, upstream: Upstream, reply: Reply, expected: str, n: int) -> Sample:
    """One request through `mode`; never raises."""
    sample = Sample(round=n)
    upstream.clear()
    upstream.push(reply)
    prompt = f"benchmark {mode.key} request {n}: say hello"
    try:
        timing = mode.run(prompt)
    except Exception as exc:
        sample.error = f"{type(exc).__name__}: {exc}"[:500]
    else:
        sample.ttft_ms = timing.ttft * 1000
        sample.total_ms = timing.total * 1000
        if timing.text != expected:
            sample.error = f"unexpected text {timing.text[:80]!r} (wanted {expected!r})"
    sample.upstream_requests = len(upstream.messages_requests())
    if sample.error is None and sample.upstream_requests != 1:
        sample.error = f"the upstream saw {sample.upstream_requests} requests, not 1"
    return sample


def percentile(values: list[float], q: float) -> float:
    """Linear interpolation between closest ranks (numpy's default)."""
    ordered = sorted(values)
    if len(ordered) == 1:
        return ordered[0]
    pos = (len(ordered) - 1) * q
    low = int(pos)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (pos - low)


def summarize(mode: Mode) -> dict[str, float | int | None]:
    ok = mode.ok()
    ttft = [s.ttft_ms for s in ok if s.ttft_ms is not None]
    total = [s.total_ms for s in ok if s.total_ms is not None]
    return {
        "ok": len(ok),
        "failed": len(mode.samples) - len(ok),
        "ttft_median_ms": statistics.median(ttft) if ttft else None,
        "ttft_p95_ms": percentile(ttft, 0.95) if ttft else None,
        "total_median_ms": statistics.median(total) if total else None,
        "total_p95_ms": percentile(total, 0.95) if total else None,
    }


def overhead(
    proxy: dict[str, float | int | None], cli: dict[str, float | int | None]
) -> dict[str, float | None]:
    """Median differences (ms) and ratios of a claude-tray path over the bare CLI."""
    out: dict[str, float | None] = {}
    for metric in ("ttft", "total"):
        p, c = proxy[f"{metric}_median_ms"], cli[f"{metric}_median_ms"]
        if p is None or c is None:
            out[f"{metric}_diff_ms"] = out[f"{metric}_ratio"] = None
        else:
            out[f"{metric}_diff_ms"] = float(p - c)
            out[f"{metric}_ratio"] = float(p / c) if c else None
    return out


def _ms(value: float | int | None) -> str:
    return "n/a" if value is None else f"{value:.0f} ms"


def _signed_ms(value: float | None) -> str:
    return "n/a" if value is None else f"{value:+.0f} ms"


def _ratio(value: float | None) -> str:
    return "n/a" if value is None else f"×{value:.2f}"


def machine() -> dict[str, Any]:
    try:
        cpus = len(os.sched_getaffinity(0))
    except AttributeError:
        cpus = os.cpu_count() or 0
    model = ""
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    try:
        sdk = metadata.version("claude-agent-sdk")
    except metadata.PackageNotFoundError:
        sdk = "unknown"
    return {
        "system": f"{platform.system()} {platform.machine()}",
        "cpu": model or platform.processor() or "unknown",
        "nproc": cpus,
        "python": platform.python_version(),
        "claude_agent_sdk": sdk,
    }


def report(
    modes: list[Mode],
    summaries: dict[str, dict[str, float | int | None]],
    overheads: dict[str, dict[str, float | None]],
    command: str,
    host: dict[str, Any],
) -> str:
    lines = [
        "| Path | TTFT median | TTFT p95 | Total median | Total p95 | OK |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for mode in modes:
        s = summaries[mode.key]
        lines.append(
            f"| {mode.label} | {_ms(s['ttft_median_ms'])} | {_ms(s['ttft_p95_ms'])} "
            f"| {_ms(s['total_median_ms'])} | {_ms(s['total_p95_ms'])} "
            f"| {s['ok']}/{len(mode.samples)} |"
        )
    lines += [
        "",
        "| claude-tray over the bare CLI (medians) | TTFT | TTFT ratio | Total | Total ratio |",
        "|---|---:|---:|---:|---:|",
    ]
    for mode in modes:
        o = overheads.get(mode.key)
        if o is not None:
            lines.append(
                f"| {mode.label} | {_signed_ms(o['ttft_diff_ms'])} | {_ratio(o['ttft_ratio'])} "
                f"| {_signed_ms(o['total_diff_ms'])} | {_ratio(o['total_ratio'])} |"
            )
    lines += [
        "",
        f"`{command}` on {host['system']} ({host['cpu']}), nproc {host['nproc']}, "
        f"Python {host['python']}, Claude Code CLI {host['cli']} "
        f"(claude-agent-sdk {host['claude_agent_sdk']}); {host['requests']} requests per path "
        f"after {WARMUP} warm-ups, interleaved; after every request the proxies' sessions "
        f"were deleted and their warm pools left to refill, then a {host['pause']:g} s pause.",
    ]
    stats = host.get("pool_stats") or {}
    for mode in modes:
        key = mode.key.rsplit("-", 1)[0]
        pool = stats.pop(key, None)
        if pool is not None and pool.get("enabled"):
            label = mode.label.rsplit(",", 1)[0].removeprefix("(c) ")
            lines.append(
                f"{label}: {pool['warm_hits']} new conversations got a warm process, "
                f"{pool['warm_misses']} did not (warm-ups included)."
            )
    return "\n".join(lines)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.bench_core",
        description="Latency of the upstream alone, the bare CLI, and claude-tray.",
    )
    parser.add_argument("--requests", type=int, default=20, help="measured requests per path")
    parser.add_argument(
        "--first-delay", type=float, default=0.055, help="upstream seconds before the stream"
    )
    parser.add_argument(
        "--delay", type=float, default=0.01, help="upstream seconds between text deltas"
    )
    parser.add_argument("--chunks", type=int, default=5, help="text deltas per reply")
    parser.add_argument(
        "--pool-size",
        type=int,
        action="append",
        dest="pool_sizes",
        metavar="N",
        help="start a proxy with this warm pool size (repeat to compare; 0 turns it off)",
    )
    parser.add_argument(
        "--pause",
        type=float,
        default=0.0,
        help="seconds to sleep after each request, once the proxies have settled",
    )
    parser.add_argument("--json", type=Path, help="write the raw numbers here")
    args = parser.parse_args(argv)
    if args.requests < 1 or args.chunks < 1 or args.first_delay < 0 or args.delay < 0:
        parser.error("--requests and --chunks must be at least 1, delays not negative")
    if args.pause < 0 or any(n < 0 for n in args.pool_sizes or ()):
        parser.error("--pause and --pool-size must not be negative")
    args.command = command_line(parser, args)
    return args


def _log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


@contextlib.contextmanager
def _tempdir(prefix: str) -> Iterator[Path]:
    with tempfile.TemporaryDirectory(prefix=prefix, ignore_cleanup_errors=True) as name:
        yield Path(name)


def _unavailable(reason: str) -> Callable[[str], Timing]:
    def run(prompt: str) -> Timing:
        raise RuntimeError(reason)

    return run


def settle(trays: list[Tray], pause: float) -> list[str]:
    """After a request: delete every session, wait for full warm pools, sleep `pause`.

    Returns what went wrong (a proxy that did not settle); never raises."""
    problems: list[str] = []
    for tray in trays:
        if tray.probe is None:
            continue
        try:
            tray.probe.delete_sessions()
            tray.probe.settle()
        except Exception as exc:
            problems.append(f"{tray.label}: {type(exc).__name__}: {exc}"[:500])
    if pause:
        time.sleep(pause)
    return problems


def run(args: argparse.Namespace) -> int:
    if str(REPO) not in sys.path:
        sys.path.insert(0, str(REPO))
    from tests.upstream import Upstream

    host = machine()
    host["requests"] = args.requests
    host["pause"] = args.pause
    command = args.command
    reply, expected = scripted_reply(args)
    problems: list[str] = []
    upstream = Upstream().start()
    trays: list[Tray] = []
    modes: list[Mode] = []
    with contextlib.ExitStack() as stack:
        cli_home = stack.enter_context(_tempdir("bench-cli-"))
        homes = [cli_home]
        try:
            claude = cli_path()
            env = cli_env(upstream.url, cli_home)
            (cli_home / "cfg").mkdir()
            work = cli_home / "work"
            work.mkdir()
            host["cli"] = cli_version(claude, env, work)
            _log(f"upstream {upstream.url}; CLI {claude} ({host['cli']})")
            modes = [
                Mode(
                    "upstream",
                    "(a) upstream alone, Anthropic SDK",
                    anthropic_runner(upstream.url, "test"),
                ),
                Mode("cli", "(b) bare CLI per request, stream-json", cli_runner(claude, env, work)),
            ]
            for size in args.pool_sizes or [None]:
                home = stack.enter_context(_tempdir("bench-tray-"))
                homes.append(home)
                penv = proxy_env(upstream.url, home)
                if size is not None:
                    penv["CLAUDE_TRAY_POOL_SIZE"] = str(size)
                tray = Tray(size, Proxy(penv, home))
                trays.append(tray)
                try:
                    url = tray.proxy.start()
                except (OSError, RuntimeError) as exc:
                    problems.append(f"{tray.label} did not start: {exc}")
                    _log(problems[-1])
                    tray_openai = tray_anthropic = _unavailable("the proxy is not running")
                else:
                    assert tray.proxy.proc is not None
                    tray.probe = TrayProbe(url, tray.proxy.proc.pid)
                    host.setdefault("proxies", []).append(tray.proxy.banner)
                    _log(f"{tray.label}: {tray.proxy.banner}")
                    tray_openai = openai_runner(url + "/v1")
                    tray_anthropic = anthropic_runner(url, "x")
                modes += [
                    Mode(f"{tray.key}-openai", f"(c) {tray.label}, OpenAI SDK", tray_openai),
                    Mode(
                        f"{tray.key}-anthropic", f"(c) {tray.label}, Anthropic SDK", tray_anthropic
                    ),
                ]
            settle_problems: list[str] = []
            for n in range(-WARMUP, args.requests):
                for mode in modes:
                    sample = measure(mode, upstream, reply, expected, n)
                    if sample.error is not None:
                        what = "warm-up" if n < 0 else f"request {n}"
                        _log(f"  {mode.key} {what} failed: {sample.error}")
                        if n < 0:
                            mode.warmup_errors.append(sample.error)
                    if n >= 0:
                        mode.samples.append(sample)
                    for problem in settle(trays, args.pause):
                        _log(f"  after {mode.key}: {problem}")
                        settle_problems.append(problem)
                _log(f"round {n + 1} of {args.requests} done" if n >= 0 else "warm-up round done")
            if settle_problems:
                problems.append(
                    f"{len(settle_problems)} times a proxy did not settle; first: "
                    f"{settle_problems[0]}"
                )
            for tray in trays:
                if tray.probe is not None:
                    with contextlib.suppress(Exception):
                        host.setdefault("pool_stats", {})[tray.key] = tray.probe.pool()
        finally:
            for tray in trays:
                if tray.probe is not None:
                    tray.probe.close()
                proxy = tray.proxy
                if proxy.proc is None:
                    continue
                proxy.stop()
                if proxy.killed:
                    problems.append(
                        f"{tray.label} ignored SIGTERM for {PROXY_STOP_TIMEOUT:.0f} s "
                        "and was killed"
                    )
                elif proxy.exit_code != 0:
                    problems.append(
                        f"{tray.label} exited with {proxy.exit_code} after SIGTERM; stderr tail: "
                        f"{proxy.stderr_tail(500)!r}"
                    )
            upstream.stop()
            for home in homes:
                stray = end_leftovers(str(home))
                if stray:
                    problems.append(f"processes left running with {home} in their env: {stray}")

    summaries = {mode.key: summarize(mode) for mode in modes}
    overheads = {
        m.key: overhead(summaries[m.key], summaries["cli"])
        for m in modes
        if m.key.startswith("tray")
    }
    print(report(modes, summaries, overheads, command, host))
    failures: dict[tuple[str, str], list[int]] = {}
    for mode in modes:
        for sample in mode.samples:
            if sample.error is not None:
                failures.setdefault((mode.label, sample.error), []).append(sample.round)
    if failures or problems:
        print()
        for (label, error), rounds in failures.items():
            print(f"- {label}, {len(rounds)} failed (requests {rounds}): {error}")
        for problem in problems:
            print(f"- {problem}")
    if args.json is not None:
        data = {
            "command": command,
            "machine": host,
            "params": {
                "requests": args.requests,
                "warmup": WARMUP,
                "first_delay_s": args.first_delay,
                "delay_s": args.delay,
                "chunks": args.chunks,
                "pool_sizes": args.pool_sizes,
                "pause_s": args.pause,
            },
            "modes": {
                m.key: {
                    "label": m.label,
                    "summary": summaries[m.key],
                    "samples": [asdict(s) for s in m.samples],
                    "warmup_errors": m.warmup_errors,
                }
                for m in modes
            },
            "overhead_vs_cli": overheads,
            "problems": problems,
        }
        args.json.write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8")
        _log(f"raw numbers written to {args.json}")
    return 1 if failures or problems else 0


def main(argv: list[str] | None = None) -> int:
    return run(parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
