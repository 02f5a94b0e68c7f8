"""Helpers for the desktop tests: a private D-Bus session with an unlocked gnome-keyring, and
an Xvfb display with a tray host. Every process is started here and stopped by its PID.

The tools come from `.ci/install-desktop.sh`; a missing one fails the test with that hint
rather than skipping it.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

import pytest

INSTALL_HINT = "install the desktop test packages: sudo bash .ci/install-desktop.sh"
KEYRING_PASSWORD = b"claude-tray-test"


def require(*tools: str) -> None:
    missing = [tool for tool in tools if shutil.which(tool) is None]
    if missing:
        pytest.fail(f"{', '.join(missing)} not found; {INSTALL_HINT}", pytrace=False)


def stop(process: subprocess.Popen[bytes] | subprocess.Popen[str], timeout: float = 5) -> None:
    """End a process this module started: SIGTERM, then SIGKILL."""
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout)
    for stream in (process.stdin, process.stdout, process.stderr):
        if stream is not None:
            stream.close()


def private_env(home: Path) -> dict[str, str]:
    """A desktop session's variables, all pointing under `home`."""
    runtime = home / "run"
    runtime.mkdir(mode=0o700, parents=True, exist_ok=True)
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("DBUS_", "XDG_", "DISPLAY", "WAYLAND_", "CLAUDE_TRAY_", "ANTHROPIC_"))
    }
    env.pop("PYSTRAY_BACKEND", None)
    env.update(
        {
            "HOME": str(home),
            "XDG_RUNTIME_DIR": str(runtime),
            "XDG_DATA_HOME": str(home / ".local" / "share"),
            "XDG_CONFIG_HOME": str(home / ".config"),
            "XDG_CACHE_HOME": str(home / ".cache"),
        }
    )
    return env


_BUS_CONFIG = """<!DOCTYPE busconfig PUBLIC "-//freedesktop//DTD D-Bus Bus Configuration 1.0//EN"
 "http://www.freedesktop.org/standards/dbus/1.0/busconfig.dtd">
<busconfig>
  <type>session</type>
  <listen>unix:path={socket}</listen>
  <auth>EXTERNAL</auth>
  <servicedir>{services}</servicedir>
  <policy context="default">
    <allow send_destination="*" eavesdrop="true"/>
    <allow eavesdrop="true"/>
    <allow own="*"/>
  </policy>
</busconfig>
"""
SYSTEM_SERVICES = Path("/usr/share/dbus-1/services")


@contextlib.contextmanager
def session_bus(env: dict[str, str], activatable: tuple[str, ...] = ()) -> Iterator[str]:
    """A D-Bus session daemon of our own; sets DBUS_SESSION_BUS_ADDRESS in `env`.

    Only the `activatable` services start on demand (the system's session bus would
    start gnome-keyring on the first Secret Service call, unasked and locked)."""
    require("dbus-daemon")
    runtime = Path(env["XDG_RUNTIME_DIR"])
    services = runtime / "dbus-services"
    services.mkdir(exist_ok=True)
    for name in activatable:
        shutil.copy(SYSTEM_SERVICES / f"{name}.service", services)
    config = runtime / "bus.conf"
    config.write_text(_BUS_CONFIG.format(socket=runtime / "bus", services=services))
    bus = subprocess.Popen(
        ["dbus-daemon", f"--config-file={config}", "--nofork", "--print-address=1"],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
        env=env,
    )
    try:
        assert bus.stdout is not None
        address = bus.stdout.readline().strip()
        assert address.startswith("unix:"), f"dbus-daemon did not start: {address!r}"
        env["DBUS_SESSION_BUS_ADDRESS"] = address
        yield address
    finally:
        stop(bus)


@contextlib.contextmanager
def secret_service(env: Mapping[str, str]) -> Iterator[subprocess.Popen[bytes]]:
    """gnome-keyring's Secret Service on the session bus in `env`, its login keyring
    created and unlocked with a password given on stdin."""
    require("gnome-keyring-daemon")
    daemon = subprocess.Popen(
        ["gnome-keyring-daemon", "--foreground", "--unlock", "--components=secrets"],
        stdin=subprocess.PIPE,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env=dict(env),
    )
    try:
        assert daemon.stdin is not None
        daemon.stdin.write(KEYRING_PASSWORD)
        daemon.stdin.close()
        wait_for_bus_name(env, "org.freedesktop.secrets", daemon)
        yield daemon
    finally:
        stop(daemon)


def wait_for_bus_name(
    env: Mapping[str, str], name: str, owner: subprocess.Popen[bytes], timeout: float = 10
) -> None:
    from jeepney import DBusAddress, new_method_call
    from jeepney.io.blocking import open_dbus_connection

    bus = DBusAddress("/org/freedesktop/DBus", "org.freedesktop.DBus", "org.freedesktop.DBus")
    deadline = time.monotonic() + timeout
    with open_dbus_connection(env["DBUS_SESSION_BUS_ADDRESS"]) as conn:
        while True:
            reply = conn.send_and_get_reply(new_method_call(bus, "NameHasOwner", "s", (name,)))
            if reply.body[0]:
                return
            if owner.poll() is not None or time.monotonic() > deadline:
                raise AssertionError(f"{name} did not appear on the session bus")
            time.sleep(0.05)


@dataclass
class Display:
    name: str
    env: dict[str, str]


@contextlib.contextmanager
def xvfb(env: dict[str, str], width: int = 800, height: int = 600) -> Iterator[Display]:
    """An Xvfb server on a free display number; sets DISPLAY in `env`."""
    require("Xvfb")
    read_fd, write_fd = os.pipe()
    server = subprocess.Popen(
        [
            "Xvfb",
            "-displayfd",
            str(write_fd),
            "-screen",
            "0",
            f"{width}x{height}x24",
            "-nolisten",
            "tcp",
        ],
        pass_fds=(write_fd,),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env=env,
    )
    os.close(write_fd)
    try:
        with os.fdopen(read_fd) as chosen:
            number = chosen.readline().strip()
        assert number.isdigit(), "Xvfb did not start"
        env["DISPLAY"] = f":{number}"
        yield Display(f":{number}", env)
    finally:
        stop(server)


@contextlib.contextmanager
def tray_host(env: Mapping[str, str]) -> Iterator[subprocess.Popen[bytes]]:
    """trayer, a system tray in a panel across the top right of the screen."""
    require("trayer", "xdotool")
    host = subprocess.Popen(
        [
            "trayer",
            "--edge",
            "top",
            "--align",
            "right",
            "--widthtype",
            "request",
            "--height",
            "24",
            "--transparent",
            "false",
            "--tint",
            "0xffffff",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env=dict(env),
    )
    try:
        wait_for_window(env, "--class", "trayer", timeout=10)
        yield host
    finally:
        stop(host)


def wait_for_window(env: Mapping[str, str], *query: str, timeout: float) -> str:
    """The first window `xdotool search QUERY` finds, waiting up to `timeout`."""
    deadline = time.monotonic() + timeout
    while True:
        found = subprocess.run(
            ["xdotool", "search", "--onlyvisible", *query],
            capture_output=True,
            text=True,
            env=dict(env),
            timeout=10,
        )
        if found.stdout.split():
            return found.stdout.split()[0]
        if time.monotonic() > deadline:
            raise AssertionError(f"no window matching {query}")
        time.sleep(0.1)
