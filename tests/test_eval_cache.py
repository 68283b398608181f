"""Evaluation results are keyed by the data as well as the settings; corrupt entries are recomputed;
off-palette labels and reports without a scored pixel are errors."""

import json

import numpy as np
import pytest
from PIL import Image
from test_eval_datasets import LABELS, _colour, make_raw_isaid

from dglrsis.cli import main
from dglrsis.errors import DglrsisError
from dglrsis.eval import isaid
from dglrsis.eval.runner import run_ovss

NAMES = isaid.ISAID_NAMES
KW = {"read_images": False, "rank": 0, "world": 1, "progress": False}


def _fixed_predictions(samples) -> dict:
    """Predictions made once from the original labels (every third pixel wrong), kept fixed."""
    out = {}
    for s in samples:
        gt = s.label().astype(np.int64)
        out[s.key] = np.where((np.arange(gt.size).reshape(gt.shape) % 3 == 0) | (gt == 255), 0, gt)
    return out


def _strip(r):
    return {k: v for k, v in r.items() if k != "computed"}


def _repaint(root, key="P0001"):
    lab = LABELS[1].copy()
    lab[:, :3] = 9  # a different class over half the image
    Image.fromarray(_colour(lab)).save(
        root / "val" / "Semantic_masks" / "images" / f"{key}_instance_color_RGB.png"
    )


def test_repainted_label_is_not_served_from_the_cache(tmp_path):
    root = make_raw_isaid(tmp_path / "d")
    samples = isaid.isaid_samples(root, "val")
    preds = _fixed_predictions(samples)

    def predict(_im, s):
        return preds[s.key]

    before = run_ovss(samples, predict, 16, NAMES, tmp_path / "cache", {"m": 1}, **KW)
    _repaint(root)
    samples = isaid.isaid_samples(root, "val")
    again = run_ovss(samples, predict, 16, NAMES, tmp_path / "cache", {"m": 1}, **KW)
    fresh = run_ovss(samples, predict, 16, NAMES, tmp_path / "fresh", {"m": 1}, **KW)
    assert _strip(again) == _strip(fresh) and _strip(fresh) != _strip(before)
    assert again["computed"] == 1  # only the repainted image was scored again


def test_changed_saved_prediction_is_not_served_from_the_cache(tmp_path, capsys):
    root = make_raw_isaid(tmp_path / "d")
    preds = tmp_path / "p"
    preds.mkdir()
    for s in isaid.isaid_samples(root, "val"):
        Image.fromarray(np.where(s.label() == 255, 0, s.label()).astype(np.uint8)).save(
            preds / f"{s.key}.png"
        )
    argv = ["eval", "ovss", "--dataset", "isaid", "--root", str(root), "--predictions", str(preds), "--quiet"]
    out = tmp_path / "r.json"
    assert main([*argv, "--cache", str(tmp_path / "c"), "--out", str(out)]) == 0
    first = json.loads(out.read_text())
    Image.fromarray(np.zeros((4, 6), np.uint8)).save(preds / "P0000.png")
    assert main([*argv, "--cache", str(tmp_path / "c"), "--out", str(out)]) == 0
    again = json.loads(out.read_text())
    assert main([*argv, "--out", str(out)]) == 0
    fresh = json.loads(out.read_text())
    m = [r["background_ignored"]["mIoU"] for r in (again, fresh, first)]
    assert m[0] == m[1] != m[2]


def test_corrupt_entry_is_recomputed_with_a_note(tmp_path, capsys):
    root = make_raw_isaid(tmp_path / "d")
    samples = isaid.isaid_samples(root, "val")
    preds = _fixed_predictions(samples)
    ref = run_ovss(samples, lambda _i, s: preds[s.key], 16, NAMES, tmp_path / "c", {"m": 1}, **KW)
    (entry,) = [p for p in (tmp_path / "c").rglob("P0000-*.npy")]
    entry.write_bytes(entry.read_bytes()[:40])  # truncated, as by a crash
    capsys.readouterr()
    again = run_ovss(samples, lambda _i, s: preds[s.key], 16, NAMES, tmp_path / "c", {"m": 1}, **KW)
    err = capsys.readouterr().err.strip().splitlines()
    assert _strip(again) == _strip(ref) and again["computed"] == 1
    assert len(err) == 1 and err[0].startswith("note: cache entry") and "P0000" in err[0]


