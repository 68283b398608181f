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
        over, valid = r.overview()  # decimated for big rasters
        with_auto = RasterReader(args.image) if m.count != 2 else None
        rgb = [b + 1 for b in with_auto.bands] if with_auto else None
        notice = with_auto.notice if with_auto else None
        if with_auto:
            with_auto.close()
    px = over[valid] if valid.any() else over.reshape(-1, over.shape[-1])
    ranges = [[float(np.nanmin(px[:, c])), float(np.nanmax(px[:, c]))] for c in range(px.shape[-1])]
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
        "band_names": m.band_names,
        "band_ranges": ranges,
        "rgb_bands": rgb,
    }
    if args.json:
        print(json.dumps(info))
        return 0
    print(f"{m.path}: {m.format}, {m.width}×{m.height}, {m.count} band(s), {m.dtype}")
    if m.crs or m.transform:
        print(f"  CRS: {m.crs}\n  transform: {m.transform}")
    for i, ((lo, hi), name) in enumerate(zip(ranges, m.band_names, strict=False), 1):
        print(f"  band {i}{f' ({name})' if name else ''}: {lo:g} … {hi:g}")
    if m.nodata is not None:
        print(f"  nodata: {m.nodata:g}")
    if rgb:
        print(
            f"  read as R,G,B: bands {','.join(map(str, rgb))}"
            + (" (a guess: see --bands)" if notice else "")
        )
    return 0
