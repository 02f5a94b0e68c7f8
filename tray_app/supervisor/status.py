"""The immutable status snapshot the supervisor publishes, read from claude-tray's own JSON API.

Everything here is a value or a pure function: parsing `/health` and `/v1/sessions` bodies,
the billing route, and which changes deserve a notification.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any


class ProxyState(StrEnum):
    STARTING = "starting"
    RUNNING = "running"
    STOPPING = "stopping"
    STOPPED = "stopped"
    # The server thread died unexpectedly; it is started again after a delay.
    RESTARTING = "restarting"
    # It refused to start (port taken, bad settings): a person has to act.
    FAILED = "failed"


class Billing(StrEnum):
    PLAN = "plan"
    API_KEY = "api_key"
    EXTRA_USAGE = "extra_usage"


@dataclass(frozen=True, slots=True)
class SignIn:
    """The `signin` object of /health: no token, only what a person needs to see."""

    method: str  # subscription | oauth_token | api_key | none | unknown
    signed_in: bool
    plan: str | None
    expires_at: datetime | None
    detail: str

    @property
    def expired(self) -> bool:
        """The stored sign-in ran out and the CLI cannot renew it by itself."""
        return self.method == "subscription" and not self.signed_in and self.expires_at is not None


@dataclass(frozen=True, slots=True)
class QuotaWindow:
    """One of the plan's usage windows: `five_hour`, `seven_day`, ..."""

    name: str
    utilization: float | None  # 0.0-1.0
    resets_at: float | None  # epoch seconds


@dataclass(frozen=True, slots=True)
class SessionLine:
    id: str
    title: str
    last_used: float  # epoch seconds


@dataclass(frozen=True, slots=True)
class Status:
    """What the tray shows: one immutable snapshot, replaced whole on every change."""

    state: ProxyState = ProxyState.STOPPED
    url: str | None = None  # where it listens, once running
    host: str = "127.0.0.1"
    port: int = 3456  # the configured port (0: any free one)
    error: str | None = None  # why it is stopped, failed or restarting, for people
    port_in_use: bool = False
    free_port: int | None = None  # offered instead when `port_in_use`
    crashes: int = 0
    # Why the last run crashed, until a restart is running again (or it is stopped).
    recovering_from: str | None = None
    active_turns: int = 0
    queued_turns: int = 0
    cli_problem: str | None = None
    cli_path: str | None = None
    signin: SignIn | None = None
    billing: Billing | None = None
    on_extra_usage: str = "pause"
    extra_usage_active: bool = False
    extra_usage_until: float | None = None
    quota: tuple[QuotaWindow, ...] = ()
    sessions: tuple[SessionLine, ...] = ()
    has_api_key: bool = False
    api_key_problem: str | None = None  # why the keychain could not give the proxy's key
    # Settings toggles, as saved (a change takes effect at the next start).
    warm_pool: bool = True
    agent_mode: bool | None = None  # None: this build has no agent mode
    start_at_login: bool | None = None  # None: unknown on this platform
    log_dir: str = ""
    settings_file: str = ""

    @property
    def base_url(self) -> str | None:
        """The root URL clients use: the running one, else the configured one."""
        if self.url:
            return self.url
        if self.port == 0:
            return None
        return f"http://{client_host(self.host)}:{self.port}"


def client_host(host: str) -> str:
    """The name a client on this machine uses to reach `host` (wildcards mean loopback)."""
    bare = host.strip("[]")
    if bare in ("", "0.0.0.0"):
        return "127.0.0.1"
    if bare == "::":
        return "[::1]"
    return f"[{bare}]" if ":" in bare else bare


# ---- parsing claude-tray's JSON API ----


def from_health(health: Mapping[str, Any]) -> dict[str, Any]:
    """The Status fields a `/health` body gives (as keyword arguments for `replace`)."""
    turns = _mapping(health.get("turns"))
    cli = _mapping(health.get("cli"))
    quota = _mapping(health.get("quota"))
    extra = _mapping(quota.get("extra_usage"))
    signin = parse_signin(health.get("signin"))
    extra_active = extra.get("active") is True
    return {
        "active_turns": _count(turns.get("active")),
        "queued_turns": _count(turns.get("queued")),
        "cli_problem": _text(cli.get("problem")),
        "cli_path": _text(cli.get("path")),
        "signin": signin,
        "billing": billing_route(signin, extra_active),
        "on_extra_usage": _text(quota.get("on_extra_usage")) or "pause",
        "extra_usage_active": extra_active,
        "extra_usage_until": _number(extra.get("until")),
        "quota": parse_windows(quota.get("windows")),
    }


