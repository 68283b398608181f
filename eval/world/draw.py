"""Drawing primitives of the synthetic world: land cover and top-down objects.

``background`` paints the land cover and returns where roads and water lie; ``place`` puts an object where
it belongs (vehicles on roads, bridges over water, ...). Every object is drawn with PIL polygons/ellipses
simultaneously into the RGB image and into an instance canvas, so the instance masks are exactly the
visible pixels. Sizes are given for a 512-pixel scene and
scaled with the scene size.
"""

from __future__ import annotations

import math

import numpy as np
from PIL import Image, ImageDraw

COLOURS = {
    "white": (232, 232, 228),
    "grey": (138, 138, 142),
    "red": (185, 42, 38),
    "blue": (42, 72, 185),
    "black": (32, 32, 36),
    "yellow": (222, 196, 40),
    "green": (62, 140, 70),
    "orange": (214, 120, 40),
    "brown": (140, 96, 58),
}
LANDCOVER = ["bare soil", "vegetation", "water", "road", "built-up"]
LANDCOVER_RGB = {
    "bare soil": (164, 140, 104),
    "vegetation": (78, 112, 56),
    "water": (38, 74, 102),
    "road": (96, 96, 98),
    "built-up": (150, 144, 138),
}


def _jitter(rgb, rng, amount=10):
    return tuple(int(np.clip(c + rng.integers(-amount, amount + 1), 0, 255)) for c in rgb)


def rotate(points, cx, cy, angle):
    """Rotate local (x, y) offsets by ``angle`` (radians) and move them to (cx, cy)."""
    c, s = math.cos(angle), math.sin(angle)
    return [(cx + x * c - y * s, cy + x * s + y * c) for x, y in points]


def rect(w, h):
    return [(-w / 2, -h / 2), (w / 2, -h / 2), (w / 2, h / 2), (-w / 2, h / 2)]


def rounded(w, h, n=10):
    """A stadium (rectangle with semicircular ends) outline, long side along x."""
    r = h / 2
    a = [(w / 2 - r + r * math.cos(t), r * math.sin(t)) for t in np.linspace(-math.pi / 2, math.pi / 2, n)]
    b = [
        (-w / 2 + r + r * math.cos(t), r * math.sin(t)) for t in np.linspace(math.pi / 2, 3 * math.pi / 2, n)
    ]
    return a + b


def ellipse(rx, ry, n=24):
    return [(rx * math.cos(t), ry * math.sin(t)) for t in np.linspace(0, 2 * math.pi, n, endpoint=False)]


class Canvas:
    """RGB image + instance-id canvas drawn together."""

    def __init__(self, size: int):
        self.size = size
        self.img = Image.new("RGB", (size, size))
        self.ids = Image.new("I", (size, size), 0)
        self.lc = Image.new("L", (size, size), 0)
        self.d = ImageDraw.Draw(self.img)
        self.di = ImageDraw.Draw(self.ids)
        self.dl = ImageDraw.Draw(self.lc)

    def poly(self, pts, rgb, inst=None):
        self.d.polygon(pts, fill=rgb)
        if inst is not None:
            self.di.polygon(pts, fill=inst)

    def line(self, pts, rgb, width, inst=None):
        self.d.line(pts, fill=rgb, width=max(1, round(width)))
        if inst is not None:
            self.di.line(pts, fill=inst, width=max(1, round(width)))

    def landcover(self, pts, idx):
        self.d.polygon(pts, fill=LANDCOVER_RGB[LANDCOVER[idx]])
        self.dl.polygon(pts, fill=idx)


# --------------------------------------------------------------------------------------------- layout
def background(c: Canvas, rng, size: int, water: bool, road: bool = False) -> dict:
    """Paint land cover (a water band if ``water``, at least one road if ``road``) and return the layout
    objects are placed on: ``roads`` [(cx, cy, angle)] and ``water`` (side 0 left / 1 right / 2 top /
    3 bottom, band width in pixels) or None."""
    c.landcover([(0, 0), (size, 0), (size, size), (0, size)], 0)
    for _ in range(rng.integers(1, 4)):  # vegetation patches
        cx, cy, r = rng.uniform(0, size, 2).tolist() + [rng.uniform(0.1, 0.3) * size]
        c.landcover(rotate(ellipse(r, r * rng.uniform(0.5, 1)), cx, cy, rng.uniform(0, np.pi)), 1)
    if rng.random() < 0.5:  # built-up block
        cx, cy = rng.uniform(0, size, 2)
        c.landcover(rotate(rect(size * 0.35, size * 0.25), cx, cy, 0), 4)
    layout = {"roads": [], "water": None}
    for _ in range(rng.integers(int(road), 3)):  # roads
        y = rng.uniform(0.1, 0.9) * size
        a = rng.uniform(-0.3, 0.3) + (np.pi / 2 if rng.random() < 0.5 else 0)
        cx, cy = (y, size / 2) if a > 1 else (size / 2, y)
        c.landcover(rotate(rect(size * 2, size * 0.035), cx, cy, a), 3)
        layout["roads"].append((float(cx), float(cy), float(a)))
    if water:
        side = int(rng.integers(4))
        w = rng.uniform(0.3, 0.45) * size
        band = {
            0: [(0, 0), (w, 0), (w * 0.8, size), (0, size)],
            1: [(size, 0), (size - w, 0), (size - w * 0.8, size), (size, size)],
            2: [(0, 0), (size, 0), (size, w), (0, w * 0.8)],
            3: [(0, size), (size, size), (size, size - w), (0, size - w * 0.8)],
        }[side]
        c.landcover(band, 2)
        layout["water"] = (side, float(w))
    return layout


