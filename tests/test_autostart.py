"""Start at login: what is installed on each platform, and that the toggle reads it back."""

from __future__ import annotations

import plistlib
import subprocess
import sys
from pathlib import Path

from desktop import require

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
    # TryExec: once the program is gone (uninstalled, an AppImage moved), the desktop
    # skips the entry instead of failing at every login.
    assert "TryExec=/opt/claude tray/claude-tray\n" in text
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
    # Quoting gives "say \"hi\"", and the string-value escaping then doubles the backslashes.
    assert 'Exec=/usr/bin/python3 -m tray_app 100%% "say \\\\"hi\\\\""\n' in entry


def test_desktops_read_back_the_exact_command(tmp_path: Path) -> None:
    # Read as the desktops read it: GLib's key-file parser (string unescaping), then the
    # shell-style argument split GIO applies to Exec.
    from gi.repository import GLib  # PyGObject, in requirements-test.lock

    entry = tmp_path / "claude-tray.desktop"
    for command in (
        COMMAND,
        ["/usr/bin/python3", "-m", "tray_app", 'say "hi"'],
        [r"C:\odd\path with space\claude-tray", "$HOME", "`x`", "a'b"],
    ):
        entry.write_text(autostart.desktop_entry(command))
        keyfile = GLib.KeyFile()
        keyfile.load_from_file(str(entry), GLib.KeyFileFlags.NONE)
        _, argv = GLib.shell_parse_argv(keyfile.get_string("Desktop Entry", "Exec"))
        assert argv == command
        assert keyfile.get_string("Desktop Entry", "TryExec") == command[0]


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


def test_the_autostart_entry_is_valid_for_the_desktop(tmp_path: Path) -> None:
    require("desktop-file-validate")
    for command in (COMMAND, ["/usr/bin/python3", "-m", "tray_app"], [r"/odd\path/claude-tray"]):
        entry = tmp_path / "claude-tray.desktop"
        entry.write_text(autostart.desktop_entry(command))
        checked = subprocess.run(
            ["desktop-file-validate", str(entry)], capture_output=True, text=True, check=False
        )
        assert checked.returncode == 0 and not checked.stdout.strip(), checked.stdout
    # String values escape a backslash (Desktop Entry spec, "Possible value types").
    assert "TryExec=/odd\\\\path/claude-tray\n" in autostart.desktop_entry(
        [r"/odd\path/claude-tray"]
    )


def test_a_frozen_app_starts_itself_again(tmp_path: Path) -> None:
    exe = str(tmp_path / "opt" / "claude-tray" / "claude-tray")
    assert autostart.launch_command(env={}, frozen=True, executable=exe) == [exe]


def test_inside_an_appimage_the_appimage_file_is_started(tmp_path: Path) -> None:
    image = tmp_path / "Applications" / "claude-tray-x86_64.AppImage"
    image.parent.mkdir()
    image.write_bytes(b"\x7fELF")
    mount = tmp_path / ".mount_claudeXYZ"  # gone once the app exits
    exe = str(mount / "usr" / "lib" / "claude-tray" / "claude-tray")
    env = {"APPIMAGE": str(image), "APPDIR": str(mount)}
    assert autostart.launch_command(env=env, frozen=True, executable=exe) == [str(image)]


def test_an_appimage_variable_inherited_from_another_app_is_ignored(tmp_path: Path) -> None:
    # A terminal opened by some other AppImage passes its APPIMAGE/APPDIR on to everything
    # started from it: they describe that app, not this one.
    other = tmp_path / "Other.AppImage"
    other.write_bytes(b"\x7fELF")
    exe = "/opt/claude-tray/claude-tray"
    env = {"APPIMAGE": str(other), "APPDIR": str(tmp_path / ".mount_other")}
    assert autostart.launch_command(env=env, frozen=True, executable=exe) == [exe]
    # Nor is one naming a file that is not there.
    mount = tmp_path / ".mount_claudeXYZ"
    gone = {"APPIMAGE": str(tmp_path / "moved.AppImage"), "APPDIR": str(mount)}
    inside = str(mount / "usr" / "lib" / "claude-tray" / "claude-tray")
    assert autostart.launch_command(env=gone, frozen=True, executable=inside) == [inside]


def test_from_source_the_appimage_variables_do_not_matter(tmp_path: Path) -> None:
    image = tmp_path / "claude-tray.AppImage"
    image.write_bytes(b"\x7fELF")
    env = {"APPIMAGE": str(image), "APPDIR": str(tmp_path)}
    assert autostart.launch_command("/somewhere/pytest", env, frozen=False) == [
        sys.executable,
        "-m",
        "tray_app",
    ]
