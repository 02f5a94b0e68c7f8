"""Persist sessions, Responses API ids, usage and small state in one SQLite file.

The API is synchronous and thread-safe (one connection behind a lock); async callers run
it with `asyncio.to_thread`. Every failure to read or write the file is `StoreUnavailable`.
"""

from __future__ import annotations

import builtins
import contextlib
import logging
import os
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, fields, replace
from pathlib import Path
from typing import Any, TypedDict

from tray_app.errors import ClaudeTrayError
from tray_app.protocol.model import Api, Usage
from tray_app.settings import Paths

logger = logging.getLogger(__name__)

STORE_FILE_NAME = "sessions.sqlite3"
TITLE_MAX = 80
# How long a statement waits for another connection's lock (someone inspecting the file
# with the sqlite3 shell, a second instance during a restart) before giving up.
BUSY_TIMEOUT = 5.0


def store_path(paths: Paths) -> Path:
    return paths.data_dir / STORE_FILE_NAME


class StoreUnavailable(ClaudeTrayError):
    """The session store cannot be opened or written (read-only place, disk full, damaged).

    `code` is SQLite's error name (e.g. "SQLITE_READONLY") when SQLite reported one.
    """

    def __init__(self, path: str, reason: str, *, code: str | None = None) -> None:
        super().__init__(
            f"The session store '{path}' cannot be used ({reason}). Check that its folder "
            "is writable and the disk has space."
        )
        self.path = path
        self.reason = reason
        self.code = code


@dataclass(frozen=True, slots=True)
class SessionRecord:
    """One conversation the proxy can continue: our id, the CLI's id, and what it cost."""

    id: str
    # The Claude Code session id for --resume; a fork or a restored history gets a new one.
    cli_session_id: str
    # Fingerprint of the conversation as the client will resend it next time (None: unknown).
    tip: str | None
    api: Api
    client: str
    model: str
    title: str
    created: float
    last_used: float
    turns: int = 0
    input_tokens: int = 0
    output_tokens: int = 0
    cache_read_tokens: int = 0
    cache_write_tokens: int = 0
    cost_usd: float = 0.0
    # Opaque JSON describing how the session's process was started (model, tools, ...).
    spawn_key: str | None = None


@dataclass(frozen=True, slots=True)
class UsageEntry:
    """One answered (or failed) request, kept for the usage totals."""

    when: float
    request_id: str
    session_id: str | None
    api: Api
    client: str
    model: str
    input_tokens: int
    output_tokens: int
    cache_read_tokens: int
    cache_write_tokens: int
    cost_usd: float | None
    status: str  # "ok" or "error:<kind>"


class UsageSums(TypedDict):
    requests: int
    input_tokens: int
    output_tokens: int
    cache_read_tokens: int
    cache_write_tokens: int
    cost_usd: float


class DayUsage(UsageSums):
    day: str  # YYYY-MM-DD, UTC


class ClientUsage(UsageSums):
    client: str


class ModelUsage(UsageSums):
    model: str


class UsageTotals(TypedDict):
    total: UsageSums
    by_day: list[DayUsage]
    by_client: list[ClientUsage]
    by_model: list[ModelUsage]


def title_from_prompt(prompt: str) -> str:
    """A one-line title of at most TITLE_MAX characters; idempotent."""
    text = " ".join(prompt.split())
    if len(text) <= TITLE_MAX:
        return text
    return text[: TITLE_MAX - 1].rstrip() + "…"


# ---- schema ----


