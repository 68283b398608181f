"""``dglrsis info IMAGE``: size, bands, dtype, format, CRS/transform and band ranges of a raster."""

from __future__ import annotations

import json

HELP = "describe a raster: size, bands, dtype, format (by content), CRS/transform, band ranges"


def add_arguments(parser) -> None:
    parser.add_argument("image")
    parser.add_argument("--json", action="store_true", help="print one JSON object")


def run(args) -> int:
    import numpy as np

    from ..io import RasterReader

    with RasterReader(args.image, bands="all") as r:
        m = r.meta
        over = r.overview()  # decimated for big rasters
    ranges = [[float(np.nanmin(over[..., c])), float(np.nanmax(over[..., c]))] for c in range(over.shape[-1])]
    info = {
        "path": m.path,
        "format": m.format,
        "width": m.width,
        "height": m.height,
        "bands": m.count,
        "dtype": m.dtype,
        "crs": m.crs,
        "transform": list(m.transform) if m.transform else None,
        "nodata": m.nodata,
        "band_ranges": ranges,
    }
    if args.json:
        print(json.dumps(info))
        return 0
    print(f"{m.path}: {m.format}, {m.width}×{m.height}, {m.count} band(s), {m.dtype}")
    if m.crs or m.transform:
        print(f"  CRS: {m.crs}\n  transform: {m.transform}")
    for i, (lo, hi) in enumerate(ranges, 1):
        print(f"  band {i}: {lo:g} … {hi:g}")
    return 0
