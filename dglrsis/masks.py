"""Compact mask proposals: every mask held as its box and the boolean mask cropped to that box.

Memory is Σ box areas (bytes), not N × H × W: a 1536² scene with thousands of superpixel regions costs a few
megabytes, where a full-image boolean stack would cost gigabytes. Every consumer (LVTA crops, pixel
assignment, non-maximum suppression, GVTA's CAM agreement and grouping) works box-locally through the
methods below; a full-image mask is only materialised for an answer (:meth:`Proposals.mask`,
:meth:`Proposals.union`).

Boxes are XYXY integer pixels with ``x1``/``y1`` exclusive; an empty mask has an empty box.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np


@dataclass
class Proposals:
    """``N`` class-agnostic masks on an ``H×W`` image (see module docstring)."""

    boxes: np.ndarray  # N×4 int64 XYXY pixels, x1/y1 exclusive
    crops: list  # N bool arrays; crops[i] has shape (y1 − y0, x1 − x0) of boxes[i]
    scores: np.ndarray  # N float (SAM predicted IoU, or region homogeneity for superpixels)
    shape: tuple  # (H, W) of the image
    source: str = ""  # method name
    levels: np.ndarray = field(default_factory=lambda: np.zeros(0, int))  # hierarchy level (0 = finest)
    areas: np.ndarray = field(init=False)  # N int64 pixels

    def __post_init__(self):
        self.boxes = np.asarray(self.boxes, np.int64).reshape(-1, 4)
        self.scores = np.asarray(self.scores, np.float32).reshape(-1)
        self.shape = (int(self.shape[0]), int(self.shape[1]))
        self.areas = np.array([int(np.count_nonzero(c)) for c in self.crops], np.int64)
        if not len(self.boxes) == len(self.crops) == len(self.scores):
            raise ValueError("boxes, crops and scores must have one entry per proposal")

    def __len__(self) -> int:
        return len(self.crops)

    @property
    def nbytes(self) -> int:
        """Bytes held by the cropped masks."""
        return int(sum(c.nbytes for c in self.crops))

    # -- construction ---------------------------------------------------------------------------------
    @classmethod
    def from_masks(cls, masks: np.ndarray, scores=None, source: str = "", levels=None) -> Proposals:
        """From full-image masks ``N×H×W`` bool (small inputs, tests)."""
        masks = np.asarray(masks, bool)
        n, h, w = masks.shape
        boxes = masks_to_boxes(masks)
        crops = [m[y0:y1, x0:x1].copy() for m, (x0, y0, x1, y1) in zip(masks, boxes, strict=True)]
        scores = np.ones(n, np.float32) if scores is None else scores
        lv = np.zeros(n, int) if levels is None else np.asarray(levels)
        return cls(boxes, crops, scores, (h, w), source, lv)

    @classmethod
    def empty(cls, h: int, w: int, source: str = "") -> Proposals:
        return cls(np.zeros((0, 4), np.int64), [], np.zeros(0, np.float32), (h, w), source)

    def select(self, idx) -> Proposals:
        """The proposals at ``idx`` (in that order)."""
        idx = np.asarray(idx, dtype=int).reshape(-1)
        lv = self.levels[idx] if len(self.levels) == len(self) else self.levels
        return Proposals(
            self.boxes[idx], [self.crops[i] for i in idx], self.scores[idx], self.shape, self.source, lv
        )

    def shifted(self, dx: int, dy: int, shape: tuple) -> Proposals:
        """The same masks placed at offset (``dx``, ``dy``) on an image of ``shape`` (H, W) — a tile's
        proposals in scene coordinates."""
        off = np.array([dx, dy, dx, dy], np.int64)
        return Proposals(self.boxes + off, self.crops, self.scores, shape, self.source, self.levels)

    def restricted(self, keep: np.ndarray) -> Proposals:
        """Each mask ∩ ``keep`` (H×W bool), boxes shrunk to what is left, empty masks dropped (order kept)."""
        boxes, crops, idx = [], [], []
        for i, ((x0, y0, x1, y1), c) in enumerate(zip(self.boxes, self.crops, strict=True)):
            m = c & keep[y0:y1, x0:x1]
            if not m.any():
                continue
            b, cr = crop_to_box(m, int(x0), int(y0))
            boxes.append(b)
            crops.append(cr)
            idx.append(i)
        idx = np.asarray(idx, int)
        lv = self.levels[idx] if len(self.levels) == len(self) else self.levels
        return Proposals(np.reshape(boxes, (-1, 4)), crops, self.scores[idx], self.shape, self.source, lv)

    @classmethod
    def concat(cls, parts: list, shape: tuple, source: str = "") -> Proposals:
        """One set from several (already in the same coordinates), in order."""
        parts = [p for p in parts if len(p)]
        if not parts:
            return cls.empty(*shape, source=source)
        return cls(
            np.concatenate([p.boxes for p in parts]),
            [c for p in parts for c in p.crops],
            np.concatenate([p.scores for p in parts]),
            shape,
            source or parts[0].source,
            np.concatenate([p.levels if len(p.levels) == len(p) else np.zeros(len(p), int) for p in parts]),
        )

    # -- full-image views (answers only) -------------------------------------------------------------
    def mask(self, i: int) -> np.ndarray:
        """``H×W`` bool mask of proposal ``i``."""
        out = np.zeros(self.shape, bool)
        self.paste(out, i, True)
        return out

    def union(self, idx) -> np.ndarray:
        """``H×W`` bool union of the proposals at ``idx``."""
        out = np.zeros(self.shape, bool)
        for i in np.asarray(idx, dtype=int).reshape(-1):
            self.paste(out, int(i), True)
        return out

    def coverage(self) -> np.ndarray:
        """``H×W`` bool: pixels covered by at least one proposal."""
        return self.union(np.arange(len(self)))

    # -- box-local operations -------------------------------------------------------------------------
    def paste(self, out: np.ndarray, i: int, value) -> None:
        """``out[mask_i] = value`` for an ``H×W`` (or ``H×W×…``) array, touching only the box."""
        x0, y0, x1, y1 = self.boxes[i]
        out[y0:y1, x0:x1][self.crops[i]] = value

    def window(self, i: int, x0: int, y0: int, x1: int, y1: int) -> np.ndarray:
        """Mask ``i`` inside the window ``[y0:y1, x0:x1]`` (clipped to the image by the caller), bool."""
        out = np.zeros((y1 - y0, x1 - x0), bool)
        bx0, by0, bx1, by1 = self.boxes[i]
        ix0, iy0, ix1, iy1 = max(x0, bx0), max(y0, by0), min(x1, bx1), min(y1, by1)
        if ix1 > ix0 and iy1 > iy0:
            out[iy0 - y0 : iy1 - y0, ix0 - x0 : ix1 - x0] = self.crops[i][
                iy0 - by0 : iy1 - by0, ix0 - bx0 : ix1 - bx0
            ]
        return out

    def count_in(self, i: int, field_: np.ndarray) -> int:
        """``|mask_i ∩ field|`` for an ``H×W`` bool field."""
        x0, y0, x1, y1 = self.boxes[i]
        return int(np.count_nonzero(field_[y0:y1, x0:x1] & self.crops[i]))

    def values_in(self, i: int, array: np.ndarray) -> np.ndarray:
        """``array[mask_i]`` for an ``H×W`` (or ``H×W×C``) array, in row-major order."""
        x0, y0, x1, y1 = self.boxes[i]
        return array[y0:y1, x0:x1][self.crops[i]]

    def intersection(self, i: int, j: int) -> int:
        """``|mask_i ∩ mask_j|`` pixels."""
        a, b = self.boxes[i], self.boxes[j]
        x0, y0, x1, y1 = max(a[0], b[0]), max(a[1], b[1]), min(a[2], b[2]), min(a[3], b[3])
        if x1 <= x0 or y1 <= y0:
            return 0
        ci = self.crops[i][y0 - a[1] : y1 - a[1], x0 - a[0] : x1 - a[0]]
        cj = self.crops[j][y0 - b[1] : y1 - b[1], x0 - b[0] : x1 - b[0]]
        return int(np.count_nonzero(ci & cj))

    def centroids(self) -> np.ndarray:
        """``N×2`` (x, y) mask centroids in pixels (NaN for empty masks)."""
        out = np.full((len(self), 2), np.nan)
        for i, (c, (x0, y0, _, _)) in enumerate(zip(self.crops, self.boxes, strict=True)):
            ys, xs = np.nonzero(c)
            if len(xs):
                out[i] = ((xs + x0).mean(), (ys + y0).mean())
        return out


def masks_to_boxes(masks: np.ndarray) -> np.ndarray:
    """``N×H×W`` bool → ``N×4`` int64 XYXY (x1, y1 exclusive); empty masks give zeros."""
    out = np.zeros((len(masks), 4), np.int64)
    for i, m in enumerate(masks):
        ys = np.flatnonzero(m.any(1))
        xs = np.flatnonzero(m.any(0))
        if len(xs):
            out[i] = (xs[0], ys[0], xs[-1] + 1, ys[-1] + 1)
    return out


def crop_to_box(mask: np.ndarray, x0: int = 0, y0: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """A bool mask (at offset ``x0, y0`` of the image) → (its tight box XYXY in image pixels, the crop)."""
    ys = np.flatnonzero(mask.any(1))
    xs = np.flatnonzero(mask.any(0))
    if not len(xs):
        return np.zeros(4, np.int64), np.zeros((0, 0), bool)
    box = np.array([x0 + xs[0], y0 + ys[0], x0 + xs[-1] + 1, y0 + ys[-1] + 1], np.int64)
    return box, np.ascontiguousarray(mask[ys[0] : ys[-1] + 1, xs[0] : xs[-1] + 1])


def label_regions(labels: np.ndarray) -> tuple[np.ndarray, list, np.ndarray]:
    """Every region of a label map (``H×W`` ints ≥ 0) as (boxes ``R×4``, crops, region ids), without a
    full-image mask per region (``scipy.ndimage.find_objects``); regions in increasing id order."""
    from scipy.ndimage import find_objects

    boxes, crops, ids = [], [], []
    for k, sl in enumerate(find_objects(np.asarray(labels, np.int64) + 1)):
        if sl is None:
            continue
        ys, xs = sl
        boxes.append((xs.start, ys.start, xs.stop, ys.stop))
        crops.append(labels[sl] == k)
        ids.append(k)
    return np.array(boxes, np.int64).reshape(-1, 4), crops, np.array(ids, np.int64)


def mask_nms(props: Proposals, scores: np.ndarray, iou: float, cell: int = 64) -> np.ndarray:
    """Indices kept by greedy mask-IoU NMS (highest score first, ties by index).

    Only pairs whose boxes overlap are compared; they are found through a grid of ``cell``-pixel buckets
    holding the kept masks, so memory and time grow with the number of overlapping pairs, not N².
    """
    n = len(props)
    if n == 0:
        return np.zeros(0, int)
    order = np.argsort(-np.asarray(scores), kind="stable")
    boxes, areas = props.boxes, props.areas
    grid: dict[tuple[int, int], list[int]] = {}
    keep: list[int] = []
    for i in order:
        x0, y0, x1, y1 = boxes[i]
        cells = [
            (cx, cy)
            for cy in range(y0 // cell, max(y1 - 1, y0) // cell + 1)
            for cx in range(x0 // cell, max(x1 - 1, x0) // cell + 1)
        ]
        near = {j for c in cells for j in grid.get(c, ())}
        dup = False
        for j in sorted(near):
            bj = boxes[j]
            if bj[0] >= x1 or bj[2] <= x0 or bj[1] >= y1 or bj[3] <= y0:
                continue
            inter = props.intersection(int(i), j)
            if inter / max(areas[i] + areas[j] - inter, 1) > iou:
                dup = True
                break
        if not dup:
            keep.append(int(i))
            for c in cells:
                grid.setdefault(c, []).append(int(i))
    return np.array(keep, int)
