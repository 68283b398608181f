"""Resumable, splittable evaluation loops.

Each sample's result — an OVSS per-image confusion matrix (``.npy``) or a referring sample's I/U/IoU and
modifiers (small ``.json``) — is written atomically to ``cache_dir/<settings hash>/<sample key>``; a rerun
skips samples already there (resume), and a changed setting lands in another hash folder, so stale
results are never reused. With several processes (``accelerate launch``) process ``i`` of ``n`` takes
``samples[i::n]``; after ``wait_for_everyone`` the main process aggregates every cached result, so the
totals are identical for 1 or N processes (confusion matrices and I/U counts just add).

Samples need a ``key`` (str), an ``image_path``, and ``label()`` (OVSS, H×W ints, 255 = ignore) or a
``mask`` property (RES, H×W bool). ``predict_fn(image H×W×3 uint8 or None, sample)`` returns H×W ints in
dataset index space (OVSS) or an H×W mask (RES, non-zero = foreground).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

from dglrsis.errors import DglrsisError
from dglrsis.io import atomic_path

from .metrics import (
    SemSegMetric,
    confusion,
    ignore_class,
    res_report,
    res_sample,
    resize_nearest,
    semseg_report,
)

RESOLUTIONS = ("native", "480")


def settings_hash(settings: dict | None) -> str:
    """12-hex-digit hash of a JSON-able settings dict (key order does not matter)."""
    return hashlib.sha1(json.dumps(settings or {}, sort_keys=True, default=str).encode()).hexdigest()[:12]


def _rank_world(rank: int | None, world: int | None):
    """(state, rank, world): explicit rank/world simulate processes; otherwise accelerate decides."""
    if rank is not None or world is not None:
        return None, rank or 0, world or 1
    from accelerate import PartialState

    state = PartialState()
    return state, state.process_index, state.num_processes


class _ImageCache:
    """Reads each image once for consecutive samples of the same image (RES: many sentences per image)."""

    def __init__(self, enabled: bool):
        self.enabled, self.path, self.array = enabled, None, None

    def __call__(self, path) -> np.ndarray | None:
        if not self.enabled:
            return None
        if path != self.path:
            from dglrsis.io import read_image

            self.path, self.array = path, read_image(path).array
        return self.array


def _loop(
    samples: Sequence,
    rank: int,
    world: int,
    cache: Path,
    suffix: str,
    work: Callable,
    progress: bool,
    desc: str,
) -> int:
    """Run ``work(sample, path)`` for this process's uncached samples; returns how many were computed."""
    from tqdm import tqdm

    done = 0
    for s in tqdm(samples[rank::world], desc=desc, disable=not progress or rank != 0):
        path = cache / f"{s.key}{suffix}"
        if not path.is_file():
            work(s, path)
            done += 1
    return done


def run_ovss(
    samples: Sequence,
    predict_fn: Callable,
    num_classes: int,
    class_names: list[str],
    cache_dir,
    settings: dict | None = None,
    read_images: bool = True,
    rank: int | None = None,
    world: int | None = None,
    progress: bool = True,
    background: int | None = None,
) -> dict | None:
    """Score OVSS predictions with detectron2 semseg metrics over ``num_classes`` classes.

    Returns the report on the main process, None on the others: ``mIoU, mACC, fwIoU, pACC, per_class, n,
    computed``; with ``background`` (the background class index of a dataset that has one, labels then
    carrying it) the metrics come twice instead, under ``background_scored`` (background is a class like
    any other) and ``background_ignored`` (ground-truth background pixels are not scored, RSKT-Seg's
    protocol), both from the same cached matrices. ``read_images=False`` passes ``None`` as the image
    (saved-prediction scoring).
    """
    if len(class_names) != num_classes:
        raise DglrsisError(f"{len(class_names)} class names for {num_classes} classes")
    state, rank, world = _rank_world(rank, world)
    cache = Path(cache_dir) / settings_hash({**(settings or {}), "task": "ovss", "num_classes": num_classes})
    images = _ImageCache(read_images)

    def work(s, path):
        gt = np.asarray(s.label())
        pred = np.asarray(predict_fn(images(s.image_path), s))
        if pred.shape != gt.shape:
            raise DglrsisError(f"prediction for {s.key} is {pred.shape}, label is {gt.shape} (H×W)")
        with atomic_path(path, suffix=".npy") as tmp:
            np.save(tmp, confusion(pred, gt, num_classes))

    computed = _loop(samples, rank, world, cache, ".npy", work, progress, "ovss")
    if state is not None:
        state.wait_for_everyone()
    if rank != 0:
        return None
    metric = SemSegMetric(class_names)
    for s in samples:
        metric.add_matrix(np.load(cache / f"{s.key}.npy"))
    counts = {"n": len(samples), "computed": computed}
    if background is None:
        return {**metric.report(), **counts}
    return {
        "background_scored": metric.report(),
        "background_ignored": semseg_report(ignore_class(metric.conf, background), class_names),
        **counts,
    }


def run_res(
    samples: Sequence,
    predict_fn: Callable,
    cache_dir,
    resolution: str = "native",
    settings: dict | None = None,
    read_images: bool = True,
    rank: int | None = None,
    world: int | None = None,
    progress: bool = True,
) -> dict | None:
    """Score referring masks with RMSIN metrics at ``native`` size or ``480``×480.

    At 480 both masks are nearest-resized.

    Returns ``mIoU, oIoU, precision, n, by_modifier, computed, resolution`` on the main process.
    """
    if resolution not in RESOLUTIONS:
        raise DglrsisError(f"resolution must be one of {RESOLUTIONS}, got {resolution!r}")
    state, rank, world = _rank_world(rank, world)
    cache = Path(cache_dir) / settings_hash({**(settings or {}), "task": "res", "resolution": resolution})
    images = _ImageCache(read_images)

    def work(s, path):
        gt = np.asarray(s.mask) != 0
        pred = np.asarray(predict_fn(images(s.image_path), s)) != 0
        if pred.shape != gt.shape:
            raise DglrsisError(f"prediction for sentence {s.key} is {pred.shape}, target is {gt.shape} (H×W)")
        if resolution == "480":
            gt, pred = resize_nearest(gt), resize_nearest(pred)
        row = {**res_sample(pred, gt), "modifiers": list(s.modifiers), "category": s.category}
        with atomic_path(path, suffix=".json") as tmp:
            tmp.write_text(json.dumps(row))

    computed = _loop(samples, rank, world, cache, ".json", work, progress, "res")
    if state is not None:
        state.wait_for_everyone()
    if rank != 0:
        return None
    rows = [json.loads((cache / f"{s.key}.json").read_text()) for s in samples]
    return {**res_report(rows), "computed": computed, "resolution": resolution}
