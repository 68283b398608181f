"""Writers of the synthetic world in the real dataset formats (iSAID raw devkit form, RRSIS-D)."""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np

from dglrsis.errors import DglrsisError
from dglrsis.eval.isaid import ISAID_PALETTE, decode_label

from .expressions import expressions_for, extra_expressions
from .scenes import GENERATOR_VERSION, ISAID_CLASSES, RRSISD_CATEGORIES, Scene, iter_scenes


def _write_isaid(scene: Scene, root: Path, split: str, name: str) -> None:
    from PIL import Image

    from dglrsis.io import atomic_path

    pal = np.array(ISAID_PALETTE, np.uint8)
    for sub, arr in (
        (Path(split) / "images" / f"{name}.png", scene.image),
        (Path(split) / "Semantic_masks" / "images" / f"{name}_instance_color_RGB.png", pal[scene.class_map]),
    ):
        with atomic_path(root / sub) as tmp:
            Image.fromarray(arr).save(tmp, format="PNG")


def _rle(mask: np.ndarray) -> dict:
    from pycocotools import mask as mask_utils

    r = mask_utils.encode(np.asfortranarray(mask.astype(np.uint8)))
    return {"size": [int(v) for v in r["size"]], "counts": r["counts"].decode("utf-8")}


def _split_of(i: int, n: int, fractions) -> str:
    names = [s for s, _ in fractions]
    cum = np.cumsum([f for _, f in fractions])
    pos = (i + 0.5) / n
    return names[int(np.searchsorted(cum, pos))] if pos < cum[-1] else names[-1]


