"""``dglrsis eval ovss|res``: zero-shot evaluation on iSAID / OVRSISBench sets (OVSS) and RRSIS-D (RES).

Resumable (per-sample results cached under ``--cache``) and splittable over processes with
``accelerate launch -m dglrsis.cli eval …``. ``--predictions DIR`` scores saved predictions instead of
running the model: OVSS ``{image stem}.png`` single-channel in dataset index space, RES ``{sent_id}.png``
(non-zero = foreground). Without ``--cache`` saved predictions are scored afresh each time.

OVSS images go through the scene pipeline of ``segment`` (:meth:`dglrsis.Predictor.set_raster`): tiled
above the automatic size or with ``--tile N``, one pass with ``--no-tile``, so a raw full-size iSAID image
(up to about 4000×13000 px) costs the memory of a tile, not of the image. The report's ``input`` names the
protocol: ``raw`` (full images, one pass), ``raw-tiled`` (full images, some in tiles; ``tiling`` gives the
tile, overlap and count) or ``patches`` (the converted patches ``dglrsis convert isaid`` writes).
"""

from __future__ import annotations

import contextlib
import sys
import tempfile
from pathlib import Path

import numpy as np

from ..errors import DglrsisError
from .options import add_gvta_arguments, add_predictor_arguments, add_tile_arguments

OVSS_PROTOCOLS = ("background_scored", "background_ignored")  # report keys when the dataset has a background
HELP = "evaluate OVSS (iSAID, OVRSISBench sets) or RES (RRSIS-D); resumable, accelerate-splittable"


def add_arguments(parser) -> None:
    parser.add_argument("task", choices=("ovss", "res"))
    parser.add_argument(
        "--dataset",
        required=True,
        choices=("isaid", "ovrsisbench", "rrsisd"),
        help="ovss: isaid (raw or converted) or ovrsisbench (index PNGs + --classes-file); res: rrsisd",
    )
    parser.add_argument("--root", required=True, help="dataset folder")
    parser.add_argument("--split", default=None, help="split (default: val for ovss, test for res)")
    parser.add_argument(
        "--classes-file", help="ovrsisbench: class file (one class per line, synonyms by comma)"
    )
    parser.add_argument(
        "--set",
        choices=("dlrsd", "isaid", "loveda", "potsdam", "uavid", "udd5", "vaihingen", "vdd"),
        help="ovrsisbench: read this set in RSKT-Seg's published layout under --root (split all|train|val; "
        "default class file prompts/vocab/<set>.txt)",
    )
    parser.add_argument("--limit", type=int, help="evaluate only the first N samples")
    parser.add_argument("--out", help="report JSON (written atomically)")
    parser.add_argument("--predictions", help="score saved predictions from this folder instead of the model")
    parser.add_argument(
        "--cache",
        help="per-sample result cache (model mode default: <out>.cache or "
        "./.eval_cache; predictions mode default: none)",
    )
    parser.add_argument(
        "--resolution",
        default="native",
        choices=("native", "480"),
        help="res: compare at the image's size or both masks nearest-resized to 480×480 (RMSIN)",
    )
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    add_tile_arguments(parser)
    add_predictor_arguments(parser)
    add_gvta_arguments(parser)


def read_prediction(folder: str | Path, key: str) -> np.ndarray:
    """``folder/{key}.png`` → H×W int array (single-channel values; RGB is converted to L)."""
    from PIL import Image

    path = Path(folder) / f"{key}.png"
    if not path.is_file():
        raise DglrsisError(f"missing prediction {path}")
    try:
        with Image.open(path) as im:
            return np.asarray(im if im.mode in ("L", "P", "I", "I;16") else im.convert("L")).astype(np.int64)
    except OSError as exc:
        raise DglrsisError(f"unreadable prediction {path}: {exc}") from None


def _ovss_data(args):
    """(samples, class names incl. index order, model query names, label offset).

    iSAID labels keep their background (index 0): the report scores it both ways (``run_ovss``).
    """
    if args.dataset == "isaid":
        from ..eval import isaid

        samples = isaid.isaid_samples(args.root, args.split, "include", args.limit)
        return samples, isaid.ISAID_NAMES, isaid.query_names(), 1
    if args.dataset == "ovrsisbench":
        from ..eval import ovrsisbench

        if args.set:
            names = ovrsisbench.class_names(args.classes_file or ovrsisbench.bundled_class_file(args.set))
            split = (
                "all" if args.split == "val" and "val" not in ovrsisbench.LAYOUTS[args.set] else args.split
            )
            samples, unpaired = ovrsisbench.published_samples(args.root, args.set, split, args.limit)
            if unpaired:
                print(f"note: {unpaired} {args.set} files without a partner skipped", file=sys.stderr)
            return samples, names, names, 0
        if not args.classes_file:
            raise DglrsisError("--dataset ovrsisbench needs --classes-file (or --set NAME)")
        names = ovrsisbench.class_names(args.classes_file)
        return ovrsisbench.ovrsis_samples(args.root, args.split, args.limit), names, names, 0
    raise DglrsisError("ovss evaluation needs --dataset isaid or ovrsisbench")


