"""``dglrsis refer``: referring expression segmentation (GLD text split + GVTA)."""

from __future__ import annotations

import sys

import numpy as np

HELP = "segment the object a free-text expression refers to (e.g. 'the large ship on the left')"
NOT_FOUND = 3  # exit code: the best candidate's noun probability is below --min-confidence


def add_arguments(parser) -> None:
    from .options import add_gvta_arguments, add_predictor_arguments, add_raster_arguments
    from .outputs import add_output_arguments

    parser.usage = (
        "%(prog)s IMAGE... TEXT [options]\n"
        "       %(prog)s --pairs PAIRS.csv|PAIRS.tsv --out-dir DIR [options]"
    )
    parser.add_argument(
        "inputs",
        nargs="*",
        metavar="IMAGE... TEXT",
        help="PNG/JPEG/BMP/TIFF/GeoTIFF (read by content), then the referring expression; several inputs, "
        "a folder, a quoted glob or @list.txt with --out-dir (one expression for all)",
    )
    parser.add_argument(
        "--pairs",
        help="with --out-dir: a .csv or .tsv file with columns image,expression (one pair per row, an "
        "image may have several rows; relative paths from the file's folder)",
    )
    parser.add_argument("--out", help="mask: .png (0/255) or .tif (GeoTIFF, keeps the georeference)")
    parser.add_argument(
        "--cam", help="PNG of the fused cross-scale Grad-CAM blended over the image, with a colour bar"
    )
    parser.add_argument("--overlay", help="PNG of the image with the selected mask highlighted and a legend")
    parser.add_argument("--scores", help="JSON with the decomposition and the scored candidates")
    parser.add_argument("--classes-file", help="vocabulary of class nouns (default: --vocabulary)")
    add_raster_arguments(parser)
    add_output_arguments(parser)
    add_predictor_arguments(parser)
    add_gvta_arguments(parser)


def _split_inputs(args) -> None:
    """``inputs`` → ``args.image`` (list of specs) and ``args.text`` (None with --pairs)."""
    from ..errors import DglrsisError

    inputs = list(getattr(args, "inputs", None) or [])
    if getattr(args, "pairs", None):
        if inputs:
            raise DglrsisError("give IMAGE... TEXT or --pairs FILE, not both")
        args.image, args.text = [], None
    elif len(inputs) < 2:
        raise DglrsisError("give an image and a referring expression: dglrsis refer IMAGE... TEXT")
    else:
        args.image, args.text = inputs[:-1], inputs[-1]


def _refusal(text: str, vocabulary) -> str | None:
    """Why ``text`` cannot be referred (no noun to look for), or None."""
    from ..text import decompose

    dec = decompose(text, vocabulary)
    if dec.referable:
        return None
    return (
        f"no noun to look for in {dec.text[:60]!r}: write an English phrase naming the object, "
        "e.g. 'the white ship on the left'"
    )


def run(args) -> int:
    from .. import io
    from ..batch import fingerprint
    from ..errors import DglrsisError
    from .options import predictor_from_args, raster_options
    from .outputs import plan

    _split_inputs(args)

    kinds = {
        "labels": args.out,
        "cam": args.cam,
        "overlay": args.overlay,
        "scores": args.scores,
        "vectors": args.vectors,
    }
    vocabulary = args.classes_file or args.vocabulary
    # every output and expression checked before any model is loaded (a bad pairs row: a recorded failure)
    job_plan = plan(args, kinds, check_text=lambda t: _refusal(t, vocabulary))
    if args.text is not None and _refusal(args.text, vocabulary):
        raise DglrsisError(_refusal(args.text, vocabulary))
    if args.classes_file:
        args.vocabulary = args.classes_file
    bands, stretch, nodata = raster_options(args)
    pred = predictor_from_args(args)
    not_found = []
    current = {"key": None, "raster": None}  # the image set last: its pairs reuse its embeddings

    def one(job) -> list:
        from ..gvta import explain

        text = job.text if job.text is not None else args.text
        key = (str(job.input.resolve()), tuple(fingerprint(job.input).values()))
        if current["key"] != key:
            current["key"] = None
            raster = io.read_image(job.input, bands, stretch, nodata)
            pred.set_image(raster.array, raster.valid)
            current.update(key=key, raster=raster)
        raster = current["raster"]
        ref = pred.refer(text)
        if not ref.found:
            if job.outputs.get("scores"):
                io.write_json(
                    job.outputs["scores"],
                    {"image": str(job.input), **ref.to_json(), "settings": pred.settings()},
                )
            msg = (
                f"not found: no {ref.target or 'object'} in the image (best noun probability "
                f"{ref.confidence:.3f} < {pred.cfg.gvta.min_confidence}); no mask written"
            )
            if job_plan.batch:
                raise DglrsisError(msg)
            print(explain(ref, top=3))
            print(msg, file=sys.stderr)
            not_found.append(job.input)
            return [job.outputs["scores"]] if job.outputs.get("scores") else []
        with io.transaction():
            _write(job.outputs, args, text, ref, raster, pred, job.input)
        if not job_plan.batch:
            if job.outputs.get("scores"):
                print(explain(ref))
            mask = ref.mask
            print(
                f"referred: {ref.target or '(no class noun)'}; {int(mask.sum())} pixels "
                f"({100 * mask.mean():.2f}% of the image)"
            )
        return list(job.outputs.values())

    settings = {"command": "refer", "text": args.text, "model": pred.settings(), "bands": args.bands}
    if args.pairs:
        settings["pairs"] = True  # each pair's expression is in its output name (see dglrsis.pairs)
    settings.update(stretch=args.stretch, nodata=nodata, simplify=args.simplify)
    code = job_plan.run(one, settings)
    return NOT_FOUND if not_found and code == 0 else code


def _write(out: dict, args, text: str, ref, raster, pred, image) -> None:
    """Write the outputs of one referring result (inside the caller's transaction)."""
    from .. import export, io

    mask = ref.mask.astype(np.uint8)
    name = ref.target or "referred object"
    if out.get("labels"):
        scale = 1 if out["labels"].suffix.lower() in (".tif", ".tiff") else 255
        io.write_label(out["labels"], mask * scale, raster.meta, None)
    if out.get("cam"):
        io.write_rgb_png(out["cam"], export.cam_figure(raster.array, ref.cam))
    if out.get("overlay"):
        labels = np.where(ref.mask, 0, -1)
        pal = [(0, 0, 0), (255, 40, 40)]
        io.write_rgb_png(out["overlay"], export.legend_overlay(raster.array, labels, [name], pal))
    if out.get("vectors"):
        score = ref.candidates[0].get("score") if ref.candidates else None
        attrs = {"class": name, "expression": text, "score": score}
        geoms, cols = export.mask_feature(ref.mask, raster.meta, attrs, simplify=args.simplify)
        export.write_vectors(out["vectors"], geoms, cols, raster.meta)
    if out.get("scores"):
        io.write_json(out["scores"], {"image": str(image), **ref.to_json(), "settings": pred.settings()})
