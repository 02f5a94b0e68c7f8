"""The tray icon itself: pystray on the main thread, rebuilt from each published Status.

pystray is imported here only, and lazily (importing it without a display crashes). The
supervisor's listeners run on its threads; they only ask the main thread to refresh, and
the refresh reads the newest Status, so a burst of changes costs one rebuild. macOS
crashes when a menu changes off the main thread, so every change to the icon goes through
`call_on_main`.
"""

from __future__ import annotations

import functools
import logging
import signal
import threading
from collections.abc import Callable, Mapping, Sequence
from types import ModuleType
from typing import Any

from tray_app.errors import ClaudeTrayError
from tray_app.supervisor import Notice, ProxyState, Status, Supervisor
from tray_app.tray.controller import Controller
from tray_app.tray.icons import IconState, draw_icon
from tray_app.tray.menu import Command, Item, Menu, Separator, ToolEntry, build_menu, tooltip

log = logging.getLogger(__name__)

APP_ID = "claude-tray"


class TrayUnavailable(ClaudeTrayError):
    """No tray icon with a menu can be shown here (no toolkit, no display)."""


def load_pystray(env: Mapping[str, str]) -> ModuleType:
    """Import pystray, refusing its menu-less xorg backend unless asked for by name."""
    try:
        import pystray
    except Exception as exc:  # pystray raises whatever its backends raise (Xlib, GTK)
        raise TrayUnavailable(f"pystray could not start: {type(exc).__name__}: {exc}") from exc
    backend = pystray.Icon.__module__.rsplit("._", 1)[-1]
    if backend in ("gtk", "appindicator"):
        # Their loop opens the session bus (for notifications) before showing anything,
        # and without one it fails in a way that leaves pystray's setup thread waiting
        # forever: check first.
        try:
            _gio().bus_get_sync(_gio().BusType.SESSION, None)
        except Exception as exc:
            raise TrayUnavailable(f"no D-Bus session bus ({exc})") from exc
    if backend == "xorg" and env.get("PYSTRAY_BACKEND") != "xorg":
        raise TrayUnavailable(
            "only pystray's xorg backend is available here, and it has no menu; install "
            "PyGObject with GTK 3 (and AyatanaAppIndicator) for the tray menu"
        )
    module: ModuleType = pystray
    return module


ICON_SIZE = 64  # the tray scales it down; hosts that show it larger still get a sharp one
# Ages ("5 min ago") and times in the menu go stale between status changes: rebuild this
# often anyway (a rebuild that changes nothing is skipped).
TICK_SECONDS = 30.0


def icon_state(status: Status) -> IconState:
    if status.state in (ProxyState.FAILED, ProxyState.RESTARTING):
        return IconState.ERROR
    if status.state is not ProxyState.RUNNING:
        return IconState.STOPPED
    if status.signin is not None and status.signin.expired:
        return IconState.ERROR
    return IconState.BUSY if status.active_turns > 0 else IconState.IDLE


def to_pystray(pystray: ModuleType, menu: Menu, execute: Callable[[Command], None]) -> Any:
    """pystray's menu for `menu`; activating an item calls `execute(command)`."""

    def convert(entries: Sequence[Item | Separator]) -> Any:
        items: list[Any] = []
        for entry in entries:
            if isinstance(entry, Separator):
                items.append(pystray.Menu.SEPARATOR)
                continue
            action: Any = None
            if entry.submenu is not None:
                action = convert(entry.submenu)
            elif entry.command is not None:
                # A partial, not a closure: pystray counts a function's parameters.
                action = functools.partial(_activate, execute, entry.command)

            checked = None
            if entry.checked is not None:
                value = entry.checked

                def checked(_item: Any, value: bool = value) -> bool:
                    return value

            items.append(
                pystray.MenuItem(
                    entry.label, action, checked=checked, radio=entry.radio, enabled=entry.enabled
                )
            )
        return pystray.Menu(*items)

    return convert(menu)


def _activate(execute: Callable[[Command], None], command: Command, _icon: Any, _item: Any) -> None:
    execute(command)


