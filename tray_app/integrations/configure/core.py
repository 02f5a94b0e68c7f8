"""The safe-edit core every tool writer goes through: careful reads, plans, backups,
atomic writes, the undo record and diffs.

A writer never touches the disk itself: it reads files with `read_config` (which refuses
what we must not edit) and returns `Change`s; `apply` backs up, writes atomically and
records what `undo` needs to put every byte back.
"""

from __future__ import annotations

import contextlib
import difflib
import hashlib
import json
import logging
import os
import stat
import tempfile
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from tray_app.errors import ClaudeTrayError

log = logging.getLogger(__name__)

# A config file larger than this is not one we should be rewriting.
MAX_CONFIG_BYTES = 1024 * 1024
UNDO_FORMAT = 1


class ConfigureError(ClaudeTrayError):
    """A file we will not change, and why; `line` is 1-based when a parse error has one."""

    def __init__(self, path: Path | None, reason: str, *, line: int | None = None) -> None:
        where = "" if path is None else f"{path}:{line}: " if line else f"{path}: "
        super().__init__(f"{where}{reason}")
        self.path = path
        self.reason = reason
        self.line = line


@dataclass(frozen=True, slots=True)
class Current:
    """A config file as found: `path` as the tool names it, `target` what we would write
    (the file a symlink points at), `text` None when the file does not exist yet."""

    path: Path
    target: Path
    text: str | None
    mode: int | None

    @property
    def exists(self) -> bool:
        return self.text is not None


@dataclass(frozen=True, slots=True)
class Change:
    """One file's new contents. `secret` files end up 0600."""

    current: Current
    new_text: str
    secret: bool = False
    executable: bool = False

    @property
    def path(self) -> Path:
        return self.current.path

    @property
    def changed(self) -> bool:
        return self.current.text != self.new_text


Action = Literal["created", "updated", "unchanged", "restored", "removed"]


@dataclass(frozen=True, slots=True)
class FileResult:
    path: Path
    action: Action
    backup: Path | None = None


def _inside(path: Path, folder: Path) -> bool:
    try:
        path.relative_to(folder)
    except ValueError:
        return False
    return True


def read_config(path: Path, home: Path) -> Current:
    """Read a config file we may edit, or raise ConfigureError saying why we will not.

    Refused: a symlink that points outside the home folder (or nowhere), anything that is
    not a regular file, a file we cannot write, one over MAX_CONFIG_BYTES, and text that
    is not UTF-8. A missing file is fine (its folder must be creatable).
    """
    try:
        info = path.lstat()
    except (FileNotFoundError, NotADirectoryError):
        _check_missing_parent(path, home)
        return Current(path, path, None, None)
    except OSError as exc:
        raise ConfigureError(path, f"cannot be examined ({exc.strerror or exc})") from exc
    target = path
    if stat.S_ISLNK(info.st_mode):
        real = Path(os.path.realpath(path))
        home_real = Path(os.path.realpath(home))
        if not real.exists():
            raise ConfigureError(path, f"is a symlink to {real}, which does not exist")
        if not _inside(real, home_real):
            raise ConfigureError(
                path,
                f"is a symlink to {real}, outside your home folder; claude-tray does not "
                "edit files there. Edit it yourself, or replace the link with a file.",
            )
        target = real
        info = real.stat()
    if stat.S_ISDIR(info.st_mode):
        raise ConfigureError(path, "is a folder, not a file")
    if not stat.S_ISREG(info.st_mode):
        raise ConfigureError(path, "is not a regular file (a pipe, socket or device?)")
    if info.st_size > MAX_CONFIG_BYTES:
        raise ConfigureError(
            path,
            f"is {info.st_size} bytes, too large for a config file "
            f"(the limit is {MAX_CONFIG_BYTES}); claude-tray will not rewrite it",
        )
    # The mode bits too: root may write anything, but a 0444 file says "leave me alone".
    if not os.access(target, os.W_OK) or not info.st_mode & stat.S_IWUSR:
        raise ConfigureError(path, "is read-only; make it writable, or edit it yourself")
    if not os.access(target.parent, os.W_OK | os.X_OK):
        raise ConfigureError(
            path, f"its folder {target.parent} is read-only, so it cannot be replaced safely"
        )
    try:
        data = target.read_bytes()
    except OSError as exc:
        raise ConfigureError(path, f"cannot be read ({exc.strerror or exc})") from exc
    if len(data) > MAX_CONFIG_BYTES:
        raise ConfigureError(path, f"is larger than {MAX_CONFIG_BYTES} bytes")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        raise ConfigureError(path, "is not UTF-8 text", line=line) from exc
    if "\x00" in text:
        raise ConfigureError(path, "holds NUL bytes: it is not a text config file")
    return Current(path, target, text, stat.S_IMODE(info.st_mode))


