"""SessionStore on real SQLite files: sessions, links, usage totals, persistence, failures."""

from __future__ import annotations

import calendar
import contextlib
import logging
import os
import sqlite3
import stat
import subprocess
import threading
from collections.abc import Iterator
from contextlib import closing
from dataclasses import replace
from pathlib import Path

import pytest

from tray_app.backend.store import (
    SCHEMA_VERSION,
    STORE_FILE_NAME,
    SessionRecord,
    SessionStore,
    StoreUnavailable,
    UsageEntry,
    UsageSums,
    UsageTotals,
    store_path,
    title_from_prompt,
)
from tray_app.protocol.model import Usage
from tray_app.settings import resolve_paths

T0 = 1_780_000_000.0


def utc(day: str, clock: str = "12:00:00") -> float:
    """Epoch seconds of a UTC date and time, e.g. utc("2026-05-01", "23:59:59")."""
    year, month, mday = (int(part) for part in day.split("-"))
    hour, minute, second = (int(part) for part in clock.split(":"))
    return float(calendar.timegm((year, month, mday, hour, minute, second, 0, 0, 0)))


def session(id: str = "s1", **changes: object) -> SessionRecord:
    record = SessionRecord(
        id=id,
        cli_session_id=f"cli-{id}",
        tip=f"tip-{id}",
        api="openai",
        client="opencode/1.0",
        model="sonnet",
        title="Write a haiku",
        created=T0,
        last_used=T0,
    )
    return replace(record, **changes)  # type: ignore[arg-type]


def usage_entry(**changes: object) -> UsageEntry:
    entry = UsageEntry(
        when=T0,
        request_id="req",
        session_id=None,
        api="openai",
        client="opencode/1.0",
        model="sonnet",
        input_tokens=1,
        output_tokens=2,
        cache_read_tokens=3,
        cache_write_tokens=4,
        cost_usd=0.5,
        status="ok",
    )
    return replace(entry, **changes)  # type: ignore[arg-type]


def turn(store: SessionStore, id: str, *, when: float, **changes: object) -> SessionRecord | None:
    args: dict[str, object] = {
        "tip": f"tip-{when}",
        "cli_session_id": f"cli-{id}",
        "usage": Usage(input_tokens=10, output_tokens=20, cache_read_tokens=30),
        "cost_usd": 0.25,
        "model": "sonnet",
        "spawn_key": None,
        "when": when,
    }
    args.update(changes)
    return store.record_turn(id, **args)  # type: ignore[arg-type]


