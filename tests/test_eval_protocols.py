"""The datasets as their own tools read them: RMSIN's RRSIS-D tree and 480×480 protocol (torchvision/PIL
resize + ``test.py`` formulas, re-stated here), real RRSIS-D image/mask size mismatches, the iSAID devkit's
extra files."""

import json
import os.path as osp
import shutil
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from test_eval_datasets import make_raw_isaid

from dglrsis.cli import main
from dglrsis.eval import isaid, rrsisd
from dglrsis.eval.metrics import res_report, resize_nearest
from dglrsis.eval.runner import run_ovss, run_res


def _rmsin_resize(mask: np.ndarray, size: int = 480) -> np.ndarray:
    """RMSIN ``transforms.Resize``: torchvision ``F.resize(PIL 'P' image, (h, w), NEAREST)``."""
    from torchvision.transforms import InterpolationMode
    from torchvision.transforms import functional as F

    im = Image.fromarray(mask.astype(np.uint8), mode="P")
    return np.asarray(F.resize(im, [size, size], interpolation=InterpolationMode.NEAREST)) != 0


def _rmsin_scores(pairs) -> dict:
    """RMSIN ``test.py`` evaluate(): per-sample I/U (IoU 0 when U = 0), mean IoU, cum_I/cum_U, P@t."""
    cum_i, cum_u, ious = 0, 0, []
    for pred, gt in pairs:
        i, u = np.sum(np.logical_and(pred, gt)), np.sum(np.logical_or(pred, gt))
        ious.append(0.0 if u == 0 else i * 1.0 / u)
        cum_i, cum_u = cum_i + i, cum_u + u
    ious = np.array(ious)
    return {
        "mIoU": 100 * ious.mean(),
        "oIoU": cum_i * 100.0 / cum_u,
        "precision": {str(t): 100 * (ious >= t).mean() for t in (0.5, 0.6, 0.7, 0.8, 0.9)},
    }


