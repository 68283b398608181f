"""iSAID evaluation on raw full-size images (tiled like ``segment``) and on converted patches: the report
names the protocol, a tiled eval equals ``segment`` with the same tiles scored by hand, the cache key holds
the tiling, and the label/metric path stays within a bound a per-class stack of the image would exceed."""

import json
import tracemalloc

import numpy as np
import pytest
from PIL import Image

from dglrsis.cli import main
from dglrsis.eval import isaid
from dglrsis.eval.metrics import SemSegMetric
from dglrsis.eval.world.scenes import iter_scenes

MODEL = ["--clip", "world-clip", "--proposals", "slic"]
PALETTE = np.array(isaid.ISAID_PALETTE, np.uint8)


def _write_raw(root, key, image, class_map):
    """One image of the raw release layout: RGB image + RGB colour label in the iSAID palette."""
    (root / "val" / "images").mkdir(parents=True, exist_ok=True)
    (root / "val" / "Semantic_masks" / "images").mkdir(parents=True, exist_ok=True)
    Image.fromarray(image).save(root / "val" / "images" / f"{key}.png")
    lab = root / "val" / "Semantic_masks" / "images" / f"{key}{isaid.LABEL_SUFFIX}.png"
    Image.fromarray(PALETTE[class_map]).save(lab)
    return root / "val" / "images" / f"{key}.png", lab


@pytest.fixture(scope="module")
def mosaic(tmp_path_factory):
    """A 1024×1536 raw iSAID image mosaicked from six 512 px world scenes (``dglrsis world``'s generator)."""
    scenes = list(iter_scenes(seed=3, n=6, size=512, kind="isaid"))
    img = np.concatenate([np.concatenate([s.image for s in scenes[r : r + 3]], 1) for r in (0, 3)], 0)
    cm = np.concatenate([np.concatenate([s.class_map for s in scenes[r : r + 3]], 1) for r in (0, 3)], 0)
    root = tmp_path_factory.mktemp("raw")
    return (root, *_write_raw(root, "P0100", img, cm), cm)


def _eval(root, *extra, out):
    argv = ["eval", "ovss", "--dataset", "isaid", "--root", str(root), "--split", "val", "--out", str(out)]
    assert main([*argv, *extra, "--quiet"]) == 0
    return json.loads(out.read_text())


def _saved_predictions(folder, labels: dict):
    folder.mkdir()
    for key, lab in labels.items():
        Image.fromarray(np.where(lab == 255, 0, lab).astype(np.uint8)).save(folder / f"{key}.png")
    return folder


def test_tiled_eval_equals_segment_scored_by_hand(mosaic, tmp_path, capsys):
    root, img, lab, _ = mosaic
    tiles = ["--tile", "576", "--overlap", "64"]
    r = _eval(root, *MODEL, *tiles, "--cache", str(tmp_path / "c"), out=tmp_path / "r.json")
    assert r["input"] == "raw-tiled"
    assert r["tiling"] == {"tile": 576, "overlap": 64, "side": 576, "tiled_images": 1}
    assert "input: raw-tiled (tile 576, overlap 64; 1 of 1 images tiled)" in capsys.readouterr().out
    seg = tmp_path / "seg.png"
    classes = ",".join(isaid.query_names())
    assert main(["segment", str(img), "--classes", classes, *MODEL, *tiles, "--out", str(seg)]) == 0
    pred = np.asarray(Image.open(seg)).astype(np.int64)  # 0 = background, k = k-th query = iSAID index k
    gt = isaid.decode_label(lab).astype(np.int64)
    assert pred.shape == gt.shape == (1024, 1536) and pred.max() < 16
    hand = np.zeros((17, 17), np.int64)
    for p in range(16):
        for g in [*range(16), 255]:
            hand[p, min(g, 16)] = np.count_nonzero((pred == p) & (gt == g))
    (entry,) = list((tmp_path / "c").rglob("P0100-*.npy"))
    assert np.array_equal(np.load(entry), hand)

    def miou(valid):
        ious = []
        for c in range(16):
            tp = np.count_nonzero((pred == c) & (gt == c) & valid)
            n_gt, n_pred = np.count_nonzero((gt == c) & valid), np.count_nonzero((pred == c) & valid)
            if n_gt:
                ious.append(tp / (n_gt + n_pred - tp))
        return 100 * np.mean(ious)

    assert r["background_scored"]["mIoU"] == pytest.approx(miou(gt != 255), abs=1e-3)
    assert r["background_ignored"]["mIoU"] == pytest.approx(miou((gt != 255) & (gt != 0)), abs=1e-3)


