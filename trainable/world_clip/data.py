"""Training data of world-clip: a pool rendered once from the synthetic world, and captioned samples.

Pool (:func:`build_pool`): object crops and land-cover crops as ``N×3×96×96`` uint8 tensors, and scenes as
``M×3×192×192`` uint8 with their objects' normalised XYXY boxes. Samples (:class:`PoolDataset`): item k is
drawn from ``np.random.default_rng([seed, k])`` only, so a run is reproducible and independent of batching.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F

from dglrsis.eval.world.scenes import RRSISD_AS_ISAID

CROP = 96  # crop / model input side (pixels)
SCENE = 192  # stored scene side (pixels); scene samples are windows of it resized to CROP
BACKGROUNDS = ("keep", "blur", "mean", "mask")
# RRSIS-D classes drawn exactly like an iSAID class share its concept (no false negatives across kinds).
ALIASES = RRSISD_AS_ISAID
LANDCOVER_WORDS = {
    "bare soil": ["bare soil", "bare land", "barren land"],
    "vegetation": ["vegetation", "trees", "grass", "forest"],
    "water": ["water", "river", "lake", "sea"],
    "road": ["road", "street", "highway"],
    "built-up": ["built-up area", "buildings", "residential area"],
}
FALLBACK_TEMPLATES = [
    "a satellite image of a {}.",
    "an aerial photo of a {}.",
    "a top-down view of a {}.",
    "a remote sensing image of a {}.",
    "an aerial image of the {}.",
    "a photo of a {}.",
]
SCENE_TEMPLATES = [
    "an aerial image with a {}.",
    "a satellite image containing a {}.",
    "a remote sensing image showing a {}.",
    "there is a {} in this aerial image.",
]
COLOURS = ["white", "grey", "red", "blue", "black", "yellow", "green", "orange", "brown"]


def concept_of(name: str) -> str:
    """Concept key of a world class or land cover (RRSIS-D aliases fold onto the iSAID class)."""
    return ALIASES.get(name, name)


@dataclass
class TextSource:
    """Class words, templates and knowledge used for captions (from ``dglrsis.vocab`` when available)."""

    names: dict  # world class / land-cover name → list of synonyms (canonical first)
    knowledge: dict  # same keys → list of visual descriptions (may be empty)
    templates: list  # templates with one ``{}``
    source: str  # "dglrsis.vocab" or "fallback"

    @classmethod
    def load(cls) -> TextSource:
        from dglrsis.eval.world import READABLE, SCENE_CLASSES

        names = {c: [READABLE[c]] for k in SCENE_CLASSES for c in SCENE_CLASSES[k]}
        names.update({lc: list(w) for lc, w in LANDCOVER_WORDS.items()})
        knowledge = {k: [] for k in names}
        try:
            from dglrsis.vocab import knowledge_for, load_templates, load_vocabulary
        except ImportError:
            return cls(names, knowledge, list(FALLBACK_TEMPLATES), "fallback")
        for kind, classes in SCENE_CLASSES.items():
            vocab = load_vocabulary(kind)
            for c, syn in zip(classes, vocab.synonyms, strict=False):
                names[c] = list(dict.fromkeys(list(syn) + names[c]))
        for k in names:
            knowledge[k] = [d for s in names[k][:1] for d in _safe_knowledge(knowledge_for, s)]
        return cls(names, knowledge, list(load_templates("rs")), "dglrsis.vocab")


def _safe_knowledge(fn, name: str) -> list:
    try:
        return list(fn(name) or [])
    except Exception:  # noqa: BLE001 - unknown names simply have no knowledge
        return []


@dataclass
class Pool:
    crops: torch.Tensor  # N×3×96×96 uint8 object crops
    crop_meta: list  # (class, colour) per crop
    lc: torch.Tensor  # L×3×96×96 uint8 land-cover crops
    lc_meta: list  # land-cover name per crop
    scenes: torch.Tensor  # M×3×192×192 uint8 scenes
    scene_meta: list = field(default_factory=list)  # per scene: [(class, colour, (x0, y0, x1, y1) in [0,1])]
    labels: torch.Tensor = None  # M×192×192 uint8 concept index per pixel (world_clip_dense.concepts)

    def summary(self) -> dict:
        return {
            "object_crops": len(self.crops),
            "landcover_crops": len(self.lc),
            "scenes": len(self.scenes),
            "instances": sum(len(m) for m in self.scene_meta),
        }


def _to_uint8(x: torch.Tensor, mean, std) -> torch.Tensor:
    m = torch.tensor(mean).view(1, 3, 1, 1)
    s = torch.tensor(std).view(1, 3, 1, 1)
    return ((x * s + m) * 255).round().clamp(0, 255).to(torch.uint8)


def _props(masks: list):
    """Full-image instance masks as :class:`dglrsis.masks.Proposals` (what LVTA crops take)."""
    from dglrsis.masks import Proposals

    return Proposals.from_masks(np.stack(masks))


def _context_box(bbox, rng) -> tuple[float, float, float, float]:
    """A square crop box (x0, y0, x1, y1) around ``bbox``: side 1–2× its longer side, centre jittered by
    ±10 % of the side (object crops and proposal pieces alike)."""
    x0, y0, x1, y1 = bbox
    side = max(x1 - x0, y1 - y0) * rng.uniform(1.0, 2.0)
    cx = (x0 + x1) / 2 + rng.uniform(-0.1, 0.1) * side
    cy = (y0 + y1) / 2 + rng.uniform(-0.1, 0.1) * side
    return (cx - side / 2, cy - side / 2, cx + side / 2, cy + side / 2)


def _object_crops(scene, rng, per_instance: int, mean, std):
    """Context crops of every instance with random context ratio, centre jitter and background."""
    from dglrsis.lvta import LVTAConfig, context_crops

    jobs = {b: ([], [], []) for b in BACKGROUNDS}
    for inst in scene.instances:
        for _ in range(per_instance):
            box = _context_box(inst.bbox, rng)
            masks, boxes, meta = jobs[BACKGROUNDS[int(rng.integers(4))]]
            masks.append(inst.mask)
            boxes.append(box)
            meta.append((inst.category, inst.colour))
    out, metas = [], []
    for bg, (masks, boxes, meta) in jobs.items():
        if masks:
            cfg = LVTAConfig(context=False, background=bg)
            out.append(
                _to_uint8(
                    context_crops(scene.image, _props(masks), CROP, mean, std, cfg, boxes=np.array(boxes)),
                    mean,
                    std,
                )
            )
            metas += meta
    return out, metas


def _landcover_crops(scene, rng, want: int, mean, std):
    """Windows dominated (≥ 80 %) by one land cover, ≤ 5 % objects; the land-cover mask as proposal."""
    from dglrsis.eval.world import LANDCOVER
    from dglrsis.lvta import LVTAConfig, context_crops

    size = scene.image.shape[0]
    out, meta = [], []
    for _ in range(want * 4):
        if len(out) >= want:
            break
        side = int(rng.uniform(0.08, 0.3) * size)
        x, y = (int(v) for v in rng.integers(0, size - side, 2))
        win = scene.landcover[y : y + side, x : x + side]
        counts = np.bincount(win.ravel(), minlength=len(LANDCOVER))
        c = int(counts.argmax())
        if counts[c] < 0.8 * win.size or (scene.class_map[y : y + side, x : x + side] > 0).mean() > 0.05:
            continue
        mask = (scene.landcover == c) & (scene.class_map == 0)
        cfg = LVTAConfig(context=False, background=BACKGROUNDS[int(rng.integers(4))])
        box = np.array([(x, y, x + side, y + side)])
        crop = context_crops(scene.image, _props([mask]), CROP, mean, std, cfg, boxes=box)
        out.append(_to_uint8(crop, mean, std))
        meta.append(LANDCOVER[c])
    return out, meta


def landcover_proposals(props, landcover: np.ndarray, objects: np.ndarray) -> list[tuple[int, int]]:
    """``(proposal index, land-cover index)`` of the proposals that are pieces of one land cover: ≤ 5 %
    object pixels (``objects``: H×W bool), ≥ 80 % one class of ``landcover`` (H×W int) and under 5 % of
    the image."""
    found = []
    for j in range(len(props)):
        area = int(props.areas[j])
        counts = np.bincount(props.values_in(j, landcover))
        c = int(counts.argmax())
        if (
            props.count_in(j, objects) <= 0.05 * area
            and counts[c] >= 0.8 * area
            and area < 0.05 * objects.size
        ):
            found.append((j, c))
    return found


def object_proposals(props, instances: list[np.ndarray]) -> list[tuple[int, int]]:
    """``(proposal index, instance index)`` of the proposals that are pieces of one instance (or the whole
    of it): ≥ 80 % inside its mask (``instances``: H×W bool masks)."""
    found = []
    for j in range(len(props)):
        inside = [props.count_in(j, m) for m in instances]
        if inside and max(inside) >= 0.8 * props.areas[j]:
            found.append((j, int(np.argmax(inside))))
    return found


def _piece_crops(image, props, picks: list[int], rng, mean, std) -> list[torch.Tensor]:
    """Crops of proposals ``picks`` made like the object crops: context 1–2× the box, centre jittered,
    random background treatment."""
    from dglrsis.lvta import LVTAConfig, context_crops

    out = []
    for j in picks:
        box = np.array([_context_box(props.boxes[j], rng)])
        cfg = LVTAConfig(context=False, background=BACKGROUNDS[int(rng.integers(4))])
        out.append(
            _to_uint8(context_crops(image, props.select([j]), CROP, mean, std, cfg, boxes=box), mean, std)
        )
    return out


def _balanced(found: list[tuple[int, int]], want: int, rng) -> list[tuple[int, int]]:
    """``want`` draws from ``(proposal, owner)`` pairs: an owner uniformly, then one of its proposals."""
    by_owner: dict = {}
    for j, c in found:
        by_owner.setdefault(c, []).append(j)
    owners = list(by_owner)
    picks = []
    for _ in range(min(want, len(found))):
        c = owners[int(rng.integers(len(owners)))]
        picks.append((by_owner[c][int(rng.integers(len(by_owner[c])))], c))
    return picks


def _proposal_pieces(scene, rng, want_landcover: int, want_objects: int, mean, std):
    """Crops of the scene's superpixel proposals (``dglrsis.proposals``, default settings) — what LVTA asks
    world-clip about on every image — as ``(land-cover crops, their land covers, object crops, their
    (class, colour))``: ``want_landcover`` proposals of object size lying on one land cover
    (:func:`landcover_proposals`; a land cover drawn uniformly, then one of its proposals: roads are few)
    and ``want_objects`` pieces of instances (:func:`object_proposals`; an instance drawn uniformly).
    Without the first a 60-px road patch, never seen in training, is as likely a "vehicle" as anything
    else; without the second, a piece of an airport's runway is a road."""
    from dglrsis.eval.world import LANDCOVER
    from dglrsis.proposals import generate_proposals

    props = generate_proposals(scene.image)
    lc = _balanced(landcover_proposals(props, scene.landcover, scene.class_map > 0), want_landcover, rng)
    obj = _balanced(object_proposals(props, [i.mask for i in scene.instances]), want_objects, rng)
    return (
        _piece_crops(scene.image, props, [j for j, _ in lc], rng, mean, std),
        [LANDCOVER[c] for _, c in lc],
        _piece_crops(scene.image, props, [j for j, _ in obj], rng, mean, std),
        [(scene.instances[k].category, scene.instances[k].colour) for _, k in obj],
    )


