"""Measure the frozen Linux build: .deb size, installed size, and start-up times.

    python -m benchmarks.bench_frozen [--runs 5]

Builds (or reuses the cached build of) packaging/build-linux.sh, installs the .deb with
dpkg into a scratch root, and reports the median of --runs runs of: `claude-tray
--version` to exit; `claude-tray serve` to /health answering; to the first chat answered
(against the scripted local upstream, a fresh home each run so the pool starts cold); the
tray app to its icon showing under Xvfb (with a tray host and a session bus).
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))

from conftest import proxy_env  # noqa: E402
from desktop import private_env, session_bus, stop, tray_host, wait_for_window, xvfb  # noqa: E402
from upstream import Upstream, text  # noqa: E402


def build() -> tuple[Path, Path]:
    done = subprocess.run(
        ["bash", str(ROOT / "packaging" / "build-linux.sh")],
        env={**os.environ, "PYTHON": sys.executable},
        capture_output=True,
        text=True,
        check=True,
    )
    out = Path(done.stdout.strip().splitlines()[-1])
    [deb] = out.glob("claude-tray_*.deb")
    return out, deb


def install(deb: Path, root: Path) -> Path:
    admin = root / "var" / "lib" / "dpkg"
    for folder in (admin / "info", admin / "updates", admin / "triggers", root / "var" / "log"):
        folder.mkdir(parents=True)
    (admin / "status").touch()
    subprocess.run(
        ["dpkg", f"--root={root}", "--force-not-root", "--force-script-chrootless"]
        + ["--force-depends", "--install", str(deb)],
        capture_output=True,
        check=True,
    )
    return root / "opt" / "claude-tray" / "claude-tray"


def du(path: Path) -> int:
    return sum(p.lstat().st_size for p in path.rglob("*") if p.is_file() and not p.is_symlink())


def time_version(app: Path) -> float:
    began = time.perf_counter()
    subprocess.run([str(app), "--version"], capture_output=True, check=True)
    return time.perf_counter() - began


def time_serve(app: Path, upstream: Upstream, scratch: Path) -> tuple[float, float]:
    """Seconds from exec to /health answering, and to the first chat answered."""
    home = Path(tempfile.mkdtemp(dir=scratch))
    upstream.push(text("Hello", " there"))
    began = time.perf_counter()
    proc = subprocess.Popen(
        [str(app), "serve", "--port", "0"],
        env=proxy_env(home, upstream),
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    try:
        assert proc.stdout is not None
        url = proc.stdout.readline().split()[-1]
        while True:
            try:
                if httpx.get(url + "/health", timeout=5).status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(0.01)
        healthy = time.perf_counter() - began
        reply = httpx.post(
            url + "/v1/chat/completions",
            json={"model": "sonnet", "messages": [{"role": "user", "content": "hi"}]},
            timeout=60,
        )
        reply.raise_for_status()
        answered = time.perf_counter() - began
    finally:
        stop(proc, timeout=20)
    return healthy, answered


def time_tray(app: Path, upstream: Upstream, scratch: Path) -> float:
    """Seconds from exec to the icon's window showing in the tray host."""
    home = Path(tempfile.mkdtemp(dir=scratch))
    env = private_env(home)
    env.update({k: v for k, v in proxy_env(home, upstream).items() if k.startswith("CLAUDE")})
    # A fixed key: the tray would otherwise make one in a keyring this run does not start.
    env["CLAUDE_TRAY_API_KEY"] = "sk-bench"
    env["CLAUDE_TRAY_PORT"] = "0"
    with session_bus(env), xvfb(env), tray_host(env):
        began = time.perf_counter()
        proc = subprocess.Popen(
            [str(app)], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        try:
            wait_for_window(env, "--classname", "^claude-tray$", timeout=60)
            return time.perf_counter() - began
        finally:
            stop(proc, timeout=20)


def median(runs: int, measure: Callable[[], float]) -> float:
    return statistics.median(measure() for _ in range(runs))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()

    began = time.perf_counter()
    out, deb = build()
    print(f"build (cached or not): {time.perf_counter() - began:.1f} s  {out}")
    upstream = Upstream().start()
    scratch = Path(tempfile.mkdtemp(prefix="bench-frozen-"))
    try:
        app = install(deb, scratch / "root")
        installed = du(scratch / "root" / "opt")
        cli = app.parent / "_internal" / "claude_agent_sdk" / "_bundled" / "claude"
        print(f".deb download:      {deb.stat().st_size / 1e6:.0f} MB ({deb.name})")
        print(
            f"installed:          {installed / 1e6:.0f} MB, of which the Claude Code CLI "
            f"{cli.stat().st_size / 1e6:.0f} MB ({cli.stat().st_size / installed:.0%})"
        )
        runs = args.runs
        version = median(runs, lambda: time_version(app))
        serve = [time_serve(app, upstream, scratch) for _ in range(runs)]
        tray = median(runs, lambda: time_tray(app, upstream, scratch))
        print(f"median of {runs} runs:")
        print(f"  --version to exit:          {version * 1000:.0f} ms")
        print(
            f"  serve to /health answering: {statistics.median(h for h, _ in serve) * 1000:.0f} ms"
        )
        print(
            f"  serve to first chat answer: {statistics.median(a for _, a in serve) * 1000:.0f} ms"
        )
        print(f"  tray icon visible (Xvfb):   {tray * 1000:.0f} ms")
    finally:
        upstream.stop()
        shutil.rmtree(scratch, ignore_errors=True)


if __name__ == "__main__":
    main()