BIG = (
    "airport",
    "Ground_Track_Field",
    "groundtrackfield",
    "stadium",
    "trainstation",
    "golffield",
    "Soccer_ball_field",
    "dam",
    "overpass",
)
VEHICLES = ("Small_Vehicle", "Large_Vehicle", "vehicle")  # placed along roads, often several
_ACROSS_WATER = ("Bridge", "bridge", "dam")
_SHORE = ("Harbor", "harbor")
_AIRFIELD = ("plane", "airplane", "Helicopter")


def _water_point(rng, size: int, water: tuple, depth: float, margin: float):
    """A point ``depth`` (0 = outer image edge, 1 = shore) across the water band, random along it;
    returns (x, y, angle across the band)."""
    side, w = water
    along = rng.uniform(margin, size - margin)
    d = depth * w * (0.9 if along > size / 2 else 1.0)  # the band narrows to 0.8 w on its far end
    x, y = {0: (d, along), 1: (size - d, along), 2: (along, d), 3: (along, size - d)}[side]
    return float(x), float(y), (0.0 if side in (0, 1) else np.pi / 2)


def place(rng, size: int, lc: np.ndarray, cls: str, layout: dict, margin: float, on_water: bool):
    """Centre and angle of one object: vehicles along roads, bridges/dams across the water, harbors on the
    shore, ships on water, aircraft on built-up ground when present, the rest on land."""
    if cls in VEHICLES + ("Expressway-toll-station",) and layout["roads"] and rng.random() < 0.8:
        cx, cy, a = layout["roads"][int(rng.integers(len(layout["roads"])))]
        for _ in range(20):
            t = rng.uniform(-size / 2, size / 2)
            x, y = cx + t * np.cos(a), cy + t * np.sin(a)
            if margin <= x <= size - margin and margin <= y <= size - margin and lc[int(y), int(x)] == 3:
                return float(x), float(y), float(a + np.pi * rng.integers(2))
    if layout["water"] is not None:
        if cls in _ACROSS_WATER:
            x, y, a = _water_point(rng, size, layout["water"], 0.5, margin)
            for cx, cy, ra in layout["roads"] if cls != "dam" else []:  # carry a road over the water
                if (abs(np.cos(ra)) > 0.5) == (a == 0.0):
                    t = (x - cx) / np.cos(ra) if a == 0.0 else (y - cy) / np.sin(ra)
                    rx, ry = cx + t * np.cos(ra), cy + t * np.sin(ra)
                    if margin <= rx <= size - margin and margin <= ry <= size - margin:
                        return float(rx), float(ry), float(ra)
            return x, y, a + rng.uniform(-0.15, 0.15)
        if cls in _SHORE:
            x, y, _ = _water_point(rng, size, layout["water"], 0.9, margin)
            return x, y, (np.pi / 2, -np.pi / 2, np.pi, 0.0)[layout["water"][0]]  # piers point into the water
    wanted = 2 if on_water and (lc == 2).any() else None
    if cls in _AIRFIELD and (lc == 4).any() and rng.random() < 0.7:
        wanted = 4
    for _ in range(40):
        x, y = rng.uniform(margin, size - margin, 2)
        v = lc[int(y), int(x)]
        if (v == wanted) if wanted is not None else v != 2:
            return float(x), float(y), float(rng.uniform(0, np.pi))
    x, y = rng.uniform(margin, size - margin, 2)
    return float(x), float(y), float(rng.uniform(0, np.pi))


