"""Training curves as PNG images, drawn with Pillow alone (no plotting library needed)."""
from __future__ import annotations

import math
from typing import Mapping, Sequence

from PIL import Image, ImageDraw, ImageFont

# What a training curve shows, in order: metrics.jsonl key, panel title, line colour.
CURVE_SERIES = (
    ("loss", "training loss", (31, 119, 180)),
    ("lr", "learning rate", (255, 127, 14)),
    ("val_miou", "validation mIoU", (44, 160, 44)),
)

_BACKGROUND, _INK, _GRID = (255, 255, 255), (40, 40, 40), (225, 225, 225)


def nice_ticks(low: float, high: float, count: int = 5) -> list[float]:
    """About ``count`` round tick values (steps of 1, 2 or 5 x 10^k) covering [low, high]."""
    if not (math.isfinite(low) and math.isfinite(high)):
        raise ValueError(f"tick range must be finite, got {low}..{high}")
    if high < low:
        low, high = high, low
    if high == low:  # a flat line: give it a visible band around the value
        pad = abs(low) * 0.1 or 1.0
        low, high = low - pad, high + pad
    raw = (high - low) / max(1, count - 1)
    magnitude = 10 ** math.floor(math.log10(raw))
    step = next(m * magnitude for m in (1, 2, 5, 10) if m * magnitude >= raw)
    first, last = math.floor(low / step), math.ceil(high / step)
    return [i * step for i in range(first, last + 1)]


def _label(value: float) -> str:
    if value == 0:
        return "0"
    if abs(value) < 1e-3 or abs(value) >= 1e5:
        return f"{value:.0e}"
    return f"{value:.4g}"


def _font(size: int) -> ImageFont.ImageFont | ImageFont.FreeTypeFont:
    try:
        return ImageFont.load_default(size=size)
    except TypeError:  # Pillow without FreeType: a fixed bitmap font
        return ImageFont.load_default()


def line_panel(draw: ImageDraw.ImageDraw, box: tuple[int, int, int, int], points: Sequence[tuple[float, float]],
               *, title: str, colour: tuple[int, int, int], x_range: tuple[float, float], x_label: str,
               font: ImageFont.ImageFont) -> None:
    """One line chart with a frame, grid, tick labels on both axes and a title, inside ``box``
    (left, top, right, bottom) of the image: the axes' labels take its left and bottom margins."""
    left, top, right, bottom = box
    text_h = draw.textbbox((0, 0), "0", font=font)[3]
    plot = (left + 70, top + text_h + 10, right - 15, bottom - 2 * text_h - 16)
    px0, py0, px1, py1 = plot
    draw.text((px0, top), title, fill=_INK, font=font)

    xs = nice_ticks(*x_range)
    ys = nice_ticks(min(y for _, y in points), max(y for _, y in points))
    x_lo, x_hi, y_lo, y_hi = xs[0], xs[-1], ys[0], ys[-1]

    def to_pixel(x: float, y: float) -> tuple[float, float]:
        return (px0 + (x - x_lo) / (x_hi - x_lo) * (px1 - px0),
                py1 - (y - y_lo) / (y_hi - y_lo) * (py1 - py0))

    for y in ys:
        _, py = to_pixel(x_lo, y)
        draw.line([(px0, py), (px1, py)], fill=_GRID)
        text = _label(y)
        width = draw.textlength(text, font=font)
        draw.text((px0 - 6 - width, py - text_h / 2), text, fill=_INK, font=font)
    for x in xs:
        px, _ = to_pixel(x, y_lo)
        draw.line([(px, py0), (px, py1)], fill=_GRID)
        draw.line([(px, py1), (px, py1 + 4)], fill=_INK)
        text = _label(x)
        draw.text((px - draw.textlength(text, font=font) / 2, py1 + 6), text, fill=_INK, font=font)
    draw.rectangle(plot, outline=_INK)
    draw.text(((px0 + px1 - draw.textlength(x_label, font=font)) / 2, py1 + text_h + 10), x_label,
              fill=_INK, font=font)

    pixels = [to_pixel(x, y) for x, y in points]
    if len(pixels) > 1:
        draw.line(pixels, fill=colour, width=2, joint="curve")
    for px, py in pixels if len(pixels) <= 50 else pixels[-1:]:
        draw.ellipse([px - 3, py - 3, px + 3, py + 3], fill=colour)


def training_curve(records: Sequence[Mapping[str, object]], *, width: int = 800, panel_height: int = 260,
                   title: str | None = None) -> Image.Image:
    """A PNG-ready image of the metrics.jsonl records of a run: one panel per series present
    (training loss, learning rate, validation mIoU), all against the iteration."""
    series = []
    for key, name, colour in CURVE_SERIES:
        points = [(float(r["iteration"]), float(r[key])) for r in records
                  if isinstance(r.get(key), (int, float)) and math.isfinite(float(r[key]))]
        if points:
            series.append((points, name, colour))
    if not series:
        raise ValueError("no loss, lr or val_miou values among the records")
    font = _font(14)
    head = 36 if title else 8
    image = Image.new("RGB", (width, head + panel_height * len(series)), _BACKGROUND)
    draw = ImageDraw.Draw(image)
    if title:
        draw.text((12, 10), title, fill=_INK, font=_font(18))
    last = max(x for points, _, _ in series for x, _ in points)
    for row, (points, name, colour) in enumerate(series):
        box = (0, head + row * panel_height, width, head + (row + 1) * panel_height)
        line_panel(draw, box, points, title=name, colour=colour, x_range=(0.0, last), x_label="iteration",
                   font=font)
    return image
