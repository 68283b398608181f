"""Tiling: window geometry partitions the image; the streaming driver equals the global result."""

from itertools import pairwise

import numpy as np
import pytest

from dglrsis.errors import DglrsisError
from dglrsis.tiling import run_tiled, tile_windows


class FakeMeta:
    def __init__(self, width, height, crs=None, transform=None):
        self.width, self.height, self.crs, self.transform = width, height, crs, transform


class FakeReader:
    """Image whose pixel (y, x) has R = x % 256, G = y % 256; counts reads."""

    def __init__(self, width, height, **kw):
        self.meta = FakeMeta(width, height, **kw)
        self.reads = []

    def read_window(self, x0, y0, x1, y1):
        self.reads.append((x0, y0, x1, y1))
        yy, xx = np.mgrid[y0:y1, x0:x1]
        return np.stack([xx % 256, yy % 256, np.zeros_like(xx)], -1).astype(np.uint8)


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
        assert win.x1 - win.x0 == min(tile, w) and win.y1 - win.y0 == min(tile, h)
        count[win.cy0 : win.cy1, win.cx0 : win.cx1] += 1
    assert (count == 1).all()


def test_overlap_is_respected():
    wins = tile_windows(100, 100, 40, 10)
    xs = sorted({(w.x0, w.x1) for w in wins})
    for (_, a1), (b0, _) in pairwise(xs):
        assert a1 - b0 >= 10


@pytest.mark.parametrize(
    "args", [(10, 10, 8, 8), (10, 10, 8, 9), (10, 10, 0, 0), (0, 10, 8, 2), (10, 10, 8, -1)]
)
def test_invalid_geometry(args):
    with pytest.raises(DglrsisError):
        tile_windows(*args)


def parity(img):
    return (img[:, :, 0] % 2).astype(np.uint8) + 2 * (img[:, :, 1] % 3 == 0)


def test_run_tiled_png_equals_global(tmp_path):
    from PIL import Image

    reader = FakeReader(75, 50)
    out = run_tiled(reader, tmp_path / "o.png", parity, tile=32, overlap=8, progress=False)
    got = np.array(Image.open(out))
    full = FakeReader(75, 50).read_window(0, 0, 75, 50)
    assert np.array_equal(got, parity(full))
    assert len(reader.reads) == len(tile_windows(50, 75, 32, 8))


def test_run_tiled_geotiff_keeps_georef(tmp_path):
    rasterio = pytest.importorskip("rasterio")
    tr = (0.5, 0.0, 1000.0, 0.0, -0.5, 2000.0)
    reader = FakeReader(70, 45, crs="EPSG:32633", transform=tr)
    out = run_tiled(
        reader,
        tmp_path / "o.tif",
        parity,
        tile=32,
        overlap=6,
        palette=[(0, 0, 0), (255, 0, 0)],
        progress=False,
    )
    with rasterio.open(out) as ds:
        assert ds.crs.to_epsg() == 32633
        assert tuple(ds.transform)[:6] == pytest.approx(tr)
        assert (ds.width, ds.height, ds.count) == (70, 45, 1)
        got = ds.read(1)
    assert np.array_equal(got, parity(FakeReader(70, 45).read_window(0, 0, 70, 45)))


@pytest.mark.parametrize("name", ["o.tif", "o.png"])
def test_failing_fn_leaves_no_file(tmp_path, name):
    calls = []

    def boom(img):
        calls.append(1)
        if len(calls) == 3:
            raise RuntimeError("fail")
        return np.zeros(img.shape[:2], np.uint8)

    with pytest.raises(RuntimeError):
        run_tiled(FakeReader(100, 100), tmp_path / name, boom, tile=32, overlap=4, progress=False)
    assert list(tmp_path.iterdir()) == []


def test_bad_fn_shape_and_extension(tmp_path):
    with pytest.raises(DglrsisError):
        run_tiled(
            FakeReader(40, 40),
            tmp_path / "o.png",
            lambda im: np.zeros((3, 3), np.uint8),
            tile=16,
            overlap=2,
            progress=False,
        )
    with pytest.raises(DglrsisError):
        run_tiled(FakeReader(40, 40), tmp_path / "o.jpg", parity, tile=16, overlap=2, progress=False)
    assert list(tmp_path.iterdir()) == []
