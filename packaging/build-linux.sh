#!/usr/bin/env bash
# Build claude-tray for Linux: the one-folder app (PyInstaller, packaging/claude-tray.spec)
# and the .deb that installs it, cached by a hash of everything that goes in.
#
#   bash packaging/build-linux.sh            # prints the build's folder on its last line
#   bash packaging/build-linux.sh --appdir D # also lays out an AppDir at D (for appimagetool)
#
# The folder (${XDG_CACHE_HOME:-~/.cache}/claude-tray-ci/frozen/<hash>/) holds:
#   claude-tray/                       the frozen app (run claude-tray/claude-tray)
#   claude-tray_<version>_<arch>.deb   app in /opt/claude-tray, /usr/bin/claude-tray,
#                                      a menu entry, hicolor icons, an autostart entry
#                                      that is off unless turned on (see the README)
# <hash> covers tray_app/, assets/, packaging/, requirements-test.lock, the Python and
# PyInstaller versions and the bundled CLI: a second run with nothing changed is instant.
# PYTHON (default: python3) must have the app's requirements and PyInstaller installed;
# DEB_COMPRESSION (default zstd:6) is dpkg-deb's compressor and level.
# The AppImage itself is made in CI only (.github/workflows/release.yml): appimagetool is
# not in the package registries this project may use.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT"
PYTHON=${PYTHON:-python3}
COMPRESSION=${DEB_COMPRESSION:-zstd:6}  # dpkg-deb's -Z type and -z level
APPDIR=""
while [ $# -gt 0 ]; do
  case "$1" in
    --appdir) APPDIR=$(realpath -m "$2"); shift 2 ;;
    *) echo "usage: $0 [--appdir DIR]" >&2; exit 2 ;;
  esac
done
say() { echo "build-linux: $*" >&2; }

VERSION=$(sed -n 's/^__version__ = "\(.*\)"$/\1/p' tray_app/__init__.py)
ARCH=$(dpkg --print-architecture 2>/dev/null || uname -m)
CLI=$("$PYTHON" -c 'import claude_agent_sdk, pathlib; print(pathlib.Path(claude_agent_sdk.__file__).parent / "_bundled" / "claude")')

key=$(
  {
    "$PYTHON" -c 'import sys, platform; print(sys.version, platform.machine())'
    "$PYTHON" -m PyInstaller --version
    cat "$CLI.version" 2>/dev/null || stat -c %s "$CLI"
    # Every input file, by name and content; compiled files and caches are not inputs.
    find tray_app assets packaging -type f ! -path '*/__pycache__/*' ! -name '*.pyc' -print0 \
      | LC_ALL=C sort -z | xargs -0 sha256sum
    sha256sum requirements-test.lock
    echo "$COMPRESSION"
  } | sha256sum | cut -c1-16
)
CACHE=${XDG_CACHE_HOME:-$HOME/.cache}/claude-tray-ci/frozen
OUT=$CACHE/$key
DEB=$OUT/claude-tray_${VERSION}_${ARCH}.deb

