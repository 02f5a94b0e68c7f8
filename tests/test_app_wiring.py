"""The composition root's own wiring: `claude-tray configure` and the tray's tool menu."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from tray_app.app import ToolMenu
from tray_app.settings import load_settings
from tray_app.supervisor import Notice
from tray_app.tray.menu import RunTool

ROOT = Path(__file__).resolve().parent.parent


def scratch_env(tmp_path: Path) -> dict[str, str]:
    home = tmp_path / "home"
    (home / ".config" / "opencode").mkdir(parents=True)
    # OpenCode counts as used here when its folder holds something of its own.
    (home / ".config" / "opencode" / "AGENTS.md").write_text("# notes\n")
    return {
        "HOME": str(home),
        "XDG_CONFIG_HOME": str(home / ".config"),
        "CLAUDE_TRAY_HOME": str(tmp_path / "tray"),
        "CLAUDE_TRAY_PORT": "4567",
        "PATH": "/usr/bin:/bin",
    }


def test_configure_command_is_wired(tmp_path: Path) -> None:
    env = scratch_env(tmp_path)
    listed = subprocess.run(
        [sys.executable, "-m", "tray_app", "configure", "--list"],
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert listed.returncode == 0, listed.stderr
    assert "opencode" in listed.stdout.lower()
    done = subprocess.run(
        [sys.executable, "-m", "tray_app", "configure", "opencode"],
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    config = json.loads((Path(env["XDG_CONFIG_HOME"]) / "opencode" / "opencode.json").read_text())
    assert config["provider"]["claude-tray"]["options"]["baseURL"] == "http://127.0.0.1:4567/v1"


def test_the_tray_tool_menu_configures_and_undoes(tmp_path: Path) -> None:
    env = scratch_env(tmp_path)
    notices: list[Notice] = []
    menu = ToolMenu(lambda: load_settings(env), env, notices.append)
    entries = {e.label: e for e in menu.entries()}
    opencode = next(e for label, e in entries.items() if "OpenCode" in label)
    assert opencode.enabled
    assert opencode.checked is False
    assert isinstance(opencode.command, RunTool)

    opencode.command.action()
    path = Path(env["XDG_CONFIG_HOME"]) / "opencode" / "opencode.json"
    assert "claude-tray" in json.loads(path.read_text())["provider"]
    assert notices[-1].title == "Configured opencode"
    again = next(e for e in menu.entries() if "OpenCode" in e.label)
    assert again.checked is True

    assert isinstance(again.command, RunTool)
    again.command.action()  # checked: a click puts the file back (we created it: removed)
    assert not path.exists()
    assert notices[-1].title == "Undid opencode"
