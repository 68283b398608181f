"""Tiled inference for large rasters: window geometry and a streaming label writer.

Geometry is pure: :func:`tile_windows` returns read windows (``x0, y0, x1, y1``, pixels,
half-open) plus the **core** each tile owns. The overlap between neighbours is split half-half,
so the cores partition the image exactly (every pixel belongs to exactly one core). Edge tiles are
shifted inward, so no read window is smaller than ``tile`` unless the image itself is.

:func:`run_tiled` reads each window from a reader (``.meta`` with ``width``/``height``/``crs``/
``transform``; ``.read_window(x0, y0, x1, y1) -> h×w×3 uint8``), applies ``fn`` and writes the core
of its ``h×w`` uint8 label map into the output. GeoTIFF output is written window by window
(memory bounded by the tile size); ``.png`` output is accumulated in one uint8 array. Both are
written to a temporary path and renamed into place only on success.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from dglrsis.errors import DglrsisError
from dglrsis.io import atomic_path


@dataclass(frozen=True)
class Window:
    """One tile: the read window and the core it owns, both half-open XYXY pixel boxes."""

    x0: int  # read window left (inclusive)
    y0: int  # read window top (inclusive)
    x1: int  # read window right (exclusive)
    y1: int  # read window bottom (exclusive)
    cx0: int  # core left (inclusive), x0 <= cx0
    cy0: int  # core top (inclusive), y0 <= cy0
    cx1: int  # core right (exclusive), cx1 <= x1
    cy1: int  # core bottom (exclusive), cy1 <= y1

    def core_in_tile(self) -> tuple[slice, slice]:
        """(rows, cols) slices of the core inside the tile's own h×w array."""
        return (slice(self.cy0 - self.y0, self.cy1 - self.y0), slice(self.cx0 - self.x0, self.cx1 - self.x0))


def _starts(size: int, tile: int, stride: int) -> list[int]:
    """Window starts along one axis; the last window is shifted inward to end at ``size``."""
    if size <= tile:
        return [0]
    starts = list(range(0, size - tile, stride))
    starts.append(size - tile)
    return sorted(set(starts))


def _axis(size: int, tile: int, overlap: int) -> list[tuple[int, int, int, int]]:
    """(start, end, core_start, core_end) per window along one axis; cores partition [0, size)."""
    starts = _starts(size, tile, tile - overlap)
    ends = [min(s + tile, size) for s in starts]
    out = []
    for i, (s, e) in enumerate(zip(starts, ends, strict=False)):
        c0 = 0 if i == 0 else (s + ends[i - 1]) // 2  # midpoint of the overlap with the previous
        c1 = size if i == len(starts) - 1 else (starts[i + 1] + e) // 2
        out.append((s, e, c0, c1))
    return out


def tile_windows(height: int, width: int, tile: int, overlap: int) -> list[Window]:
    """Windows of side ``tile`` (pixels) with ``overlap`` pixels between neighbours, row-major.

    Raises DglrsisError for non-positive sizes, a negative overlap, or ``overlap >= tile``.
    """
    if height <= 0 or width <= 0:
        raise DglrsisError(f"image size must be positive, got {height}×{width}")
    if tile <= 0:
        raise DglrsisError(f"tile must be positive, got {tile}")
    if overlap < 0 or overlap >= tile:
        raise DglrsisError(f"overlap must be in [0, tile); got overlap={overlap}, tile={tile}")
    ys, xs = _axis(height, tile, overlap), _axis(width, tile, overlap)
    return [
        Window(x0, y0, x1, y1, cx0, cy0, cx1, cy1) for (y0, y1, cy0, cy1) in ys for (x0, x1, cx0, cx1) in xs
    ]


def _geotiff_profile(meta, width: int, height: int, tile: int) -> dict:
    """A single-band uint8 GeoTIFF profile with the source CRS/transform, tiled for windowed writes."""
    from rasterio.transform import Affine

    profile = {
        "driver": "GTiff",
        "width": width,
        "height": height,
        "count": 1,
        "dtype": "uint8",
        "compress": "lzw",
    }
    if width >= 16 and height >= 16:
        block = max(16, min(512, (tile // 16) * 16))
        profile.update(tiled=True, blockxsize=block, blockysize=block)
    crs, transform = getattr(meta, "crs", None), getattr(meta, "transform", None)
    if crs:
        profile["crs"] = crs
    if transform:
        profile["transform"] = Affine(*tuple(transform)[:6])
    return profile


def _tile_labels(reader, win: Window, fn: Callable[[np.ndarray], np.ndarray]) -> np.ndarray:
    """Read ``win``, apply ``fn`` and return the core of its labels (uint8)."""
    image = reader.read_window(win.x0, win.y0, win.x1, win.y1)
    labels = np.asarray(fn(image))
    h, w = win.y1 - win.y0, win.x1 - win.x0
    if labels.shape != (h, w):
        raise DglrsisError(f"tile fn returned shape {labels.shape}, expected {(h, w)}")
    if labels.size and (labels.min() < 0 or labels.max() > 255):
        raise DglrsisError("tile fn must return labels in 0–255")
    return labels[win.core_in_tile()].astype(np.uint8)


def run_tiled(
    reader,
    out_path,
    fn: Callable[[np.ndarray], np.ndarray],
    tile: int = 1024,
    overlap: int = 128,
    meta=None,
    palette: list | None = None,
    progress: bool = True,
) -> Path:
    """Segment a raster tile by tile and write an H×W uint8 label map to ``out_path``.

    ``fn(tile_image h×w×3 uint8) -> h×w labels (0–255)``. ``meta`` defaults to ``reader.meta``.
    ``.tif``/``.tiff`` → GeoTIFF with the source CRS/transform, written window by window;
    ``.png`` → index PNG (with ``palette``) accumulated in memory. Nothing is left at ``out_path``
    if ``fn`` or the reader fails. Returns the output path.
    """
    from tqdm import tqdm

    meta = reader.meta if meta is None else meta
    out_path = Path(out_path)
    ext = out_path.suffix.lower()
    if ext not in (".png", ".tif", ".tiff"):
        raise DglrsisError(f"unsupported output {out_path}: use .png or .tif")
    width, height = int(meta.width), int(meta.height)
    windows = tile_windows(height, width, tile, overlap)
    bar = tqdm(windows, desc="tiles", unit="tile", disable=not progress)
    if ext == ".png":
        from dglrsis.io import write_index_png

        out = np.zeros((height, width), np.uint8)
        for win in bar:
            out[win.cy0 : win.cy1, win.cx0 : win.cx1] = _tile_labels(reader, win, fn)
        write_index_png(out_path, out, palette)
        return out_path
    import rasterio
    from rasterio.windows import Window as RioWindow

    profile = _geotiff_profile(meta, width, height, tile)
    # GDAL's block cache (default 5 % of RAM) would otherwise grow with the raster: bound it by the tile.
    cache_mb = max(16, 8 * tile * tile * 4 // 2**20)
    with (
        rasterio.Env(GDAL_CACHEMAX=cache_mb),
        atomic_path(out_path, suffix=".tif") as tmp,
        rasterio.open(tmp, "w", **profile) as dst,
    ):
        if palette:
            dst.write_colormap(
                1, {i: tuple(int(v) for v in rgb) + (255,) for i, rgb in enumerate(palette[:256])}
            )
        for win in bar:
            core = _tile_labels(reader, win, fn)
            dst.write(core, 1, window=RioWindow(win.cx0, win.cy0, win.cx1 - win.cx0, win.cy1 - win.cy0))
    return out_path
