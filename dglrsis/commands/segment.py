"""``dglrsis segment``: open-vocabulary semantic segmentation (GLD proposals + LVTA)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..errors import DglrsisError

HELP = "open-vocabulary semantic segmentation of an image from a list of class names"


def add_arguments(parser) -> None:
    from .options import add_predictor_arguments
    from .outputs import add_output_arguments

    parser.add_argument(
        "image",
        nargs="+",
        help="PNG/JPEG/BMP/TIFF/GeoTIFF (read by content); several inputs, a folder, a quoted glob or "
        "@list.txt with --out-dir",
    )
    src = parser.add_mutually_exclusive_group(required=True)
    src.add_argument("--classes", help='comma-separated class names, e.g. "ship,storage tank"')
    src.add_argument(
        "--classes-file",
        help="a vocabulary file (one class per line, synonyms comma-separated) "
        "or a bundled vocabulary name (isaid, rrsisd, potsdam, …)",
    )
    parser.add_argument(
        "--out",
        help="label map: .png (index PNG with palette) or .tif (Cloud-Optimised GeoTIFF with the "
        "georeference, colour table, class names, nodata, .qml and .aux.xml sidecars); value 0 = "
        "background, k = k-th class. With --out-dir: the format, tif (default) or png",
    )
    parser.add_argument(
        "--scores",
        help="JSON with the classes, the label encoding and per-mask scores (with --out-dir: json)",
    )
    parser.add_argument(
        "--overlay",
        help="PNG of the image with the coloured labels blended over it and a legend (with --out-dir: png)",
    )
    add_output_arguments(parser)
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
    from .outputs import plan

    names = class_list(args)
    parse_bands(args.bands)
    if args.tile is not None and (args.tile < 32 or not 0 <= args.overlap < args.tile // 2):
        raise DglrsisError("--tile must be ≥ 32 and --overlap between 0 and tile/2")
    kinds = {"labels": args.out, "overlay": args.overlay, "scores": args.scores, "vectors": args.vectors}
    if args.tile and (args.overlay or args.vectors or not args.out):
        raise DglrsisError("tiled inference writes a label map only: give --out (no --overlay, --vectors)")
    job_plan = plan(args, kinds)  # every output checked before any model is loaded
    pred = predictor_from_args(args)
    palette = io.default_palette(len(names) + 1)

    def one(job) -> list[Path]:
        with io.transaction():
            if args.tile:
                return _run_tiled(args, pred, names, job, palette, not job_plan.batch)
            return _segment_one(args, pred, names, job, palette, not job_plan.batch)

    settings = {"command": "segment", "classes": names, "model": pred.settings(), "bands": args.bands}
    settings.update(tile=args.tile, overlap=args.overlap if args.tile else None, simplify=args.simplify)
    return job_plan.run(one, settings)


def _segment_one(args, pred, names, job, palette, verbose: bool) -> list[Path]:
    """Segment ``job.input`` and write its outputs (inside the caller's transaction)."""
    from .. import export, io

    out = job.outputs
    raster = io.read_image(job.input, bands=parse_bands(args.bands))
    pred.set_image(raster.array)
    seg = pred.segment(names)
    rows = seg.mask_scores()
    files = []
    if out.get("labels"):
        files += export.write_label_raster(out["labels"], seg.labels, names, palette, raster.meta)
    if out.get("overlay"):
        io.write_rgb_png(out["overlay"], export.legend_overlay(raster.array, seg.labels, names, palette))
        files.append(out["overlay"])
    if out.get("vectors"):
        geoms, cols = export.label_features(
            seg.labels, names, raster.meta, mask_rows=rows, simplify=args.simplify
        )
        files.append(export.write_vectors(out["vectors"], geoms, cols, raster.meta))
    if out.get("scores"):
        labels = export.encode_labels(seg.labels, len(names))
        counts = np.bincount(labels.ravel(), minlength=len(names) + 1)
        io.write_json(
            out["scores"],
            {
                "image": str(job.input),
                "classes": names,
                "encoding": "0 = background, k = classes[k-1]",
                "pixels": {
                    ("background" if k == 0 else names[k - 1]): int(c) for k, c in enumerate(counts) if c
                },
                "masks": rows,
                "settings": pred.settings(),
            },
        )
        files.append(out["scores"])
    if verbose:
        _summary(export.encode_labels(seg.labels, len(names)), names)
    return files


def _run_tiled(args, pred, names, job, palette, verbose: bool) -> list[Path]:
    from .. import export, io
    from ..tiling import run_tiled

    def fn(tile: np.ndarray) -> np.ndarray:
        pred.set_image(tile)
        return (pred.segment(names).labels + 1).astype(np.uint8)

    out = job.outputs["labels"]
    with io.open_raster(job.input, bands=parse_bands(args.bands)) as reader:
        run_tiled(reader, out, fn, args.tile, args.overlap, reader.meta, palette=palette)
    files = [Path(out)]
    if Path(out).suffix.lower() in (".tif", ".tiff"):  # class names beside the tiled GeoTIFF
        io.write_text(Path(out).with_suffix(".qml"), export.qml_style(names, palette))
        io.write_text(Path(out).with_name(Path(out).name + ".aux.xml"), export.rat_aux_xml(names, palette))
        files = export.sidecars(out)
    if job.outputs.get("scores"):
        io.write_json(
            job.outputs["scores"],
            {
                "image": str(job.input),
                "classes": names,
                "encoding": "0 = background, k = classes[k-1]",
                "tile": args.tile,
                "overlap": args.overlap,
                "settings": pred.settings(),
            },
        )
        files.append(job.outputs["scores"])
    if verbose:
        print(f"wrote {Path(out)} (tiled {args.tile}px, overlap {args.overlap}px)")
    return files


def _summary(labels: np.ndarray, names: list[str]) -> None:
    counts = np.bincount(labels.ravel(), minlength=len(names) + 1)
    total = max(int(counts.sum()), 1)
    parts = [
        f"{('background' if k == 0 else names[k - 1])} {100 * c / total:.1f}%"
        for k, c in enumerate(counts)
        if c
    ]
    print("segmented: " + ", ".join(parts))
