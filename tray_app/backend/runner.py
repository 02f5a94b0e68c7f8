"""Run one turn: admission, which process answers it (and with what input), events out, records.

A request either extends a conversation this proxy served (found by session id or by
the fingerprint of its history) or starts one. A conversation whose process is still
held continues in it with only the new turn; one whose process is gone resumes from
the CLI's own transcript; a history never seen (or edited, or branched) is written
as a new transcript and resumed, so it can never continue the wrong session. A new
conversation with no history takes a warm process.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import logging
import os
import sys
import time
from collections.abc import AsyncIterator, Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from claude_agent_sdk import ClaudeSDKError, project_key_for_directory

from tray_app.backend import agent as agent_rules
from tray_app.backend import pool as pool_mod
from tray_app.backend.client_tools import PREFIX, client_name
from tray_app.backend.process import CliProcess, SchemaRejected, Spec, start
from tray_app.backend.quota import Quota
from tray_app.backend.store import (
    SessionRecord,
    SessionStore,
    StoreUnavailable,
    UsageEntry,
    title_from_prompt,
)
from tray_app.backend.transcript import write_transcript
from tray_app.errors import (
    Busy,
    ClaudeTrayError,
    CliFailed,
    ExtraUsagePaused,
    ExtraUsageRequired,
    InvalidRequest,
    NotFound,
    NotSignedIn,
    ShuttingDown,
    TurnTimeout,
    UpstreamError,
)
from tray_app.protocol import fingerprint
from tray_app.protocol.cli_events import CliStream, with_index
from tray_app.protocol.common import Collector, tool_choice_hint
from tray_app.protocol.model import (
    BlockStarted,
    BlockStopped,
    CallAbandoned,
    CliEvent,
    ErrorReported,
    Message,
    MessageDelta,
    MessageStarted,
    Part,
    RateLimitReported,
    SessionStarted,
    TextDelta,
    TextPart,
    ThinkingDelta,
    ToolFinished,
    ToolInputDelta,
    ToolResultPart,
    ToolUsePart,
    Turn,
    TurnCompleted,
    Usage,
)
from tray_app.settings import Settings, claude_config_dir

log = logging.getLogger(__name__)
T = TypeVar("T")

# Anthropic's 429 reaches us through the CLI without its Retry-After header.
UPSTREAM_RETRY_AFTER = 30
# Seconds a caller turned away at a full queue should wait; turns take seconds each.
BUSY_RETRY_AFTER = 5
# A tool-result turn the CLI no longer holds is restored as history; the CLI then
# needs a user message to answer (it drops prompts made only of tool results).
CONTINUE_PROMPT = "Continue with the tool results above."
# The result subtype of a turn the CLI stopped at --max-budget-usd (CLI 2.1.330).
BUDGET_STOP = "error_max_budget_usd"
# The tool the CLI adds for structured output (--json-schema); its input is the answer.
STRUCTURED_OUTPUT_TOOL = "StructuredOutput"


class AnswerRestarted(ClaudeTrayError):
    """A model call broke off after part of its answer was streamed to the client, and
    the CLI's retry answered anew (see _Restarts)."""

    def __init__(self) -> None:
        super().__init__(
            "Anthropic broke off this answer after part of it was sent (overloaded, or the "
            "connection was cut), and the answer the model gave when asked again does not "
            "continue it. What arrived so far is incomplete; send the request again."
        )


def bundled_cli() -> str:
    """The `claude` binary inside the SDK wheel (also where the frozen app keeps it)."""
    import claude_agent_sdk

    # The Windows wheel ships `claude.exe`; CreateProcess will not run the bare name.
    name = "claude.exe" if sys.platform == "win32" else "claude"
    return str(Path(claude_agent_sdk.__file__).parent / "_bundled" / name)


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
    if status == 400 and is_extra_usage_answer(detail):
        return ExtraUsageRequired(detail)
    if status == 429:
        return UpstreamError(429, detail, retry_after=UPSTREAM_RETRY_AFTER)
    return UpstreamError(status, detail)


