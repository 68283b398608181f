"""How well ``--min-confidence`` separates referring expressions from requests for absent things.

On the synthetic world's RRSIS-D split (world seed 7 by default): the confidence (the best candidate's
noun probability, :attr:`dglrsis.gvta.ReferResult.confidence`) of every dataset expression, and of
absent-object queries on every image of the split — things the scenes never contain ("the purple
giraffe", "the elephant", "the pizza on the left", "the red bicycle") and an iSAID class RRSIS-D scenes do
not have ("the swimming pool"). A good threshold keeps the first above it and the second below::

    dglrsis world --out W --seed 7 --n 40
    python bench/bench_refusals.py --root W/rrsisd --split test

Prints a summary; the last line is one JSON object.
"""

from __future__ import annotations

import argparse
import json

import numpy as np

ABSENT = (
    "the purple giraffe",
    "the elephant",
    "the pizza on the left",
    "the swimming pool",
    "the red bicycle",
)


def confidences(
    root: str, split: str, clip: str = "world-clip", proposals: str = "slic"
) -> tuple[list, list]:
    """(confidence of each dataset expression, confidence of each absent query × image) on the split."""
    from tqdm import tqdm

    from dglrsis import Predictor, PredictorConfig
    from dglrsis.eval.rrsisd import rrsisd_samples
    from dglrsis.io import read_image

    pred = Predictor(PredictorConfig(clip=clip, proposals=proposals))
    by_image: dict = {}
    for s in rrsisd_samples(root, split):
        by_image.setdefault(str(s.image_path), []).append(s.text)
    present, absent = [], []
    for path, texts in tqdm(by_image.items(), desc=split):
        pred.set_image(read_image(path).array)
        present += [pred.refer(t).confidence for t in texts]
        absent += [pred.refer(t).confidence for t in ABSENT]
    return present, absent


def summary(present: list, absent: list, threshold: float) -> dict:
    """Separation figures at ``threshold``."""
    p, a = np.asarray(present, float), np.asarray(absent, float)
    return {
        "threshold": threshold,
        "n_expressions": len(p),
        "expressions_min": round(float(p.min()), 4),
        "expressions_p5": round(float(np.percentile(p, 5)), 4),
        "expressions_found": round(float((p >= threshold).mean()), 4),
        "n_absent": len(a),
        "absent_median": round(float(np.median(a)), 4),
        "absent_not_found": round(float((a < threshold).mean()), 4),
        "absent_found": {
            q: round(float((a[i :: len(ABSENT)] >= threshold).mean()), 4) for i, q in enumerate(ABSENT)
        },
    }


def main(argv: list[str] | None = None) -> int:
    from dglrsis.gvta import GVTAConfig

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--root", required=True, help="an RRSIS-D folder (refs(unc).p, instances.json, images/)")
    ap.add_argument("--split", default="test")
    ap.add_argument("--clip", default="world-clip")
    a = ap.parse_args(argv)
    present, absent = confidences(a.root, a.split, a.clip)
    res = summary(present, absent, GVTAConfig().min_confidence)
    print(
        f"{res['n_expressions']} expressions: {res['expressions_found']:.1%} found "
        f"(min {res['expressions_min']}, 5th percentile {res['expressions_p5']}); "
        f"{res['n_absent']} absent queries: "
        f"{res['absent_not_found']:.1%} not found (median {res['absent_median']})"
    )
    print(json.dumps(res))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
