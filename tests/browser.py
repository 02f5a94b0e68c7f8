"""A real headless Chromium for the dashboard tests, driven by playwright-core.

Chromium comes from Debian (`bash .ci/install-browser.sh`); playwright-core, pinned, is
installed with npm under `${XDG_CACHE_HOME:-~/.cache}/claude-tray-ci` like the other
client tools (`python tests/tools.py install`, or `python tests/browser.py install`).
Playwright's own browser downloads are never used: it launches Debian's binary.

`Browser` runs `browser_driver.cjs` under Node and sends it one JSON command a line
(goto, click, fill, wait, evaluate, screenshot, ...); the driver answers each with one
JSON line and keeps every console error, page error and failed request for `problems()`.
"""

from __future__ import annotations

import contextlib
import json
import os
import queue
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
from pathlib import Path
from typing import Any

from tools import PLAYWRIGHT, PLAYWRIGHT_PACKAGE, PLAYWRIGHT_VERSION

DRIVER = Path(__file__).resolve().parent / "browser_driver.cjs"
INSTALL_BROWSER = "bash .ci/install-browser.sh"


def playwright_prefix() -> Path:
    return PLAYWRIGHT.prefix


def playwright_install_command(prefix: Path | None = None) -> list[str]:
    return PLAYWRIGHT.command(prefix)


def find_playwright() -> Path | None:
    """The pinned playwright-core module directory, or None when it is not installed."""
    return PLAYWRIGHT.find()


def install_playwright() -> Path:
    return PLAYWRIGHT.install()


def find_chromium() -> Path | None:
    """Debian's Chromium: the binary itself (its /usr/bin wrapper only adds flags)."""
    real = Path("/usr/lib/chromium/chromium")
    if os.access(real, os.X_OK):
        return real
    found = shutil.which("chromium")
    return Path(found) if found else None


def require_browser() -> tuple[Path, Path]:
    """(Chromium, playwright-core); fails the calling test, saying how to install them."""
    import pytest

    chromium = find_chromium()
    module = find_playwright()
    node = shutil.which("node")
    missing = []
    if chromium is None:
        missing.append(f"Debian's chromium: `{INSTALL_BROWSER}`")
    if node is None:
        missing.append("Node.js (`apt-get install nodejs npm`)")
    if module is None:
        missing.append(
            f"{PLAYWRIGHT_PACKAGE} {PLAYWRIGHT_VERSION} at {playwright_prefix()}: "
            f"`python tests/tools.py install`, i.e. `{' '.join(playwright_install_command())}`"
        )
    if missing:
        pytest.fail(
            "The dashboard's browser test needs:\n- "
            + "\n- ".join(missing)
            + "\n(`bash .ci/check` installs all of them.)",
            pytrace=False,
        )
    assert chromium is not None and module is not None
    return chromium, module


class BrowserError(Exception):
    """The driver could not do what it was asked (the message is the driver's)."""


class Browser:
    """One headless Chromium page, commanded from the test."""

    def __init__(
        self, chromium: Path, module: Path, *, width: int = 1280, height: int = 900
    ) -> None:
        self._stderr = tempfile.TemporaryFile()  # noqa: SIM115 - closed in close()
        self._process = subprocess.Popen(
            ["node", str(DRIVER)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self._stderr,
            text=True,
            env={
                **os.environ,
                "PLAYWRIGHT_CORE": str(module),
                "CHROMIUM": str(chromium),
                "VIEWPORT": f"{width}x{height}",
            },
            start_new_session=True,  # Chromium's processes join it: one group to end
        )
        self._replies: queue.Queue[str | None] = queue.Queue()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()
        self._next_id = 0
        try:
            self.call("ready", timeout=60)
        except BaseException:
            self.close()
            raise

    def _read(self) -> None:
        assert self._process.stdout is not None
        for line in self._process.stdout:
            self._replies.put(line)
        self._replies.put(None)

    def call(self, cmd: str, timeout: float = 30, **args: Any) -> Any:
        assert self._process.stdin is not None
        self._next_id += 1
        request = {"id": self._next_id, "cmd": cmd, "args": args, "timeout": timeout * 1000}
        self._process.stdin.write(json.dumps(request) + "\n")
        self._process.stdin.flush()
        try:
            line = self._replies.get(timeout=timeout + 10)
        except queue.Empty:
            raise BrowserError(f"no answer to {cmd} within {timeout + 10} s") from None
        if line is None:
            raise BrowserError(f"the browser driver exited: {self.stderr()}")
        reply = json.loads(line)
        if reply.get("id") != self._next_id:
            raise BrowserError(f"out of step: {line!r}")
        if not reply["ok"]:
            raise BrowserError(f"{cmd} {args}: {reply['error']}")
        return reply.get("value")

    # ---- what the tests use ----

    def goto(self, url: str) -> None:
        self.call("goto", url=url)

    def wait(self, selector: str, state: str = "visible", timeout: float = 15) -> None:
        self.call("wait", selector=selector, state=state, timeout=timeout)

    def wait_until(self, expression: str, timeout: float = 15) -> Any:
        """Wait until the page expression is truthy; return its value."""
        return self.call("waitFunction", expression=expression, timeout=timeout)

    def click(self, selector: str) -> None:
        self.call("click", selector=selector)

    def fill(self, selector: str, value: str) -> None:
        self.call("fill", selector=selector, value=value)

    def texts(self, selector: str) -> list[str]:
        return list(self.call("texts", selector=selector))

    def evaluate(self, expression: str) -> Any:
        return self.call("evaluate", expression=expression)

    def screenshot(self, path: Path, *, full_page: bool = True) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.call("screenshot", path=str(path), fullPage=full_page)

    def problems(self) -> list[str]:
        """Console errors and warnings, uncaught page errors, failed requests."""
        return list(self.call("problems"))

    def stderr(self) -> str:
        self._stderr.seek(0)
        return self._stderr.read().decode(errors="replace")[-3000:]

    def close(self) -> None:
        if self._process.poll() is None:
            with contextlib.suppress(BrowserError, OSError, ValueError):
                self.call("close", timeout=10)
            with contextlib.suppress(subprocess.TimeoutExpired):
                self._process.wait(10)
        # Whatever is left of the group (Chromium's helpers) goes with it.
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self._process.pid, signal.SIGKILL)
        self._process.wait()
        for stream in (self._process.stdin, self._process.stdout):
            if stream is not None:
                with contextlib.suppress(OSError):
                    stream.close()
        self._stderr.close()

    def __enter__(self) -> Browser:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def main(argv: list[str]) -> int:
    if argv != ["install"]:
        print("usage: python tests/browser.py install", file=sys.stderr)
        return 2
    install_playwright()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
