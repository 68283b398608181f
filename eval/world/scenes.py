"""Scenes of the synthetic world: land cover plus top-down objects of the iSAID and RRSIS-D classes.

``render_scene(rng, size, kind)`` draws one scene (:class:`Scene` with per-instance masks);
``iter_scenes(seed, n, size, kind)`` renders scenes in memory. Scene ``i`` depends only on
``(seed, i)``.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from dglrsis.eval.isaid import ISAID_NAMES

from . import draw as wd

# iSAID class order: one source of truth, the dataset reader.
ISAID_CLASSES = ISAID_NAMES
RRSISD_CATEGORIES = [
    "Expressway-Service-area",
    "Expressway-toll-station",
    "airplane",
    "airport",
    "baseballfield",
    "basketballcourt",
    "bridge",
    "chimney",
    "dam",
    "golffield",
    "groundtrackfield",
    "harbor",
    "overpass",
    "ship",
    "stadium",
    "storagetank",
    "tenniscourt",
    "trainstation",
    "vehicle",
    "windmill",
]
READABLE = {
    "ship": "ship",
    "storage_tank": "storage tank",
    "baseball_diamond": "baseball diamond",
    "tennis_court": "tennis court",
    "basketball_court": "basketball court",
    "Ground_Track_Field": "ground track field",
    "Bridge": "bridge",
    "Large_Vehicle": "large vehicle",
    "Small_Vehicle": "small vehicle",
    "Helicopter": "helicopter",
    "Swimming_pool": "swimming pool",
    "Roundabout": "roundabout",
    "Soccer_ball_field": "soccer ball field",
    "plane": "plane",
    "Harbor": "harbor",
    "Expressway-Service-area": "expressway service area",
    "Expressway-toll-station": "expressway toll station",
    "airplane": "airplane",
    "airport": "airport",
    "baseballfield": "baseball field",
    "basketballcourt": "basketball court",
    "bridge": "bridge",
    "chimney": "chimney",
    "dam": "dam",
    "golffield": "golf field",
    "groundtrackfield": "ground track field",
    "harbor": "harbor",
    "overpass": "overpass",
    "stadium": "stadium",
    "storagetank": "storage tank",
    "tenniscourt": "tennis court",
    "trainstation": "train station",
    "vehicle": "vehicle",
    "windmill": "windmill",
}
# class → (drawer, named colours it may take, needs water)
_STYLE = {
    "ship": (wd.draw_ship, ["white", "grey", "red", "blue"], True),
    "storage_tank": (wd.draw_tank, ["white", "grey"], False),
    "baseball_diamond": (wd.draw_diamond, ["brown"], False),
    "tennis_court": (wd.draw_tennis, ["green", "blue", "red"], False),
    "basketball_court": (wd.draw_basketball, ["orange", "brown"], False),
    "Ground_Track_Field": (wd.draw_track, ["red"], False),
    "Bridge": (wd.draw_bridge, ["grey", "white"], True),
    "Large_Vehicle": (wd.draw_large_vehicle, ["white", "yellow", "blue", "red"], False),
    "Small_Vehicle": (wd.draw_small_vehicle, ["white", "red", "blue", "black", "yellow"], False),
    "Helicopter": (wd.draw_helicopter, ["green", "grey"], False),
    "Swimming_pool": (wd.draw_pool, ["blue"], False),
    "Roundabout": (wd.draw_roundabout, ["grey"], False),
    "Soccer_ball_field": (wd.draw_soccer, ["green"], False),
    "plane": (wd.draw_plane, ["white", "grey"], False),
    "Harbor": (wd.draw_harbor, ["grey", "white"], True),
}
# RRSIS-D classes drawn exactly like an iSAID class (world-clip gives them one shared concept)
RRSISD_AS_ISAID = {
    "airplane": "plane",
    "baseballfield": "baseball_diamond",
    "basketballcourt": "basketball_court",
    "bridge": "Bridge",
    "groundtrackfield": "Ground_Track_Field",
    "harbor": "Harbor",
    "ship": "ship",
    "storagetank": "storage_tank",
    "tenniscourt": "tennis_court",
    "vehicle": "Small_Vehicle",
}
_STYLE.update(
    {
        "airport": (wd.draw_airport, ["grey"], False),
        "chimney": (wd.draw_chimney, ["brown"], False),
        "dam": (wd.draw_dam, ["white"], True),
        "golffield": (wd.draw_golf, ["green"], False),
        "stadium": (wd.draw_stadium, ["white"], False),
        "overpass": (wd.draw_overpass, ["grey"], False),
        "trainstation": (wd.draw_trainstation, ["brown"], False),
        "windmill": (wd.draw_windmill, ["white"], False),
        "Expressway-Service-area": (wd.draw_service_area, ["grey"], False),
        "Expressway-toll-station": (wd.draw_toll_station, ["grey"], False),
    }
)
for _r, _i in RRSISD_AS_ISAID.items():
    _STYLE.setdefault(_r, _STYLE[_i])
SCENE_CLASSES = {"isaid": ISAID_CLASSES[1:], "rrsisd": RRSISD_CATEGORIES}
GENERATOR_VERSION = 3  # bump whenever the rendered pixels or the written files change


@dataclass
class Instance:
    id: int  # 1-based within the scene
    category: str  # class name (ISAID_CLASSES or RRSISD_CATEGORIES spelling)
    mask: np.ndarray  # H×W bool, visible pixels
    bbox: tuple  # XYXY pixels of the mask, x2/y2 exclusive (max + 1)
    colour: str  # named colour (draw.COLOURS)
    area: int


@dataclass
class Scene:
    image: np.ndarray  # H×W×3 uint8
    class_map: np.ndarray  # H×W uint8 in the kind's index (iSAID: 0 = background; RRSIS-D: id + 1)
    landcover: np.ndarray  # H×W uint8 index into draw.LANDCOVER
    instances: list[Instance] = field(default_factory=list)
    kind: str = "isaid"


def render_scene(rng: np.random.Generator, size: int = 512, kind: str = "isaid") -> Scene:
    """One scene: land cover, then 2–8 objects of 1–4 classes (several instances per class allowed)."""
    classes = SCENE_CLASSES[kind]
    k = size / 512
    n_cls = int(rng.integers(1, 5))
    chosen = [classes[i] for i in rng.choice(len(classes), n_cls, replace=False)]
    objects = []
    for cls in chosen:
        lo, hi = (1, 2) if cls in wd.BIG else (2, 7) if cls in wd.VEHICLES else (1, 4)  # instances per class
        objects += [cls] * int(rng.integers(lo, hi))
    while len(objects) < 2:  # 2–8 objects per scene
        objects.append(classes[int(rng.integers(len(classes)))])
    objects = sorted(objects[:8], key=lambda o: o not in wd.BIG)  # large grounds first, small objects on top
    water = any(_STYLE[o][2] for o in objects) or rng.random() < 0.25
    c = wd.Canvas(size)
    layout = wd.background(c, rng, size, water, road=any(o in wd.VEHICLES for o in objects))
    img = np.asarray(c.img).copy()
    img = wd.textured(img, rng, 7.0)
    c.img.paste(wd.Image.fromarray(img))
    lc = np.asarray(c.lc).copy()
    colours = {}
    for i, cls in enumerate(objects, start=1):
        drawer, names, _ = _STYLE[cls]
        colour = names[int(rng.integers(len(names)))]
        taken = np.asarray(c.ids)
        for _ in range(10):  # do not centre an object on one already drawn (they may still touch/overlap)
            x, y, angle = wd.place(rng, size, lc, cls, layout, 30 * k, _STYLE[cls][2])
            if taken[int(y), int(x)] == 0:
                break
        drawer(c, rng, x, y, angle, k, wd._jitter(wd.COLOURS[colour], rng, 8), i)
        colours[i] = colour
    ids = np.asarray(c.ids).astype(np.int32)
    image = wd.textured(np.asarray(c.img), rng, 2.5)
    index = (
        {n: j for j, n in enumerate(ISAID_CLASSES)}
        if kind == "isaid"
        else {n: j + 1 for j, n in enumerate(RRSISD_CATEGORIES)}
    )
    class_map = np.zeros((size, size), np.uint8)
    instances = []
    for i, cls in enumerate(objects, start=1):
        m = ids == i
        if m.sum() < 4:  # fully covered by later objects
            continue
        class_map[m] = index[cls]
        ys, xs = np.nonzero(m)
        instances.append(
            Instance(
                len(instances) + 1,
                cls,
                m,
                (int(xs.min()), int(ys.min()), int(xs.max()) + 1, int(ys.max()) + 1),
                colours[i],
                int(m.sum()),
            )
        )
    return Scene(image, class_map, lc, instances, kind)


def scene_rng(seed: int, index: int) -> np.random.Generator:
    """The random stream of scene ``index`` of world ``seed`` (independent of how many are generated)."""
    return np.random.default_rng(np.random.SeedSequence([int(seed), int(index)]))


def iter_scenes(seed: int = 0, n: int = 20, size: int = 512, kind: str = "isaid", start: int = 0):
    """Yield ``n`` scenes of ``kind`` ("isaid" | "rrsisd") rendered in memory."""
    for i in range(start, start + n):
        yield render_scene(scene_rng(seed * 2 + (kind == "rrsisd"), i), size, kind)
