"""Carry out the menu's commands, one at a time, on a worker thread of their own.

Stopping the proxy waits for its thread; doing that on the main thread would freeze the
menu, so the icon only queues commands here. Restart policy is not decided here: the
supervisor owns it; this module only says what a person asked for.
"""

from __future__ import annotations

import logging
import queue
import threading
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Protocol

from tray_app.backend.runner import bundled_cli
from tray_app.errors import ClaudeTrayError
from tray_app.integrations import autostart
from tray_app.settings import Paths, env_var_name, save_setting_values
from tray_app.supervisor import Notice, ProxyState, Supervisor
from tray_app.tray import desktop
from tray_app.tray.menu import (
    Command,
    CopyApiKey,
    CopyText,
    OpenLogsFolder,
    OpenSettingsFile,
    Quit,
    RestartProxy,
    RunTool,
    SetAgentMode,
    SetStartAtLogin,
    SetWarmPool,
    SignInToClaude,
    StartProxy,
    StopProxy,
    UsePort,
)

log = logging.getLogger(__name__)

WARM_POOL_SIZE = 2
# How long Stop/Restart/Quit wait for the server thread before giving up on it.
STOP_TIMEOUT = 15.0


class Ui(Protocol):
    def notify(self, notice: Notice) -> None: ...
    def stop(self) -> None: ...


class _Headless:
    def notify(self, notice: Notice) -> None:
        log.info("%s: %s", notice.title, notice.message)

    def stop(self) -> None:
        pass


class Controller:
    def __init__(
        self,
        supervisor: Supervisor,
        paths: Paths,
        env: Mapping[str, str],
        *,
        launch_command: Sequence[str],
        cli_path: str | None = None,
    ) -> None:
        self._supervisor = supervisor
        self._paths = paths
        self._env = dict(env)
        self._launch_command = list(launch_command)
        self._cli_path = cli_path
        self._ui: Ui = _Headless()
        self._queue: queue.Queue[Command | None] = queue.Queue()
        self._worker: threading.Thread | None = None
        self.quitting = threading.Event()

    def bind(self, ui: Ui) -> None:
        self._ui = ui

    # ---- queueing (any thread) ----

    def execute(self, command: Command) -> None:
        if self.quitting.is_set():
            return
        if isinstance(command, Quit):
            self.quitting.set()
        if self._worker is None:
            self._worker = threading.Thread(
                target=self._work, name="claude-tray-commands", daemon=True
            )
            self._worker.start()
        self._queue.put(command)

    def started(self) -> None:
        """The icon is up: start the proxy."""
        self.execute(StartProxy())

    def quit(self) -> None:
        self.execute(Quit())

    def _work(self) -> None:
        while (command := self._queue.get()) is not None:
            self.handle(command)
            if isinstance(command, Quit):
                return

    # ---- carrying out (the worker thread; tests call it directly) ----

    def handle(self, command: Command) -> None:
        log.info("menu: %s", type(command).__name__)
        try:
            self._handle(command)
        except (ClaudeTrayError, OSError) as exc:
            message = exc.message if isinstance(exc, ClaudeTrayError) else str(exc)
            log.warning("%s failed: %s", type(command).__name__, message)
            self._ui.notify(Notice("claude-tray could not do that", message))
        except Exception:
            log.exception("%s failed", type(command).__name__)

    def _handle(self, command: Command) -> None:
        supervisor = self._supervisor
        match command:
            case StartProxy():
                supervisor.start()
            case StopProxy():
                supervisor.stop(STOP_TIMEOUT)
            case RestartProxy():
                supervisor.restart(STOP_TIMEOUT)
            case UsePort(port=port):
                self._save("port", port, port)
                self._apply(start=True)
            case SetWarmPool(on=on):
                self._save("pool_size", WARM_POOL_SIZE if on else 0, on)
                self._apply(start=False)
            case SetAgentMode(on=on):
                self._save("agent_mode", on, on)
                self._apply(start=False)
            case SetStartAtLogin(on=on):
                autostart.set_enabled(on, self._launch_command, self._env)
                supervisor.reload_settings()
            case CopyText(text=text, what=what):
                self._copy(text, what)
            case CopyApiKey():
                key = supervisor.api_key()
                if key is None:
                    self._ui.notify(Notice("No API key", "The proxy is running without a key."))
                else:
                    self._copy(key, "API key")
            case SignInToClaude():
                self._sign_in()
            case OpenLogsFolder():
                self._open(Path(supervisor.status.log_dir or self._paths.log_dir))
            case OpenSettingsFile():
                if not self._paths.settings_file.exists():
                    save_setting_values(self._paths, {})  # an empty {} to edit, 0600
                self._open(self._paths.settings_file)
            case RunTool(action=action):
                action()
            case Quit():
                supervisor.shutdown(STOP_TIMEOUT)
                self._ui.stop()

    def _save(self, name: str, value: object, shown: object) -> None:
        save_setting_values(self._paths, {name: value})
        self._supervisor.reload_settings()
        status = self._supervisor.status
        now = {"port": status.port, "pool_size": status.warm_pool, "agent_mode": status.agent_mode}
        if now.get(name) != shown and env_var_name(name) in self._env:
            self._ui.notify(
                Notice(
                    "Setting saved, but overridden",
                    f"{env_var_name(name)} in claude-tray's environment sets {name}; the "
                    "saved value applies once it is gone.",
                )
            )

    def _apply(self, *, start: bool) -> None:
        """Restart a running proxy so a saved change takes effect (or start a stopped one)."""
        state = self._supervisor.status.state
        if state in (ProxyState.RUNNING, ProxyState.STARTING, ProxyState.RESTARTING):
            self._supervisor.restart(STOP_TIMEOUT)
        elif start:
            self._supervisor.start()

    def _copy(self, text: str, what: str) -> None:
        problem = desktop.copy_text(text, self._env)
        if problem is None:
            log.info("copied the %s to the clipboard", what)
        else:
            self._ui.notify(Notice(f"Could not copy the {what}", problem))

    def _open(self, path: Path) -> None:
        problem = desktop.open_path(path, self._env)
        if problem is not None:
            self._ui.notify(Notice("Could not open it", problem))

    def _sign_in(self) -> None:
        cli = self._supervisor.status.cli_path or self._cli_path or bundled_cli()
        if desktop.open_terminal([cli], self._env):
            return
        copied = desktop.copy_text(cli, self._env) is None
        self._ui.notify(
            Notice(
                "Sign in to Claude",
                f"Run {cli} in a terminal and log in"
                + (" (the command is on the clipboard)." if copied else "."),
            )
        )
