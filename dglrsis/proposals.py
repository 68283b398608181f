"""GLD, image side: class-agnostic mask proposals.

- ``sam``: segment-anything's automatic mask generator (points batched, thresholds configurable), keeping
  its boolean masks bit-packed instead of round-tripping every candidate through RLE.
- ``slic`` / ``felzenszwalb``: weight-free superpixels from scikit-image, merged bottom-up into a
  hierarchy on a region-adjacency graph of mean colours (``skimage.graph.rag_mean_color`` +
  ``cut_threshold`` at several thresholds), so that whole objects and whole land-cover regions each
  appear as one proposal at some level. The finest level is always kept, so every pixel is covered.

All proposals then go through the same clean-up: tiny masks (< ``min_area``) dropped, duplicates removed
by box IoU prefilter + mask IoU non-maximum suppression, capped at ``max_masks`` by score.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, field

import numpy as np

from .errors import DglrsisError

METHODS = ("slic", "felzenszwalb", "sam")


@dataclass
class ProposalConfig:
    method: str = "slic"  # slic | felzenszwalb | sam
    slic_segments: int = 3000  # SLIC: approximate number of superpixels (for 512² images)
    slic_compactness: float = 12.0  # SLIC: colour vs space trade-off
    fz_scale: float = 120.0  # Felzenszwalb: observation scale
    fz_sigma: float = 0.8  # Felzenszwalb: pre-smoothing
    fz_min_size: int = 30  # Felzenszwalb: minimum component size (pixels)
    merge_thresholds: tuple = (
        12.0,
        24.0,
        40.0,
    )  # RAG mean-colour cut thresholds (0–255 scale), one level each
    fill_holes: bool = True  # also propose regions with their holes filled (ring-shaped objects)
    points_per_side: int = 32  # SAM: grid of point prompts
    points_per_batch: int = 64  # SAM: prompts per decoder batch
    pred_iou_thresh: float = 0.86  # SAM: predicted-IoU filter
    stability_score_thresh: float = 0.92  # SAM: stability filter
    crop_n_layers: int = 0  # SAM: extra crop layers
    min_area: float = 0.0002  # drop masks smaller than this (fraction of the image if < 1, else pixels)
    nms_iou: float = 0.9  # mask-IoU above which the lower-scored duplicate is dropped
    max_masks: int = 600  # keep at most this many (the finest level always kept)


@dataclass
class Proposals:
    masks: np.ndarray  # N×H×W bool
    boxes: np.ndarray  # N×4 float XYXY pixels (x1, y1 exclusive)
    scores: np.ndarray  # N float (SAM predicted IoU, or region homogeneity for superpixels)
    areas: np.ndarray  # N int pixels
    source: str = ""  # method name
    levels: np.ndarray = field(default_factory=lambda: np.zeros(0, int))  # hierarchy level (0 = finest)

    def __len__(self) -> int:
        return len(self.masks)

    def select(self, idx) -> Proposals:
        idx = np.asarray(idx, dtype=int)
        lv = self.levels[idx] if len(self.levels) == len(self.masks) else self.levels
        return Proposals(self.masks[idx], self.boxes[idx], self.scores[idx], self.areas[idx], self.source, lv)


def masks_to_boxes(masks: np.ndarray) -> np.ndarray:
    """N×H×W bool → N×4 XYXY (x1, y1 exclusive); empty masks give zeros."""
    out = np.zeros((len(masks), 4), np.float32)
    for i, m in enumerate(masks):
        ys = np.flatnonzero(m.any(1))
        xs = np.flatnonzero(m.any(0))
        if len(xs):
            out[i] = (xs[0], ys[0], xs[-1] + 1, ys[-1] + 1)
    return out


def mask_nms(masks: np.ndarray, scores: np.ndarray, iou: float) -> np.ndarray:
    """Indices kept by greedy mask-IoU NMS (highest score first); boxes prefilter candidate pairs."""
    import torch
    from torchvision.ops import box_iou

    n = len(masks)
    if n == 0:
        return np.zeros(0, int)
    order = np.argsort(-scores, kind="stable")
    boxes = torch.from_numpy(masks_to_boxes(masks)[order]).float()
    overlap = (box_iou(boxes, boxes) > 0).numpy()
    flat = masks[order].reshape(n, -1)
    areas = flat.sum(1)
    keep: list[int] = []
    for i in range(n):
        dup = False
        for j in keep:
            if overlap[i, j]:
                inter = np.count_nonzero(flat[i] & flat[j])
                if inter / max(areas[i] + areas[j] - inter, 1) > iou:
                    dup = True
                    break
        if not dup:
            keep.append(i)
    return order[np.array(keep, int)]


def pixel_coverage(props: Proposals) -> np.ndarray:
    """H×W bool: pixels covered by at least one proposal."""
    return props.masks.any(0) if len(props) else np.zeros(props.masks.shape[1:], bool)


def _superpixels(image: np.ndarray, cfg: ProposalConfig) -> np.ndarray:
    from skimage.segmentation import felzenszwalb, slic

    h, w = image.shape[:2]
    if cfg.method == "slic":
        n = max(4, int(cfg.slic_segments * h * w / 512**2))
        return slic(
            image, n_segments=n, compactness=cfg.slic_compactness, start_label=0, enforce_connectivity=True
        )
    return felzenszwalb(image, scale=cfg.fz_scale, sigma=cfg.fz_sigma, min_size=cfg.fz_min_size)


def _label_masks(labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Masks N×H×W of every label in a label map, and each region's colour std (for the score)."""
    ids = np.unique(labels)
    return np.stack([labels == i for i in ids]), ids