def _schema_v1(conn: sqlite3.Connection) -> None:
    conn.execute(
        """
        CREATE TABLE sessions (
            id TEXT PRIMARY KEY,
            cli_session_id TEXT NOT NULL,
            tip TEXT,
            api TEXT NOT NULL,
            client TEXT NOT NULL,
            model TEXT NOT NULL,
            title TEXT NOT NULL,
            created REAL NOT NULL,
            last_used REAL NOT NULL,
            turns INTEGER NOT NULL DEFAULT 0,
            input_tokens INTEGER NOT NULL DEFAULT 0,
            output_tokens INTEGER NOT NULL DEFAULT 0,
            cache_read_tokens INTEGER NOT NULL DEFAULT 0,
            cache_write_tokens INTEGER NOT NULL DEFAULT 0,
            cost_usd REAL NOT NULL DEFAULT 0,
            spawn_key TEXT
        )
        """
    )
    conn.execute("CREATE INDEX sessions_tip ON sessions (tip)")
    conn.execute("CREATE INDEX sessions_cli_session ON sessions (cli_session_id)")
    conn.execute("CREATE INDEX sessions_last_used ON sessions (last_used)")
    conn.execute("CREATE INDEX sessions_client ON sessions (client, last_used)")
    conn.execute(
        """
        CREATE TABLE response_links (
            response_id TEXT PRIMARY KEY,
            session_id TEXT NOT NULL REFERENCES sessions (id) ON DELETE CASCADE
        )
        """
    )
    # Without it every session delete scans the whole table for the cascade.
    conn.execute("CREATE INDEX response_links_session ON response_links (session_id)")
    # Usage outlives its session (the totals must stay true): SET NULL, not CASCADE.
    conn.execute(
        """
        CREATE TABLE usage (
            id INTEGER PRIMARY KEY,
            at REAL NOT NULL,
            request_id TEXT NOT NULL,
            session_id TEXT REFERENCES sessions (id) ON DELETE SET NULL,
            api TEXT NOT NULL,
            client TEXT NOT NULL,
            model TEXT NOT NULL,
            input_tokens INTEGER NOT NULL,
            output_tokens INTEGER NOT NULL,
            cache_read_tokens INTEGER NOT NULL,
            cache_write_tokens INTEGER NOT NULL,
            cost_usd REAL,
            status TEXT NOT NULL
        )
        """
    )
    conn.execute("CREATE INDEX usage_at ON usage (at)")
    conn.execute("CREATE INDEX usage_session ON usage (session_id)")
    conn.execute("CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)")


# Entry i takes the file from schema version i to i + 1 (PRAGMA user_version). Append a
# step for every change; never edit a released one: users' files went through it already.
MIGRATIONS: tuple[Callable[[sqlite3.Connection], None], ...] = (_schema_v1,)
SCHEMA_VERSION = len(MIGRATIONS)


class _NewerSchema(Exception):
    def __init__(self, version: int) -> None:
        super().__init__(version)
        self.version = version


class _Damaged(Exception):
    """quick_check found problems SQLite did not raise for yet."""


def migrate(conn: sqlite3.Connection) -> None:
    """Bring the schema up to SCHEMA_VERSION, one transaction per step.

    `conn` must be in autocommit mode (isolation_level=None). Raises _NewerSchema for a
    file a later claude-tray wrote: it is left alone rather than guessed at.
    """
    while True:
        conn.execute("BEGIN IMMEDIATE")
        try:
            # Read inside the write transaction, so two processes cannot both run a step.
            version = int(conn.execute("PRAGMA user_version").fetchone()[0])
            if version > SCHEMA_VERSION:
                raise _NewerSchema(version)
            if version == SCHEMA_VERSION:
                conn.execute("COMMIT")
                return
            MIGRATIONS[version](conn)
            conn.execute(f"PRAGMA user_version = {version + 1}")
            conn.execute("COMMIT")
        except BaseException:
            if conn.in_transaction:
                with contextlib.suppress(sqlite3.Error):
                    conn.execute("ROLLBACK")
            raise


# ---- the store ----

_SESSION_COLUMNS = ", ".join(f.name for f in fields(SessionRecord))
_SESSION_PLACEHOLDERS = ", ".join("?" for _ in fields(SessionRecord))
# Errors that are our bugs, not a store that cannot be used: let them surface as they are.
_BUG_ERRORS = (sqlite3.IntegrityError, sqlite3.ProgrammingError, sqlite3.InterfaceError)
_DAMAGED_CODES = frozenset({sqlite3.SQLITE_CORRUPT, sqlite3.SQLITE_NOTADB})


