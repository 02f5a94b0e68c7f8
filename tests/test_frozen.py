"""The frozen Linux build, as a user gets it: packaging/build-linux.sh freezes the app with
PyInstaller and packs the .deb (cached by a hash of its inputs); real dpkg installs that
.deb into a scratch root, and everything below runs from the installed tree only:
`claude-tray --version`; `claude-tray serve` answering /health and a chat through the
bundled CLI and the scripted upstream; the tray icon with its GTK menu under Xvfb; and
`dpkg -r` / `--purge` taking every installed file away again.
"""

from __future__ import annotations

import importlib.util
import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import openai
import pytest
from conftest import ROOT, proxy_env, wait_healthy
from desktop import (
    private_env,
    require,
    secret_service,
    session_bus,
    tray_host,
    wait_for_window,
    xvfb,
)
from upstream import Upstream, text

from tray_app import __version__

# The first run freezes the app (about a minute on 2 cores); later runs find it cached.
pytestmark = pytest.mark.timeout(900)

PACKAGE = "claude-tray"
APP_DIR = "/opt/claude-tray"
CLI_IN_APP = f"{APP_DIR}/_internal/claude_agent_sdk/_bundled/claude"
ATSPI = Path(__file__).parent / "atspi_menu.py"
HICOLOR_SIZES = (16, 22, 24, 32, 48, 64, 128, 256, 512)


@dataclass
class Build:
    folder: Path  # the one-folder app, as PyInstaller left it
    deb: Path


@dataclass
class Installed:
    root: Path  # the scratch root dpkg installed into

    def path(self, absolute: str) -> Path:
        return self.root / absolute.lstrip("/")

    @property
    def command(self) -> Path:
        """/usr/bin/claude-tray, followed inside the scratch root (the link is absolute)."""
        link = self.path("/usr/bin/claude-tray")
        return self.path(os.readlink(link))

    def files(self) -> list[str]:
        return dpkg(self.root, "-L", PACKAGE).stdout.split("\n")


