"""Synthetic world: scenes, unique expressions, and the iSAID / RRSIS-D files it writes."""

import json
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from dglrsis.eval.isaid import ISAID_PALETTE
from dglrsis.eval.world import (
    ISAID_CLASSES,
    READABLE,
    RRSISD_CATEGORIES,
    Instance,
    convert_isaid_to_index,
    expressions_for,
    generate_world,
    iter_scenes,
    render_scene,
    resolve,
)

N, SIZE, SEED = 5, 256, 3


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    out = tmp_path_factory.mktemp("world") / "w"
    summary = generate_world(out, seed=SEED, n=N, size=SIZE, progress=False)
    return out, summary


def _files(root: Path) -> dict:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def _decode_colour_label(rgb: np.ndarray) -> np.ndarray:
    """Exact RGB → iSAID index; anything not in the palette → 255."""
    out = np.full(rgb.shape[:2], 255, np.uint8)
    for j, c in enumerate(ISAID_PALETTE):
        out[(rgb == np.array(c, np.uint8)).all(-1)] = j
    return out


def test_class_lists():
    assert len(ISAID_CLASSES) == 16 and ISAID_CLASSES[0] == "background" and ISAID_CLASSES[15] == "Harbor"
    assert ISAID_PALETTE[6] == (0, 63, 255) and ISAID_PALETTE[15] == (0, 100, 155)
    assert len(set(ISAID_PALETTE)) == 16
    assert len(RRSISD_CATEGORIES) == 20 and RRSISD_CATEGORIES[0] == "Expressway-Service-area"
    assert RRSISD_CATEGORIES[19] == "windmill" and RRSISD_CATEGORIES[15] == "storagetank"
    assert READABLE["Expressway-Service-area"] == "expressway service area"
    assert all(c in READABLE for c in ISAID_CLASSES[1:] + RRSISD_CATEGORIES)


@pytest.mark.parametrize("kind", ["isaid", "rrsisd"])
def test_scene_masks_are_the_visible_labels(kind):
    rng = np.random.default_rng(11)
    index = (
        {n: j for j, n in enumerate(ISAID_CLASSES)}
        if kind == "isaid"
        else {n: j + 1 for j, n in enumerate(RRSISD_CATEGORIES)}
    )
    for _ in range(4):
        s = render_scene(rng, SIZE, kind)
        assert s.image.shape == (SIZE, SIZE, 3) and s.image.dtype == np.uint8
        assert s.class_map.shape == s.landcover.shape == (SIZE, SIZE)
        assert 1 <= len(s.instances) <= 8
        rebuilt = np.zeros((SIZE, SIZE), np.uint8)
        seen = np.zeros((SIZE, SIZE), bool)
        for inst in s.instances:
            assert not (seen & inst.mask).any()  # visible parts are disjoint
            seen |= inst.mask
            rebuilt[inst.mask] = index[inst.category]
            ys, xs = np.nonzero(inst.mask)
            assert inst.bbox == (xs.min(), ys.min(), xs.max() + 1, ys.max() + 1)
            assert inst.area == inst.mask.sum()
        np.testing.assert_array_equal(rebuilt, s.class_map)


def test_scene_stream_is_independent_of_n():
    a = list(iter_scenes(SEED, 3, 128, "isaid"))
    b = list(iter_scenes(SEED, 1, 128, "isaid", start=2))
    np.testing.assert_array_equal(a[2].image, b[0].image)
    assert not np.array_equal(a[0].image, a[1].image)


def _inst(i, cat, box, size=100, colour="white"):
    m = np.zeros((size, size), bool)
    x0, y0, x1, y1 = box
    m[y0:y1, x0:x1] = True
    return Instance(i, cat, m, box, colour, int(m.sum()))


def test_resolver_hand_cases():
    ships = [
        _inst(1, "ship", (5, 40, 15, 50)),
        _inst(2, "ship", (70, 40, 80, 50), colour="red"),
        _inst(3, "Harbor", (60, 60, 95, 70)),
    ]
    assert resolve({"class": "ship", "position": "left"}, ships, 100) == [1]
    assert resolve({"class": "ship", "position": "right"}, ships, 100) == [2]
    assert resolve({"class": "ship"}, ships, 100) == [1, 2]  # not unique
    assert resolve({"class": "ship", "colour": "red"}, ships, 100) == [2]
    assert resolve({"class": "ship", "relation": {"type": "near", "anchor": "Harbor"}}, ships, 100) == [2]
    assert resolve({"class": "ship", "relation": {"type": "above", "anchor": "Harbor"}}, ships, 100) == [2]
    assert resolve({"class": "ship", "relation": {"type": "below", "anchor": "Harbor"}}, ships, 100) == []
    # areas 100 vs 120: "largest" is not clear (< 30 %); 100 vs 400 is
    close = [_inst(1, "ship", (0, 0, 10, 10)), _inst(2, "ship", (50, 50, 62, 60))]
    assert resolve({"class": "ship", "size": "largest"}, close, 100) == []
    far = [_inst(1, "ship", (0, 0, 10, 10)), _inst(2, "ship", (50, 50, 70, 70))]
    assert resolve({"class": "ship", "size": "largest"}, far, 100) == [2]
    assert resolve({"class": "ship", "size": "smallest"}, far, 100) == [1]
    # two ships both on the left half but 4 px apart: "on the left" is ambiguous
    near = [_inst(1, "ship", (5, 5, 15, 15)), _inst(2, "ship", (9, 60, 19, 70))]
    assert resolve({"class": "ship", "position": "left"}, near, 100) == []
    assert resolve({"class": "ship", "position": "upper left"}, near, 100) == [1]


