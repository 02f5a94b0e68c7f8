"""The composition root: parse arguments, load settings, wire the parts, run tray or headless."""

from __future__ import annotations

import argparse
import dataclasses
import functools
import logging
import os
import signal
import sys
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING

from tray_app import __version__
from tray_app.errors import ClaudeTrayError
from tray_app.integrations import autostart
from tray_app.integrations.keychain import Keychain, proxy_api_key
from tray_app.logs import configure_logging
from tray_app.settings import Settings, ensure_dirs, load_settings

# The server, the supervisor (which imports the server) and through them aiohttp and the
# SDK (with mcp and pydantic), and asyncio itself, take about a second to import: they
# are imported where they are used, so `--version`, `--help` and `configure` answer at once.
if TYPE_CHECKING:
    from tray_app.supervisor import Notice
    from tray_app.supervisor.instance import InstanceLock
    from tray_app.tray.menu import ToolEntry

log = logging.getLogger(__name__)


def parse_args(argv: Sequence[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="claude-tray",
        description="Use your Claude sign-in from any coding tool: a local OpenAI- and "
        "Anthropic-compatible API served by the official Claude Code runtime.",
    )
    parser.add_argument("--version", action="version", version=f"claude-tray {__version__}")
    parser.add_argument(
        "--headless",
        action="store_true",
        help="no tray icon even where there is a desktop (still one instance per user)",
    )
    commands = parser.add_subparsers(dest="command")
    serve_cmd = commands.add_parser("serve", help="run the proxy headless (servers, CI)")
    serve_cmd.add_argument("--host", help="address to listen on (default 127.0.0.1)")
    serve_cmd.add_argument("--port", type=int, help="port to listen on (default 3456; 0 picks one)")
    serve_cmd.add_argument("--log-level", choices=["debug", "info", "warning", "error"])
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["configure"]:
        return run_configure(argv[1:], launch_environment())
    args = parse_args(argv)
    env = launch_environment()
    overrides = {
        "host": getattr(args, "host", None),
        "port": getattr(args, "port", None),
        "log_level": getattr(args, "log_level", None),
    }
    try:
        settings = load_settings(env, overrides)
        ensure_dirs(settings.paths)
    except (ClaudeTrayError, OSError) as exc:
        print(f"claude-tray: {exc}", file=sys.stderr)
        return 2
    configure_logging(settings)
    for warning in settings.warnings:
        log.warning("settings: %s", warning)
    if args.command == "serve":
        return run_headless(settings, env)
    return run_app(settings, env, overrides, tray=not args.headless and wants_tray(env))


def launch_environment() -> dict[str, str]:
    """The environment claude-tray was started with: settings are read from it and the
    programs it starts (a terminal, xdg-open, the clipboard tools, the CLI) get it.

    In the frozen app PyInstaller has by now pointed GTK's variables and LD_LIBRARY_PATH
    into the bundle, for this process only; its runtime hook (packaging/
    pyi_rth_claude_tray.py) kept the environment from before that."""
    kept = getattr(sys, "_claude_tray_launch_env", None)
    return dict(kept) if isinstance(kept, dict) else dict(os.environ)


def run_configure(argv: list[str], env: dict[str, str]) -> int:
    """`claude-tray configure ...`: its own options (see `configure --help`)."""
    from tray_app.integrations.configure.cli import main as configure_main

    try:
        settings = load_settings(env)
        ensure_dirs(settings.paths)
    except (ClaudeTrayError, OSError) as exc:
        print(f"claude-tray: {exc}", file=sys.stderr)
        return 2
    return configure_main(argv, settings, env)


def wants_tray(env: Mapping[str, str], platform: str = sys.platform) -> bool:
    """A tray icon where there is a desktop to show it: always on macOS and Windows, on
    Linux and the BSDs only inside an X11 or Wayland session."""
    if platform in ("darwin", "win32"):
        return True
    return bool(env.get("DISPLAY") or env.get("WAYLAND_DISPLAY"))


def run_app(
    settings: Settings, env: dict[str, str], overrides: Mapping[str, object], *, tray: bool
) -> int:
    """`claude-tray` with no command: one instance per user, in the tray or headless."""
    from tray_app.supervisor.instance import InstanceLock, hand_over

    runtime_dir = settings.paths.runtime_dir
    lock = InstanceLock.acquire(runtime_dir)
    if lock is None:
        answer = hand_over(runtime_dir)
        log.info("another claude-tray is running; handed over (%s)", answer or "no answer")
        print(f"claude-tray is already running{f': {answer}' if answer else ''}", flush=True)
        return 0
    try:
        if tray:
            from tray_app.tray.icon import TrayUnavailable

            try:
                return run_tray(settings, env, overrides, lock)
            except TrayUnavailable as exc:
                log.warning("no tray icon (%s); running headless", exc.message)
        url: list[str] = []
        lock.listen(lambda _request: f"running headless on {url[0]}" if url else "starting")
        return run_headless(settings, env, on_url=url.append)
    finally:
        lock.close()


def run_tray(
    settings: Settings, env: dict[str, str], overrides: Mapping[str, object], lock: InstanceLock
) -> int:
    from tray_app.supervisor import Notice, Supervisor
    from tray_app.tray.controller import STOP_TIMEOUT, Controller
    from tray_app.tray.icon import TrayIcon
    from tray_app.tray.menu import status_line

    keychain = Keychain()
    supervisor = Supervisor(
        lambda: load_settings(env, overrides),
        env,
        api_key=lambda: proxy_api_key(keychain),
        start_at_login=lambda: autostart.is_enabled(env),
    )
    supervisor.reload_settings()
    controller = Controller(
        supervisor,
        settings.paths,
        env,
        launch_command=autostart.launch_command(env=env),
        cli_path=settings.cli_path,
    )

    def settings_with_key() -> Settings:
        # What the tools are pointed at: the proxy the tray runs, with the key it requires.
        current = load_settings(env, overrides)
        if current.api_key:
            return current
        try:
            return dataclasses.replace(current, api_key=proxy_api_key(keychain))
        except ClaudeTrayError:
            return current

    tools = ToolMenu(settings_with_key, env, lambda notice: icon.notify(notice))
    icon = TrayIcon(supervisor, controller, env, tools=tools.entries)
    controller.bind(icon)

    def handover(_request: str) -> str:
        log.info("another launch found claude-tray already running; showing the tray")
        line = status_line(supervisor.status)
        icon.notify(Notice("claude-tray is already running", f"{line}. Its menu is in the tray."))
        return line

    lock.listen(handover)
    try:
        icon.run()
    finally:
        supervisor.shutdown(STOP_TIMEOUT)
    return 0


def run_headless(
    settings: Settings, env: dict[str, str], *, on_url: Callable[[str], None] | None = None
) -> int:
    import asyncio

    from tray_app.server.app import serve

    async def run() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            try:
                loop.add_signal_handler(sig, stop.set)
            except (NotImplementedError, AttributeError):  # Windows event loops
                signal.signal(sig, lambda *_: loop.call_soon_threadsafe(stop.set))

        def ready(url: str) -> None:
            print(f"claude-tray {__version__} listening on {url}", flush=True)
            print(f"  OpenAI base URL:    {url}/v1", flush=True)
            print(f"  Anthropic base URL: {url}", flush=True)
            if on_url is not None:
                on_url(url)

        await serve(settings, env, stop, ready)

    try:
        asyncio.run(run())
    except ClaudeTrayError as exc:
        log.error("%s", exc.message)
        print(f"claude-tray: {exc.message}", file=sys.stderr)
        return 2
    return 0


class ToolMenu:
    """The tray's "Configure tools" entries: each tool found here, checked when it is
    configured; a click configures it (or, when checked, puts its files back)."""

    # Listing reads and parses each tool's config: not on every menu rebuild.
    REFRESH_SECONDS = 10.0

    def __init__(
        self,
        settings: Callable[[], Settings],
        env: Mapping[str, str],
        notify: Callable[[Notice], None],
    ) -> None:
        self._settings = settings
        self._env = env
        self._notify = notify
        self._lock = threading.Lock()
        self._cached: list[ToolEntry] | None = None
        self._at = 0.0

    def entries(self) -> list[ToolEntry]:
        from tray_app.integrations.configure import tool_states
        from tray_app.tray.menu import RunTool, ToolEntry

        with self._lock:
            if self._cached is not None and time.monotonic() - self._at < self.REFRESH_SECONDS:
                return self._cached
        states = tool_states(self._settings(), self._env)
        entries = [
            ToolEntry(
                state.label,
                RunTool(state.tool, functools.partial(self._toggle, state.tool, state.configured)),
                enabled=state.found or state.configured,
                checked=state.configured,
            )
            for state in states
        ]
        with self._lock:
            self._cached, self._at = entries, time.monotonic()
        return entries

    def _toggle(self, tool: str, configured: bool) -> None:
        from tray_app.integrations.configure import configure, undo
        from tray_app.supervisor import Notice

        settings = self._settings()
        result = (
            undo(tool, settings, self._env) if configured else configure(tool, settings, self._env)
        )
        with self._lock:
            self._cached = None
        title = f"{'Undid' if configured else 'Configured'} {tool}" if result.ok else tool
        self._notify(Notice(title, result.message))
