"""The pooled-worlds RES bench's statistics (hand-computed); the worlds themselves run in the bench."""

import numpy as np


def test_scene_bootstrap_draws_whole_scenes(bench_module):
    bench = bench_module("bench_res_worlds")
    # one scene: every draw is that scene, the interval is its mean
    assert bench.scene_bootstrap(np.array([0.2, 0.6]), np.array(["a", "a"])) == [40.0, 40.0]
    # scene a (3 expressions, all right) and b (1, wrong): a draw is aa, ab/ba or bb, mean 1, 3/4 or 0;
    # bb has probability 1/4 > 2.5 %, so the interval runs from 0 to 100. Drawing expressions instead
    # of scenes would give 0.75 far more often than 0 (4 expressions: P(all four wrong) = 1/256).
    ious, scenes = np.array([1.0, 1.0, 1.0, 0.0]), np.array(["a", "a", "a", "b"])
    assert bench.scene_bootstrap(ious, scenes) == [0.0, 100.0]


def test_summarise_reports_mean_interval_and_counts(bench_module):
    bench = bench_module("bench_res_worlds")
    rows = [{"IoU": v, "scene": s} for v, s in [(1.0, "a"), (0.5, "a"), (0.0, "b")]]
    out = bench.summarise(rows)
    assert out["mIoU"] == 50.0 and out["n"] == 3 and out["scenes"] == 2
    lo, hi = out["ci95"]
    assert lo == 0.0 and hi == 75.0  # bb → 0, aa → 0.75, ab → (1.5 + 0)/3 = 0.5