class TrayIcon:
    """Owns the pystray icon; `run()` blocks the main thread until Quit."""

    def __init__(
        self,
        supervisor: Supervisor,
        controller: Controller,
        env: Mapping[str, str],
        *,
        tools: Callable[[], Sequence[ToolEntry]] | None = None,
    ) -> None:
        self._env = env
        self._supervisor = supervisor
        self._controller = controller
        self._tools = tools
        self._pystray: ModuleType | None = None
        self._icon: Any = None
        self._menu: Menu | None = None
        self._state: IconState | None = None
        self._refresh_pending = threading.Event()
        self._stopped = threading.Event()
        self._win32_calls: list[Callable[[], bool]] = []

    def run(self) -> None:
        """Show the icon and run its loop; TrayUnavailable before anything is shown."""
        pystray = load_pystray(self._env)
        _name_the_app()
        self._pystray = pystray
        status = self._supervisor.status
        self._state = icon_state(status)
        self._menu = self._build(status)
        self._icon = pystray.Icon(
            APP_ID,
            draw_icon(self._state, ICON_SIZE),
            tooltip(status),
            to_pystray(pystray, self._menu, self._controller.execute),
        )
        log.info("tray icon starting (pystray backend %s)", self.backend)
        self._supervisor.subscribe(self._status_changed, self.notify)
        try:
            self._icon.run(setup=self._setup)
        except Exception:
            # gtk/appindicator raise on the way out when no notification service runs
            # (their notifier cannot close its last notification): the icon is gone anyway.
            log.debug("the tray icon's loop ended with an error", exc_info=True)
        self._stopped.set()
        log.info("tray icon stopped")

    @property
    def backend(self) -> str:
        return type(self._icon).__module__.rsplit("._", 1)[-1] if self._icon is not None else "-"

    def stop(self) -> None:
        """End `run()` (from any thread)."""
        if self._icon is not None:
            self.call_on_main(self._icon.stop)

    def notify(self, notice: Notice) -> None:
        """Show a desktop notification (from any thread); failures are logged, not raised."""
        self.call_on_main(lambda: self._notify_now(notice))

    def _notify_now(self, notice: Notice) -> None:
        icon = self._icon
        if icon is None or not getattr(icon, "HAS_NOTIFICATION", False):
            return
        try:
            icon.notify(notice.message, notice.title)
        except Exception:  # no notification daemon (Xvfb, minimal desktops)
            log.info("could not show a notification: %s", notice.title, exc_info=True)

    def _setup(self, icon: Any) -> None:
        icon.visible = True
        self.call_on_main(self._handle_signals)
        threading.Thread(target=self._tick, name="claude-tray-tick", daemon=True).start()
        self._controller.started()

    def _tick(self) -> None:
        while not self._stopped.wait(TICK_SECONDS):
            self._status_changed(self._supervisor.status)

    def _status_changed(self, _status: Status) -> None:
        if not self._refresh_pending.is_set():
            self._refresh_pending.set()
            self.call_on_main(self._refresh)

    def _refresh(self) -> None:
        """Rebuild what changed from the newest Status (main thread)."""
        self._refresh_pending.clear()
        icon = self._icon
        if icon is None or self._pystray is None:
            return
        status = self._supervisor.status
        menu = self._build(status)
        if menu != self._menu:
            self._menu = menu
            icon.menu = to_pystray(self._pystray, menu, self._controller.execute)
            icon.update_menu()
            log.debug("tray menu: %s", " | ".join(_labels(menu)))
        state = icon_state(status)
        if state != self._state:
            self._state = state
            icon.icon = draw_icon(state, ICON_SIZE)
        icon.title = tooltip(status)

    def _build(self, status: Status) -> Menu:
        tools = None
        if self._tools is not None:
            try:
                tools = self._tools()
            except Exception:
                log.exception("listing the tools to configure failed")
        return build_menu(status, tools=tools)

    # ---- the main thread ----

    def call_on_main(self, fn: Callable[[], None]) -> None:
        """Run `fn` on the thread that runs the icon's loop, soon; never waits for it."""
        backend = self.backend

        def guarded() -> bool:
            try:
                fn()
            except Exception:
                log.exception("a tray update failed")
            return False  # GLib: do not call again

        if backend in ("gtk", "appindicator"):
            _glib().idle_add(guarded)
        elif backend == "darwin":
            from PyObjCTools import AppHelper  # type: ignore[import-not-found,unused-ignore]

            AppHelper.callAfter(guarded)
        elif backend == "win32":
            _post_to_win32(self._icon, self._win32_calls, guarded)
        else:  # xorg and dummy: pystray itself serialises, there is no toolkit thread rule
            guarded()

    def _handle_signals(self) -> None:
        """SIGTERM (logout, `kill`) and SIGINT quit cleanly: the proxy and its CLI processes
        stop instead of dying with the app."""
        if self.backend in ("gtk", "appindicator"):
            glib = _glib()

            def on_signal() -> bool:
                log.info("signal received: quitting")
                self._controller.quit()
                return True

            for signum in (signal.SIGTERM, signal.SIGINT):
                glib.unix_signal_add(glib.PRIORITY_DEFAULT, signum, on_signal)
        elif threading.current_thread() is threading.main_thread():
            for signum in (signal.SIGTERM, signal.SIGINT):
                signal.signal(signum, lambda *_: self._controller.quit())


def _name_the_app() -> None:
    """Give GTK our name (the window class trays and AT-SPI show) instead of python's."""
    try:
        glib = _glib()
    except ImportError:
        return
    glib.set_prgname(APP_ID)
    glib.set_application_name(APP_ID)


def _gio() -> Any:
    from gi.repository import Gio  # type: ignore[import-untyped,import-not-found,unused-ignore]

    return Gio


def _glib() -> Any:
    """GLib, for the gtk and appindicator backends (PyGObject ships no type hints)."""
    from gi.repository import GLib  # type: ignore[import-untyped,import-not-found,unused-ignore]

    return GLib


_WM_APP_CALL = 0x8000 + 0x4C  # WM_APP + n: a message only we post


def _post_to_win32(icon: Any, queue: list[Callable[[], bool]], fn: Callable[[], bool]) -> None:
    """Run `fn` on pystray's win32 message loop: pystray dispatches a window's messages
    through `_message_handlers`, so a handler for our own message runs there."""
    import ctypes

    queue.append(fn)

    def drain(_wparam: Any, _lparam: Any) -> int:
        while queue:
            queue.pop(0)()
        return 0

    icon._message_handlers[_WM_APP_CALL] = drain  # noqa: SLF001 - pystray has no public hook
    ctypes.windll.user32.PostMessageW(icon._hwnd, _WM_APP_CALL, 0, 0)  # type: ignore[attr-defined]  # noqa: SLF001


def _labels(menu: Menu) -> list[str]:
    out: list[str] = []
    for entry in menu:
        if isinstance(entry, Item):
            out.append(entry.label + (" ▸" if entry.submenu is not None else ""))
    return out
