"""What the plan's usage windows look like now, and whether calls are being billed as extra usage.

The CLI reports the plan's windows (five hours, seven days) after each call when it is
signed in with a subscription. When a window is used up and the account allows
overage, calls go on but are billed as extra usage: `on_extra_usage` decides what
claude-tray does then (pause: refuse further requests until the window resets; warn:
answer and say so; allow: answer).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

from tray_app.protocol.model import RateLimitReported

# When the CLI does not say when the used-up window resets, pause this long.
DEFAULT_PAUSE = 3600


@dataclass
class Quota:
    windows: dict[str, dict[str, Any]] = field(default_factory=dict)
    status: str | None = None
    limiting_window: str | None = None
    checked_at: float | None = None
    # Set while calls are billed as extra usage: since when, and until the window resets.
    extra_usage_since: float | None = None
    extra_usage_until: float | None = None

    def note(self, event: RateLimitReported, now: float | None = None) -> bool:
        """Take in a report; True when extra usage has just begun."""
        now = time.time() if now is None else now
        self.status = event.status
        self.limiting_window = event.window
        self.checked_at = now
        for window in event.windows:
            self.windows[window.name] = {
                "utilization": window.utilization,
                "resets_at": window.resets_at,
            }
        if event.window and event.window not in self.windows:
            self.windows[event.window] = {
                "utilization": event.utilization,
                "resets_at": event.resets_at,
            }
        if not event.using_overage:
            self.extra_usage_since = self.extra_usage_until = None
            return False
        began = not self.extra_usage(now)
        if began:
            self.extra_usage_since = now
        self.extra_usage_until = float(event.resets_at or now + DEFAULT_PAUSE)
        return began

    def note_extra_usage_answer(self, now: float | None = None) -> None:
        """Anthropic refused a call as one that draws from extra usage."""
        now = time.time() if now is None else now
        if not self.extra_usage(now):
            self.extra_usage_since = now
        self.extra_usage_until = now + DEFAULT_PAUSE

    def extra_usage(self, now: float | None = None) -> bool:
        now = time.time() if now is None else now
        return self.extra_usage_until is not None and now < self.extra_usage_until

    def to_json(self) -> dict[str, Any]:
        return {
            "status": self.status,
            "limiting_window": self.limiting_window,
            "windows": self.windows,
            "checked_at": self.checked_at,
            "extra_usage": {
                "active": self.extra_usage(),
                "since": self.extra_usage_since,
                "until": self.extra_usage_until,
            },
        }

    @classmethod
    def from_json(cls, raw: dict[str, Any]) -> Quota:
        extra = raw.get("extra_usage") or {}
        return cls(
            windows=dict(raw.get("windows") or {}),
            status=raw.get("status"),
            limiting_window=raw.get("limiting_window"),
            checked_at=raw.get("checked_at"),
            extra_usage_since=extra.get("since"),
            extra_usage_until=extra.get("until"),
        )
