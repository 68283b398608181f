"""Tile geometry for large rasters (used by :mod:`dglrsis.scene`).

Pure: :func:`tile_windows` returns read windows (``x0, y0, x1, y1``, pixels, half-open) plus the **core**
each tile owns. The overlap between neighbours is split half-half, so the cores partition the image exactly
(every pixel belongs to exactly one core). Edge tiles are shifted inward, so no read window is smaller than
``tile`` unless the image itself is.
"""

from __future__ import annotations

from dataclasses import dataclass

from dglrsis.errors import DglrsisError


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
