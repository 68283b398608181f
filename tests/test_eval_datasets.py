"""Dataset readers on tiny hand-written fixtures: raw/converted iSAID, RRSIS-D (RLE + categories_id,
malicious pickle), OVRSISBench index sets and class files."""

import io
import json
import os
import pickle
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from dglrsis.errors import DglrsisError
from dglrsis.eval import isaid, ovrsisbench, rrsisd

# Hand-made 4×6 iSAID index labels; 255 marks a colour outside the palette.
LABELS = [
    np.array(
        [[0, 0, 1, 1, 2, 2], [0, 0, 1, 1, 2, 2], [15, 15, 9, 9, 0, 0], [15, 15, 9, 9, 255, 255]], np.uint8
    ),
    np.array(
        [[14, 14, 14, 0, 0, 0], [14, 14, 14, 0, 7, 7], [0, 0, 0, 0, 7, 7], [3, 3, 3, 3, 0, 0]], np.uint8
    ),
]


def _colour(label: np.ndarray) -> np.ndarray:
    rgb = np.zeros(label.shape + (3,), np.uint8)
    for idx, c in enumerate(isaid.ISAID_PALETTE):
        rgb[label == idx] = c
    rgb[label == 255] = (10, 20, 30)  # not in the palette → 255
    return rgb


def _image(i: int) -> np.ndarray:
    return np.full((4, 6, 3), 40 * (i + 1), np.uint8)


def make_raw_isaid(root: Path, split: str = "val") -> Path:
    (root / split / "images").mkdir(parents=True)
    (root / split / "Semantic_masks" / "images").mkdir(parents=True)
    for i, lab in enumerate(LABELS):
        Image.fromarray(_image(i)).save(root / split / "images" / f"P{i:04d}.png")
        Image.fromarray(_colour(lab)).save(
            root / split / "Semantic_masks" / "images" / f"P{i:04d}_instance_color_RGB.png"
        )
    return root


def make_converted_isaid(root: Path, split: str = "val") -> Path:
    (root / "img_dir" / split).mkdir(parents=True)
    (root / "ann_dir" / split).mkdir(parents=True)
    for i, lab in enumerate(LABELS):
        buf = io.BytesIO()
        Image.fromarray(_image(i)).save(buf, format="BMP")
        (root / "img_dir" / split / f"P{i:04d}.png").write_bytes(buf.getvalue())  # BMP bytes under .png
        Image.fromarray(lab, mode="L").save(root / "ann_dir" / split / f"P{i:04d}_instance_color_RGB.png")
    return root


# RRSIS-D: two 8×10 images; ann 1 = two RLE parts (str and bytes counts), ann 2 = a polygon.
def _rle(mask: np.ndarray, as_str: bool) -> dict:
    from pycocotools import mask as mask_utils

    r = mask_utils.encode(np.asfortranarray(mask.astype(np.uint8)))
    return {"size": list(r["size"]), "counts": r["counts"].decode() if as_str else r["counts"]}


def rrsisd_masks():
    a = np.zeros((8, 10), bool)
    a[1:3, 1:4] = True
    b = np.zeros((8, 10), bool)
    b[5:7, 6:9] = True
    return a, b


def make_rrsisd(root: Path, rmsin_layout: bool = False) -> Path:
    a, b = rrsisd_masks()
    meta = root / "rrsisd" if rmsin_layout else root
    img_dir = root / "images" / "rrsisd" / "JPEGImages"
    img_dir.mkdir(parents=True)
    meta.mkdir(parents=True, exist_ok=True)
    for i in range(2):
        Image.fromarray(np.full((8, 10, 3), 60 * (i + 1), np.uint8)).save(img_dir / f"{i:05d}.jpg")
    inst = {
        "images": [{"id": i, "file_name": f"{i:05d}.jpg", "height": 8, "width": 10} for i in range(2)],
        "categories": [{"id": 13, "name": "ship"}, {"id": 2, "name": "airplane"}],
        "annotations": [
            {
                "id": 1,
                "image_id": 0,
                "categories_id": 13,
                "bbox": [1, 1, 9, 7],
                "area": 999,
                "segmentation": [_rle(a, True), _rle(b, True)],
            },
            {
                "id": 2,
                "image_id": 1,
                "category_id": 2,
                "bbox": [2, 2, 6, 6],
                "area": 0,
                "segmentation": [[2, 2, 6, 2, 6, 6, 2, 6]],
            },
        ],
    }
    (meta / "instances.json").write_text(json.dumps(inst))
    refs = [
        {
            "image_id": 0,
            "split": "test",
            "file_name": "00000.jpg",
            "category_id": 13,
            "ann_id": 1,
            "ref_id": 0,
            "sent_ids": [10, 11],
            "sentences": [
                {
                    "tokens": ["ships"],
                    "raw": "The ships on the left",
                    "sent_id": 10,
                    "sent": "ships",
                    "modifiers": ["position"],
                },
                {"tokens": ["ships"], "raw": "the two ships", "sent_id": 11, "sent": "the two ships"},
            ],
        },
        {
            "image_id": 1,
            "split": "test",
            "file_name": "00001.jpg",
            "category_id": 2,
            "ann_id": 2,
            "ref_id": 1,
            "sent_ids": [12],
            "sentences": [
                {
                    "tokens": ["plane"],
                    "raw": "the large airplane",
                    "sent_id": 12,
                    "sent": "plane",
                    "modifiers": ["size", "class"],
                }
            ],
        },
        {
            "image_id": 1,
            "split": "train",
            "file_name": "00001.jpg",
            "category_id": 2,
            "ann_id": 2,
            "ref_id": 2,
            "sent_ids": [13],
            "sentences": [{"tokens": ["plane"], "raw": "plane", "sent_id": 13, "sent": "plane"}],
        },
    ]
    (meta / "refs(unc).p").write_bytes(pickle.dumps(refs, protocol=2))
    return root


