"""OVSS speed benchmarks with the real architectures at random weights (CLIP ViT-B-16, SAM vit_b).

Figures (printed as one JSON object on the last line):
- crop_batching_speedup: LVTA crop encoding of 64 masks, one batched call ÷ a per-mask loop (goal ≥ 5).
- ovss_overhead_ratio: a whole ``set_image`` + ``segment`` call with SAM proposals ÷ the time spent
  inside the model forwards it needs (SAM image encoder, SAM prompt encoder + mask decoder, CLIP image
  and text towers), measured with forward hooks in the same run (goal ≤ 1.15).

Usage: python bench/bench_ovss.py [--size 512] [--threads 2] [--device cuda]   (default: cuda when available)
"""

from __future__ import annotations

import argparse
import json
import os
import time

import numpy as np
import torch


def _sync() -> None:
    if torch.cuda.is_available():
        torch.cuda.synchronize()


def _timed(fn, repeat: int = 3) -> float:
    best = float("inf")
    for _ in range(repeat):
        _sync()
        t = time.perf_counter()
        fn()
        _sync()
        best = min(best, time.perf_counter() - t)
    return best


def crop_batching(clip, n: int = 64) -> dict:
    from dglrsis.lvta import encode_crops

    crops = torch.randn(n, 3, clip.image_size, clip.image_size)  # CPU, as LVTA builds them
    encode_crops(clip, crops[:2], 2)  # warm-up
    batched = _timed(lambda: encode_crops(clip, crops, n), repeat=2)
    looped = _timed(lambda: [encode_crops(clip, crops[i : i + 1], 1) for i in range(n)], repeat=1)
    return {
        "crop_batching_speedup": round(looped / batched, 2),
        "crops": n,
        "batched_s": round(batched, 3),
        "looped_s": round(looped, 3),
    }


class ForwardTimer:
    """Accumulates wall time spent inside the given modules' forward calls (outermost calls only)."""

    def __init__(self, modules: dict):
        self.total = {k: 0.0 for k in modules}
        self._start: dict = {}
        self._handles = []
        for name, mod in modules.items():
            self._handles.append(mod.register_forward_pre_hook(self._pre(name)))
            self._handles.append(mod.register_forward_hook(self._post(name)))

    def _pre(self, name):
        def hook(module, args):
            _sync()
            self._start[name] = time.perf_counter()

        return hook

    def _post(self, name):
        def hook(module, args, out):
            _sync()
            self.total[name] += time.perf_counter() - self._start.pop(name)

        return hook

    def remove(self) -> None:
        for h in self._handles:
            h.remove()


def ovss_overhead(clip, size: int, device: str) -> dict:
    from dglrsis.models import load_sam
    from dglrsis.predictor import Predictor, PredictorConfig
    from dglrsis.proposals import ProposalConfig

    sam = load_sam("vit_b", checkpoint="random", device=device)
    cfg = PredictorConfig(
        clip="ViT-B-16:random",
        proposals="sam",
        device=device,
        proposal_cfg=ProposalConfig(
            method="sam",
            points_per_side=16,
            points_per_batch=64,
            pred_iou_thresh=0.0,
            stability_score_thresh=0.0,
        ),
    )
    pred = Predictor(cfg, clip=clip, sam=sam)
    rng = np.random.default_rng(0)
    image = (rng.random((size, size, 3)) * 255).astype(np.uint8)
    classes = [
        "ship",
        "storage tank",
        "harbor",
        "plane",
        "small vehicle",
        "large vehicle",
        "bridge",
        "tennis court",
        "basketball court",
        "swimming pool",
        "roundabout",
        "soccer ball field",
        "ground track field",
        "baseball diamond",
        "helicopter",
    ]
    pred.set_image(image[:64, :64])
    pred.segment(classes[:2])  # warm-up of every code path
    timer = ForwardTimer(
        {
            "sam_image_encoder": sam.image_encoder,
            "sam_prompt_encoder": sam.prompt_encoder,
            "sam_mask_decoder": sam.mask_decoder,
            "clip_image": clip.model.visual,
            "clip_text": clip.model.transformer,
        }
    )
    pred.models.text.clear()
    _sync()
    t = time.perf_counter()
    pred.set_image(image)
    seg = pred.segment(classes)
    _sync()
    wall = time.perf_counter() - t
    timer.remove()
    forwards = sum(timer.total.values())
    return {
        "ovss_overhead_ratio": round(wall / forwards, 3),
        "wall_s": round(wall, 2),
        "forward_s": {k: round(v, 2) for k, v in timer.total.items()},
        "masks": int(len(seg.mask_labels)),
        "size": size,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size", type=int, default=512)
    ap.add_argument("--threads", type=int, default=min(2, os.cpu_count() or 1))
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    from dglrsis.models import load_clip

    clip = load_clip("ViT-B-16:random", device=args.device)
    name = torch.cuda.get_device_name() if args.device.startswith("cuda") else "cpu"
    out = {"device": name, "threads": args.threads, "torch": torch.__version__}
    out.update(crop_batching(clip))
    print(json.dumps(out), flush=True)
    out.update(ovss_overhead(clip, args.size, args.device))
    print(json.dumps(out))


if __name__ == "__main__":
    main()
