"""World scenes as a satellite-style GeoTIFF: a mosaic of scenes stored as 4-band uint16 (B, G, R, NIR as
reflectance × 10⁴, colour interpretation blue/green/red/undefined, EPSG:32633, 0.5 m pixels) with an optional
nodata border — the shape of data a user brings, for the README example, the tests and the benchmarks."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from .scenes import iter_scenes

REFLECTANCE_PER_LEVEL = 39  # 8-bit level × 39 → 0–9945, reflectance × 10⁴


def mosaic(side: int, scene: int = 512, seed: int = 7) -> tuple[np.ndarray, np.ndarray]:
    """(side×side×3 uint8 image, side×side iSAID class map) tiled row-major from world scenes."""
    k = -(-side // scene)
    scenes = list(iter_scenes(seed=seed, n=k * k, size=scene))
    rows = [np.concatenate([s.image for s in scenes[r * k : (r + 1) * k]], 1) for r in range(k)]
    gts = [np.concatenate([s.class_map for s in scenes[r * k : (r + 1) * k]], 1) for r in range(k)]
    return np.concatenate(rows)[:side, :side], np.concatenate(gts)[:side, :side]


def write_bgrn(path, image: np.ndarray, nodata_border: int = 0) -> Path:
    """Write ``image`` (H×W×3 uint8 RGB) as the 4-band uint16 GeoTIFF described above; the outer
    ``nodata_border`` pixels are 0 in every band and the file's nodata is 0."""
    import rasterio
    from rasterio.enums import ColorInterp
    from rasterio.transform import from_origin

    rgb = image.astype(np.uint16) * REFLECTANCE_PER_LEVEL
    bands = np.stack([rgb[..., 2], rgb[..., 1], rgb[..., 0], rgb[..., 1]])
    bands = np.maximum(bands, 1)  # 0 is nodata
    if nodata_border:
        b = nodata_border
        bands[:, :b], bands[:, -b:], bands[:, :, :b], bands[:, :, -b:] = 0, 0, 0, 0
    h, w = image.shape[:2]
    profile = {
        "driver": "GTiff", "width": w, "height": h, "count": 4, "dtype": "uint16", "crs": "EPSG:32633",
        "transform": from_origin(500000, 4000000, 0.5, 0.5), "nodata": 0, "photometric": "MINISBLACK",
        "compress": "deflate", "tiled": w >= 256 and h >= 256,
    }  # fmt: skip
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with rasterio.open(path, "w", **profile) as dst:
        dst.write(bands)
        dst.colorinterp = [ColorInterp.blue, ColorInterp.green, ColorInterp.red, ColorInterp.undefined]
    return path
