"""Sanity benchmark of the committed world-clip on a world it was not trained on.

World: ``dglrsis.eval.world.iter_scenes`` with world seed 7 (training uses world seeds ≥ 1000), both kinds.

(a) Zero-shot crop classification over **all** classes of the kind: every instance's LVTA context crop
    (default :class:`dglrsis.lvta.LVTAConfig`: context 1.5, blurred background) against the class
    embeddings from ``build_prompts`` of the kind's vocabulary (prompt embeddings averaged per class).
    Goal ≥ 95 %.
(b) CAM sanity: for every class present exactly once in a scene, Grad-CAM (:func:`dglrsis.cam.clip_gradcam`)
    of the whole scene (resized to the CAM input side) against the class-name text; the CAM is resized to
    the scene and scored by the share of the top-10 % activation mass inside the instance mask
    (goal ≥ 50 %), per object-size bucket (mask area / scene area: small < 1 %, medium 1–4 %, large ≥ 4 %),
    and by the pointing game (arg-max inside the mask). Measured at the model's input side (12² patches
    for world-clip) and at twice it (24² patches; positional embedding interpolated, as ``clip_gradcam``
    allows). Next to each, the **patch-share reference**: the same score for a "CAM" that is the object's
    own mask averaged over the patch grid (what a CAM that knew the mask could show at that resolution),
    the resolution ceiling the model's CAM is up against.
(c) Proposal pieces: the superpixel proposals (``dglrsis.proposals`` defaults) of object size lying on one
    land cover (:func:`dglrsis.trainable.world_clip.data.landcover_proposals`) and those inside one
    instance (``object_proposals``), LVTA context crop and masked crop, against the kind's class
    embeddings plus the bundled land-cover vocabulary's: the share of land-cover pieces classified as a
    land cover, and of object pieces as their instance's class. These are the crops LVTA and GVTA ask
    about; a road patch taken for a "vehicle" is a false positive, a runway piece taken for a road a miss.

Prints per-class and per-bucket tables, then one JSON object as the last line.
Usage: python bench/bench_world_clip.py [--clip world-clip] [--seed 7] [--n 40] [--size 512]
    [--cam-sizes 96,192]
       [--card PATH]
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
    return group_embeddings(clip, groups), source


def group_embeddings(clip, groups: list[list[str]]) -> torch.Tensor:
    """``K×D``: per group of prompts, the normalised mean of their embeddings (one text batch)."""
    emb = clip.encode_text([p for g in groups for p in g])
    out, i = [], 0
    for g in groups:
        out.append(F.normalize(emb[i : i + len(g)].mean(0), dim=-1))
        i += len(g)
    return torch.stack(out)


def crop_accuracy(clip, kind: str, seed: int, n: int, size: int) -> dict:
    """Per-class and overall zero-shot accuracy of LVTA crops of every instance."""
    from dglrsis.eval.world import SCENE_CLASSES, iter_scenes
    from dglrsis.lvta import LVTAConfig, context_crops
    from dglrsis.masks import Proposals

    classes = SCENE_CLASSES[kind]
    text, source = class_embeddings(clip, kind)
    cfg = LVTAConfig()
    hits, total = defaultdict(int), defaultdict(int)
    for scene in iter_scenes(seed, n, size, kind):
        if not scene.instances:
            continue
        masks = np.stack([i.mask for i in scene.instances])
        boxes = np.array([i.bbox for i in scene.instances], dtype=float)
        props = Proposals.from_masks(masks)
        crops = context_crops(scene.image, props, clip.image_size, clip.mean, clip.std, cfg, boxes=boxes)
        pred = (clip.encode_images(crops) @ text.T).argmax(1).tolist()
        for inst, p in zip(scene.instances, pred, strict=False):
            total[inst.category] += 1
            hits[inst.category] += int(classes[p] == inst.category)
    per_class = {c: round(hits[c] / total[c], 4) for c in classes if total[c]}
    n_all = sum(total.values())
    return {
        "accuracy": sum(hits.values()) / max(n_all, 1),
        "n": n_all,
        "per_class": per_class,
        "n_per_class": {c: total[c] for c in classes if total[c]},
        "prompts": source,
    }


def piece_accuracy(clip, kind: str, seed: int, n: int, size: int) -> dict:
    """Over the kind's classes plus the bundled land covers, per crop kind (context crops, masked crops):
    the share of the scenes' land-cover pieces classified as a land cover, and of their object pieces
    classified as their instance's class; and how many of each."""
    from dataclasses import replace

    from dglrsis.background import load_background_vocab
    from dglrsis.eval.world import SCENE_CLASSES, iter_scenes
    from dglrsis.lvta import LVTAConfig, context_crops
    from dglrsis.proposals import generate_proposals
    from dglrsis.trainable.world_clip.data import landcover_proposals, object_proposals
    from dglrsis.vocab import build_prompts

    classes = SCENE_CLASSES[kind]
    text, _ = class_embeddings(clip, kind)
    groups = build_prompts(load_background_vocab("landcover"), templates="rs", synonyms=True, knowledge=False)
    text = torch.cat([text, group_embeddings(clip, groups)])
    out = {f"{w}_{c}": 0 for w in ("landcover", "object") for c in ("context", "masked")}
    out.update(landcover_n=0, object_n=0)
    crop_cfgs = (("context", LVTAConfig()), ("masked", replace(LVTAConfig(), background="mask")))
    for scene in iter_scenes(seed, n, size, kind):
        props = generate_proposals(scene.image)
        land = [j for j, _ in landcover_proposals(props, scene.landcover, scene.class_map > 0)]
        obj = object_proposals(props, [i.mask for i in scene.instances])
        want = torch.tensor([classes.index(scene.instances[k].category) for _, k in obj], dtype=torch.long)
        for which, idx in (("landcover", land), ("object", [j for j, _ in obj])):
            if not idx:
                continue
            for name, cfg in crop_cfgs:
                crops = context_crops(
                    scene.image, props.select(idx), clip.image_size, clip.mean, clip.std, cfg
                )
                pred = (clip.encode_images(crops) @ text.T).argmax(1)
                right = pred >= len(classes) if which == "landcover" else pred == want
                out[f"{which}_{name}"] += int(right.sum())
            out[f"{which}_n"] += len(idx)
    return out


