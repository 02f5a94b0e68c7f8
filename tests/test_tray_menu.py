"""Status snapshot -> tray menu, for every state: labels, enabled and checked states, and the
commands behind the items; then the same menu through pystray's dummy backend (no display),
the icon per state, the icons' legibility, and the commands carried out by the controller."""

from __future__ import annotations

import itertools
import json
import os
import sys
from datetime import datetime, timedelta
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from tray_app.integrations import autostart
from tray_app.settings import load_settings
from tray_app.supervisor import (
    Billing,
    ProxyState,
    QuotaWindow,
    SessionLine,
    SignIn,
    Status,
    Supervisor,
)
from tray_app.tray.controller import Controller
from tray_app.tray.icon import icon_state, to_pystray
from tray_app.tray.icons import IconState, draw_icon
from tray_app.tray.menu import (
    Command,
    CopyApiKey,
    CopyText,
    Item,
    Menu,
    OpenLogsFolder,
    OpenSettingsFile,
    Quit,
    RestartProxy,
    RunTool,
    Separator,
    SetAgentMode,
    SetStartAtLogin,
    SetWarmPool,
    SignInToClaude,
    StartProxy,
    StopProxy,
    ToolEntry,
    UsePort,
    age,
    build_menu,
    status_line,
)

NOW = datetime(2026, 11, 3, 12, 0).timestamp()  # a Tuesday, local time
URL = "http://127.0.0.1:3456"


def running(**kw: Any) -> Status:
    values: dict[str, Any] = {
        "state": ProxyState.RUNNING,
        "url": URL,
        "has_api_key": True,
        "start_at_login": False,
    }
    values.update(kw)
    return Status(**values)


def item(menu: Menu, label: str) -> Item:
    for entry in menu:
        if isinstance(entry, Item) and entry.label == label:
            return entry
    raise AssertionError(f"no item {label!r} in {labels(menu)}")


def labels(menu: Menu) -> list[str]:
    return [e.label if isinstance(e, Item) else "---" for e in menu]


def enabled(menu: Menu, *names: str) -> list[bool]:
    return [item(menu, name).enabled for name in names]


def submenu(menu: Menu, label: str) -> Menu:
    found = item(menu, label).submenu
    assert found is not None, f"{label} has no submenu"
    return found


# ---- the status line and Start / Stop / Restart, per state ----


@pytest.mark.parametrize(
    ("status", "line", "start_stop_restart"),
    [
        (running(), f"Running on {URL} · 0 active", [False, True, True]),
        (running(active_turns=2, queued_turns=1), f"Running on {URL} · 2 active · 1 waiting", None),
        (Status(state=ProxyState.STARTING), "Starting on port 3456…", [False, True, False]),
        (Status(state=ProxyState.STOPPING), "Stopping…", [False, False, False]),
        (Status(state=ProxyState.STOPPED), "Stopped", [True, False, False]),
        (
            Status(state=ProxyState.RESTARTING, error="the proxy crashed (X); restarting in 2 s"),
            "Error: the proxy crashed (X); restarting in 2 s",
            [False, True, True],
        ),
        (
            Status(state=ProxyState.FAILED, error="Refusing to listen on 0.0.0.0 without a key"),
            "Error: Refusing to listen on 0.0.0.0 without a key",
            [True, False, True],
        ),
        (
            Status(state=ProxyState.FAILED, port_in_use=True, free_port=3457),
            "Stopped: port 3456 is used by another program",
            [True, False, True],
        ),
    ],
    ids=lambda v: v.state.value if isinstance(v, Status) else None,
)
def test_status_line_and_controls(
    status: Status, line: str, start_stop_restart: list[bool] | None
) -> None:
    menu = build_menu(status, now=NOW)
    first = menu[0]
    assert isinstance(first, Item) and first.label == line and not first.enabled
    assert first.command is None
    if start_stop_restart is not None:
        assert enabled(menu, "Start", "Stop", "Restart") == start_stop_restart
    assert item(menu, "Start").command == StartProxy()
    assert item(menu, "Stop").command == StopProxy()
    assert item(menu, "Restart").command == RestartProxy()
    assert item(menu, "Quit").command == Quit() and item(menu, "Quit").enabled