def _casefold(value: object) -> str | None:
    return value.casefold() if isinstance(value, str) else None


def _record(row: tuple[Any, ...]) -> SessionRecord:
    return SessionRecord(*row)


def _unavailable(path: Path, exc: BaseException) -> StoreUnavailable:
    code = exc.sqlite_errorname if isinstance(exc, sqlite3.Error) else None
    reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
    return StoreUnavailable(str(path), reason, code=code)


class SessionStore:
    """The session, response-link, usage and meta tables of one SQLite file."""

    def __init__(self, path: Path, conn: sqlite3.Connection) -> None:
        """Use `SessionStore.open`; this only wraps a prepared connection."""
        self.path = path
        self._conn: sqlite3.Connection | None = conn
        self._lock = threading.Lock()

    # -- opening and closing --

    @classmethod
    def open(cls, path: Path | str, *, busy_timeout: float = BUSY_TIMEOUT) -> SessionStore:
        """Open (creating if needed) the store at `path`; a damaged file is moved aside.

        `busy_timeout` is how many seconds a statement waits while another connection
        holds the file's lock. Raises StoreUnavailable when the file cannot be created,
        read or written, or was written by a newer claude-tray.
        """
        path = Path(path)
        try:
            path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
            return cls(path, _connect(path, busy_timeout))
        except _OPEN_ERRORS as exc:
            if not _is_damage(exc):
                raise _open_failure(path, exc) from exc
            damage = exc
        aside = _move_aside(path)
        logger.warning(
            "The session store %s is damaged (%s); moved it to %s and started a new one",
            path,
            damage,
            aside,
        )
        try:
            return cls(path, _connect(path, busy_timeout))
        except _OPEN_ERRORS as exc:
            raise _open_failure(path, exc) from exc

    def close(self) -> None:
        """Close the file; later calls raise StoreUnavailable. Safe to call twice."""
        with self._lock:
            conn, self._conn = self._conn, None
            if conn is None:
                return
            # Lets SQLite refresh its query planner statistics; cheap, and only here.
            with contextlib.suppress(sqlite3.Error):
                conn.execute("PRAGMA optimize")
            conn.close()

    def __enter__(self) -> SessionStore:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    @contextlib.contextmanager
    def _transaction(self, *, write: bool) -> Iterator[sqlite3.Connection]:
        """The connection, inside one transaction, with SQLite errors made StoreUnavailable."""
        with self._lock:
            conn = self._conn
            if conn is None:
                raise StoreUnavailable(str(self.path), "the store is closed")
            try:
                # IMMEDIATE takes the write lock up front, so a busy file waits busy_timeout
                # at BEGIN instead of failing halfway through the transaction.
                conn.execute("BEGIN IMMEDIATE" if write else "BEGIN")
                try:
                    yield conn
                except BaseException:
                    # SQLite rolls back by itself after some errors (a full disk): check.
                    if conn.in_transaction:
                        with contextlib.suppress(sqlite3.Error):
                            conn.execute("ROLLBACK")
                    raise
                conn.execute("COMMIT")
            except _BUG_ERRORS:
                raise
            except sqlite3.Error as exc:
                if conn.in_transaction:
                    with contextlib.suppress(sqlite3.Error):
                        conn.execute("ROLLBACK")
                raise _unavailable(self.path, exc) from exc

    # -- sessions --

    def create(self, record: SessionRecord) -> None:
        """Store a new session; its title is passed through `title_from_prompt`.

        Raises ValueError when a session with this id exists.
        """
        record = replace(record, title=title_from_prompt(record.title))
        values = [getattr(record, f.name) for f in fields(SessionRecord)]
        try:
            with self._transaction(write=True) as conn:
                conn.execute(
                    f"INSERT INTO sessions ({_SESSION_COLUMNS}) VALUES ({_SESSION_PLACEHOLDERS})",
                    values,
                )
        except sqlite3.IntegrityError as exc:
            if exc.sqlite_errorname != "SQLITE_CONSTRAINT_PRIMARYKEY":
                raise  # a NULL where none may be: the caller's bug, shown as it is
            raise ValueError(f"a session with id {record.id!r} already exists") from exc

    def get(self, id: str) -> SessionRecord | None:
        return self._one(f"SELECT {_SESSION_COLUMNS} FROM sessions WHERE id = ?", (id,))

    def find_by_tip(self, tip: str) -> SessionRecord | None:
        """The most recently used session whose conversation ends at `tip`."""
        return self._one(
            f"SELECT {_SESSION_COLUMNS} FROM sessions WHERE tip = ?"
            " ORDER BY last_used DESC, id LIMIT 1",
            (tip,),
        )

    def find_by_cli_session(self, cli_session_id: str) -> SessionRecord | None:
        return self._one(
            f"SELECT {_SESSION_COLUMNS} FROM sessions WHERE cli_session_id = ?"
            " ORDER BY last_used DESC, id LIMIT 1",
            (cli_session_id,),
        )

    def latest_for_client(self, client: str) -> SessionRecord | None:
        return self._one(
            f"SELECT {_SESSION_COLUMNS} FROM sessions WHERE client = ?"
            " ORDER BY last_used DESC, id LIMIT 1",
            (client,),
        )

    def record_turn(
        self,
        id: str,
        *,
        tip: str | None,
        cli_session_id: str,
        usage: Usage,
        cost_usd: float | None,
        model: str,
        spawn_key: str | None,
        when: float,
    ) -> SessionRecord | None:
        """Count one finished turn and move the session to `tip`, atomically.

        Returns the updated record, or None when the session no longer exists (it was
        deleted or expired while the turn ran).
        """
        with self._transaction(write=True) as conn:
            cursor = conn.execute(
                """
                UPDATE sessions SET
                    tip = ?, cli_session_id = ?, model = ?, spawn_key = ?,
                    -- Turns of one session may finish out of order; never move back.
                    last_used = max(last_used, ?),
                    turns = turns + 1,
                    input_tokens = input_tokens + ?,
                    output_tokens = output_tokens + ?,
                    cache_read_tokens = cache_read_tokens + ?,
                    cache_write_tokens = cache_write_tokens + ?,
                    cost_usd = cost_usd + ?
                WHERE id = ?
                """,
                (
                    tip,
                    cli_session_id,
                    model,
                    spawn_key,
                    when,
                    usage.input_tokens,
                    usage.output_tokens,
                    usage.cache_read_tokens,
                    usage.cache_creation_tokens,
                    cost_usd or 0.0,
                    id,
                ),
            )
            if cursor.rowcount == 0:
                return None
            row = conn.execute(
                f"SELECT {_SESSION_COLUMNS} FROM sessions WHERE id = ?", (id,)
            ).fetchone()
        return _record(row)

    def list(
        self, limit: int = 100, offset: int = 0, query: str | None = None
    ) -> builtins.list[SessionRecord]:
        """Sessions, most recently used first; `query` matches title, client or model
        case-insensitively (Unicode-aware, unlike SQLite's LIKE)."""
        if limit < 0 or offset < 0:
            raise ValueError("limit and offset must not be negative")
        where = ""
        params: builtins.list[object] = []
        if query and query.strip():
            needle = query.strip().casefold()
            where = (
                "WHERE instr(casefold(title), ?) OR instr(casefold(client), ?)"
                " OR instr(casefold(model), ?)"
            )
            params.extend([needle] * 3)
        with self._transaction(write=False) as conn:
            rows = conn.execute(
                f"SELECT {_SESSION_COLUMNS} FROM sessions {where}"
                " ORDER BY last_used DESC, id LIMIT ? OFFSET ?",
                (*params, limit, offset),
            ).fetchall()
        return [_record(row) for row in rows]

    def delete(self, id: str) -> bool:
        """Forget a session and its response links; its usage rows stay, unlinked."""
        with self._transaction(write=True) as conn:
            return conn.execute("DELETE FROM sessions WHERE id = ?", (id,)).rowcount > 0

    def expire(self, older_than: float) -> int:
        """Delete the sessions last used before the epoch time `older_than`; how many."""
        with self._transaction(write=True) as conn:
            return conn.execute("DELETE FROM sessions WHERE last_used < ?", (older_than,)).rowcount

    # -- Responses API ids --

    def link_response(self, response_id: str, session_id: str) -> bool:
        """Remember that `response_id` continues `session_id` (a later link replaces it).

        Returns False, storing nothing, when the session does not exist (any more).
        """
        with self._transaction(write=True) as conn:
            cursor = conn.execute(
                """
                INSERT INTO response_links (response_id, session_id)
                SELECT ?, id FROM sessions WHERE id = ?
                ON CONFLICT (response_id) DO UPDATE SET session_id = excluded.session_id
                """,
                (response_id, session_id),
            )
            return cursor.rowcount > 0

    def session_for_response(self, response_id: str) -> str | None:
        with self._transaction(write=False) as conn:
            row = conn.execute(
                "SELECT session_id FROM response_links WHERE response_id = ?", (response_id,)
            ).fetchone()
        return None if row is None else str(row[0])

    # -- usage --

    def record_usage(self, entry: UsageEntry) -> None:
        """Add one request to the usage log.

        A `session_id` that names no stored session is recorded as None: the session was
        deleted while the request ran, and the row must not fail for it.
        """
        with self._transaction(write=True) as conn:
            conn.execute(
                """
                INSERT INTO usage (
                    at, request_id, session_id, api, client, model, input_tokens,
                    output_tokens, cache_read_tokens, cache_write_tokens, cost_usd, status
                ) VALUES (?, ?, (SELECT id FROM sessions WHERE id = ?), ?, ?, ?, ?, ?, ?, ?, ?, ?)
                """,
                (
                    entry.when,
                    entry.request_id,
                    entry.session_id,
                    entry.api,
                    entry.client,
                    entry.model,
                    entry.input_tokens,
                    entry.output_tokens,
                    entry.cache_read_tokens,
                    entry.cache_write_tokens,
                    entry.cost_usd,
                    entry.status,
                ),
            )

    def usage_totals(self, since: float | None = None) -> UsageTotals:
        """Requests, tokens and cost since the epoch time `since` (or ever): in total, per
        UTC day (oldest first), per client and per model (most requests first).

        Requests with an unknown cost count as 0 USD.
        """
        sums = (
            "count(*), coalesce(sum(input_tokens), 0), coalesce(sum(output_tokens), 0),"
            " coalesce(sum(cache_read_tokens), 0), coalesce(sum(cache_write_tokens), 0),"
            " total(cost_usd)"
        )
        where, params = ("WHERE at >= ?", (since,)) if since is not None else ("", ())
        with self._transaction(write=False) as conn:
            total_row = conn.execute(f"SELECT {sums} FROM usage {where}", params).fetchone()
            day_rows = conn.execute(
                f"SELECT date(at, 'unixepoch') AS day, {sums} FROM usage {where}"
                " GROUP BY day ORDER BY day",
                params,
            ).fetchall()
            client_rows = conn.execute(
                f"SELECT client, {sums} FROM usage {where}"
                " GROUP BY client ORDER BY count(*) DESC, client",
                params,
            ).fetchall()
            model_rows = conn.execute(
                f"SELECT model, {sums} FROM usage {where}"
                " GROUP BY model ORDER BY count(*) DESC, model",
                params,
            ).fetchall()
        return {
            "total": _sums(total_row),
            "by_day": [{"day": row[0], **_sums(row[1:])} for row in day_rows],
            "by_client": [{"client": row[0], **_sums(row[1:])} for row in client_rows],
            "by_model": [{"model": row[0], **_sums(row[1:])} for row in model_rows],
        }

    # -- meta --

    def get_meta(self, key: str) -> str | None:
        with self._transaction(write=False) as conn:
            row = conn.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return None if row is None else str(row[0])

    def set_meta(self, key: str, value: str) -> None:
        with self._transaction(write=True) as conn:
            conn.execute(
                "INSERT INTO meta (key, value) VALUES (?, ?)"
                " ON CONFLICT (key) DO UPDATE SET value = excluded.value",
                (key, value),
            )

    def _one(self, sql: str, params: tuple[object, ...]) -> SessionRecord | None:
        with self._transaction(write=False) as conn:
            row = conn.execute(sql, params).fetchone()
        return None if row is None else _record(row)


