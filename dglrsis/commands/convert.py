"""``dglrsis convert isaid``: cut the iSAID release (zips or extracted) into mmsegmentation's patch form."""

from __future__ import annotations

from ..errors import DglrsisError

HELP = "convert a dataset release into the patch form evaluations use (isaid: 896 px patches, 384 overlap)"


def add_arguments(parser) -> None:
    parser.add_argument("dataset", choices=("isaid",))
    parser.add_argument(
        "--root", required=True, help="release folder with train/ val/ test/ (zips or extracted)"
    )
    parser.add_argument("--out", required=True, help="output folder (img_dir/, ann_dir/)")
    parser.add_argument("--patch", type=int, default=896, help="patch side in pixels")
    parser.add_argument("--overlap", type=int, default=384, help="overlap of neighbouring patches in pixels")
    parser.add_argument("--splits", default="train,val,test", help="comma-separated splits to convert")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")


def run(args) -> int:
    from pathlib import Path

    from ..eval.isaid_convert import SPLITS, convert_isaid

    splits = [s.strip() for s in args.splits.split(",") if s.strip()]
    if not splits or any(s not in SPLITS for s in splits):
        raise DglrsisError(f"--splits takes names from {', '.join(SPLITS)}, got {args.splits!r}")
    if not 64 <= args.patch <= 8192:
        raise DglrsisError(f"--patch must be between 64 and 8192 pixels, got {args.patch}")
    if Path(args.out).resolve() == Path(args.root).resolve():
        raise DglrsisError("--out must differ from --root")
    summary = convert_isaid(args.root, args.out, args.patch, args.overlap, splits, progress=not args.quiet)
    for split, s in summary.items():
        note = (
            f", {s['off_palette_pixels']} off-palette label pixels set to 0"
            if s["off_palette_pixels"]
            else ""
        )
        print(f"{split}: {s['images']} images → {s['patches']} files{note}")
    return 0
