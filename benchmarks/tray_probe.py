"""Looking at a running claude-tray from outside: /health, its sessions, its process tree.

Shared by the benchmarks. Linux only for the process tree (it reads /proc): memory is
VmRSS from /proc/<pid>/status and Pss from /proc/<pid>/smaps_rollup, CPU is utime +
stime from /proc/<pid>/stat, summed over the proxy process and all its descendants.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

_TICK = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100
SETTLE_TIMEOUT = 30.0


# --- the process tree -------------------------------------------------------------


def _stat(pid: int) -> list[str] | None:
    """The fields of /proc/<pid>/stat after the command name (state is [0], ppid [1])."""
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return raw.rsplit(")", 1)[1].split()


def descendants(root: int) -> list[int]:
    """Every live (not zombie) process below `root`, at any depth."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        fields = _stat(int(entry.name))
        if fields is None or fields[0] == "Z":
            continue
        children.setdefault(int(fields[1]), []).append(int(entry.name))
    found: list[int] = []
    todo = [root]
    while todo:
        for child in children.get(todo.pop(), []):
            found.append(child)
            todo.append(child)
    return found


def _cmd(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")[0].decode(errors="replace")
    except OSError:
        return ""


def claude_children(root: int) -> list[int]:
    """Descendants of `root` running a `claude` binary."""
    return [pid for pid in descendants(root) if Path(_cmd(pid)).name == "claude"]


def _kb(path: Path, key: str) -> int:
    try:
        for line in path.read_text().splitlines():
            if line.startswith(key + ":"):
                return int(line.split()[1])
    except (OSError, ValueError, IndexError):
        pass
    return 0


@dataclass(frozen=True)
class Memory:
    rss_kb: int  # VmRSS summed (shared pages counted once per process)
    pss_kb: int  # Pss summed (shared pages divided among their users)
    proxy_rss_kb: int  # the Python process alone
    claude: int  # `claude` processes in the tree
    processes: int  # every process in the tree, the proxy included


def tree_memory(root: int) -> Memory:
    pids = [root, *descendants(root)]
    rss = pss = 0
    for pid in pids:
        rss += _kb(Path(f"/proc/{pid}/status"), "VmRSS")
        pss += _kb(Path(f"/proc/{pid}/smaps_rollup"), "Pss")
    return Memory(
        rss_kb=rss,
        pss_kb=pss,
        proxy_rss_kb=_kb(Path(f"/proc/{root}/status"), "VmRSS"),
        claude=len(claude_children(root)),
        processes=len(pids),
    )


def tree_cpu_seconds(root: int) -> float:
    """CPU time (user + system) used so far by `root` and its live descendants."""
    ticks = 0
    for pid in [root, *descendants(root)]:
        fields = _stat(pid)
        if fields is not None:
            ticks += int(fields[11]) + int(fields[12])
    return ticks / _TICK


def idle_cpu_share(root: int, seconds: float) -> float:
    """The share of one core the tree used over `seconds` of waiting (1.0 = a full core)."""
    start_cpu = tree_cpu_seconds(root)
    start = time.monotonic()
    time.sleep(seconds)
    return (tree_cpu_seconds(root) - start_cpu) / (time.monotonic() - start)


# --- talking to the proxy --------------------------------------------------------


class TrayProbe:
    """HTTP side-channel to one proxy: /health, deleting sessions, waiting for calm."""

    def __init__(self, url: str, pid: int) -> None:
        self.url = url
        self.pid = pid
        self.http = httpx.Client(base_url=url, timeout=30.0)

    def close(self) -> None:
        self.http.close()

    def health(self) -> dict[str, Any]:
        response = self.http.get("/health")
        response.raise_for_status()
        body: dict[str, Any] = response.json()
        return body

    def pool(self) -> dict[str, Any]:
        pool: dict[str, Any] = self.health()["pool"]
        return pool

    def delete_sessions(self) -> int:
        """Delete every session the proxy keeps (which ends the processes holding them)."""
        deleted = 0
        while True:
            response = self.http.get("/v1/sessions", params={"limit": 1000})
            response.raise_for_status()
            ids = [s["id"] for s in response.json().get("data", [])]
            if not ids:
                return deleted
            for session_id in ids:
                self.http.delete(f"/v1/sessions/{session_id}")
                deleted += 1

    def settle(
        self, *, held: int | None = 0, full: bool = True, timeout: float = SETTLE_TIMEOUT
    ) -> float:
        """Wait until the proxy is calm: no warm process starting, no turn running, no
        `claude` process other than the warm and held ones (a closed one still exiting);
        with `full`, every warm process the pool wants is there; with `held` a number,
        exactly that many conversations are held. Returns the seconds waited; raises on
        timeout."""
        start = time.monotonic()
        pool: dict[str, Any] = {}
        claude = -1
        while time.monotonic() - start < timeout:
            pool = self.pool()
            # The pool warms only for specs it has seen: none before the first request.
            seen = pool["warm_hits"] + pool["warm_misses"] > 0
            want_warm = pool["size"] if pool["enabled"] and seen and full else 0
            holding = pool["holding_conversations"]
            claude = len(claude_children(self.pid))
            if (
                pool["warm"] >= want_warm
                and pool["starting"] == 0
                and pool["running_turns"] == 0
                and (held is None or holding == held)
                and claude == pool["warm"] + holding
            ):
                return time.monotonic() - start
            time.sleep(0.05)
        raise RuntimeError(
            f"the proxy did not settle in {timeout:.0f} s: pool {json.dumps(pool)}, "
            f"{claude} claude processes"
        )
