"""The composition root: parse arguments, load settings, wire the parts, run tray or headless."""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import signal
import sys
from collections.abc import Sequence

from tray_app import __version__
from tray_app.errors import ClaudeTrayError
from tray_app.logs import configure_logging
from tray_app.server.app import serve
from tray_app.settings import Settings, ensure_dirs, load_settings

log = logging.getLogger(__name__)


def parse_args(argv: Sequence[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="claude-tray",
        description="Use your Claude sign-in from any coding tool: a local OpenAI- and "
        "Anthropic-compatible API served by the official Claude Code runtime.",
    )
    parser.add_argument("--version", action="version", version=f"claude-tray {__version__}")
    commands = parser.add_subparsers(dest="command")
    serve_cmd = commands.add_parser("serve", help="run the proxy headless (servers, CI)")
    serve_cmd.add_argument("--host", help="address to listen on (default 127.0.0.1)")
    serve_cmd.add_argument("--port", type=int, help="port to listen on (default 3456; 0 picks one)")
    serve_cmd.add_argument("--log-level", choices=["debug", "info", "warning", "error"])
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    env = dict(os.environ)
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
    if args.command is None:
        # The tray app is not built yet: without it, the proxy runs headless.
        log.info("no tray available in this build; running headless")
    return run_headless(settings, env)


def run_headless(settings: Settings, env: dict[str, str]) -> int:
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

        await serve(settings, env, stop, ready)

    try:
        asyncio.run(run())
    except ClaudeTrayError as exc:
        log.error("%s", exc.message)
        print(f"claude-tray: {exc.message}", file=sys.stderr)
        return 2
    return 0