def test_isaid_raw_form_decodes_colours(tmp_path):
    samples = isaid.isaid_samples(make_raw_isaid(tmp_path / "raw"), "val")
    assert [s.key for s in samples] == ["P0000", "P0001"] and all(s.form == "raw" for s in samples)
    for s, lab in zip(samples, LABELS, strict=False):
        assert np.array_equal(s.label(), lab)  # includes the off-palette colour → 255


def test_isaid_converted_form_and_bmp_bytes(tmp_path):
    from dglrsis.io import read_image

    samples = isaid.isaid_samples(make_converted_isaid(tmp_path / "conv"), "val")
    assert [s.form for s in samples] == ["converted"] * 2
    for i, (s, lab) in enumerate(zip(samples, LABELS, strict=False)):
        assert s.image_path.read_bytes()[:2] == b"BM"
        assert np.array_equal(s.label(), lab)
        assert np.array_equal(read_image(s.image_path).array, _image(i))  # read by content


def test_isaid_background_policy_and_limit(tmp_path):
    root = make_raw_isaid(tmp_path / "raw")
    s = isaid.isaid_samples(root, "val", background="ignore", limit=1)
    assert len(s) == 1
    expected = np.where(LABELS[0] == 0, 255, LABELS[0])
    assert np.array_equal(s[0].label(), expected)
    with pytest.raises(DglrsisError, match="background policy"):
        isaid.isaid_samples(root, "val", background="drop")
    assert isaid.query_names()[0] == "ship" and isaid.query_names()[5] == "ground track field"
    assert len(isaid.query_names()) == 15


def test_isaid_errors(tmp_path):
    with pytest.raises(DglrsisError, match="neither"):
        isaid.isaid_samples(tmp_path, "val")
    root = make_raw_isaid(tmp_path / "raw")
    os.remove(root / "val" / "Semantic_masks" / "images" / "P0001_instance_color_RGB.png")
    with pytest.raises(DglrsisError, match="no label for P0001"):
        isaid.isaid_samples(root, "val")


def test_palette_label_keeps_indices(tmp_path):
    im = Image.fromarray(LABELS[1], mode="P")
    im.putpalette([v for c in isaid.ISAID_PALETTE for v in c] * 1 + [0] * (768 - 48))
    im.save(tmp_path / "p.png")
    assert np.array_equal(isaid.decode_label(tmp_path / "p.png"), LABELS[1])


@pytest.mark.parametrize("rmsin_layout", [False, True])
def test_rrsisd_reader(tmp_path, rmsin_layout):
    a, b = rrsisd_masks()
    samples = rrsisd.rrsisd_samples(make_rrsisd(tmp_path / "r", rmsin_layout), "test")
    assert [s.sent_id for s in samples] == [10, 11, 12] and samples[0].key == "10"
    s0, s1, s2 = samples
    assert s0.text == "The ships on the left" and s0.modifiers == ["position"] and s1.modifiers == []
    assert s0.category == "ship" and s2.category == "airplane"  # categories_id and category_id both read
    assert s0.image_path.name == "00000.jpg" and s0.image_path.is_file() and s0.split == "test"
    assert s0.mask.dtype == bool and np.array_equal(s0.mask, a | b)  # RLE parts unioned
    poly = s2.mask
    assert poly.shape == (8, 10) and poly[3:6, 3:6].all() and not poly[0].any() and not poly[:, 8:].any()
    assert s2.modifiers == ["size", "class"]
    assert [s.sent_id for s in rrsisd.rrsisd_samples(tmp_path / "r", "train")] == [13]
    assert len(rrsisd.rrsisd_samples(tmp_path / "r", "test", limit=2)) == 2


def test_rrsisd_bytes_counts(tmp_path):
    a, _ = rrsisd_masks()
    assert np.array_equal(rrsisd.decode_segmentation([_rle(a, False)], 8, 10), a)