def dpkg(root: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """Real dpkg on a scratch root: its own database under root/var/lib/dpkg, maintainer
    scripts run in place (no chroot: the root has no shell) with DPKG_ROOT set, and the
    host's libc6 is not in that database, so dependencies are not enforced."""
    done = subprocess.run(
        [
            "dpkg",
            f"--root={root}",
            "--force-not-root",
            "--force-script-chrootless",
            "--force-depends",
            *args,
        ],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, f"dpkg {' '.join(args)}: {done.stdout}\n{done.stderr}"
    return done


@pytest.fixture(scope="session")
def build() -> Build:
    require("dpkg", "dpkg-deb")
    if importlib.util.find_spec("PyInstaller") is None:
        pytest.fail("PyInstaller is not installed: rebuild .venv from requirements-test.lock")
    done = subprocess.run(
        ["bash", str(ROOT / "packaging" / "build-linux.sh")],
        env={**os.environ, "PYTHON": sys.executable},
        capture_output=True,
        text=True,
        timeout=900,
        check=False,
    )
    assert done.returncode == 0, f"build-linux.sh failed:\n{done.stdout}\n{done.stderr[-4000:]}"
    out = Path(done.stdout.strip().splitlines()[-1])
    [deb] = out.glob(f"{PACKAGE}_{__version__}_*.deb")
    return Build(out / PACKAGE, deb)


@pytest.fixture(scope="module")
def installed(build: Build, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Installed]:
    root = tmp_path_factory.mktemp("dpkg-root")
    admin = root / "var" / "lib" / "dpkg"
    for folder in (admin / "info", admin / "updates", admin / "triggers", root / "var" / "log"):
        folder.mkdir(parents=True)
    (admin / "status").touch()
    dpkg(root, "--install", str(build.deb))
    yield Installed(root)
    # The removal test normally did this already; a failed run still leaves no package.
    if PACKAGE in dpkg(root, "--list").stdout:
        dpkg(root, "--purge", PACKAGE)


def frozen_pids(root: Path) -> set[int]:
    """Every running process whose program lives in the scratch root: the app, its CLIs."""
    pids = set()
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                exe = os.readlink(entry / "exe")
            except OSError:
                continue
            if exe.startswith(str(root) + "/"):
                pids.add(int(entry.name))
    return pids


def wait_gone(root: Path, timeout: float = 10) -> set[int]:
    deadline = time.monotonic() + timeout
    while (left := frozen_pids(root)) and time.monotonic() < deadline:
        time.sleep(0.1)
    for pid in left:  # never leave them to the next test, whatever it asserts
        os.kill(pid, signal.SIGKILL)
    return left


def test_the_deb_holds_the_app_its_menu_entry_and_icons(build: Build, installed: Installed) -> None:
    files = installed.files()
    for path in (
        f"{APP_DIR}/claude-tray",
        CLI_IN_APP,
        "/usr/bin/claude-tray",
        "/usr/share/applications/claude-tray.desktop",
        "/etc/xdg/autostart/claude-tray.desktop",
        *(f"/usr/share/icons/hicolor/{n}x{n}/apps/claude-tray.png" for n in HICOLOR_SIZES),
    ):
        assert path in files, f"{path} is not in the package"
    assert os.readlink(installed.path("/usr/bin/claude-tray")) == f"{APP_DIR}/claude-tray"
    # The CLI came along whole and runnable: it is what answers every request.
    cli = installed.path(CLI_IN_APP)
    assert os.access(cli, os.X_OK)
    sdk_cli = Path(importlib.util.find_spec("claude_agent_sdk").origin).parent  # type: ignore[arg-type,union-attr]
    assert cli.stat().st_size == (sdk_cli / "_bundled" / "claude").stat().st_size
    # Files owned by root whoever built it (dpkg-deb --root-owner-group).
    listing = subprocess.run(
        ["dpkg-deb", "--contents", str(build.deb)], capture_output=True, text=True, check=True
    ).stdout
    assert all(" root/root " in line for line in listing.splitlines())

    require("desktop-file-validate")
    for entry in (
        "/usr/share/applications/claude-tray.desktop",
        "/etc/xdg/autostart/claude-tray.desktop",
    ):
        checked = subprocess.run(
            ["desktop-file-validate", str(installed.path(entry))],
            capture_output=True,
            text=True,
            check=False,
        )
        assert checked.returncode == 0 and not checked.stdout.strip(), checked.stdout
    # The system-wide autostart entry is off until an admin turns it on.
    autostart = installed.path("/etc/xdg/autostart/claude-tray.desktop").read_text()
    assert "\nHidden=true\n" in autostart
    control = dpkg(installed.root, "--status", PACKAGE).stdout
    assert "Depends: libc6 (>= " in control
    assert (installed.root / "var/lib/dpkg/info/claude-tray.conffiles").read_text().split() == [
        "/etc/xdg/autostart/claude-tray.desktop"
    ]


def test_version_from_the_installed_app(installed: Installed) -> None:
    done = subprocess.run(
        [str(installed.command), "--version"], capture_output=True, text=True, timeout=60
    )
    assert (done.returncode, done.stdout, done.stderr) == (0, f"claude-tray {__version__}\n", "")


def test_serve_answers_health_and_a_chat_through_the_bundled_cli(
    installed: Installed, upstream: Upstream, tmp_path: Path
) -> None:
    env = proxy_env(tmp_path / "home", upstream)
    (tmp_path / "home").mkdir()
    app = subprocess.Popen(
        [str(installed.command), "serve", "--port", "0"],
        env=env,
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert app.stdout is not None
        line = app.stdout.readline()
        assert f"claude-tray {__version__} listening on " in line, line + app.stderr.read()
        url = line.split()[-1]
        health = wait_healthy(url, app, timeout=60)
        # The CLI that answers is the one inside the installed app, not the venv's.
        assert health["cli"] == {
            "path": str(installed.path(CLI_IN_APP)),
            # claude.version holds what `claude --version` prints: "2.1.330 (Claude Code)".
            "version": (installed.path(CLI_IN_APP).parent / "claude.version")
            .read_text()
            .split()[0],
            "problem": None,
        }

        upstream.push(text("Hello", " from the", " frozen app"))
        client = openai.OpenAI(base_url=url + "/v1", api_key="x", max_retries=0)
        with client:
            reply = client.chat.completions.create(
                model="sonnet", messages=[{"role": "user", "content": "Say hello"}]
            )
        assert reply.choices[0].message.content == "Hello from the frozen app"
        assert upstream.messages_requests()[-1].user_texts()[-1] == "Say hello"
        # The CLI (and every command an agent would run) gets the user's environment,
        # not the one PyInstaller set up for the app's own GTK and libraries.
        clis = [pid for pid in frozen_pids(installed.root) if pid != app.pid]
        assert clis, "the warm pool should hold a CLI process"
        for pid in clis:
            environ = Path(f"/proc/{pid}/environ").read_bytes().decode(errors="replace")
            leaked = [v.split("=")[0] for v in environ.split("\0") if str(installed.root) in v]
            assert leaked == [], f"bundle paths leaked into the CLI's environment: {leaked}"
    finally:
        app.send_signal(signal.SIGTERM)
        _, err = app.communicate(timeout=30)
    assert app.returncode == 0, err[-3000:]
    assert "Traceback" not in err, err[-3000:]
    assert not wait_gone(installed.root), "serve left processes behind"


def test_the_tray_starts_under_xvfb_with_its_menu(
    installed: Installed, upstream: Upstream, tmp_path: Path
) -> None:
    require("xdotool", "secret-tool")
    env = private_env(tmp_path / "home")
    port = _free_port()
    url = f"http://127.0.0.1:{port}"
    for key, value in proxy_env(Path(env["HOME"]), upstream, port=str(port)).items():
        if key.startswith(("CLAUDE", "ANTHROPIC")):
            env[key] = value
    with (
        session_bus(env, activatable=("org.a11y.Bus",)),
        secret_service(env),
        xvfb(env),
        tray_host(env),
    ):
        log = (tmp_path / "app.log").open("w+")
        app = subprocess.Popen([str(installed.command)], env=env, stdout=log, stderr=log, text=True)
        try:
            wait_healthy(url, app, timeout=60)
            # The icon is in the tray host, and its menu is GTK's: the frozen app found
            # PyGObject, GTK and AppIndicator inside itself (pystray's menu-less xorg
            # backend would have been refused, and the app would run headless).
            window = wait_for_window(env, "--classname", f"^{PACKAGE}$", timeout=30)
            clicked = subprocess.run(
                ["xdotool", "mousemove", "--window", window, "8", "8", "click", "1"],
                env=env,
                capture_output=True,
                text=True,
                timeout=20,
            )
            assert clicked.returncode == 0, clicked.stderr
            menu = _atspi(env, "dump", PACKAGE)
            labels = [item["name"] for item in menu[0]["children"] if item["role"] != "separator"]
            assert labels[0] == f"Running on {url} · 0 active"
            assert "Quit" in labels
            _atspi(env, "click", PACKAGE, "Quit")
            assert app.wait(30) == 0
        finally:
            if app.poll() is None:
                app.kill()
                app.wait()
            log.seek(0)
            output = log.read()
            log.close()
    assert "Traceback" not in output, output[-3000:]
    assert "running headless" not in output, output[-3000:]
    assert not wait_gone(installed.root), "the tray app left processes behind"


def test_dpkg_remove_and_purge_take_every_file_away(installed: Installed) -> None:
    files = [f for f in installed.files() if f and f != "/."]
    conffile = "/etc/xdg/autostart/claude-tray.desktop"
    removed = dpkg(installed.root, "--remove", PACKAGE)
    assert "settings, sessions and logs are kept" in removed.stdout  # postrm says so
    # Only the admin-editable conffile stays until purge, as dpkg does for every package.
    left = [f for f in files if installed.path(f).exists() or installed.path(f).is_symlink()]
    assert [f for f in left if not installed.path(f).is_dir()] == [conffile]
    dpkg(installed.root, "--purge", PACKAGE)
    outside_db = sorted(
        str(p.relative_to(installed.root))
        for p in installed.root.rglob("*")
        if p.parts[len(installed.root.parts)] != "var"
    )
    assert outside_db == []
    assert PACKAGE not in dpkg(installed.root, "--list").stdout


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _atspi(env: dict[str, str], *args: str) -> list[dict[str, object]]:
    """Read or click the app's open menu through AT-SPI (tests/atspi_menu.py)."""
    done = subprocess.run(
        [sys.executable, str(ATSPI), *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert done.returncode == 0, f"atspi {args}: {done.stdout} {done.stderr[-2000:]}"
    return json.loads(done.stdout) if args[0] == "dump" else []
