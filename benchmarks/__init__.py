"""Latency benchmarks for claude-tray; run them from the repo root with `python -m`."""

from __future__ import annotations

import argparse
import shlex


def command_line(parser: argparse.ArgumentParser, args: argparse.Namespace) -> str:
    """The command that repeats this run: the program and every option with the value
    it had, defaults and values filled in after parsing included."""
    parts = [parser.prog]
    for action in parser._actions:  # noqa: SLF001 - argparse lists its options nowhere else
        if not action.option_strings or action.dest == "help":
            continue
        flag = max(action.option_strings, key=len)
        value = getattr(args, action.dest)
        if action.nargs == 0:  # a switch
            parts += [flag] if value else []
            continue
        for item in value if isinstance(value, list) else [value]:
            if item is not None:
                shown = f"{item:g}" if isinstance(item, float) else shlex.quote(str(item))
                parts.append(f"{flag} {shown}")
    return " ".join(parts)
