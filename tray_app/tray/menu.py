"""The tray menu as a value: `build_menu(Status) -> Menu`, pure, testable without a display.

Items carry commands (frozen dataclasses, imperative names), never callbacks into the
supervisor: `tray/controller.py` carries them out, `tray/icon.py` turns the value into
pystray's menu on the main thread.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime

from tray_app.supervisor.status import Billing, ProxyState, QuotaWindow, SignIn, Status

# ---- commands ----


@dataclass(frozen=True, slots=True)
class StartProxy:
    pass


@dataclass(frozen=True, slots=True)
class StopProxy:
    pass


@dataclass(frozen=True, slots=True)
class RestartProxy:
    pass


@dataclass(frozen=True, slots=True)
class UsePort:
    """Save `port` as the port setting and (re)start on it."""

    port: int


@dataclass(frozen=True, slots=True)
class CopyText:
    """Put `text` on the clipboard; `what` names it in the confirmation."""

    text: str
    what: str


@dataclass(frozen=True, slots=True)
class CopyApiKey:
    """Copy the proxy's API key (the menu itself never holds it)."""


@dataclass(frozen=True, slots=True)
class SignInToClaude:
    pass


@dataclass(frozen=True, slots=True)
class OpenLogsFolder:
    pass


@dataclass(frozen=True, slots=True)
class OpenSettingsFile:
    pass


@dataclass(frozen=True, slots=True)
class SetStartAtLogin:
    on: bool


@dataclass(frozen=True, slots=True)
class SetAgentMode:
    on: bool


@dataclass(frozen=True, slots=True)
class SetWarmPool:
    on: bool


@dataclass(frozen=True, slots=True)
class RunTool:
    """An entry another module put in "Configure tools" (it brings its own action)."""

    name: str
    action: Callable[[], None] = field(compare=False)


@dataclass(frozen=True, slots=True)
class Quit:
    pass


Command = (
    StartProxy
    | StopProxy
    | RestartProxy
    | UsePort
    | CopyText
    | CopyApiKey
    | SignInToClaude
    | OpenLogsFolder
    | OpenSettingsFile
    | SetStartAtLogin
    | SetAgentMode
    | SetWarmPool
    | RunTool
    | Quit
)

# ---- the menu value ----


@dataclass(frozen=True, slots=True)
class Item:
    label: str
    command: Command | None = None
    enabled: bool = True
    checked: bool | None = None  # None: not a check item
    radio: bool = False
    submenu: tuple[Entry, ...] | None = None


@dataclass(frozen=True, slots=True)
class Separator:
    pass


Entry = Item | Separator
Menu = tuple[Entry, ...]
SEPARATOR = Separator()


@dataclass(frozen=True, slots=True)
class ToolEntry:
    """One line of "Configure tools ▸", supplied by the configurator."""

    label: str
    command: Command
    enabled: bool = True
    checked: bool | None = None


# Ports offered under Settings ▸ Port besides the current one.
DEFAULT_PORT = 3456
PORT_CHOICES = (3456, 3457, 3458, 8080)
TITLE_WIDTH = 48


def build_menu(
    status: Status,
    *,
    tools: Sequence[ToolEntry] | None = None,
    now: float | None = None,
) -> Menu:
    """Every entry of the tray menu for `status`. `tools` is None until the configurator
    provides "Configure tools" (then the submenu appears)."""
    moment = time.time() if now is None else now
    running = status.state is ProxyState.RUNNING
    entries: list[Entry] = [Item(status_line(status), enabled=False)]
    if status.port_in_use and status.free_port is not None:
        entries.append(Item(f"Use port {status.free_port} instead", UsePort(status.free_port)))
    if running and status.cli_problem:
        entries.append(Item(_clip(f"Claude Code CLI: {status.cli_problem}", 90), enabled=False))
    entries.extend(_signin_items(status.signin, moment))
    if (billing := billing_line(status)) is not None:
        entries.append(Item(billing, enabled=False))
    entries.extend(Item(quota_line(w, moment), enabled=False) for w in status.quota)

    entries.append(SEPARATOR)
    stoppable = status.state in (ProxyState.STARTING, ProxyState.RUNNING, ProxyState.RESTARTING)
    entries.append(
        Item("Start", StartProxy(), enabled=status.state in (ProxyState.STOPPED, ProxyState.FAILED))
    )
    entries.append(Item("Stop", StopProxy(), enabled=stoppable))
    entries.append(
        Item(
            "Restart",
            RestartProxy(),
            enabled=status.state in (ProxyState.RUNNING, ProxyState.RESTARTING, ProxyState.FAILED),
        )
    )

    entries.append(SEPARATOR)
    base = status.base_url
    entries.append(
        Item(
            "Copy OpenAI base URL",
            CopyText(f"{base}/v1", "OpenAI base URL") if base else None,
            enabled=base is not None,
        )
    )
    entries.append(
        Item(
            "Copy Anthropic base URL",
            CopyText(base, "Anthropic base URL") if base else None,
            enabled=base is not None,
        )
    )
    if status.api_key_problem:
        entries.append(Item(_clip(f"No API key: {status.api_key_problem}", 90), enabled=False))
    else:
        entries.append(Item("Copy API key", CopyApiKey(), enabled=status.has_api_key))
    entries.append(Item("Sessions", submenu=_sessions(status, moment)))
    if tools is not None:
        entries.append(
            Item(
                "Configure tools",
                submenu=tuple(
                    Item(t.label, t.command, enabled=t.enabled, checked=t.checked) for t in tools
                )
                or (Item("No tools found", enabled=False),),
            )
        )

    entries.append(SEPARATOR)
    entries.append(Item("Open logs folder", OpenLogsFolder()))
    entries.append(Item("Settings", submenu=_settings(status)))
    entries.append(SEPARATOR)
    entries.append(Item("Quit", Quit()))
    return tuple(entries)