def parse_signin(raw: object) -> SignIn | None:
    data = _mapping(raw)
    if not data:
        return None
    expires = None
    if isinstance(text := data.get("expires_at"), str):
        try:
            expires = datetime.fromisoformat(text)
        except ValueError:
            expires = None
        if expires is not None and expires.tzinfo is None:
            expires = expires.replace(tzinfo=UTC)
    return SignIn(
        method=_text(data.get("method")) or "unknown",
        signed_in=data.get("signed_in") is True,
        plan=_text(data.get("plan")),
        expires_at=expires,
        detail=_text(data.get("detail")) or "",
    )


# The windows people know by name first, then any others the CLI reports, by name.
WINDOW_ORDER = ("five_hour", "seven_day", "seven_day_opus", "seven_day_sonnet")


def parse_windows(raw: object) -> tuple[QuotaWindow, ...]:
    windows = [
        QuotaWindow(
            str(name),
            _number(_mapping(v).get("utilization")),
            _number(_mapping(v).get("resets_at")),
        )
        for name, v in _mapping(raw).items()
    ]

    def order(window: QuotaWindow) -> tuple[int, str]:
        known = window.name in WINDOW_ORDER
        return (WINDOW_ORDER.index(window.name) if known else len(WINDOW_ORDER), window.name)

    return tuple(sorted(windows, key=order))


def parse_sessions(raw: object, limit: int = 10) -> tuple[SessionLine, ...]:
    """The `data` of a `/v1/sessions` body, most recently used first."""
    items = _mapping(raw).get("data")
    lines: list[SessionLine] = []
    for item in items if isinstance(items, list) else []:
        entry = _mapping(item)
        session_id = _text(entry.get("id"))
        if not session_id:
            continue
        title = _text(entry.get("title")) or "(untitled)"
        lines.append(SessionLine(session_id, title, _number(entry.get("last_used")) or 0.0))
    lines.sort(key=lambda line: line.last_used, reverse=True)
    return tuple(lines[:limit])


def billing_route(signin: SignIn | None, extra_usage_active: bool) -> Billing | None:
    """Who pays for the next request, when that is known."""
    if signin is None:
        return None
    if signin.method == "api_key":
        return Billing.API_KEY
    if extra_usage_active:
        return Billing.EXTRA_USAGE
    if signin.method in ("subscription", "oauth_token") and signin.signed_in:
        return Billing.PLAN
    return None


# ---- notifications ----


@dataclass(frozen=True, slots=True)
class Notice:
    """Something a person must act on or know about, shown as a desktop notification."""

    title: str
    message: str


def notices_between(before: Status, after: Status) -> list[Notice]:
    """The notifications a change from `before` to `after` calls for."""
    found: list[Notice] = []
    if after.state is ProxyState.RUNNING and before.recovering_from is not None:
        found.append(
            Notice(
                "claude-tray restarted the proxy",
                f"It had stopped unexpectedly ({before.recovering_from}); it is running again.",
            )
        )
    was_expired = before.signin is not None and before.signin.expired
    if after.signin is not None and after.signin.expired and not was_expired:
        found.append(
            Notice(
                "Claude sign-in expired",
                "Claude Code is no longer signed in: choose “Sign in…” in the claude-tray "
                "menu (or run `claude` in a terminal) and log in again.",
            )
        )
    paused = after.extra_usage_active and after.on_extra_usage == "pause"
    was_paused = before.extra_usage_active and before.on_extra_usage == "pause"
    if paused and not was_paused:
        until = after.extra_usage_until
        when = f" until {_clock(until)}" if until else ""
        found.append(
            Notice(
                "Extra usage paused",
                "Your plan's usage limit is reached and further requests would be billed as "
                f"extra usage, so claude-tray refuses them{when} (setting on_extra_usage).",
            )
        )
    return found


def _clock(epoch: float) -> str:
    return datetime.fromtimestamp(epoch).strftime("%H:%M")


# ---- small readers for untrusted JSON ----


def _mapping(value: object) -> Mapping[str, Any]:
    return value if isinstance(value, Mapping) else {}


def _text(value: object) -> str | None:
    return value if isinstance(value, str) and value else None


def _number(value: object) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value) if math.isfinite(value) else None


def _count(value: object) -> int:
    number = _number(value)
    return max(int(number), 0) if number is not None else 0
