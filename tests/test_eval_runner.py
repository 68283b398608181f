"""Resumable/splittable runner, model-mode plumbing with a fake predictor, `dglrsis eval --predictions`."""

import json
from types import SimpleNamespace

import numpy as np
import pytest
from PIL import Image
from test_eval_datasets import LABELS, make_converted_isaid, make_raw_isaid, make_rrsisd, rrsisd_masks

from dglrsis.cli import main
from dglrsis.commands.eval import ovss_predict_fn, res_predict_fn
from dglrsis.eval import isaid, rrsisd
from dglrsis.eval.metrics import SemSegMetric
from dglrsis.eval.runner import run_ovss, run_res

NAMES = isaid.ISAID_NAMES


def _noisy(image, s):
    """Deterministic imperfect prediction: every third pixel → class 0, ignored pixels → 0."""
    gt = s.label().astype(np.int64)
    return np.where((np.arange(gt.size).reshape(gt.shape) % 3 == 0) | (gt == 255), 0, gt)


def test_ovss_totals_match_direct_metric_and_split(tmp_path):
    samples = isaid.isaid_samples(make_raw_isaid(tmp_path / "d"), "val")
    direct = SemSegMetric(NAMES)
    for s in samples:
        direct.update(_noisy(None, s), s.label())
    one = run_ovss(
        samples,
        _noisy,
        16,
        NAMES,
        tmp_path / "a",
        {"x": 1},
        read_images=False,
        rank=0,
        world=1,
        progress=False,
    )
    assert {k: one[k] for k in ("mIoU", "fwIoU", "pACC")} == {
        k: direct.report()[k] for k in ("mIoU", "fwIoU", "pACC")
    }
    assert 0 < one["mIoU"] < 100 and one["n"] == 2 and one["computed"] == 2
    assert (
        run_ovss(
            samples,
            _noisy,
            16,
            NAMES,
            tmp_path / "b",
            {"x": 1},
            read_images=False,
            rank=1,
            world=2,
            progress=False,
        )
        is None
    )  # a non-main rank does its share, reports nothing
    two = run_ovss(
        samples,
        _noisy,
        16,
        NAMES,
        tmp_path / "b",
        {"x": 1},
        read_images=False,
        rank=0,
        world=2,
        progress=False,
    )
    assert two["computed"] == 1
    assert {k: v for k, v in two.items() if k != "computed"} == {
        k: v for k, v in one.items() if k != "computed"
    }


def test_ovss_resume_and_settings_hash(tmp_path):
    samples = isaid.isaid_samples(make_raw_isaid(tmp_path / "d"), "val")
    calls = []

    def predict(image, s):
        calls.append(s.key)
        return _noisy(image, s)

    kw = {"read_images": False, "rank": 0, "world": 1, "progress": False}
    first = run_ovss(samples, predict, 16, NAMES, tmp_path / "c", {"x": 1}, **kw)
    again = run_ovss(samples, predict, 16, NAMES, tmp_path / "c", {"x": 1}, **kw)
    assert len(calls) == 2 and again["computed"] == 0 and again["mIoU"] == first["mIoU"]  # resumed
    run_ovss(samples, predict, 16, NAMES, tmp_path / "c", {"x": 2}, **kw)
    assert len(calls) == 4  # changed setting: stale results not reused


def test_ovss_shape_and_range_errors(tmp_path):
    from dglrsis.errors import DglrsisError

    samples = isaid.isaid_samples(make_raw_isaid(tmp_path / "d"), "val")
    with pytest.raises(DglrsisError, match="label is"):
        run_ovss(
            samples,
            lambda im, s: np.zeros((2, 2), int),
            16,
            NAMES,
            tmp_path / "e",
            read_images=False,
            rank=0,
            world=1,
            progress=False,
        )
    with pytest.raises(DglrsisError, match=r"\[0, 16\)"):
        run_ovss(
            samples,
            lambda im, s: np.full((4, 6), 16),
            16,
            NAMES,
            tmp_path / "f",
            read_images=False,
            rank=0,
            world=1,
            progress=False,
        )


class FakePredictor:
    """Stands in for dglrsis.predictor.Predictor: segment() labels by brightness, refer() = target."""

    def __init__(self, targets=None):
        self.images, self.targets, self.queries = 0, targets or {}, None

    def set_image(self, img):
        assert img.dtype == np.uint8 and img.ndim == 3 and img.shape[2] == 3
        self.images += 1
        self.img = img

    def segment(self, classes):
        self.queries = classes
        labels = np.full(self.img.shape[:2], -1)
        labels[:, :2] = 0  # "ship" → iSAID index 1
        return SimpleNamespace(labels=labels)

    def refer(self, text):
        return SimpleNamespace(mask=self.targets[text])