def test_off_palette_label_is_an_error_with_the_count(tmp_path):
    root = make_raw_isaid(tmp_path / "d")
    label = root / "val" / "Semantic_masks" / "images" / "P0000_instance_color_RGB.png"
    assert (isaid.decode_label(label) == 255).sum() == 2  # a few stray colours stay ignored (255)
    rgb = np.full((16, 24, 3), (1, 2, 3), np.uint8)
    rgb[:4, :4] = (0, 0, 63)
    Image.fromarray(rgb).save(label)  # 368 of 384 pixels off the palette: not an iSAID label
    with pytest.raises(DglrsisError, match=r"368 of 384 pixels .* off the iSAID palette, e\.g\. \(1, 2, 3\)"):
        isaid.isaid_samples(root, "val")[0].label()


def test_background_only_label_is_scored_as_background(tmp_path, capsys):
    root = tmp_path / "d"
    (root / "val" / "images").mkdir(parents=True)
    (root / "val" / "Semantic_masks" / "images").mkdir(parents=True)
    Image.fromarray(np.zeros((4, 6, 3), np.uint8)).save(root / "val" / "images" / "P0000.png")
    Image.fromarray(np.zeros((4, 6, 3), np.uint8)).save(
        root / "val" / "Semantic_masks" / "images" / "P0000_instance_color_RGB.png"
    )  # background only: scored as a class, nothing left when background is ignored
    preds = tmp_path / "p"
    preds.mkdir()
    Image.fromarray(np.zeros((4, 6), np.uint8)).save(preds / "P0000.png")
    argv = ["eval", "ovss", "--dataset", "isaid", "--root", str(root), "--predictions", str(preds), "--quiet"]
    assert main([*argv, "--out", str(tmp_path / "r.json")]) == 0
    r = json.loads((tmp_path / "r.json").read_text())
    assert r["background_scored"]["pACC"] == 100.0 and r["background_ignored"]["mIoU"] in (None, 0.0)


def _entry(cache, samples, key, settings):
    from dglrsis.eval.runner import data_hash, settings_hash

    s = next(s for s in samples if s.key == key)
    folder = cache / settings_hash({**settings, "task": "ovss", "num_classes": 16})
    return folder / f"{key}-{data_hash(s)}.npy"


def test_concurrent_runs_share_the_work_through_claims(tmp_path):
    import socket
    import subprocess
    import sys
    import threading
    import time

    from dglrsis.eval.metrics import confusion

    root = make_raw_isaid(tmp_path / "d")
    samples = isaid.isaid_samples(root, "val")
    preds = _fixed_predictions(samples)
    fresh = run_ovss(samples, lambda _i, s: preds[s.key], 16, NAMES, tmp_path / "fresh", {"m": 1}, **KW)
    entry = _entry(tmp_path / "c", samples, "P0000", {"m": 1})
    entry.parent.mkdir(parents=True)
    other = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])  # the other run
    try:
        claim = entry.with_name(entry.name + ".claim")
        claim.write_text(f"{other.pid}@{socket.gethostname()}")
        result = {}
        t = threading.Thread(
            target=lambda: result.update(
                run_ovss(samples, lambda _i, s: preds[s.key], 16, NAMES, tmp_path / "c", {"m": 1}, **KW)
            )
        )
        t.start()
        time.sleep(1.5)
        assert t.is_alive()  # waiting for the other run's sample
        s0 = next(s for s in samples if s.key == "P0000")
        np.save(entry, confusion(preds["P0000"], s0.label(), 16))  # the other run finishes it
        claim.unlink()
        t.join(timeout=30)
        assert result["computed"] == len(samples) - 1 and _strip(result) == _strip(fresh)
    finally:
        other.kill()
        other.wait()
    # a claim left by a process that has gone is taken over
    entry.unlink()
    claim.write_text(f"{other.pid}@{socket.gethostname()}")
    again = run_ovss(samples, lambda _i, s: preds[s.key], 16, NAMES, tmp_path / "c", {"m": 1}, **KW)
    assert again["computed"] == 1 and _strip(again) == _strip(fresh) and not claim.exists()