def ovss_predict_fn(pred, queries: list[str], offset: int, tiles=None):
    """Model-mode OVSS predict_fn: ``labels`` −1 (background/uncovered) → 0, k → k + ``offset``.

    iSAID: offset 1 (class k of the 15 queries is index k+1, background 0). OVRSISBench sets have no
    background class: offset 0, and uncovered pixels fall to class 0. Without an image (``read_images``
    off) the sample's file goes through the scene pipeline (``set_raster`` with ``tiles``, a
    :class:`dglrsis.scene.TileConfig`), exactly as ``dglrsis segment`` runs it.
    """

    def predict(image, sample):
        if image is None:
            pred.set_raster(sample.image_path, tiles)
        else:
            pred.set_image(image)
        labels = np.asarray(pred.segment(queries).labels)
        out = labels.astype(np.int32) + np.int32(offset)
        out[labels < 0] = 0
        return out

    return predict


def res_predict_fn(pred):
    """Model-mode RES predict_fn: one ``set_image`` per image, one ``refer`` per sentence."""
    last = {"path": None}

    def predict(image, sample):
        if last["path"] != sample.image_path:
            pred.set_image(image)
            last["path"] = sample.image_path
        return np.asarray(pred.refer(sample.text).mask)

    return predict


def input_report(samples, tiles) -> dict:
    """``{"input": raw | raw-tiled | patches, "tiling": …}`` of an OVSS run (``tiles`` None: saved
    predictions, no tiling). ``tiling``: the requested ``tile`` (None = automatic, 0 = off), ``overlap``,
    the ``side`` used on tiled images and how many were tiled (sizes from the image headers)."""
    from ..eval.isaid import input_kind
    from ..eval.runner import image_hw

    kind = input_kind(samples)
    if tiles is None:
        return {"input": kind, "tiling": None}
    tiled, sides = 0, set()
    for s in samples:
        h, w = image_hw(s.image_path)
        if len(tiles.windows(h, w)) > 1:
            tiled += 1
            sides.add(tiles.side(h, w))
    tiling = {"tile": tiles.tile, "overlap": tiles.overlap, "side": max(sides) if sides else None}
    tiling["tiled_images"] = tiled
    return {"input": "raw-tiled" if tiled and kind == "raw" else kind, "tiling": tiling}


def run(args) -> int:
    from .. import io
    from .options import tile_config

    if args.limit is not None and args.limit < 1:
        raise DglrsisError("--limit must be ≥ 1")
    args.split = args.split or ("val" if args.task == "ovss" else "test")
    if getattr(args, "background", None) is None and args.dataset == "ovrsisbench":
        args.background = "none"  # these sets have no background class: every pixel is one of the classes
    tiles = tile_config(args)
    check_eval_paths(args)
    model = None
    if not args.predictions:
        from .options import predictor_from_args

        model = predictor_from_args(args)
    settings = {
        "task": args.task,
        "dataset": args.dataset,
        "root": str(Path(args.root).resolve()),
        "split": args.split,
        "limit": args.limit,
        "predictions": str(Path(args.predictions).resolve()) if args.predictions else None,
        "model": model.settings() if model else None,
    }
    if args.task == "ovss":  # the tiling changes a model's prediction: part of the cache key
        settings["tiling"] = {"tile": tiles.tile, "overlap": tiles.overlap} if model else None
    # Saved predictions without --cache: a throw-away cache, scored in one process (cheap). Everything else
    # is split over the accelerate processes through the shared cache folder.
    split = {"rank": 0, "world": 1} if args.predictions and not args.cache else {}
    if args.predictions:  # a saved prediction is part of what a cached result depends on
        split["depends"] = lambda s: [Path(args.predictions) / f"{s.key}.png"]
    with tempfile.TemporaryDirectory(prefix="dglrsis-eval-") as tmp:
        cache = (
            Path(args.cache)
            if args.cache
            else (
                Path(tmp)
                if args.predictions
                else Path(args.out).with_suffix(".cache")
                if args.out
                else Path(".eval_cache")
            )
        )
        with pruned_if_failed(cache):
            report = _evaluate(args, settings, model, tiles, cache, split)
    if report is None:  # not the main process
        return 0
    report["settings"] = settings
    if args.out:
        io.write_json(args.out, report)
    print_summary(report, args.task)
    return 0