def _scene_tensor(image: np.ndarray, side: int, mean, std) -> torch.Tensor:
    x = torch.from_numpy(image).permute(2, 0, 1)[None].float() / 255
    x = F.interpolate(x, size=(side, side), mode="bilinear", antialias=True, align_corners=False)
    return (x - torch.tensor(mean).view(1, 3, 1, 1)) / torch.tensor(std).view(1, 3, 1, 1)


def patch_share_map(mask: np.ndarray, grid: int) -> np.ndarray:
    """The patch-share reference CAM of an ``H×W`` bool mask: its area share in each of ``grid×grid``
    patches, resized back to ``H×W`` the way the bench resizes a Grad-CAM (bilinear). float32."""
    m = torch.from_numpy(np.asarray(mask, dtype=np.float32))[None, None]
    share = F.adaptive_avg_pool2d(m, grid)
    return F.interpolate(share, size=m.shape[-2:], mode="bilinear", align_corners=False)[0, 0].numpy()


def cam_sanity(clip, kind: str, seed: int, n: int, size: int, cam_sizes: list[int]) -> dict[int, list[dict]]:
    """Per CAM input side, one record per (scene, class present exactly once): mass inside, pointing hit,
    area fraction, and the patch-share reference's mass inside. Each scene is rendered and its class texts
    encoded once for all sides."""
    from dglrsis.cam import cam_mass_inside, clip_gradcam, pointing_game
    from dglrsis.eval.world import READABLE, iter_scenes

    patch = clip.model.visual.patch_size[0]
    records = {s: [] for s in cam_sizes}
    for scene in iter_scenes(seed, n, size, kind):
        counts = defaultdict(list)
        for inst in scene.instances:
            counts[inst.category].append(inst)
        single = [v[0] for v in counts.values() if len(v) == 1]
        if not single:
            continue
        text = clip.encode_text([READABLE[i.category] for i in single])
        for cam_size in cam_sizes:
            x = _scene_tensor(scene.image, cam_size, clip.mean, clip.std).expand(len(single), -1, -1, -1)
            cams = torch.from_numpy(clip_gradcam(clip, x, text))[:, None]
            cams = F.interpolate(cams, size=scene.image.shape[:2], mode="bilinear", align_corners=False)[
                :, 0
            ].numpy()
            for inst, cam in zip(single, cams, strict=False):
                ref = patch_share_map(inst.mask, cam_size // patch)
                records[cam_size].append(
                    {
                        "kind": kind,
                        "class": inst.category,
                        "area": inst.area / scene.image.shape[0] ** 2,
                        "mass": cam_mass_inside(cam, inst.mask, 0.10),
                        "hit": pointing_game(cam, inst.mask),
                        "reference": cam_mass_inside(ref, inst.mask, 0.10),
                    }
                )
    return records


def summarise_cam(records: list[dict], prefix: str = "cam") -> dict:
    """Means of the records' mass, pointing hit and reference mass, overall and per size bucket."""

    def mean(rs, key):
        return float(np.mean([r[key] for r in rs])) if rs else None

    out = {
        f"{prefix}_top10_mass_inside": mean(records, "mass"),
        f"{prefix}_pointing_game": mean(records, "hit"),
        f"{prefix}_reference": mean(records, "reference"),
        f"{prefix}_n": len(records),
    }
    for name, lo, hi in BUCKETS:
        rs = [r for r in records if lo <= r["area"] < hi]
        out[f"{prefix}_top10_mass_inside_{name}"] = mean(rs, "mass")
        out[f"{prefix}_pointing_game_{name}"] = mean(rs, "hit")
        out[f"{prefix}_reference_{name}"] = mean(rs, "reference")
        out[f"{prefix}_n_{name}"] = len(rs)
    return out


def _fmt(v) -> str:
    return "-" if v is None else f"{v:.3f}"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument(
        "--clip", default="world-clip", help="CLIP registry name (default: the committed world-clip)"
    )
    p.add_argument("--seed", type=int, default=7, help="world seed (must be < 1000: not used in training)")
    p.add_argument("--n", type=int, default=40, help="scenes per kind")
    p.add_argument("--size", type=int, default=512, help="scene side (pixels)")
    p.add_argument(
        "--cam-sizes",
        default=None,
        help="comma-separated CAM input sides (default: the model's input side and twice it)",
    )
    p.add_argument("--threads", type=int, default=2)
    p.add_argument(
        "--card", default=None, help="merge the figures into this card json (e.g. the world-clip card)"
    )
    a = p.parse_args(argv)
    try:
        sizes = [int(v) for v in a.cam_sizes.split(",")] if a.cam_sizes else []
    except ValueError:
        p.error(f"--cam-sizes must be comma-separated integers, got {a.cam_sizes!r}")
    if any(v < 1 for v in sizes):
        p.error(f"--cam-sizes must be positive, got {a.cam_sizes!r}")
    torch.set_num_threads(a.threads)
    from dglrsis.models import load_clip

    t0 = time.time()
    clip = load_clip(a.clip)
    res = {"clip": a.clip, "world_seed": a.seed, "scenes_per_kind": a.n, "size": a.size}
    sizes = sizes or [clip.image_size, 2 * clip.image_size]
    hits = n_all = 0
    records = {s: [] for s in sizes}
    for kind in ("isaid", "rrsisd"):
        acc = crop_accuracy(clip, kind, a.seed, a.n, a.size)
        print(f"[{kind}] crop accuracy {acc['accuracy']:.3f} over {acc['n']} crops ({acc['prompts']})")
        for c, v in acc["per_class"].items():
            print(f"    {c:28s} {v:.3f}  (n={acc['n_per_class'][c]})")
        res[f"crop_accuracy_{kind}"] = round(acc["accuracy"], 4)
        res[f"crop_per_class_{kind}"] = acc["per_class"]
        hits += acc["accuracy"] * acc["n"]
        n_all += acc["n"]
        for s, recs in cam_sanity(clip, kind, a.seed, a.n, a.size, sizes).items():
            records[s] += recs
    res["world_clip_crop_accuracy"] = round(hits / max(n_all, 1), 4)
    res["crop_n"] = n_all
    pieces = [piece_accuracy(clip, kind, a.seed, a.n, a.size) for kind in ("isaid", "rrsisd")]
    for which in ("landcover", "object"):
        total = sum(p[f"{which}_n"] for p in pieces)
        for name in ("context", "masked"):
            res[f"{which}_piece_accuracy_{name}"] = round(
                sum(p[f"{which}_{name}"] for p in pieces) / max(total, 1), 4
            )
        res[f"{which}_piece_n"] = total
        print(
            f"[{which} pieces] {total} proposals classified right: "
            f"{res[f'{which}_piece_accuracy_context']:.3f} context crops, "
            f"{res[f'{which}_piece_accuracy_masked']:.3f} masked crops"
        )
    for s in sizes:  # the model's own input side keeps the plain "cam_" keys
        prefix = "cam" if s == clip.image_size else f"cam{s}"
        cam = summarise_cam(records[s], prefix)
        print(f"[cam {s} px] top-10% mass inside / pointing / patch-share reference")
        for name in [b[0] for b in BUCKETS] + [None]:
            sfx = f"_{name}" if name else ""
            print(
                f"    {name or 'all':6s} n={cam[f'{prefix}_n{sfx}']:3d}  "
                f"{_fmt(cam[f'{prefix}_top10_mass_inside{sfx}'])}"
                f"  {_fmt(cam[f'{prefix}_pointing_game{sfx}'])}  {_fmt(cam[f'{prefix}_reference{sfx}'])}"
            )
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
