"""Draw claude-tray's icons with PIL: the tray states (idle, busy, error, stopped) and the app.

One drawing serves every size: shapes are drawn at 8× and scaled down, so a 16 px icon
stays crisp. The tile colours sit mid-way in lightness, so the icon reads on light and on
dark menu bars alike; the glyph inside is always white. `assets/make_icons.py` writes the
files the installers need from these same functions.
"""

from __future__ import annotations

from enum import StrEnum

from PIL import Image, ImageDraw


class IconState(StrEnum):
    IDLE = "idle"
    BUSY = "busy"
    ERROR = "error"
    STOPPED = "stopped"


# Mid-lightness tiles: about 3:1 or better against both white and near-black bars.
TERRACOTTA = (217, 119, 87, 255)  # running
RED = (214, 48, 37, 255)  # error
GREY = (128, 128, 128, 255)  # stopped
BLUE = (37, 99, 235, 255)  # the busy badge
WHITE = (255, 255, 255, 255)
_SCALE = 8


def draw_icon(state: IconState | str, size: int) -> Image.Image:
    """The tray icon for `state`, `size` pixels square, RGBA with a transparent margin."""
    state = IconState(state)
    big = size * _SCALE
    image = Image.new("RGBA", (big, big), (0, 0, 0, 0))
    draw = ImageDraw.Draw(image)
    unit = big / 16  # all geometry below is in 16 px units

    def box(x0: float, y0: float, x1: float, y1: float) -> tuple[int, int, int, int]:
        return (round(x0 * unit), round(y0 * unit), round(x1 * unit), round(y1 * unit))

    tile = {IconState.ERROR: RED, IconState.STOPPED: GREY}.get(state, TERRACOTTA)
    draw.rounded_rectangle(box(0.5, 0.5, 15.5, 15.5), radius=round(3.5 * unit), fill=tile)
    width = max(round(2.0 * unit), 1)
    if state is IconState.ERROR:
        # "!": a bar and a dot.
        draw.rounded_rectangle(box(6.9, 2.8, 9.1, 9.9), radius=round(1.0 * unit), fill=WHITE)
        draw.ellipse(box(6.8, 11.2, 9.2, 13.6), fill=WHITE)
    elif state is IconState.STOPPED:
        # A pause sign: two bars.
        draw.rounded_rectangle(box(4.6, 4.0, 6.9, 12.0), radius=round(0.8 * unit), fill=WHITE)
        draw.rounded_rectangle(box(9.1, 4.0, 11.4, 12.0), radius=round(0.8 * unit), fill=WHITE)
    else:
        # ">_": the prompt of the terminal program it runs.
        points = [(3.6 * unit, 4.2 * unit), (7.6 * unit, 7.9 * unit), (3.6 * unit, 11.6 * unit)]
        draw.line(points, fill=WHITE, width=width, joint="curve")
        for x, y in (points[0], points[2]):
            r = width / 2
            draw.ellipse((x - r, y - r, x + r, y + r), fill=WHITE)
        draw.rounded_rectangle(box(8.6, 10.6, 12.6, 12.6), radius=round(0.9 * unit), fill=WHITE)
    if state is IconState.BUSY:
        # A badge in the top-right corner, ringed so it stands off the tile.
        draw.ellipse(box(8.6, 0.0, 16.0, 7.4), fill=WHITE)
        draw.ellipse(box(9.9, 1.3, 14.7, 6.1), fill=BLUE)
    return image.resize((size, size), Image.Resampling.LANCZOS)


def draw_app_icon(size: int) -> Image.Image:
    """The application icon (installers, window lists): the idle tray icon."""
    return draw_icon(IconState.IDLE, size)
