"""One `claude` process: how it was started, its stream of lines, its client tools, its end.

A process is started for one `Spec` (what must be fixed when the CLI starts) and then
serves one conversation for as long as it lives: turn after turn on one stdin, which
is what makes a continued conversation fast. Whoever holds a CliProcess owns it and
must `kill` or `close` it; nothing else ends it.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import time
import uuid
from collections import deque
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from claude_agent_sdk import (
    AgentDefinition,
    ClaudeAgentOptions,
    ClaudeSDKClient,
    ClaudeSDKError,
    CLIConnectionError,
    CLINotFoundError,
    HookMatcher,
)
from claude_agent_sdk.types import SystemPromptFile

from tray_app import __version__
from tray_app.backend.agent import AgentSpec, path_guard
from tray_app.backend.client_tools import ToolBridge
from tray_app.backend.env import child_env
from tray_app.backend.transcript import user_line
from tray_app.errors import ClaudeTrayError, CliFailed, CliUnavailable
from tray_app.protocol.model import Effort, Part, ToolResultPart, ToolSpec
from tray_app.settings import Settings

log = logging.getLogger(__name__)

STDERR_LINES = 50
_KILL_WAIT = 0.5
# A client tool call waits for the client's next request; the CLI must not give up first.
_TOOL_WAIT_MS = 24 * 3600 * 1000
# The SDK passes the system prompt and the output schema as single command-line
# arguments. Linux refuses one argument over 128 KiB (MAX_ARG_STRLEN: the spawn fails
# with E2BIG, "Argument list too long") and Windows a whole command line over 32,767
# characters. A system prompt above this size goes through a file instead
# (--system-prompt-file); a schema has no such door, so a larger one is refused.
ARGUMENT_MAX = 16 * 1024
SCHEMA_MAX = 30_000 if os.name == "nt" else 128 * 1024 - 1
# What the CLI (2.1.330) prints to stderr, exiting 1 at start, for a schema it refuses;
# it has no other way of saying so.
_SCHEMA_REFUSED = "--json-schema"


class SchemaRejected(ClaudeTrayError):
    """The structured-output JSON schema cannot be used (the CLI refused it, or it is too
    large to hand to the CLI); `reason` says why. The caller names its own field."""

    def __init__(self, reason: str) -> None:
        super().__init__(f"The JSON schema for structured output cannot be used: {reason}")
        self.reason = reason


@dataclass(frozen=True, slots=True)
class Spec:
    """What a CLI process is started with and cannot change later."""

    model: str
    system: str | None = None
    tools: tuple[ToolSpec, ...] = ()
    max_tokens: int | None = None
    effort: Effort | None = None
    thinking_budget: int | None = None
    output_schema: dict[str, Any] | None = None
    agent: AgentSpec | None = None
    max_budget_usd: float | None = None
    fallback_model: str | None = None

    def cwd(self, default: str) -> str:
        """Where the CLI runs: the agent's working directory, else claude-tray's own."""
        return self.agent.cwd if self.agent is not None else default

    @property
    def key(self) -> str:
        """A stable text form: equal keys mean one process can serve either spec."""
        return json.dumps(self.to_json(), sort_keys=True, ensure_ascii=False)

    def to_json(self) -> dict[str, Any]:
        return {
            "model": self.model,
            "system": self.system,
            "tools": [[t.name, t.description, t.input_schema] for t in self.tools],
            "max_tokens": self.max_tokens,
            "effort": self.effort,
            "thinking_budget": self.thinking_budget,
            "output_schema": self.output_schema,
            "agent": None if self.agent is None else self.agent.to_json(),
            "max_budget_usd": self.max_budget_usd,
            "fallback_model": self.fallback_model,
        }

    @classmethod
    def from_json(cls, raw: dict[str, Any]) -> Spec:
        return cls(
            model=str(raw["model"]),
            system=raw.get("system"),
            tools=tuple(ToolSpec(n, d, s) for n, d, s in raw.get("tools", [])),
            max_tokens=raw.get("max_tokens"),
            effort=raw.get("effort"),
            thinking_budget=raw.get("thinking_budget"),
            output_schema=raw.get("output_schema"),
            agent=None if raw.get("agent") is None else AgentSpec.from_json(raw["agent"]),
            max_budget_usd=raw.get("max_budget_usd"),
            fallback_model=raw.get("fallback_model"),
        )


State = Literal["idle", "busy", "awaiting_tools", "dead"]


class CliProcess:
    """A started CLI process and the conversation it serves."""

    def __init__(self, client: ClaudeSDKClient, spec: Spec, session_id: str, bridge: ToolBridge):
        self.spec = spec
        self.session_id = session_id
        self.bridge = bridge
        self.state: State = "idle"
        self.pending_tools: frozenset[str] = frozenset()
        self.turns = 0  # turns answered; 0 for a warm process nobody has used
        self.last_used = time.monotonic()
        self.stderr: deque[str] = deque(maxlen=STDERR_LINES)
        self._client = client
        self._disconnecting: asyncio.Future[None] | None = None
        # Files that live as long as the process (a system prompt too large for argv).
        self.files: list[Path] = []
        # One iterator for the process's life: the CLI's lines across every turn.
        self.lines: AsyncIterator[dict[str, Any]] = client._query.receive_messages()  # type: ignore[union-attr]  # noqa: SLF001 - the SDK's parsed messages drop fields we need

    @property
    def alive(self) -> bool:
        proc = _process(self._client)
        return self.state != "dead" and proc is not None and proc.returncode is None

    @property
    def exit_code(self) -> int | None:
        code = getattr(_process(self._client), "returncode", None)
        return code if isinstance(code, int) else None

    async def send(self, parts: tuple[Part, ...]) -> None:
        """Ask the CLI to answer a new user message."""
        await self._client.query(_one(user_line(parts)))

    def supply(self, results: tuple[ToolResultPart, ...]) -> None:
        """Hand the client's tool results to the calls waiting for them."""
        self.bridge.supply(results)
        self.pending_tools = frozenset()

    async def kill(self) -> None:
        """End the process now (a turn abandoned, a timeout, shutdown)."""
        self.state = "dead"
        await self._terminate()
        # Only now: an answered call must not reach a CLI that could still act on it.
        self.bridge.abandon("The conversation ended before the client sent this result.")
        await self._disconnect()
        _remove(self.files)

    async def close(self) -> None:
        """Close stdin and let the CLI flush its transcript and exit (bounded).

        A process waiting for a client's tool results is killed instead: answering
        its call with anything would make the CLI ask the model again, a call nobody
        would read and the user would pay for.
        """
        if self.bridge.waiting:
            await self.kill()
            return
        self.state = "dead"
        await self._disconnect()
        _remove(self.files)

    async def _disconnect(self) -> None:
        # Shutdown and a failing turn may both end a process; the SDK's close is not
        # safe to run twice at once, so the second caller waits for the first.
        if self._disconnecting is None:
            self._disconnecting = asyncio.ensure_future(self._disconnect_once())
        await asyncio.shield(self._disconnecting)

    async def _disconnect_once(self) -> None:
        try:
            # The SDK waits up to 5 s for a clean exit after stdin EOF.
            async with asyncio.timeout(8):
                await self._client.disconnect()
        except TimeoutError:
            await self._terminate()
        except Exception:
            log.warning("closing a CLI process failed", exc_info=True)

    async def _terminate(self) -> None:
        proc = _process(self._client)
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