def check_eval_paths(args) -> None:
    """``--out`` (a .json report in an existing folder, not the dataset), ``--cache`` (a folder) and
    ``--predictions`` (a folder): DglrsisError before any model is loaded."""
    from .. import io

    if args.out:
        if Path(args.out).suffix.lower() != ".json":
            raise DglrsisError(f"--out {args.out}: the report is JSON, use a .json path")
        io.check_outputs([args.out], [args.root])
    if args.cache and Path(args.cache).exists() and not Path(args.cache).is_dir():
        raise DglrsisError(f"--cache {args.cache} exists and is not a folder")
    if args.predictions and not Path(args.predictions).is_dir():
        raise DglrsisError(f"--predictions {args.predictions}: no such folder")


@contextlib.contextmanager
def pruned_if_failed(cache: Path):
    """If the evaluation fails, remove the folders it created under a new ``cache`` that stayed empty
    (a failed first run leaves nothing behind; finished samples of a resumable run are kept)."""
    fresh = not cache.exists()
    try:
        yield
    except BaseException:
        if fresh and cache.is_dir():
            for sub in sorted((p for p in cache.rglob("*") if p.is_dir()), key=lambda p: -len(p.parts)):
                with contextlib.suppress(OSError):
                    sub.rmdir()
            with contextlib.suppress(OSError):
                cache.rmdir()
        raise


def _evaluate(args, settings: dict, model, tiles, cache: Path, split: dict):
    """The OVSS or RES report (None on a non-main process)."""
    from ..eval.runner import run_ovss, run_res

    if args.task == "ovss":
        samples, names, queries, offset = _ovss_data(args)
        # which form was scored: iSAID raw full-size images or converted patches; OVRSISBench layout
        settings["form"] = getattr(samples[0], "form", None) or (
            f"published:{args.set}" if args.set else "generic"
        )
        settings["classes"] = names
        key = {k: v for k, v in settings.items() if k != "limit"}  # --limit does not change a sample's result
        fn = (
            (lambda image, s: read_prediction(args.predictions, s.key))
            if args.predictions
            else ovss_predict_fn(model, queries, offset, tiles)
        )
        report = run_ovss(
            samples,
            fn,
            len(names),
            names,
            cache,
            key,
            read_images=False,  # the model reads each file itself, tile by tile when large
            progress=not args.quiet,
            background=0 if args.dataset == "isaid" else None,
            **split,
        )
        if report is not None:
            report.update(input_report(samples, tiles if model else None))
    else:
        if args.dataset != "rrsisd":
            raise DglrsisError("res evaluation needs --dataset rrsisd")
        from ..eval.rrsisd import rrsisd_samples

        samples = rrsisd_samples(args.root, args.split, args.limit)
        settings["resolution"] = args.resolution
        key = {k: v for k, v in settings.items() if k != "limit"}  # --limit does not change a sample's result
        fn = (
            (lambda image, s: read_prediction(args.predictions, s.key))
            if args.predictions
            else res_predict_fn(model)
        )
        report = run_res(
            samples,
            fn,
            cache,
            args.resolution,
            key,
            read_images=model is not None,
            progress=not args.quiet,
            **split,
        )
    return report


def print_summary(r: dict, task: str) -> None:
    """Short table on stdout."""

    def f(v):
        return "  n/a" if v is None else f"{v:6.2f}"

    if task == "ovss":
        if "input" in r:
            t = r.get("tiling") or {}
            how = (
                f" (tile {t['side']}, overlap {t['overlap']}; {t['tiled_images']} of {r['n']} images tiled)"
                if t.get("tiled_images")
                else ""
            )
            print(f"input: {r['input']}{how}")
        blocks = [(k, r[k]) for k in OVSS_PROTOCOLS if k in r] or [("", r)]
        for key, b in blocks:
            metrics = "  ".join(f"{m} {f(b[m])}" for m in ("mIoU", "mACC", "fwIoU", "pACC"))
            print(f"{key + ': ' if key else ''}{metrics}  n={r['n']}")
        head = "  ".join(f"IoU/Acc {k}" for k, _ in blocks)
        print(f"  {'class':22s} {head}")
        for name in blocks[0][1]["per_class"]:
            cells = [b["per_class"][name] for _, b in blocks]
            if any(c["IoU"] is not None for c in cells):
                print(f"  {name:22s} " + "  ".join(f"{f(c['IoU'])} {f(c['Acc'])}" for c in cells))
    else:
        p = "  ".join(f"P@{k} {f(v)}" for k, v in r["precision"].items())
        print(f"mIoU {f(r['mIoU'])}  oIoU {f(r['oIoU'])}  {p}  n={r['n']}  ({r['resolution']})")
        for kind, v in (r.get("by_modifier") or {}).items():
            print(f"  {kind:12s} mIoU {f(v['mIoU'])}  oIoU {f(v['oIoU'])}  n={v['n']}")
    sys.stdout.flush()
