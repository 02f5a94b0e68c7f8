#!/usr/bin/env bash
# Install claude-tray for this user from this checkout, then start it.
# The app lives in its own venv (no system Python packages touched); a link goes to
# ~/.local/bin/claude-tray. Extra arguments go to claude-tray (e.g. `serve --port 4000`).
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON=${PYTHON:-python3}
VENV=${CLAUDE_TRAY_VENV:-${XDG_DATA_HOME:-$HOME/.local/share}/claude-tray/venv}
"$PYTHON" -c 'import sys; sys.exit(sys.version_info < (3, 11))' \
  || { echo "claude-tray needs Python 3.11 or newer" >&2; exit 1; }
echo "Installing claude-tray into $VENV (the Claude Code runtime is a ~170 MB download)..."
"$PYTHON" -m venv "$VENV"
"$VENV/bin/python" -m pip install --quiet --upgrade pip
if [ "$(uname -s)" = Linux ]; then
  # The tray menu needs PyGObject, built against GTK's headers; without them claude-tray
  # still installs and runs headless.
  "$VENV/bin/python" -m pip install --quiet ".[linux-tray]" 2>/dev/null || {
    echo "No tray icon: PyGObject did not build. For the tray, install" >&2
    echo "  libgirepository1.0-dev libcairo2-dev pkg-config gir1.2-gtk-3.0 gir1.2-ayatanaappindicator3-0.1" >&2
    echo "and run this again. Installing without it (headless)." >&2
    "$VENV/bin/python" -m pip install --quiet .
  }
else
  "$VENV/bin/python" -m pip install --quiet .
fi
mkdir -p "$HOME/.local/bin"
ln -sf "$VENV/bin/claude-tray" "$HOME/.local/bin/claude-tray"
echo "Installed: $HOME/.local/bin/claude-tray"
exec "$VENV/bin/claude-tray" "$@"
