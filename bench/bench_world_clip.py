"""Sanity benchmark of the committed world-clip on a world it was not trained on.

World: ``dglrsis.eval.world.iter_scenes`` with world seed 7 (training uses world seeds ≥ 1000), both kinds.

(a) Zero-shot crop classification over **all** classes of the kind: every instance's LVTA context crop
    (default :class:`dglrsis.lvta.LVTAConfig`: context 1.5, blurred background) against the class
    embeddings from ``build_prompts`` of the kind's vocabulary (prompt embeddings averaged per class).
    Goal ≥ 95 %.
(b) CAM sanity: for every class present exactly once in a scene, Grad-CAM (:func:`dglrsis.cam.clip_gradcam`)
    of the whole scene (resized to the model's input) against the class-name text; the CAM is resized to
    the scene and scored by the share of the top-10 % activation mass inside the instance mask
    (goal ≥ 50 %), per object-size bucket (mask area / scene area: small < 1 %, medium 1–4 %, large ≥ 4 %),
    and by the pointing game (arg-max inside the mask).

Prints per-class and per-bucket tables, then one JSON object as the last line.
Usage: python bench/bench_world_clip.py [--clip world-clip] [--seed 7] [--n 40] [--size 512] [--card PATH]
"""

from __future__ import annotations

import argparse
import json
import time
from collections import defaultdict

import numpy as np
import torch
import torch.nn.functional as F

BUCKETS = (("small", 0.0, 0.01), ("medium", 0.01, 0.04), ("large", 0.04, 1.01))


def class_embeddings(clip, kind: str) -> tuple[torch.Tensor, str]:
    """``K×D`` class embeddings of the kind's vocabulary (``build_prompts``; averaged, normalised)."""
    try:
        from dglrsis.vocab import build_prompts, load_vocabulary
    except ImportError:  # prompts/ not installed yet: templates × readable class names
        from dglrsis.eval.world import READABLE, SCENE_CLASSES

        tpl = ["a satellite image of a {}.", "an aerial photo of a {}.", "a top-down view of a {}."]
        groups = [[t.format(READABLE[c]) for t in tpl] for c in SCENE_CLASSES[kind]]
        source = "fallback templates"
    else:
        groups = build_prompts(load_vocabulary(kind), templates="rs", synonyms=True, knowledge=True)
        source = "build_prompts(rs, synonyms, knowledge)"
    emb = clip.encode_text([p for g in groups for p in g])
    out, i = [], 0
    for g in groups:
        out.append(F.normalize(emb[i:i + len(g)].mean(0), dim=-1))
        i += len(g)
    return torch.stack(out), source


def crop_accuracy(clip, kind: str, seed: int, n: int, size: int) -> dict:
    """Per-class and overall zero-shot accuracy of LVTA crops of every instance."""
    from dglrsis.eval.world import SCENE_CLASSES, iter_scenes
    from dglrsis.lvta import LVTAConfig, context_crops

    classes = SCENE_CLASSES[kind]
    text, source = class_embeddings(clip, kind)
    cfg = LVTAConfig()
    hits, total = defaultdict(int), defaultdict(int)
    for scene in iter_scenes(seed, n, size, kind):
        if not scene.instances:
            continue
        masks = np.stack([i.mask for i in scene.instances])
        boxes = np.array([i.bbox for i in scene.instances], dtype=float)
        crops = context_crops(scene.image, masks, boxes, clip.image_size, clip.mean, clip.std, cfg)
        pred = (clip.encode_images(crops) @ text.T).argmax(1).tolist()
        for inst, p in zip(scene.instances, pred):
            total[inst.category] += 1
            hits[inst.category] += int(classes[p] == inst.category)
    per_class = {c: round(hits[c] / total[c], 4) for c in classes if total[c]}
    n_all = sum(total.values())
    return {"accuracy": sum(hits.values()) / max(n_all, 1), "n": n_all, "per_class": per_class,
            "n_per_class": {c: total[c] for c in classes if total[c]}, "prompts": source}


def _scene_tensor(image: np.ndarray, side: int, mean, std) -> torch.Tensor:
    x = torch.from_numpy(image).permute(2, 0, 1)[None].float() / 255
    x = F.interpolate(x, size=(side, side), mode="bilinear", antialias=True, align_corners=False)
    return (x - torch.tensor(mean).view(1, 3, 1, 1)) / torch.tensor(std).view(1, 3, 1, 1)