# --------------------------------------------------------------------------------------------- objects
# Each drawer: (canvas, rng, cx, cy, angle, k (scale), colour rgb, inst id) → draws one object.
def draw_ship(c, rng, x, y, a, k, rgb, i):
    L, W = rng.uniform(40, 80) * k, 0
    W = L * 0.24
    hull = [(-L / 2, -W / 2), (L / 4, -W / 2), (L / 2, 0), (L / 4, W / 2), (-L / 2, W / 2)]
    c.poly(rotate(hull, x, y, a), rgb, i)
    c.poly(rotate([(p[0] * 0.3 - L * 0.12, p[1] * 0.5) for p in rect(L, W)], x, y, a), _shade(rgb, 0.7), i)


def draw_tank(c, rng, x, y, a, k, rgb, i):
    r = rng.uniform(12, 24) * k
    c.poly(rotate(ellipse(r, r), x, y, 0), _shade(rgb, 0.75), i)
    c.poly(rotate(ellipse(r * 0.82, r * 0.82), x, y, 0), rgb, i)
    c.poly(rotate(ellipse(r * 0.15, r * 0.15), x, y, 0), _shade(rgb, 0.6), i)


def draw_diamond(c, rng, x, y, a, k, rgb, i):
    r = rng.uniform(45, 70) * k
    fan = [(0, 0)] + [(r * math.cos(t), r * math.sin(t)) for t in np.linspace(0, math.pi / 2, 14)]
    fan = [(px - r / 2, py - r / 2) for px, py in fan]
    c.poly(rotate(fan, x, y, a), (86, 140, 62), i)
    d = r * 0.42
    infield = [(-r / 2, -r / 2), (d - r / 2, -r / 2), (d - r / 2, d - r / 2), (-r / 2, d - r / 2)]
    c.poly(rotate(infield, x, y, a), (176, 122, 74), i)


def _court(c, x, y, a, w, h, surface, i, lines=(240, 240, 240), centre_circle=False):
    c.poly(rotate(rect(w, h), x, y, a), surface, i)
    c.line(rotate(rect(w * 0.86, h * 0.86) + [rect(w * 0.86, h * 0.86)[0]], x, y, a), lines, 1)
    c.line(rotate([(0, -h * 0.43), (0, h * 0.43)], x, y, a), lines, 1)
    if centre_circle:
        c.line(rotate(ellipse(h * 0.18, h * 0.18) + [ellipse(h * 0.18, h * 0.18)[0]], x, y, a), lines, 1)


def draw_tennis(c, rng, x, y, a, k, rgb, i):
    _court(c, x, y, a, rng.uniform(40, 52) * k, rng.uniform(20, 26) * k, rgb, i)


def draw_basketball(c, rng, x, y, a, k, rgb, i):
    _court(c, x, y, a, rng.uniform(42, 54) * k, rng.uniform(24, 30) * k, rgb, i, centre_circle=True)


def draw_track(c, rng, x, y, a, k, rgb, i):
    w, h = rng.uniform(120, 170) * k, 0
    h = w * 0.5
    c.poly(rotate(rounded(w, h), x, y, a), (176, 70, 56), i)
    c.poly(rotate(rounded(w * 0.8, h * 0.62), x, y, a), (74, 140, 70), i)


def draw_bridge(c, rng, x, y, a, k, rgb, i):
    L, W = rng.uniform(170, 260) * k, rng.uniform(12, 18) * k
    c.poly(rotate(rect(L, W), x, y, a), rgb, i)
    c.line(rotate([(-L / 2, 0), (L / 2, 0)], x, y, a), _shade(rgb, 1.25), 1)


def draw_large_vehicle(c, rng, x, y, a, k, rgb, i):
    L, W = rng.uniform(24, 34) * k, rng.uniform(8, 10) * k
    c.poly(rotate(rect(L, W), x, y, a), rgb, i)
    c.poly(rotate([(p[0] * 0.2 + L * 0.4, p[1]) for p in rect(L, W)], x, y, a), _shade(rgb, 0.6), i)


def draw_small_vehicle(c, rng, x, y, a, k, rgb, i):
    L, W = rng.uniform(10, 14) * k, rng.uniform(5, 6.5) * k
    c.poly(rotate(rect(L, W), x, y, a), rgb, i)
    c.poly(rotate([(p[0] * 0.3, p[1] * 0.8) for p in rect(L, W)], x, y, a), _shade(rgb, 0.55), i)


