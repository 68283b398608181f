"""Raster I/O round trips and bad-input handling through the real CLI."""

import subprocess
import sys

import numpy as np
import pytest
import rasterio
from PIL import Image
from rasterio.transform import from_origin

from dglrsis import io
from dglrsis.errors import DglrsisError

TRANSFORM = from_origin(500000.0, 4000000.0, 0.5, 0.5)


def _tif(path, arr, crs="EPSG:32633"):
    arr = arr[:, :, None] if arr.ndim == 2 else arr
    with rasterio.open(
        path,
        "w",
        driver="GTiff",
        width=arr.shape[1],
        height=arr.shape[0],
        count=arr.shape[2],
        dtype=arr.dtype.name,
        crs=crs,
        transform=TRANSFORM,
    ) as dst:
        dst.write(np.moveaxis(arr, -1, 0))


def test_geotiff_roundtrip_keeps_values_crs_transform(tmp_path):
    rng = np.random.default_rng(0)
    arr = rng.integers(0, 256, (30, 40, 3), dtype=np.uint8)
    _tif(tmp_path / "a.tif", arr)
    r = io.read_image(tmp_path / "a.tif")
    assert np.array_equal(r.array, arr) and r.meta.crs == "EPSG:32633"
    assert r.meta.transform == tuple(TRANSFORM)[:6]
    labels = rng.integers(0, 5, (30, 40)).astype(np.uint8)
    io.write_label(tmp_path / "out.tif", labels, r.meta)
    back, meta = io.read_raster(tmp_path / "out.tif")
    assert (
        np.array_equal(back[:, :, 0], labels)
        and meta.crs == "EPSG:32633"
        and meta.transform == r.meta.transform
    )


def test_16bit_tiff_exact_and_stretched(tmp_path):
    arr = np.array([[0, 100, 200], [300, 400, 1000]], np.uint16)
    _tif(tmp_path / "b.tif", arr)
    raw, meta = io.read_raster(tmp_path / "b.tif")
    assert meta.dtype == "uint16" and np.array_equal(raw[:, :, 0], arr)
    img = io.read_image(tmp_path / "b.tif", stretch=(0, 100)).array  # min–max: 0 → 0, 1000 → 255
    assert img.shape == (2, 3, 3) and img.dtype == np.uint8
    assert img[0, 0, 0] == 0 and img[1, 2, 0] == 255 and img[0, 2, 0] == round(200 / 1000 * 255)


def test_rgba_grayscale_bmp_under_png(tmp_path):
    rgba = np.zeros((8, 9, 4), np.uint8)
    rgba[..., 0], rgba[..., 3] = 200, 50
    Image.fromarray(rgba, "RGBA").save(tmp_path / "rgba.png")
    assert io.read_image(tmp_path / "rgba.png").array[0, 0].tolist() == [200, 0, 0]  # alpha dropped
    Image.fromarray(np.full((5, 6), 77, np.uint8)).save(tmp_path / "g.png")
    assert io.read_image(tmp_path / "g.png").array.shape == (5, 6, 3)
    Image.fromarray(rgba[..., :3]).save(tmp_path / "bmp.png", format="BMP")
    r = io.read_image(tmp_path / "bmp.png")
    assert r.meta.format == "BMP" and r.array[0, 0, 0] == 200


def test_five_band_selection(tmp_path):
    arr = np.stack([np.full((4, 4), 10 * (b + 1), np.uint8) for b in range(5)], -1)
    _tif(tmp_path / "five.tif", arr)
    assert io.read_image(tmp_path / "five.tif", bands=[3, 2, 1]).array[0, 0].tolist() == [30, 20, 10]
    raw, meta = io.read_raster(tmp_path / "five.tif")
    assert meta.count == 5 and raw.shape == (4, 4, 5)
    with io.open_raster(tmp_path / "five.tif") as r:  # no band metadata: bands 1,2,3, said in one line
        assert r.bands == [0, 1, 2] and "--bands" in r.notice and "\n" not in r.notice
    with pytest.raises(DglrsisError, match="band 7"):
        io.read_image(tmp_path / "five.tif", bands=[7, 2, 1])


