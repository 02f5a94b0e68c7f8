#!/usr/bin/env bash
# Build claude-tray.app (PyInstaller, packaging/claude-tray.spec) and pack it in a .dmg
# with a link to /Applications, on macOS:
#
#   bash packaging/macos/build-dmg.sh          # -> dist/claude-tray-<version>-<arch>.dmg
#
# Signing and notarization happen only when their secrets are in the environment (the
# release workflow sets them): CODESIGN_IDENTITY ("Developer ID Application: ..."), then
# NOTARY_APPLE_ID, NOTARY_TEAM_ID and NOTARY_PASSWORD for notarytool. Without them the
# .app and .dmg are unsigned (right-click > Open on first launch).
# PYTHON (default python3) must have the app's requirements and PyInstaller installed.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
cd "$ROOT"
PYTHON=${PYTHON:-python3}
VERSION=$(sed -n 's/^__version__ = "\(.*\)"$/\1/p' tray_app/__init__.py)
ARCH=$(uname -m)
DIST=$ROOT/dist
APP=$DIST/claude-tray.app
DMG=$DIST/claude-tray-$VERSION-macos-$ARCH.dmg
ENTITLEMENTS=$ROOT/packaging/macos/entitlements.plist

"$PYTHON" -m PyInstaller --noconfirm --log-level WARN --distpath "$DIST" --workpath build/pyi \
  packaging/claude-tray.spec
"$APP/Contents/MacOS/claude-tray" --version

if [ -n "${CODESIGN_IDENTITY:-}" ]; then
  # PyInstaller signed the Mach-O files it knows; the CLI is a data file to it, so sign
  # it (hardened runtime, JIT allowed) and then the bundle around it again.
  find "$APP/Contents" -type f -name claude -path '*/_bundled/*' -print0 \
    | xargs -0 codesign --force --timestamp --options runtime \
        --entitlements "$ENTITLEMENTS" --sign "$CODESIGN_IDENTITY"
  codesign --force --timestamp --options runtime --entitlements "$ENTITLEMENTS" \
    --sign "$CODESIGN_IDENTITY" "$APP"
  codesign --verify --deep --strict --verbose=2 "$APP"
fi

rm -f "$DMG"
stage=$(mktemp -d)
trap 'rm -rf "$stage"' EXIT
cp -R "$APP" "$stage/"
ln -s /Applications "$stage/Applications"
if command -v create-dmg >/dev/null; then
  # create-dmg (brew) lays out the window: the app on the left, Applications on the right.
  rm "$stage/Applications"
  create-dmg --volname "claude-tray $VERSION" --window-size 540 300 --icon-size 96 \
    --icon claude-tray.app 140 130 --app-drop-link 400 130 --no-internet-enable \
    "$DMG" "$stage"
else
  hdiutil create -volname "claude-tray $VERSION" -srcfolder "$stage" -fs HFS+ \
    -format UDZO -imagekey zlib-level=9 "$DMG"
fi

if [ -n "${CODESIGN_IDENTITY:-}" ]; then
  codesign --force --timestamp --sign "$CODESIGN_IDENTITY" "$DMG"
  if [ -n "${NOTARY_APPLE_ID:-}" ] && [ -n "${NOTARY_TEAM_ID:-}" ] && [ -n "${NOTARY_PASSWORD:-}" ]; then
    xcrun notarytool submit "$DMG" --apple-id "$NOTARY_APPLE_ID" --team-id "$NOTARY_TEAM_ID" \
      --password "$NOTARY_PASSWORD" --wait
    xcrun stapler staple "$DMG"
  fi
fi
echo "$DMG"
