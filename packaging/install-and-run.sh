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
"$VENV/bin/python" -m pip install --quiet .
mkdir -p "$HOME/.local/bin"
ln -sf "$VENV/bin/claude-tray" "$HOME/.local/bin/claude-tray"
echo "Installed: $HOME/.local/bin/claude-tray"
exec "$VENV/bin/claude-tray" "$@"
