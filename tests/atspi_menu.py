"""Read (or click) the menus an application shows, through AT-SPI, as a screen reader would.

Run as a script in the desktop session (DISPLAY and DBUS_SESSION_BUS_ADDRESS set), so the
process-wide AT-SPI connection belongs to that session alone:

    python atspi_menu.py dump APP            -> JSON: every showing menu of APP, as a tree
    python atspi_menu.py click APP LABEL     -> activates the menu item named LABEL
"""

from __future__ import annotations

import json
import sys
import time
from typing import Any

import gi

gi.require_version("Atspi", "2.0")
from gi.repository import Atspi  # noqa: E402

_MENU_ROLES = {"menu", "menu item", "check menu item", "radio menu item", "separator"}


def _node(acc: Any) -> dict[str, Any]:
    states = acc.get_state_set()
    return {
        "role": acc.get_role_name(),
        "name": acc.get_name(),
        "sensitive": states.contains(Atspi.StateType.SENSITIVE),
        "showing": states.contains(Atspi.StateType.SHOWING),
        "checked": states.contains(Atspi.StateType.CHECKED),
        "children": [
            _node(acc.get_child_at_index(i))
            for i in range(acc.get_child_count())
            if acc.get_child_at_index(i).get_role_name() in _MENU_ROLES
        ],
    }


def _app(name: str) -> Any:
    desktop = Atspi.get_desktop(0)
    for i in range(desktop.get_child_count()):
        app = desktop.get_child_at_index(i)
        if app is not None and app.get_name() == name:
            return app
    return None


def _menus(app: Any) -> list[Any]:
    """The top-level menus on screen: a popup is a window holding one menu."""
    found = []
    for i in range(app.get_child_count()):
        window = app.get_child_at_index(i)
        for j in range(window.get_child_count()):
            child = window.get_child_at_index(j)
            if child.get_role_name() == "menu" and child.get_state_set().contains(
                Atspi.StateType.SHOWING
            ):
                found.append(child)
    return found


def _find(acc: Any, label: str) -> Any:
    for i in range(acc.get_child_count()):
        child = acc.get_child_at_index(i)
        if child.get_name() == label and child.get_role_name() != "menu":
            return child
        hit = _find(child, label)
        if hit is not None:
            return hit
    return None


def main(argv: list[str]) -> int:
    command, app_name = argv[0], argv[1]
    deadline = time.monotonic() + 10
    while True:
        app = _app(app_name)
        menus = _menus(app) if app is not None else []
        if menus or time.monotonic() > deadline:
            break
        time.sleep(0.1)
    if not menus:
        print(json.dumps({"error": f"no menu of {app_name} is showing"}))
        return 1
    if command == "dump":
        print(json.dumps([_node(menu) for menu in menus]))
        return 0
    target = _find(menus[0], argv[2])
    if target is None:
        print(json.dumps({"error": f"no item {argv[2]!r}"}))
        return 1
    action = target.get_action_iface()
    action.do_action(0)  # "click"
    print(json.dumps({"clicked": argv[2]}))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
