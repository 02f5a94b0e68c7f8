"""Load the stream-json recorded from the real CLI (tests/data) and replay it through CliStream."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from tray_app.protocol.cli_events import CliStream
from tray_app.protocol.model import CliEvent

DATA = Path(__file__).parent / "data"


def lines(name: str) -> list[dict[str, Any]]:
    text = (DATA / f"{name}.jsonl").read_text("utf-8")
    return [json.loads(line) for line in text.splitlines() if line.strip()]


def replay(raw: list[dict[str, Any]]) -> list[CliEvent]:
    stream = CliStream()
    return [event for line in raw for event in stream.feed(line)]
