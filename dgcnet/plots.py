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


# One line of a panel: its points, colour, width in pixels, and whether each point gets a dot
# (else only the last one does).
Line = tuple[Sequence[tuple[float, float]], tuple[int, int, int], int, bool]


def line_panel(draw: ImageDraw.ImageDraw, box: tuple[int, int, int, int], lines: Sequence[Line],
               *, title: str, x_range: tuple[float, float], x_label: str, font: ImageFont.ImageFont,
               y_label: str | None = None, image: Image.Image | None = None) -> None:
    """A line chart with a frame, grid, tick labels on both axes and a title, inside ``box``
    (left, top, right, bottom) of the image: the axes' labels take its left and bottom margins.
    ``y_label`` (written upwards beside the axis) needs ``image``, the image being drawn on."""
    left, top, right, bottom = box
    text_h = draw.textbbox((0, 0), "0", font=font)[3]
    label_w = text_h + 8 if y_label else 0
    plot = (left + 70 + label_w, top + text_h + 10, right - 15, bottom - 2 * text_h - 16)
    px0, py0, px1, py1 = plot
    draw.text((px0, top), title, fill=_INK, font=font)

    values = [y for points, *_ in lines for _, y in points]
    xs = nice_ticks(*x_range)
    ys = nice_ticks(min(values), max(values))
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
    if y_label and image is not None:
        width = int(draw.textlength(y_label, font=font)) + 4
        label = Image.new("RGB", (width, text_h + 4), _BACKGROUND)
        ImageDraw.Draw(label).text((2, 0), y_label, fill=_INK, font=font)
        label = label.rotate(90, expand=True)
        image.paste(label, (left + 4, int((py0 + py1 - label.height) / 2)))

    for points, colour, line_width, dots in lines:
        pixels = [to_pixel(x, y) for x, y in points]
        if len(pixels) > 1:
            draw.line(pixels, fill=colour, width=line_width, joint="curve")
        for px, py in pixels if dots else pixels[-1:]:
            r = line_width + 1
            draw.ellipse([px - r, py - r, px + r, py + r], fill=colour)


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
        line_panel(draw, box, [(points, colour, 2, len(points) <= 50)], title=name, x_range=(0.0, last), x_label="iteration",
                   font=font)
    return image


# Run curves: what each metrics.jsonl key is, for panel titles and y-axis labels (with units).
KEY_LABELS = {
    "loss": ("training loss", "loss (main + 0.4 aux)"),
    "loss_main": ("main loss (OHEM cross-entropy)", "cross-entropy (nats)"),
    "loss_aux": ("auxiliary loss (cross-entropy)", "cross-entropy (nats)"),
    "lr": ("learning rate", "learning rate"),
    "val_miou": ("validation mIoU", "mIoU (0..1)"),
    "best_miou": ("best validation mIoU", "mIoU (0..1)"),
    "seconds_per_iter": ("time per iteration", "seconds"),
    "data_wait": ("share of the step spent waiting for data", "share (0..1)"),
    "eta_seconds": ("estimated time left", "seconds"),
    "peak_memory_gb": ("peak memory", "GB"),
    "grad_norm": ("gradient norm", "L2 norm"),
    "skipped_steps": ("skipped steps (non-finite)", "steps"),
}
# Keys whose values are not noisy, or too few to average: drawn as they are.
NOT_SMOOTHED = {"lr", "val_miou", "best_miou", "eta_seconds", "skipped_steps", "peak_memory_gb"}
# One colour per run (Tableau 10).
RUN_COLOURS = ((31, 119, 180), (255, 127, 14), (44, 160, 44), (214, 39, 40), (148, 103, 189),
               (140, 86, 75), (227, 119, 194), (127, 127, 127), (188, 189, 34), (23, 190, 207))


def smooth(values: Sequence[float], weight: float) -> list[float]:
    """Exponential moving average with TensorBoard's start-up correction (weight 0: the values)."""
    out, average = [], 0.0
    for i, value in enumerate(values, 1):
        average = weight * average + (1 - weight) * value
        out.append(average / (1 - weight ** i) if weight > 0 else value)
    return out


def _lighter(colour: tuple[int, int, int], amount: float = 0.6) -> tuple[int, int, int]:
    return tuple(int(c + (255 - c) * amount) for c in colour)  # type: ignore[return-value]


def run_curves(runs: Mapping[str, Sequence[Mapping[str, object]]], keys: Sequence[str], *,
               smoothing: float = 0.6, title: str | None = None, width: int = 900,
               panel_height: int = 280) -> Image.Image:
    """The curves of several runs' metrics.jsonl records: one panel per key (each run in its own
    colour; noisy series raw thin and light, smoothed thick), a legend by run name, against the iteration.
    Keys no run has are an error."""
    if not runs:
        raise ValueError("no runs to plot")
    colours = {name: RUN_COLOURS[i % len(RUN_COLOURS)] for i, name in enumerate(runs)}
    panels = []
    for key in keys:
        lines: list[Line] = []
        for name, records in runs.items():
            points = [(float(r["iteration"]), float(r[key])) for r in records  # type: ignore[arg-type]
                      if isinstance(r.get(key), (int, float)) and not isinstance(r.get(key), bool)
                      and math.isfinite(float(r[key]))]  # type: ignore[arg-type]
            if not points:
                continue
            colour = colours[name]
            if smoothing > 0 and key not in NOT_SMOOTHED and len(points) >= 10:
                lines.append((points, _lighter(colour), 1, False))
                smoothed = smooth([y for _, y in points], smoothing)
                lines.append(([(x, y) for (x, _), y in zip(points, smoothed)], colour, 2, False))
            else:
                lines.append((points, colour, 2, len(points) <= 50))
        if not lines:
            raise ValueError(f"no run has values of {key!r}")
        panels.append((key, lines))
    font, big = _font(14), _font(18)
    text_h = 18
    legend_rows = 1 + (len(runs) - 1) // 3
    head = 10 + (30 if title else 0) + legend_rows * (text_h + 6) + 24
    image = Image.new("RGB", (width, head + panel_height * len(panels)), _BACKGROUND)
    draw = ImageDraw.Draw(image)
    y = 10
    if title:
        draw.text((12, y), title, fill=_INK, font=big)
        y += 30
    for i, name in enumerate(runs):  # the legend: a swatch and the run name, three a row
        x, row_y = 12 + (i % 3) * (width - 24) // 3, y + (i // 3) * (text_h + 6)
        draw.line([(x, row_y + text_h / 2), (x + 28, row_y + text_h / 2)], fill=colours[name], width=3)
        draw.text((x + 36, row_y), name, fill=_INK, font=font)
    y += legend_rows * (text_h + 6)
    note = (f"noisy series: thick = smoothed (exponential moving average, weight {smoothing:g}), thin and light "
            f"= raw values" if smoothing > 0 else "raw values")
    draw.text((12, y), note, fill=(110, 110, 110), font=font)
    last = max(x for _, lines in panels for points, *_ in lines for x, _ in points)
    for row, (key, lines) in enumerate(panels):
        name, unit = KEY_LABELS.get(key, (key, key))
        box = (0, head + row * panel_height, width, head + (row + 1) * panel_height)
        line_panel(draw, box, lines, title=name, x_range=(0.0, last), x_label="iteration", font=font,
                   y_label=unit, image=image)
    return image
