"""Start claude-tray at login: an XDG autostart entry (Linux), a LaunchAgent (macOS), the
per-user Run key (Windows). `is_enabled` reads what is really installed, not a setting.
"""

from __future__ import annotations

import contextlib
import os
import plistlib
import sys
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Protocol

from tray_app.settings import user_home

NAME = "claude-tray"
LAUNCH_AGENT_LABEL = "io.github.claude-tray"
RUN_KEY = r"Software\Microsoft\Windows\CurrentVersion\Run"


class RunKey(Protocol):
    """The values under HKCU\\...\\Run (a seam: the real one is the Windows registry)."""

    def get(self, name: str) -> str | None: ...
    def set(self, name: str, value: str) -> None: ...
    def delete(self, name: str) -> None: ...


def launch_command(
    argv0: str | None = None,
    env: Mapping[str, str] | None = None,
    *,
    frozen: bool | None = None,
    executable: str | None = None,
) -> list[str]:
    """How to start this claude-tray again: the AppImage file, the frozen app, the installed
    script, or python -m. The keyword arguments stand in for this process's own state."""
    env = os.environ if env is None else env
    executable = sys.executable if executable is None else executable
    if getattr(sys, "frozen", False) if frozen is None else frozen:
        appimage = _appimage(env, executable)
        # Inside an AppImage the executable lives in a mount that vanishes when the app
        # exits (/tmp/.mount_*): only the .AppImage file itself starts it again.
        return [appimage] if appimage else [executable]
    script = Path(argv0 if argv0 is not None else sys.argv[0])
    if script.name in (NAME, f"{NAME}.exe") and script.exists():
        return [str(script.resolve())]
    return [sys.executable, "-m", "tray_app"]


def _appimage(env: Mapping[str, str], executable: str) -> str | None:
    """The running AppImage's file, when this process is the app inside it.

    The AppImage runtime sets APPIMAGE and APPDIR, and every child inherits them: a
    claude-tray started from a terminal that an AppImage'd program opened sees another
    app's APPIMAGE. Only trust it when our own executable is inside its APPDIR."""
    appimage, appdir = env.get("APPIMAGE", ""), env.get("APPDIR", "")
    if not (appimage and appdir and os.path.isabs(appimage) and os.path.isfile(appimage)):
        return None
    inside = os.path.commonpath([os.path.abspath(executable), os.path.abspath(appdir)])
    return appimage if inside == os.path.abspath(appdir) else None


def desktop_entry_path(env: Mapping[str, str]) -> Path:
    config = env.get("XDG_CONFIG_HOME") or ""
    base = Path(config) if os.path.isabs(config) else user_home(env) / ".config"
    return base / "autostart" / f"{NAME}.desktop"


def launch_agent_path(env: Mapping[str, str]) -> Path:
    return user_home(env) / "Library" / "LaunchAgents" / f"{LAUNCH_AGENT_LABEL}.plist"


def is_enabled(
    env: Mapping[str, str], *, platform: str = sys.platform, run_key: RunKey | None = None
) -> bool:
    if platform == "win32":
        return (run_key or _registry()).get(NAME) is not None
    if platform == "darwin":
        try:
            data = plistlib.loads(launch_agent_path(env).read_bytes())
        except (OSError, plistlib.InvalidFileException, ValueError):
            return False
        return isinstance(data, dict) and data.get("RunAtLoad") is True and not data.get("Disabled")
    return _desktop_entry_enabled(desktop_entry_path(env))


def set_enabled(
    on: bool,
    command: Sequence[str],
    env: Mapping[str, str],
    *,
    platform: str = sys.platform,
    run_key: RunKey | None = None,
) -> None:
    """Install (or remove) the login item that runs `command`."""
    if platform == "win32":
        key = run_key or _registry()
        if on:
            key.set(NAME, _windows_command_line(command))
        elif key.get(NAME) is not None:
            key.delete(NAME)
        return
    path = launch_agent_path(env) if platform == "darwin" else desktop_entry_path(env)
    if not on:
        with contextlib.suppress(FileNotFoundError):
            path.unlink()
        return
    if platform == "darwin":
        content = plistlib.dumps(
            {
                "Label": LAUNCH_AGENT_LABEL,
                "ProgramArguments": list(command),
                "RunAtLoad": True,
                "ProcessType": "Interactive",
            }
        )
    else:
        content = desktop_entry(command).encode()
    _write_atomically(path, content)


