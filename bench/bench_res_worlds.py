"""RES by modifier kind, pooled over several synthetic worlds that no setting was chosen on, with
95 % confidence intervals.

The seed 7 test split holds 82 expressions, and a kind's row there can rest on 3 of them (size):
one failure moves it by 30 points. This bench generates worlds of other seeds (as ``dglrsis world``),
runs RES on every split of each (``dglrsis eval res``'s predict function: one ``set_image`` per scene,
one ``refer`` per expression; RMSIN's IoU at the mask's size) and pools the expressions. Each mIoU comes
with a scene-bootstrap interval: scenes are drawn with replacement (an expression's neighbours on
one scene share its proposals and CAM, so expressions are not independent draws), 2000 times, and
the 2.5 / 97.5 percentiles of the kind's mIoU are reported.

Usage: python bench/bench_res_worlds.py [--seeds 17 19 23 29] [--n 60] [--work DIR]
Prints one JSON object on its last line: ``overall`` and ``by_kind`` (each ``mIoU``, ``ci95``, ``n``,
``scenes``) and ``by_seed`` (mIoU, n).
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from collections import defaultdict
from pathlib import Path

import numpy as np


def scene_bootstrap(ious: np.ndarray, scenes: np.ndarray, draws: int = 2000, seed: int = 0) -> list[float]:
    """95 % percentile interval (in %) of the mean of ``ious`` (``N``) when the scenes (``N`` labels)
    are resampled with replacement, each drawn scene bringing all its expressions."""
    labels, inv = np.unique(scenes, return_inverse=True)
    sums = np.bincount(inv, weights=ious, minlength=len(labels))
    counts = np.bincount(inv, minlength=len(labels))
    rng = np.random.default_rng(seed)
    pick = rng.integers(0, len(labels), size=(draws, len(labels)))
    means = sums[pick].sum(1) / np.maximum(counts[pick].sum(1), 1)
    lo, hi = np.percentile(means, [2.5, 97.5])
    return [round(100 * float(lo), 1), round(100 * float(hi), 1)]


def summarise(rows: list[dict]) -> dict:
    """``rows`` (``IoU``, ``scene``) → mIoU (%), its scene-bootstrap 95 % interval, n, scenes."""
    ious = np.array([r["IoU"] for r in rows])
    scenes = np.array([r["scene"] for r in rows])
    return {
        "mIoU": round(100 * float(ious.mean()), 1),
        "ci95": scene_bootstrap(ious, scenes),
        "n": len(rows),
        "scenes": len(set(scenes.tolist())),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", type=int, nargs="+", default=[17, 19, 23, 29])
    ap.add_argument("--n", type=int, default=60, help="scenes per world")
    ap.add_argument("--work", help="folder for the worlds (kept and reused; default: a temporary one)")
    ap.add_argument("--clip", default="world-clip")
    ap.add_argument("--proposals", default="slic")
    args = ap.parse_args()
    from PIL import Image
    from tqdm import tqdm

    from dglrsis import Predictor, PredictorConfig
    from dglrsis.commands.eval import res_predict_fn
    from dglrsis.eval.metrics import res_sample
    from dglrsis.eval.rrsisd import rrsisd_samples
    from dglrsis.eval.world import generate_world

    predict = res_predict_fn(Predictor(PredictorConfig(clip=args.clip, proposals=args.proposals)))
    rows: list[dict] = []
    with tempfile.TemporaryDirectory(prefix="dglrsis-worlds-") as tmp:
        work = Path(args.work or tmp)
        for seed in args.seeds:
            root = work / f"W{seed}"
            if (root / "world.json").exists():
                meta = json.loads((root / "world.json").read_text())
                have = (meta.get("seed"), meta.get("n"))
                if have != (seed, args.n):
                    msg = f"{root} holds world (seed, n) = {have}, not {(seed, args.n)}; use a fresh --work"
                    print(msg, file=sys.stderr)
                    sys.exit(2)
            else:
                generate_world(root, seed=seed, n=args.n, progress=False)
            samples = [s for sp in ("train", "val", "test") for s in rrsisd_samples(root / "rrsisd", sp)]
            samples.sort(key=lambda s: str(s.image_path))  # one set_image per scene
            last, image = None, None
            for s in tqdm(samples, desc=f"world {seed}", file=sys.stderr):
                if s.image_path != last:  # read once per scene; predict sets the image on a new path
                    image, last = np.asarray(Image.open(s.image_path).convert("RGB")), s.image_path
                iou = res_sample(predict(image, s), np.asarray(s.mask) != 0)["IoU"]
                rows.append(
                    {"IoU": iou, "kinds": list(s.modifiers), "seed": seed, "scene": f"{seed}/{last.name}"}
                )
    kinds = defaultdict(list)
    for r in rows:
        for k in r["kinds"]:
            kinds[k].append(r)
    out = {
        "clip": args.clip,
        "proposals": args.proposals,
        "seeds": args.seeds,
        "scenes_per_world": args.n,
        "overall": summarise(rows),
        "by_kind": {k: summarise(v) for k, v in sorted(kinds.items())},
        "by_seed": {
            str(seed): {
                "mIoU": round(100 * float(np.mean([r["IoU"] for r in rows if r["seed"] == seed])), 1),
                "n": sum(r["seed"] == seed for r in rows),
            }
            for seed in args.seeds
        },
    }
    print(json.dumps(out))


if __name__ == "__main__":
    main()
