"""RRSIS-D reader (RES), as released with RMSIN.

Layout: RMSIN's (``refer/refer.py``, ``--refer_data_root``)::

    ROOT/rrsisd/refs(unc).p
    ROOT/rrsisd/instances.json
    ROOT/images/rrsisd/JPEGImages/NNNNN.jpg

``--root ROOT`` is the folder RMSIN is given. ``--root ROOT/rrsisd`` also works (the images are then
looked up in ``ROOT/images/rrsisd/JPEGImages``, or ``ROOT/rrsisd/images/rrsisd/JPEGImages`` /
``ROOT/rrsisd/JPEGImages`` when the files were moved). The pickle is untrusted and read with
:func:`dglrsis.safeload.load_pickle` (builtin containers only). Annotations use ``categories_id``
(``category_id`` accepted), bbox x1y1x2y2 (unused here), ``segmentation`` = list of RLE dicts
``{size, counts}`` (counts str/bytes, or uncompressed lists) or polygons; parts are unioned. The
``area`` field is unreliable and ignored. One sample per sentence; masks are decoded on access.

Target size, as RMSIN's ``REFER.getMask``: an RLE target has its RLE's own ``size``; a polygon target
the image entry's ``height``×``width``. Real RRSIS-D has JPEGs of 800×801 and 800×787 px whose masks are
800×800; RMSIN resizes image and mask to 480×480 independently, and so do we at ``--resolution 480``
(at ``native`` a prediction of the image's size is nearest-resized to the mask's, see
:mod:`dglrsis.eval.runner`).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from dglrsis.errors import DglrsisError


def decode_segmentation(parts: list, height: int, width: int) -> np.ndarray:
    """COCO segmentation parts (RLE dicts or polygons) → bool union mask.

    The mask is the RLEs' own ``size`` when there are RLE parts (as RMSIN), else ``height``×``width``.
    """
    from pycocotools import mask as mask_utils

    parts = parts if isinstance(parts, list) else [parts]
    rle_sizes = {tuple(int(v) for v in p["size"]) for p in parts if isinstance(p, dict) and "size" in p}
    if len(rle_sizes) > 1:
        raise DglrsisError(f"segmentation parts have different sizes: {sorted(rle_sizes)}")
    if rle_sizes:  # RMSIN: an RLE target has the RLE's own size, whatever the image entry says
        height, width = rle_sizes.pop()
    out = np.zeros((height, width), bool)
    for seg in parts:
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


RMSIN_LAYOUT = "ROOT/rrsisd/{refs(unc).p, instances.json} and ROOT/images/rrsisd/JPEGImages/"


def locate(root: str | Path) -> tuple[Path, Path]:
    """(folder of ``refs(unc).p`` + ``instances.json``, image folder) for ``root`` (RMSIN's data root, or
    its ``rrsisd/`` sub-folder)."""
    root = Path(root)
    if (root / "rrsisd" / "refs(unc).p").is_file():
        meta, images = root / "rrsisd", [root / "images" / "rrsisd" / "JPEGImages"]
    elif (root / "refs(unc).p").is_file():
        meta = root
        images = [
            root.parent / "images" / "rrsisd" / "JPEGImages",
            root / "images" / "rrsisd" / "JPEGImages",
            root / "JPEGImages",
        ]
    else:
        raise DglrsisError(f"{root}: no refs(unc).p (RRSIS-D as RMSIN lays it out: {RMSIN_LAYOUT})")
    if not (meta / "instances.json").is_file():
        raise DglrsisError(f"{meta}: refs(unc).p without instances.json (expected {RMSIN_LAYOUT})")
    for d in images:
        if d.is_dir():
            return meta, d
    raise DglrsisError(f"no image folder {images[0]} (expected {RMSIN_LAYOUT})")


def _sentences(ref: dict, ann: dict, im: dict, img_dir: Path, cats: dict, split: str) -> list[RefSample]:
    size = (int(im.get("height", 800)), int(im.get("width", 800)))
    cat = ann.get("categories_id", ann.get("category_id", ref.get("category_id")))
    fname = im.get("file_name") or ref.get("file_name")  # RMSIN opens the image entry's file_name
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

    meta, img_dir = locate(root)
    refs_path, inst_path = meta / "refs(unc).p", meta / "instances.json"
    refs = load_pickle(refs_path)
    if not isinstance(refs, list) or not all(isinstance(r, dict) for r in refs):
        raise DglrsisError(f"{refs_path} does not hold a list of ref dicts")
    try:
        inst = json.loads(inst_path.read_text())
    except (OSError, ValueError) as exc:
        raise DglrsisError(f"cannot read {inst_path}: {exc}") from None
    try:
        anns = {a["id"]: a for a in inst.get("annotations", [])}
        images = {im["id"]: im for im in inst.get("images", [])}
        cats = {c["id"]: c["name"] for c in inst.get("categories", [])}
    except (AttributeError, KeyError, TypeError) as exc:
        raise DglrsisError(
            f"{inst_path} is not a COCO instances file (images, annotations, categories with ids): {exc!r}"
        ) from None
    out: list[RefSample] = []
    for ref in refs:
        if ref.get("split") != split:
            continue
        try:
            ann = anns.get(ref.get("ann_id"))
        except TypeError:  # an unhashable ann_id
            ann = None
        if ann is None:
            raise DglrsisError(f"ref {ref.get('ref_id')} points at missing annotation {ref.get('ann_id')}")
        try:
            out.extend(_sentences(ref, ann, images.get(ref.get("image_id"), {}), img_dir, cats, split))
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise DglrsisError(f"ref {ref.get('ref_id')} in {refs_path} is malformed ({exc!r})") from None
        if limit is not None and len(out) >= limit:
            return out[:limit]
    if not out:
        raise DglrsisError(f"no refs with split {split!r} in {refs_path}")
    return out
