"""The real tray app on a real (virtual) desktop: Xvfb, a tray host (trayer), a D-Bus session
with gnome-keyring and AT-SPI. `claude-tray` with no arguments starts there; the test finds
its icon, clicks it, reads the open menu's items through AT-SPI (what a screen reader sees,
so the labels, enabled and checked states are the real GTK widgets'), copies the base URL
through the menu, saves a screenshot to test-artifacts/, checks that a second launch hands
over, and quits through the menu: the app exits 0 and leaves no CLI process.

Set UPDATE_SCREENSHOTS=1 to also refresh docs/tray-menu.png for the README.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest
from conftest import LIVE_PROXIES, ROOT, claude_pids, proxy_env, wait_healthy
from desktop import (
    INSTALL_HINT,
    private_env,
    require,
    secret_service,
    session_bus,
    tray_host,
    wait_for_window,
    xvfb,
)
from upstream import Upstream, text

ARTIFACTS = ROOT / "test-artifacts"
ATSPI = Path(__file__).parent / "atspi_menu.py"
APP = "claude-tray"


def plan_headers(now: int) -> dict[str, str]:
    """The plan's usage windows, as Anthropic reports them to a subscriber's CLI."""
    return {
        "anthropic-ratelimit-unified-status": "allowed",
        "anthropic-ratelimit-unified-representative-claim": "five_hour",
        "anthropic-ratelimit-unified-reset": str(now + 7200),
        "anthropic-ratelimit-unified-5h-utilization": "0.42",
        "anthropic-ratelimit-unified-5h-reset": str(now + 7200),
        "anthropic-ratelimit-unified-7d-utilization": "0.18",
        "anthropic-ratelimit-unified-7d-reset": str(now + 3 * 86400),
    }


def free_port() -> int:
    """The default port when it is free (the screenshot then shows what users see)."""
    for port in (3456, 0):
        with socket.socket() as probe:
            try:
                probe.bind(("127.0.0.1", port))
            except OSError:
                continue
            return int(probe.getsockname()[1])
    raise AssertionError("no free port")


class Desktop:
    def __init__(self, env: dict[str, str]) -> None:
        self.env = env

    def run(self, *argv: str, timeout: float = 20) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            list(argv), capture_output=True, text=True, env=self.env, timeout=timeout, check=False
        )

    def click_icon(self) -> None:
        # The icon's window: class claude-tray, named after the tooltip.
        window = wait_for_window(self.env, "--classname", f"^{APP}$", timeout=20)
        # Real pointer events (XTest): GTK ignores synthetic ones sent to a window.
        moved = self.run("xdotool", "mousemove", "--window", window, "8", "8", "click", "1")
        assert moved.returncode == 0, moved.stderr

    def menu(self) -> list[dict[str, Any]]:
        done = self.run(sys.executable, str(ATSPI), "dump", APP)
        assert done.returncode == 0, f"no menu: {done.stdout} {done.stderr[-2000:]}"
        return json.loads(done.stdout)  # type: ignore[no-any-return]

    def choose(self, label: str) -> None:
        done = self.run(sys.executable, str(ATSPI), "click", APP, label)
        assert done.returncode == 0, f"could not click {label!r}: {done.stdout} {done.stderr}"

    def close_menu(self) -> None:
        self.run("xdotool", "key", "Escape")

    def screenshot(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        shot = self.run("import", "-window", "root", str(path))
        assert shot.returncode == 0, shot.stderr


def items(menu: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {child["name"]: child for child in menu["children"] if child["role"] != "separator"}


def crop_to_content(source: Path, target: Path, margin: int = 12) -> None:
    """Keep the part of the screen with the panel and the menu on it (the rest is black)."""
    from PIL import Image

    with Image.open(source) as screen:
        box = screen.convert("RGB").getbbox()
        assert box is not None, "the screenshot is empty"
        left, top, right, bottom = box
        screen.crop(
            (
                max(left - margin, 0),
                max(top - margin, 0),
                min(right + margin, screen.width),
                min(bottom + margin, screen.height),
            )
        ).save(target)


@pytest.fixture
def desktop(tmp_path: Path) -> Iterator[Desktop]:
    require("xclip", "import", "secret-tool")
    try:  # pystray's menu on Linux is GTK's, through PyGObject (requirements-test.lock)
        import gi

        gi.require_version("Gtk", "3.0")
        gi.require_version("Atspi", "2.0")
    except (ImportError, ValueError) as exc:
        pytest.fail(f"PyGObject with GTK 3 and AT-SPI is needed ({exc}); {INSTALL_HINT}")
    env = private_env(tmp_path / "home")
    with (
        session_bus(env, activatable=("org.a11y.Bus",)),
        secret_service(env),
        xvfb(env),
        tray_host(env),
    ):
        yield Desktop(env)


def test_the_tray_app_on_a_desktop(desktop: Desktop, upstream: Upstream, tmp_path: Path) -> None:
    home = Path(desktop.env["HOME"])
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    env = {
        **desktop.env,
        **{
            k: v
            for k, v in proxy_env(home, upstream, port=str(port)).items()
            if k.startswith(("CLAUDE", "ANTHROPIC", "PYTHON"))
        },
    }
    # Signed in as a Max subscriber: the CLI uses this planted sign-in (against the local
    # upstream), and the tray reads plan and expiry from it.
    del env["CLAUDE_TRAY_UPSTREAM_API_KEY"]
    config_dir = Path(env["CLAUDE_CONFIG_DIR"])
    config_dir.mkdir(parents=True)
    expires = time.time() + 3 * 86400
    credentials = {
        "claudeAiOauth": {
            "accessToken": "sk-ant-oat01-planted-for-the-tray-test",
            "refreshToken": "sk-ant-ort01-planted-for-the-tray-test",
            "expiresAt": int(expires * 1000),
            "scopes": ["user:inference", "user:profile"],
            "subscriptionType": "max",
        }
    }
    (config_dir / ".credentials.json").write_text(json.dumps(credentials))
    desktop.env = env
    before = claude_pids()  # other tests' proxies may hold some
    log_file = tmp_path / "app.out"
    with log_file.open("w") as out:
        app = subprocess.Popen(
            [sys.executable, "-m", "tray_app"], env=env, cwd=ROOT, stdout=out, stderr=out
        )
    LIVE_PROXIES.add(app.pid)
    try:
        wait_healthy(url)
        # The proxy's key was made on first run and kept in the keyring; it is required.
        stored = desktop.run("secret-tool", "lookup", "service", APP, "username", "proxy-api-key")
        key = stored.stdout
        assert stored.returncode == 0 and key.startswith("sk-ctray-")
        assert httpx.get(url + "/v1/models").status_code == 401
        now = int(time.time())
        upstream.push(text("hi from the tray", headers=plan_headers(now)))
        client = openai.OpenAI(base_url=url + "/v1", api_key=key, max_retries=0)
        with client:
            reply = client.chat.completions.create(
                model="sonnet", messages=[{"role": "user", "content": "Plan the tray test"}]
            )
        assert reply.choices[0].message.content == "hi from the tray"
        time.sleep(2.5)  # the tray polls every 2 s: let it see the new session

        # Open the menu and read what it says.
        desktop.click_icon()
        [menu] = desktop.menu()
        shown = items(menu)
        names = list(shown)
        assert names[0] == f"Running on {url} · 0 active"
        assert not shown[names[0]]["sensitive"]
        assert names[1].startswith("Signed in · Max plan · valid until ")
        assert names[2] == "Billing: Claude Max plan"
        assert names[3].startswith("5-hour limit: 42% used · resets ")
        assert names[4].startswith("Weekly limit: 18% used · resets ")
        assert not any(shown[n]["sensitive"] for n in names[:5])
        assert [shown[n]["sensitive"] for n in ("Start", "Stop", "Restart")] == [False, True, True]
        assert all(
            shown[n]["sensitive"]
            for n in ("Copy OpenAI base URL", "Copy Anthropic base URL", "Copy API key", "Quit")
        )
        sessions = items(shown["Sessions"])
        assert [n.split(" · ")[0] for n in sessions] == ["Plan the tray test"]
        settings = items(shown["Settings"])
        assert settings["Warm pool"]["checked"] and not settings["Start at login"]["checked"]
        assert "Configure tools" in shown  # filled by the configurator

        shot = ARTIFACTS / "tray-xvfb-screen.png"
        desktop.screenshot(shot)
        crop_to_content(shot, ARTIFACTS / "tray-menu.png")
        if os.environ.get("UPDATE_SCREENSHOTS") == "1":
            shutil.copy(ARTIFACTS / "tray-menu.png", ROOT / "docs" / "tray-menu.png")

        # A menu action does what it says: the base URL lands on the clipboard.
        desktop.choose("Copy OpenAI base URL")
        deadline = time.monotonic() + 10
        while (pasted := desktop.run("xclip", "-o", "-selection", "clipboard").stdout) != (
            url + "/v1"
        ) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert pasted == url + "/v1"

        # A second launch hands over to this one and exits 0.
        second = desktop.run(sys.executable, "-m", "tray_app", timeout=30)
        assert second.returncode == 0, second.stderr
        assert (
            second.stdout.strip() == f"claude-tray is already running: Running on {url} · 0 active"
        )

        # Quit from the menu: the app and every CLI process end within seconds.
        desktop.click_icon()
        desktop.menu()
        began = time.monotonic()
        desktop.choose("Quit")
        assert app.wait(15) == 0
        assert time.monotonic() - began < 10
        deadline = time.monotonic() + 2
        while claude_pids() - before and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not claude_pids() - before, "quitting left claude processes"
    finally:
        if app.poll() is None:
            app.kill()
            app.wait()
        LIVE_PROXIES.discard(app.pid)
        log = log_file.read_text()
        (ARTIFACTS / "tray-xvfb-app.log").parent.mkdir(exist_ok=True)
        (ARTIFACTS / "tray-xvfb-app.log").write_text(log)
    assert "Traceback" not in log, log[-3000:]
    assert "another launch found claude-tray already running" in log