def test_report_names_raw_and_converted_patches(mosaic, tmp_path, capsys):
    root, _, _, cm = mosaic
    preds = _saved_predictions(tmp_path / "p", {"P0100": cm})
    r = _eval(root, "--predictions", str(preds), out=tmp_path / "raw.json")
    assert r["input"] == "raw" and r["tiling"] is None and r["settings"]["form"] == "raw"
    assert "input: raw\n" in capsys.readouterr().out
    conv = tmp_path / "conv"
    assert main(["convert", "isaid", "--root", str(root), "--out", str(conv), "--quiet"]) == 0
    labels = {
        p.name.replace(f"{isaid.LABEL_SUFFIX}.png", ""): isaid.decode_label(p)
        for p in (conv / "ann_dir" / "val").glob("*.png")
    }
    assert len(labels) == 6  # 1024×1536 at 896/384: 2 × 3 windows
    preds = _saved_predictions(tmp_path / "pp", labels)
    r = _eval(conv, "--predictions", str(preds), out=tmp_path / "patches.json")
    assert r["input"] == "patches" and r["n"] == 6 and r["settings"]["form"] == "converted"
    assert "input: patches\n" in capsys.readouterr().out


def test_cache_key_holds_the_tiling(mosaic, tmp_path):
    """A tiled result is never served to a one-pass run (nor back); an unchanged rerun resumes."""
    _, img, _, cm = mosaic
    root = tmp_path / "small"
    _write_raw(root, "P0200", np.asarray(Image.open(img))[:384, :384], cm[:384, :384])
    base = [*MODEL, "--cache", str(tmp_path / "c")]
    tiled = _eval(root, *base, "--tile", "256", "--overlap", "32", out=tmp_path / "t.json")
    assert tiled["input"] == "raw-tiled" and tiled["computed"] == 1
    one = _eval(root, *base, "--no-tile", out=tmp_path / "o.json")
    assert one["input"] == "raw" and one["computed"] == 1 and one["tiling"]["tiled_images"] == 0
    again = _eval(root, *base, "--no-tile", out=tmp_path / "a.json")
    assert again["computed"] == 0 and again["background_scored"] == one["background_scored"]
    assert len(list((tmp_path / "c").rglob("*.npy"))) == 2


def test_label_and_metric_memory_is_bounded(tmp_path):
    """Decoding a 12 Mpx colour label and scoring it: traced peak < 4 B/px (a per-class boolean stack of the
    image is 16 B/px, one int64 copy 8 B/px)."""
    h, w = 3000, 4000
    cm = ((np.arange(h)[:, None] // 97 + np.arange(w)[None] // 89) % 16).astype(np.uint8)
    Image.fromarray(PALETTE[cm]).save(tmp_path / "lab.png", compress_level=1)
    pred = np.roll(cm, 7, axis=1).astype(np.int32)  # as the eval's prediction (int32)
    isaid.decode_label(tmp_path / "lab.png")  # look-up table and imports outside the measurement
    tracemalloc.start()
    try:
        gt = isaid.decode_label(tmp_path / "lab.png")
        metric = SemSegMetric(isaid.ISAID_NAMES)
        metric.update(pred, gt)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert np.array_equal(gt, cm) and metric.conf.sum() == h * w
    assert np.trace(metric.conf) == np.count_nonzero(pred == cm)
    assert peak < 4 * h * w, f"peak {peak / (h * w):.1f} B/px"