def is_extra_usage_answer(detail: str) -> bool:
    """Anthropic's 400 for third-party traffic on a subscription (DESIGN.md §5): "Third-party
    apps now draw from your extra usage, not your plan limits". It carries no error code
    of its own, so its wording is all there is to recognise it by."""
    text = detail.lower()
    return "extra usage" in text and ("third-party" in text or "plan limits" in text)


@dataclass(frozen=True, slots=True)
class Caller:
    """Who asked: for the usage records and the session list."""

    request_id: str
    client: str = ""
    response_id: str | None = None  # Responses API: the id this answer will carry


@dataclass(slots=True)
class _Plan:
    process: CliProcess
    session_id: str | None  # our public id; None keeps nothing (ephemeral)
    record: SessionRecord | None
    send: tuple[Part, ...] | None  # a user message for the CLI to answer...
    results: tuple[ToolResultPart, ...] | None  # ...or tool results it is waiting for
    tip: str  # fingerprint of the conversation up to and including the new turn
    route: str


class TurnRunner:
    """Admits turns up to the limits and runs each in a process from the pool."""

    def __init__(
        self,
        settings: Settings,
        parent_env: Mapping[str, str],
        cli_path: str,
        store: SessionStore | None = None,
    ) -> None:
        self._settings = settings
        self._parent_env = dict(parent_env)
        self.cli_path = cli_path
        self._store = store
        self.work_dir = os.path.realpath(settings.paths.data_dir / "work")
        self._config_dir = claude_config_dir(self._parent_env)
        self._slots = asyncio.Semaphore(settings.max_concurrent)
        self._waiting = 0
        self._running = 0
        self._closing = False
        # Sessions answering a request now, each with an event set when it is free.
        self._busy: dict[str, asyncio.Event] = {}
        self.quota = Quota()
        self.pool = pool_mod.ProcessPool(
            self._start,
            size=settings.pool_size,
            idle_timeout=settings.pool_idle_timeout,
            max_processes=max(settings.max_processes, settings.max_concurrent),
        )
        self._reaper: asyncio.Task[None] | None = None

    @property
    def stats(self) -> dict[str, int]:
        return {
            "active": self._running,
            "queued": self._waiting,
            "max_concurrent": self._settings.max_concurrent,
            "max_queue": self._settings.max_queue,
        }

    async def open(self) -> None:
        """Start the reaper and warm processes for the specs used before the last restart."""
        os.makedirs(self.work_dir, mode=0o700, exist_ok=True)
        self._reaper = asyncio.get_running_loop().create_task(self.pool.run_reaper())
        specs = await self._store_call(_load_specs)
        if specs:
            self.pool.prewarm(specs)
        saved = await self._store_call(lambda s: s.get_meta(_QUOTA_KEY))
        if saved:
            try:
                self.quota = Quota.from_json(json.loads(saved))
            except (ValueError, TypeError, AttributeError):
                log.warning("ignoring an unreadable saved quota snapshot")

    async def _start(self, spec: Spec, resume: str | None) -> CliProcess:
        return await start(
            spec, self._settings, self._parent_env, self.cli_path, self.work_dir, resume=resume
        )

    # ---- one turn ----

    async def events(self, turn: Turn, model: str, caller: Caller) -> AsyncIterator[CliEvent]:
        """The turn's events, ending with its TurnCompleted; failures raise typed errors.

        Consume it inside `contextlib.aclosing` so that leaving early (a client that
        went away) runs the cleanup at once.
        """
        if self._closing:
            raise ShuttingDown
        if self._settings.on_extra_usage == "pause" and self.quota.extra_usage():
            raise ExtraUsagePaused(self.quota.extra_usage_until or time.time())
        if self._waiting >= self._settings.max_queue and self._slots.locked():
            raise Busy(retry_after=BUSY_RETRY_AFTER)
        self._waiting += 1
        try:
            await self._slots.acquire()
        finally:
            self._waiting -= 1
        self._running += 1
        plan: _Plan | None = None
        outcome = "failed"
        try:
            started = time.monotonic()
            try:
                plan = await self._plan(turn, model, caller.client)
            except SchemaRejected as exc:
                where = turn.output_schema_field or "json_schema"
                raise InvalidRequest(
                    f"The JSON schema in '{where}' was refused: {exc.reason}", param=where
                ) from exc
            log.info(
                "[%s] %s (session %s) ready in %.0f ms",
                caller.request_id,
                plan.route,
                plan.session_id or "ephemeral",
                (time.monotonic() - started) * 1000,
            )
            async for event in self._segment(turn, plan, caller, started):
                if isinstance(event, TurnCompleted):
                    outcome = "awaiting_tools" if event.stop_reason == "tool_use" else "idle"
                    if event.stop_reason == "tool_use" and not plan.process.pending_tools:
                        outcome = "idle"
                yield event
        finally:
            self._finish(plan, outcome)

    async def _plan(self, turn: Turn, model: str, client: str) -> _Plan:
        plan = await self._route(turn, model, client)
        hint = tool_choice_hint(turn)
        if hint and plan.send is not None:
            plan.send = (*plan.send, TextPart(hint))
        return plan

    async def _route(self, turn: Turn, model: str, client: str) -> _Plan:
        """Which process answers, and with what input (see the module docstring)."""
        spec = Spec(
            model=model,
            system=turn.system,
            tools=turn.tools,
            max_tokens=turn.max_tokens,
            effort=turn.effort,
            thinking_budget=turn.thinking_budget,
            output_schema=turn.output_schema,
            agent=None if turn.agent is None else agent_rules.resolve(turn.agent, self._settings),
            max_budget_usd=turn.max_budget_usd,
            fallback_model=turn.fallback_model,
        )
        history_tip = fingerprint.of(turn.system, turn.history)
        tip = fingerprint.extend(history_tip, Message("user", turn.prompt))
        results = (
            tuple(p for p in turn.prompt if isinstance(p, ToolResultPart))
            if turn.prompt and all(isinstance(p, ToolResultPart) for p in turn.prompt)
            else None
        )
        if turn.ephemeral:
            return await self._new(spec, turn, results, tip, None, None)
        # A session named by the client (and not re-sent as history) waits its turn;
        # one found by its history forks, so two clients sharing a history never wait.
        named = (
            bool(turn.session_id or turn.previous_response_id or turn.continue_conversation)
            and not turn.history
        )
        record = await self._find(turn, spec, history_tip, client)
        while record is not None and record.id in self._busy and named:
            await self._busy[record.id].wait()
            record = await self._find(turn, spec, history_tip, client)
        if record is not None and record.id in self._busy:
            log.info("session %s is answering another request; this one forks", record.id)
            record = None
        name = None
        if record is None and turn.session_id and not turn.history:
            stored = await self._store_call(lambda s: s.get(turn.session_id or ""))
            taken = turn.session_id in self._busy or stored is not None
            name = None if taken else turn.session_id
        claimed = record.id if record is not None else name
        if claimed:
            self._busy[claimed] = asyncio.Event()
        try:
            plan = None
            if record is not None:
                plan = await self._continue(record, spec, turn, results, tip)
            if plan is None:
                plan = await self._new(spec, turn, results, tip, record, claimed)
        except BaseException:
            if claimed:
                self._release(claimed)
            raise
        if plan.session_id is not None and plan.session_id not in self._busy:
            self._busy[plan.session_id] = asyncio.Event()
        return plan

    def _release(self, session_id: str) -> None:
        event = self._busy.pop(session_id, None)
        if event is not None:
            event.set()

    async def _find(
        self, turn: Turn, spec: Spec, history_tip: str, client: str
    ) -> SessionRecord | None:
        """The session this request continues, if any.

        A history decides by its fingerprint alone: clients that resend history (and
        OpenCode sends an `x-session-id` too, on its title request as well as its main
        one) can never be steered into the wrong conversation by a name. A name alone
        continues its session when the request is of the same kind (same spec).
        """
        if turn.previous_response_id:
            found = await self._store_call(
                lambda s: s.session_for_response(turn.previous_response_id or "")
            )
            if found is None:
                raise NotFound(
                    f"Previous response with id '{turn.previous_response_id}' not found. "
                    "Responses are kept only when store is not false."
                )
            return await self._store_call(lambda s: s.get(found or ""))
        if turn.history:
            return await self._store_call(lambda s: s.find_by_tip(history_tip))
        if turn.session_id or turn.continue_conversation:
            record = await self._store_call(
                lambda s: s.get(turn.session_id) if turn.session_id else s.latest_for_client(client)
            )
            if record is not None and record.spawn_key not in (None, spec.key):
                log.info(
                    "session %s was started with other settings (system prompt, tools, "
                    "model); this request starts a conversation of its own",
                    record.id,
                )
                return None
            return record
        return None

    async def _continue(
        self,
        record: SessionRecord,
        spec: Spec,
        turn: Turn,
        results: tuple[ToolResultPart, ...] | None,
        tip: str,
    ) -> _Plan | None:
        held = self.pool.take_held(record.id)
        if held is not None:
            fits = held.alive and held.spec.key == spec.key
            if fits and held.state == "awaiting_tools" and results is not None:
                given = {r.tool_use_id for r in results}
                if held.pending_tools <= given:
                    return _Plan(held, record.id, record, None, results, tip, "continued (tools)")
            elif fits and held.state == "idle" and results is None:
                return _Plan(held, record.id, record, turn.prompt, None, tip, "continued")
            self.pool.discard(held)
        if results is None and self._transcript_exists(record.cli_session_id, spec):
            process = await self.pool.new_process(spec, resume=record.cli_session_id)
            return _Plan(process, record.id, record, turn.prompt, None, tip, "resumed")
        if turn.history:
            # Rebuilt from the client's own history; the session keeps its id.
            process, send = await self._rebuild(spec, turn, results)
            return _Plan(process, record.id, record, send, None, tip, "rebuilt")
        return None  # an explicit session whose transcript is gone: start afresh

    async def _new(
        self,
        spec: Spec,
        turn: Turn,
        results: tuple[ToolResultPart, ...] | None,
        tip: str,
        found: SessionRecord | None,
        name: str | None,
    ) -> _Plan:
        """A conversation this proxy does not hold: a warm process, or the history
        written as a transcript. `name` is the session id the client chose, if free."""
        if not turn.history and results is None:
            process = await self.pool.new_process(spec)
            route, send = "new", turn.prompt
        else:
            process, send = await self._rebuild(spec, turn, results)
            route = "new from history"
        if turn.ephemeral:
            return _Plan(process, None, None, send, None, tip, route)
        if name:
            # A named session keeps its name, even when its conversation had to start
            # again (its transcript was gone).
            return _Plan(process, name, found, send, None, tip, route)
        return _Plan(process, process.session_id, None, send, None, tip, route)

    async def _rebuild(
        self, spec: Spec, turn: Turn, results: tuple[ToolResultPart, ...] | None
    ) -> tuple[CliProcess, tuple[Part, ...]]:
        history = list(turn.history)
        send: tuple[Part, ...] = turn.prompt
        if results is not None:
            history.append(Message("user", results))
            send = (TextPart(CONTINUE_PROMPT),)
        prefix = PREFIX if spec.tools else ""
        resume = await asyncio.to_thread(
            write_transcript, self._config_dir, spec.cwd(self.work_dir), history, prefix
        )
        return await self.pool.new_process(spec, resume=resume), send

    def _transcript_exists(self, cli_session_id: str, spec: Spec) -> bool:
        folder = self._config_dir / "projects" / project_key_for_directory(spec.cwd(self.work_dir))
        return (folder / f"{cli_session_id}.jsonl").is_file()

    async def _segment(
        self, turn: Turn, plan: _Plan, caller: Caller, started: float
    ) -> AsyncIterator[CliEvent]:
        process = plan.process
        process.state = "busy"
        if plan.results is not None:
            process.supply(plan.results)
        elif plan.send is not None:
            await process.send(plan.send)
        stream = CliStream()
        collector = Collector(turn.stop)
        reported: ErrorReported | None = None
        usage = _UsageSum()
        deadline = started + self._settings.request_timeout
        last_stop: str | None = None
        shown = _Shown(
            structured=process.spec.output_schema is not None,
            activity=self._settings.agent_activity == "show",
        )
        restarts = _Restarts(streaming=turn.stream)
        while True:
            line = await self._next(process, deadline)
            if line is None:
                raise CliFailed(process.exit_code, "\n".join(process.stderr))
            events = (
                shown_event
                for raw in stream.feed(line)
                for kept in restarts.feed(raw)
                for shown_event in shown.filter(kept)
            )
            for event in events:
                if isinstance(event, ErrorReported):
                    reported = event
                    continue
                if isinstance(event, RateLimitReported):
                    await self._note_rate_limit(event, caller.request_id)
                usage.feed(event)
                if isinstance(event, MessageDelta):
                    last_stop = event.stop_reason
                if isinstance(event, TurnCompleted):
                    if event.is_error and event.subtype == BUDGET_STOP:
                        # Not a failure: the turn stopped where the client asked it to.
                        for extra in shown.note(
                            f"[claude-tray: stopped at max_budget_usd "
                            f"({process.spec.max_budget_usd:g} USD); this turn cost "
                            f"{event.cost_usd or 0:.4f} USD]"
                        ):
                            collector.feed(extra)
                            yield extra
                        # Said as the answer's stop reason, which the translators read
                        # from the last message_delta: cut short, like a token limit.
                        stopped = MessageDelta("max_tokens", None, 0)
                        collector.feed(stopped)
                        yield stopped
                        event = dataclasses.replace(event, is_error=False, stop_reason="max_tokens")
                    if event.is_error:
                        failure = failure_of(event, reported)
                        if isinstance(failure, ExtraUsageRequired):
                            self.quota.note_extra_usage_answer()
                            await self._save_quota()
                        raise failure
                    done = dataclasses.replace(
                        event,
                        session_id=plan.session_id or event.session_id,
                        usage=usage.total() or event.usage,
                    )
                    for extra in shown.structured_answer(done):
                        collector.feed(extra)
                        yield extra
                    if shown.structured and event.structured_output is not None:
                        done = dataclasses.replace(done, stop_reason="end_turn")
                    collector.feed(done)
                    await self._record(turn, plan, caller, collector, done, event.session_id)
                    log.info(
                        "[%s] turn done in %.0f ms (session %s)",
                        caller.request_id,
                        (time.monotonic() - started) * 1000,
                        plan.session_id or "ephemeral",
                    )
                    yield done
                    return
                collector.feed(event)
                yield event
            pending = shown.client_calls
            if _message_stopped(line) and last_stop == "tool_use" and pending:
                # The model called the client's tools: this answer ends here, and the
                # CLI waits in the same process for the results the client will send.
                process.pending_tools = frozenset(pending)
                done = TurnCompleted(
                    session_id=plan.session_id or process.session_id,
                    is_error=False,
                    usage=usage.total() or Usage(),
                    cost_usd=None,
                    stop_reason="tool_use",
                    result_text="",
                    num_turns=0,
                )
                collector.feed(done)
                await self._record(turn, plan, caller, collector, done, process.session_id)
                yield done
                return

    async def _next(self, process: CliProcess, deadline: float) -> dict[str, Any] | None:
        left = deadline - time.monotonic()
        limit = min(self._settings.inactivity_timeout, left)
        try:
            async with asyncio.timeout(max(limit, 0)):
                return await anext(process.lines)
        except StopAsyncIteration:
            return None
        except TimeoutError:
            if left <= self._settings.inactivity_timeout:
                raise TurnTimeout("total", self._settings.request_timeout) from None
            raise TurnTimeout("inactivity", self._settings.inactivity_timeout) from None
        except ClaudeSDKError as exc:
            log.warning("CLI stream failed: %s", exc)
            return None

    async def _record(
        self,
        turn: Turn,
        plan: _Plan,
        caller: Caller,
        collector: Collector,
        done: TurnCompleted,
        cli_session_id: str,
    ) -> None:
        """Store the session's new tip and the usage, before the client can ask again."""
        answer = _answer(collector)
        # A stop sequence cut our answer short of what the CLI keeps: the client's
        # next request cannot be continued in that process as if nothing differed.
        tip = None if collector.stop_sequence else fingerprint.extend(plan.tip, answer)
        now = time.time()
        session_id = plan.session_id
        record = plan.record
        spec_key = plan.process.spec.key

        def write(store: SessionStore) -> None:
            if session_id is not None:
                if record is None and store.get(session_id) is None:
                    store.create(
                        SessionRecord(
                            id=session_id,
                            cli_session_id=cli_session_id,
                            tip=None,
                            api=turn.api,
                            client=caller.client,
                            model=turn.model,
                            title=title_from_prompt(_first_text(turn)),
                            created=now,
                            last_used=now,
                        )
                    )
                store.record_turn(
                    session_id,
                    tip=tip,
                    cli_session_id=cli_session_id,
                    usage=done.usage,
                    cost_usd=done.cost_usd,
                    model=turn.model,
                    spawn_key=spec_key,
                    when=now,
                )
                if caller.response_id:
                    store.link_response(caller.response_id, session_id)
            store.record_usage(
                UsageEntry(
                    when=now,
                    request_id=caller.request_id,
                    session_id=session_id,
                    api=turn.api,
                    client=caller.client,
                    model=turn.model,
                    input_tokens=done.usage.input_tokens,
                    output_tokens=done.usage.output_tokens,
                    cache_read_tokens=done.usage.cache_read_tokens,
                    cache_write_tokens=done.usage.cache_creation_tokens,
                    cost_usd=done.cost_usd,
                    status="ok",
                )
            )

        await self._store_call(write)
        if plan.route.startswith("new"):
            specs = self.pool.recent_specs()
            await self._store_call(lambda s: _save_specs(s, specs))

    async def _store_call(self, fn: Callable[[SessionStore], T]) -> T | None:
        """Run a store operation off the loop; a store that fails never fails a turn."""
        if self._store is None:
            return None
        store = self._store
        try:
            return await asyncio.to_thread(fn, store)
        except StoreUnavailable as exc:
            log.warning("session store: %s", exc)
            return None

    async def _note_rate_limit(self, event: RateLimitReported, request_id: str) -> None:
        if self.quota.note(event):
            log.warning(
                "[%s] Anthropic billed this request as extra usage (the plan's %s window "
                "is used up); on_extra_usage=%s",
                request_id,
                event.window or "usage",
                self._settings.on_extra_usage,
            )
        await self._save_quota()

    async def _save_quota(self) -> None:
        """Persisted, so that a pause outlives a restart."""
        snapshot = json.dumps(self.quota.to_json())
        await self._store_call(lambda s: s.set_meta(_QUOTA_KEY, snapshot))

    def _finish(self, plan: _Plan | None, outcome: str) -> None:
        """Release the turn: hold the process for its conversation, or end it."""
        self._running -= 1
        self._slots.release()
        if plan is None:
            return
        process = plan.process
        if plan.session_id is not None:
            self._release(plan.session_id)
        if outcome == "failed":
            self.pool.discard(process)
            return
        process.turns += 1
        process.state = "awaiting_tools" if outcome == "awaiting_tools" else "idle"
        self.pool.give_back(plan.session_id, process)
        if plan.session_id is None:
            self._forget_transcript(process.session_id, process.spec.cwd(self.work_dir))

    def _forget_transcript(self, cli_session_id: str, cwd: str) -> None:
        folder = self._config_dir / "projects" / project_key_for_directory(cwd)
        # The CLI writes its transcript as it exits; an ephemeral turn keeps nothing.
        asyncio.get_running_loop().call_later(
            10, lambda: (folder / f"{cli_session_id}.jsonl").unlink(missing_ok=True)
        )

    async def close(self, grace: float) -> None:
        """Stop admitting turns, let running ones finish within `grace`, then kill them."""
        self._closing = True
        end = time.monotonic() + grace
        # Runs once, at shutdown, and is bounded by `grace`: a poll is simpler than an event.
        while self._running > 0 and time.monotonic() < end:  # noqa: ASYNC110
            await asyncio.sleep(0.05)
        if self._reaper is not None:
            self._reaper.cancel()
        await self.pool.close()