# ---- lines ----


def status_line(status: Status) -> str:
    state = status.state
    if state is ProxyState.RUNNING:
        line = f"Running on {status.url or status.base_url}"
        line += f" · {status.active_turns} active"
        if status.queued_turns:
            line += f" · {status.queued_turns} waiting"
        return line
    if state is ProxyState.STARTING:
        return "Starting…" if status.port == 0 else f"Starting on port {status.port}…"
    if state is ProxyState.STOPPING:
        return "Stopping…"
    if state is ProxyState.RESTARTING:
        return _clip(f"Error: {status.error or 'the proxy crashed'}", 90)
    if state is ProxyState.FAILED:
        if status.port_in_use:
            return f"Stopped: port {status.port} is used by another program"
        return _clip(f"Error: {status.error or 'the proxy did not start'}", 90)
    return "Stopped"


def _signin_items(signin: SignIn | None, now: float) -> list[Entry]:
    if signin is None:
        return []
    if signin.method == "api_key":
        return [Item("Signed in with an API key", enabled=False)]
    if signin.method == "oauth_token":
        return [Item("Signed in with a Claude token (CLAUDE_CODE_OAUTH_TOKEN)", enabled=False)]
    if signin.method == "subscription" and signin.signed_in:
        parts = ["Signed in"]
        if signin.plan:
            parts.append(f"{signin.plan.capitalize()} plan")
        if signin.expires_at is not None:
            if signin.expires_at.timestamp() > now:
                parts.append(f"valid until {_when(signin.expires_at.timestamp(), now)}")
            else:
                parts.append("renews on next use")
        return [Item(" · ".join(parts), enabled=False)]
    if signin.expired:
        head = "Sign-in expired"
    elif signin.method == "unknown":
        head = _clip(f"Sign-in unknown: {signin.detail}", 90)
    else:
        head = "Not signed in"
    return [Item(head, enabled=False), Item("Sign in…", SignInToClaude())]


def billing_line(status: Status) -> str | None:
    route = status.billing
    if route is None:
        return None
    if route is Billing.API_KEY:
        return "Billing: API key"
    if route is Billing.EXTRA_USAGE:
        if status.on_extra_usage == "pause":
            until = status.extra_usage_until
            return "Billing: extra usage, paused" + (
                f" until {_clock(until)}" if until is not None else ""
            )
        return "Billing: extra usage (billed beyond your plan)"
    plan = status.signin.plan if status.signin is not None else None
    return f"Billing: Claude {plan.capitalize()} plan" if plan else "Billing: Claude plan"


WINDOW_LABELS = {
    "five_hour": "5-hour limit",
    "seven_day": "Weekly limit",
    "seven_day_opus": "Weekly Opus limit",
    "seven_day_sonnet": "Weekly Sonnet limit",
}


def quota_line(window: QuotaWindow, now: float) -> str:
    name = WINDOW_LABELS.get(window.name, window.name.replace("_", " ").capitalize())
    used = "usage unknown"
    if window.utilization is not None:
        used = f"{round(window.utilization * 100):d}% used"
    line = f"{name}: {used}"
    if window.resets_at is not None and window.resets_at > now:
        line += f" · resets {_when(window.resets_at, now)}"
    return line


def age(seconds: float) -> str:
    """How long ago, in the coarsest unit that is not zero."""
    seconds = max(seconds, 0)
    if seconds < 60:
        return "just now"
    for unit, size in (("d", 86400), ("h", 3600), ("min", 60)):
        if seconds >= size:
            return f"{int(seconds // size)} {unit} ago"
    return "just now"


def _sessions(status: Status, now: float) -> tuple[Entry, ...]:
    if not status.sessions:
        return (Item("No sessions yet", enabled=False),)
    return tuple(
        Item(
            f"{_clip(s.title, TITLE_WIDTH)} · {age(now - s.last_used)}",
            CopyText(s.id, "session id"),
        )
        for s in status.sessions
    )


def _settings(status: Status) -> tuple[Entry, ...]:
    ports = sorted({*PORT_CHOICES, status.port} - {0})
    port_items = tuple(
        Item(str(p), UsePort(p), checked=p == status.port, radio=True) for p in ports
    )
    entries: list[Entry] = [Item(f"Port: {status.port or 'any free'}", submenu=port_items)]
    if status.start_at_login is not None:
        entries.append(
            Item(
                "Start at login",
                SetStartAtLogin(not status.start_at_login),
                checked=status.start_at_login,
            )
        )
    if status.agent_mode is not None:
        entries.append(
            Item("Agent mode", SetAgentMode(not status.agent_mode), checked=status.agent_mode)
        )
    entries.append(Item("Warm pool", SetWarmPool(not status.warm_pool), checked=status.warm_pool))
    entries.append(SEPARATOR)
    entries.append(Item("Open settings file", OpenSettingsFile()))
    return tuple(entries)


def tooltip(status: Status) -> str:
    return f"claude-tray: {status_line(status)}"


def _when(epoch: float, now: float) -> str:
    """A time people read at a glance: 15:30 today, else 'Mon 09:00', else '14 Mar'."""
    moment = datetime.fromtimestamp(epoch)
    if moment.date() == datetime.fromtimestamp(now).date():
        return moment.strftime("%H:%M")
    if epoch - now < 6 * 86400:
        return moment.strftime("%a %H:%M")
    return moment.strftime("%d %b").lstrip("0")


def _clock(epoch: float) -> str:
    return datetime.fromtimestamp(epoch).strftime("%H:%M")


def _clip(text: str, width: int) -> str:
    text = " ".join(text.split())
    return text if len(text) <= width else text[: width - 1].rstrip() + "…"
