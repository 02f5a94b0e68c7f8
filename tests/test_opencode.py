"""OpenCode end to end: the real `opencode run` (pinned in tests/tools.py, installed by
.ci/check) talks to a real `claude-tray serve` through OpenCode's chat-completions provider
(`@ai-sdk/openai-compatible`), and the real CLI behind the proxy talks to the scripted
upstream.

What OpenCode 1.18.33 sends (recorded against a plain chat-completions server): a title
request (system "You are a title generator…", no tools) started in parallel with the main
one, and abandoned if the main one finishes first; then the main request with its ten
tools (`tool_choice: "auto"`, JSON-Schema 2020-12 parameters, `stream_options.
include_usage`, `max_tokens: 32000`, `cache_control` on messages); after a tool call, the
same request again with the assistant `tool_calls` and a `role: "tool"` result.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from conftest import Proxy
from tools import OPENCODE_TOOLS, opencode_home, require_opencode, write_opencode_config
from upstream import Recorded, Reply, ToolUse, Upstream, text

# A run takes about 4 s against a plain server; through the proxy each model request is
# a CLI turn. OpenCode retries a 5xx answer with backoff for ever, so bound it.
OPENCODE_TIMEOUT = 150
PREFIX = "mcp__client__"
# OpenCode's `read` tool parameters, as it sends them (less `$schema`).
READ_SCHEMA = {
    "type": "object",
    "properties": {
        "filePath": {
            "type": "string",
            "description": "The absolute path to the file or directory to read",
        },
        "offset": {
            "minimum": 0,
            "type": "integer",
            "maximum": 9007199254740991,
            "description": "The line number to start reading from (1-indexed)",
        },
        "limit": {
            "minimum": 0,
            "type": "integer",
            "maximum": 9007199254740991,
            "description": "The maximum number of lines to read (defaults to 2000)",
        },
    },
    "required": ["filePath"],
}


# ---- reading the Anthropic requests the upstream receives ----


def _texts(content: Any) -> list[str]:
    if isinstance(content, str):
        return [content]
    return [b.get("text", "") for b in content or [] if isinstance(b, dict)]


def system_text(body: dict[str, Any]) -> str:
    return "\n".join(_texts(body.get("system")))


def tool_names(body: dict[str, Any]) -> list[str]:
    return [t.get("name", "") for t in body.get("tools") or []]


def blocks(body: dict[str, Any], kind: str) -> list[dict[str, Any]]:
    out = []
    for message in body.get("messages", []):
        content = message.get("content")
        if isinstance(content, list):
            out.extend(b for b in content if isinstance(b, dict) and b.get("type") == kind)
    return out


def result_text(block: dict[str, Any]) -> str:
    return "\n".join(_texts(block.get("content")))


def is_title_request(body: dict[str, Any]) -> bool:
    return "title generator" in system_text(body)


def wants_read(body: dict[str, Any]) -> bool:
    return PREFIX + "read" in tool_names(body) and not blocks(body, "tool_result")


def has_tool_result(body: dict[str, Any]) -> bool:
    return bool(blocks(body, "tool_result"))


# ---- running OpenCode ----


@dataclass
class Run:
    returncode: int | None
    stdout: str
    stderr: str
    events: list[dict[str, Any]] = field(default_factory=list)

    def of_type(self, kind: str) -> list[dict[str, Any]]:
        return [e for e in self.events if e.get("type") == kind]

    def text(self) -> str:
        return "".join(e["part"].get("text", "") for e in self.of_type("text"))


def run_opencode(binary: Path, env: dict[str, str], project: Path, prompt: str) -> Run:
    """`opencode run --format json PROMPT` in `project`; killed (with anything it
    started) if it outlives OPENCODE_TIMEOUT or the test."""
    process = subprocess.Popen(
        [str(binary), "run", "--format", "json", "--print-logs", "--log-level", "INFO", prompt],
        cwd=project,
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    try:
        try:
            out, err = process.communicate(timeout=OPENCODE_TIMEOUT)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            out, err = process.communicate()
            err += f"\n[test] opencode killed after {OPENCODE_TIMEOUT} s"
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        if process.returncode is None:
            process.kill()
            process.communicate()
    events = []
    for line in out.splitlines():
        with contextlib.suppress(ValueError):
            events.append(json.loads(line))
    return Run(process.returncode, out, err, events)


def explain(run: Run, proxy: Proxy, upstream: Upstream) -> str:
    """What a failing assertion shows: OpenCode's output, the proxy's log, and what
    reached the upstream."""

    def summary(r: Recorded) -> str:
        results = [result_text(b)[:200] for b in blocks(r.body, "tool_result")]
        return (
            f"  {r.method} {r.path} system={system_text(r.body)[:60]!r} "
            f"tools={tool_names(r.body)} tool_results={results}"
        )

    requests = "\n".join(summary(r) for r in upstream.messages_requests()) or "  (none)"
    return (
        f"\n--- opencode exit {run.returncode}, stdout:\n{run.stdout[-4000:]}"
        f"\n--- opencode stderr (tail):\n{run.stderr[-6000:]}"
        f"\n--- proxy log (tail):\n{proxy.log()[-6000:]}"
        f"\n--- upstream requests:\n{requests}"
    )


@pytest.mark.timeout(OPENCODE_TIMEOUT + 60)
def test_opencode_runs_its_own_read_tool_through_the_proxy(
    upstream: Upstream, make_proxy: Callable[..., Proxy], tmp_path: Path
) -> None:
    opencode = require_opencode()
    proxy = make_proxy()
    project = tmp_path / "project"
    project.mkdir()
    notes = project / "notes.txt"
    notes.write_text("The secret word is PERSIMMON.\n")
    home = tmp_path / "opencode-home"
    env = opencode_home(home)
    write_opencode_config(home, proxy.openai_url)
    # Replies are picked by what each request is, not by arrival order: OpenCode's title
    # request races its main one (and may be abandoned, or never reach the upstream).
    upstream.push(
        text("Reading notes", when=is_title_request),
        Reply(
            blocks=(ToolUse(name=PREFIX + "read", input={"filePath": str(notes)}),),
            stop_reason="tool_use",
            when=wants_read,
        ),
        text("The file says ", "the secret word is PERSIMMON.", when=has_tool_result),
    )

    run = run_opencode(opencode, env, project, "What does notes.txt say?")
    why = explain(run, proxy, upstream)

    # OpenCode finished, ran its own `read` on the file, and printed the final answer.
    assert run.returncode == 0, why
    tools = [e["part"] for e in run.of_type("tool_use")]
    assert [t["tool"] for t in tools] == ["read"], why
    assert tools[0]["state"]["status"] == "completed", why
    assert tools[0]["state"]["input"] == {"filePath": str(notes)}, why
    assert "PERSIMMON" in tools[0]["state"]["output"], why
    assert run.text() == "The file says the secret word is PERSIMMON.", why

    requests = upstream.messages_requests()
    # Only OpenCode's tools were offered upstream, named for the proxy's MCP server, with
    # their schemas intact; none of Claude Code's own (Bash, Read, Edit, ...).
    for r in requests:
        assert all(n.startswith(PREFIX) for n in tool_names(r.body)), why
    main = [r for r in requests if PREFIX + "read" in tool_names(r.body)]
    assert main, why
    offered = {t["name"]: t for t in main[0].body["tools"]}
    assert {PREFIX + n for n in OPENCODE_TOOLS} <= set(offered), why
    read = offered[PREFIX + "read"]
    assert read["description"].startswith("Read a file or directory from the local filesystem")
    assert {k: v for k, v in read["input_schema"].items() if k != "$schema"} == READ_SCHEMA

    # The file's contents reached "Anthropic" as the result of that very tool call.
    later = [r for r in requests if has_tool_result(r.body)]
    assert later, why
    uses = {b["id"]: b for b in blocks(later[0].body, "tool_use")}
    results = blocks(later[0].body, "tool_result")
    assert len(results) == 1 and "PERSIMMON" in result_text(results[0]), why
    use = uses.get(results[0]["tool_use_id"])
    assert use is not None, why
    assert (use["name"], use["input"]) == (PREFIX + "read", {"filePath": str(notes)}), why
