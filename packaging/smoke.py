"""Smoke-test a frozen claude-tray on any OS, with the standard library only (CI runs it
on each release runner against the app it just built):

    python packaging/smoke.py PATH/TO/claude-tray[.exe] [--tray]

Checks `--version`, then `serve --port 0` answering /health with the bundled CLI found
and runnable; with --tray, also that the app with no command (the tray, on a desktop)
starts and answers /health on its port, then ends it.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path


def check(ok: object, what: object) -> None:
    if not ok:
        raise SystemExit(f"smoke test failed: {what}")


def health(url: str, deadline: float) -> dict[str, object]:
    while True:
        try:
            with urllib.request.urlopen(url + "/health", timeout=5) as answer:
                return json.loads(answer.read())  # type: ignore[no-any-return]
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("app")
    parser.add_argument("--tray", action="store_true")
    args = parser.parse_args()
    home = Path(tempfile.mkdtemp(prefix="claude-tray-smoke-"))
    env = {**os.environ, "CLAUDE_TRAY_HOME": str(home), "CLAUDE_TRAY_API_KEY": "sk-smoke"}

    version = subprocess.run([args.app, "--version"], capture_output=True, text=True, timeout=120)
    print("--version:", version.stdout.strip(), version.stderr.strip())
    check(version.returncode == 0, version)
    check(version.stdout.startswith("claude-tray "), version)

    serve = subprocess.Popen(
        [args.app, "serve", "--port", "0"], env=env, stdout=subprocess.PIPE, text=True
    )
    try:
        line = serve.stdout.readline() if serve.stdout else ""
        check("listening on" in line, line)
        status = health(line.split()[-1], time.monotonic() + 60)
        print("serve /health:", json.dumps(status["cli"]))
        cli = status["cli"]
        check(isinstance(cli, dict) and cli.get("problem") is None and cli.get("version"), cli)
    finally:
        serve.terminate()
        serve.wait(30)

    if args.tray:
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            port = probe.getsockname()[1]
        tray = subprocess.Popen([args.app], env={**env, "CLAUDE_TRAY_PORT": str(port)})
        try:
            status = health(f"http://127.0.0.1:{port}", time.monotonic() + 90)
            print("tray /health:", status["status"])
            check(tray.poll() is None, "the tray app exited")
        finally:
            tray.terminate()
            tray.wait(30)
    print("smoke test passed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