def test_port_in_use_offers_another_port() -> None:
    menu = build_menu(Status(state=ProxyState.FAILED, port_in_use=True, free_port=3457), now=NOW)
    assert labels(menu)[:2] == [
        "Stopped: port 3456 is used by another program",
        "Use port 3457 instead",
    ]
    assert item(menu, "Use port 3457 instead").command == UsePort(3457)


def test_long_errors_are_clipped() -> None:
    line = status_line(Status(state=ProxyState.FAILED, error="x " * 200))
    assert len(line) <= 90 and line.endswith("…")


def test_the_whole_running_menu_in_order() -> None:
    menu = build_menu(running(), now=NOW)
    assert labels(menu) == [
        f"Running on {URL} · 0 active",
        "---",
        "Start",
        "Stop",
        "Restart",
        "---",
        "Copy OpenAI base URL",
        "Copy Anthropic base URL",
        "Copy API key",
        "Sessions",
        "---",
        "Open logs folder",
        "Settings",
        "---",
        "Quit",
    ]
    assert item(menu, "Open logs folder").command == OpenLogsFolder()


# ---- sign-in, billing, quota ----


def signin(**kw: Any) -> SignIn:
    values: dict[str, Any] = {
        "method": "subscription",
        "signed_in": True,
        "plan": "max",
        "expires_at": None,
        "detail": "",
    }
    values.update(kw)
    return SignIn(**values)


def test_signed_in_with_plan_and_expiry() -> None:
    later_today = datetime.fromtimestamp(NOW) + timedelta(hours=5)
    in_3_days = datetime.fromtimestamp(NOW) + timedelta(days=3)
    in_a_month = datetime.fromtimestamp(NOW) + timedelta(days=30)
    for expires, shown in (
        (later_today, "valid until 17:00"),
        (in_3_days, "valid until Fri 12:00"),
        (in_a_month, "valid until 3 Dec"),
    ):
        status = running(signin=signin(expires_at=expires.astimezone()), billing=Billing.PLAN)
        menu = build_menu(status, now=NOW)
        assert labels(menu)[1:3] == [f"Signed in · Max plan · {shown}", "Billing: Claude Max plan"]
        assert not item(menu, f"Signed in · Max plan · {shown}").enabled
        assert "Sign in…" not in labels(menu)


def test_an_access_token_past_expiry_that_the_cli_renews() -> None:
    old = datetime.fromtimestamp(NOW - 60).astimezone()
    menu = build_menu(running(signin=signin(expires_at=old)), now=NOW)
    assert labels(menu)[1] == "Signed in · Max plan · renews on next use"


@pytest.mark.parametrize(
    ("who", "head"),
    [
        (signin(method="none", signed_in=False, plan=None), "Not signed in"),
        (
            signin(signed_in=False, expires_at=datetime.fromtimestamp(NOW - 60).astimezone()),
            "Sign-in expired",
        ),
        (
            signin(method="unknown", signed_in=False, plan=None, detail="The file is not JSON."),
            "Sign-in unknown: The file is not JSON.",
        ),
    ],
    ids=["none", "expired", "unknown"],
)
def test_not_signed_in_offers_sign_in(who: SignIn, head: str) -> None:
    menu = build_menu(running(signin=who), now=NOW)
    assert labels(menu)[1:3] == [head, "Sign in…"]
    assert not item(menu, head).enabled
    assert item(menu, "Sign in…").command == SignInToClaude() and item(menu, "Sign in…").enabled


def test_other_sign_in_routes() -> None:
    key = build_menu(
        running(signin=signin(method="api_key", plan=None), billing=Billing.API_KEY), now=NOW
    )
    assert labels(key)[1:3] == ["Signed in with an API key", "Billing: API key"]
    token = build_menu(running(signin=signin(method="oauth_token", plan=None)), now=NOW)
    assert labels(token)[1] == "Signed in with a Claude token (CLAUDE_CODE_OAUTH_TOKEN)"