def build_pool(
    world_seed: int,
    scenes_per_kind: int,
    scene_size: int,
    crops_per_instance: int,
    landcover_crops: int,
    mean,
    std,
    progress: bool = False,
    landcover_pieces: int = 0,
    object_pieces: int = 0,
) -> Pool:
    """Render ``scenes_per_kind`` scenes of each kind (world ``world_seed``) and cut the pool from them:
    ``landcover_crops`` land-cover windows and ``landcover_pieces`` land-cover proposals join the land-cover
    crops, ``object_pieces`` proposals inside instances the object crops (:func:`_proposal_pieces`)."""
    from tqdm.auto import tqdm

    from dglrsis.eval.world import iter_scenes

    from .dense import concepts, label_map

    index = {k: i for i, k in enumerate(concepts()[0])}
    rng = np.random.default_rng([world_seed, 7919])
    crops, crop_meta, lcs, lc_meta, scenes, scene_meta, labels = [], [], [], [], [], [], []
    lc_per_scene = math.ceil(landcover_crops / max(1, 2 * scenes_per_kind))
    pieces_per_scene = math.ceil(landcover_pieces / max(1, 2 * scenes_per_kind))
    object_pieces_per_scene = math.ceil(object_pieces / max(1, 2 * scenes_per_kind))
    n_windows = n_pieces = n_object_pieces = 0
    total = 2 * scenes_per_kind
    bar = tqdm(total=total, desc="rendering pool", disable=not progress)
    for kind in ("isaid", "rrsisd"):
        for scene in iter_scenes(world_seed, scenes_per_kind, scene_size, kind):
            bar.update(1)
            if not scene.instances:
                continue
            c, m = _object_crops(scene, rng, crops_per_instance, mean, std)
            crops += c
            crop_meta += m
            if n_windows < landcover_crops:
                c, m = _landcover_crops(scene, rng, min(lc_per_scene, landcover_crops - n_windows), mean, std)
                lcs += c
                lc_meta += m
                n_windows += len(m)
            want_lc = min(pieces_per_scene, landcover_pieces - n_pieces)
            want_obj = min(object_pieces_per_scene, object_pieces - n_object_pieces)
            if want_lc > 0 or want_obj > 0:
                c, m, oc, om = _proposal_pieces(scene, rng, want_lc, want_obj, mean, std)
                lcs += c
                lc_meta += m
                n_pieces += len(m)
                crops += oc
                crop_meta += om
                n_object_pieces += len(om)
            img = torch.from_numpy(scene.image).permute(2, 0, 1)[None].float()
            scenes.append(
                F.interpolate(img, size=(SCENE, SCENE), mode="bilinear", antialias=True, align_corners=False)
                .round()
                .clamp(0, 255)
                .to(torch.uint8)
            )
            labels.append(label_map(scene, SCENE, index)[None])
            s = float(scene_size)
            scene_meta.append([(i.category, i.colour, tuple(v / s for v in i.bbox)) for i in scene.instances])
    bar.close()
    empty = torch.zeros(0, 3, CROP, CROP, dtype=torch.uint8)
    return Pool(
        torch.cat(crops) if crops else empty,
        crop_meta,
        torch.cat(lcs) if lcs else empty,
        lc_meta,
        torch.cat(scenes),
        scene_meta,
        torch.cat(labels),
    )