def _sums(row: tuple[Any, ...]) -> UsageSums:
    return {
        "requests": int(row[0]),
        "input_tokens": int(row[1]),
        "output_tokens": int(row[2]),
        "cache_read_tokens": int(row[3]),
        "cache_write_tokens": int(row[4]),
        "cost_usd": float(row[5]),
    }


# ---- the file ----


def _connect(path: Path, busy_timeout: float) -> sqlite3.Connection:
    """A connection to `path`, configured, checked and migrated; raises one of _OPEN_ERRORS."""
    _create_private(path)
    # isolation_level=None: transactions are explicit (see _transaction), so Python's
    # sqlite3 never opens one behind our back. check_same_thread=False: the lock in
    # SessionStore serialises use from the to_thread worker threads.
    # `timeout` is SQLite's busy_timeout.
    conn = sqlite3.connect(
        path, timeout=busy_timeout, isolation_level=None, check_same_thread=False
    )
    try:
        mode = conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]
        if str(mode).lower() != "wal":
            # Some network file systems cannot share memory between processes; the store
            # still works in rollback-journal mode, only with less concurrency.
            logger.warning("The session store %s could not use WAL (mode %s)", path, mode)
        # With WAL, NORMAL is durable except for the last commits before a power loss, and
        # does not fsync on every turn.
        conn.execute("PRAGMA synchronous = NORMAL")
        conn.execute("PRAGMA foreign_keys = ON")
        # A damaged page may otherwise only show up mid-request, long after start-up.
        problems = [str(row[0]) for row in conn.execute("PRAGMA quick_check").fetchall()]
        if problems != ["ok"]:
            raise _Damaged("; ".join(problems[:3]))
        migrate(conn)
        conn.create_function("casefold", 1, _casefold, deterministic=True)
    except BaseException:
        conn.close()
        raise
    return conn


