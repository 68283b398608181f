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
    pred = predictor_from_args(args)
    palette = io.default_palette(len(names) + 1)
    if args.tile:
        return _run_tiled(args, pred, names, bands, palette)
    raster = io.read_image(args.image, bands=bands)
    pred.set_image(raster.array)
    seg = pred.segment(names)
    labels = (seg.labels + 1).astype(np.uint16 if len(names) >= 255 else np.uint8)  # -1 → 0 background
    if args.out:
        io.write_label(args.out, labels, raster.meta, palette)
    if args.overlay:
        io.write_rgb_png(args.overlay, io.overlay(raster.array, labels, palette))
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
            },
        )
    _summary(labels, names)
    return 0


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
