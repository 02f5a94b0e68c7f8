"""Runtime hook of the frozen claude-tray: runs before PyInstaller's own hooks and the app.

What only a frozen app needs:
- The bootloader starts the app with LD_LIBRARY_PATH pointing into the bundle. The dynamic
  loader read it at exec time, so this process keeps finding its libraries; the variable
  goes back to the user's own value here, or every child (the CLI, and the shell commands
  an agent runs) would load our bundled OpenSSL, zlib, GTK... instead of the system's.
- The environment claude-tray was started with is kept as `sys._claude_tray_launch_env`:
  PyInstaller's GTK hooks next point GI_TYPELIB_PATH, GTK_PATH, GDK_PIXBUF_MODULE_FILE and
  XDG_DATA_DIRS into the bundle (GTK reads them later, so they must stay in os.environ),
  and the app gives the desktop programs it starts (a terminal for "Sign in", xdg-open,
  the clipboard tools) the launch environment instead.
- A Windows GUI build has no console: sys.stdout and sys.stderr are None, and a print
  (`claude-tray is already running`) would raise. They go to os.devnull instead.
"""


def _pyi_rthook() -> None:
    import os
    import sys

    bundle = getattr(sys, "_MEIPASS", None)
    for name in ("LD_LIBRARY_PATH", "DYLD_LIBRARY_PATH"):
        original = os.environ.pop(f"{name}_ORIG", None)
        if original is not None:
            os.environ[name] = original
        elif bundle and bundle in os.environ.get(name, ""):
            del os.environ[name]
    # The bootloader's own bookkeeping (_PYI_*) would make another frozen program started
    # from here, or this one started again, think it is our child.
    launch = {k: v for k, v in os.environ.items() if not k.startswith("_PYI_")}
    sys._claude_tray_launch_env = launch  # type: ignore[attr-defined]  # noqa: SLF001 (read by tray_app.app)

    if sys.stdout is None or sys.stderr is None:
        sink = open(os.devnull, "w", encoding="utf-8")  # noqa: SIM115 (lives as long as the app)
        sys.stdout = sys.stdout or sink
        sys.stderr = sys.stderr or sink


_pyi_rthook()
del _pyi_rthook