def generate_world(out, seed: int = 0, n: int = 20, size: int = 512, progress: bool = True) -> dict:
    """Write ``n`` iSAID-format and ``n`` RRSIS-D-format scenes of ``size``×``size`` pixels under ``out``.

    Layout: ``isaid/{train,val}/images/P0000.png`` + ``isaid/{split}/Semantic_masks/images/
    P0000_instance_color_RGB.png`` (75 % train / 25 % val by index); ``rrsisd/refs(unc).p`` (pickle protocol
    2), ``rrsisd/instances.json`` (bbox = inclusive x1,y1,x2,y2 of the mask, ``categories_id``, one RLE per
    annotation), ``images/rrsisd/JPEGImages/NNNNN.jpg`` (60/10/30 % train/val/test by index) — RMSIN's
    tree, so ``out`` is the ``--refer_data_root`` RMSIN's unchanged loader takes; ``world.json``.
    Returns the summary written to ``world.json``.
    """
    from PIL import Image
    from tqdm import tqdm

    from dglrsis.io import atomic_path, write_bytes, write_json

    if n < 1 or size < 64:
        raise DglrsisError(f"a world needs n >= 1 scenes of size >= 64 pixels, got n={n}, size={size}")
    out = Path(out)
    isaid = out / "isaid"
    for i, scene in enumerate(
        tqdm(iter_scenes(seed, n, size, "isaid"), total=n, desc="isaid", disable=not progress)
    ):
        _write_isaid(scene, isaid, _split_of(i, n, [("train", 0.75), ("val", 0.25)]), f"P{i:04d}")
    rr = out / "rrsisd"
    images, anns, refs = [], [], []
    rng_text = np.random.default_rng(np.random.SeedSequence([int(seed), 999_999]))
    sent_id = 0
    for i, scene in enumerate(
        tqdm(iter_scenes(seed, n, size, "rrsisd"), total=n, desc="rrsisd", disable=not progress)
    ):
        fname = f"{i:05d}.jpg"
        with atomic_path(out / "images" / "rrsisd" / "JPEGImages" / fname) as tmp:
            Image.fromarray(scene.image).save(tmp, format="JPEG", quality=95)
        images.append({"id": i, "file_name": fname, "width": size, "height": size})
        ann_ids = {}
        for inst in scene.instances:
            ann_ids[inst.id] = len(anns)
            x0, y0, x1, y1 = inst.bbox
            anns.append(
                {
                    "id": len(anns),
                    "image_id": i,
                    "categories_id": RRSISD_CATEGORIES.index(inst.category),
                    "bbox": [x0, y0, x1 - 1, y1 - 1],
                    "area": int(inst.area),
                    "iscrowd": 0,
                    "segmentation": [_rle(inst.mask)],
                }
            )
        split = _split_of(i, n, [("train", 0.6), ("val", 0.1), ("test", 0.3)])
        for target, sents in expressions_for(scene, rng_text):
            sentences = []
            for text, kinds, _spec in sents:
                toks = text.lower().split()
                sentences.append(
                    {
                        "tokens": toks,
                        "raw": text,
                        "sent_id": sent_id,
                        "sent": " ".join(toks),
                        "modifiers": kinds,
                    }
                )
                sent_id += 1
            refs.append(
                {
                    "image_id": i,
                    "split": split,
                    "sentences": sentences,
                    "file_name": fname,
                    "category_id": RRSISD_CATEGORIES.index(target.category),
                    "ann_id": ann_ids[target.id],
                    "sent_ids": [s["sent_id"] for s in sentences],
                    "ref_id": len(refs),
                }
            )
        # free-text kinds from their own stream: the expressions above stay those of earlier worlds
        rng_extra = np.random.default_rng(np.random.SeedSequence([int(seed), 999_998, i]))
        for targets, text, kinds, _spec in extra_expressions(scene, rng_extra):
            if len(targets) == 1:
                ann = ann_ids[targets[0].id]
            else:  # a plural target: one annotation holding every instance (the union mask)
                ann = len(anns)
                union = np.logical_or.reduce([t.mask for t in targets])
                ys, xs = np.nonzero(union)
                anns.append(
                    {
                        "id": ann,
                        "image_id": i,
                        "categories_id": RRSISD_CATEGORIES.index(targets[0].category),
                        "bbox": [int(xs.min()), int(ys.min()), int(xs.max()), int(ys.max())],
                        "area": int(union.sum()),
                        "iscrowd": 0,
                        "segmentation": [_rle(t.mask) for t in targets],
                    }
                )
            toks = text.lower().split()
            sentence = {"tokens": toks, "raw": text, "sent_id": sent_id, "sent": " ".join(toks)}
            refs.append(
                {
                    "image_id": i,
                    "split": split,
                    "sentences": [{**sentence, "modifiers": kinds}],
                    "file_name": fname,
                    "category_id": RRSISD_CATEGORIES.index(targets[0].category),
                    "ann_id": ann,
                    "sent_ids": [sent_id],
                    "ref_id": len(refs),
                }
            )
            sent_id += 1
    write_bytes(rr / "refs(unc).p", pickle.dumps(refs, protocol=2))
    cats = [{"id": j, "name": name} for j, name in enumerate(RRSISD_CATEGORIES)]
    write_json(rr / "instances.json", {"images": images, "annotations": anns, "categories": cats})
    from importlib.metadata import version

    versions = {"generator": GENERATOR_VERSION, **{p: version(p) for p in ("numpy", "pillow", "pycocotools")}}
    summary = {
        "generator_version": GENERATOR_VERSION,
        "versions": versions,
        "seed": seed,
        "n": n,
        "size": size,
        "isaid_classes": ISAID_CLASSES,
        "rrsisd_categories": RRSISD_CATEGORIES,
        "refs": len(refs),
        "sentences": sent_id,
        "annotations": len(anns),
    }
    write_json(out / "world.json", summary)
    return summary


def convert_isaid_to_index(root, out) -> None:
    """Write the mmseg-converted form of a raw iSAID folder: ``img_dir/{split}/*.png`` holding **BMP
    bytes** (as the real converter does) and single-channel index labels in ``ann_dir/{split}/``. Our
    scenes are small, so no patching is done."""
    from PIL import Image

    from dglrsis.io import atomic_path

    root, out = Path(root), Path(out)
    for split_dir in sorted(p for p in root.iterdir() if p.is_dir()):
        for img_path in sorted((split_dir / "images").glob("*.png")):
            with (
                Image.open(img_path) as im,
                atomic_path(out / "img_dir" / split_dir.name / img_path.name) as tmp,
            ):
                im.convert("RGB").save(tmp, format="BMP")
            lab_path = split_dir / "Semantic_masks" / "images" / f"{img_path.stem}_instance_color_RGB.png"
            idx = decode_label(lab_path)  # exact palette match, other colours → 255
            with atomic_path(out / "ann_dir" / split_dir.name / lab_path.name) as tmp:
                Image.fromarray(idx).save(tmp, format="PNG")