_OPEN_ERRORS = (OSError, sqlite3.Error, _Damaged, _NewerSchema)


def _is_damage(exc: BaseException) -> bool:
    if isinstance(exc, sqlite3.Error):
        # The primary code is the low byte; extended codes (SQLITE_CORRUPT_INDEX...) add more.
        return exc.sqlite_errorcode & 0xFF in _DAMAGED_CODES
    return isinstance(exc, _Damaged)


def _open_failure(path: Path, exc: BaseException) -> StoreUnavailable:
    if isinstance(exc, _NewerSchema):
        return StoreUnavailable(
            str(path),
            f"it was written by a newer claude-tray (schema {exc.version}; this one knows "
            f"up to {SCHEMA_VERSION})",
        )
    return _unavailable(path, exc)


def _create_private(path: Path) -> None:
    # Create the file ourselves so it is 0600 from its first byte; SQLite gives the -wal
    # and -shm files the main file's permissions.
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        if os.name == "posix" and os.fstat(fd).st_mode & 0o077:
            os.fchmod(fd, 0o600)
    finally:
        os.close(fd)


def _move_aside(path: Path) -> Path:
    """Rename the damaged file (and its -wal / -shm / -journal) to `<name>.corrupt-<time>`.

    Never deletes: the user may want to recover it. The -wal must go too, or SQLite would
    replay the old file's log into the new one.
    """
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    aside = path.with_name(f"{path.name}.corrupt-{stamp}")
    counter = 1
    while aside.exists():
        aside = path.with_name(f"{path.name}.corrupt-{stamp}-{counter}")
        counter += 1
    try:
        for suffix in ("", "-wal", "-shm", "-journal"):
            source = Path(f"{path}{suffix}")
            if source.exists():
                os.rename(source, f"{aside}{suffix}")
    except OSError as exc:
        raise _unavailable(path, exc) from exc
    return aside
