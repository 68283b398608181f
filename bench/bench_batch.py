"""Archive-scale runs: one batch call vs one CLI call per image, and two processes vs one.

World scenes (``dglrsis world``, seed 7) are written as GeoTIFFs and segmented with world-clip and
SLIC proposals, GeoTIFF labels + GeoPackage vectors per image:

- ``batch_speedup_per_image``: seconds per image of N separate ``dglrsis segment IMG --out …``
  calls ÷ seconds per image of one ``dglrsis segment DIR --out-dir …`` call (goal ≥ 3 on CPU:
  the start-up and model loading are paid once);
- ``process_scaling``: images/s of the batch under ``accelerate launch`` with 2 processes ÷
  images/s with 1 process (bounded by the free cores; each process loads its own models).

The last printed line is one JSON object.

    .venv/bin/python bench/bench_batch.py [--n 20] [--size 256] [--threads 1]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

CLASSES = "ship,storage tank,harbor,plane,small vehicle,ground track field"


def make_scenes(root: Path, n: int, size: int) -> Path:
    """``n`` world scenes as georeferenced GeoTIFFs in ``root/scenes``."""
    import numpy as np
    import rasterio
    from PIL import Image
    from rasterio.transform import from_origin

    from dglrsis.cli import main

    assert main(["world", "--out", str(root / "W"), "--seed", "7", "--n", str(n), "--size", str(size)]) == 0
    pngs = sorted((root / "W" / "isaid").glob("*/images/P*.png"))[:n]
    out = root / "scenes"
    out.mkdir()
    for i, p in enumerate(pngs):
        a = np.asarray(Image.open(p).convert("RGB"))
        profile = dict(driver="GTiff", width=a.shape[1], height=a.shape[0], count=3, dtype="uint8")
        tr = from_origin(500000.0, 4000000.0 - 1000 * i, 0.5, 0.5)
        with rasterio.open(out / f"{p.stem}.tif", "w", crs="EPSG:32633", transform=tr, **profile) as dst:
            dst.write(np.moveaxis(a, -1, 0))
    return out


def timed(cmd: list[str], env: dict) -> float:
    t0 = time.perf_counter()
    res = subprocess.run(cmd, capture_output=True, text=True, env=env)
    if res.returncode != 0:
        raise SystemExit(f"failed: {' '.join(cmd)}\n{res.stderr[-2000:]}")
    return time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=20, help="number of images")
    ap.add_argument("--size", type=int, default=256, help="scene side in pixels")
    ap.add_argument("--threads", type=int, default=1, help="torch/OMP threads per process")
    args = ap.parse_args()
    env = {**os.environ, "OMP_NUM_THREADS": str(args.threads), "MKL_NUM_THREADS": str(args.threads)}
    model = ["--classes", CLASSES, "--clip", "world-clip", "--proposals", "slic"]
    cli = [sys.executable, "-m", "dglrsis.cli", "segment"]
    with tempfile.TemporaryDirectory(prefix="bench-batch-") as tmp:
        root = Path(tmp)
        scenes = make_scenes(root, args.n, args.size)
        images = sorted(scenes.iterdir())
        n = len(images)
        t_batch = timed([*cli, str(scenes), *model, "--vectors", "gpkg", "--out-dir", str(root / "b1")], env)
        print(f"one batch call, 1 process: {t_batch:.1f} s for {n} images", flush=True)
        t_sep = 0.0
        for img in images:
            out = root / "sep" / img.stem
            t_sep += timed([*cli, str(img), *model, "--out", f"{out}.tif", "--vectors", f"{out}.gpkg"], env)
        print(f"{n} separate calls: {t_sep:.1f} s", flush=True)
        launch = [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", "2"]
        launch += ["--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no", "-m"]
        t_two = timed([*launch, "dglrsis.cli", "segment", str(scenes), *model, "--vectors", "gpkg",
                       "--out-dir", str(root / "b2")], env)  # fmt: skip
        print(f"one batch call, 2 processes: {t_two:.1f} s", flush=True)
        same = all(
            (root / "b1" / f.name).read_bytes() == f.read_bytes()
            for f in (root / "b2").iterdir()
            if not f.name.startswith((".", "manifest"))
        )
    print(
        json.dumps(
            {
                "batch_speedup_per_image": round(t_sep / t_batch, 2),
                "process_scaling": round(t_batch / t_two, 2),
                "seconds_per_image_batch": round(t_batch / n, 2),
                "seconds_per_image_separate": round(t_sep / n, 2),
                "seconds_per_image_two_processes": round(t_two / n, 2),
                "two_processes_same_bytes": same,
                "images": n,
                "size": args.size,
                "threads_per_process": args.threads,
                "cpu_count": os.cpu_count(),
            }
        )
    )


if __name__ == "__main__":
    main()