def test_ovss_reports_both_background_protocols(tmp_path):
    """One cached matrix, two reports: background scored as class 0, and ignored as the label policy does."""
    root = make_raw_isaid(tmp_path / "d")
    samples = isaid.isaid_samples(root, "val", "include")
    r = run_ovss(
        samples,
        _noisy,
        16,
        NAMES,
        tmp_path / "c",
        read_images=False,
        rank=0,
        world=1,
        progress=False,
        background=0,
    )
    scored, ignored = SemSegMetric(NAMES), SemSegMetric(NAMES)
    for s, s_ign in zip(samples, isaid.isaid_samples(root, "val", "ignore"), strict=True):
        scored.update(_noisy(None, s), s.label())
        ignored.update(_noisy(None, s), s_ign.label())  # ground-truth background → 255
    assert r["background_scored"] == scored.report() and r["background_ignored"] == ignored.report()
    assert r["background_scored"]["mIoU"] != r["background_ignored"]["mIoU"]
    assert r["background_ignored"]["per_class"]["background"]["IoU"] is None


def test_model_mode_plumbing_with_fake_predictor(tmp_path):
    samples = isaid.isaid_samples(make_converted_isaid(tmp_path / "d"), "val")  # BMP bytes under .png
    fake = FakePredictor()
    r = run_ovss(
        samples,
        ovss_predict_fn(fake, isaid.query_names(), 1),
        16,
        NAMES,
        tmp_path / "c",
        rank=0,
        world=1,
        progress=False,
    )
    assert fake.images == 2 and fake.queries[0] == "ship" and len(fake.queries) == 15
    # Predicted: columns 0-1 = ship (1), rest background (0). Image 0: gt ship at cols 2-3 only → ship IoU 0.
    assert r["per_class"]["ship"]["IoU"] == 0.0
    bg_gt = sum(int((lab == 0).sum()) for lab in LABELS)
    bg_tp = sum(int((lab[:, 2:] == 0).sum()) for lab in LABELS)
    bg_pred = sum(int((lab[:, 2:] != 255).sum()) for lab in LABELS)
    assert r["per_class"]["background"]["IoU"] == pytest.approx(
        100 * bg_tp / (bg_gt + bg_pred - bg_tp), abs=1e-3
    )

    a, b = rrsisd_masks()
    refs = rrsisd.rrsisd_samples(make_rrsisd(tmp_path / "r"), "test")
    targets = {
        "The ships on the left": a,
        "the two ships": a | b,
        "the large airplane": np.zeros((8, 10), bool),
    }
    fake = FakePredictor(targets)
    rr = run_res(refs, res_predict_fn(fake), tmp_path / "rc", "native", rank=0, world=1, progress=False)
    assert fake.images == 2  # one set_image per image, not per sentence
    iou0 = a.sum() / (a | b).sum()
    assert rr["mIoU"] == pytest.approx(100 * (iou0 + 1 + 0) / 3, abs=1e-3)
    assert rr["precision"]["0.9"] == pytest.approx(100 / 3, abs=1e-3)
    assert rr["by_modifier"]["position"]["n"] == 1 and rr["resolution"] == "native"


def test_res_resume_split_and_480(tmp_path):
    refs = rrsisd.rrsisd_samples(make_rrsisd(tmp_path / "r"), "test")
    calls = []

    def predict(image, s):
        calls.append(s.key)
        m = s.mask.copy()
        m[:, :5] = False  # drop the left half
        return m

    kw = {"read_images": False, "progress": False}
    one = run_res(refs, predict, tmp_path / "a", "480", {"m": 1}, rank=0, world=1, **kw)
    assert run_res(refs, predict, tmp_path / "b", "480", {"m": 1}, rank=1, world=2, **kw) is None
    two = run_res(refs, predict, tmp_path / "b", "480", {"m": 1}, rank=0, world=2, **kw)
    assert {k: v for k, v in two.items() if k != "computed"} == {
        k: v for k, v in one.items() if k != "computed"
    }
    n = len(calls)
    run_res(refs, predict, tmp_path / "a", "480", {"m": 1}, rank=0, world=1, **kw)
    assert len(calls) == n == 6  # resumed
    native = run_res(refs, predict, tmp_path / "a", "native", {"m": 1}, rank=0, world=1, **kw)
    assert len(calls) == 9 and native["resolution"] == "native"  # resolution is part of the cache key
    assert native["oIoU"] == pytest.approx(one["oIoU"], abs=1.0)  # 10→480 px columns split evenly


