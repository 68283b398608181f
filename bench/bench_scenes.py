"""Real-scene benchmarks: memory of one pass, seams of tiled runs, and the cost of tiling.

- ``untiled_peak_rss_mb``: peak RSS of ``dglrsis segment --no-tile`` (SLIC + world-clip) on a 1536² and a
  3072² 4-band uint16 GeoTIFF (B, G, R, NIR; 0–10000) made of world scenes, each run in a fresh process,
  and their ratio (goal: 1536² ≤ 2048 MB; ratio ≤ 4.5 for 4× the pixels).
- ``tile_seam_agreement``: share of pixels where a tiled run (tile 512, overlap 64) equals a one-pass run on a
  1024² mosaic of world scenes (goal ≥ 0.97), the same share within 32 px of the tile borders (goal ≥ 0.95),
  and on the ground-truth objects only.
- ``tiled_seconds_per_megapixel`` and its ratio to one pass (goal ≤ 1.3): ``--repeats`` alternated pairs of
  warm runs (the first, cold run of the process is not timed); the ratio is the median of the pairs' wall-time
  ratios (``tiled_cpu_time_ratio``: the same with process CPU time); ``tiled_pixels_read_ratio``: pixels in
  the tiles' read windows ÷ pixels in the mosaic.

    .venv/bin/python bench/bench_scenes.py [--mosaic 1024] [--tile 512] [--overlap 64] [--sizes 1536,3072]

The last printed line is one JSON object.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from dglrsis.eval.world.geotiff import mosaic, write_bgrn

CLASSES = "ship,storage tank,harbor,plane,small vehicle,ground track field,bridge,large vehicle"


def peak_rss_mb(args: list[str]) -> tuple[float, float]:
    """(peak RSS in MB, seconds) of ``dglrsis ARGS`` in a fresh process (VmHWM via a wrapper)."""
    code = (
        "import sys, resource; from dglrsis.cli import main; rc = main(sys.argv[1:]); "
        "print('PEAK', resource.getrusage(resource.RUSAGE_SELF).ru_maxrss, file=sys.stderr); sys.exit(rc)"
    )
    t0 = time.perf_counter()
    out = subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True)
    dt = time.perf_counter() - t0
    if out.returncode != 0:
        raise SystemExit(f"dglrsis {' '.join(args)} failed: {out.stderr.strip()[-500:]}")
    kb = int(next(line.split()[1] for line in out.stderr.splitlines() if line.startswith("PEAK")))
    return kb / 1024, dt


def seams(side: int, tile: int, overlap: int, background: str, repeats: int = 5) -> dict:
    from dglrsis.predictor import Predictor, PredictorConfig
    from dglrsis.scene import TileConfig
    from dglrsis.tiling import tile_windows

    image, gt = mosaic(side)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "mosaic.tif"
        write_bgrn(path, image)
        pred = Predictor(PredictorConfig(clip="world-clip", proposals="slic", background=background))
        names = CLASSES.split(",")
        pred.models.text.embed(names, pred.cfg.lvta)  # text side once, outside both timings
        pred.set_raster(path, TileConfig(tile=0))  # warm-up (first-call costs), not timed
        pred.segment(names)
        one_s, tiled_s, ratios, cpu_ratios = [], [], [], []
        for _ in range(repeats):  # alternated pairs, medians: timings here wander by ±30 % run to run
            t0, c0 = time.perf_counter(), time.process_time()
            pred.set_raster(path, TileConfig(tile=0))
            one = pred.segment(names).labels
            n_one = len(pred.state.proposals)
            t1, c1 = time.perf_counter(), time.process_time()
            pred.set_raster(path, TileConfig(tile=tile, overlap=overlap))
            tiled = pred.segment(names).labels
            t2, c2 = time.perf_counter(), time.process_time()
            one_s.append(t1 - t0)
            tiled_s.append(t2 - t1)
            ratios.append((t2 - t1) / (t1 - t0))
            cpu_ratios.append((c2 - c1) / (c1 - c0))
        stages = {k: round(v, 2) if isinstance(v, float) else v for k, v in pred.state.timings.items()}
        t_one, t_tiled = float(np.median(one_s)), float(np.median(tiled_s))
    band = np.zeros(one.shape, bool)
    windows = tile_windows(side, side, tile, overlap)
    read = sum((w.x1 - w.x0) * (w.y1 - w.y0) for w in windows)
    for w in windows:
        for x in (w.cx0, w.cx1):
            if 0 < x < side:
                band[:, max(0, x - 32) : x + 32] = True
        for y in (w.cy0, w.cy1):
            if 0 < y < side:
                band[max(0, y - 32) : y + 32] = True
    same = one == tiled
    mp = side * side / 1e6
    return {
        "tile_seam_agreement": round(float(same.mean()), 4),
        "tile_seam_agreement_border32": round(float(same[band].mean()), 4),
        "tile_seam_agreement_objects": round(float(same[gt > 0].mean()), 4),
        "untiled_seconds_per_megapixel": round(t_one / mp, 2),
        "tiled_seconds_per_megapixel": round(t_tiled / mp, 2),
        "tiled_time_ratio": round(float(np.median(ratios)), 3),
        "tiled_cpu_time_ratio": round(float(np.median(cpu_ratios)), 3),
        "tiled_pixels_read_ratio": round(read / (side * side), 3),
        "repeats": repeats,
        "tiled_stages_seconds": stages,
        "proposals_one_pass": n_one,
        "proposals_tiled": len(pred.state.proposals),
        "background": background,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--mosaic", type=int, default=1024)
    ap.add_argument("--tile", type=int, default=512)
    ap.add_argument("--overlap", type=int, default=64)
    ap.add_argument("--sizes", default="1536,3072", help="one-pass memory scenes (side in pixels)")
    ap.add_argument("--repeats", type=int, default=5, help="timed runs of each mode (medians reported)")
    ap.add_argument("--background", default=None, help="background policy (default: the predictor's)")
    args = ap.parse_args()
    from dglrsis.predictor import PredictorConfig

    result = seams(
        args.mosaic, args.tile, args.overlap, args.background or PredictorConfig().background, args.repeats
    )
    print(json.dumps(result))
    rss = {}
    with tempfile.TemporaryDirectory() as tmp:
        for side in [int(s) for s in args.sizes.split(",") if s]:
            path = Path(tmp) / f"s{side}.tif"
            write_bgrn(path, mosaic(side)[0])
            mb, sec = peak_rss_mb(
                ["segment", str(path), "--classes", CLASSES, "--clip", "world-clip", "--no-tile",
                 "--out", str(Path(tmp) / f"o{side}.tif")]
            )  # fmt: skip
            rss[side] = mb
            print(f"one pass {side}²: peak RSS {mb:.0f} MB, {sec:.1f} s", flush=True)
    sides = sorted(rss)
    result["untiled_peak_rss_mb"] = {str(s): round(rss[s]) for s in sides}
    if len(sides) == 2:
        result["untiled_peak_rss_ratio"] = round(rss[sides[1]] / rss[sides[0]], 2)
        result["pixel_ratio"] = round((sides[1] / sides[0]) ** 2, 2)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