def test_expressions_identify_their_target_and_cover_all_modifiers():
    rng = np.random.default_rng(0)
    kinds, n_targets = Counter(), 0
    for scene in iter_scenes(SEED, 30, SIZE, "rrsisd"):
        for target, sents in expressions_for(scene, rng):
            n_targets += 1
            assert 1 <= len(sents) <= 3
            for text, mods, spec in sents:
                assert resolve(spec, scene.instances, SIZE) == [target.id], text
                assert READABLE[target.category] in text.lower()
                if "colour" in mods:
                    assert target.colour in text.lower()
                kinds.update(mods)
    assert n_targets >= 30
    assert set(kinds) == {"position", "size", "colour", "relation", "class"}, kinds


def test_same_seed_same_bytes_other_seed_differs(world, tmp_path):
    out, _ = world
    again = tmp_path / "again"
    generate_world(again, seed=SEED, n=N, size=SIZE, progress=False)
    a, b = _files(out), _files(again)
    assert a.keys() == b.keys() and len(a) == 3 * N + 3  # 2N iSAID + N JPEG + refs, instances, world.json
    assert all(a[k] == b[k] for k in a)
    other = tmp_path / "other"
    generate_world(other, seed=SEED + 1, n=N, size=SIZE, progress=False)
    c = _files(other)
    assert a["rrsisd/instances.json"] != c["rrsisd/instances.json"]
    assert a["isaid/train/images/P0000.png"] != c["isaid/train/images/P0000.png"]


def test_isaid_colour_labels_decode_to_class_map(world):
    out, _ = world
    scenes = list(iter_scenes(SEED, N, SIZE, "isaid"))
    splits = Counter()
    for i, scene in enumerate(scenes):
        hits = list((out / "isaid").glob(f"*/images/P{i:04d}.png"))
        assert len(hits) == 1
        split = hits[0].parent.parent.name
        splits[split] += 1
        img = np.asarray(Image.open(hits[0]))
        np.testing.assert_array_equal(img, scene.image)
        lab = out / "isaid" / split / "Semantic_masks" / "images" / f"P{i:04d}_instance_color_RGB.png"
        rgb = np.asarray(Image.open(lab))
        assert rgb.ndim == 3 and rgb.shape[2] == 3
        np.testing.assert_array_equal(_decode_colour_label(rgb), scene.class_map)
    assert splits["train"] >= 1 and splits["val"] >= 1 and set(splits) == {"train", "val"}