def _check_missing_parent(path: Path, home: Path) -> None:
    for parent in path.parents:
        try:
            info = parent.lstat()
        except FileNotFoundError:
            continue
        except OSError as exc:
            raise ConfigureError(path, f"cannot reach its folder ({exc.strerror})") from exc
        if stat.S_ISLNK(info.st_mode):
            real = Path(os.path.realpath(parent))
            if not real.is_dir():
                raise ConfigureError(path, f"its folder {parent} is a link to no folder")
            info = real.stat()
            parent = real
        if not stat.S_ISDIR(info.st_mode):
            raise ConfigureError(path, f"{parent} is in the way: it is a file, not a folder")
        if not os.access(parent, os.W_OK | os.X_OK):
            raise ConfigureError(path, f"cannot be created: {parent} is read-only")
        return


# ---- the undo record ----


def _sha(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


@dataclass(frozen=True, slots=True)
class _Entry:
    path: str  # the file we wrote (a symlink's target)
    shown: str  # the name people know it by
    original: str | None  # backup file of the bytes before our first write; None: we created it
    original_mode: int | None
    written: str  # sha256 of what we last wrote
    created_dirs: tuple[str, ...]

    def to_json(self) -> dict[str, Any]:
        return {
            "path": self.path,
            "shown": self.shown,
            "original": self.original,
            "original_mode": self.original_mode,
            "written": self.written,
            "created_dirs": list(self.created_dirs),
        }


class UndoRecord:
    """What `undo` needs per tool, kept under claude-tray's data dir (0600 files).

    `settle` maps a file's text to what counts when telling whether it is still the
    one claude-tray wrote: a tool that rewrites its own file (a timestamp) does not
    make it the user's edit.
    """

    def __init__(
        self, state_dir: Path, tool: str, settle: Callable[[str], str] | None = None
    ) -> None:
        self.dir = state_dir
        self.file = state_dir / f"{tool}.json"
        self.backups = state_dir / "backups" / tool
        self.tool = tool
        self._settle = settle

    def digest(self, text: str) -> str:
        return _sha(self._settle(text) if self._settle is not None else text)

    def load(self) -> dict[str, _Entry]:
        try:
            raw = json.loads(self.file.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return {}
        except (OSError, ValueError) as exc:
            raise ConfigureError(
                self.file, f"claude-tray's undo record is unreadable ({exc})"
            ) from exc
        entries: dict[str, _Entry] = {}
        try:
            for item in raw["files"]:
                entry = _Entry(
                    path=str(item["path"]),
                    shown=str(item.get("shown", item["path"])),
                    original=None if item["original"] is None else str(item["original"]),
                    original_mode=item.get("original_mode"),
                    written=str(item["written"]),
                    created_dirs=tuple(str(d) for d in item.get("created_dirs", ())),
                )
                entries[entry.path] = entry
        except (KeyError, TypeError) as exc:
            raise ConfigureError(self.file, "claude-tray's undo record is damaged") from exc
        return entries

    def save(self, entries: Mapping[str, _Entry]) -> None:
        if not entries:
            with contextlib.suppress(FileNotFoundError):
                self.file.unlink()
            return
        body = {
            "format": UNDO_FORMAT,
            "tool": self.tool,
            "files": [e.to_json() for e in entries.values()],
        }
        self.dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        atomic_write(self.file, json.dumps(body, indent=2) + "\n", 0o600)

    def backup(self, current: Current) -> Path:
        """Copy the file's present bytes to a timestamped backup (0600) and return it."""
        assert current.text is not None
        self.backups.mkdir(mode=0o700, parents=True, exist_ok=True)
        stamp = time.strftime("%Y%m%dT%H%M%S", time.localtime())
        base = f"{stamp}-{current.path.name}"
        candidate = self.backups / base
        counter = 1
        while candidate.exists():
            counter += 1
            candidate = self.backups / f"{base}.{counter}"
        atomic_write(candidate, current.text, 0o600)
        return candidate


# ---- writing ----


def atomic_write(path: Path, text: str, mode: int) -> None:
    """Write `text` to a temp file beside `path`, fsync, set `mode`, rename over `path`."""
    fd, temp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="") as stream:
            stream.write(text)
            stream.flush()
            os.fsync(stream.fileno())
        os.chmod(temp_name, mode)
        os.replace(temp_name, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(temp_name)
        raise
    with contextlib.suppress(OSError):  # not every platform can fsync a folder
        dir_fd = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)


def _make_dirs(folder: Path) -> list[Path]:
    """Create `folder` and missing parents; return the ones created, outermost first."""
    missing: list[Path] = []
    probe = folder
    while not probe.exists():
        missing.append(probe)
        probe = probe.parent
    for directory in reversed(missing):
        directory.mkdir(mode=0o700)
    return list(reversed(missing))


def _mode_for(change: Change) -> int:
    if change.secret:
        return 0o600
    if change.current.mode is not None:
        return change.current.mode
    return 0o755 if change.executable else 0o644


def apply(changes: Sequence[Change], record: UndoRecord) -> list[FileResult]:
    """Write every changed file: back up, write atomically, remember how to undo.

    If a later file fails, the files written before it are put back.
    """
    entries = record.load()
    results: list[FileResult] = []
    done: list[tuple[Change, Path | None, list[Path]]] = []
    try:
        for change in changes:
            current = change.current
            if not change.changed:
                if change.secret and current.mode not in (None, 0o600):
                    os.chmod(current.target, 0o600)
                results.append(FileResult(current.path, "unchanged"))
                continue
            backup = record.backup(current) if current.exists else None
            created = _make_dirs(current.target.parent)
            key = str(current.target)
            previous = entries.get(key)
            if (
                previous is not None
                and current.text is not None
                and previous.written == record.digest(current.text)
            ):
                # Ours since our first write: keep the original from before it.
                original, original_mode = previous.original, previous.original_mode
                created_dirs = previous.created_dirs
            else:
                # First write, or the file changed since ours: what is there now is the
                # original, so undo never loses an edit made in between.
                original = None if backup is None else str(backup)
                original_mode = current.mode
                created_dirs = tuple(str(d) for d in created)
            atomic_write(current.target, change.new_text, _mode_for(change))
            done.append((change, backup, created))
            entries[key] = _Entry(
                path=key,
                shown=str(current.path),
                original=original,
                original_mode=original_mode,
                written=record.digest(change.new_text),
                created_dirs=created_dirs,
            )
            action: Action = "updated" if current.exists else "created"
            results.append(FileResult(current.path, action, backup))
            log.info("configure %s: %s %s", record.tool, action, current.path)
        record.save(entries)
    except BaseException:
        _roll_back(done)
        raise
    return results


def _roll_back(done: Iterable[tuple[Change, Path | None, list[Path]]]) -> None:
    for change, backup, created in reversed(list(done)):
        current = change.current
        try:
            if backup is not None and current.text is not None:
                atomic_write(current.target, current.text, current.mode or 0o600)
            else:
                current.target.unlink(missing_ok=True)
                for directory in reversed(created):
                    directory.rmdir()
        except OSError:
            log.exception("configure: could not roll back %s", current.path)


def undo(record: UndoRecord) -> list[FileResult]:
    """Put back every file as it was before claude-tray first wrote it.

    Refuses, changing nothing, when a file was edited after claude-tray last wrote it.
    """
    entries = record.load()
    if not entries:
        raise ConfigureError(None, "nothing to undo: claude-tray has not changed this tool's files")
    for entry in entries.values():
        path = Path(entry.path)
        try:
            text = path.read_bytes().decode("utf-8") if path.exists() else None
        except (OSError, UnicodeDecodeError) as exc:
            raise ConfigureError(Path(entry.shown), f"cannot be read ({exc})") from exc
        if text is None and entry.original is None:
            continue  # we created it and it is gone already
        if text is None or record.digest(text) != entry.written:
            kept = f" The original is kept at {entry.original}." if entry.original else ""
            raise ConfigureError(
                Path(entry.shown),
                "was changed after claude-tray wrote it, so undo would lose those changes; "
                f"nothing was undone.{kept}",
            )
        if entry.original is not None and not Path(entry.original).is_file():
            raise ConfigureError(
                Path(entry.shown), f"its backup {entry.original} is missing; nothing was undone"
            )
    results: list[FileResult] = []
    created_dirs: set[Path] = set()
    for key, entry in list(entries.items()):
        path = Path(entry.path)
        if entry.original is None:
            path.unlink(missing_ok=True)
            created_dirs.update(Path(d) for d in entry.created_dirs)
            results.append(FileResult(Path(entry.shown), "removed"))
        else:
            original = Path(entry.original).read_bytes().decode("utf-8")
            atomic_write(path, original, entry.original_mode or 0o644)
            results.append(FileResult(Path(entry.shown), "restored", Path(entry.original)))
        del entries[key]
        record.save(entries)
        log.info("configure %s: undo %s", record.tool, entry.shown)
    # Folders configure created go too, deepest first, unless something else lives there.
    for directory in sorted(created_dirs, key=lambda d: len(d.parts), reverse=True):
        with contextlib.suppress(OSError):
            directory.rmdir()
    return results


def unified_diff(changes: Sequence[Change], secrets: Iterable[str | None] = ()) -> str:
    """The changes as one unified diff, with secrets masked."""
    parts: list[str] = []
    for change in changes:
        if not change.changed:
            continue
        old = change.current.text
        parts.extend(
            difflib.unified_diff(
                [] if old is None else old.splitlines(keepends=True),
                change.new_text.splitlines(keepends=True),
                fromfile="/dev/null" if old is None else str(change.path),
                tofile=str(change.path),
            )
        )
        if parts and not parts[-1].endswith("\n"):
            parts[-1] += "\n\\ No newline at end of file\n"
    text = "".join(parts)
    for secret in secrets:
        if secret:
            text = text.replace(secret, "<api key>")
    return text
