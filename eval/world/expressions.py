"""Referring expressions of the synthetic world.

Expressions are built from a structured spec (class + optional position, size, colour, relation) and kept
only when :func:`resolve` says they identify exactly one instance of the scene.
"""

from __future__ import annotations

import numpy as np

from .scenes import READABLE, Instance, Scene


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


# ------------------------------------------------------------------------ free-text kinds (issue 20)
# Drawn from their own random stream after the expressions above, so adding them leaves every earlier
# expression of a world unchanged. Kinds: "landcover" (a relation to the land cover under or around the
# target), "plural" (every instance of a class, the target being their union) and "image position"
# ("… of the image").
_LC_TEXT = {  # land cover (draw.LANDCOVER) → (inside phrases, next-to phrases)
    "road": (["on the road"], ["next to the road", "beside the road"]),
    "water": (["in the water"], ["next to the water", "along the shore"]),
    "vegetation": (["among the trees"], ["next to the trees"]),
}
_IMG_POS = {
    "left": ["on the left of the image", "on the left side of the picture"],
    "right": ["on the right of the image", "on the right side of the picture"],
    "top": ["at the top of the image", "in the upper part of the picture"],
    "bottom": ["at the bottom of the image", "in the lower part of the scene"],
    "upper left": ["in the upper left corner of the image"],
    "lower right": ["in the lower right corner of the picture"],
}


def _plural(name: str) -> str:
    return name[:-1] + "ies" if name.endswith("y") and name[-2:] != "ay" else name + "s"


def _landcover_stats(inst: Instance, lc: np.ndarray, names) -> dict:
    """Per land cover: (share of the instance's pixels on it, distance in pixels to its nearest pixel)."""
    from scipy.ndimage import distance_transform_edt

    out = {}
    for idx, name in enumerate(names):
        region = lc == idx
        if not region.any():
            continue
        share = float(region[inst.mask].mean())
        dist = float(distance_transform_edt(~region)[inst.mask].min())
        out[name] = (share, dist)
    return out


def extra_expressions(scene: Scene, rng, per_scene: int = 3) -> list[tuple[list[Instance], str, list, dict]]:
    """Up to ``per_scene`` expressions of the free-text kinds, each ``(targets, text, kinds, spec)``;
    a land-cover relation or image position identifies exactly one instance (``resolve``-style margins),
    a plural names every instance of a class present at least twice."""
    from .draw import LANDCOVER

    size = scene.image.shape[0]
    out = []
    by_class: dict[str, list[Instance]] = {}
    for inst in scene.instances:
        by_class.setdefault(inst.category, []).append(inst)
    multi = [c for c, v in by_class.items() if len(v) >= 2]
    if multi:
        cls = multi[int(rng.integers(len(multi)))]
        name = _plural(READABLE[cls])
        n = len(by_class[cls])
        opts = [f"all the {name}", f"the {name}", f"all {name}"]
        if n <= 3:
            opts.append(f"the {['', '', 'two', 'three'][n]} {name}")
        out.append(
            (by_class[cls], opts[int(rng.integers(len(opts)))], ["plural"], {"class": cls, "all": True})
        )
    lc_specs = []
    for inst in scene.instances:
        same = [o for o in by_class[inst.category] if o.id != inst.id]
        stats = _landcover_stats(inst, scene.landcover, LANDCOVER)
        others = [_landcover_stats(o, scene.landcover, LANDCOVER) for o in same]
        for cover, (inside, beside) in _LC_TEXT.items():
            if cover not in stats:
                continue
            share, dist = stats[cover]
            if share >= 0.6 and all(o.get(cover, (0, 1e9))[0] < 0.2 for o in others):
                lc_specs.append((inst, inside, cover, "on"))
            elif (
                share < 0.2
                and dist <= 0.04 * size
                and all(o.get(cover, (0, 1e9))[1] > 0.15 * size for o in others)
            ):
                lc_specs.append((inst, beside, cover, "near"))
    if lc_specs:
        inst, phrases, cover, rel = lc_specs[int(rng.integers(len(lc_specs)))]
        text = f"the {READABLE[inst.category]} {phrases[int(rng.integers(len(phrases)))]}"
        out.append(([inst], text, ["landcover"], {"class": inst.category, "landcover": cover, "type": rel}))
    pos_specs = [
        (inst, pos)
        for inst in scene.instances
        for pos in _IMG_POS
        if resolve({"class": inst.category, "position": pos}, scene.instances, size) == [inst.id]
    ]
    if pos_specs:
        inst, pos = pos_specs[int(rng.integers(len(pos_specs)))]
        phrase = _IMG_POS[pos][int(rng.integers(len(_IMG_POS[pos])))]
        out.append(
            (
                [inst],
                f"the {READABLE[inst.category]} {phrase}",
                ["image position"],
                {"class": inst.category, "position": pos},
            )
        )
    out = [(t, x[0].upper() + x[1:] if rng.random() < 0.5 else x, k, s) for t, x, k, s in out]
    return out[:per_scene]