def mode_of(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@pytest.fixture
def db(tmp_path: Path) -> Path:
    return tmp_path / "data" / STORE_FILE_NAME


@pytest.fixture
def store(db: Path) -> Iterator[SessionStore]:
    with SessionStore.open(db) as opened:
        yield opened


# ---- sessions ----


def test_the_file_lives_in_the_data_dir(tmp_path: Path) -> None:
    paths = resolve_paths({"CLAUDE_TRAY_HOME": str(tmp_path)})
    assert store_path(paths) == tmp_path / "data" / "sessions.sqlite3"


def test_create_then_get_returns_the_same_record(store: SessionStore) -> None:
    record = session(tip=None, spawn_key='{"model": "sonnet"}', api="responses")
    store.create(record)

    assert store.get("s1") == record
    assert store.get("missing") is None


def test_create_trims_the_title_and_refuses_a_duplicate_id(store: SessionStore) -> None:
    store.create(session(title="  Explain\n\nthis   code " + "x" * 200))

    title = store.get("s1").title  # type: ignore[union-attr]
    assert len(title) == 80
    assert title.startswith("Explain this code xxx") and title.endswith("…")
    assert title_from_prompt(title) == title
    with pytest.raises(ValueError, match="s1"):
        store.create(session())


def test_find_by_tip_and_by_cli_session_prefer_the_most_recent(store: SessionStore) -> None:
    store.create(session("old", tip="same", cli_session_id="cli", last_used=T0))
    store.create(session("new", tip="same", cli_session_id="cli", last_used=T0 + 5))
    store.create(session("other", tip="different"))

    assert store.find_by_tip("same").id == "new"  # type: ignore[union-attr]
    assert store.find_by_tip("different").id == "other"  # type: ignore[union-attr]
    assert store.find_by_tip("nowhere") is None
    assert store.find_by_cli_session("cli").id == "new"  # type: ignore[union-attr]
    assert store.find_by_cli_session("cli-other").id == "other"  # type: ignore[union-attr]
    assert store.find_by_cli_session("nowhere") is None


def test_record_turn_adds_up_and_moves_the_tip(store: SessionStore) -> None:
    store.create(session())

    first = turn(store, "s1", when=T0 + 10, tip="t1", spawn_key="k1")
    second = turn(
        store,
        "s1",
        when=T0 + 20,
        tip="t2",
        cli_session_id="forked",
        usage=Usage(input_tokens=1, output_tokens=2, cache_read_tokens=3, cache_creation_tokens=4),
        cost_usd=None,  # unknown cost adds nothing
        model="opus",
        spawn_key=None,
    )

    assert first is not None and first.turns == 1 and first.tip == "t1"
    assert second == replace(
        session(),
        cli_session_id="forked",
        tip="t2",
        model="opus",
        last_used=T0 + 20,
        turns=2,
        input_tokens=11,
        output_tokens=22,
        cache_read_tokens=33,
        cache_write_tokens=4,
        cost_usd=0.25,
        spawn_key=None,
    )
    assert store.get("s1") == second
    assert store.find_by_tip("t1") is None
    assert store.find_by_tip("t2") == second
    assert store.find_by_cli_session("forked") == second


def test_record_turn_never_moves_last_used_back(store: SessionStore) -> None:
    store.create(session())
    turn(store, "s1", when=T0 + 20)
    late = turn(store, "s1", when=T0 + 10)  # a turn that started earlier finished later

    assert late is not None and late.last_used == T0 + 20 and late.turns == 2


def test_record_turn_for_a_deleted_session_returns_none(store: SessionStore) -> None:
    assert turn(store, "gone", when=T0) is None
    assert store.list() == []


def test_list_is_most_recently_used_first_with_paging(store: SessionStore) -> None:
    for index, id in enumerate(["a", "b", "c", "d"]):
        store.create(session(id, last_used=T0 + index))
    turn(store, "b", when=T0 + 100)

    assert [r.id for r in store.list()] == ["b", "d", "c", "a"]
    assert [r.id for r in store.list(limit=2)] == ["b", "d"]
    assert [r.id for r in store.list(limit=2, offset=2)] == ["c", "a"]
    assert store.list(limit=0) == []
    with pytest.raises(ValueError, match="negative"):
        store.list(limit=-1)


def test_list_searches_title_client_and_model_ignoring_case(store: SessionStore) -> None:
    store.create(session("title", title="Refactor the ÉCLAIR parser", last_used=T0 + 1))
    store.create(session("client", client="Aider/0.80", last_used=T0 + 2))
    store.create(session("model", model="claude-OPUS-4", last_used=T0 + 3))
    store.create(session("percent", title="100% coverage", last_used=T0 + 4))

    def ids(query: str | None) -> list[str]:
        return [r.id for r in store.list(query=query)]

    assert ids("éclair") == ["title"]
    assert ids("aider") == ["client"]
    assert ids("opus") == ["model"]
    assert ids("% cov") == ["percent"]  # no LIKE wildcards
    assert ids("%") == ["percent"]
    assert ids("_") == []
    assert ids("nothing like it") == []
    assert ids("  ") == ids(None) == ["percent", "model", "client", "title"]


def test_latest_for_client(store: SessionStore) -> None:
    store.create(session("a", client="aider", last_used=T0 + 1))
    store.create(session("b", client="aider", last_used=T0 + 2))
    store.create(session("c", client="codex", last_used=T0 + 3))
    turn(store, "a", when=T0 + 10)

    assert store.latest_for_client("aider").id == "a"  # type: ignore[union-attr]
    assert store.latest_for_client("codex").id == "c"  # type: ignore[union-attr]
    assert store.latest_for_client("cline") is None


# ---- responses, deletion, expiry ----


def test_response_links(store: SessionStore) -> None:
    store.create(session("a"))
    store.create(session("b"))

    assert store.link_response("resp_1", "a")
    assert store.link_response("resp_2", "a")
    assert store.session_for_response("resp_1") == "a"
    assert store.link_response("resp_1", "b")  # linked again: the later link wins
    assert store.session_for_response("resp_1") == "b"
    assert not store.link_response("resp_3", "missing")
    assert store.session_for_response("resp_3") is None


def test_delete_drops_links_and_keeps_usage_unlinked(store: SessionStore) -> None:
    store.create(session("a"))
    store.create(session("b"))
    store.link_response("resp_a", "a")
    store.link_response("resp_b", "b")
    store.record_usage(usage_entry(request_id="r1", session_id="a"))
    store.record_usage(usage_entry(request_id="r2", session_id="b"))

    assert store.delete("a")
    assert not store.delete("a")

    assert store.get("a") is None
    assert store.session_for_response("resp_a") is None
    assert store.session_for_response("resp_b") == "b"
    assert store.usage_totals()["total"]["requests"] == 2
    with closing(sqlite3.connect(store.path)) as conn:
        rows = conn.execute("SELECT request_id, session_id FROM usage ORDER BY id").fetchall()
    assert rows == [("r1", None), ("r2", "b")]


def test_usage_for_an_unknown_session_is_kept_unlinked(store: SessionStore) -> None:
    store.record_usage(usage_entry(request_id="r1", session_id="deleted-meanwhile"))

    assert store.usage_totals()["total"]["requests"] == 1
    with closing(sqlite3.connect(store.path)) as conn:
        assert conn.execute("SELECT session_id FROM usage").fetchall() == [(None,)]


def test_expire_deletes_sessions_unused_since_the_cutoff(store: SessionStore) -> None:
    store.create(session("old", last_used=T0 - 100))
    store.create(session("edge", last_used=T0))
    store.create(session("revived", last_used=T0 - 200))
    turn(store, "revived", when=T0 + 1)
    store.link_response("resp_old", "old")
    store.record_usage(usage_entry(session_id="old"))

    assert store.expire(T0) == 1
    assert store.expire(T0) == 0

    assert sorted(r.id for r in store.list()) == ["edge", "revived"]
    assert store.session_for_response("resp_old") is None
    assert store.usage_totals()["total"]["requests"] == 1


# ---- usage ----


def test_usage_totals_by_day_client_and_model(store: SessionStore) -> None:
    day1_late = utc("2026-05-01", "23:59:59")
    day2_early = utc("2026-05-02", "00:00:00")
    entries = [
        usage_entry(when=utc("2026-04-30"), client="aider", model="haiku", cost_usd=8.0),
        usage_entry(when=day1_late, client="aider", model="sonnet", input_tokens=100),
        usage_entry(when=day1_late, client="codex", model="opus", cost_usd=None),
        usage_entry(when=day2_early, client="aider", model="sonnet", status="error:rate_limit"),
        usage_entry(
            when=day2_early,
            client="codex",
            model="sonnet",
            input_tokens=1000,
            output_tokens=2000,
            cache_read_tokens=3000,
            cache_write_tokens=4000,
            cost_usd=0.25,
        ),
    ]
    for entry in entries:
        store.record_usage(entry)

    def sums(requests: int, i: int, o: int, r: int, w: int, cost: float) -> dict[str, object]:
        return {
            "requests": requests,
            "input_tokens": i,
            "output_tokens": o,
            "cache_read_tokens": r,
            "cache_write_tokens": w,
            "cost_usd": cost,
        }

    assert store.usage_totals() == {
        "total": sums(5, 1103, 2008, 3012, 4016, 9.25),
        "by_day": [
            {"day": "2026-04-30", **sums(1, 1, 2, 3, 4, 8.0)},
            {"day": "2026-05-01", **sums(2, 101, 4, 6, 8, 0.5)},
            {"day": "2026-05-02", **sums(2, 1001, 2002, 3003, 4004, 0.75)},
        ],
        "by_client": [
            {"client": "aider", **sums(3, 102, 6, 9, 12, 9.0)},
            {"client": "codex", **sums(2, 1001, 2002, 3003, 4004, 0.25)},
        ],
        "by_model": [
            {"model": "sonnet", **sums(3, 1101, 2004, 3006, 4008, 1.25)},
            {"model": "haiku", **sums(1, 1, 2, 3, 4, 8.0)},
            {"model": "opus", **sums(1, 1, 2, 3, 4, 0.0)},
        ],
    }
    since = store.usage_totals(since=day2_early)
    assert since["total"] == sums(2, 1001, 2002, 3003, 4004, 0.75)
    assert [d["day"] for d in since["by_day"]] == ["2026-05-02"]
    assert store.usage_totals(since=day2_early + 1)["total"] == sums(0, 0, 0, 0, 0, 0.0)


def test_usage_totals_of_an_empty_store(store: SessionStore) -> None:
    zero: UsageSums = {
        "requests": 0,
        "input_tokens": 0,
        "output_tokens": 0,
        "cache_read_tokens": 0,
        "cache_write_tokens": 0,
        "cost_usd": 0.0,
    }
    empty: UsageTotals = {"total": zero, "by_day": [], "by_client": [], "by_model": []}
    assert store.usage_totals() == empty


def test_meta_values(store: SessionStore) -> None:
    assert store.get_meta("rate_limit") is None
    store.set_meta("rate_limit", '{"status": "allowed"}')
    store.set_meta("rate_limit", '{"status": "rejected"}')
    store.set_meta("recent_spawn_keys", "[]")

    assert store.get_meta("rate_limit") == '{"status": "rejected"}'
    assert store.get_meta("recent_spawn_keys") == "[]"


# ---- the file ----


def test_everything_survives_a_reopen(db: Path) -> None:
    with SessionStore.open(db) as store:
        store.create(session("a"))
        store.create(session("b"))
        turn(store, "a", when=T0 + 5, tip="a-tip", spawn_key="key")
        store.delete("b")
        store.link_response("resp", "a")
        store.record_usage(usage_entry(session_id="a"))
        store.set_meta("k", "v")
        before = (store.list(), store.usage_totals())

    with SessionStore.open(db) as store:
        assert (store.list(), store.usage_totals()) == before
        assert store.find_by_tip("a-tip") == before[0][0]
        assert store.session_for_response("resp") == "a"
        assert store.get_meta("k") == "v"


def test_a_new_file_is_private_versioned_and_in_wal_mode(db: Path) -> None:
    with SessionStore.open(db) as store:
        store.create(session())
        assert mode_of(db.parent) == 0o700
        for name in (db.name, db.name + "-wal", db.name + "-shm"):
            assert mode_of(db.parent / name) == 0o600, name

    with closing(sqlite3.connect(db)) as conn:
        assert conn.execute("PRAGMA user_version").fetchone() == (SCHEMA_VERSION,)
        assert conn.execute("PRAGMA journal_mode").fetchone() == ("wal",)


def test_an_existing_file_is_made_private(db: Path) -> None:
    db.parent.mkdir(mode=0o700)
    db.touch()
    db.chmod(0o644)

    SessionStore.open(db).close()

    assert mode_of(db) == 0o600


def test_concurrent_turns_are_all_counted(store: SessionStore) -> None:
    store.create(session())
    threads_count, turns_each = 8, 50
    barrier = threading.Barrier(threads_count)
    errors: list[BaseException] = []

    def work(worker: int) -> None:
        try:
            barrier.wait()
            for index in range(turns_each):
                turn(store, "s1", when=T0 + worker * 1000 + index)
                store.record_usage(usage_entry(session_id="s1"))
        except BaseException as exc:  # surfaced in the main thread below
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(n,)) for n in range(threads_count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert errors == []
    total = threads_count * turns_each
    record = store.get("s1")
    assert record is not None
    assert (record.turns, record.input_tokens, record.output_tokens) == (
        total,
        10 * total,
        20 * total,
    )
    assert (record.cache_read_tokens, record.cost_usd) == (30 * total, 0.25 * total)
    assert record.last_used == T0 + (threads_count - 1) * 1000 + turns_each - 1
    assert store.usage_totals()["total"]["requests"] == total


@contextlib.contextmanager
def read_only(folder: Path) -> Iterator[None]:
    """A folder nobody can write into, root included (root ignores permission bits, so
    for root the folder is made immutable instead)."""
    if os.geteuid() != 0:
        folder.chmod(0o500)
        try:
            yield
        finally:
            folder.chmod(0o700)
        return
    done = subprocess.run(["chattr", "+i", str(folder)], capture_output=True, text=True)
    assert done.returncode == 0, f"chattr +i failed (needs e2fsprogs, ext4): {done.stderr}"
    try:
        yield
    finally:
        subprocess.run(["chattr", "-i", str(folder)], check=True)


def test_a_read_only_directory_is_store_unavailable(tmp_path: Path) -> None:
    folder = tmp_path / "locked"
    folder.mkdir()
    with read_only(folder), pytest.raises(StoreUnavailable) as caught:
        SessionStore.open(folder / STORE_FILE_NAME)

    assert caught.value.path == str(folder / STORE_FILE_NAME)
    assert str(folder / STORE_FILE_NAME) in caught.value.message


def test_a_store_in_a_directory_made_read_only_is_store_unavailable(db: Path) -> None:
    with SessionStore.open(db) as store:
        store.create(session())
    # A clean close removed the -wal and -shm files; WAL mode must create them again.
    with read_only(db.parent), pytest.raises(StoreUnavailable) as caught:
        SessionStore.open(db)

    assert caught.value.path == str(db)
    assert caught.value.code is not None and caught.value.code.startswith("SQLITE_")


def test_a_folder_that_cannot_exist_is_store_unavailable(tmp_path: Path) -> None:
    # Runs as root too: no permission check is involved, the parent is a regular file.
    blocker = tmp_path / "data"
    blocker.write_text("not a folder")
    path = blocker / STORE_FILE_NAME

    with pytest.raises(StoreUnavailable) as caught:
        SessionStore.open(path)

    assert caught.value.path == str(path)
    assert blocker.read_text() == "not a folder"


def test_a_locked_file_is_store_unavailable_not_a_hang(db: Path) -> None:
    with SessionStore.open(db, busy_timeout=0.05) as store:
        store.create(session("a"))
        other = sqlite3.connect(db, isolation_level=None)
        try:
            other.execute("BEGIN EXCLUSIVE")
            with pytest.raises(StoreUnavailable) as caught:
                store.create(session("b"))
            other.execute("ROLLBACK")
        finally:
            other.close()

        assert caught.value.code == "SQLITE_BUSY"
        # The failed write left no transaction open: the store carries on.
        store.create(session("b"))
        assert sorted(r.id for r in store.list()) == ["a", "b"]


def test_a_closed_store_is_store_unavailable(db: Path) -> None:
    store = SessionStore.open(db)
    store.close()
    store.close()  # twice is fine

    with pytest.raises(StoreUnavailable, match="closed"):
        store.get("s1")


def test_a_garbage_file_is_moved_aside_and_a_fresh_store_works(
    db: Path, caplog: pytest.LogCaptureFixture
) -> None:
    db.parent.mkdir(mode=0o700)
    garbage = b"this is not a database, but it is the user's file\n" * 100
    db.write_bytes(garbage)

    with caplog.at_level(logging.WARNING), SessionStore.open(db) as store:
        store.create(session())
        assert store.get("s1") == session()

    aside = [p for p in db.parent.iterdir() if ".corrupt-" in p.name]
    assert len(aside) == 1 and aside[0].name.startswith(f"{STORE_FILE_NAME}.corrupt-")
    assert aside[0].read_bytes() == garbage
    assert str(aside[0]) in caplog.text
    with SessionStore.open(db) as store:  # the fresh file is a healthy store
        assert store.get("s1") == session()


def test_a_file_with_damaged_pages_is_moved_aside(db: Path) -> None:
    with SessionStore.open(db) as store:
        for index in range(300):
            store.create(session(f"s{index}", title=f"prompt number {index} " * 4))
    original = bytearray(db.read_bytes())
    page_size = 4096
    assert len(original) > 6 * page_size
    # Keep the header page, so only reading the tables finds the damage.
    original[2 * page_size : 5 * page_size] = b"\xa5" * (3 * page_size)
    db.write_bytes(bytes(original))

    with SessionStore.open(db) as store:
        assert store.list() == []
        store.create(session())

    aside = [p for p in db.parent.iterdir() if ".corrupt-" in p.name]
    assert [p.read_bytes() for p in aside] == [bytes(original)]


def test_a_file_from_a_newer_version_is_refused_and_left_alone(db: Path) -> None:
    SessionStore.open(db).close()
    with closing(sqlite3.connect(db)) as conn:
        conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    before = db.read_bytes()

    with pytest.raises(StoreUnavailable, match="newer") as caught:
        SessionStore.open(db)

    assert caught.value.path == str(db)
    assert db.read_bytes() == before
    assert not [p for p in db.parent.iterdir() if ".corrupt-" in p.name]