def test_extra_usage_billing_lines() -> None:
    until = datetime.fromtimestamp(NOW).replace(hour=15, minute=30).timestamp()
    paused = running(
        signin=signin(),
        billing=Billing.EXTRA_USAGE,
        extra_usage_active=True,
        extra_usage_until=until,
    )
    assert "Billing: extra usage, paused until 15:30" in labels(build_menu(paused, now=NOW))
    warn = running(signin=signin(), billing=Billing.EXTRA_USAGE, on_extra_usage="warn")
    assert "Billing: extra usage (billed beyond your plan)" in labels(build_menu(warn, now=NOW))


def test_quota_lines() -> None:
    windows = (
        QuotaWindow("five_hour", 0.42, datetime.fromtimestamp(NOW).replace(hour=15).timestamp()),
        QuotaWindow(
            "seven_day", 0.1, (datetime.fromtimestamp(NOW) + timedelta(days=2)).timestamp()
        ),
        QuotaWindow("seven_day_opus", None, None),
        QuotaWindow("overage", 1.0, NOW - 10),  # a reset in the past is not shown
    )
    menu = build_menu(running(quota=windows), now=NOW)
    assert labels(menu)[1:5] == [
        "5-hour limit: 42% used · resets 15:00",
        "Weekly limit: 10% used · resets Thu 12:00",
        "Weekly Opus limit: usage unknown",
        "Overage: 100% used",
    ]
    assert not any(item(menu, label).enabled for label in labels(menu)[1:5])


# ---- copying, sessions, tools, settings ----


def test_copy_items() -> None:
    menu = build_menu(running(), now=NOW)
    assert item(menu, "Copy OpenAI base URL").command == CopyText(f"{URL}/v1", "OpenAI base URL")
    assert item(menu, "Copy Anthropic base URL").command == CopyText(URL, "Anthropic base URL")
    assert item(menu, "Copy API key").command == CopyApiKey()
    assert enabled(menu, "Copy OpenAI base URL", "Copy API key") == [True, True]

    # Stopped: the configured address is still worth copying; a keyless proxy has no key.
    stopped = build_menu(Status(port=4000, has_api_key=False), now=NOW)
    assert item(stopped, "Copy OpenAI base URL").command == CopyText(
        "http://127.0.0.1:4000/v1", "OpenAI base URL"
    )
    assert not item(stopped, "Copy API key").enabled
    # Port 0 means "any free port": nothing to copy until it runs.
    anywhere = build_menu(Status(port=0, host="0.0.0.0"), now=NOW)
    assert enabled(anywhere, "Copy OpenAI base URL", "Copy Anthropic base URL") == [False, False]
    # A keychain problem is said instead of a dead item.
    locked = build_menu(running(has_api_key=False, api_key_problem="the keyring is locked"))
    assert "No API key: the keyring is locked" in labels(locked)
    assert "Copy API key" not in labels(locked)


def test_sessions_submenu() -> None:
    sessions = tuple(
        SessionLine(
            f"sess_{i}", f"Refactor module {i}" + " and more" * (i == 0) * 10, NOW - i * 600
        )
        for i in range(10)
    )
    menu = build_menu(running(sessions=sessions), now=NOW)
    shown = submenu(menu, "Sessions")
    assert len(shown) == 10
    first, second = shown[0], shown[1]
    assert isinstance(first, Item) and isinstance(second, Item)
    assert first.label.endswith("… · just now") and len(first.label) < 70
    assert second.label == "Refactor module 1 · 10 min ago"
    assert second.command == CopyText("sess_1", "session id")
    empty = submenu(build_menu(running(), now=NOW), "Sessions")
    assert labels(empty) == ["No sessions yet"] and not item(empty, "No sessions yet").enabled


def test_age() -> None:
    assert [age(s) for s in (5, 61, 3600 * 3 + 5, 86400 * 2)] == [
        "just now",
        "1 min ago",
        "3 h ago",
        "2 d ago",
    ]