def test_cli_predictions_ovss(tmp_path, capsys):
    root = make_raw_isaid(tmp_path / "d")
    preds = tmp_path / "p"
    preds.mkdir()
    for s in isaid.isaid_samples(root, "val"):
        Image.fromarray(np.where(s.label() == 255, 0, s.label()).astype(np.uint8)).save(
            preds / f"{s.key}.png"
        )
    out = tmp_path / "r.json"
    rc = main(
        [
            "eval",
            "ovss",
            "--dataset",
            "isaid",
            "--root",
            str(root),
            "--split",
            "val",
            "--predictions",
            str(preds),
            "--out",
            str(out),
            "--quiet",
        ]
    )
    assert rc == 0
    r = json.loads(out.read_text())
    scored, ignored = r["background_scored"], r["background_ignored"]
    assert "mIoU" not in r and r["settings"]["dataset"] == "isaid"  # no unnamed protocol
    assert scored["mIoU"] == ignored["mIoU"] == 100.0 and scored["pACC"] == 100.0
    assert (
        scored["per_class"]["background"]["IoU"] == 100.0
        and ignored["per_class"]["background"]["IoU"] is None
    )
    assert {"mIoU", "mACC", "fwIoU", "pACC", "per_class"} <= set(ignored) and r["n"] == 2
    out = capsys.readouterr().out
    assert "background_scored: mIoU 100.00" in out and "background_ignored: mIoU 100.00" in out
    assert r["settings"]["form"] == "raw"  # raw full-size images (converted patches: "converted")
    (preds / "P0001.png").unlink()
    rc = main(
        ["eval", "ovss", "--dataset", "isaid", "--root", str(root), "--predictions", str(preds), "--quiet"]
    )
    err = capsys.readouterr().err
    assert rc == 2 and "P0001.png" in err and len(err.strip().splitlines()) == 1


def test_cli_predictions_res(tmp_path, capsys):
    root = make_rrsisd(tmp_path / "r")
    preds = tmp_path / "p"
    preds.mkdir()
    refs = rrsisd.rrsisd_samples(root, "test")
    for i, s in enumerate(refs):  # sentences 10 and 12 perfect, 11 empty
        m = s.mask if i != 1 else np.zeros(s.size, bool)
        Image.fromarray(m.astype(np.uint8) * 255).save(preds / f"{s.sent_id}.png")
    out = tmp_path / "res.json"
    rc = main(
        [
            "eval",
            "res",
            "--dataset",
            "rrsisd",
            "--root",
            str(root),
            "--split",
            "test",
            "--limit",
            "3",
            "--predictions",
            str(preds),
            "--resolution",
            "480",
            "--out",
            str(out),
            "--quiet",
        ]
    )
    assert rc == 0
    r = json.loads(out.read_text())
    assert r["n"] == 3 and r["mIoU"] == pytest.approx(200 / 3, abs=1e-3)
    assert r["precision"]["0.9"] == pytest.approx(200 / 3, abs=1e-3)
    assert r["settings"]["resolution"] == "480" and r["settings"]["limit"] == 3 and "by_modifier" in r
    # With --cache (accelerate PartialState path): --limit is not part of the key, so a full run reuses.
    cache = ["--cache", str(tmp_path / "c"), "--quiet", "--out", str(out)]
    base = ["eval", "res", "--dataset", "rrsisd", "--root", str(root), "--predictions", str(preds)]
    assert main([*base, "--limit", "1", *cache]) == 0 and json.loads(out.read_text())["computed"] == 1
    assert main([*base, *cache]) == 0
    r2 = json.loads(out.read_text())
    assert r2["computed"] == 2 and r2["mIoU"] == pytest.approx(200 / 3, abs=1e-3)  # native: same result here
    capsys.readouterr()
    (preds / "11.png").unlink()
    rc = main(
        ["eval", "res", "--dataset", "rrsisd", "--root", str(root), "--predictions", str(preds), "--quiet"]
    )
    err = capsys.readouterr().err
    assert rc == 2 and "missing prediction" in err and "11.png" in err and len(err.strip().splitlines()) == 1