def draw_helicopter(c, rng, x, y, a, k, rgb, i):
    L = rng.uniform(22, 30) * k
    c.poly(rotate(ellipse(L * 0.3, L * 0.14), x, y, a), rgb, i)
    c.line(rotate([(0, 0), (L * 0.7, 0)], x, y, a), rgb, max(2, L * 0.06), i)
    c.line(rotate([(-L / 2, -L / 2), (L / 2, L / 2)], x, y, a), (20, 20, 20), max(1, L * 0.05), i)
    c.line(rotate([(-L / 2, L / 2), (L / 2, -L / 2)], x, y, a), (20, 20, 20), max(1, L * 0.05), i)


def draw_pool(c, rng, x, y, a, k, rgb, i):
    w, h = rng.uniform(18, 36) * k, rng.uniform(10, 18) * k
    c.poly(rotate(rect(w + 4 * k, h + 4 * k), x, y, a), (226, 222, 210), i)
    c.poly(rotate(rect(w, h), x, y, a), (70, 180, 230), i)


def draw_roundabout(c, rng, x, y, a, k, rgb, i):
    r = rng.uniform(30, 46) * k
    c.poly(rotate(ellipse(r, r, 32), x, y, 0), (104, 104, 108), i)
    c.poly(rotate(ellipse(r * 0.55, r * 0.55, 32), x, y, 0), (86, 150, 70), i)
    for t in range(4):
        ang = a + t * math.pi / 2
        c.line(
            [
                (x + r * math.cos(ang), y + r * math.sin(ang)),
                (x + r * 1.5 * math.cos(ang), y + r * 1.5 * math.sin(ang)),
            ],
            (104, 104, 108),
            r * 0.3,
            i,
        )


def draw_soccer(c, rng, x, y, a, k, rgb, i):
    w, h = rng.uniform(90, 120) * k, 0
    h = w * 0.62
    _court(c, x, y, a, w, h, (52, 150, 62), i, centre_circle=True)


def draw_plane(c, rng, x, y, a, k, rgb, i):
    L = rng.uniform(40, 70) * k
    c.poly(rotate(rect(L, L * 0.12), x, y, a), rgb, i)
    c.poly(
        rotate(
            [(L * 0.05, -L * 0.5), (L * 0.18, -L * 0.5), (L * 0.1, L * 0.5), (-L * 0.03, L * 0.5)], x, y, a
        ),
        rgb,
        i,
    )
    c.poly(
        rotate(
            [(-L * 0.42, -L * 0.2), (-L * 0.36, -L * 0.2), (-L * 0.36, L * 0.2), (-L * 0.42, L * 0.2)],
            x,
            y,
            a,
        ),
        rgb,
        i,
    )


def draw_harbor(c, rng, x, y, a, k, rgb, i):
    L, W = rng.uniform(90, 140) * k, rng.uniform(14, 20) * k
    c.poly(rotate(rect(L, W), x, y, a), rgb, i)
    for t in np.linspace(-L * 0.4, L * 0.4, 4):
        c.poly(
            rotate(
                [(t - W * 0.2, W / 2), (t + W * 0.2, W / 2), (t + W * 0.2, W * 2.2), (t - W * 0.2, W * 2.2)],
                x,
                y,
                a,
            ),
            rgb,
            i,
        )


def draw_airport(c, rng, x, y, a, k, rgb, i):
    L, W = rng.uniform(220, 300) * k, rng.uniform(26, 34) * k
    c.poly(rotate([(p[0], p[1] + W * 1.4) for p in rect(L * 0.5, W * 1.6)], x, y, a), (170, 170, 166), i)
    c.poly(rotate(rect(L, W), x, y, a), (72, 72, 76), i)
    for t in np.linspace(-L * 0.42, L * 0.42, 9):
        c.line(rotate([(t - W * 0.25, 0), (t + W * 0.25, 0)], x, y, a), (240, 240, 240), max(1, W * 0.08))


def draw_chimney(c, rng, x, y, a, k, rgb, i):
    r = rng.uniform(6, 9) * k
    c.line([(x, y), (x + r * 5, y + r * 2)], (40, 40, 44), r * 1.2, i)  # shadow
    c.poly(rotate(ellipse(r, r), x, y, 0), (120, 70, 60), i)
    c.poly(rotate(ellipse(r * 0.5, r * 0.5), x, y, 0), (20, 20, 20), i)


def draw_dam(c, rng, x, y, a, k, rgb, i):
    L, W = rng.uniform(140, 200) * k, rng.uniform(14, 20) * k
    arc = [(t, (t / L) ** 2 * W * 3) for t in np.linspace(-L / 2, L / 2, 16)]
    pts = arc + [(px, py + W) for px, py in reversed(arc)]
    c.poly(rotate(pts, x, y, a), (200, 196, 186), i)