class _UsageSum:
    """Usage of the model calls in one answer, from the streamed message events."""

    def __init__(self) -> None:
        self._done = Usage()
        self._current: Usage | None = None

    def feed(self, event: CliEvent) -> None:
        if isinstance(event, MessageStarted):
            self._close()
            self._current = event.usage
        elif isinstance(event, MessageDelta) and self._current is not None:
            self._current = dataclasses.replace(self._current, output_tokens=event.output_tokens)

    def _close(self) -> None:
        if self._current is not None:
            c, d = self._current, self._done
            self._done = Usage(
                d.input_tokens + c.input_tokens,
                d.output_tokens + c.output_tokens,
                d.cache_read_tokens + c.cache_read_tokens,
                d.cache_creation_tokens + c.cache_creation_tokens,
            )
            self._current = None

    def total(self) -> Usage | None:
        self._close()
        return self._done if self._done != Usage() else None


class _Restarts:
    """What to do when a model call broke off after part of its answer was out.

    When a call breaks off mid-stream (Anthropic's `overloaded_error` sent as an SSE
    event, a cut connection) the CLI asks again without streaming. CliStream completes
    the answer when the retry continues what was streamed, and says CallAbandoned when
    it does not: the blocks already passed on would be glued to the new answer ("one" +
    "echo: go"). What is done about that, by kind of client:

    - streaming: the client has shown the broken blocks and cannot take them back, so
      its answer ends with an error event (AnswerRestarted) in its own API's shape,
      instead of going on with a second answer it would show as part of the first;
    - non-streaming: the client has seen nothing yet. Each call's events are held until
      the call finishes, and an abandoned call's are dropped, so it gets the retry's
      whole answer and nothing of the abandoned one (whose usage is not counted either).
    """

    def __init__(self, *, streaming: bool) -> None:
        self._streaming = streaming
        self._open = False  # a model call started and has not sent its message_delta
        self._dropping = False  # the open call was abandoned: drop the rest of it
        self._held: list[CliEvent] = []

    def feed(self, event: CliEvent) -> list[CliEvent]:
        if isinstance(event, CallAbandoned):
            if self._streaming:
                raise AnswerRestarted
            log.info("a model call broke off and was answered anew; its partial answer dropped")
            self._held, self._dropping = [], True
            return []
        if isinstance(event, MessageStarted):
            out, self._held = self._held, []
            self._open, self._dropping = True, False
            return [*out, *self._pass(event)]
        if isinstance(event, MessageDelta | TurnCompleted):
            if isinstance(event, MessageDelta):
                self._open = False
            out, self._held = [*self._held, event], []
            return out
        return self._pass(event)

    def _pass(self, event: CliEvent) -> list[CliEvent]:
        answer_part = not isinstance(
            event, ErrorReported | RateLimitReported | SessionStarted | ToolFinished
        )
        if not answer_part or self._streaming or not self._open:
            return [event]
        if not self._dropping:
            self._held.append(event)
        return []


