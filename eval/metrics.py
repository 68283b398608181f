"""Segmentation metrics.

Semantic segmentation — detectron2 ``SemSegEvaluator`` definitions: a (K+1)×(K+1) confusion matrix
``conf[pred, gt]`` whose last column collects ignored ground truth (255); ``tp = diag``,
``pos_gt = column sums``, ``pos_pred = row sums`` (over the K classes); a class enters mACC/mIoU only when
present in the ground truth; fwIoU weights IoU by ground-truth frequency; pACC = Σtp / Σpos_gt. ×100.

Referring segmentation — RMSIN ``test.py``: per sample I and U; IoU = I/U and **0 when U = 0** (so an
empty prediction of an empty target scores 0, RMSIN's convention); mIoU = mean IoU; oIoU = ΣI/ΣU, which
RMSIN prints as ``nan`` when every union is empty — reported here as ``None`` (JSON ``null``, JSON has no
NaN); precision@t = share of samples with IoU ≥ t. ×100. At ``--resolution 480`` prediction and target
are each resized to 480×480 with PIL's ``Image.resize(..., NEAREST)`` — what RMSIN's
``T.Resize(480, 480)`` does to its target (torchvision's resize of a PIL image calls PIL).
"""

from __future__ import annotations

import numpy as np

from dglrsis.errors import DglrsisError

IGNORE = 255
THRESHOLDS = (0.5, 0.6, 0.7, 0.8, 0.9)
CHUNK_PIXELS = 1 << 18  # pixels counted (or decoded) at a time: bounds the temporaries of a large image


def confusion(pred: np.ndarray, gt: np.ndarray, num_classes: int, ignore: int = IGNORE) -> np.ndarray:
    """(K+1)×(K+1) int64 confusion matrix ``conf[pred, gt]``; ignored gt goes to the last column.

    Counted :data:`CHUNK_PIXELS` pixels at a time, so the temporaries are bounded by the chunk, not the
    image: an image of any size costs no memory beyond its two input arrays.
    """
    pred, gt = np.asarray(pred), np.asarray(gt)
    if pred.size != gt.size:
        raise DglrsisError(f"prediction and ground truth differ in size: {pred.size} vs {gt.size} pixels")
    if pred.size and (pred.min() < 0 or pred.max() >= num_classes):
        raise DglrsisError(
            f"predictions must be class indices in [0, {num_classes}); got {pred.min()}…{pred.max()}"
        )
    pred, gt = pred.reshape(-1), gt.reshape(-1)  # views of contiguous arrays
    k = num_classes + 1
    conf = np.zeros(k * k, np.int64)
    for start in range(0, pred.size, CHUNK_PIXELS):
        p = pred[start : start + CHUNK_PIXELS].astype(np.int64)
        g = gt[start : start + CHUNK_PIXELS].astype(np.int64)
        g[(g == ignore) | (g < 0) | (g >= num_classes)] = num_classes
        conf += np.bincount(p * k + g, minlength=k * k)
    return conf.reshape(k, k)


class SemSegMetric:
    """Accumulating (K+1)×(K+1) confusion matrix (detectron2 ``SemSegEvaluator``).

    ``update(pred, gt)`` adds one image (H×W ints; pred in [0, K), gt in [0, K) or 255 = ignore);
    ``metric_a + metric_b`` adds matrices, so per-image matrices can be cached and summed in any grouping.
    """

    def __init__(self, class_names: list[str], ignore: int = IGNORE):
        self.class_names = list(class_names)  # K class names, index order
        self.ignore = ignore  # ground-truth value that is not scored
        k = len(self.class_names) + 1
        self.conf = np.zeros((k, k), np.int64)  # conf[pred, gt]; last column = ignored gt

    def update(self, pred: np.ndarray, gt: np.ndarray) -> np.ndarray:
        """Add one H×W prediction/ground-truth pair; returns that image's confusion matrix."""
        c = confusion(pred, gt, len(self.class_names), self.ignore)
        self.conf += c
        return c

    def add_matrix(self, conf: np.ndarray) -> None:
        """Add a (cached) confusion matrix of the same size."""
        conf = np.asarray(conf)
        if conf.shape != self.conf.shape:
            raise DglrsisError(f"confusion matrix is {conf.shape}, expected {self.conf.shape}")
        self.conf += conf.astype(np.int64)

    def __add__(self, other: SemSegMetric) -> SemSegMetric:
        out = SemSegMetric(self.class_names, self.ignore)
        out.conf = self.conf + other.conf
        return out

    def report(self) -> dict:
        """See :func:`semseg_report`."""
        return semseg_report(self.conf, self.class_names)


