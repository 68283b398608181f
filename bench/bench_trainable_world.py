"""Before/after training on the synthetic world for each trainable model (issue #6 quality check).

For every model: build it from ``trainable/configs/world_<model>.yaml`` (world-clip + ``dino-tiny:random``,
96 px crops, bridge / helicopter / harbor held out of training), evaluate it untrained on held-out world
scenes (index 10 000 onwards of the training seed), train it with :func:`trainable.train.train`, and
evaluate again. Prints mIoU over all classes, the seen classes and the held-out (unseen) classes.
Last line: one JSON object.

    python bench/bench_trainable_world.py --models catseg,gsnet,rsktseg,drseg,piseg \
        --iterations 600 --out runs/world
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

MODELS = ("catseg", "gsnet", "rsktseg", "drseg", "piseg")


def _split_miou(report: dict, seen: list[str]) -> dict:
    """mIoU (percent) over all / seen / unseen classes with ground truth, from a SemSegMetric report."""
    per = report["per_class"]

    def mean(names):
        vals = [per[n]["IoU"] for n in names if per[n]["IoU"] is not None]
        return round(float(np.mean(vals)), 2) if vals else None

    unseen = [n for n in per if n not in seen]
    return {"mIoU": round(float(report["mIoU"]), 2), "seen": mean(seen), "unseen": mean(unseen)}


def run_one(name: str, iterations: int, out: Path, overrides: list[str], sliding: bool = True) -> dict:
    from accelerate.utils import set_seed

    from dglrsis.trainable.config import load_config
    from dglrsis.trainable.evaluate import evaluate_dataset, load_trained
    from dglrsis.trainable.train import build_training, train

    cfg_path = Path(__file__).resolve().parents[1] / "trainable" / "configs" / f"world_{name}.yaml"
    cfg = load_config(
        cfg_path,
        [
            f"train.iterations={iterations}",
            f"train.save_every={iterations}",
            "train.eval_every=0",
            *overrides,
        ],
    )
    set_seed(cfg.train.seed)  # the same initialisation train() starts from
    model, _, eval_ds, names, seen = build_training(cfg)
    before = _split_miou(evaluate_dataset(model, eval_ds, names, sliding), seen)
    del model
    t0 = time.perf_counter()
    result = train(cfg, out / name)
    seconds = time.perf_counter() - t0
    trained = load_trained(out / name)[0]
    after = _split_miou(evaluate_dataset(trained, eval_ds, names, sliding), seen)
    return {
        "model": name,
        "iterations": iterations,
        "sliding": sliding,
        "train_s": round(seconds, 1),
        "s_per_step": round(seconds / iterations, 3),
        "final_loss": round(result["losses"][-1], 4),
        "before": before,
        "after": after,
        "held_out": [n for n in names if n not in seen],
    }


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", default=",".join(MODELS), help="comma-separated model names")
    ap.add_argument("--iterations", type=int, default=600, help="training steps per model")
    ap.add_argument("--out", default="runs/world", help="run folders go under OUT/<model>")
    ap.add_argument(
        "--no-sliding",
        action="store_true",
        help="evaluate the whole image resized to the input size instead of the public sliding "
        "scheme (windows of the input size over the image resized to 5/3 of it, plus a global view)",
    )
    ap.add_argument("overrides", nargs="*", help="config overrides key=value applied to every model")
    a = ap.parse_args(argv)
    rows = []
    for name in [m.strip() for m in a.models.split(",") if m.strip()]:
        r = run_one(name, a.iterations, Path(a.out), a.overrides, not a.no_sliding)
        b, f = r["before"], r["after"]
        print(
            f"{name:8s} {r['iterations']} steps {r['s_per_step']:.2f} s/step | mIoU {b['mIoU']:5.1f} -> "
            f"{f['mIoU']:5.1f} | seen {b['seen']:5.1f} -> {f['seen']:5.1f} | "
            f"unseen {b['unseen']:5.1f} -> {f['unseen']:5.1f}",
            flush=True,
        )
        rows.append(r)
    print(json.dumps({"world_training": rows}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
