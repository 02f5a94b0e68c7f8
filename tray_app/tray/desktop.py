"""Desktop chores for menu actions: the clipboard, opening a folder, a terminal running `claude`.

Each one uses the platform's own tool (xclip/xsel/wl-copy, pbcopy, clip; xdg-open, open,
startfile; a terminal emulator) and reports failure as a sentence instead of raising, so a
missing tool degrades to a notification, never a crash.
"""

from __future__ import annotations

import logging
import os
import shlex
import shutil
import subprocess
import sys
import threading
from collections.abc import Mapping, Sequence
from pathlib import Path

log = logging.getLogger(__name__)

_TIMEOUT = 5.0


def clipboard_commands(env: Mapping[str, str], platform: str = sys.platform) -> list[list[str]]:
    """The commands that could take text on stdin for the clipboard, best first."""
    if platform == "darwin":
        return [["pbcopy"]]
    if platform == "win32":
        return [["clip"]]
    found: list[list[str]] = []
    if env.get("WAYLAND_DISPLAY"):
        found.append(["wl-copy"])
    if env.get("DISPLAY"):
        found.append(["xclip", "-selection", "clipboard"])
        found.append(["xsel", "--clipboard", "--input"])
    return found


def copy_text(text: str, env: Mapping[str, str]) -> str | None:
    """Put `text` on the clipboard; None when done, else why not (for a notification)."""
    commands = clipboard_commands(env)
    for command in commands:
        if shutil.which(command[0], path=env.get("PATH")) is None:
            continue
        try:
            # xclip and xsel stay in the background to serve the selection: their output
            # must not be a pipe we wait on, and they must outlive this call.
            subprocess.run(
                command,
                input=text.encode(),
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
                timeout=_TIMEOUT,
                check=True,
                start_new_session=sys.platform != "win32",
                creationflags=_NO_WINDOW,
            )
        except (OSError, subprocess.SubprocessError) as exc:
            log.warning("copying with %s failed: %s", command[0], exc)
            continue
        return None
    if not commands:
        return "there is no clipboard in this session"
    names = " or ".join(c[0] for c in commands)
    return f"no clipboard tool worked; install {names}"


def open_path(path: Path, env: Mapping[str, str]) -> str | None:
    """Show a folder (or open a file) in the desktop's file manager or editor."""
    try:
        if sys.platform == "win32":
            os.startfile(path)  # type: ignore[attr-defined]  # Windows only
            return None
        opener = "open" if sys.platform == "darwin" else "xdg-open"
        if shutil.which(opener, path=env.get("PATH")) is None:
            return f"{opener} is not installed; the path is {path}"
        _detach([opener, str(path)], env)
    except OSError as exc:
        return f"could not open {path}: {exc.strerror or exc}"
    return None


# Terminal emulators and how each is told to run a command, most likely first.
_TERMINALS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("x-terminal-emulator", ("-e",)),
    ("gnome-terminal", ("--",)),
    ("konsole", ("-e",)),
    ("xfce4-terminal", ("-x",)),
    ("kitty", ()),
    ("alacritty", ("-e",)),
    ("xterm", ("-e",)),
)


def open_terminal(argv: Sequence[str], env: Mapping[str, str]) -> bool:
    """Open a terminal window running `argv` (for `claude` to log in); False if none opened."""
    command = shlex.join(argv)
    try:
        if sys.platform == "darwin":
            script = f'tell application "Terminal" to do script "{_applescript(command)}"'
            _detach(
                ["osascript", "-e", script, "-e", 'tell application "Terminal" to activate'], env
            )
            return True
        if sys.platform == "win32":
            subprocess.Popen(  # a console window of its own; the user closes it
                ["cmd", "/k", subprocess.list2cmdline(list(argv))],
                creationflags=getattr(subprocess, "CREATE_NEW_CONSOLE", 0),
            )
            return True
        if not (env.get("DISPLAY") or env.get("WAYLAND_DISPLAY")):
            return False
        for name, flag in _TERMINALS:
            if shutil.which(name, path=env.get("PATH")) is not None:
                _detach([name, *flag, *argv], env)
                return True
    except OSError as exc:
        log.warning("could not open a terminal: %s", exc)
    return False


def _detach(argv: list[str], env: Mapping[str, str]) -> None:
    """Start a desktop program that lives on its own; a thread reaps it when it exits."""
    process = subprocess.Popen(
        argv,
        env=dict(env),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    threading.Thread(target=process.wait, name="claude-tray-reap", daemon=True).start()


def _applescript(text: str) -> str:
    return text.replace("\\", "\\\\").replace('"', '\\"')


_NO_WINDOW = getattr(subprocess, "CREATE_NO_WINDOW", 0)
