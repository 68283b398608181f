"""Peak RSS of tiled segmentation: a 10k×10k GeoTIFF vs a 2k×2k one (same tile size).

Each run happens in a fresh subprocess; its peak RSS is VmHWM from /proc (ru_maxrss fallback).
The per-tile ``fn`` is a cheap brightness threshold: what is measured is the driver's memory.
The last printed line is one JSON object (``tiling_peak_rss_ratio`` goal ≤ 1.1).

    .venv/bin/python bench/bench_tiling.py [--tile 1024] [--overlap 128] [--big 10000] [--small 2000]
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


def make_geotiff(path: Path, size: int, block: int = 1024) -> None:
    """A size×size RGB uint8 GeoTIFF written block by block (never held in memory)."""
    import rasterio
    from rasterio.transform import from_origin
    from rasterio.windows import Window

    profile = {
        "driver": "GTiff",
        "width": size,
        "height": size,
        "count": 3,
        "dtype": "uint8",
        "tiled": True,
        "blockxsize": 512,
        "blockysize": 512,
        "compress": "lzw",
        "crs": "EPSG:32633",
        "transform": from_origin(500000.0, 4000000.0, 0.5, 0.5),
    }
    with rasterio.open(path, "w", **profile) as dst:
        for y in range(0, size, block):
            for x in range(0, size, block):
                h, w = min(block, size - y), min(block, size - x)
                yy, xx = np.mgrid[y : y + h, x : x + w]
                band = (((xx // 97) + (yy // 131)) % 2 * 120 + (xx * 7 + yy * 3) % 60).astype(np.uint8)
                dst.write(np.stack([band, band // 2, 255 - band]), window=Window(x, y, w, h))


def child(src: str, out: str, tile: int, overlap: int) -> None:
    """Run the tiled driver once and print this process's peak RSS (MB) as JSON."""
    import resource

    from dglrsis.io import open_raster
    from dglrsis.tiling import run_tiled

    def fn(img: np.ndarray) -> np.ndarray:
        return (img.mean(axis=2) > 100).astype(np.uint8)

    t0 = time.perf_counter()
    run_tiled(open_raster(src), out, fn, tile=tile, overlap=overlap, progress=False)
    peak_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            peak_kb = int(line.split()[1])
    print(json.dumps({"peak_mb": peak_kb / 1024, "seconds": time.perf_counter() - t0}))


def measure(src: Path, out: Path, tile: int, overlap: int) -> dict:
    cmd = [sys.executable, __file__, "--child", str(src), str(out), str(tile), str(overlap)]
    res = subprocess.run(cmd, check=True, capture_output=True, text=True)
    return json.loads(res.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--tile", type=int, default=1024)
    ap.add_argument("--overlap", type=int, default=128)
    ap.add_argument("--big", type=int, default=10000)
    ap.add_argument("--small", type=int, default=2000)
    ap.add_argument("--child", nargs=4, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        src, out, tile, overlap = args.child
        child(src, out, int(tile), int(overlap))
        return
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        res = {}
        for name, size in (("small", args.small), ("big", args.big)):
            t0 = time.perf_counter()
            make_geotiff(tmp / f"{name}.tif", size)
            make_s = time.perf_counter() - t0
            r = measure(tmp / f"{name}.tif", tmp / f"{name}_labels.tif", args.tile, args.overlap)
            res[name] = {**r, "make_seconds": make_s}
            print(f"{size}x{size}: peak {r['peak_mb']:.1f} MB, tiled run {r['seconds']:.1f} s", flush=True)
    print(
        json.dumps(
            {
                "tiling_peak_rss_ratio": round(res["big"]["peak_mb"] / res["small"]["peak_mb"], 3),
                "rss_10k_mb": round(res["big"]["peak_mb"], 1),
                "rss_2k_mb": round(res["small"]["peak_mb"], 1),
                "seconds_10k": round(res["big"]["seconds"], 1),
                "seconds_2k": round(res["small"]["seconds"], 1),
                "big": args.big,
                "small": args.small,
                "tile": args.tile,
                "overlap": args.overlap,
            }
        )
    )


if __name__ == "__main__":
    main()