def test_rrsisd_files(world):
    from pycocotools import mask as mask_utils

    from dglrsis.safeload import load_pickle

    out, summary = world
    rr = out / "rrsisd"
    inst = json.loads((rr / "instances.json").read_text())
    assert [c["name"] for c in inst["categories"]] == RRSISD_CATEGORIES
    assert [im["file_name"] for im in inst["images"]] == [f"{i:05d}.jpg" for i in range(N)]
    scenes = list(iter_scenes(SEED, N, SIZE, "rrsisd"))
    anns = {a["id"]: a for a in inst["annotations"]}
    singles = [a for a in inst["annotations"] if len(a["segmentation"]) == 1]
    for a in inst["annotations"]:  # plural targets: one annotation with every instance of the class
        if len(a["segmentation"]) > 1:
            scene = scenes[a["image_id"]]
            same = [t for t in scene.instances if RRSISD_CATEGORIES[a["categories_id"]] == t.category]
            parts = [
                mask_utils.decode({**r, "counts": r["counts"].encode()}).astype(bool)
                for r in a["segmentation"]
            ]
            assert len(parts) == len(same) >= 2
            assert all(np.array_equal(p, t.mask) for p, t in zip(parts, same, strict=True))
    per_image = Counter(a["image_id"] for a in singles)
    assert [per_image[i] for i in range(N)] == [len(s.instances) for s in scenes]
    pos = Counter()
    for a in singles:
        assert "category_id" not in a and 0 <= a["categories_id"] < 20
        scene = scenes[a["image_id"]]
        k = pos[a["image_id"]]
        pos[a["image_id"]] += 1
        target = scene.instances[k]
        assert RRSISD_CATEGORIES[a["categories_id"]] == target.category
        (rle,) = a["segmentation"]
        assert isinstance(rle["counts"], str) and rle["size"] == [SIZE, SIZE]
        m = mask_utils.decode({"size": rle["size"], "counts": rle["counts"].encode()}).astype(bool)
        np.testing.assert_array_equal(m, target.mask)
        ys, xs = np.nonzero(m)
        assert a["bbox"] == [xs.min(), ys.min(), xs.max(), ys.max()] and a["area"] == m.sum()
    for im in inst["images"]:
        path = out / "images" / "rrsisd" / "JPEGImages" / im["file_name"]
        assert path.read_bytes()[:2] == b"\xff\xd8" and Image.open(path).size == (SIZE, SIZE)

    refs = load_pickle(rr / "refs(unc).p")
    assert len(refs) == summary["refs"] >= N
    assert {r["split"] for r in refs} <= {"train", "val", "test"}
    assert {"train", "test"} <= {r["split"] for r in refs}
    sent_ids = [s["sent_id"] for r in refs for s in r["sentences"]]
    assert len(set(sent_ids)) == len(sent_ids) == summary["sentences"]
    assert [r["ref_id"] for r in refs] == list(range(len(refs)))
    for r in refs:
        assert r["sent_ids"] == [s["sent_id"] for s in r["sentences"]] and r["sentences"]
        a = anns[r["ann_id"]]
        assert a["image_id"] == r["image_id"] and a["categories_id"] == r["category_id"]
        assert r["file_name"] == f"{r['image_id']:05d}.jpg"
        for s in r["sentences"]:
            assert s["tokens"] == s["sent"].split() and s["sent"] == s["raw"].lower()
            assert s["modifiers"] and set(s["modifiers"]) <= {
                "position",
                "size",
                "colour",
                "relation",
                "class",
                "landcover",
                "plural",
                "image position",
            }
    kinds = {k for r in refs for s in r["sentences"] for k in s["modifiers"]}
    assert {"landcover", "plural", "image position"} <= kinds
    meta = json.loads((out / "world.json").read_text())
    assert (
        meta["seed"] == SEED and meta["n"] == N and meta["size"] == SIZE and "generator" in meta["versions"]
    )


def test_converted_isaid_form(world, tmp_path):
    out, _ = world
    conv = tmp_path / "conv"
    convert_isaid_to_index(out / "isaid", conv)
    scenes = list(iter_scenes(SEED, N, SIZE, "isaid"))
    imgs = sorted(conv.glob("img_dir/*/*.png"))
    assert len(imgs) == N
    for p in imgs:
        assert p.read_bytes()[:2] == b"BM"  # BMP bytes under a .png name
        i = int(p.stem[1:])
        np.testing.assert_array_equal(np.asarray(Image.open(p).convert("RGB")), scenes[i].image)
        lab = Image.open(conv / "ann_dir" / p.parent.name / f"{p.stem}_instance_color_RGB.png")
        assert lab.mode == "L"
        np.testing.assert_array_equal(np.asarray(lab), scenes[i].class_map)


def test_cli(tmp_path, capsys):
    from dglrsis.cli import main

    assert main(["world", "--out", str(tmp_path / "w"), "--n", "0"]) == 2
    assert "--n" in capsys.readouterr().err
    assert main(["world", "--out", str(tmp_path / "w"), "--size", "16"]) == 2
    assert main(["world", "--out", str(tmp_path / "w"), "--n", "2", "--size", "128", "--quiet"]) == 0
    assert (tmp_path / "w" / "rrsisd" / "refs(unc).p").is_file()
    assert len(list((tmp_path / "w" / "isaid").glob("*/images/*.png"))) == 2


def test_placement_follows_land_cover():
    """Ships sit on water, vehicles mostly on roads, bridges touch water (land cover under the centroid)."""
    from dglrsis.eval.world import LANDCOVER

    water, road = LANDCOVER.index("water"), LANDCOVER.index("road")
    under = {"ship": Counter(), "vehicle": Counter(), "bridge": Counter()}
    for scene in iter_scenes(SEED, 200, SIZE, "rrsisd"):
        if min(sum(c.values()) for c in under.values()) >= 8:
            break
        for inst in scene.instances:
            if inst.category in under:
                ys, xs = np.nonzero(inst.mask)
                under[inst.category][int(scene.landcover[int(ys.mean()), int(xs.mean())])] += 1
                if inst.category == "bridge":
                    assert (scene.landcover[inst.mask] == water).any()
    ships, vehicles = under["ship"], under["vehicle"]
    assert min(sum(c.values()) for c in under.values()) >= 8
    assert ships[water] >= 0.9 * sum(ships.values())
    assert vehicles[road] >= 0.5 * sum(vehicles.values())