def draw_golf(c, rng, x, y, a, k, rgb, i):
    r = rng.uniform(60, 90) * k
    blob = [
        (
            r * (1 + 0.25 * math.sin(3 * t + 1)) * math.cos(t),
            r * 0.6 * (1 + 0.2 * math.cos(2 * t)) * math.sin(t),
        )
        for t in np.linspace(0, 2 * math.pi, 30, endpoint=False)
    ]
    c.poly(rotate(blob, x, y, a), (128, 190, 84), i)
    for dx, dy in ((-0.4, 0.1), (0.3, -0.2), (0.5, 0.25)):
        c.poly(
            rotate([(px + dx * r, py + dy * r * 0.6) for px, py in ellipse(r * 0.1, r * 0.07)], x, y, a),
            (236, 226, 190),
            i,
        )


def draw_stadium(c, rng, x, y, a, k, rgb, i):
    rx = rng.uniform(70, 100) * k
    c.poly(rotate(ellipse(rx, rx * 0.75, 36), x, y, a), (206, 206, 212), i)
    c.poly(rotate(rect(rx * 1.0, rx * 0.66), x, y, a), (60, 150, 70), i)


def draw_overpass(c, rng, x, y, a, k, rgb, i):
    L, W = rng.uniform(140, 190) * k, rng.uniform(16, 22) * k
    c.poly(rotate(rect(L, W), x, y, a + math.pi / 2), (84, 84, 86))
    c.poly(rotate(rect(L, W * 1.5), x, y, a), (40, 40, 42), i)  # shadowed deck edge
    c.poly(rotate(rect(L, W), x, y, a), (176, 176, 170), i)


def draw_trainstation(c, rng, x, y, a, k, rgb, i):
    L, W = rng.uniform(140, 200) * k, rng.uniform(40, 56) * k
    c.poly(rotate(rect(L, W), x, y, a), (110, 86, 70), i)
    for t in np.linspace(-W * 0.4, W * 0.4, 6):
        c.line(rotate([(-L / 2, t), (L / 2, t)], x, y, a), (60, 50, 44), 1, i)
    c.poly(rotate([(p[0], p[1]) for p in rect(L * 0.7, W * 0.18)], x, y, a), (196, 84, 60), i)


def draw_windmill(c, rng, x, y, a, k, rgb, i):
    r = rng.uniform(16, 24) * k
    for t in range(3):
        ang = a + t * 2 * math.pi / 3
        c.line([(x, y), (x + r * math.cos(ang), y + r * math.sin(ang))], (244, 244, 244), max(2, r * 0.12), i)
    c.poly(rotate(ellipse(r * 0.18, r * 0.18), x, y, 0), (150, 150, 150), i)


def draw_service_area(c, rng, x, y, a, k, rgb, i):
    L, W = rng.uniform(100, 140) * k, rng.uniform(60, 80) * k
    c.poly(rotate(rect(L, W), x, y, a), (120, 120, 124), i)
    for t in np.linspace(-L * 0.4, L * 0.4, 10):
        c.line(rotate([(t, -W * 0.45), (t, -W * 0.1)], x, y, a), (236, 236, 236), 1, i)
    c.poly(
        rotate([(p[0] + L * 0.15, p[1] + W * 0.22) for p in rect(L * 0.4, W * 0.3)], x, y, a),
        (196, 150, 120),
        i,
    )


def draw_toll_station(c, rng, x, y, a, k, rgb, i):
    L, W = rng.uniform(80, 110) * k, rng.uniform(40, 56) * k
    c.poly(rotate(rect(L, W), x, y, a), (92, 92, 96), i)
    c.poly(rotate(rect(L * 0.18, W * 1.08), x, y, a), (226, 226, 220), i)
    for t in np.linspace(-W * 0.42, W * 0.42, 6):
        c.poly(rotate([(p[0], p[1] + t) for p in rect(L * 0.1, W * 0.06)], x, y, a), (230, 120, 40), i)


def _shade(rgb, f):
    return tuple(int(np.clip(v * f, 0, 255)) for v in rgb)


def textured(img: np.ndarray, rng, amount: float = 6.0) -> np.ndarray:
    """Add gentle low-frequency texture and pixel noise (H×W×3 uint8 → uint8)."""
    h, w = img.shape[:2]
    low = rng.normal(0, amount, (max(2, h // 32), max(2, w // 32), 1)).astype(np.float32)
    low = np.asarray(Image.fromarray(low[:, :, 0]).resize((w, h), Image.BILINEAR))[:, :, None]
    noise = rng.normal(0, amount * 0.5, (h, w, 1)).astype(np.float32)
    return np.clip(img.astype(np.float32) + low + noise, 0, 255).astype(np.uint8)
