"""Tiling: window geometry partitions the image."""

from itertools import pairwise

import numpy as np
import pytest

from dglrsis.errors import DglrsisError
from dglrsis.tiling import tile_windows


@pytest.mark.parametrize(
    "h,w,tile,overlap",
    [
        (100, 100, 32, 8),
        (97, 203, 32, 0),
        (10, 500, 64, 16),
        (64, 64, 64, 10),
        (1, 1, 8, 3),
        (65, 33, 16, 15),
        (1000, 7, 128, 64),
        (129, 129, 64, 1),
    ],
)
def test_cores_partition_image(h, w, tile, overlap):
    count = np.zeros((h, w), int)
    for win in tile_windows(h, w, tile, overlap):
        assert 0 <= win.x0 <= win.cx0 <= win.cx1 <= win.x1 <= w
        assert 0 <= win.y0 <= win.cy0 <= win.cy1 <= win.y1 <= h
        assert win.x1 - win.x0 <= tile and win.y1 - win.y0 <= tile
        count[win.cy0 : win.cy1, win.cx0 : win.cx1] += 1
    assert (count == 1).all()


@pytest.mark.parametrize(
    "size,tile,overlap", [(100, 40, 10), (1024, 512, 64), (1536, 512, 64), (3000, 1024, 128)]
)
def test_overlap_is_respected(size, tile, overlap):
    wins = tile_windows(size, size, tile, overlap)
    xs = sorted({(w.x0, w.x1) for w in wins})
    assert len({x1 - x0 for x0, x1 in xs}) == 1  # one side per axis
    for (_, a1), (b0, _) in pairwise(xs):
        assert a1 - b0 >= overlap


@pytest.mark.parametrize("size,tile,overlap", [(1024, 512, 64), (1536, 512, 64), (6000, 1024, 128)])
def test_tiles_read_few_more_pixels_than_the_image(size, tile, overlap):
    """The fewest windows of one side: 1024² / 512 / 64 reads 9 × 384² (1.27×), not 9 × 512² (2.25×)."""
    wins = tile_windows(size, size, tile, overlap)
    read = sum((w.x1 - w.x0) * (w.y1 - w.y0) for w in wins)
    n = -(-(size - overlap) // (tile - overlap))
    assert len(wins) == n * n
    assert read <= 1.3 * size * size


@pytest.mark.parametrize(
    "args", [(10, 10, 8, 8), (10, 10, 8, 9), (10, 10, 0, 0), (0, 10, 8, 2), (10, 10, 8, -1)]
)
def test_invalid_geometry(args):
    with pytest.raises(DglrsisError):
        tile_windows(*args)


def parity(img):
    return (img[:, :, 0] % 2).astype(np.uint8) + 2 * (img[:, :, 1] % 3 == 0)