def semseg_report(conf: np.ndarray, class_names: list[str]) -> dict:
    """mIoU, mACC, fwIoU, pACC and per-class IoU/Acc (None for classes absent from the ground truth)."""
    conf = np.asarray(conf, dtype=np.float64)
    tp = conf.diagonal()[:-1]
    pos_gt = conf[:-1, :-1].sum(0)
    pos_pred = conf[:-1, :-1].sum(1)
    acc_valid = pos_gt > 0
    union = pos_gt + pos_pred - tp
    iou_valid = acc_valid & (union > 0)
    acc = np.full(len(tp), np.nan)
    iou = np.full(len(tp), np.nan)
    acc[acc_valid] = tp[acc_valid] / pos_gt[acc_valid]
    iou[iou_valid] = tp[iou_valid] / union[iou_valid]
    total = pos_gt.sum()
    weights = pos_gt / total if total else np.zeros_like(pos_gt)

    def pct(x):
        return None if x is None or not np.isfinite(x) else round(float(100 * x), 4)

    return {
        "mIoU": pct(iou[iou_valid].mean() if iou_valid.any() else np.nan),
        "mACC": pct(acc[acc_valid].mean() if acc_valid.any() else np.nan),
        "fwIoU": pct((iou[iou_valid] * weights[iou_valid]).sum() if iou_valid.any() else np.nan),
        "pACC": pct(tp.sum() / total if total else np.nan),
        "per_class": {n: {"IoU": pct(iou[i]), "Acc": pct(acc[i])} for i, n in enumerate(class_names)},
    }


def ignore_class(conf: np.ndarray, index: int) -> np.ndarray:
    """The confusion matrix with ground-truth class ``index`` ignored: its column moved to the ignore column.

    Equal to the matrix of the same predictions against labels where ``index`` was set to 255: the class
    then leaves mIoU/mACC (no ground truth), and predicting it on another class's pixel still counts as
    that class's miss.
    """
    out = np.array(conf, dtype=np.int64, copy=True)
    out[:, -1] += out[:, index]
    out[:, index] = 0
    return out


def iou_counts(pred: np.ndarray, gt: np.ndarray) -> tuple[int, int]:
    """Intersection and union pixel counts of two masks (non-zero = foreground)."""
    p, g = np.asarray(pred) != 0, np.asarray(gt) != 0
    if p.shape != g.shape:
        raise DglrsisError(f"mask sizes differ: {p.shape} vs {g.shape}")
    return int(np.logical_and(p, g).sum()), int(np.logical_or(p, g).sum())


def res_sample(pred: np.ndarray, gt: np.ndarray) -> dict:
    """One referring sample: ``{"I", "U", "IoU"}`` with IoU = I/U, 0 when U = 0 (RMSIN)."""
    i, u = iou_counts(pred, gt)
    return {"I": i, "U": u, "IoU": i / u if u else 0.0}


def res_report(samples: list[dict]) -> dict:
    """``samples``: dicts with ``I``, ``U`` (optionally ``modifiers``) → mIoU, oIoU, precision, n, by kind."""

    def summarise(rows):
        if not rows:
            return {"mIoU": None, "oIoU": None, "precision": {str(t): None for t in THRESHOLDS}, "n": 0}
        ious = np.array([r["I"] / r["U"] if r["U"] > 0 else 0.0 for r in rows])
        si, su = sum(r["I"] for r in rows), sum(r["U"] for r in rows)
        return {
            "mIoU": round(100 * float(ious.mean()), 4),
            "oIoU": round(100 * si / su, 4) if su else None,  # RMSIN: nan
            "precision": {str(t): round(100 * float((ious >= t).mean()), 4) for t in THRESHOLDS},
            "n": len(rows),
        }

    out = summarise(samples)
    kinds = sorted({k for r in samples for k in r.get("modifiers") or []})
    if kinds:
        out["by_modifier"] = {
            k: summarise([r for r in samples if k in (r.get("modifiers") or [])]) for k in kinds
        }
    return out


def resize_nearest(mask: np.ndarray, height: int = 480, width: int = 480) -> np.ndarray:
    """Nearest-neighbour resize of an H×W array to ``height``×``width`` with PIL itself (dtype kept).

    ``Image.fromarray(mask).resize((width, height), Image.NEAREST)`` — bit-identical to RMSIN's target
    resize at 480×480 (torchvision ``F.resize(pil, (480, 480), NEAREST)`` calls exactly this). bool/uint8
    go through mode ``L``, other integers through mode ``I`` (int32).
    """
    from PIL import Image

    arr = np.asarray(mask)
    if arr.ndim != 2 or arr.size == 0:
        raise DglrsisError(f"resize_nearest expects a non-empty H×W array, got shape {arr.shape}")
    if arr.shape == (height, width):
        return arr.copy()
    if arr.dtype == bool or arr.dtype == np.uint8:
        im = Image.fromarray(arr.astype(np.uint8), mode="L")
    elif np.issubdtype(arr.dtype, np.integer) and arr.min() >= -(2**31) and arr.max() < 2**31:
        im = Image.fromarray(arr.astype(np.int32), mode="I")
    else:
        raise DglrsisError(f"resize_nearest expects bool or integer masks, got {arr.dtype}")
    return np.asarray(im.resize((width, height), Image.NEAREST)).astype(arr.dtype)