def _blobs(rng, h, w, n=6):
    m = np.zeros((h, w), bool)
    for _ in range(n):
        y, x = rng.integers(0, h - 8), rng.integers(0, w - 8)
        m[y : y + rng.integers(3, h // 3), x : x + rng.integers(3, w // 3)] = True
    return m


@pytest.mark.parametrize("shape", [(512, 512), (1024, 1024), (256, 256), (801, 800), (787, 800), (5, 7)])
def test_resize_nearest_is_pils(shape):
    """Fails for the old pixel-centre formula: on 512/256/1024 sides it picks other rows on 28 of 480."""
    rng = np.random.default_rng(sum(shape))
    m = rng.random(shape) < 0.5
    np.testing.assert_array_equal(resize_nearest(m), _rmsin_resize(m))
    lab = rng.integers(0, 300, shape)
    pil = np.asarray(Image.fromarray(lab.astype(np.int32), mode="I").resize((480, 480), Image.NEAREST))
    np.testing.assert_array_equal(resize_nearest(lab), pil)


@dataclass
class _Ref:
    key: str
    image_path: Path
    mask: np.ndarray = field(repr=False)
    modifiers: list = field(default_factory=list)
    category: str = "ship"


@pytest.mark.parametrize("side", [512, 1024, 256])
def test_480_report_equals_rmsin_formula(tmp_path, side):
    rng = np.random.default_rng(side)
    gts = [_blobs(rng, side, side) for _ in range(6)]
    preds = [g ^ (rng.random(g.shape) < 0.02) if k % 2 else np.roll(g, 3, 1) for k, g in enumerate(gts)]
    samples = [_Ref(str(k), tmp_path / f"{k}.jpg", g) for k, g in enumerate(gts)]
    by_key = dict(zip((s.key for s in samples), preds, strict=True))
    ours = run_res(
        samples,
        lambda _im, s: by_key[s.key],
        tmp_path / "c",
        "480",
        read_images=False,
        rank=0,
        world=1,
        progress=False,
    )
    ref = _rmsin_scores((_rmsin_resize(p), _rmsin_resize(g)) for p, g in zip(preds, gts, strict=True))
    assert ours["mIoU"] == pytest.approx(ref["mIoU"], abs=1e-4)
    assert ours["oIoU"] == pytest.approx(ref["oIoU"], abs=1e-4)
    assert ours["precision"] == pytest.approx(ref["precision"], abs=1e-4)


def test_oiou_is_none_where_rmsin_gives_nan():
    with np.errstate(invalid="ignore"):
        assert np.isnan(_rmsin_scores([(np.zeros((2, 2), bool), np.zeros((2, 2), bool))])["oIoU"])
    r = res_report([{"I": 0, "U": 0}, {"I": 0, "U": 0}])
    assert r["oIoU"] is None and r["mIoU"] == 0.0 and r["n"] == 2
    assert res_report([{"I": 0, "U": 0}, {"I": 1, "U": 2}])["oIoU"] == 50.0


def _rmsin_paths(data_root: Path, file_names) -> list[str]:
    """The paths RMSIN's ``REFER('rrsisd', 'unc')`` and ``ReferDataset.__getitem__`` open."""
    data_dir = osp.join(data_root, "rrsisd")
    image_dir = osp.join(data_root, "images/rrsisd/JPEGImages")
    return [osp.join(data_dir, "refs(unc).p"), osp.join(data_dir, "instances.json")] + [
        osp.join(image_dir, f) for f in file_names
    ]


def test_world_is_rmsin_tree_and_read_from_the_same_root(tmp_path):
    from dglrsis.eval.world import generate_world

    generate_world(tmp_path / "W", seed=3, n=4, size=64, progress=False)
    inst = json.loads((tmp_path / "W" / "rrsisd" / "instances.json").read_text())
    for p in _rmsin_paths(tmp_path / "W", [im["file_name"] for im in inst["images"]]):
        assert Path(p).is_file(), p
    a = rrsisd.rrsisd_samples(tmp_path / "W", "test")  # the root RMSIN is given
    b = rrsisd.rrsisd_samples(tmp_path / "W" / "rrsisd", "test")  # or its rrsisd/ folder
    assert [(s.key, s.image_path) for s in a] == [(s.key, s.image_path) for s in b] and a
    assert all(s.image_path.is_file() for s in a)


def _rle(mask):
    from pycocotools import mask as mask_utils

    r = mask_utils.encode(np.asfortranarray(mask.astype(np.uint8)))
    return {"size": [int(v) for v in r["size"]], "counts": r["counts"].decode()}


def _mismatched_rrsisd(root: Path, heights=(801, 787)) -> tuple[list, list]:
    """RMSIN tree with JPEGs of 800 px width × ``heights`` and 800×800 RLE masks (as real RRSIS-D)."""
    rng = np.random.default_rng(0)
    (root / "rrsisd").mkdir(parents=True)
    (root / "images" / "rrsisd" / "JPEGImages").mkdir(parents=True)
    images, anns, refs, masks = [], [], [], []
    for i, h in enumerate(heights):
        name = f"{i:05d}.jpg"
        Image.fromarray(rng.integers(0, 255, (h, 800, 3), dtype=np.uint8)).save(
            root / "images" / "rrsisd" / "JPEGImages" / name
        )
        m = _blobs(rng, 800, 800)
        masks.append(m)
        images.append({"id": i, "file_name": name, "height": h, "width": 800})
        anns.append({"id": i, "image_id": i, "categories_id": 0, "segmentation": [_rle(m)]})
        sents = [{"raw": "the ship", "sent_id": i, "tokens": ["ship"], "sent": "the ship"}]
        refs.append(
            {"image_id": i, "split": "test", "ann_id": i, "ref_id": i, "category_id": 0, "sentences": sents}
        )
    cats = [{"id": 0, "name": "ship"}]
    (root / "rrsisd" / "instances.json").write_text(
        json.dumps({"images": images, "annotations": anns, "categories": cats})
    )
    import pickle

    (root / "rrsisd" / "refs(unc).p").write_bytes(pickle.dumps(refs, protocol=2))
    return masks, list(heights)


@pytest.mark.parametrize("resolution", ["480", "native"])
def test_images_taller_than_their_masks(tmp_path, resolution):
    """800×801 / 800×787 JPEGs with 800×800 masks: accepted; 480 equals RMSIN (each resized on its own)."""
    masks, heights = _mismatched_rrsisd(tmp_path / "R")
    samples = rrsisd.rrsisd_samples(tmp_path / "R", "test")
    assert [s.mask.shape for s in samples] == [(800, 800)] * 2  # the RLE's size, as RMSIN's getMask
    rng = np.random.default_rng(1)
    preds = tmp_path / "p"
    preds.mkdir()
    pred_masks = []
    for s, h in zip(samples, heights, strict=True):
        p = _blobs(rng, h, 800)  # a prediction of the image's size
        pred_masks.append(p)
        Image.fromarray(p.astype(np.uint8) * 255).save(preds / f"{s.key}.png")
    out = tmp_path / "r.json"
    argv = ["eval", "res", "--dataset", "rrsisd", "--root", str(tmp_path / "R"), "--predictions", str(preds)]
    assert main([*argv, "--resolution", resolution, "--out", str(out), "--quiet"]) == 0
    r = json.loads(out.read_text())
    if resolution == "480":
        pairs = [(_rmsin_resize(p), _rmsin_resize(m)) for p, m in zip(pred_masks, masks, strict=True)]
    else:
        pairs = [
            (np.asarray(Image.fromarray(p.astype(np.uint8)).resize((800, 800), Image.NEAREST)) != 0, m)
            for p, m in zip(pred_masks, masks, strict=True)
        ]
    ref = _rmsin_scores(pairs)
    assert r["mIoU"] == pytest.approx(ref["mIoU"], abs=1e-4)
    assert r["oIoU"] == pytest.approx(ref["oIoU"], abs=1e-4)


def test_prediction_of_neither_size_is_an_error(tmp_path, capsys):
    _mismatched_rrsisd(tmp_path / "R", heights=(801,))
    preds = tmp_path / "p"
    preds.mkdir()
    Image.fromarray(np.zeros((700, 800), np.uint8)).save(preds / "0.png")
    argv = ["eval", "res", "--dataset", "rrsisd", "--root", str(tmp_path / "R"), "--predictions", str(preds)]
    assert main([*argv, "--resolution", "480", "--quiet"]) == 2
    err = capsys.readouterr().err.strip()
    assert "(700, 800)" in err and "(801, 800)" in err and len(err.splitlines()) == 1


def test_isaid_devkit_extra_files_do_not_change_the_report(tmp_path):
    """The devkit's folders hold P####_instance_id_RGB.png and the colour label beside each image."""
    plain = make_raw_isaid(tmp_path / "plain")
    devkit = tmp_path / "devkit"
    shutil.copytree(plain, devkit)
    for img in sorted((devkit / "val" / "images").glob("P*.png")):
        ids = np.arange(24, dtype=np.uint8).reshape(4, 6)
        id_rgb = np.stack([ids, ids * 2, ids * 3], -1)
        Image.fromarray(id_rgb).save(img.parent / f"{img.stem}_instance_id_RGB.png")
        lab_dir = devkit / "val" / "Semantic_masks" / "images"
        shutil.copy(lab_dir / f"{img.stem}_instance_color_RGB.png", img.parent)
        shutil.copy(img.parent / f"{img.stem}_instance_id_RGB.png", lab_dir)

    def report(root):
        samples = isaid.isaid_samples(root, "val")
        r = run_ovss(
            samples,
            lambda _im, s: np.where(s.label() == 255, 0, s.label()),
            16,
            isaid.ISAID_NAMES,
            tmp_path / f"c-{root.name}",
            read_images=False,
            rank=0,
            world=1,
            progress=False,
        )
        return [s.key for s in samples], {k: v for k, v in r.items() if k != "computed"}

    assert report(devkit) == report(plain)
