"""`claude-tray configure`: the command-line front end of the tool configurators."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Mapping
from typing import TextIO

from tray_app.integrations.configure import (
    TOOLS,
    Result,
    check_connection,
    configure,
    tool_states,
    undo,
)
from tray_app.settings import Settings

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="claude-tray configure",
        description="Point a coding tool at claude-tray: its config file gets claude-tray's "
        "provider (the proxy's URL, key and models), and nothing else in it changes.",
    )
    parser.add_argument("tool", nargs="?", choices=list(TOOLS), help="the tool to configure")
    parser.add_argument("--list", action="store_true", help="show each tool's state and file")
    parser.add_argument("--model", help="the model to make primary (default: sonnet)")
    parser.add_argument(
        "--default", action="store_true", help="also make claude-tray the tool's default model"
    )
    parser.add_argument("--dry-run", action="store_true", help="show the diff; write nothing")
    parser.add_argument(
        "--undo", action="store_true", help="put the files back as they were before"
    )
    parser.add_argument(
        "--test", action="store_true", help="send one real request the way the tool does"
    )
    parser.add_argument(
        "--base-url",
        help="the proxy's URL as the tool should reach it (default: from the settings); "
        "for Claude Code on another machine, e.g. http://my-desktop:3456",
    )
    return parser


def _print_result(result: Result, out: TextIO) -> None:
    for file in result.files:
        backup = f" (backup: {file.backup})" if file.backup and file.action == "updated" else ""
        print(f"  {file.action:9} {file.path}{backup}", file=out)


def main(argv: list[str], settings: Settings, env: Mapping[str, str]) -> int:
    """Run `claude-tray configure ARGV`; print what happened; return the exit code."""
    out, err = sys.stdout, sys.stderr
    parser = _parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # --help, or a usage error argparse already printed
        return EXIT_OK if exc.code == 0 else EXIT_USAGE
    if args.list:
        if args.tool or args.undo or args.dry_run or args.test or args.default or args.model:
            print("claude-tray configure: --list takes no other options", file=err)
            return EXIT_USAGE
        _list(settings, env, out)
        return EXIT_OK
    if not args.tool:
        parser.print_usage(err)
        print("claude-tray configure: name a tool, or use --list", file=err)
        return EXIT_USAGE
    if args.undo and (args.dry_run or args.default or args.model or args.test):
        print("claude-tray configure: --undo takes no other options", file=err)
        return EXIT_USAGE

    if args.undo:
        result = undo(args.tool, settings, env)
        print(f"claude-tray configure: {result.message}", file=out if result.ok else err)
        _print_result(result, out)
        return EXIT_OK if result.ok else EXIT_FAILED

    if args.test and not (args.default or args.model or args.dry_run):
        return _test(args, settings, env, out, err)

    result = configure(
        args.tool,
        settings,
        env,
        model=args.model,
        make_default=args.default,
        dry_run=args.dry_run,
        base_url=args.base_url,
    )
    if not result.ok:
        print(f"claude-tray configure: {result.message}", file=err)
        return EXIT_FAILED
    print(f"claude-tray configure: {result.message}", file=out)
    if args.dry_run:
        out.write(result.diff)
        return EXIT_OK
    _print_result(result, out)
    if result.usage:
        print(f"  use it: {result.usage}", file=out)
    if result.changed:
        print(f"  undo:   claude-tray configure {args.tool} --undo", file=out)
    if args.test:
        return _test(args, settings, env, out, err)
    return EXIT_OK


def _test(
    args: argparse.Namespace,
    settings: Settings,
    env: Mapping[str, str],
    out: TextIO,
    err: TextIO,
) -> int:
    result = check_connection(args.tool, settings, env, model=args.model, base_url=args.base_url)
    print(f"claude-tray configure: test: {result.message}", file=out if result.ok else err)
    return EXIT_OK if result.ok else EXIT_FAILED


def _list(settings: Settings, env: Mapping[str, str], out: TextIO) -> None:
    states = tool_states(settings, env)
    width = max(len(s.tool) for s in states)
    for state in states:
        found = "found" if state.found else "not found"
        configured = "configured" if state.configured else "not configured"
        print(f"{state.tool:<{width}}  {found:<9}  {configured:<14}  {state.path}", file=out)
