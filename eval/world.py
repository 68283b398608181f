"""The synthetic world: procedurally generated top-down scenes in the real iSAID and RRSIS-D formats.

``iter_scenes(seed, n, size, kind)`` renders scenes in memory; ``generate_world(out, seed, n, size)``
writes ``out/isaid/`` (raw devkit form: RGB images + RGB colour labels with the exact iSAID palette) and
``out/rrsisd/`` (``refs(unc).p``, ``instances.json`` with ``categories_id``, x1y1x2y2 boxes and RLE masks,
``images/rrsisd/JPEGImages/NNNNN.jpg``). Scene ``i`` depends only on ``(seed, i)``; the same seed gives
byte-identical files. Referring expressions are built from a structured spec and kept only when the
:func:`resolve` check says they identify exactly one instance.
"""

from __future__ import annotations

import pickle
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from dglrsis.errors import DglrsisError
from dglrsis.eval import world_draw as wd
from dglrsis.eval.isaid import ISAID_NAMES, ISAID_PALETTE, decode_label
from dglrsis.eval.world_draw import LANDCOVER  # noqa: F401  (land-cover names of Scene.landcover)

# iSAID class order and label colours: one source of truth, the dataset reader.
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
_RRSISD_AS = {
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
for _r, _i in _RRSISD_AS.items():
    _STYLE.setdefault(_r, _STYLE[_i])
SCENE_CLASSES = {"isaid": ISAID_CLASSES[1:], "rrsisd": RRSISD_CATEGORIES}
GENERATOR_VERSION = 2  # bump whenever the rendered pixels or the written files change


@dataclass
class Instance:
    id: int  # 1-based within the scene
    category: str  # class name (ISAID_CLASSES or RRSISD_CATEGORIES spelling)
    mask: np.ndarray  # H×W bool, visible pixels
    bbox: tuple  # XYXY pixels of the mask, x2/y2 exclusive (max + 1)
    colour: str  # named colour (world_draw.COLOURS)
    area: int


@dataclass
class Scene:
    image: np.ndarray  # H×W×3 uint8
    class_map: np.ndarray  # H×W uint8 in the kind's index (iSAID: 0 = background; RRSIS-D: id + 1)
    landcover: np.ndarray  # H×W uint8 index into world_draw.LANDCOVER
    instances: list[Instance] = field(default_factory=list)
    kind: str = "isaid"


# --------------------------------------------------------------------------------------------- scenes
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


# --------------------------------------------------------------------------------------------- expressions
def _centroid(inst: Instance) -> tuple[float, float]:
    ys, xs = np.nonzero(inst.mask)
    return float(xs.mean()), float(ys.mean())


def resolve(spec: dict, instances: list[Instance], size: int) -> list[int]:
    """Instance ids matching a structured expression spec (``class`` + optional ``position``, ``size``,
    ``colour``, ``relation``); margins keep the meaning unambiguous."""
    cands = [i for i in instances if i.category == spec["class"]]
    if spec.get("colour"):
        cands = [i for i in cands if i.colour == spec["colour"]]
    pos = spec.get("position")
    if pos and cands:
        cands = _by_position(cands, pos, size)
    sz = spec.get("size")
    if sz and cands:
        areas = sorted((i.area for i in cands), reverse=(sz == "largest"))
        best = areas[0]
        second = areas[1] if len(areas) > 1 else None
        ok = second is None or (best >= 1.3 * second if sz == "largest" else best * 1.3 <= second)
        if len(cands) > 1:
            cands = [i for i in cands if i.area == best] if ok else []
        if len([1 for i in instances if i.category == spec["class"]]) < 2:
            cands = []  # "the largest X" needs at least two Xs
    rel = spec.get("relation")
    if rel and cands:
        cands = _by_relation(cands, rel, instances, size)
    return [i.id for i in cands]


def _by_position(cands, pos: str, size: int):
    cx = {i.id: _centroid(i) for i in cands}
    if pos in ("left", "right", "top", "bottom"):
        axis = 0 if pos in ("left", "right") else 1
        sign = 1 if pos in ("left", "top") else -1
        vals = sorted(cands, key=lambda i: sign * cx[i.id][axis])
        v0 = cx[vals[0].id][axis]
        half = (v0 < size * 0.5) if sign == 1 else (v0 > size * 0.5)
        if not half:
            return []
        if len(vals) > 1 and abs(cx[vals[1].id][axis] - v0) < 0.15 * size:
            return []
        return [vals[0]]
    if pos == "middle":
        return [
            i for i in cands if max(abs(cx[i.id][0] - size / 2), abs(cx[i.id][1] - size / 2)) < 0.15 * size
        ]
    corners = {"upper left": (0, 0), "upper right": (1, 0), "lower left": (0, 1), "lower right": (1, 1)}
    if pos in corners:
        qx, qy = corners[pos]

        def inside(v: float, high: int) -> bool:  # in the outer 40 % on the requested side
            return v > size * 0.6 if high else v < size * 0.4

        return [i for i in cands if inside(cx[i.id][0], qx) and inside(cx[i.id][1], qy)]
    return []


def _by_relation(cands, rel: dict, instances, size: int):
    anchors = [i for i in instances if i.category == rel["anchor"]]
    if len(anchors) != 1:
        return []
    ax, ay = _centroid(anchors[0])
    out = []
    dist = {i.id: np.hypot(*np.subtract(_centroid(i), (ax, ay))) for i in cands}
    for i in cands:
        _, y = _centroid(i)
        t = rel["type"]
        ok = {"near": True, "above": y < ay - 0.05 * size, "below": y > ay + 0.05 * size}[t]
        if ok and dist[i.id] < 0.35 * size:
            out.append(i)
    if len(out) > 1:  # the nearest one, when clearly nearer
        out.sort(key=lambda i: dist[i.id])
        if dist[out[1].id] - dist[out[0].id] < 0.1 * size:
            return []
        out = out[:1]
    return out


_POS_TEXT = {
    "left": ["on the left", "at the left"],
    "right": ["on the right", "at the right"],
    "top": ["on the top", "at the top"],
    "bottom": ["at the bottom", "on the bottom"],
    "middle": ["in the middle"],
    "upper left": ["in the upper left corner"],
    "upper right": ["in the upper right corner"],
    "lower left": ["in the lower left corner"],
    "lower right": ["in the lower right corner"],
}
_REL_TEXT = {"near": ["next to the {}", "near the {}"], "above": ["above the {}"], "below": ["below the {}"]}


def spec_text(spec: dict, rng) -> tuple[str, list[str]]:
    """Render a spec as an RRSIS-D style sentence and list its modifier kinds."""
    name = READABLE[spec["class"]]
    words, kinds = ["the"], []
    if spec.get("size"):
        words.append(spec["size"])
        kinds.append("size")
    if spec.get("colour"):
        words.append(spec["colour"])
        kinds.append("colour")
    words.append(name)
    if spec.get("position"):
        opts = _POS_TEXT[spec["position"]]
        words.append(opts[int(rng.integers(len(opts)))])
        kinds.append("position")
    if spec.get("relation"):
        opts = _REL_TEXT[spec["relation"]["type"]]
        words.append(opts[int(rng.integers(len(opts)))].format(READABLE[spec["relation"]["anchor"]]))
        kinds.append("relation")
    if not kinds:
        kinds = ["class"]
    text = " ".join(words)
    return (text[0].upper() + text[1:] if rng.random() < 0.5 else text), kinds


def expressions_for(
    scene: Scene, rng, per_target: int = 3
) -> list[tuple[Instance, list[tuple[str, list, dict]]]]:
    """For up to 3 target instances, 1–``per_target`` expressions each as ``(text, modifier kinds, spec)``;
    every spec resolves (:func:`resolve`) to exactly its target, and a target's expressions use
    different modifier combinations. Targets without any unique expression are skipped."""
    size = scene.image.shape[0]
    out = []
    order = rng.permutation(len(scene.instances))
    for idx in order[:3]:
        target = scene.instances[int(idx)]
        others = [i for i in scene.instances if i.category != target.category]
        specs = [{"class": target.category}]
        for pos in _POS_TEXT:
            specs.append({"class": target.category, "position": pos})
        specs += [{"class": target.category, "size": s} for s in ("largest", "smallest")]
        specs.append({"class": target.category, "colour": target.colour})
        specs.append({"class": target.category, "colour": target.colour, "position": "left"})
        for o in others:
            for t in _REL_TEXT:
                specs.append({"class": target.category, "relation": {"type": t, "anchor": o.category}})
        good = [s for s in specs if resolve(s, scene.instances, size) == [target.id]]
        rng.shuffle(good)
        # prefer variety: one per modifier kind first
        seen, picked = set(), []
        for s in good:
            key = tuple(sorted(k for k in s if k != "class")) or ("class",)
            if key not in seen:
                seen.add(key)
                picked.append(s)
        if picked:
            keep = picked[: int(rng.integers(1, per_target + 1))]
            out.append((target, [spec_text(s, rng) + (s,) for s in keep]))
    return out


# --------------------------------------------------------------------------------------------- writers
def _write_isaid(scene: Scene, root: Path, split: str, name: str) -> None:
    from PIL import Image

    from dglrsis.io import atomic_path

    pal = np.array(ISAID_PALETTE, np.uint8)
    for sub, arr in (
        (Path(split) / "images" / f"{name}.png", scene.image),
        (Path(split) / "Semantic_masks" / "images" / f"{name}_instance_color_RGB.png", pal[scene.class_map]),
    ):
        with atomic_path(root / sub) as tmp:
            Image.fromarray(arr).save(tmp, format="PNG")


def _rle(mask: np.ndarray) -> dict:
    from pycocotools import mask as mask_utils

    r = mask_utils.encode(np.asfortranarray(mask.astype(np.uint8)))
    return {"size": [int(v) for v in r["size"]], "counts": r["counts"].decode("utf-8")}


def _split_of(i: int, n: int, fractions) -> str:
    names = [s for s, _ in fractions]
    cum = np.cumsum([f for _, f in fractions])
    pos = (i + 0.5) / n
    return names[int(np.searchsorted(cum, pos))] if pos < cum[-1] else names[-1]


def generate_world(out, seed: int = 0, n: int = 20, size: int = 512, progress: bool = True) -> dict:
    """Write ``n`` iSAID-format and ``n`` RRSIS-D-format scenes of ``size``×``size`` pixels under ``out``.

    Layout: ``isaid/{train,val}/images/P0000.png`` + ``isaid/{split}/Semantic_masks/images/
    P0000_instance_color_RGB.png`` (75 % train / 25 % val by index); ``rrsisd/refs(unc).p`` (pickle protocol
    2), ``rrsisd/instances.json`` (bbox = inclusive x1,y1,x2,y2 of the mask, ``categories_id``, one RLE per
    annotation), ``rrsisd/images/rrsisd/JPEGImages/NNNNN.jpg`` (60/10/30 % train/val/test by index);
    ``world.json``. Returns the summary written to ``world.json``.
    """
    from PIL import Image
    from tqdm import tqdm

    from dglrsis.io import atomic_path, write_bytes, write_json

    if n < 1 or size < 64:
        raise DglrsisError(f"a world needs n >= 1 scenes of size >= 64 pixels, got n={n}, size={size}")
    out = Path(out)
    isaid = out / "isaid"
    for i, scene in enumerate(
        tqdm(iter_scenes(seed, n, size, "isaid"), total=n, desc="isaid", disable=not progress)
    ):
        _write_isaid(scene, isaid, _split_of(i, n, [("train", 0.75), ("val", 0.25)]), f"P{i:04d}")
    rr = out / "rrsisd"
    images, anns, refs = [], [], []
    rng_text = np.random.default_rng(np.random.SeedSequence([int(seed), 999_999]))
    sent_id = 0
    for i, scene in enumerate(
        tqdm(iter_scenes(seed, n, size, "rrsisd"), total=n, desc="rrsisd", disable=not progress)
    ):
        fname = f"{i:05d}.jpg"
        with atomic_path(rr / "images" / "rrsisd" / "JPEGImages" / fname) as tmp:
            Image.fromarray(scene.image).save(tmp, format="JPEG", quality=95)
        images.append({"id": i, "file_name": fname, "width": size, "height": size})
        ann_ids = {}
        for inst in scene.instances:
            ann_ids[inst.id] = len(anns)
            x0, y0, x1, y1 = inst.bbox
            anns.append(
                {
                    "id": len(anns),
                    "image_id": i,
                    "categories_id": RRSISD_CATEGORIES.index(inst.category),
                    "bbox": [x0, y0, x1 - 1, y1 - 1],
                    "area": int(inst.area),
                    "iscrowd": 0,
                    "segmentation": [_rle(inst.mask)],
                }
            )
        split = _split_of(i, n, [("train", 0.6), ("val", 0.1), ("test", 0.3)])
        for target, sents in expressions_for(scene, rng_text):
            sentences = []
            for text, kinds, _spec in sents:
                toks = text.lower().split()
                sentences.append(
                    {
                        "tokens": toks,
                        "raw": text,
                        "sent_id": sent_id,
                        "sent": " ".join(toks),
                        "modifiers": kinds,
                    }
                )
                sent_id += 1
            refs.append(
                {
                    "image_id": i,
                    "split": split,
                    "sentences": sentences,
                    "file_name": fname,
                    "category_id": RRSISD_CATEGORIES.index(target.category),
                    "ann_id": ann_ids[target.id],
                    "sent_ids": [s["sent_id"] for s in sentences],
                    "ref_id": len(refs),
                }
            )
    write_bytes(rr / "refs(unc).p", pickle.dumps(refs, protocol=2))
    cats = [{"id": j, "name": name} for j, name in enumerate(RRSISD_CATEGORIES)]
    write_json(rr / "instances.json", {"images": images, "annotations": anns, "categories": cats})
    from importlib.metadata import version

    versions = {"generator": GENERATOR_VERSION, **{p: version(p) for p in ("numpy", "pillow", "pycocotools")}}
    summary = {
        "generator_version": GENERATOR_VERSION,
        "versions": versions,
        "seed": seed,
        "n": n,
        "size": size,
        "isaid_classes": ISAID_CLASSES,
        "rrsisd_categories": RRSISD_CATEGORIES,
        "refs": len(refs),
        "sentences": sent_id,
        "annotations": len(anns),
    }
    write_json(out / "world.json", summary)
    return summary


def convert_isaid_to_index(root, out) -> None:
    """Write the mmseg-converted form of a raw iSAID folder: ``img_dir/{split}/*.png`` holding **BMP
    bytes** (as the real converter does) and single-channel index labels in ``ann_dir/{split}/``. Our
    scenes are small, so no patching is done."""
    from PIL import Image

    from dglrsis.io import atomic_path

    root, out = Path(root), Path(out)
    for split_dir in sorted(p for p in root.iterdir() if p.is_dir()):
        for img_path in sorted((split_dir / "images").glob("*.png")):
            with (
                Image.open(img_path) as im,
                atomic_path(out / "img_dir" / split_dir.name / img_path.name) as tmp,
            ):
                im.convert("RGB").save(tmp, format="BMP")
            lab_path = split_dir / "Semantic_masks" / "images" / f"{img_path.stem}_instance_color_RGB.png"
            idx = decode_label(lab_path)  # exact palette match, other colours → 255
            with atomic_path(out / "ann_dir" / split_dir.name / lab_path.name) as tmp:
                Image.fromarray(idx).save(tmp, format="PNG")
