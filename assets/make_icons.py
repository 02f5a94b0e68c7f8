"""Write claude-tray's icon files from the drawing in tray_app/tray/icons.py.

    python assets/make_icons.py        # rewrites everything under assets/icons/

Tray states (idle, busy, error, stopped) at the sizes trays use: 16, 22, 24 (Linux panels,
Windows at 100%/150%), 32 and 44 (macOS menu bar @2x, Windows at 200%), 48 and 64 (HiDPI
panels). The application icon: PNGs for the Linux hicolor theme (16-512), a Windows .ico
(16-256 in one file), and the macOS iconset (`iconutil -c icns` input) plus a ready .icns.
"""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tray_app.tray.icons import IconState, draw_app_icon, draw_icon  # noqa: E402

OUT = ROOT / "assets" / "icons"
TRAY_SIZES = (16, 22, 24, 32, 44, 48, 64)
HICOLOR_SIZES = (16, 22, 24, 32, 48, 64, 128, 256, 512)
ICO_SIZES = (16, 20, 24, 32, 40, 48, 64, 128, 256)
# macOS iconset names: icon_16x16.png, icon_16x16@2x.png, ... icon_512x512@2x.png.
ICONSET = tuple((size, scale) for size in (16, 32, 128, 256, 512) for scale in (1, 2))


def main() -> None:
    if OUT.exists():
        shutil.rmtree(OUT)
    (OUT / "tray").mkdir(parents=True)
    for state in IconState:
        for size in TRAY_SIZES:
            draw_icon(state, size).save(OUT / "tray" / f"{state.value}-{size}.png", optimize=True)

    (OUT / "hicolor").mkdir()
    for size in HICOLOR_SIZES:
        draw_app_icon(size).save(OUT / "hicolor" / f"claude-tray-{size}.png", optimize=True)

    big = draw_app_icon(256)
    big.save(
        OUT / "claude-tray.ico",
        sizes=[(s, s) for s in ICO_SIZES],
        append_images=[draw_app_icon(s) for s in ICO_SIZES],
    )

    iconset = OUT / "claude-tray.iconset"
    iconset.mkdir()
    for size, scale in ICONSET:
        suffix = "@2x" if scale == 2 else ""
        draw_app_icon(size * scale).save(iconset / f"icon_{size}x{size}{suffix}.png", optimize=True)
    draw_app_icon(1024).save(OUT / "claude-tray.icns")
    print(f"wrote {sum(1 for p in OUT.rglob('*') if p.is_file())} files under {OUT}")


if __name__ == "__main__":
    main()