class _Shown:
    """What of the CLI's events the client sees.

    Client tools keep the names the client declared. The CLI's own tools (agent mode)
    never reach the client as tool calls, which it would try to run: with activity
    shown, each becomes a line of thinking/reasoning ("Read: src/app.py", then its
    outcome); hidden, nothing. Structured output shows the JSON document as text
    instead of the CLI's StructuredOutput call. Blocks are renumbered so that the
    inserted ones never collide with the CLI's.
    """

    def __init__(self, *, structured: bool, activity: bool) -> None:
        self.structured = structured
        self.activity = activity
        self.client_calls: list[str] = []  # ids of client tool calls in this answer
        self._map: dict[int, int] = {}  # the CLI's block index -> ours
        self._hidden: dict[int, tuple[str, list[str]]] = {}  # index -> (tool, input JSON)
        self._builtin_ids: set[str] = set()
        self._calls_in_message = 0
        self._next = 0

    def filter(self, event: CliEvent) -> list[CliEvent]:
        if isinstance(event, MessageStarted):
            self._calls_in_message = 0
            return [event]
        if isinstance(event, BlockStarted):
            if event.kind == "tool_use" and not event.name.startswith(PREFIX):
                self._hidden[event.index] = (event.name, [])
                if event.name != STRUCTURED_OUTPUT_TOOL or not self.structured:
                    self._builtin_ids.add(event.id)
                return []
            index = self._map[event.index] = self._take_index()
            if event.kind == "tool_use":
                self.client_calls.append(event.id)
                self._calls_in_message += 1
                return [dataclasses.replace(event, index=index, name=client_name(event.name))]
            return [dataclasses.replace(event, index=index)]
        if isinstance(event, ToolFinished):
            if event.tool_use_id not in self._builtin_ids:
                return []
            outcome = ("failed: " if event.is_error else "") + (event.summary or "done")
            return self._activity(f"  -> {outcome}")
        if isinstance(event, MessageDelta):
            if event.stop_reason == "tool_use" and not self._calls_in_message:
                # The CLI's own tools (or the structured-output one) were called: to the
                # client the answer goes on, or ends normally, never "run your tools".
                return [dataclasses.replace(event, stop_reason="end_turn")]
            return [event]
        at = getattr(event, "index", None)
        if not isinstance(at, int):
            return [event]
        if at in self._hidden:
            name, pieces = self._hidden[at]
            if isinstance(event, ToolInputDelta):
                pieces.append(event.partial_json)
            elif isinstance(event, BlockStopped) and name != STRUCTURED_OUTPUT_TOOL:
                return self._activity(f"{name}: {_tool_summary(''.join(pieces))}")
            return []
        if at in self._map:
            return [with_index(event, self._map[at])]
        return [event]

    def _take_index(self) -> int:
        index, self._next = self._next, self._next + 1
        return index

    def _activity(self, line: str) -> list[CliEvent]:
        if not self.activity:
            return []
        index = self._take_index()
        return [
            BlockStarted(index, "thinking"),
            ThinkingDelta(index, line + "\n"),
            BlockStopped(index),
        ]

    def note(self, text: str) -> list[CliEvent]:
        """A line of text of claude-tray's own at the end of the answer."""
        index = self._take_index()
        return [BlockStarted(index, "text"), TextDelta(index, "\n" + text), BlockStopped(index)]

    def structured_answer(self, done: TurnCompleted) -> list[CliEvent]:
        if not self.structured or done.structured_output is None:
            return []
        index = self._take_index()
        text = json.dumps(done.structured_output, ensure_ascii=False)
        return [BlockStarted(index, "text"), TextDelta(index, text), BlockStopped(index)]


