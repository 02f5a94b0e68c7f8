#!/usr/bin/env bash
# Install the Debian packages the desktop tests need (Xvfb and a tray host, xdotool and
# imagemagick to click and screenshot, gnome-keyring on a private D-Bus, the GTK and
# AppIndicator introspection data and the headers PyGObject builds against), quietly and
# only what is missing; as root, or through sudo.
set -euo pipefail

packages=(
  xvfb xauth           # the X server the tray test draws on (xvfb-run needs xauth)
  trayer               # a system-tray host: without one there is nowhere to put an icon
  xdotool              # find the icon's window and click it
  imagemagick          # `import -window root`: the screenshot
  x11-utils            # xwininfo, to read the window tree
  gir1.2-atspi-2.0     # AT-SPI: the test reads the real menu's items as a screen reader would
  dbus dbus-x11        # a private session bus for the keyring test
  gnome-keyring        # the Secret Service keyring talks to
  libsecret-tools      # secret-tool: the tests check what really is in the keyring
  libnotify-bin        # notify-send (notifications degrade when no daemon runs)
  xclip                # "Copy ..." menu items on X11
  desktop-file-utils   # desktop-file-validate: the .deb's menu and autostart entries
  pkg-config gcc libgirepository1.0-dev libcairo2-dev  # to build PyGObject and pycairo
  gir1.2-gtk-3.0 gir1.2-ayatanaappindicator3-0.1     # pystray's gtk/appindicator backends
)

missing=()
for package in "${packages[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$package")
  fi
done
if [ "${#missing[@]}" -eq 0 ]; then
  exit 0
fi

if ! command -v apt-get >/dev/null; then
  echo "install-desktop: needs apt-get (Debian or Ubuntu) to install: ${missing[*]}" >&2
  exit 1
fi
as_root=()
if [ "$(id -u)" -ne 0 ]; then
  if ! command -v sudo >/dev/null; then
    echo "install-desktop: need root (or sudo) to install: ${missing[*]}" >&2
    exit 1
  fi
  as_root=(sudo)
fi

echo "== installing desktop test packages: ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
"${as_root[@]}" apt-get update -qq
"${as_root[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
