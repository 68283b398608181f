"""RRSIS-D reader (RES), as released with RMSIN.

Layouts accepted: ``root/{refs(unc).p, instances.json, images/rrsisd/JPEGImages/NNNNN.jpg}`` or the RMSIN
tree ``root/rrsisd/{refs(unc).p, instances.json}`` + ``root/images/rrsisd/JPEGImages``. The pickle is
untrusted and read with :func:`dglrsis.safeload.load_pickle` (builtin containers only). Annotations use
``categories_id`` (``category_id`` accepted), bbox x1y1x2y2 (unused here), ``segmentation`` = list of
RLE dicts ``{size, counts}`` (counts str/bytes, or uncompressed lists) or polygons; parts are unioned.
The ``area`` field is unreliable and ignored. One sample per sentence; masks are decoded on access.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from dglrsis.errors import DglrsisError


def decode_segmentation(parts: list, height: int, width: int) -> np.ndarray:
    """COCO segmentation parts (RLE dicts or polygons) → H×W bool union mask."""
    from pycocotools import mask as mask_utils

    out = np.zeros((height, width), bool)
    for seg in parts if isinstance(parts, list) else [parts]:
        if isinstance(seg, dict):
            counts = seg.get("counts")
            if isinstance(counts, list):  # uncompressed RLE
                rle = mask_utils.frPyObjects(seg, *seg["size"])
            else:
                rle = {
                    "size": list(seg["size"]),
                    "counts": counts.encode() if isinstance(counts, str) else counts,
                }
            m = mask_utils.decode(rle).astype(bool)
        else:  # polygon: flat [x0, y0, x1, y1, ...]
            rles = mask_utils.frPyObjects([seg], height, width)
            m = mask_utils.decode(mask_utils.merge(rles)).astype(bool)
        if m.shape != out.shape:
            raise DglrsisError(f"segmentation part is {m.shape[1]}×{m.shape[0]}, image is {width}×{height}")
        out |= m
    return out


@dataclass
class RefSample:
    sent_id: int  # sentence id (prediction file name {sent_id}.png)
    image_path: Path  # JPEG of the scene
    text: str  # the referring expression
    category: str  # category name of the target annotation
    modifiers: list[str]  # modifier kinds recorded with the sentence (may be empty)
    ref_id: int  # reference id (several sentences per ref)
    split: str  # train / val / test
    segmentation: list = field(repr=False, default_factory=list)  # raw COCO parts of the target
    size: tuple[int, int] = (800, 800)  # (height, width) of the image

    @property
    def key(self) -> str:
        """Cache / prediction-file key: the sentence id as text."""
        return str(self.sent_id)

    @property
    def mask(self) -> np.ndarray:
        """H×W bool target mask (decoded now; not kept, so a split's samples stay small)."""
        return decode_segmentation(self.segmentation, *self.size)


def _find(root: Path, *names: str) -> Path:
    for n in names:
        if (root / n).exists():
            return root / n
    raise DglrsisError(f"{root}: none of {', '.join(names)} found (is this an RRSIS-D folder?)")


def _sentences(ref: dict, ann: dict, im: dict, img_dir: Path, cats: dict, split: str) -> list[RefSample]:
    size = (int(im.get("height", 800)), int(im.get("width", 800)))
    cat = ann.get("categories_id", ann.get("category_id", ref.get("category_id")))
    fname = ref.get("file_name") or im.get("file_name")
    out = []
    for s in ref.get("sentences", []):
        out.append(
            RefSample(
                int(s["sent_id"]),
                img_dir / fname,
                s.get("raw") or s.get("sent") or "",
                cats.get(cat, str(cat)),
                [str(m) for m in s.get("modifiers") or []],
                int(ref.get("ref_id", -1)),
                split,
                ann.get("segmentation") or [],
                size,
            )
        )
    return out


def rrsisd_samples(root: str | Path, split: str, limit: int | None = None) -> list[RefSample]:
    """One :class:`RefSample` per sentence of ``split``, in pickle order."""
    from dglrsis.safeload import load_pickle

    root = Path(root)
    refs_path = _find(root, "refs(unc).p", "rrsisd/refs(unc).p")
    inst_path = _find(root, "instances.json", "rrsisd/instances.json")
    img_dir = _find(root, "images/rrsisd/JPEGImages", "rrsisd/images/rrsisd/JPEGImages", "JPEGImages")
    refs = load_pickle(refs_path)
    if not isinstance(refs, list) or not all(isinstance(r, dict) for r in refs):
        raise DglrsisError(f"{refs_path} does not hold a list of ref dicts")
    try:
        inst = json.loads(inst_path.read_text())
    except (OSError, ValueError) as exc:
        raise DglrsisError(f"cannot read {inst_path}: {exc}") from None
    anns = {a["id"]: a for a in inst.get("annotations", [])}
    images = {im["id"]: im for im in inst.get("images", [])}
    cats = {c["id"]: c["name"] for c in inst.get("categories", [])}
    out: list[RefSample] = []
    for ref in refs:
        if ref.get("split") != split:
            continue
        ann = anns.get(ref.get("ann_id"))
        if ann is None:
            raise DglrsisError(f"ref {ref.get('ref_id')} points at missing annotation {ref.get('ann_id')}")
        out.extend(_sentences(ref, ann, images.get(ref.get("image_id"), {}), img_dir, cats, split))
        if limit is not None and len(out) >= limit:
            return out[:limit]
    if not out:
        raise DglrsisError(f"no refs with split {split!r} in {refs_path}")
    return out