def _tool_summary(raw: str) -> str:
    """What a tool call is about, in a few words: its pattern, path or command."""
    try:
        args = json.loads(raw) if raw.strip() else {}
    except ValueError:
        args = {}
    if isinstance(args, dict):
        pattern, path = args.get("pattern"), args.get("path")
        if isinstance(pattern, str) and pattern:
            where = f" in {path}" if isinstance(path, str) and path else ""
            return " ".join(f"{pattern}{where}".split())[:120]
        for key in ("file_path", "path", "command", "notebook_path", "url", "query"):
            value = args.get(key)
            if isinstance(value, str) and value:
                return " ".join(value.split())[:120]
    return " ".join(raw.split())[:120]


def _message_stopped(line: dict[str, Any]) -> bool:
    event = line.get("event")
    return (
        line.get("type") == "stream_event"
        and isinstance(event, dict)
        and event.get("type") == "message_stop"
    )


def _answer(collector: Collector) -> Message:
    """Our answer as the client will send it back in its history."""
    parts: list[Part] = []
    text = "".join(b.joined for b in collector.ordered() if b.kind == "text")
    if text:
        parts.append(TextPart(text))
    for block in collector.ordered():
        if block.kind == "tool_use":
            parts.append(ToolUsePart(block.id, block.name, block.tool_input()))
    return Message("assistant", tuple(parts))


def _first_text(turn: Turn) -> str:
    for message in (*turn.history, Message("user", turn.prompt)):
        if message.role == "user":
            text = " ".join(p.text for p in message.parts if isinstance(p, TextPart))
            if text.strip():
                return text
    return "(untitled)"


_SPECS_KEY = "pool.recent_specs"
_QUOTA_KEY = "quota"


def _load_specs(store: SessionStore) -> list[Spec]:
    raw = store.get_meta(_SPECS_KEY)
    if not raw:
        return []
    try:
        return [Spec.from_json(item) for item in json.loads(raw)]
    except (ValueError, KeyError, TypeError):
        return []


def _save_specs(store: SessionStore, specs: list[Spec]) -> None:
    store.set_meta(_SPECS_KEY, json.dumps([s.to_json() for s in specs]))