class _Evil:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_malicious_pickle_refused(tmp_path):
    root = make_rrsisd(tmp_path / "r")
    marker = tmp_path / "pwned"
    (root / "refs(unc).p").write_bytes(pickle.dumps([_Evil(marker)]))
    with pytest.raises(DglrsisError, match="not a safe data pickle"):
        rrsisd.rrsisd_samples(root, "test")
    assert not marker.exists()  # refused before anything ran


def test_rrsisd_errors(tmp_path):
    with pytest.raises(DglrsisError, match="refs"):
        rrsisd.rrsisd_samples(tmp_path, "test")
    root = make_rrsisd(tmp_path / "r")
    with pytest.raises(DglrsisError, match="no refs with split 'val'"):
        rrsisd.rrsisd_samples(root, "val")


def make_ovrsis(root: Path, img="image", ann="label", split="test") -> Path:
    (root / img / split).mkdir(parents=True)
    (root / ann / split).mkdir(parents=True)
    for i, lab in enumerate(LABELS):
        Image.fromarray(_image(i)).save(root / img / split / f"t{i}.jpg")
        Image.fromarray(np.where(lab > 5, 255, lab).astype(np.uint8)).save(root / ann / split / f"t{i}.png")
    return root


@pytest.mark.parametrize("dirs", [("img_dir", "ann_dir"), ("images", "annotations"), ("image", "label")])
def test_ovrsisbench_layouts(tmp_path, dirs):
    root = make_ovrsis(tmp_path / "d", *dirs)
    samples = ovrsisbench.ovrsis_samples(root, "test")
    assert [s.key for s in samples] == ["t0", "t1"]
    assert np.array_equal(samples[0].label(), np.where(LABELS[0] > 5, 255, LABELS[0]))


def test_class_file(tmp_path):
    f = tmp_path / "c.txt"
    f.write_text("background,clutter\n\nbuilding, roof ,house\nroad\n")
    assert ovrsisbench.read_class_file(f) == [
        ["background", "clutter"],
        ["building", "roof", "house"],
        ["road"],
    ]
    assert ovrsisbench.class_names(f) == ["background", "building", "road"]
    (tmp_path / "e.txt").write_text("\n")
    with pytest.raises(DglrsisError, match="no classes"):
        ovrsisbench.class_names(tmp_path / "e.txt")


def test_ovrsisbench_rejects_colour_labels(tmp_path):
    root = make_ovrsis(tmp_path / "d")
    Image.fromarray(_colour(LABELS[0])).save(root / "label" / "test" / "t0.png")
    with pytest.raises(DglrsisError, match="single-channel"):
        ovrsisbench.ovrsis_samples(root, "test")[0].label()


def test_readers_on_the_synthetic_world(tmp_path):
    """The world generator writes the real formats; both iSAID forms and RRSIS-D read back its truth."""
    from dglrsis.eval.world import convert_isaid_to_index, generate_world, iter_scenes

    generate_world(tmp_path, seed=5, n=8, size=96, progress=False)
    convert_isaid_to_index(tmp_path / "isaid", tmp_path / "conv")
    raw, conv = isaid.isaid_samples(tmp_path / "isaid", "val"), isaid.isaid_samples(tmp_path / "conv", "val")
    assert [s.key for s in raw] == [s.key for s in conv] and raw
    scenes = list(iter_scenes(5, 8, 96, "isaid"))
    for r, c in zip(raw, conv, strict=False):
        assert np.array_equal(r.label(), c.label())
        assert np.array_equal(r.label(), scenes[int(r.key[1:])].class_map)
    refs = rrsisd.rrsisd_samples(tmp_path / "rrsisd", "test")
    ref_scenes = list(iter_scenes(5, 8, 96, "rrsisd"))
    for s in refs:  # one instance's mask, or for a plural target the union of instances it covers
        insts = ref_scenes[int(s.image_path.stem)].instances
        hit = [i.mask for i in insts if (i.mask & s.mask).any()]
        assert hit and np.array_equal(s.mask, np.logical_or.reduce(hit))


@pytest.mark.parametrize(
    "inst, refs",
    [
        ([], None),  # instances.json that is a list
        ({"images": [{"file_name": "x.jpg"}], "annotations": [], "categories": []}, None),  # no ids
        (None, [{"split": "test", "ann_id": 1, "sentences": [{"raw": "no sent_id"}]}]),
        (None, [{"split": "test", "ann_id": [1], "sentences": []}]),
    ],
)
def test_malformed_rrsisd_files_are_one_clear_error(tmp_path, inst, refs):
    root = make_rrsisd(tmp_path / "r")
    if inst is not None:
        (root / "instances.json").write_text(json.dumps(inst))
    if refs is not None:
        (root / "refs(unc).p").write_bytes(pickle.dumps(refs, protocol=2))
    with pytest.raises(DglrsisError) as info:
        rrsisd.rrsisd_samples(root, "test")
    assert "\n" not in str(info.value)
