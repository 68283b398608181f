"""Background policies × both OVSS protocols on the synthetic world's iSAID splits.

Each image's proposals and crop embeddings are computed once (``Predictor.set_image``); every policy is
then one cheap ``segment`` call on the cached state, scored like ``dglrsis eval ovss`` (detectron2
metrics, background scored as a class and ignored). Tune on ``train``, report on ``val``::

    dglrsis world --out W --seed 7 --n 40
    python bench/bench_background.py --root W/isaid --splits train,val

Prints a Markdown table per split; the last line is one JSON object {split: {policy: figures}}.
"""

from __future__ import annotations

import argparse
import json

import numpy as np

DEFAULT_POLICIES = (
    "none",
    "threshold:0.5",
    "threshold:0.7",
    "threshold:0.9",
    "prompt",
    "prompt:0.5",
    "prompt:0.3+threshold:0.5",
)


def sweep(root: str, split: str, policies, clip: str = "world-clip", proposals: str = "slic") -> dict:
    """{policy: {"background_scored": {...}, "background_ignored": {...}}} over the split's images."""
    from tqdm import tqdm

    from dglrsis import Predictor, PredictorConfig
    from dglrsis.eval.isaid import ISAID_NAMES, isaid_samples, query_names
    from dglrsis.eval.metrics import confusion, ignore_class, semseg_report
    from dglrsis.io import read_image

    pred = Predictor(PredictorConfig(clip=clip, proposals=proposals))
    conf = {p: np.zeros((17, 17), np.int64) for p in policies}
    for s in tqdm(isaid_samples(root, split, "include"), desc=split):
        pred.set_image(read_image(s.image_path).array)
        gt = s.label()
        for p in policies:
            labels = pred.segment(query_names(), background=p).labels
            conf[p] += confusion(np.where(labels < 0, 0, labels + 1), gt, len(ISAID_NAMES))
    return {
        p: {
            "background_scored": semseg_report(c, ISAID_NAMES),
            "background_ignored": semseg_report(ignore_class(c, 0), ISAID_NAMES),
        }
        for p, c in conf.items()
    }


def row(r: dict) -> dict:
    """The table's figures of one policy."""
    sc, ig = r["background_scored"], r["background_ignored"]
    return {
        "mIoU_bg_scored": sc["mIoU"],
        "bg_IoU": sc["per_class"]["background"]["IoU"],
        "pACC_bg_scored": sc["pACC"],
        "mIoU_bg_ignored": ig["mIoU"],
        "pACC_bg_ignored": ig["pACC"],
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--root", required=True, help="the world's isaid folder")
    ap.add_argument("--splits", default="train,val")
    ap.add_argument("--policies", default=",".join(DEFAULT_POLICIES), help="comma-separated policies")
    ap.add_argument("--clip", default="world-clip")
    args = ap.parse_args()
    policies = [p for p in args.policies.split(",") if p]
    out = {}
    for split in args.splits.split(","):
        out[split] = {p: row(r) for p, r in sweep(args.root, split, policies, args.clip).items()}
        cols = list(next(iter(out[split].values())))
        print(f"\n{split}\n| policy | " + " | ".join(cols) + " |\n|---|" + "---|" * len(cols))
        for p, figs in out[split].items():
            print(
                f"| `{p}` | " + " | ".join(f"{v:.1f}" if v is not None else "—" for v in figs.values()) + " |"
            )
    print(json.dumps(out))


if __name__ == "__main__":
    main()