def desktop_entry(command: Sequence[str]) -> str:
    return (
        "[Desktop Entry]\n"
        "Type=Application\n"
        f"Name={NAME}\n"
        "Comment=Use your Claude sign-in from any coding tool\n"
        f"TryExec={_desktop_string(command[0])}\n"
        f"Exec={_desktop_exec(command)}\n"
        f"Icon={NAME}\n"
        "Terminal=false\n"
        "Categories=Development;\n"
        "X-GNOME-Autostart-enabled=true\n"
    )


def _desktop_entry_enabled(path: Path) -> bool:
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError):
        return False
    values: dict[str, str] = {}
    in_entry = False
    for raw in text.splitlines():
        line = raw.strip()
        if line.startswith("["):
            in_entry = line == "[Desktop Entry]"
        elif in_entry and "=" in line:
            key, _, value = line.partition("=")
            values[key.strip()] = value.strip()
    # The desktop turns an entry off with Hidden=true or the GNOME key, leaving the file.
    # (A TryExec program that is gone also makes it skip the entry; that still reads as
    # on here, so the menu shows the entry we wrote and unticking it removes it.)
    return (
        bool(values.get("Exec"))
        and values.get("Hidden", "false").lower() != "true"
        and values.get("X-GNOME-Autostart-enabled", "true").lower() != "false"
    )


def _desktop_string(value: str) -> str:
    # Desktop Entry spec, "string" values: backslash, newline, tab and CR are escaped.
    return (
        value.replace("\\", "\\\\").replace("\n", "\\n").replace("\t", "\\t").replace("\r", "\\r")
    )


def _desktop_exec(command: Sequence[str]) -> str:
    # Desktop Entry spec: arguments with reserved characters are double-quoted, with
    # `"`, backtick, `$` and backslash escaped inside; a literal % is written %%. Exec is
    # also a string value, whose own escaping is undone first: every backslash of the
    # quoted form is doubled (GLib refuses to read the whole key when a lone `\"` is left).
    def quote(arg: str) -> str:
        arg = arg.replace("%", "%%")
        if arg and not any(c in arg for c in " \t\n\"'\\><~|&;$*?#()`"):
            return arg
        escaped = "".join("\\" + c if c in '"`$\\' else c for c in arg)
        return f'"{escaped}"'

    return _desktop_string(" ".join(quote(arg) for arg in command))


def _windows_command_line(command: Sequence[str]) -> str:
    import subprocess

    return subprocess.list2cmdline(list(command))


def _write_atomically(path: Path, content: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, temp = tempfile.mkstemp(prefix=f".{NAME}.", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as stream:
            stream.write(content)
        os.chmod(temp, 0o644)
        os.replace(temp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(temp)
        raise


def _registry() -> RunKey:
    if sys.platform == "win32":
        return _WindowsRunKey()
    raise OSError("the Run key exists on Windows only")


if sys.platform == "win32":
    import winreg

    class _WindowsRunKey:
        def get(self, name: str) -> str | None:
            try:
                with winreg.OpenKey(winreg.HKEY_CURRENT_USER, RUN_KEY) as key:
                    value, _ = winreg.QueryValueEx(key, name)
            except FileNotFoundError:
                return None
            return str(value)

        def set(self, name: str, value: str) -> None:
            with winreg.CreateKey(winreg.HKEY_CURRENT_USER, RUN_KEY) as key:
                winreg.SetValueEx(key, name, 0, winreg.REG_SZ, value)

        def delete(self, name: str) -> None:
            with (
                contextlib.suppress(FileNotFoundError),
                winreg.OpenKey(winreg.HKEY_CURRENT_USER, RUN_KEY, 0, winreg.KEY_SET_VALUE) as key,
            ):
                winreg.DeleteValue(key, name)