# --------------------------------------------------------------------------------------------- captions
def _position(cx: float, cy: float) -> str:
    """RRSIS-D-style position phrase of a normalised centre."""
    x = "left" if cx < 1 / 3 else "right" if cx > 2 / 3 else None
    y = "top" if cy < 1 / 3 else "bottom" if cy > 2 / 3 else None
    if x and y:
        return f"in the {'upper' if y == 'top' else 'lower'} {x} corner"
    if x:
        return f"on the {x}"
    if y:
        return f"at the {y}"
    return "in the middle"


def object_caption(rng, texts: TextSource, name: str, colour: str | None) -> tuple[str, bool]:
    """Caption of a crop of class/land cover ``name``; returns (caption, mentions colour)."""
    word = texts.names[name][int(rng.integers(len(texts.names[name])))]
    use_colour = colour is not None and rng.random() < 0.3
    if use_colour:
        word = f"{colour} {word}"
    know = texts.knowledge.get(name) or []
    r = rng.random()
    if r < 0.1:  # the bare class words, as in short queries
        return word, use_colour
    if know and r < 0.2:
        return know[int(rng.integers(len(know)))], False
    text = texts.templates[int(rng.integers(len(texts.templates)))].format(word)
    if know and r < 0.5:
        text = f"{text.rstrip('.')}, {know[int(rng.integers(len(know)))]}"
    return text, use_colour


