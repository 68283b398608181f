"""``dglrsis segment``: open-vocabulary semantic segmentation (GLD proposals + LVTA) of any raster."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

from ..errors import DglrsisError

HELP = "open-vocabulary semantic segmentation of an image from a list of class names"
OVERLAY_MAX_SIDE = 4096  # larger scenes get a downscaled overlay


def add_arguments(parser) -> None:
    from .options import add_predictor_arguments, add_raster_arguments, add_tile_arguments
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
        "background, k = k-th class, 255 (65535 above 254 classes) = nodata. With --out-dir: the "
        "format, tif (default) or png",
    )
    parser.add_argument(
        "--scores",
        help="JSON with the classes, the label encoding and per-mask scores (with --out-dir: json)",
    )
    parser.add_argument(
        "--overlay",
        help="PNG of the image with the coloured labels blended over it and a legend (with --out-dir: png)",
    )
    parser.add_argument(
        "--gt",
        help="iSAID ground-truth label of the image (RGB colour label or 0–15 indices): prints pixel "
        "accuracy and mIoU against it (classes matched by name, unasked classes count as background)",
    )
    add_output_arguments(parser)
    add_raster_arguments(parser)
    add_tile_arguments(parser)
    add_predictor_arguments(parser)


def class_list(args) -> list[str]:
    """Class names from --classes or --classes-file (canonical names; synonyms come from the vocabulary)."""
    if args.classes is not None:
        from ..vocab import parse_classes

        return list(parse_classes(args.classes).names)
    from ..vocab import load_vocabulary

    return list(load_vocabulary(args.classes_file).names)


def parse_bands(text: str | None):
    """``--bands`` → 1-based numbers or names (see :func:`dglrsis.io.parse_band_spec`)."""
    from ..io import parse_band_spec

    return parse_band_spec(text)


def mask_rows(seg, meta) -> list[dict]:
    """Per-mask score rows; with a georeference each row also has its box in map units (``box_map``)."""
    rows = seg.mask_scores()
    if meta is not None and meta.transform:
        from rasterio.transform import Affine

        tr = Affine(*meta.transform[:6])
        for r in rows:
            x0, y0, x1, y1 = r["box"]
            xs, ys = zip(*(tr * (x, y) for x, y in ((x0, y0), (x1, y0), (x0, y1), (x1, y1))), strict=True)
            r["box_map"] = [round(min(xs), 3), round(min(ys), 3), round(max(xs), 3), round(max(ys), 3)]
    return rows


def overlay_image(state, reader, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(image, labels) for the overlay: full size, or decimated when the scene is larger than
    ``OVERLAY_MAX_SIDE`` (then read again, stretched as for the models). labels: H×W, -1 = background."""
    from ..io import apply_stretch

    h, w = labels.shape
    step = max(1, int(np.ceil(max(h, w) / OVERLAY_MAX_SIDE)))
    if state.image is not None and step == 1:
        return state.image, labels
    if step == 1:
        return reader.read(), labels
    sample, _ = reader.overview(max_side=max(h, w) // step)
    sh, sw = sample.shape[:2]
    return apply_stretch(sample, reader.limits), labels[step // 2 :: step, step // 2 :: step][:sh, :sw]


def run(args) -> int:
    from .. import io
    from .options import predictor_from_args, raster_options, tile_config
    from .outputs import plan

    names = class_list(args)
    tiles = tile_config(args)
    bands, stretch, nodata = raster_options(args)
    kinds = {"labels": args.out, "overlay": args.overlay, "scores": args.scores, "vectors": args.vectors}
    job_plan = plan(args, kinds)  # every output checked before any model is loaded
    if args.gt and job_plan.batch:
        raise DglrsisError("--gt scores one image: use it without --out-dir")
    if args.gt and not Path(args.gt).is_file():
        raise DglrsisError(f"no ground-truth label {args.gt}")
    pred = predictor_from_args(args)
    palette = io.default_palette(len(names) + 1)

    def one(job) -> list[Path]:
        with io.transaction():
            return _segment_one(
                args, pred, names, job, palette, (bands, stretch, nodata, tiles), not job_plan.batch
            )

    settings = {"command": "segment", "classes": names, "model": pred.settings(), "bands": args.bands}
    settings.update(stretch=args.stretch, nodata=nodata, tile=tiles.tile, overlap=tiles.overlap)
    settings.update(simplify=args.simplify)
    return job_plan.run(one, settings)


def _segment_one(args, pred, names, job, palette, raster_opts, verbose: bool) -> list[Path]:
    """Segment ``job.input`` (tiled above a size, see :mod:`dglrsis.scene`) and write its outputs (inside
    the caller's transaction)."""
    from .. import export, io

    bands, stretch, nodata, tiles = raster_opts
    out = job.outputs
    with io.open_raster(job.input, bands, stretch, nodata) as reader:
        if reader.notice and verbose:
            print(reader.notice, file=sys.stderr)
        pred.set_raster(reader, tiles, progress=verbose)
        seg = pred.segment(names)
        meta = reader.meta
        overlay = overlay_image(pred.state, reader, seg.labels) if out.get("overlay") else None
        used = [b + 1 for b in reader.bands]
        gt = read_ground_truth(args.gt, names, seg.labels.shape) if args.gt else None
        stretch_info = {"kind": reader.stretch.kind, "limits": reader.limits}
    rows = mask_rows(seg, meta)
    files = []
    if out.get("labels"):
        files += export.write_label_raster(out["labels"], seg.labels, names, palette, meta, valid=seg.valid)
    if overlay is not None:
        img, lab = overlay
        io.write_rgb_png(out["overlay"], export.legend_overlay(img, lab, names, palette))
        files.append(out["overlay"])
    if out.get("vectors"):
        geoms, cols = export.label_features(seg.labels, names, meta, mask_rows=rows, simplify=args.simplify)
        files.append(export.write_vectors(out["vectors"], geoms, cols, meta))
    labels = export.encode_labels(seg.labels, len(names), seg.valid)
    nodata_out = int(np.iinfo(labels.dtype).max)
    agreement = ground_truth_agreement(labels, gt, names) if gt is not None else None
    if out.get("scores"):
        counts = np.bincount(labels.ravel(), minlength=len(names) + 1)
        timings = {k: round(v, 3) if isinstance(v, float) else v for k, v in pred.state.timings.items()}
        io.write_json(
            out["scores"],
            {
                "image": str(job.input),
                "classes": names,
                "encoding": f"0 = background, k = classes[k-1], {nodata_out} = nodata",
                "nodata": nodata_out,
                "pixels": {_name(k, names, nodata_out): int(c) for k, c in enumerate(counts) if c},
                "bands": used,
                "stretch": stretch_info,
                "tiles": timings,
                "masks": rows,
                "settings": pred.settings(),
                **({"ground_truth": {"label": str(args.gt), **agreement}} if agreement else {}),
            },
        )
        files.append(out["scores"])
    if verbose:
        _summary(labels, names, nodata_out)
    if agreement:
        print(
            f"agreement with {Path(args.gt).name}: pixel accuracy {agreement['pACC']:.1f}%, "
            f"mIoU {agreement['mIoU']:.1f}% over background + {len(agreement['per_class']) - 1} classes "
            f"present (background IoU {agreement['per_class']['background']:.1f}%)"
        )
    return files


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


def _name(k: int, names: list[str], nodata: int) -> str:
    return "background" if k == 0 else "nodata" if k == nodata else names[k - 1]


def _summary(labels: np.ndarray, names: list[str], nodata: int = 255) -> None:
    counts = np.bincount(labels.ravel(), minlength=len(names) + 1)
    total = max(int(counts.sum()), 1)
    parts = [f"{_name(k, names, nodata)} {100 * c / total:.1f}%" for k, c in enumerate(counts) if c]
    print("segmented: " + ", ".join(parts))