async def start(
    spec: Spec,
    settings: Settings,
    parent_env: Mapping[str, str],
    cli_path: str,
    work_dir: str,
    *,
    resume: str | None = None,
) -> CliProcess:
    """Start a CLI process for `spec`, new (its own session id) or resuming `resume`."""
    schema_json = None if spec.output_schema is None else json.dumps(spec.output_schema)
    if schema_json is not None and len(schema_json.encode()) > SCHEMA_MAX:
        raise SchemaRejected(
            f"it is {len(schema_json.encode())} bytes of JSON, and the Claude Code CLI takes "
            f"at most {SCHEMA_MAX} bytes (it is passed on the command line)."
        )
    bridge = ToolBridge(spec.tools)
    session_id = resume or str(uuid.uuid4())
    files: list[Path] = []
    system: str | SystemPromptFile | None = spec.system
    if spec.system is not None and len(spec.system.encode()) > ARGUMENT_MAX:
        prompt_file = await asyncio.to_thread(
            _private_file, settings.paths.data_dir / "prompts", spec.system
        )
        files.append(prompt_file)
        system = {"type": "file", "path": str(prompt_file)}
    stderr: deque[str] = deque(maxlen=STDERR_LINES)
    env = child_env(settings, parent_env, max_tokens=spec.max_tokens)
    # Without this the CLI hides MCP tools behind its ToolSearch tool (DESIGN.md §2).
    env["ENABLE_TOOL_SEARCH"] = "false"
    env.setdefault("MCP_TOOL_TIMEOUT", str(_TOOL_WAIT_MS))
    server = bridge.server()
    mcp_servers: dict[str, Any] = {server["name"]: server} if spec.tools else {}
    agent = spec.agent
    if agent is not None:
        mcp_servers.update(agent.mcp_servers)
    options = ClaudeAgentOptions(
        cli_path=cli_path,
        # Without agent mode no built-in tool can touch this machine: the client's tools
        # are offered as real definitions and run by the client.
        tools=[] if agent is None else (None if agent.tools is None else list(agent.tools)),
        mcp_servers=mcp_servers,
        allowed_tools=bridge.allowed + (list(agent.allowed_tools) if agent else []),
        disallowed_tools=list(agent.disallowed_tools) if agent else [],
        permission_mode=agent.permission_mode if agent else None,  # type: ignore[arg-type]
        agents=_subagents(agent),
        extra_args={"agent": agent.agent} if agent and agent.agent else {},
        hooks=(
            {"PreToolUse": [HookMatcher(matcher=None, hooks=[path_guard(agent.cwd)])]}
            if agent
            else None
        ),
        max_budget_usd=spec.max_budget_usd,
        fallback_model=spec.fallback_model,
        include_partial_messages=True,
        model=spec.model,
        system_prompt=system,
        effort=spec.effort,
        thinking=_thinking(spec.thinking_budget),
        output_format=(
            {"type": "json_schema", "schema": spec.output_schema}
            if spec.output_schema is not None
            else None
        ),
        # The user's settings, hooks and plugins belong to their own Claude Code
        # sessions; a proxy turn starts from a clean slate (and starts faster).
        setting_sources=[],
        cwd=spec.cwd(work_dir),
        resume=resume,
        session_id=None if resume else session_id,
        env=env,
        stderr=stderr.append,
        # Names us to the CLI, and spares the SDK deriving a label on every spawn.
        client_app=f"claude-tray/{__version__}",
    )
    client = ClaudeSDKClient(options)
    try:
        await client.connect()
    except (CLINotFoundError, FileNotFoundError, PermissionError) as exc:
        await _discard(client, files)
        raise CliUnavailable(cli_path, str(exc) or type(exc).__name__) from exc
    except CLIConnectionError as exc:
        await _discard(client, files)
        raise CliUnavailable(cli_path, f"{exc}; {' '.join(stderr)[-300:]}") from exc
    except ClaudeSDKError as exc:
        # The process died while starting (killed, crashed): the turn cannot run.
        await _discard(client, files)
        refusal = next((line for line in stderr if _SCHEMA_REFUSED in line), None)
        if spec.output_schema is not None and refusal is not None:
            # Matched on the CLI's words because that is all it gives: exit code 1 and
            # "Error: --json-schema is not a valid JSON Schema: <why>" on stderr.
            raise SchemaRejected(refusal.removeprefix("Error: ").strip()) from exc
        raise CliFailed(getattr(exc, "exit_code", None), "\n".join(stderr)) from exc
    except BaseException:
        await _discard(client, files)
        raise
    process = CliProcess(client, spec, session_id, bridge)
    process.stderr = stderr
    process.files = files
    return process


