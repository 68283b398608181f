"""Resumable, splittable evaluation loops.

Each sample's result — an OVSS per-image confusion matrix (``.npy``) or a referring sample's I/U/IoU and
modifiers (small ``.json``) — is written atomically to ``cache_dir/<settings hash>/<key>-<data hash>``;
a rerun skips samples already there (resume). The settings hash covers every setting; the data hash
covers the files a result depends on (image, label, saved prediction: name, size and mtime) and a
referring sample's annotation and text, so a changed setting *or* a repainted label lands in another
entry and stale results are never reused. An unreadable entry (e.g. truncated by a crash) is recomputed
with a one-line note on stderr. Two runs on one cache share the work through per-sample claim files.
A report in which no ground-truth pixel was scored is an error.

With several processes (``accelerate launch``) process ``i`` of ``n`` takes
``samples[i::n]``; after ``wait_for_everyone`` the main process aggregates every cached result, so the
totals are identical for 1 or N processes (confusion matrices and I/U counts just add).

Samples need a ``key`` (str), an ``image_path``, and ``label()`` (OVSS, H×W ints, 255 = ignore) or a
``mask`` property (RES, H×W bool). ``predict_fn(image H×W×3 uint8 or None, sample)`` returns H×W ints in
dataset index space (OVSS) or an H×W mask (RES, non-zero = foreground).
"""

from __future__ import annotations

import hashlib
import json
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

from dglrsis.errors import DglrsisError
from dglrsis.io import atomic_path