def scene_caption(rng, texts: TextSource, name: str, colour: str, centre, unique: bool) -> tuple[str, bool]:
    """Caption of a scene naming one object (with its colour / position sometimes)."""
    word = texts.names[name][int(rng.integers(len(texts.names[name])))]
    if rng.random() < 0.15:  # the bare class words, as in short queries
        return word, False
    if unique and rng.random() < 0.5:
        use_colour = rng.random() < 0.5
        art = "the" if rng.random() < 0.5 else "a"
        return f"{art} {colour + ' ' if use_colour else ''}{word} {_position(*centre)}", use_colour
    use_colour = rng.random() < 0.2
    word = f"{colour} {word}" if use_colour else word
    tpl = SCENE_TEMPLATES + texts.templates
    return tpl[int(rng.integers(len(tpl)))].format(word), use_colour


# --------------------------------------------------------------------------------------------- samples
def _dihedral(img: torch.Tensor, rng) -> tuple[torch.Tensor, tuple]:
    """Random flips/transpose of a ``3×S×S`` image; returns it and the (hflip, vflip, transpose) flags."""
    flags = tuple(bool(rng.random() < 0.5) for _ in range(3))
    return _flip(img, flags), flags


def _flip(img: torch.Tensor, flags) -> torch.Tensor:
    """Apply (hflip, vflip, transpose) flags to a ``C×S×S`` tensor (transpose first, as :func:`_move`)."""
    h, v, t = flags
    if t:
        img = img.transpose(1, 2)
    if h:
        img = img.flip(2)
    if v:
        img = img.flip(1)
    return img


