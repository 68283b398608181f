"""``dglrsis world``: write a synthetic world in the real iSAID and RRSIS-D formats."""

from __future__ import annotations

from ..errors import DglrsisError

HELP = "generate synthetic top-down scenes in the real iSAID and RRSIS-D on-disk formats"


def add_arguments(parser) -> None:
    parser.add_argument("--out", required=True, help="output folder (isaid/, rrsisd/, world.json)")
    parser.add_argument("--seed", type=int, default=0, help="world seed (same seed → identical files)")
    parser.add_argument("--n", type=int, default=20, help="scenes per dataset")
    parser.add_argument("--size", type=int, default=512, help="scene side in pixels")
    parser.add_argument(
        "--geotiff",
        type=int,
        metavar="SIDE",
        help="also write OUT/geotiff/scene.tif: a SIDE² mosaic of scenes as a 4-band uint16 GeoTIFF "
        "(B, G, R, NIR; EPSG:32633; a 16 px nodata border)",
    )
    parser.add_argument("--quiet", action="store_true", help="no progress bar")


def run(args) -> int:
    from dglrsis.eval.world import generate_world

    if not 1 <= args.n <= 100_000:
        raise DglrsisError(f"--n must be between 1 and 100000, got {args.n}")
    if not 128 <= args.size <= 4096:
        raise DglrsisError(f"--size must be between 128 and 4096 pixels, got {args.size}")
    if args.seed < 0:
        raise DglrsisError("--seed must be ≥ 0")
    if args.geotiff is not None and not 128 <= args.geotiff <= 16384:
        raise DglrsisError(f"--geotiff must be between 128 and 16384 pixels, got {args.geotiff}")
    s = generate_world(args.out, seed=args.seed, n=args.n, size=args.size, progress=not args.quiet)
    print(
        f"wrote {args.n} iSAID + {args.n} RRSIS-D scenes ({s['refs']} refs, {s['sentences']} expressions) "
        f"to {args.out}"
    )
    if args.geotiff:
        from pathlib import Path

        from dglrsis.eval.world.geotiff import mosaic, write_bgrn

        path = write_bgrn(
            Path(args.out) / "geotiff" / "scene.tif", mosaic(args.geotiff, args.size, args.seed)[0], 16
        )
        print(f"wrote {path} ({args.geotiff}×{args.geotiff}, 4 bands uint16)")
    return 0
