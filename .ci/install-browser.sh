#!/usr/bin/env bash
# Install the Debian packages the dashboard's browser test needs (headless Chromium and a
# font to draw the page with), quietly and only what is missing; as root, or through sudo.
# playwright-core, which drives it, is an npm package: `python tests/tools.py install`.
set -euo pipefail

packages=(
  chromium            # the browser (driven headless by playwright-core over CDP)
  fonts-dejavu-core   # without a font the page (and its screenshot) has no letters
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
  echo "install-browser: needs apt-get (Debian or Ubuntu) to install: ${missing[*]}" >&2
  exit 1
fi
as_root=()
if [ "$(id -u)" -ne 0 ]; then
  if ! command -v sudo >/dev/null; then
    echo "install-browser: need root (or sudo) to install: ${missing[*]}" >&2
    exit 1
  fi
  as_root=(sudo)
fi

echo "== installing browser test packages: ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive DEBCONF_NOWARNINGS=yes  # no "delaying package configuration"
"${as_root[@]}" apt-get update -qq
"${as_root[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