def _move(cx: float, cy: float, flags) -> tuple[float, float]:
    h, v, t = flags
    if t:
        cx, cy = cy, cx
    return (1 - cx if h else cx), (1 - cy if v else cy)


class PoolDataset(torch.utils.data.Dataset):
    """Item k → (image 3×96×96 float normalised, caption, caption (concept, colour), image labels, dense).

    dense: the soft patch target ``K×grid×grid`` of a scene sample (:func:`dense.patch_target`)
    when ``grid > 0`` and the pool has label maps, else ``None``.
    """

    def __init__(self, pool: Pool, texts: TextSource, n: int, seed: int, mix, mean, std, grid: int = 0):
        self.pool, self.texts, self.n, self.seed = pool, texts, n, seed
        self.grid = grid if pool.labels is not None else 0
        self.k = 0
        if self.grid:
            from .dense import concepts

            self.k = len(concepts()[0])  # concepts in the label maps
        p = np.array(mix, dtype=float) * [len(pool.crops) > 0, len(pool.lc) > 0, len(pool.scenes) > 0]
        self.mix = p / p.sum()
        self.mean = torch.tensor(mean).view(3, 1, 1)
        self.std = torch.tensor(std).view(3, 1, 1)

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, k: int):
        rng = np.random.default_rng([self.seed, 104729, k])
        source = int(rng.choice(3, p=self.mix))
        if source == 0:
            j = int(rng.integers(len(self.pool.crops)))
            cls, colour = self.pool.crop_meta[j]
            img, _ = _dihedral(self.pool.crops[j], rng)
            text, with_colour = object_caption(rng, self.texts, cls, colour)
            labels = [(concept_of(cls), colour)]
        elif source == 1:
            j = int(rng.integers(len(self.pool.lc)))
            name = self.pool.lc_meta[j]
            img, _ = _dihedral(self.pool.lc[j], rng)
            text, with_colour = object_caption(rng, self.texts, name, None)
            cls, colour, labels = name, None, [(name, None)]
        dense = None
        if source == 2:
            img, text, cls, colour, with_colour, labels, dense = self._scene(rng)
        x = (img.float() / 255 - self.mean) / self.std
        return x, text, (concept_of(cls), colour if with_colour else None), labels, dense

    def _scene(self, rng):
        j = int(rng.integers(len(self.pool.scenes)))
        objs = self.pool.scene_meta[j]
        z = 1.0 if rng.random() < 0.5 else float(rng.uniform(0.4, 0.8))
        wx, wy = (float(v) for v in rng.uniform(0, 1 - z, 2)) if z < 1 else (0.0, 0.0)
        inside = []
        for cls, colour, (x0, y0, x1, y1) in objs:
            ix = max(0.0, min(x1, wx + z) - max(x0, wx))
            iy = max(0.0, min(y1, wy + z) - max(y0, wy))
            frac = ix * iy / max((x1 - x0) * (y1 - y0), 1e-9)
            cx, cy = ((x0 + x1) / 2 - wx) / z, ((y0 + y1) / 2 - wy) / z
            inside.append((cls, colour, frac, (cx, cy)))
        targets = [o for o in inside if o[2] >= 0.7]
        if not targets:  # the window lost every object: use the whole scene
            z, wx, wy = 1.0, 0.0, 0.0
            inside = [(c, col, 1.0, ((b[0] + b[2]) / 2, (b[1] + b[3]) / 2)) for c, col, b in objs]
            targets = inside
        a, b = int(round(wy * SCENE)), int(round(wx * SCENE))
        s = max(8, int(round(z * SCENE)))
        img = self.pool.scenes[j, :, a : a + s, b : b + s].float()[None]
        img = F.interpolate(img, size=(CROP, CROP), mode="bilinear", antialias=True, align_corners=False)[0]
        img, flags = _dihedral(img, rng)
        dense = None
        if self.grid:
            from .dense import patch_target

            dense = _flip(patch_target(self.pool.labels[j, a : a + s, b : b + s], self.k, self.grid), flags)
        cls, colour, _, centre = targets[int(rng.integers(len(targets)))]
        present = [o for o in inside if o[2] >= 0.3]
        unique = sum(o[0] == cls for o in present) == 1
        text, with_colour = scene_caption(rng, self.texts, cls, colour, _move(*centre, flags), unique)
        labels = [(concept_of(o[0]), o[1]) for o in present]
        return img.round().clamp(0, 255), text, cls, colour, with_colour, labels, dense