def test_windowed_read_equals_full_read(tmp_path):
    arr = np.random.default_rng(1).integers(0, 256, (50, 60, 3), dtype=np.uint8)
    _tif(tmp_path / "w.tif", arr)
    Image.fromarray(arr).save(tmp_path / "w.png")
    for name in ("w.tif", "w.png"):
        with io.open_raster(tmp_path / name) as r:
            assert np.array_equal(r.read_window(10, 5, 40, 45), arr[5:45, 10:40])


def test_index_png_palette_and_failed_write_leaves_nothing(tmp_path):
    lab = np.array([[0, 1], [2, 1]], np.uint8)
    io.write_index_png(tmp_path / "l.png", lab, io.default_palette(3))
    im = Image.open(tmp_path / "l.png")
    assert im.mode == "P" and np.array_equal(np.asarray(im), lab)
    with pytest.raises(DglrsisError):
        io.write_index_png(tmp_path / "bad.png", np.array([[300]]))
    with pytest.raises(RuntimeError):
        with io.atomic_path(tmp_path / "x.json") as tmp:
            tmp.write_text("half")
            raise RuntimeError("boom")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["l.png"]


def _bad_files(tmp_path):
    png = tmp_path / "ok.png"
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (64, 64, 3), dtype=np.uint8)).save(png)
    data = png.read_bytes()
    jpg = tmp_path / "ok.jpg"
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (64, 64, 3), dtype=np.uint8)).save(jpg)
    files = {
        "missing": tmp_path / "nope.png",
        "zero": tmp_path / "zero.png",
        "trunc_png": tmp_path / "t.png",
        "trunc_jpg": tmp_path / "t.jpg",
        "text": tmp_path / "text.png",
        "bomb": tmp_path / "bomb.png",
        "two_band": tmp_path / "two.tif",
        "directory": tmp_path,
    }
    files["zero"].write_bytes(b"")
    files["trunc_png"].write_bytes(data[: len(data) // 2])
    files["trunc_jpg"].write_bytes(jpg.read_bytes()[:300])
    files["text"].write_text("hello, I am not an image\n")
    import struct
    import zlib

    ihdr = struct.pack(">IIBBBBB", 100_000, 100_000, 8, 2, 0, 0, 0)
    chunk = b"IHDR" + ihdr
    files["bomb"].write_bytes(
        b"\x89PNG\r\n\x1a\n" + struct.pack(">I", 13) + chunk + struct.pack(">I", zlib.crc32(chunk))
    )
    _tif(files["two_band"], np.zeros((4, 4, 2), np.uint8))
    return files


@pytest.mark.parametrize(
    "kind", ["missing", "zero", "trunc_png", "trunc_jpg", "text", "bomb", "two_band", "directory"]
)
def test_bad_input_exit_2_one_line_no_output(tmp_path, kind):
    path = _bad_files(tmp_path)[kind]
    out = tmp_path / "out" / "seg.png"
    cmds = [["info", str(path)]] if kind != "two_band" else []  # info describes any band layout
    for cmd in cmds + [
        ["segment", str(path), "--classes", "ship", "--clip", "world-clip:random", "--out", str(out)]
    ]:
        res = subprocess.run(
            [sys.executable, "-m", "dglrsis.cli", *cmd], capture_output=True, text=True, timeout=120
        )
        assert res.returncode == 2, (kind, cmd[0], res.stderr)
        lines = res.stderr.strip().splitlines()
        assert len(lines) == 1 and "Traceback" not in res.stderr, res.stderr
    assert not out.parent.exists() or not any(out.parent.iterdir())


def test_out_of_range_band_cli(tmp_path):
    _tif(tmp_path / "five.tif", np.zeros((4, 4, 5), np.uint8))
    res = subprocess.run(
        [
            sys.executable,
            "-m",
            "dglrsis.cli",
            "segment",
            str(tmp_path / "five.tif"),
            "--classes",
            "ship",
            "--bands",
            "9,2,1",
            "--out",
            str(tmp_path / "o.png"),
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert res.returncode == 2 and "band 9" in res.stderr and not (tmp_path / "o.png").exists()