def test_configure_tools_is_absent_until_provided() -> None:
    assert "Configure tools" not in labels(build_menu(running(), now=NOW))
    ran: list[str] = []
    tools = [
        ToolEntry(
            "OpenCode (configured)", RunTool("opencode", lambda: ran.append("o")), checked=True
        ),
        ToolEntry("Aider (not installed)", RunTool("aider", lambda: None), enabled=False),
    ]
    menu = build_menu(running(), tools=tools, now=NOW)
    assert labels(menu).index("Configure tools") == labels(menu).index("Sessions") + 1
    entries = submenu(menu, "Configure tools")
    assert labels(entries) == ["OpenCode (configured)", "Aider (not installed)"]
    assert item(entries, "OpenCode (configured)").checked is True
    assert not item(entries, "Aider (not installed)").enabled
    assert labels(submenu(build_menu(running(), tools=[], now=NOW), "Configure tools")) == [
        "No tools found"
    ]


def test_settings_submenu() -> None:
    menu = submenu(build_menu(running(start_at_login=False, warm_pool=True), now=NOW), "Settings")
    assert labels(menu) == [
        "Port: 3456",
        "Start at login",
        "Warm pool",
        "---",
        "Open settings file",
    ]
    assert item(menu, "Start at login").checked is False
    assert item(menu, "Start at login").command == SetStartAtLogin(True)
    assert item(menu, "Warm pool").checked is True
    assert item(menu, "Warm pool").command == SetWarmPool(False)
    assert item(menu, "Open settings file").command == OpenSettingsFile()
    ports = submenu(menu, "Port: 3456")
    assert labels(ports) == ["3456", "3457", "3458", "8080"]
    assert [item(ports, p).checked for p in ("3456", "3457")] == [True, False]
    assert item(ports, "3457").radio and item(ports, "3457").command == UsePort(3457)

    # Agent mode shows once the build has it; start at login hides where it is unknown.
    other = submenu(
        build_menu(running(start_at_login=None, agent_mode=True, warm_pool=False, port=4000)),
        "Settings",
    )
    assert labels(other)[:3] == ["Port: 4000", "Agent mode", "Warm pool"]
    assert item(other, "Agent mode").checked is True
    assert item(other, "Agent mode").command == SetAgentMode(False)
    assert item(other, "Warm pool").command == SetWarmPool(True)
    assert "4000" in labels(submenu(other, "Port: 4000"))


# ---- the icon per state ----


@pytest.mark.parametrize(
    ("status", "state"),
    [
        (running(), IconState.IDLE),
        (running(active_turns=1), IconState.BUSY),
        (
            running(signin=signin(signed_in=False, expires_at=datetime.now().astimezone())),
            IconState.ERROR,
        ),
        (Status(state=ProxyState.FAILED), IconState.ERROR),
        (Status(state=ProxyState.RESTARTING), IconState.ERROR),
        (Status(state=ProxyState.STOPPED), IconState.STOPPED),
        (Status(state=ProxyState.STARTING), IconState.STOPPED),
    ],
)
def test_icon_state(status: Status, state: IconState) -> None:
    assert icon_state(status) is state


def _luminance(rgb: tuple[int, ...]) -> float:
    def channel(c: int) -> float:
        s = c / 255
        return s / 12.92 if s <= 0.03928 else ((s + 0.055) / 1.055) ** 2.4

    r, g, b = (channel(c) for c in rgb[:3])
    return 0.2126 * r + 0.7152 * g + 0.0722 * b


def _contrast(a: tuple[int, ...], b: tuple[int, ...]) -> float:
    la, lb = sorted((_luminance(a), _luminance(b)), reverse=True)
    return (la + 0.05) / (lb + 0.05)


