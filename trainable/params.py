"""Parameter report of the cost-aggregation models at random weights.

    python -m dglrsis.trainable.params --model catseg --clip ViT-B-16:random [--dino rsib:random] [--json]

Prints total and trainable counts and a per-component breakdown. ``trainable`` counts the fused CLIP
attention in_proj tensors as their q and v slices only (2/3). RSKT-Seg: ``convention`` says whether the
total counts the full RemoteCLIP (``pi-seg``, Pi-Seg Table XII) — the README convention (visual towers
only) is given alongside as ``total_rsktseg_readme``."""

from __future__ import annotations

import argparse
import json
import sys


def report(model_name: str, clip: str, dino: str = "rsib:random", rclip: str = "ViT-B-32:random") -> dict:
    """Build ``model_name`` with random weights and return the count report (a JSON-able dict).

    Names without a ``:TAG`` are taken at random weights (``ViT-B-16`` → ``ViT-B-16:random``); registry
    names that carry weights (``world-clip``, ``RemoteCLIP-ViT-B-32``) are loaded as such."""
    from dglrsis.models import CLIP_MODELS

    clip, rclip = (n if n in CLIP_MODELS or ":" in n else f"{n}:random" for n in (clip, rclip))
    dino = dino if ":" in dino else f"{dino}:random"
    from dataclasses import fields

    from dglrsis.trainable.models import build_model, config_class

    used = {f.name for f in fields(config_class(model_name))}
    given = {"clip": clip, "dino": dino, "rclip": rclip, "spsd_path": "identity"}
    model = build_model(model_name, {k: v for k, v in given.items() if k in used})
    total = sum(p.numel() for p in model.parameters())
    breakdown = {}
    for name, mod in model.named_children():
        breakdown[name] = sum(p.numel() for p in mod.parameters())
    other = total - sum(breakdown.values())
    if other:
        breakdown["other"] = other
    out = {
        "model": model_name,
        "clip": clip,
        "total": total,
        "trainable": model.count_trainable(),
        "convention": "all parameters of every module the model holds",
        "breakdown": breakdown,
    }
    if hasattr(model, "dino"):
        out["dino"] = dino
    if hasattr(model, "count_by_convention"):
        conv = model.count_by_convention()
        out["convention"] = "pi-seg (full RemoteCLIP incl. text tower, Pi-Seg Table XII)"
        out["total_rsktseg_readme"] = conv["rsktseg-readme"]
        out["rclip"] = rclip
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", required=True, help="catseg | piseg | gsnet | rsktseg")
    ap.add_argument("--clip", default="ViT-B-16:random", help="CLIP registry name (e.g. ViT-L-14-336:random)")
    ap.add_argument("--dino", default="rsib:random", help="DINO registry name (gsnet, rsktseg)")
    ap.add_argument("--rclip", default="ViT-B-32:random", help="RemoteCLIP registry name (rsktseg)")
    ap.add_argument("--json", action="store_true", help="print one JSON object")
    args = ap.parse_args(argv)
    from dglrsis.errors import DglrsisError

    try:
        rep = report(args.model, args.clip, args.dino, args.rclip)
    except DglrsisError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if args.json:
        print(json.dumps(rep))
        return 0
    print(
        f"{rep['model']} ({rep['clip']}): total {rep['total'] / 1e6:.2f} M, "
        f"trainable {rep['trainable'] / 1e6:.2f} M  [convention: {rep['convention']}]"
    )
    if "total_rsktseg_readme" in rep:
        print(f"  RSKT-Seg README convention (visual towers only): {rep['total_rsktseg_readme'] / 1e6:.2f} M")
    for k, v in rep["breakdown"].items():
        print(f"  {k:<12} {v / 1e6:9.2f} M")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