def cam_sanity(clip, kind: str, seed: int, n: int, size: int, cam_size: int) -> list[dict]:
    """One record per (scene, class present exactly once): mass inside, pointing hit, area fraction."""
    from dglrsis.cam import cam_mass_inside, clip_gradcam, pointing_game
    from dglrsis.eval.world import READABLE, iter_scenes

    records = []
    for scene in iter_scenes(seed, n, size, kind):
        counts = defaultdict(list)
        for inst in scene.instances:
            counts[inst.category].append(inst)
        single = [v[0] for v in counts.values() if len(v) == 1]
        if not single:
            continue
        text = clip.encode_text([READABLE[i.category] for i in single])
        x = _scene_tensor(scene.image, cam_size, clip.mean, clip.std).expand(len(single), -1, -1, -1)
        cams = torch.from_numpy(clip_gradcam(clip, x, text))[:, None]
        cams = F.interpolate(cams, size=scene.image.shape[:2], mode="bilinear", align_corners=False)[:, 0].numpy()
        for inst, cam in zip(single, cams):
            records.append({"kind": kind, "class": inst.category, "area": inst.area / scene.image.shape[0] ** 2,
                            "mass": cam_mass_inside(cam, inst.mask, 0.10), "hit": pointing_game(cam, inst.mask)})
    return records


def summarise_cam(records: list[dict]) -> dict:
    out = {"cam_top10_mass_inside": float(np.mean([r["mass"] for r in records])) if records else 0.0,
           "cam_pointing_game": float(np.mean([r["hit"] for r in records])) if records else 0.0,
           "cam_n": len(records)}
    for name, lo, hi in BUCKETS:
        rs = [r for r in records if lo <= r["area"] < hi]
        out[f"cam_top10_mass_inside_{name}"] = float(np.mean([r["mass"] for r in rs])) if rs else None
        out[f"cam_pointing_game_{name}"] = float(np.mean([r["hit"] for r in rs])) if rs else None
        out[f"cam_n_{name}"] = len(rs)
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--clip", default="world-clip", help="CLIP registry name (default: the committed world-clip)")
    p.add_argument("--seed", type=int, default=7, help="world seed (must be < 1000: not used in training)")
    p.add_argument("--n", type=int, default=40, help="scenes per kind")
    p.add_argument("--size", type=int, default=512, help="scene side (pixels)")
    p.add_argument("--cam-size", type=int, default=0, help="CAM input side (default: the model's input size)")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--card", default=None, help="merge the figures into this card json (e.g. the world-clip card)")
    a = p.parse_args(argv)
    torch.set_num_threads(a.threads)
    from dglrsis.models import load_clip

    t0 = time.time()
    clip = load_clip(a.clip)
    res = {"clip": a.clip, "world_seed": a.seed, "scenes_per_kind": a.n, "size": a.size}
    hits = n_all = 0
    records = []
    for kind in ("isaid", "rrsisd"):
        acc = crop_accuracy(clip, kind, a.seed, a.n, a.size)
        print(f"[{kind}] crop accuracy {acc['accuracy']:.3f} over {acc['n']} crops ({acc['prompts']})")
        for c, v in acc["per_class"].items():
            print(f"    {c:28s} {v:.3f}  (n={acc['n_per_class'][c]})")
        res[f"crop_accuracy_{kind}"] = round(acc["accuracy"], 4)
        res[f"crop_per_class_{kind}"] = acc["per_class"]
        hits += acc["accuracy"] * acc["n"]
        n_all += acc["n"]
        records += cam_sanity(clip, kind, a.seed, a.n, a.size, a.cam_size or clip.image_size)
    res["world_clip_crop_accuracy"] = round(hits / max(n_all, 1), 4)
    res["crop_n"] = n_all
    cam = summarise_cam(records)
    for name, _, _ in BUCKETS:
        v, h = cam[f"cam_top10_mass_inside_{name}"], cam[f"cam_pointing_game_{name}"]
        print(f"[cam] {name:6s} n={cam[f'cam_n_{name}']:3d}  top-10% mass inside "
              f"{'-' if v is None else f'{v:.3f}'}  pointing {'-' if h is None else f'{h:.3f}'}")
    print(f"[cam] all    n={cam['cam_n']:3d}  top-10% mass inside {cam['cam_top10_mass_inside']:.3f}  "
          f"pointing {cam['cam_pointing_game']:.3f}")
    res.update({k: (round(v, 4) if isinstance(v, float) else v) for k, v in cam.items()})
    res["seconds"] = round(time.time() - t0, 1)
    if a.card:
        from dglrsis.io import write_json

        with open(a.card) as f:
            card = json.load(f)
        card["figures"] = res
        write_json(a.card, card)
    print(json.dumps(res))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