def region_adjacency(labels: np.ndarray, image: np.ndarray) -> tuple[np.ndarray, np.ndarray, int]:
    """Region-adjacency graph of a label map (labels 0..n-1): unique 4-neighbour edges ``E×2`` and their
    mean-colour distances ``E`` (the weights skimage's ``rag_mean_color`` uses), vectorised."""
    n = int(labels.max()) + 1
    flat = labels.ravel()
    counts = np.maximum(np.bincount(flat, minlength=n), 1)
    means = np.stack([np.bincount(flat, image[..., c].ravel().astype(np.float64), n) for c in range(3)], 1)
    means /= counts[:, None]
    pairs = np.concatenate(
        [
            np.stack([labels[:, :-1].ravel(), labels[:, 1:].ravel()], 1),
            np.stack([labels[:-1].ravel(), labels[1:].ravel()], 1),
        ]
    )
    pairs = pairs[pairs[:, 0] != pairs[:, 1]]
    pairs = np.unique(np.sort(pairs, 1), axis=0)
    return pairs, np.linalg.norm(means[pairs[:, 0]] - means[pairs[:, 1]], axis=1), n


def superpixel_hierarchy(image: np.ndarray, cfg: ProposalConfig) -> tuple[list[np.ndarray], list[int]]:
    """Label maps from the finest superpixels up through each merge threshold → (maps, level ids).

    Level k joins adjacent superpixels whose mean colours differ by less than ``merge_thresholds[k]``
    (connected components of the thresholded region-adjacency graph, as skimage's ``cut_threshold``)."""
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components

    base = _superpixels(image, cfg)
    _, base = np.unique(base, return_inverse=True)
    base = base.reshape(image.shape[:2])
    maps, levels = [base], [0]
    if base.max() < 1:
        return maps, levels
    edges, weights, n = region_adjacency(base, image)
    for lvl, thr in enumerate(cfg.merge_thresholds, start=1):
        keep = weights < thr
        graph = coo_matrix((np.ones(int(keep.sum())), (edges[keep, 0], edges[keep, 1])), shape=(n, n))
        _, comp = connected_components(graph, directed=False)
        merged = comp[base]
        if len(np.unique(merged)) < len(np.unique(maps[-1])):
            maps.append(merged)
            levels.append(lvl)
    return maps, levels


def _homogeneity(image: np.ndarray, masks: np.ndarray) -> np.ndarray:
    """Score in (0, 1]: 1 / (1 + mean per-channel colour std / 32) of each mask."""
    out = np.zeros(len(masks), np.float32)
    flat = image.reshape(-1, 3).astype(np.float32)
    for i, m in enumerate(masks):
        px = flat[m.ravel()]
        out[i] = 1.0 / (1.0 + float(px.std(0).mean()) / 32.0) if len(px) else 0.0
    return out


def _min_area_px(cfg: ProposalConfig, h: int, w: int) -> int:
    return int(cfg.min_area * h * w) if cfg.min_area < 1 else int(cfg.min_area)


