"""GLD, image side: class-agnostic mask proposals.

- ``sam``: segment-anything's automatic mask generator (points batched, thresholds configurable), keeping
  each boolean mask cropped to its box instead of round-tripping every candidate through RLE.
- ``slic`` / ``felzenszwalb``: weight-free superpixels from scikit-image, merged bottom-up into a
  hierarchy on a region-adjacency graph of mean colours (``skimage.graph.rag_mean_color`` +
  ``cut_threshold`` at several thresholds), so that whole objects and whole land-cover regions each
  appear as one proposal at some level. The finest level is always kept, so every pixel is covered.
  Objects smaller than a superpixel (a 8×12 px vehicle, a windmill's 2 px blades) never get a boundary
  of their own there, so :func:`small_object_proposals` adds the compact regions that differ in colour
  from their local background (the median colour of a ~28 px neighbourhood) at a few contrast cuts, as
  they are and with 1 px gaps closed (a car's dark roof between its light bonnet and boot). SAM needs
  neither.

All proposals then go through the same clean-up: tiny masks (< ``min_area``) dropped, duplicates removed
by box-overlap prefilter + mask IoU non-maximum suppression, capped at ``max_masks`` by score. Proposals are
held compactly (:class:`dglrsis.masks.Proposals`: boxes + cropped masks), so memory grows with the pixels,
never with regions × pixels.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import numpy as np

from .errors import DglrsisError
from .masks import Proposals, crop_to_box, label_regions, mask_nms

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
    small_objects: bool = True  # superpixels: also propose compact regions that stand out from their local
    # background in colour (objects smaller than a superpixel: vehicles, small ships, windmills); ablation
    contrast_thresholds: tuple = (35.0, 45.0, 60.0)  # small objects: colour contrast cuts (0–255), a set each
    contrast_window: int = 28  # small objects: side (px) of the median window giving the local background
    small_max_area: int = 2500  # small objects: larger regions are left to the superpixel hierarchy (pixels)
    points_per_side: int = 32  # SAM: grid of point prompts
    points_per_batch: int = 64  # SAM: prompts per decoder batch
    pred_iou_thresh: float = 0.86  # SAM: predicted-IoU filter
    stability_score_thresh: float = 0.92  # SAM: stability filter
    crop_n_layers: int = 0  # SAM: extra crop layers
    min_area: float = 0.0002  # drop smaller masks: pixels if ≥ 1, else a fraction (see _min_area_px)
    nms_iou: float = 0.9  # mask-IoU above which the lower-scored duplicate is dropped
    max_masks: int = 600  # keep at most this many (per 512² for superpixels; the finest level always kept)


def pixel_coverage(props: Proposals) -> np.ndarray:
    """H×W bool: pixels covered by at least one proposal."""
    return props.coverage()


def _superpixels(image: np.ndarray, cfg: ProposalConfig) -> np.ndarray:
    from skimage.segmentation import felzenszwalb, slic

    h, w = image.shape[:2]
    if cfg.method == "slic":
        n = max(4, int(cfg.slic_segments * h * w / 512**2))
        return slic(
            image, n_segments=n, compactness=cfg.slic_compactness, start_label=0, enforce_connectivity=True
        )
    return felzenszwalb(image, scale=cfg.fz_scale, sigma=cfg.fz_sigma, min_size=cfg.fz_min_size)


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


SMALL_OBJECT_LEVEL = 99  # the level id of small-object proposals (above every hierarchy level)


def local_contrast(image: np.ndarray, window: int = 28) -> np.ndarray:
    """``H×W`` float32: the largest per-channel difference (0–255) between each pixel of ``image`` (H×W×3)
    and its local background, the median colour over a ``window``-pixel neighbourhood. The median is taken
    on a 4× block-averaged copy (``window / 4`` cells a side) and upsampled bilinearly: the background of
    a small object is smooth, and this costs ~16× less than a full-resolution median filter."""
    from scipy.ndimage import median_filter, zoom

    f = image.astype(np.float32)
    h, w = f.shape[:2]
    k = 4 if min(h, w) >= 32 else 1
    hk, wk = h // k, w // k
    small = f[: hk * k, : wk * k].reshape(hk, k, wk, k, 3).mean((1, 3))
    size = max(3, int(round(window / k)) | 1)
    bg = np.stack(
        [
            zoom(
                median_filter(small[..., c], size=size, mode="nearest"),
                (h / hk, w / wk),
                order=1,
                mode="nearest",
                grid_mode=True,
            )
            for c in range(3)
        ],
        -1,
    )
    return np.abs(f - bg[:h, :w]).max(-1)


def small_object_proposals(image: np.ndarray, cfg: ProposalConfig, min_px: int) -> Proposals:
    """Compact regions of ``image`` (H×W×3) that stand out from their local background: for every cut of
    ``cfg.contrast_thresholds``, the 8-connected components of :func:`local_contrast` > cut, as they are and
    after a 3×3 closing with holes filled, of ``min_px``..``cfg.small_max_area`` pixels (level
    :data:`SMALL_OBJECT_LEVEL`)."""
    from scipy.ndimage import binary_closing, label

    h, w = image.shape[:2]
    contrast = local_contrast(image, cfg.contrast_window)
    eight = np.ones((3, 3), bool)
    boxes, crops = [], []
    for cut in cfg.contrast_thresholds:
        hot = contrast > cut
        for m in (hot, fill_holes(binary_closing(hot, eight))):
            lab, n = label(m, eight)
            if n == 0:
                continue
            areas = np.bincount(lab.ravel(), minlength=n + 1)
            b, c, ids = label_regions(np.where(lab > 0, lab - 1, -1))
            ok = [k for k, i in enumerate(ids) if min_px <= areas[i + 1] <= cfg.small_max_area]
            boxes.append(b[ok])
            crops += [c[k] for k in ok]
    if not crops:
        return Proposals.empty(h, w, cfg.method)
    boxes = np.concatenate(boxes)
    return Proposals(
        boxes, crops, np.zeros(len(crops)), (h, w), cfg.method, np.full(len(crops), SMALL_OBJECT_LEVEL)
    )


def _homogeneity(image: np.ndarray, props: Proposals) -> np.ndarray:
    """Score in (0, 1]: 1 / (1 + mean per-channel colour std / 32) of each mask."""
    out = np.zeros(len(props), np.float32)
    for i in range(len(props)):
        px = props.values_in(i, image).astype(np.float32)
        out[i] = 1.0 / (1.0 + float(px.std(0).mean()) / 32.0) if len(px) else 0.0
    return out


REFERENCE_AREA = 512 * 512  # superpixel settings are set for 512² images and scale with the pixels above it


def _min_area_px(cfg: ProposalConfig, h: int, w: int) -> int:
    """``min_area`` in pixels: a fraction of the image for SAM; for superpixels a fraction of at most a 512²
    image, so a large scene keeps the same small objects as its tiles do."""
    if cfg.min_area >= 1:
        return int(cfg.min_area)
    return int(cfg.min_area * (h * w if cfg.method == "sam" else min(h * w, REFERENCE_AREA)))


def _max_masks(cfg: ProposalConfig, h: int, w: int) -> int:
    """``max_masks`` for an image: as set for SAM; for superpixels per 512² of image (never fewer)."""
    if cfg.method == "sam":
        return cfg.max_masks
    return int(round(cfg.max_masks * max(1.0, h * w / REFERENCE_AREA)))


def fill_holes(mask: np.ndarray) -> np.ndarray:
    """``scipy.ndimage.binary_fill_holes`` (4-connected background) of a 2-D bool mask, computed by one
    connected-component labelling of the background instead of iterated dilations (≈ 20× faster)."""
    from scipy.ndimage import label

    bg = ~mask
    if not bg.any():
        return mask.copy()
    comp, _ = label(bg)
    edge = np.unique(np.concatenate([comp[0], comp[-1], comp[:, 0], comp[:, -1]]))
    return mask | (bg & ~np.isin(comp, edge))


def _add_filled(props: Proposals, min_px: int) -> Proposals:
    """Add each region with its holes filled when that adds ≥ 10 % area: ring-shaped objects (track
    fields, roundabouts, stadiums, tanks with a rim) then appear whole, not only as their outer ring."""
    boxes, crops = [], []
    for box, crop, area in zip(props.boxes, props.crops, props.areas, strict=True):
        if area < min_px:
            continue
        filled = fill_holes(crop)
        if filled.sum() >= 1.1 * area:
            boxes.append(box)
            crops.append(filled)
    if not crops:
        return props
    levels = np.concatenate([props.levels, np.full(len(crops), props.levels.max() + 1)])
    return Proposals(
        np.concatenate([props.boxes, np.array(boxes)]),
        props.crops + crops,
        np.zeros(len(props) + len(crops)),
        props.shape,
        props.source,
        levels,
    )


def _superpixel_proposals(image: np.ndarray, cfg: ProposalConfig) -> Proposals:
    h, w = image.shape[:2]
    maps, levels = superpixel_hierarchy(image, cfg)
    if len(maps) > 1:  # raw superpixels are fragments; the merged levels are the proposals
        maps, levels = maps[1:], levels[1:]
    min_px = _min_area_px(cfg, h, w)
    boxes, crops, lv = [], [], []
    for i, (lab, lvl) in enumerate(zip(maps, levels, strict=True)):
        b, c, _ = label_regions(lab)
        if i > 0:  # the finest level is kept whole: it partitions the image, so every pixel is covered
            keep = [k for k, m in enumerate(c) if np.count_nonzero(m) >= min_px]
            b, c = b[keep], [c[k] for k in keep]
        boxes.append(b)
        crops += c
        lv += [lvl] * len(c)
    props = Proposals(np.concatenate(boxes), crops, np.zeros(len(crops)), (h, w), cfg.method, np.array(lv))
    if cfg.fill_holes:
        props = _add_filled(props, min_px)
    props.scores = scores = _homogeneity(image, props)
    levels = props.levels
    base = levels == levels.min()
    coarse = np.flatnonzero(~base)
    keep = np.flatnonzero(base)
    if len(coarse):  # a merged region identical to a finer one is a duplicate
        both = np.concatenate([keep, coarse])
        prio = np.concatenate([np.full(len(keep), 2.0), scores[coarse]])
        kept = both[mask_nms(props.select(both), prio, cfg.nms_iou)]
        keep = np.sort(kept)
    props = props.select(keep)
    if cfg.small_objects:
        small = small_object_proposals(image, cfg, min_px)
        if len(small):
            small.scores = _homogeneity(image, small)
            both = Proposals.concat([props, small], (h, w), cfg.method)
            prio = np.concatenate([np.full(len(props), 2.0), small.scores])  # the hierarchy's regions first
            props = both.select(np.sort(mask_nms(both, prio, cfg.nms_iou)))
    return props


@functools.cache
def _mask_generator():
    """segment-anything's automatic mask generator, keeping each boolean mask it thresholds cropped to its
    box instead of encoding every candidate to RLE and decoding the survivors into full-image masks. Same
    masks, same order, same filters (predicted IoU, stability, crop edge, box NMS); only
    ``min_mask_region_area=0``."""
    import torch
    from segment_anything import SamAutomaticMaskGenerator
    from segment_anything.utils.amg import (
        MaskData,
        batched_mask_to_box,
        calculate_stability_score,
        is_box_near_crop_edge,
    )

    class CroppedMaskGenerator(SamAutomaticMaskGenerator):
        """Only ``_process_batch`` differs from the library's: the records' ``"rles"`` slot holds each
        mask as ``(box XYXY in image pixels, bool crop)`` instead of its RLE, so the library's crop loop,
        box NMS and filtering run unchanged on it."""

        @torch.no_grad()
        def generate_masks(self, image: np.ndarray) -> tuple[np.ndarray, list, np.ndarray]:
            """image H×W×3 uint8 → (boxes N×4, crops, predicted IoU N float32), in SAM's record order."""
            data = dict(self._generate_masks(image).items())
            recs = data.get("rles", [])
            boxes = np.array([b for b, _ in recs], np.int64).reshape(-1, 4)
            return boxes, [c for _, c in recs], np.asarray(data.get("iou_preds", []), np.float32)

        def _process_batch(self, points, im_size, crop_box, orig_size) -> MaskData:
            # as the parent's, but the thresholded masks are stored cropped to their boxes in place of RLEs
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
            x0, y0 = int(crop_box[0]), int(crop_box[1])
            data["rles"] = [crop_to_box(m, x0, y0) for m in data["masks"].cpu().numpy()]
            del data["masks"]
            return data

    return CroppedMaskGenerator


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
    boxes, crops, scores = gen.generate_masks(image)
    props = Proposals(boxes, crops, scores, (h, w), "sam", np.zeros(len(crops), int))
    props = props.select(np.flatnonzero(props.areas >= max(_min_area_px(cfg, h, w), 1)))
    return props.select(mask_nms(props, props.scores, cfg.nms_iou))  # best first, as SAM ranks them


def generate_proposals(image: np.ndarray, cfg: ProposalConfig | None = None, sam=None) -> Proposals:
    """Class-agnostic mask proposals for ``image`` (H×W×3 uint8, not modified); see module docstring."""
    cfg = cfg or ProposalConfig()
    if cfg.method not in METHODS:
        raise DglrsisError(f"unknown proposal method {cfg.method!r}; use one of {', '.join(METHODS)}")
    image = np.ascontiguousarray(image)
    if image.ndim != 3 or image.shape[2] != 3:
        raise DglrsisError(f"proposals need an H×W×3 image, got shape {image.shape}")
    props = _sam_proposals(image, cfg, sam) if cfg.method == "sam" else _superpixel_proposals(image, cfg)
    cap = _max_masks(cfg, *image.shape[:2])
    if len(props) > cap:
        finest = props.levels == props.levels.min() if len(props.levels) else np.zeros(len(props), bool)
        order = np.argsort(-(props.scores + finest * 10), kind="stable")[:cap]
        props = props.select(np.sort(order))
    return props