if [ ! -f "$OUT/.complete" ]; then
  say "building $key (PyInstaller, then the .deb; about 2 minutes)"
  mkdir -p "$CACHE"
  work=$(mktemp -d "$CACHE/.build-$key-XXXXXX")
  trap 'rm -rf "$work"' EXIT
  "$PYTHON" -m PyInstaller --noconfirm --log-level WARN \
    --distpath "$work/dist" --workpath "$work/pyi" packaging/claude-tray.spec >"$work/pyinstaller.log" 2>&1 \
    || { tail -40 "$work/pyinstaller.log" >&2; exit 1; }
  app=$work/dist/claude-tray
  "$app/claude-tray" --version >/dev/null || { say "the frozen app does not start"; exit 1; }

  # ---- the .deb: its file tree, then its control files ----
  root=$work/deb
  mkdir -p "$root/opt" "$root/usr/bin" "$root/usr/share/applications" "$root/etc/xdg/autostart" \
    "$root/usr/share/doc/claude-tray" "$root/DEBIAN"
  cp -a "$app" "$root/opt/claude-tray"
  ln -s /opt/claude-tray/claude-tray "$root/usr/bin/claude-tray"
  install -m 0644 packaging/linux/claude-tray.desktop "$root/usr/share/applications/"
  # Off for everyone until an admin edits it; a user's own "Start at login" writes
  # ~/.config/autostart/claude-tray.desktop, which takes precedence over this one.
  install -m 0644 packaging/linux/claude-tray-autostart.desktop \
    "$root/etc/xdg/autostart/claude-tray.desktop"
  for png in assets/icons/hicolor/claude-tray-*.png; do
    size=${png##*-}; size=${size%.png}
    install -D -m 0644 "$png" "$root/usr/share/icons/hicolor/${size}x${size}/apps/claude-tray.png"
  done
  printf 'claude-tray %s, frozen with PyInstaller; includes the Claude Code CLI %s.\nLicence: MIT.\n' \
    "$VERSION" "$(cat "$CLI.version" 2>/dev/null || echo '(bundled)')" \
    >"$root/usr/share/doc/claude-tray/copyright"
  if command -v desktop-file-validate >/dev/null; then
    desktop-file-validate "$root/usr/share/applications/claude-tray.desktop"
    desktop-file-validate "$root/etc/xdg/autostart/claude-tray.desktop"
  else
    say "desktop-file-validate not found (Debian: desktop-file-utils); entries not checked"
  fi
  # The bundle carries every library but glibc, so glibc is the one dependency: at least
  # the version it was built against (build on the oldest distribution to support).
  glibc=$(ldd --version | sed -n '1s/.* \([0-9][0-9]*\.[0-9][0-9]*\)$/\1/p')
  installed=$(du -sk --exclude=DEBIAN "$root" | cut -f1)
  cat >"$root/DEBIAN/control" <<EOF
Package: claude-tray
Version: $VERSION
Architecture: $ARCH
Maintainer: claude-tray developers <claude-tray@users.noreply.github.com>
Installed-Size: $installed
Depends: libc6 (>= $glibc)
Recommends: xclip | xsel | wl-clipboard
Section: devel
Priority: optional
Homepage: https://github.com/claude-tray/claude-tray
Description: use your Claude sign-in from any coding tool
 claude-tray runs a local server that speaks the OpenAI Chat Completions, OpenAI
 Responses and Anthropic Messages APIs and answers every request through the
 official Claude Code runtime, signed in as you. It sits in the tray.
 .
 Self-contained: Python, GTK and the Claude Code CLI are inside /opt/claude-tray.
EOF
  echo /etc/xdg/autostart/claude-tray.desktop >"$root/DEBIAN/conffiles"
  install -m 0755 packaging/linux/postrm "$root/DEBIAN/postrm"
  # zstd -6 packs the 550 MB in seconds (232 MB); xz -6 makes 187 MB but takes about
  # 3 minutes on 2 cores (the release workflow asks for it with DEB_COMPRESSION=xz:6).
  dpkg-deb --root-owner-group -Z"${COMPRESSION%%:*}" -z"${COMPRESSION##*:}" \
    --threads-max="$(nproc)" --build "$root" "$work/out.deb" >/dev/null

  # ---- into the cache, atomically: a half-built entry is never seen ----
  rm -rf "$root"
  mkdir -p "$work/entry"
  mv "$app" "$work/entry/claude-tray"
  mv "$work/out.deb" "$work/entry/$(basename "$DEB")"
  touch "$work/entry/.complete"
  rm -rf "$OUT"
  mv "$work/entry" "$OUT"
  rm -rf "$work"
  trap - EXIT
  # Keep this build and the one before it: each is ~0.7 GB.
  find "$CACHE" -mindepth 1 -maxdepth 1 -type d ! -name '.build-*' -printf '%T@ %p\n' \
    | sort -rn | tail -n +3 | cut -d' ' -f2- | xargs -r rm -rf
else
  say "cached: $OUT"
fi

if [ -n "$APPDIR" ]; then
  # An AppDir for appimagetool: AppRun starts the app; the .desktop and icon at its top.
  rm -rf "$APPDIR"
  mkdir -p "$APPDIR/usr/lib" "$APPDIR/usr/share/applications"
  cp -a "$OUT/claude-tray" "$APPDIR/usr/lib/claude-tray"
  install -m 0755 packaging/linux/AppRun "$APPDIR/AppRun"
  install -m 0644 packaging/linux/claude-tray.desktop "$APPDIR/claude-tray.desktop"
  install -m 0644 packaging/linux/claude-tray.desktop "$APPDIR/usr/share/applications/"
  install -m 0644 assets/icons/hicolor/claude-tray-256.png "$APPDIR/claude-tray.png"
  ln -sf claude-tray.png "$APPDIR/.DirIcon"
  for png in assets/icons/hicolor/claude-tray-*.png; do
    size=${png##*-}; size=${size%.png}
    install -D -m 0644 "$png" "$APPDIR/usr/share/icons/hicolor/${size}x${size}/apps/claude-tray.png"
  done
  say "AppDir at $APPDIR"
fi
echo "$OUT"