def _add_filled(masks: np.ndarray, levels: np.ndarray, min_px: int) -> tuple[np.ndarray, np.ndarray]:
    """Add each region with its holes filled when that adds ≥ 10 % area: ring-shaped objects (track
    fields, roundabouts, stadiums, tanks with a rim) then appear whole, not only as their outer ring."""
    from scipy.ndimage import binary_fill_holes

    extra = []
    for m in masks:
        area = int(m.sum())
        if area < min_px:
            continue
        ys, xs = np.nonzero(m.any(1))[0], np.nonzero(m.any(0))[0]
        y0, y1, x0, x1 = ys[0], ys[-1] + 1, xs[0], xs[-1] + 1
        filled = binary_fill_holes(m[y0:y1, x0:x1])
        if filled.sum() >= 1.1 * area:
            full = np.zeros_like(m)
            full[y0:y1, x0:x1] = filled
            extra.append(full)
    if not extra:
        return masks, levels
    return np.concatenate([masks, np.stack(extra)]), np.concatenate(
        [levels, np.full(len(extra), levels.max() + 1)]
    )


def _superpixel_proposals(image: np.ndarray, cfg: ProposalConfig) -> Proposals:
    h, w = image.shape[:2]
    maps, levels = superpixel_hierarchy(image, cfg)
    if len(maps) > 1:  # raw superpixels are fragments; the merged levels are the proposals
        maps, levels = maps[1:], levels[1:]
    min_px = _min_area_px(cfg, h, w)
    parts, lv = [], []
    for i, (lab, lvl) in enumerate(zip(maps, levels, strict=False)):
        masks, _ = _label_masks(lab)
        if i > 0:  # the finest level is kept whole: it partitions the image, so every pixel is covered
            masks = masks[masks.reshape(len(masks), -1).sum(1) >= min_px]
        parts.append(masks)
        lv += [lvl] * len(masks)
    masks, levels = np.concatenate(parts), np.array(lv)
    if cfg.fill_holes:
        masks, levels = _add_filled(masks, levels, min_px)
    scores = _homogeneity(image, masks)
    base = levels == levels.min()
    coarse = np.flatnonzero(~base)
    keep = np.flatnonzero(base)
    if len(coarse):  # a merged region identical to a finer one is a duplicate
        both = np.concatenate([keep, coarse])
        prio = np.concatenate([np.full(len(keep), 2.0), scores[coarse]])
        kept = both[mask_nms(masks[both], prio, cfg.nms_iou)]
        keep = np.sort(kept)
    masks, scores, levels = masks[keep], scores[keep], levels[keep]
    areas = masks.reshape(len(masks), -1).sum(1)
    return Proposals(masks, masks_to_boxes(masks), scores, areas, cfg.method, levels)


