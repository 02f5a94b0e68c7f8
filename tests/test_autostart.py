"""Start at login: what is installed on each platform, and that the toggle reads it back."""

from __future__ import annotations

import plistlib
import sys
from pathlib import Path

from tray_app.integrations import autostart

COMMAND = ["/opt/claude tray/claude-tray"]


def env_for(tmp_path: Path) -> dict[str, str]:
    return {"HOME": str(tmp_path), "XDG_CONFIG_HOME": str(tmp_path / "xdg")}


def test_xdg_autostart_entry_round_trip(tmp_path: Path) -> None:
    env = env_for(tmp_path)
    assert not autostart.is_enabled(env, platform="linux")
    autostart.set_enabled(True, COMMAND, env, platform="linux")
    entry = tmp_path / "xdg" / "autostart" / "claude-tray.desktop"
    text = entry.read_text()
    assert text.startswith("[Desktop Entry]\nType=Application\n")
    assert 'Exec="/opt/claude tray/claude-tray"\n' in text
    assert autostart.is_enabled(env, platform="linux")
    autostart.set_enabled(False, COMMAND, env, platform="linux")
    assert not entry.exists() and not autostart.is_enabled(env, platform="linux")
    autostart.set_enabled(False, COMMAND, env, platform="linux")  # nothing to remove: fine


def test_an_entry_the_desktop_turned_off_reads_as_off(tmp_path: Path) -> None:
    env = env_for(tmp_path)
    autostart.set_enabled(True, COMMAND, env, platform="linux")
    entry = autostart.desktop_entry_path(env)
    entry.write_text(entry.read_text().replace("enabled=true", "enabled=false"))
    assert not autostart.is_enabled(env, platform="linux")
    entry.write_text(autostart.desktop_entry(COMMAND) + "Hidden=true\n")
    assert not autostart.is_enabled(env, platform="linux")


def test_xdg_config_home_defaults_to_dot_config(tmp_path: Path) -> None:
    env = {"HOME": str(tmp_path), "XDG_CONFIG_HOME": "relative/is/ignored"}
    assert autostart.desktop_entry_path(env) == tmp_path / ".config/autostart/claude-tray.desktop"


def test_desktop_exec_quoting() -> None:
    entry = autostart.desktop_entry(["/usr/bin/python3", "-m", "tray_app", "100%", 'say "hi"'])
    assert 'Exec=/usr/bin/python3 -m tray_app 100%% "say \\"hi\\""\n' in entry


def test_launch_agent_round_trip(tmp_path: Path) -> None:
    env = env_for(tmp_path)
    assert not autostart.is_enabled(env, platform="darwin")
    autostart.set_enabled(True, COMMAND, env, platform="darwin")
    plist = tmp_path / "Library" / "LaunchAgents" / "io.github.claude-tray.plist"
    data = plistlib.loads(plist.read_bytes())
    assert data["ProgramArguments"] == COMMAND and data["RunAtLoad"] is True
    assert autostart.is_enabled(env, platform="darwin")
    plist.write_bytes(plistlib.dumps({**data, "Disabled": True}))
    assert not autostart.is_enabled(env, platform="darwin")
    autostart.set_enabled(False, COMMAND, env, platform="darwin")
    assert not plist.exists()


class FakeRunKey:
    def __init__(self) -> None:
        self.values: dict[str, str] = {}

    def get(self, name: str) -> str | None:
        return self.values.get(name)

    def set(self, name: str, value: str) -> None:
        self.values[name] = value

    def delete(self, name: str) -> None:
        del self.values[name]


def test_windows_run_key_round_trip(tmp_path: Path) -> None:
    key = FakeRunKey()
    env = env_for(tmp_path)
    assert not autostart.is_enabled(env, platform="win32", run_key=key)
    autostart.set_enabled(
        True, [r"C:\Program Files\claude-tray\claude-tray.exe"], env, platform="win32", run_key=key
    )
    assert key.values == {"claude-tray": r'"C:\Program Files\claude-tray\claude-tray.exe"'}
    assert autostart.is_enabled(env, platform="win32", run_key=key)
    autostart.set_enabled(False, [], env, platform="win32", run_key=key)
    assert key.values == {} and not autostart.is_enabled(env, platform="win32", run_key=key)


def test_launch_command(tmp_path: Path) -> None:
    script = tmp_path / "claude-tray"
    script.write_text("#!/bin/sh\n")
    assert autostart.launch_command(str(script)) == [str(script.resolve())]
    assert autostart.launch_command("/somewhere/pytest") == [sys.executable, "-m", "tray_app"]
