"""A synthetic Cityscapes: street scenes drawn with numpy, in the exact Cityscapes layout.

Every scene holds all 19 evaluated classes: sky on top, buildings and trees behind, a far row of
walls, fences, poles carrying a traffic light and a sign, a train, a bus and a truck, a sidewalk
with a patch of terrain, the road, and a near row with a car, a motorcyclist (rider on a
motorcycle), a bicycle and a pedestrian, above the ego vehicle (void). Objects get textures
(windows, bricks, slats, leaves, tiles, wheels), per-object colour jitter, per-image lighting and
colour cast, and pixel noise, so colour alone does not tell the classes apart. Labels are real
Cityscapes label ids (void ids included). Each image depends only on (seed, split, index), so the
same seed gives byte-identical files.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
from PIL import Image
from tqdm import tqdm

from dgcnet.data.lists import write_lists
from dgcnet.errors import DgcnetError

# Cityscapes label ids used by the scenes.
EGO_VEHICLE, RECTIFICATION_BORDER = 1, 2
ROAD, SIDEWALK, BUILDING, WALL, FENCE, POLE = 7, 8, 11, 12, 13, 17
TRAFFIC_LIGHT, TRAFFIC_SIGN, VEGETATION, TERRAIN, SKY = 19, 20, 21, 22, 23
PERSON, RIDER, CAR, TRUCK, BUS, TRAIN, MOTORCYCLE, BICYCLE = 24, 25, 26, 27, 28, 31, 32, 33

SPLITS = ("train", "val", "test")
# Real Cityscapes city names per split; images are spread over them in turn.
CITIES = {
    "train": ("aachen", "bochum", "bremen"),
    "val": ("frankfurt", "lindau", "munster"),
    "test": ("berlin", "bielefeld", "bonn"),
}
_SPLIT_CODE = {split: code for code, split in enumerate(SPLITS)}


@dataclass(frozen=True)
class SynthSample:
    image: Path  # relative to the data dir
    label: Path


def sample_name(split: str, index: int) -> tuple[str, str]:
    """(city, '<city>_<seq>_<frame>') of the index-th image of a split, as Cityscapes names them."""
    cities = CITIES[split]
    city = cities[index % len(cities)]
    return city, f"{city}_{index // len(cities):06d}_000019"


def sample_paths(split: str, index: int) -> SynthSample:
    city, name = sample_name(split, index)
    return SynthSample(Path("leftImg8bit", split, city, f"{name}_leftImg8bit.png"),
                       Path("gtFine", split, city, f"{name}_gtFine_labelIds.png"))


class _Canvas:
    """An image (float RGB) and its label map, painted back to front."""

    def __init__(self, height: int, width: int, rng: np.random.Generator) -> None:
        self.h, self.w, self.rng = height, width, rng
        self.image = np.zeros((height, width, 3), dtype=np.float32)
        self.label = np.zeros((height, width), dtype=np.uint8)

    def box(self, y0: float, y1: float, x0: float, x1: float) -> tuple[slice, slice] | None:
        """Pixel slices of a box given in fractions of the height and width (clipped)."""
        top, bottom = max(int(round(y0 * self.h)), 0), min(int(round(y1 * self.h)), self.h)
        left, right = max(int(round(x0 * self.w)), 0), min(int(round(x1 * self.w)), self.w)
        if bottom <= top or right <= left:
            return None
        return slice(top, bottom), slice(left, right)

    def paint(self, y0: float, y1: float, x0: float, x1: float, label_id: int,
              colour: Callable[[np.ndarray, np.ndarray], np.ndarray],
              shape: Callable[[np.ndarray, np.ndarray], np.ndarray] | None = None) -> None:
        """Paint a box; ``shape(v, u)`` selects pixels and ``colour(v, u)`` gives their RGB, both
        from the box-relative coordinates v (down) and u (right) in [0, 1)."""
        box = self.box(y0, y1, x0, x1)
        if box is None:
            return
        rows, cols = box
        hh, ww = rows.stop - rows.start, cols.stop - cols.start
        v = ((np.arange(hh, dtype=np.float32) + 0.5) / hh)[:, None]
        u = ((np.arange(ww, dtype=np.float32) + 0.5) / ww)[None, :]
        rgb = np.broadcast_to(colour(v, u), (hh, ww, 3))
        if shape is None:
            self.image[rows, cols] = rgb
            self.label[rows, cols] = label_id
            return
        mask = np.broadcast_to(shape(v, u), (hh, ww))
        self.image[rows, cols][mask] = rgb[mask]
        self.label[rows, cols][mask] = label_id

    def noise(self, hh: int, ww: int, cell: int) -> np.ndarray:
        """Blobby noise in [-1, 1]: random values on a coarse grid, repeated to cell-sized blocks."""
        coarse = self.rng.uniform(-1, 1, size=(hh // cell + 2, ww // cell + 2)).astype(np.float32)
        return np.repeat(np.repeat(coarse, cell, axis=0), cell, axis=1)


def _jitter(rng: np.random.Generator, rgb: tuple[int, int, int], amount: float = 18.0) -> np.ndarray:
    return np.clip(np.asarray(rgb, dtype=np.float32) + rng.uniform(-amount, amount, size=3), 0, 255)


def _flat(rgb: np.ndarray) -> Callable[[np.ndarray, np.ndarray], np.ndarray]:
    return lambda v, u: rgb


def _disk(cv: float, cu: float, rv: float, ru: float) -> Callable[[np.ndarray, np.ndarray], np.ndarray]:
    return lambda v, u: ((v - cv) / rv) ** 2 + ((u - cu) / ru) ** 2 <= 1.0


def _draw_sky(c: _Canvas) -> None:
    top, bottom = _jitter(c.rng, (95, 150, 215), 15), _jitter(c.rng, (185, 210, 235), 12)
    c.paint(0, 1, 0, 1, SKY, lambda v, u: top + (bottom - top) * np.minimum(v / 0.6, 1.0)[..., None])
    for _ in range(c.rng.integers(1, 4)):  # clouds
        cy, cx = c.rng.uniform(0.03, 0.15), c.rng.uniform(0, 1)
        white = _jitter(c.rng, (235, 238, 242), 8)
        c.paint(cy - 0.05, cy + 0.05, cx - 0.1, cx + 0.1, SKY, _flat(white), _disk(0.5, 0.5, 0.5, 0.5))


def _draw_building(c: _Canvas, x0: float, x1: float, top: float, ground: float) -> None:
    wall = _jitter(c.rng, (155, 110, 82), 15)
    glass = wall * c.rng.uniform(0.4, 0.5)
    rows, cols = c.rng.uniform(9, 14), c.rng.uniform(3, 6)

    def colour(v: np.ndarray, u: np.ndarray) -> np.ndarray:
        window = ((v * rows) % 1 > 0.35) & ((u * cols) % 1 > 0.3) & ((u * cols) % 1 < 0.75)
        return np.where(window[..., None], glass, wall)

    c.paint(top, ground, x0, x1, BUILDING, colour)


def _draw_vegetation(c: _Canvas, x0: float, x1: float, top: float, ground: float) -> None:
    leaf = _jitter(c.rng, (60, 115, 40), 12)
    box = c.box(top, ground, x0, x1)
    if box is None:
        return
    hh, ww = box[0].stop - box[0].start, box[1].stop - box[1].start
    cell = max(2, c.h // 48)
    texture = 0.6 * c.noise(hh, ww, cell)[:hh, :ww] + 0.4 * c.noise(hh, ww, 2 * cell)[:hh, :ww]
    phase, bumps = c.rng.uniform(0, 6.3), c.rng.uniform(2, 4)
    # Crowns: a wavy top edge.
    c.paint(top, ground, x0, x1, VEGETATION, lambda v, u: leaf + 35.0 * texture[..., None],
            lambda v, u: v >= 0.12 * (1 + np.sin(u * bumps * 6.283 + phase)))


def _draw_wall(c: _Canvas, x0: float, x1: float, top: float, bottom: float) -> None:
    stone, mortar = _jitter(c.rng, (120, 125, 175), 12), _jitter(c.rng, (85, 88, 125), 8)
    courses = c.rng.uniform(4, 6)
    c.paint(top, bottom, x0, x1, WALL,
            lambda v, u: np.where(((v * courses) % 1 < 0.18)[..., None], mortar, stone))


def _draw_fence(c: _Canvas, x0: float, x1: float, top: float, bottom: float) -> None:
    wood, dark = _jitter(c.rng, (175, 135, 55), 12), _jitter(c.rng, (100, 75, 30), 8)
    slats = (x1 - x0) * c.w / max(c.rng.uniform(3, 5) * c.h / 128, 2.0)
    c.paint(top, bottom, x0, x1, FENCE,
            lambda v, u: np.where(((u * slats) % 1 < 0.3)[..., None], dark, wood))


def _draw_pole(c: _Canvas, x0: float, x1: float, top: float, bottom: float, carries: str) -> None:
    metal = _jitter(c.rng, (175, 178, 185), 12)
    width = x1 - x0
    px0, px1 = x0 + 0.3 * width, x1 - 0.3 * width
    c.paint(top, bottom, px0, px1, POLE,
            lambda v, u: metal * (0.75 + 0.35 * (1 - np.abs(2 * u - 1)))[..., None])
    if carries == "light":
        body = _jitter(c.rng, (95, 62, 20), 10)
        lamps = np.array([(230, 40, 30), (240, 180, 30), (40, 210, 80)], dtype=np.float32)

        def light(v: np.ndarray, u: np.ndarray) -> np.ndarray:
            lamp = np.clip((v * 3).astype(int), 0, 2)
            lit = ((v * 3) % 1 - 0.5) ** 2 + ((u - 0.5) * 1.2) ** 2 < 0.09
            return np.where(lit[..., None], lamps[lamp], body)

        c.paint(top, top + 0.22, x0, x1, TRAFFIC_LIGHT, light)
    else:
        plate, rim = _jitter(c.rng, (235, 215, 20), 12), _jitter(c.rng, (150, 135, 15), 8)

        def sign(v: np.ndarray, u: np.ndarray) -> np.ndarray:
            border = (np.minimum(v, 1 - v) < 0.12) | (np.minimum(u, 1 - u) < 0.12)
            return np.where(border[..., None], rim, plate)

        c.paint(top, top + 0.16, x0, x1, TRAFFIC_SIGN, sign)


def _wheels(c: _Canvas, y0: float, y1: float, x0: float, x1: float, label_id: int, spots: tuple[float, ...]
            ) -> None:
    tyre, hub = _jitter(c.rng, (25, 25, 25), 5), _jitter(c.rng, (150, 150, 150), 10)
    radius = (y1 - y0) / 2
    ru = radius * c.h / c.w / (x1 - x0)
    for spot in spots:
        def colour(v: np.ndarray, u: np.ndarray, spot: float = spot) -> np.ndarray:
            near = ((v - 0.5) / 0.2) ** 2 + ((u - spot) / (0.4 * ru)) ** 2 <= 1.0
            return np.where(near[..., None], hub, tyre)

        c.paint(y0, y1, x0, x1, label_id, colour, _disk(0.5, spot, 0.5, ru))


def _draw_vehicle(c: _Canvas, kind: str, x0: float, x1: float, bottom: float) -> None:
    rng = c.rng
    wheel = 0.06 if kind in ("car",) else 0.08
    if kind == "train":
        top = bottom - rng.uniform(0.28, 0.32)
        body, stripe = _jitter(rng, (150, 205, 215), 10), _jitter(rng, (30, 60, 140), 12)
        glass = body * 0.5
        windows = rng.uniform(5, 8)

        def colour(v: np.ndarray, u: np.ndarray) -> np.ndarray:
            out = np.where(((v > 0.62) & (v < 0.74))[..., None], stripe, body)
            win = (v > 0.2) & (v < 0.5) & ((u * windows) % 1 > 0.25)
            return np.where(win[..., None], glass, out)

        c.paint(top, bottom, x0, x1, TRAIN, colour, lambda v, u: (v > 0.06) | ((u > 0.04) & (u < 0.96)))
        return
    if kind == "bus":
        top = bottom - rng.uniform(0.27, 0.31)
        body = _jitter(rng, (210, 55, 45), 15)
        glass = body * 0.5
        windows = rng.uniform(4, 6)

        def colour(v: np.ndarray, u: np.ndarray) -> np.ndarray:
            win = (v > 0.15) & (v < 0.45) & ((u * windows) % 1 > 0.2)
            return np.where(win[..., None], glass, body)

        c.paint(top, bottom - wheel / 2, x0, x1, BUS, colour)
        _wheels(c, bottom - wheel, bottom, x0, x1, BUS, (0.2, 0.8))
        return
    if kind == "truck":
        top = bottom - rng.uniform(0.25, 0.29)
        box, cab = _jitter(rng, (225, 225, 215), 10), _jitter(rng, (195, 195, 185), 10)
        glass = box * 0.4
        cab_left = bool(rng.integers(2))

        def colour(v: np.ndarray, u: np.ndarray) -> np.ndarray:
            in_cab = (u < 0.3) if cab_left else (u > 0.7)
            win = in_cab & (v > 0.35) & (v < 0.55)
            return np.where(win[..., None], glass, np.where(in_cab[..., None], cab, box))

        def shape(v: np.ndarray, u: np.ndarray) -> np.ndarray:
            in_cab = (u < 0.3) if cab_left else (u > 0.7)
            return ~in_cab | (v > 0.3)

        c.paint(top, bottom - wheel / 2, x0, x1, TRUCK, colour, shape)
        _wheels(c, bottom - wheel, bottom, x0, x1, TRUCK, (0.15, 0.45, 0.85))
        return
    # car
    top = bottom - rng.uniform(0.17, 0.2)
    body = _jitter(rng, (35, 70, 190), 15)
    glass = body * 0.5

    def car_colour(v: np.ndarray, u: np.ndarray) -> np.ndarray:
        win = (v > 0.08) & (v < 0.38) & (u > 0.25) & (u < 0.75) & (np.abs(u - 0.5) > 0.02)
        return np.where(win[..., None], glass, body)

    c.paint(top, bottom - wheel / 2, x0, x1, CAR, car_colour,
            lambda v, u: (v > 0.42) | ((u > 0.18 + 0.2 * (0.42 - v)) & (u < 0.82 - 0.2 * (0.42 - v))))
    _wheels(c, bottom - wheel, bottom, x0, x1, CAR, (0.2, 0.8))


def _draw_person(c: _Canvas, label_id: int, x0: float, x1: float, top: float, bottom: float) -> None:
    rng = c.rng
    skin = _jitter(rng, (215, 175, 145), 15)
    legs = _jitter(rng, (40, 40, 55), 8)
    if label_id == RIDER:
        head = _jitter(rng, (240, 240, 240), 10)  # helmet
        shirt = _jitter(rng, (240, 110, 20), 12)
    else:
        head = skin
        shirt = _jitter(rng, (140, 55, 160), 15)

    def colour(v: np.ndarray, u: np.ndarray) -> np.ndarray:
        out = np.where((v < 0.2)[..., None], head, np.where((v < 0.6)[..., None], shirt, legs))
        return out

    def shape(v: np.ndarray, u: np.ndarray) -> np.ndarray:
        head_disk = ((v - 0.1) / 0.1) ** 2 + ((u - 0.5) / 0.3) ** 2 <= 1.0
        body = (v >= 0.18) & (v < 0.6) & (np.abs(u - 0.5) < 0.5)
        leg = (v >= 0.6) & (np.abs(np.abs(u - 0.5) - 0.22) < 0.16)
        return head_disk | body | leg

    c.paint(top, bottom, x0, x1, label_id, colour, shape)


def _draw_two_wheeler(c: _Canvas, label_id: int, x0: float, x1: float, bottom: float) -> float:
    """A motorcycle or a bicycle; returns the top of its body (where a rider sits)."""
    rng = c.rng
    height = rng.uniform(0.16, 0.18)
    top = bottom - height
    if label_id == MOTORCYCLE:
        body, chrome = _jitter(rng, (130, 25, 70), 10), _jitter(rng, (205, 205, 210), 10)
        c.paint(top, bottom - 0.4 * height, x0, x1, label_id,
                lambda v, u: np.where((np.abs(u - 0.5) < 0.12)[..., None], chrome, body),
                lambda v, u: (u > 0.15) & (u < 0.85))
    else:
        frame = _jitter(rng, (20, 150, 160), 15)
        c.paint(top, bottom - 0.4 * height, x0, x1, label_id, _flat(frame),
                lambda v, u: (np.abs(v - u * 0.9) < 0.3) | (np.abs(v - (1 - u) * 0.9) < 0.3) | (v < 0.3))
    _wheels(c, bottom - 0.55 * height, bottom, x0, x1, label_id, (0.22, 0.78))
    return top


def synth_scene(rng: np.random.Generator, height: int, width: int) -> tuple[np.ndarray, np.ndarray]:
    """One street scene: (HxWx3 uint8 RGB image, HxW uint8 Cityscapes label ids)."""
    c = _Canvas(height, width, rng)
    _draw_sky(c)
    ground = rng.uniform(0.54, 0.57)
    road_top = rng.uniform(0.72, 0.75)
    ego_top = rng.uniform(0.93, 0.95)

    # Background: alternating buildings and trees across the whole width.
    x, tree = 0.0, bool(rng.integers(2))
    while x < 1.0:
        x1 = min(x + rng.uniform(0.14, 0.26), 1.0)
        if 1.0 - x1 < 0.06:
            x1 = 1.0
        if tree:
            _draw_vegetation(c, x, x1, rng.uniform(0.12, 0.3), ground)
        else:
            _draw_building(c, x, x1, rng.uniform(0.06, 0.25), ground)
        x, tree = x1, not tree

    # Ground: sidewalk with tiles, a patch of terrain, road with lane marks.
    slab, joint = _jitter(rng, (195, 150, 175), 12), _jitter(rng, (150, 115, 135), 8)
    tiles = rng.uniform(14, 20)
    c.paint(ground, road_top, 0, 1, SIDEWALK,
            lambda v, u: np.where((((u * tiles) % 1 < 0.1) | ((v * 3) % 1 < 0.12))[..., None], joint, slab))
    asphalt, marking = _jitter(rng, (85, 80, 95), 10), _jitter(rng, (235, 235, 225), 8)
    dashes = rng.uniform(4, 7)
    c.paint(road_top, 1, 0, 1, ROAD,
            lambda v, u: np.where(((np.abs(v - 0.45) < 0.04) & ((u * dashes) % 1 < 0.5))[..., None],
                                  marking, asphalt))

    # Far row, standing on the sidewalk, in random order: walls, fences, poles, train, bus, truck.
    far = {"terrain": 0.16, "wall": 0.12, "fence": 0.12, "light": 0.08, "sign": 0.08,
           "train": 0.22, "bus": 0.15, "truck": 0.13}
    for kind, x0, x1 in _row(rng, far, gap=0.0):
        base = ground + rng.uniform(0.04, 0.06)
        if kind == "terrain":
            grass = _jitter(rng, (165, 205, 90), 12)
            streaks = rng.uniform(8, 14)
            c.paint(ground, road_top, x0, x1, TERRAIN,
                    lambda v, u: grass * (0.85 + 0.15 * np.sin(v * streaks * 6.283))[..., None])
        elif kind == "wall":
            _draw_wall(c, x0, x1, ground - rng.uniform(0.15, 0.18), base)
        elif kind == "fence":
            _draw_fence(c, x0, x1, ground - rng.uniform(0.13, 0.16), base)
        elif kind in ("light", "sign"):
            _draw_pole(c, x0, x1, rng.uniform(0.1, 0.18), base + 0.04, kind)
        else:
            _draw_vehicle(c, kind, x0, x1, base + 0.04)

    # Near row, on the road: car, motorcyclist, bicycle, pedestrian.
    near = {"car": 0.16, "motorcycle": 0.13, "bicycle": 0.12, "person": 0.08}
    for kind, x0, x1 in _row(rng, near, gap=0.4):
        bottom = rng.uniform(0.88, 0.92)
        if kind == "car":
            _draw_vehicle(c, "car", x0, x1, bottom)
        elif kind == "person":
            _draw_person(c, PERSON, x0, x1, bottom - rng.uniform(0.36, 0.4), bottom)
        else:
            label_id = MOTORCYCLE if kind == "motorcycle" else BICYCLE
            seat = _draw_two_wheeler(c, label_id, x0, x1, bottom)
            if label_id == MOTORCYCLE:
                mid = (x0 + x1) / 2
                _draw_person(c, RIDER, mid - 0.035, mid + 0.035, seat - rng.uniform(0.2, 0.23), seat + 0.02)

    # Ego vehicle (void) along the bottom, with a curved bonnet.
    bonnet = _jitter(rng, (30, 30, 36), 6)
    c.paint(ego_top - 0.02, 1, 0, 1, EGO_VEHICLE, _flat(bonnet),
            lambda v, u: v > 0.35 * (1 - (2 * u - 1) ** 2))

    # Lighting, colour cast and sensor noise.
    gain = rng.uniform(0.75, 1.2)
    cast = rng.uniform(-12, 12, size=3).astype(np.float32)
    slope = rng.uniform(-0.15, 0.15)
    shade = 1.0 + slope * (np.linspace(-1, 1, width, dtype=np.float32))[None, :, None]
    image = c.image * gain * shade + cast + rng.normal(0, 6, size=c.image.shape).astype(np.float32)
    return np.clip(image + 0.5, 0, 255).astype(np.uint8), c.label


def _row(rng: np.random.Generator, widths: dict[str, float], gap: float) -> list[tuple[str, float, float]]:
    """Lay the items out left to right in random order with random spacing; widths jitter +-10%."""
    kinds = list(widths)
    rng.shuffle(kinds)
    sizes = np.array([widths[k] for k in kinds]) * rng.uniform(0.9, 1.1, size=len(kinds))
    sizes *= min(1.0, 0.98 / sizes.sum())
    spare = 1.0 - sizes.sum()
    spacing = rng.dirichlet(np.ones(len(kinds) + 1)) * spare
    out, x = [], 0.0
    for kind, size, space in zip(kinds, sizes, spacing):
        x += space
        out.append((kind, float(x), float(x + size)))
        x += size
    return out


def write_synth(out_dir: str | Path, *, train: int = 200, val: int = 20, test: int = 0,
                size: tuple[int, int] = (128, 256), seed: int = 0, progress: bool = False) -> None:
    """Write a synthetic Cityscapes tree (leftImg8bit/, gtFine/) and its data lists into out_dir."""
    out_dir = Path(out_dir)
    for existing in ("leftImg8bit", "gtFine"):
        if (out_dir / existing).exists():
            raise DgcnetError(f"{out_dir / existing}: already exists; choose an empty output folder")
    height, width = size
    if height < 32 or width < 32:
        raise DgcnetError(f"image size {height}x{width} is too small; use at least 32x32")
    jobs = [(split, i) for split, count in (("train", train), ("val", val), ("test", test)) for i in range(count)]
    if not jobs:
        raise DgcnetError("nothing to write: --train, --val and --test are all 0")
    for split, index in tqdm(jobs, desc="synth", unit="img", disable=not progress):
        rng = np.random.default_rng([seed, _SPLIT_CODE[split], index])
        image, label = synth_scene(rng, height, width)
        paths = sample_paths(split, index)
        for rel, array in ((paths.image, image), (paths.label, label)):
            (out_dir / rel).parent.mkdir(parents=True, exist_ok=True)
            Image.fromarray(array).save(out_dir / rel, compress_level=1)
    write_lists(out_dir, out_dir)