@functools.cache
def _mask_generator():
    """segment-anything's automatic mask generator, keeping the boolean masks it thresholds (bit-packed)
    instead of encoding every candidate to RLE and decoding the survivors again. Same masks, same order,
    same filters (predicted IoU, stability, crop edge, box NMS); only ``min_mask_region_area=0``."""
    import torch
    from segment_anything import SamAutomaticMaskGenerator
    from segment_anything.utils.amg import (
        MaskData,
        batched_mask_to_box,
        calculate_stability_score,
        is_box_near_crop_edge,
        uncrop_masks,
    )

    class BoolMaskGenerator(SamAutomaticMaskGenerator):
        """Only ``_process_batch`` differs from the library's: the records' ``"rles"`` slot holds each
        mask bit-packed (a ``N×⌈HW/8⌉`` uint8 tensor) instead of its RLE, so the library's crop loop, box
        NMS and filtering run unchanged on it."""

        @torch.no_grad()
        def generate_masks(self, image: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
            """image H×W×3 uint8 → (masks N×H×W bool, predicted IoU N float32), in SAM's record order."""
            h, w = image.shape[:2]
            data = dict(self._generate_masks(image).items())
            packed = data.get("rles", np.zeros((0, (h * w + 7) // 8), np.uint8))
            masks = np.unpackbits(packed, axis=1, count=h * w).reshape(-1, h, w).view(bool)
            return masks, np.asarray(data.get("iou_preds", []), np.float32)

        def _process_batch(self, points, im_size, crop_box, orig_size) -> MaskData:
            # as the parent's, but the thresholded masks are stored bit-packed on the CPU in place of RLEs
            orig_h, orig_w = orig_size
            pts = torch.as_tensor(
                self.predictor.transform.apply_coords(points, im_size), device=self.predictor.device
            )
            labels = torch.ones(pts.shape[0], dtype=torch.int, device=pts.device)
            masks, iou_preds, _ = self.predictor.predict_torch(
                pts[:, None, :], labels[:, None], multimask_output=True, return_logits=True
            )
            data = MaskData(
                masks=masks.flatten(0, 1),
                iou_preds=iou_preds.flatten(0, 1),
                points=torch.as_tensor(points.repeat(masks.shape[1], axis=0)),
            )
            del masks
            if self.pred_iou_thresh > 0.0:
                data.filter(data["iou_preds"] > self.pred_iou_thresh)
            thr = self.predictor.model.mask_threshold
            data["stability_score"] = calculate_stability_score(
                data["masks"], thr, self.stability_score_offset
            )
            if self.stability_score_thresh > 0.0:
                data.filter(data["stability_score"] >= self.stability_score_thresh)
            data["masks"] = data["masks"] > thr
            data["boxes"] = batched_mask_to_box(data["masks"])
            keep = ~is_box_near_crop_edge(data["boxes"], crop_box, [0, 0, orig_w, orig_h])
            if not torch.all(keep):
                data.filter(keep)
            full = uncrop_masks(data["masks"], crop_box, orig_h, orig_w).cpu().numpy()  # N×H×W bool
            data["rles"] = torch.from_numpy(np.packbits(full.reshape(len(full), orig_h * orig_w), axis=1))
            del data["masks"]
            return data

    return BoolMaskGenerator


def _sam_proposals(image: np.ndarray, cfg: ProposalConfig, sam) -> Proposals:
    if sam is None:
        raise DglrsisError("SAM proposals need a SAM model (--sam vit_b --sam-checkpoint PATH)")
    h, w = image.shape[:2]
    gen = _mask_generator()(
        sam,
        points_per_side=cfg.points_per_side,
        points_per_batch=cfg.points_per_batch,
        pred_iou_thresh=cfg.pred_iou_thresh,
        stability_score_thresh=cfg.stability_score_thresh,
        crop_n_layers=cfg.crop_n_layers,
        min_mask_region_area=0,
    )
    masks, scores = gen.generate_masks(image)
    if not len(masks):
        empty = np.zeros((0, h, w), bool)
        return Proposals(
            empty, np.zeros((0, 4), np.float32), np.zeros(0, np.float32), np.zeros(0, int), "sam"
        )
    min_px = _min_area_px(cfg, h, w)
    areas = masks.reshape(len(masks), -1).sum(1)
    ok = areas >= max(min_px, 1)
    masks, scores = masks[ok], scores[ok]
    keep = mask_nms(masks, scores, cfg.nms_iou)
    masks, scores = masks[keep], scores[keep]
    areas = masks.reshape(len(masks), -1).sum(1)
    return Proposals(masks, masks_to_boxes(masks), scores, areas, "sam", np.zeros(len(masks), int))


def generate_proposals(image: np.ndarray, cfg: ProposalConfig | None = None, sam=None) -> Proposals:
    """Class-agnostic mask proposals for ``image`` (H×W×3 uint8, not modified); see module docstring."""
    cfg = cfg or ProposalConfig()
    if cfg.method not in METHODS:
        raise DglrsisError(f"unknown proposal method {cfg.method!r}; use one of {', '.join(METHODS)}")
    image = np.ascontiguousarray(image)
    if image.ndim != 3 or image.shape[2] != 3:
        raise DglrsisError(f"proposals need an H×W×3 image, got shape {image.shape}")
    props = _sam_proposals(image, cfg, sam) if cfg.method == "sam" else _superpixel_proposals(image, cfg)
    if len(props) > cfg.max_masks:
        finest = props.levels == props.levels.min() if len(props.levels) else np.zeros(len(props), bool)
        order = np.argsort(-(props.scores + finest * 10), kind="stable")[: cfg.max_masks]
        props = props.select(np.sort(order))
    return props
