"""``dglrsis segment``: open-vocabulary semantic segmentation (GLD proposals + LVTA)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..errors import DglrsisError

HELP = "open-vocabulary semantic segmentation of an image from a list of class names"


def add_arguments(parser) -> None:
    from .options import add_predictor_arguments

    parser.add_argument("image", help="PNG/JPEG/BMP/TIFF/GeoTIFF (read by content)")
    src = parser.add_mutually_exclusive_group(required=True)
    src.add_argument("--classes", help='comma-separated class names, e.g. "ship,storage tank"')
    src.add_argument(
        "--classes-file",
        help="a vocabulary file (one class per line, synonyms comma-separated) "
        "or a bundled vocabulary name (isaid, rrsisd, potsdam, …)",
    )
    parser.add_argument(
        "--out",
        help="label map: .png (index PNG with palette) or .tif (GeoTIFF, keeps the "
        "georeference); value 0 = background, k = k-th class",
    )
    parser.add_argument("--scores", help="JSON with the classes, the label encoding and per-mask scores")
    parser.add_argument("--overlay", help="PNG of the image with the coloured labels blended over it")
    parser.add_argument("--bands", help="band selection for multi-band rasters, 1-based, e.g. 3,2,1")
    parser.add_argument(
        "--gt",
        help="iSAID ground-truth label of the image (RGB colour label or 0–15 indices): prints pixel "
        "accuracy and mIoU against it (classes matched by name, unasked classes count as background)",
    )
    parser.add_argument("--tile", type=int, help="tiled inference with tiles of N pixels (large rasters)")
    parser.add_argument("--overlap", type=int, default=64, help="tile overlap in pixels (with --tile)")
    add_predictor_arguments(parser)


def class_list(args) -> list[str]:
    """Class names from --classes or --classes-file (canonical names; synonyms come from the vocabulary)."""
    if args.classes is not None:
        from ..vocab import parse_classes

        return list(parse_classes(args.classes).names)
    from ..vocab import load_vocabulary

    return list(load_vocabulary(args.classes_file).names)


def parse_bands(text: str | None) -> list[int] | None:
    if not text:
        return None
    try:
        bands = [int(b) for b in text.split(",") if b.strip()]
    except ValueError:
        raise DglrsisError(f"bad --bands {text!r}: use 1-based band numbers like 3,2,1") from None
    if not bands or any(b < 1 for b in bands):
        raise DglrsisError(f"bad --bands {text!r}: use 1-based band numbers like 3,2,1")
    return bands


def run(args) -> int:
    from .. import io
    from .options import predictor_from_args

    names = class_list(args)
    bands = parse_bands(args.bands)
    if not (args.out or args.scores or args.overlay):
        raise DglrsisError("nothing to write: give --out, --scores and/or --overlay")
    if args.tile is not None and (args.tile < 32 or not 0 <= args.overlap < args.tile // 2):
        raise DglrsisError("--tile must be ≥ 32 and --overlap between 0 and tile/2")
    if args.tile and args.gt:
        raise DglrsisError("--gt scores a whole image: use it without --tile")
    pred = predictor_from_args(args)
    palette = io.default_palette(len(names) + 1)
    if args.tile:
        return _run_tiled(args, pred, names, bands, palette)
    raster = io.read_image(args.image, bands=bands)
    gt = read_ground_truth(args.gt, names, raster.array.shape[:2]) if args.gt else None
    pred.set_image(raster.array)
    seg = pred.segment(names)
    labels = (seg.labels + 1).astype(np.uint16 if len(names) >= 255 else np.uint8)  # -1 → 0 background
    if args.out:
        io.write_label(args.out, labels, raster.meta, palette)
    if args.overlay:
        io.write_rgb_png(args.overlay, io.overlay(raster.array, labels, palette))
    agreement = ground_truth_agreement(labels, gt, names) if gt is not None else None
    if args.scores:
        counts = np.bincount(labels.ravel(), minlength=len(names) + 1)
        io.write_json(
            args.scores,
            {
                "image": str(args.image),
                "classes": names,
                "encoding": "0 = background, k = classes[k-1]",
                "pixels": {
                    ("background" if k == 0 else names[k - 1]): int(c) for k, c in enumerate(counts) if c
                },
                "masks": seg.mask_scores(),
                "settings": pred.settings(),
                **({"ground_truth": {"label": str(args.gt), **agreement}} if agreement else {}),
            },
        )
    _summary(labels, names)
    if agreement:
        print(
            f"agreement with {Path(args.gt).name}: pixel accuracy {agreement['pACC']:.1f}%, "
            f"mIoU {agreement['mIoU']:.1f}% over background + {len(agreement['per_class']) - 1} classes "
            f"present (background IoU {agreement['per_class']['background']:.1f}%)"
        )
    return 0


def read_ground_truth(path: str, names: list[str], shape: tuple[int, int]) -> np.ndarray:
    """An iSAID label → H×W ints in the output encoding (0 = background, k = names[k-1], 255 = ignore).

    iSAID classes are matched to the asked names through the bundled synonyms; classes not asked are
    background, as the user did not ask for them.
    """
    from ..eval.isaid import decode_label, query_names
    from ..vocab import synonyms_for

    if not Path(path).is_file():
        raise DglrsisError(f"no ground-truth label {path}")
    raw = decode_label(path)
    if raw.shape != tuple(shape):
        raise DglrsisError(
            f"ground truth {path} is {raw.shape[1]}×{raw.shape[0]}, image is {shape[1]}×{shape[0]}"
        )
    lut = np.zeros(256, np.int64)
    lut[255] = 255
    for j, q in enumerate(query_names(), start=1):
        for k, n in enumerate(names, start=1):
            if q in synonyms_for(n) or n in synonyms_for(q):
                lut[j] = k
    return lut[raw]


def ground_truth_agreement(labels: np.ndarray, gt: np.ndarray, names: list[str]) -> dict:
    """pACC, mIoU (background scored as a class; classes absent from both maps left out) and per-class
    IoU of an output label map (0 = background) against :func:`read_ground_truth`, ×100."""
    from ..eval.metrics import confusion, semseg_report

    classes = ["background", *names]
    r = semseg_report(confusion(labels, gt, len(classes)), classes)
    per = {n: v["IoU"] for n, v in r["per_class"].items() if v["IoU"] is not None}
    return {"pACC": r["pACC"], "mIoU": r["mIoU"], "per_class": per}


def _run_tiled(args, pred, names, bands, palette) -> int:
    from .. import io
    from ..tiling import run_tiled

    if not args.out:
        raise DglrsisError("tiled inference writes a label map: give --out (.tif keeps the georeference)")

    def fn(tile: np.ndarray) -> np.ndarray:
        pred.set_image(tile)
        return (pred.segment(names).labels + 1).astype(np.uint8)

    with io.open_raster(args.image, bands=bands) as reader:
        run_tiled(reader, args.out, fn, args.tile, args.overlap, reader.meta, palette=palette)
    if args.scores:
        io.write_json(
            args.scores,
            {
                "image": str(args.image),
                "classes": names,
                "encoding": "0 = background, k = classes[k-1]",
                "tile": args.tile,
                "overlap": args.overlap,
                "settings": pred.settings(),
            },
        )
    print(f"wrote {Path(args.out)} (tiled {args.tile}px, overlap {args.overlap}px)")
    return 0


def _summary(labels: np.ndarray, names: list[str]) -> None:
    counts = np.bincount(labels.ravel(), minlength=len(names) + 1)
    total = max(int(counts.sum()), 1)
    parts = [
        f"{('background' if k == 0 else names[k - 1])} {100 * c / total:.1f}%"
        for k, c in enumerate(counts)
        if c
    ]
    print("segmented: " + ", ".join(parts))
