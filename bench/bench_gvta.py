"""GVTA cost benchmark: one expression's Grad-CAM work ÷ one plain CLIP image forward at the same input.

``gradcam_cost_ratio`` per number of scales (1 = the whole image; 2 adds the 0.5 scale's 3×3 windows;
3 adds 0.25): the first expression on a fresh image (window forwards + the explained block's forward and
backward). ``second_expression_ratio``: a second expression on the same image (the per-image window
forwards cached, as ``ImageState.cam_features`` does) ÷ the first. CLIP ViT-B-16 at random weights on a
512×512 image. Prints one JSON object on its last line.

Usage: python bench/bench_gvta.py [--size 512] [--threads 2]
"""

from __future__ import annotations

import argparse
import json
import os
import time

import numpy as np
import torch


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size", type=int, default=512)
    ap.add_argument("--threads", type=int, default=min(2, os.cpu_count() or 1))
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    from dglrsis.gvta import cross_scale_cam
    from dglrsis.models import load_clip

    clip = load_clip("ViT-B-16:random")
    rng = np.random.default_rng(0)
    image = (rng.random((args.size, args.size, 3)) * 255).astype(np.uint8)
    text = clip.encode_text(["the large ship on the left"])
    x = torch.randn(1, 3, clip.image_size, clip.image_size)

    def best(fn, repeat=3):
        t_best = float("inf")
        for _ in range(repeat):
            t = time.perf_counter()
            fn()
            t_best = min(t_best, time.perf_counter() - t)
        return t_best

    forward = best(lambda: clip.encode_images(x))
    out = {
        "device": "cpu",
        "threads": args.threads,
        "clip_forward_s": round(forward, 4),
        "gradcam_cost_ratio": {},
        "second_expression_ratio": {},
    }
    text2 = clip.encode_text(["the white storage tank at the bottom"])
    for scales in ((1.0,), (1.0, 0.5), (1.0, 0.5, 0.25)):
        cross_scale_cam(clip, image, text, scales)  # warm-up
        t = best(lambda s=scales: cross_scale_cam(clip, image, text, s, cache={}), repeat=2)
        cache: dict = {}
        cross_scale_cam(clip, image, text, scales, cache=cache)
        t2 = best(lambda s=scales, c=cache: cross_scale_cam(clip, image, text2, s, cache=c), repeat=2)
        n = str(len(scales))
        out["gradcam_cost_ratio"][n] = round(t / forward, 2)
        out["second_expression_ratio"][n] = round(t2 / t, 3)
        out[f"gvta_s_{n}_scales"] = round(t, 3)
    print(json.dumps(out))


if __name__ == "__main__":
    main()