@pytest.mark.parametrize("state", list(IconState))
def test_icons_read_at_16_px_on_light_and_dark_bars(state: IconState) -> None:
    icon = draw_icon(state, 16)
    assert icon.size == (16, 16) and icon.mode == "RGBA"
    raw = icon.tobytes()
    pixels = [tuple(raw[i : i + 4]) for i in range(0, len(raw), 4)]
    opaque = [p for p in pixels if p[3] == 255]
    assert len(opaque) > 120  # a solid tile, not a faint line drawing
    glyph = [p for p in opaque if min(p[:3]) > 230]
    coloured = [p for p in opaque if min(p[:3]) <= 230]
    tile = max(set(coloured), key=coloured.count)
    assert len(glyph) >= 12, "the white glyph must survive at 16 px"
    for bar in ((246, 246, 246), (32, 32, 32)):
        assert _contrast(tile, bar) >= 2.5, f"{state} tile fades into a {bar} bar"
    assert _contrast(tile, (255, 255, 255)) >= 2.5  # glyph against tile


def test_the_icon_files_are_there() -> None:
    """assets/make_icons.py wrote them from the same drawing; installers pick them up."""
    icons = Path(__file__).resolve().parent.parent / "assets" / "icons"
    for state in IconState:
        for size in (16, 22, 24, 32, 44, 48, 64):
            assert (icons / "tray" / f"{state.value}-{size}.png").is_file()
    for name in ("claude-tray.ico", "claude-tray.icns", "hicolor/claude-tray-256.png"):
        assert (icons / name).is_file()


def test_every_state_has_its_own_icon() -> None:
    drawn = {state: draw_icon(state, 22).tobytes() for state in IconState}
    assert len(set(drawn.values())) == len(IconState)


# ---- through pystray (dummy backend: no display, never run()) ----


@pytest.fixture(scope="module")
def pystray() -> ModuleType:
    if "pystray" in sys.modules:
        module = sys.modules["pystray"]
    else:
        previous = os.environ.get("PYSTRAY_BACKEND")
        os.environ["PYSTRAY_BACKEND"] = "dummy"
        try:
            import pystray as module
        finally:
            if previous is None:
                del os.environ["PYSTRAY_BACKEND"]
            else:
                os.environ["PYSTRAY_BACKEND"] = previous
    # The dummy backend is pystray's abstract base icon.
    assert module.Icon.__module__ == "pystray._base", "pystray was imported with a real backend"
    return module


def test_pystray_menu_mirrors_the_model(pystray: ModuleType) -> None:
    status = running(
        signin=signin(method="none", signed_in=False, plan=None),
        sessions=(SessionLine("sess_a", "First", NOW),),
    )
    executed: list[Command] = []
    menu = to_pystray(pystray, build_menu(status, now=NOW), executed.append)
    items = list(menu.items)
    texts = [i.text for i in items]
    assert texts[:3] == [f"Running on {URL} · 0 active", "Not signed in", "Sign in…"]
    by_text = {i.text: i for i in items}
    assert by_text[texts[0]].enabled is False and by_text["Stop"].enabled is True
    assert by_text["Start"].enabled is False

    by_text["Sign in…"](None)
    by_text["Copy OpenAI base URL"](None)
    sessions = by_text["Sessions"].submenu
    assert sessions is not None
    [session] = list(sessions.items)
    session(None)
    settings = by_text["Settings"].submenu
    settings_items = {i.text: i for i in settings.items}
    assert settings_items["Warm pool"].checked is True
    assert settings_items["Start at login"].checked is False
    assert settings_items["Open settings file"].checked is None
    ports = {i.text: i for i in settings_items["Port: 3456"].submenu.items}
    assert ports["3456"].checked is True and ports["3456"].radio is True
    ports["8080"](None)
    assert executed == [
        SignInToClaude(),
        CopyText(f"{URL}/v1", "OpenAI base URL"),
        CopyText("sess_a", "session id"),
        UsePort(8080),
    ]
    # pystray drops the separators at the edges and keeps the ones between groups.
    assert sum(1 for i in items if i is pystray.Menu.SEPARATOR) == 4


def test_pystray_icon_takes_the_menu(pystray: ModuleType) -> None:
    menu = to_pystray(pystray, build_menu(running(), now=NOW), lambda _c: None)
    icon = pystray.Icon("claude-tray", draw_icon(IconState.IDLE, 64), "claude-tray", menu)
    assert next(i.text for i in icon.menu.items) == f"Running on {URL} · 0 active"
    assert icon.visible is False  # never shown: run() is never called on the dummy icon


