"""``dglrsis models``: list the model registry and which weights are present locally."""

from __future__ import annotations

import json

HELP = "list the model registry (CLIP, SAM, DINO) and which weights are present locally"


def add_arguments(parser) -> None:
    parser.add_argument("--json", action="store_true", help="print one JSON object instead of a table")
    parser.add_argument("--family", choices=("clip", "sam", "dino"), help="only this model family")


def run(args) -> int:
    from ..models import list_models, weights_dir

    rows = [r for r in list_models() if not args.family or r["family"] == args.family]
    if args.json:
        print(json.dumps({"weights_dir": str(weights_dir()), "models": rows}))
        return 0
    cols = ("family", "name", "present", "weights", "note")
    widths = [max(len(c), *(len(str(r[c])) for r in rows)) for c in cols]
    print("  ".join(c.upper().ljust(w) for c, w in zip(cols, widths, strict=False)).rstrip())
    for r in rows:
        print("  ".join(str(r[c]).ljust(w) for c, w in zip(cols, widths, strict=False)).rstrip())
    print(
        f"\nLocal weights folder: {weights_dir()} (set DGLRSIS_WEIGHTS). Any open_clip architecture also "
        f"works as ARCH:TAG, ARCH:/path/to/checkpoint or ARCH:random."
    )
    return 0
