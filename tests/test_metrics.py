"""Metrics against hand-computed cases (detectron2 semseg definitions, RMSIN referring metrics)."""

import numpy as np
import pytest

from dglrsis.errors import DglrsisError
from dglrsis.eval.metrics import (
    SemSegMetric,
    confusion,
    iou_counts,
    res_report,
    res_sample,
    resize_nearest,
    semseg_report,
)


def test_semseg_hand_computed():
    # 4 classes: class 2 absent from gt but predicted once; class 3 absent everywhere; one ignored pixel.
    gt = np.array([[0, 0, 1, 1], [0, 1, 1, 255]])
    pred = np.array([[0, 1, 1, 1], [0, 2, 1, 0]])
    m = SemSegMetric(["a", "b", "c", "d"])
    conf = m.update(pred, gt)
    assert conf.shape == (5, 5)
    # gt 0 at (0,0),(0,1),(1,0) → pred 0,1,0 ; gt 1 at (0,2),(0,3),(1,1),(1,2) → pred 1,1,2,1 ;
    # ignore → pred 0
    expected = np.zeros((5, 5), int)
    expected[0, 0], expected[1, 0], expected[1, 1], expected[2, 1], expected[0, 4] = 2, 1, 3, 1, 1
    assert (conf == expected).all() and (m.conf == expected).all()
    r = m.report()
    iou0 = 2 / (3 + 2 - 2)  # tp 2, gt 3, pred 2 (ignored pixel not counted in pos_pred)
    iou1 = 3 / (4 + 4 - 3)  # tp 3, gt 4, pred 4
    assert r["per_class"]["a"]["IoU"] == pytest.approx(100 * iou0)
    assert r["per_class"]["b"]["IoU"] == pytest.approx(100 * iou1)
    assert r["per_class"]["b"]["Acc"] == pytest.approx(75.0)
    assert r["per_class"]["c"] == {"IoU": None, "Acc": None}  # predicted but absent from gt → not averaged
    assert r["per_class"]["d"] == {"IoU": None, "Acc": None}
    assert r["mIoU"] == pytest.approx(100 * (iou0 + iou1) / 2)
    assert r["mACC"] == pytest.approx(100 * (2 / 3 + 3 / 4) / 2)
    assert r["fwIoU"] == pytest.approx(100 * (3 / 7 * iou0 + 4 / 7 * iou1))  # weights = gt frequency
    assert r["pACC"] == pytest.approx(100 * 5 / 7)


def test_report_is_json_safe_when_empty():
    import json

    r = semseg_report(np.zeros((3, 3), int), ["a", "b"])
    assert r["mIoU"] is None and r["pACC"] is None
    json.dumps(r)  # no NaN


def test_confusions_add_up_in_any_grouping():
    rng = np.random.default_rng(0)
    a, b = rng.integers(0, 4, (3, 10, 10)), rng.integers(0, 5, (3, 10, 10))
    b[b == 4] = 255
    whole = SemSegMetric(list("wxyz"))
    whole.update(a, b)
    parts = [SemSegMetric(list("wxyz")) for _ in range(3)]
    for p, x, y in zip(parts, a, b, strict=False):
        p.update(x, y)
    assert ((parts[0] + parts[1] + parts[2]).conf == whole.conf).all()
    assert whole.conf[:, -1].sum() == (b == 255).sum()


def test_bad_predictions():
    with pytest.raises(DglrsisError, match=r"\[0, 3\)"):
        confusion(np.array([5]), np.array([0]), 3)
    with pytest.raises(DglrsisError):
        confusion(np.array([-1]), np.array([0]), 3)
    with pytest.raises(DglrsisError):
        confusion(np.array([0, 1]), np.array([0]), 3)


def test_res_cases():
    full, empty = np.ones((2, 2), bool), np.zeros((2, 2), bool)
    half = np.array([[1, 1], [0, 0]], bool)
    assert res_sample(empty, empty) == {"I": 0, "U": 0, "IoU": 0.0}  # both empty → 0 (RMSIN)
    rows = [
        {**res_sample(empty, full), "modifiers": ["position"]},  # empty prediction: 0/4
        {**res_sample(full, empty), "modifiers": ["colour"]},  # empty target: 0/4
        {**res_sample(empty, empty), "modifiers": ["class"]},  # both empty: U=0 → IoU 0
        {**res_sample(half, full), "modifiers": ["position", "size"]},
    ]  # partial: 2/4
    r = res_report(rows)
    assert r["n"] == 4
    assert r["mIoU"] == pytest.approx(100 * 0.5 / 4)
    assert r["oIoU"] == pytest.approx(100 * 2 / 12, abs=1e-3)
    assert r["precision"]["0.5"] == pytest.approx(25.0) and r["precision"]["0.6"] == 0.0
    assert set(r["precision"]) == {"0.5", "0.6", "0.7", "0.8", "0.9"}
    assert r["by_modifier"]["position"]["mIoU"] == pytest.approx(25.0)  # counted in each kind it records
    assert r["by_modifier"]["size"]["n"] == 1 and r["by_modifier"]["class"]["mIoU"] == 0.0
    assert iou_counts(np.array([[0, 3]]), np.array([[1, 1]])) == (1, 2)  # non-zero = foreground


def test_resize_nearest():
    m = np.zeros((4, 4), bool)
    m[:2, :2] = True
    r = resize_nearest(m, 8, 8)
    assert (
        r.dtype == bool and r.shape == (8, 8) and r[:4, :4].all() and not r[4:].any() and not r[:, 4:].any()
    )
    lab = np.arange(6, dtype=np.int64).reshape(2, 3) * 100  # values > 255 survive
    assert (resize_nearest(lab, 2, 3) == lab).all()
    down = resize_nearest(np.arange(16).reshape(4, 4), 2, 2)  # centres (0.5,0.5)·2 → source 1 and 3
    assert (down == np.array([[5, 7], [13, 15]])).all()
    assert resize_nearest(m).shape == (480, 480)


def test_resolution_480_changes_counts_as_expected():
    gt = np.zeros((800, 800), bool)
    gt[:400] = True
    pred = np.zeros((800, 800), bool)
    pred[:200] = True
    native = res_sample(pred, gt)
    at480 = res_sample(resize_nearest(pred), resize_nearest(gt))
    assert native["IoU"] == pytest.approx(0.5) and at480["IoU"] == pytest.approx(0.5)
    assert at480["U"] == 240 * 480 and native["U"] == 400 * 800