# ---- the controller carries the commands out ----


@pytest.fixture
def home(tmp_path: Path) -> dict[str, str]:
    return {
        "CLAUDE_TRAY_HOME": str(tmp_path / "tray"),
        "HOME": str(tmp_path),
        "XDG_CONFIG_HOME": str(tmp_path / "xdg"),
        "PATH": os.environ.get("PATH", ""),
    }


def controller_for(env: dict[str, str]) -> tuple[Controller, Supervisor, list[Any]]:
    supervisor = Supervisor(
        lambda: load_settings(env), env, start_at_login=lambda: autostart.is_enabled(env)
    )
    supervisor.reload_settings()
    controller = Controller(
        supervisor, load_settings(env).paths, env, launch_command=["/opt/claude-tray/claude-tray"]
    )
    shown: list[Any] = []

    class Ui:
        def notify(self, notice: Any) -> None:
            shown.append(notice)

        def stop(self) -> None:
            shown.append("stopped")

    controller.bind(Ui())
    return controller, supervisor, shown


def test_settings_toggles_persist_and_show(home: dict[str, str]) -> None:
    controller, supervisor, shown = controller_for(home)
    settings_file = Path(home["CLAUDE_TRAY_HOME"]) / "config" / "settings.json"
    assert supervisor.status.warm_pool is True and supervisor.status.start_at_login is False

    controller.handle(SetWarmPool(False))
    assert json.loads(settings_file.read_text()) == {"pool_size": 0}
    assert supervisor.status.warm_pool is False
    controller.handle(SetWarmPool(True))
    assert json.loads(settings_file.read_text()) == {"pool_size": 2}

    controller.handle(SetStartAtLogin(True))
    entry = Path(home["XDG_CONFIG_HOME"]) / "autostart" / "claude-tray.desktop"
    assert "Exec=/opt/claude-tray/claude-tray\n" in entry.read_text()
    assert supervisor.status.start_at_login is True
    controller.handle(SetStartAtLogin(False))
    assert not entry.exists() and supervisor.status.start_at_login is False
    assert shown == []

    controller.handle(Quit())
    assert shown == ["stopped"]


def test_a_setting_the_environment_overrides_is_said(home: dict[str, str]) -> None:
    controller, supervisor, shown = controller_for({**home, "CLAUDE_TRAY_POOL_SIZE": "3"})
    controller.handle(SetWarmPool(False))
    assert supervisor.status.warm_pool is True
    assert [n.title for n in shown] == ["Setting saved, but overridden"]
    assert "CLAUDE_TRAY_POOL_SIZE" in shown[0].message


def test_copy_without_a_clipboard_says_why(home: dict[str, str]) -> None:
    controller, _, shown = controller_for(home)  # no DISPLAY in this environment
    controller.handle(CopyText("http://127.0.0.1:3456/v1", "OpenAI base URL"))
    assert [n.title for n in shown] == ["Could not copy the OpenAI base URL"]
    controller.handle(CopyApiKey())  # not running: no key to copy
    assert shown[-1].title == "No API key"


def test_open_settings_file_creates_a_private_one(home: dict[str, str]) -> None:
    controller, _, shown = controller_for({**home, "PATH": ""})  # no xdg-open to find
    controller.handle(OpenSettingsFile())
    settings_file = Path(home["CLAUDE_TRAY_HOME"]) / "config" / "settings.json"
    assert json.loads(settings_file.read_text()) == {}
    assert settings_file.stat().st_mode & 0o777 == 0o600
    assert [n.title for n in shown] == ["Could not open it"]
    assert str(settings_file) in shown[0].message


def test_separators_never_start_or_end_a_group() -> None:
    for status in (running(), Status(), Status(state=ProxyState.FAILED, port_in_use=True)):
        menu = build_menu(status, now=NOW)
        assert not isinstance(menu[0], Separator) and not isinstance(menu[-1], Separator)
        assert not any(
            isinstance(a, Separator) and isinstance(b, Separator)
            for a, b in itertools.pairwise(menu)
        )
