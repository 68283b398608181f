"""``dglrsis refer``: referring expression segmentation (GLD text split + GVTA)."""

from __future__ import annotations

import sys

import numpy as np

HELP = "segment the object a free-text expression refers to (e.g. 'the large ship on the left')"
NOT_FOUND = 3  # exit code: the best candidate's noun probability is below --min-confidence


def add_arguments(parser) -> None:
    from .options import add_gvta_arguments, add_predictor_arguments, add_raster_arguments

    parser.add_argument("image", help="PNG/JPEG/BMP/TIFF/GeoTIFF (read by content)")
    parser.add_argument("text", help="the referring expression")
    parser.add_argument("--out", help="mask: .png (0/255) or .tif (GeoTIFF, keeps the georeference)")
    parser.add_argument("--cam", help="PNG of the fused cross-scale Grad-CAM heatmap")
    parser.add_argument("--overlay", help="PNG of the image with the selected mask highlighted")
    parser.add_argument("--scores", help="JSON with the decomposition and the scored candidates")
    parser.add_argument("--classes-file", help="vocabulary of class nouns (default: --vocabulary)")
    add_raster_arguments(parser)
    add_predictor_arguments(parser)
    add_gvta_arguments(parser)


def run(args) -> int:
    from .. import io
    from ..errors import DglrsisError
    from .options import predictor_from_args, raster_options

    if not (args.out or args.cam or args.overlay or args.scores):
        raise DglrsisError("nothing to write: give --out, --cam, --overlay and/or --scores")
    from ..text import decompose

    dec = decompose(args.text, args.classes_file or args.vocabulary)  # checked before any model loads
    if not dec.referable:
        raise DglrsisError(
            f"no noun to look for in {dec.text[:60]!r}: write an English phrase naming the object, "
            "e.g. 'the white ship on the left'"
        )
    if args.classes_file:
        args.vocabulary = args.classes_file
    bands, stretch, nodata = raster_options(args)
    pred = predictor_from_args(args)
    raster = io.read_image(args.image, bands, stretch, nodata)
    pred.set_image(raster.array, raster.valid)
    ref = pred.refer(args.text)
    if args.scores:
        io.write_json(args.scores, {"image": str(args.image), **ref.to_json(), "settings": pred.settings()})
    if not ref.found:
        from ..gvta import explain

        print(explain(ref, top=3))
        print(
            f"not found: no {ref.target or 'object'} in the image (best noun probability "
            f"{ref.confidence:.3f} < {pred.cfg.gvta.min_confidence}); no mask written",
            file=sys.stderr,
        )
        return NOT_FOUND
    mask = ref.mask.astype(np.uint8)
    if args.out:
        if str(args.out).lower().endswith((".tif", ".tiff")):
            io.write_label(args.out, mask, raster.meta, None)
        else:
            io.write_label(args.out, mask * 255, raster.meta, None)
    if args.cam:
        io.write_rgb_png(args.cam, io.heatmap(ref.cam))
    if args.overlay:
        io.write_rgb_png(args.overlay, io.overlay(raster.array, mask, [(0, 0, 0), (255, 40, 40)]))
    if args.scores:
        from ..gvta import explain

        print(explain(ref))
    print(
        f"referred: {ref.target or '(no class noun)'}; {int(mask.sum())} pixels "
        f"({100 * mask.mean():.2f}% of the image)"
    )
    return 0