def _subagents(agent: AgentSpec | None) -> dict[str, AgentDefinition] | None:
    if agent is None or not agent.agents:
        return None
    return {
        a.name: AgentDefinition(
            description=a.description,
            prompt=a.prompt,
            tools=None if a.tools is None else list(a.tools),
            model=a.model,
        )
        for a in agent.agents
    }


def _thinking(budget: int | None) -> Any:
    if budget is None:
        return None
    if budget == 0:
        return {"type": "disabled"}
    return {"type": "enabled", "budget_tokens": budget}


async def _discard(client: ClaudeSDKClient, files: list[Path]) -> None:
    proc = _process(client)
    if proc is not None and proc.returncode is None:
        with contextlib.suppress(ProcessLookupError):
            proc.kill()
        with contextlib.suppress(Exception):
            await proc.wait()
    with contextlib.suppress(Exception):
        async with asyncio.timeout(2):
            await client.disconnect()
    _remove(files)


def _private_file(folder: Path, text: str) -> Path:
    """`text` in a new file only the user can read (a system prompt may be private)."""
    folder.mkdir(mode=0o700, parents=True, exist_ok=True)
    path = folder / f"system-{uuid.uuid4().hex}.txt"
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as stream:
        stream.write(text)
    return path


def _remove(files: list[Path]) -> None:
    for path in files:
        with contextlib.suppress(OSError):
            path.unlink()
    files.clear()


async def _one(line: dict[str, Any]) -> AsyncIterator[dict[str, Any]]:
    yield line


def _process(client: ClaudeSDKClient) -> Any:
    # The SDK does not expose its child; we need it to kill within our own deadline
    # (its close() waits up to 5 s, too long for a client that has gone away).
    transport = getattr(client, "_transport", None)
    return getattr(transport, "_process", None)