def positives(captions: list, labels: list) -> torch.Tensor:
    """``B×B`` bool: caption j = (concept, colour or None) is true of image i's labels [(concept, colour)]."""
    b = len(captions)
    pos = torch.zeros(b, b, dtype=torch.bool)
    for i, lab in enumerate(labels):
        concepts = {c for c, _ in lab}
        pairs = set(lab)
        for j, (c, col) in enumerate(captions):
            pos[i, j] = c in concepts and (col is None or (c, col) in pairs)
    pos.fill_diagonal_(True)
    return pos


def dense_targets(dense: list) -> torch.Tensor | None:
    """Stack per-item ``K×g×g`` targets (``None`` → zeros) into ``B×g²×K``; ``None`` when all are ``None``."""
    ref = next((d for d in dense if d is not None), None)
    if ref is None:
        return None
    out = torch.stack([ref.new_zeros(ref.shape) if d is None else d for d in dense])
    return out.flatten(2).transpose(1, 2).contiguous()


def make_collate(tokenizer):
    """Batch → (images B×3×96×96, tokens, positives B×B, dense targets B×g²×K or None)."""

    def collate(items):
        images, texts, caps, labels, dense = zip(*items, strict=False)
        return (
            torch.stack(images),
            tokenizer(list(texts)),
            positives(list(caps), list(labels)),
            dense_targets(list(dense)),
        )

    return collate