from .metrics import (
    IGNORE,
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


def image_hw(path) -> tuple[int, int]:
    """(height, width) of an image file from its header."""
    from PIL import Image

    try:
        with Image.open(path) as im:
            return im.height, im.width
    except OSError as exc:
        raise DglrsisError(f"cannot read image {path}: {exc}") from None


def data_hash(sample, depends: Callable | None = None) -> str:
    """12 hex digits over what ``sample``'s result depends on: its image/label files and ``depends(sample)``
    files (name, size, mtime), its annotation (``segmentation``) and text."""
    h = hashlib.sha1()
    files = [getattr(sample, a, None) for a in ("image_path", "label_path")]
    for p in [f for f in files if f is not None] + list(depends(sample) if depends else []):
        try:
            st = Path(p).stat()
            h.update(f"{Path(p).name}:{st.st_size}:{st.st_mtime_ns};".encode())
        except OSError:
            h.update(f"{Path(p).name}:missing;".encode())
    for a in ("segmentation", "text"):
        if hasattr(sample, a):
            h.update(json.dumps(getattr(sample, a), sort_keys=True, default=str).encode())
    return h.hexdigest()[:12]


def _read_entry(path: Path, suffix: str):
    """A cached result, or None when it is missing or unreadable."""
    if not path.is_file():
        return None
    try:
        if suffix == ".npy":
            conf = np.load(path, allow_pickle=False)
            return conf if conf.ndim == 2 and conf.shape[0] == conf.shape[1] else None
        row = json.loads(path.read_text())
        return row if isinstance(row, dict) and {"I", "U"} <= set(row) else None
    except (OSError, ValueError, EOFError):
        return None


def _note_corrupt(path: Path) -> None:
    print(f"note: cache entry {path} was unreadable; recomputed", file=sys.stderr)


CLAIM_STALE_S = 3600.0  # a claim older than this (or whose process has gone) is taken over
CLAIM_POLL_S = 0.5


def _claim_live(claim: Path) -> bool:
    """Whether another run still holds ``claim`` (``pid@host``): its process is alive, or it is on another
    host and younger than :data:`CLAIM_STALE_S`."""
    import os
    import socket
    import time

    try:
        owner = claim.read_text().strip()
        age = time.time() - claim.stat().st_mtime
    except OSError:
        return False
    pid, _, host = owner.partition("@")
    if age > CLAIM_STALE_S:
        return False
    if host != socket.gethostname() or not pid.isdigit():
        return True
    if int(pid) == os.getpid():
        return False
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return False
    except OSError:
        return True
    return True


def _try_claim(claim: Path) -> bool:
    """Create ``claim`` exclusively (taking over a dead one); False when another live run holds it."""
    import os
    import socket

    claim.parent.mkdir(parents=True, exist_ok=True)
    for _ in range(2):
        try:
            fd = os.open(claim, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        except FileExistsError:
            if _claim_live(claim):
                return False
            claim.unlink(missing_ok=True)
            continue
        with os.fdopen(fd, "w") as f:
            f.write(f"{os.getpid()}@{socket.gethostname()}")
        return True
    return False


def _loop(samples, rank, world, entry: Callable, suffix, work, progress, desc) -> int:
    """Run ``work(sample, path)`` for this process's samples without a readable cache entry; returns how
    many were computed. Concurrent runs on one cache share the work: a sample is computed under an
    exclusive ``<entry>.claim`` file; samples claimed by another live run are waited for, and taken
    over if that run goes away without writing them."""
    import time

    from tqdm import tqdm

    done = 0
    pending = list(samples[rank::world])
    bar = tqdm(total=len(pending), desc=desc, disable=not progress or rank != 0)
    while pending:
        waiting = []
        for s in pending:
            path = entry(s)
            if _read_entry(path, suffix) is not None:
                bar.update(1)
                continue
            claim = path.with_name(path.name + ".claim")
            if not _try_claim(claim):
                waiting.append(s)
                continue
            try:
                if _read_entry(path, suffix) is None:  # not written meanwhile by the claim's last owner
                    if path.exists():
                        _note_corrupt(path)
                    work(s, path)
                    done += 1
            finally:
                claim.unlink(missing_ok=True)
            bar.update(1)
        if waiting:
            time.sleep(CLAIM_POLL_S)
        pending = waiting
    bar.close()
    return done


def _collect(samples, entry: Callable, suffix: str, work: Callable) -> list:
    """Every sample's cached result (main process); an entry unreadable now is recomputed here."""
    out = []
    for s in samples:
        path = entry(s)
        value = _read_entry(path, suffix)
        if value is None:
            _note_corrupt(path)
            work(s, path)
            value = _read_entry(path, suffix)
        out.append(value)
    return out


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
    depends: Callable | None = None,
    background: int | None = None,
) -> dict | None:
    """Score OVSS predictions with detectron2 semseg metrics over ``num_classes`` classes.

    Returns the report on the main process, None on the others: ``mIoU, mACC, fwIoU, pACC, per_class, n,
    computed``; with ``background`` (the background class index of a dataset that has one, labels then
    carrying it) the metrics come twice instead, under ``background_scored`` (background is a class like
    any other) and ``background_ignored`` (ground-truth background pixels are not scored, RSKT-Seg's
    protocol), both from the same cached matrices. ``read_images=False`` passes ``None`` as the image
    (saved-prediction scoring).
    ``depends(sample)``: further files a result depends on (saved predictions), part of the cache key.
    """
    if len(class_names) != num_classes:
        raise DglrsisError(f"{len(class_names)} class names for {num_classes} classes")
    state, rank, world = _rank_world(rank, world)
    cache = Path(cache_dir) / settings_hash({**(settings or {}), "task": "ovss", "num_classes": num_classes})
    images = _ImageCache(read_images)

    def work(s, path):
        gt = np.asarray(s.label())
        over = (gt != IGNORE) & (gt >= num_classes)
        if over.any():
            raise DglrsisError(
                f"label of {s.key} has {int(over.sum())} pixels with class {int(gt[over].max())} ≥ the "
                f"{num_classes} classes named (wrong class file or label encoding?)"
            )
        pred = np.asarray(predict_fn(images(s.image_path), s))
        if pred.shape != gt.shape:
            raise DglrsisError(f"prediction for {s.key} is {pred.shape}, label is {gt.shape} (H×W)")
        with atomic_path(path, suffix=".npy") as tmp:
            np.save(tmp, confusion(pred, gt, num_classes))

    def entry(s):
        return cache / f"{s.key}-{data_hash(s, depends)}.npy"

    computed = _loop(samples, rank, world, entry, ".npy", work, progress, "ovss")
    if state is not None:
        state.wait_for_everyone()
    if rank != 0:
        return None
    metric = SemSegMetric(class_names)
    for conf in _collect(samples, entry, ".npy", work):
        metric.add_matrix(conf)
    if not metric.conf[:-1, :-1].sum():
        raise DglrsisError(
            f"no ground-truth pixel was scored in {len(samples)} samples (every label pixel is ignored): "
            f"check the labels and the background policy"
        )
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
    depends: Callable | None = None,
) -> dict | None:
    """Score referring masks with RMSIN metrics at ``native`` size or ``480``×480.

    At 480 prediction and target are each resized to 480×480 with PIL NEAREST, as RMSIN (its
    ``T.Resize(480, 480)``). A prediction must have the target's size or the image's; when the image and
    its mask differ (real RRSIS-D has 800×801 and 800×787 JPEGs with 800×800 masks), ``native``
    nearest-resizes the prediction to the mask (RMSIN, too, stretches both to one grid), ``480`` resizes
    each to 480×480 exactly as RMSIN.

    Returns ``mIoU, oIoU, precision, n, by_modifier, computed, resolution`` on the main process.
    """
    if resolution not in RESOLUTIONS:
        raise DglrsisError(f"resolution must be one of {RESOLUTIONS}, got {resolution!r}")
    state, rank, world = _rank_world(rank, world)
    cache = Path(cache_dir) / settings_hash({**(settings or {}), "task": "res", "resolution": resolution})
    images = _ImageCache(read_images)

    def work(s, path):
        gt = np.asarray(s.mask) != 0
        image = images(s.image_path)
        pred = np.asarray(predict_fn(image, s)) != 0
        if pred.shape != gt.shape:
            hw = image.shape[:2] if image is not None else image_hw(s.image_path)
            if pred.shape != hw:
                raise DglrsisError(
                    f"prediction for sentence {s.key} is {pred.shape}, target is {gt.shape} and image "
                    f"{hw} (H×W)"
                )
            if resolution == "native":  # image and mask sizes differ (real RRSIS-D: 801×800 vs 800×800)
                pred = resize_nearest(pred, *gt.shape)
        if resolution == "480":
            gt, pred = resize_nearest(gt), resize_nearest(pred)
        row = {**res_sample(pred, gt), "modifiers": list(s.modifiers), "category": s.category}
        with atomic_path(path, suffix=".json") as tmp:
            tmp.write_text(json.dumps(row))

    def entry(s):
        return cache / f"{s.key}-{data_hash(s, depends)}.json"

    computed = _loop(samples, rank, world, entry, ".json", work, progress, "res")
    if state is not None:
        state.wait_for_everyone()
    if rank != 0:
        return None
    rows = _collect(samples, entry, ".json", work)
    return {**res_report(rows), "computed": computed, "resolution": resolution}
