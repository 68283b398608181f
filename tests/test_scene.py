"""Real scenes: band order from metadata, one whole-scene stretch, nodata never classified, tiles that agree
with one pass, and the same outputs tiled and untiled."""

import json
import subprocess
import sys

import numpy as np
import pytest
import rasterio
from rasterio.enums import ColorInterp
from rasterio.transform import from_origin

from dglrsis import io
from dglrsis.errors import DglrsisError
from dglrsis.eval.world import iter_scenes
from dglrsis.masks import Proposals
from dglrsis.predictor import Predictor, PredictorConfig
from dglrsis.proposals import ProposalConfig
from dglrsis.scene import TileConfig, merge_across_borders, merge_reads

TRANSFORM = from_origin(500000.0, 4000000.0, 2.0, 2.0)
CLASSES = ["ship", "storage tank", "harbor", "plane", "small vehicle"]


def _tif(path, bands, colorinterp=None, descriptions=None, nodata=None):
    """bands: C×H×W array → GeoTIFF (EPSG:32633) with optional colour interpretation / descriptions."""
    c, h, w = bands.shape
    with rasterio.open(
        path,
        "w",
        driver="GTiff",
        width=w,
        height=h,
        count=c,
        dtype=bands.dtype.name,
        crs="EPSG:32633",
        transform=TRANSFORM,
        nodata=nodata,
        photometric="MINISBLACK",
    ) as dst:
        dst.write(bands)
        if colorinterp:
            dst.colorinterp = colorinterp
        for i, d in enumerate(descriptions or []):
            dst.set_band_description(i + 1, d)


def _bgrn(h=8, w=8):
    """4-band uint16 B, G, R, NIR planes with constant values 1000, 2000, 3000, 4000."""
    return np.stack([np.full((h, w), v, np.uint16) for v in (1000, 2000, 3000, 4000)])


def test_colour_interpretation_picks_red_green_blue(tmp_path):
    interp = [ColorInterp.blue, ColorInterp.green, ColorInterp.red, ColorInterp.undefined]
    _tif(tmp_path / "a.tif", _bgrn(), colorinterp=interp)
    with io.open_raster(tmp_path / "a.tif") as r:
        assert r.bands == [2, 1, 0] and r.notice is None
        px = r.read()[0, 0]
    assert px[0] > px[1] > px[2]  # red (3000) brightest, blue (1000) darkest: not swapped


def test_band_descriptions_alone_pick_the_same_bands(tmp_path):
    _tif(tmp_path / "d.tif", _bgrn(), descriptions=["B02", "B03", "B04", "B08"])
    with io.open_raster(tmp_path / "d.tif") as r:
        assert r.bands == [2, 1, 0] and r.notice is None
    with io.open_raster(tmp_path / "d.tif", bands=["B08", "B04", "B03"]) as r:  # false colour, by name
        assert r.bands == [3, 2, 1]
    with io.open_raster(tmp_path / "d.tif", bands=["red", "green", "blue"]) as r:
        assert r.bands == [2, 1, 0]
    with pytest.raises(DglrsisError, match="no band named"):
        io.open_raster(tmp_path / "d.tif", bands=["swir", "red", "green"])


def test_no_metadata_four_bands_uses_1_2_3_with_a_notice(tmp_path):
    _tif(tmp_path / "n.tif", _bgrn())
    with io.open_raster(tmp_path / "n.tif") as r:
        assert r.bands == [0, 1, 2] and "1,2,3" in r.notice


def test_stretch_kinds_and_errors():
    sample = np.array([[0, 5000, 10000]], np.uint16)
    assert io.Stretch.parse("scale:10000").limits(sample, "uint16") == (0.0, 10000.0)
    assert io.Stretch.parse("minmax").limits(sample, "uint16") == (0.0, 10000.0)
    assert io.Stretch.parse("none").limits(sample, "uint16") is None
    assert io.Stretch.parse("auto").limits(sample, "uint8") is None
    lo, hi = io.Stretch.parse("percent:0,50").limits(sample, "uint16")
    assert (lo, hi) == (0.0, 5000.0)
    assert io.apply_stretch(np.array([[5000]], np.uint16), (0.0, 10000.0))[0, 0] == 128
    for bad in ("percent:90,10", "scale:0", "gamma", "percent:a,b"):
        with pytest.raises(DglrsisError, match="bad stretch"):
            io.Stretch.parse(bad)


def test_percentile_stretch_is_one_for_the_whole_scene(tmp_path):
    """A dark left half and a bright right half: a tile of either half is stretched as the full scene is
    (limits from the whole scene, never per tile), so tiled and untiled runs see the same pixels."""
    rng = np.random.default_rng(0)
    left = rng.integers(100, 400, (3, 64, 32))
    right = rng.integers(3000, 9000, (3, 64, 32))
    _tif(tmp_path / "s.tif", np.concatenate([left, right], 2).astype(np.uint16))
    with io.open_raster(tmp_path / "s.tif") as r:
        full = r.read()
        assert np.array_equal(r.read_window(32, 0, 64, 64), full[:, 32:])
        assert np.array_equal(r.read_window(0, 0, 32, 64), full[:, :32])
        assert full[:, :32].max() < 40 and full[:, 32:].min() > 40  # a per-tile stretch would fill 0–255


def _world_tif(path, image, nodata_cols=0):
    """A world scene as a 4-band uint16 GeoTIFF (B, G, R, NIR; 0–10000) with a nodata strip of 0s."""
    rgb = image.astype(np.uint16) * 39
    bands = np.stack([rgb[..., 2], rgb[..., 1], rgb[..., 0], rgb[..., 1]])
    bands[:, :, :nodata_cols] = 0
    interp = [ColorInterp.blue, ColorInterp.green, ColorInterp.red, ColorInterp.undefined]
    _tif(path, bands, colorinterp=interp, nodata=0)


def _cli(*args):
    return subprocess.run(
        [sys.executable, "-m", "dglrsis.cli", *args], capture_output=True, text=True, timeout=600
    )


@pytest.fixture(scope="module")
def world():
    return list(iter_scenes(seed=7, n=4, size=128))


def test_nodata_strip_is_never_classified_and_is_nodata_in_the_output(tmp_path, world):
    _world_tif(tmp_path / "s.tif", world[0].image, nodata_cols=40)
    out = _cli(
        "segment", str(tmp_path / "s.tif"), "--classes", ",".join(CLASSES), "--clip", "world-clip",
        "--out", str(tmp_path / "seg.tif"), "--scores", str(tmp_path / "s.json"),
    )  # fmt: skip
    assert out.returncode == 0, out.stderr
    with rasterio.open(tmp_path / "seg.tif") as ds:
        lab = ds.read(1)
        assert ds.nodata == 255 and ds.crs.to_string() == "EPSG:32633" and ds.transform == TRANSFORM
    assert (lab[:, :40] == 255).all() and (lab[:, 40:] != 255).all()
    rows = json.loads((tmp_path / "s.json").read_text())["masks"]
    assert all(r["box"][2] > 40 for r in rows)  # no proposal lies in the strip
    assert all(len(r["box_map"]) == 4 for r in rows)


def test_all_nodata_tiles_are_skipped(tmp_path, world):
    img = np.concatenate([world[0].image, world[1].image], 1)
    _world_tif(tmp_path / "w.tif", img, nodata_cols=128)
    pred = Predictor(PredictorConfig(clip="world-clip:random"))
    pred.set_raster(tmp_path / "w.tif", TileConfig(tile=64, overlap=8))
    assert pred.state.timings["skipped"] >= 2
    seg = pred.segment(CLASSES)
    assert (seg.labels[:, :128] == -1).all() and not seg.valid[:, :128].any()
    with pytest.raises(DglrsisError, match="tiles"):
        pred.refer("the ship")


def test_tiled_proposals_are_classified_from_the_scene_not_the_tile(tmp_path, world):
    """A 2×2 mosaic, tiles of 128 (overlap 32) vs one pass: every proposal found by both runs (the same mask)
    gets the same crop embedding — its context comes from the scene even where a tile border cuts through
    the crop — and the tiled proposals still cover every pixel."""
    img = np.concatenate(
        [
            np.concatenate([world[0].image, world[1].image], 1),
            np.concatenate([world[2].image, world[3].image], 1),
        ]
    )
    io.write_rgb_png(tmp_path / "m.png", img)
    pred = Predictor(PredictorConfig(clip="world-clip"))
    pred.set_raster(tmp_path / "m.png", TileConfig(tile=0))
    one = pred.state
    pred.set_raster(tmp_path / "m.png", TileConfig(tile=128, overlap=32))
    tiled = pred.state
    assert tiled.image is None and tiled.proposals.coverage().all()
    masks = [one.proposals.mask(i) for i in range(len(one.proposals))]
    matched, near_border = 0, 0
    for j in range(len(tiled.proposals)):
        mj = tiled.proposals.mask(j)
        for i, mi in enumerate(masks):
            inter = np.count_nonzero(mi & mj)
            if inter and inter == np.count_nonzero(mi) == np.count_nonzero(mj):
                assert float((one.crop_emb[i] - tiled.crop_emb[j]).abs().max()) < 1e-5
                matched += 1
                x0, y0, x1, y1 = tiled.proposals.boxes[j]
                near_border += max(x1 - x0, y1 - y0) * 1.5 / 2 > min(
                    abs((x0 + x1) / 2 - 128), abs((y0 + y1) / 2 - 128)
                )
    assert matched >= 5 and near_border >= 1, (matched, near_border)


def test_merge_reads_joins_overlapping_windows_without_reading_more_pixels():
    boxes = [(0, 0, 100, 100), (50, 0, 150, 100), (1000, 1000, 1100, 1100), (0, 60, 150, 100)]
    reads = merge_reads(boxes, cap=100_000)
    # the first two overlap by half: their union (15 000 px) costs less than both (20 000); the strip
    # inside that union joins for free; the far window stays alone (its union would read 1.2 M pixels)
    assert sorted((w, sorted(m)) for w, m in reads) == [
        ((0, 0, 150, 100), [0, 1, 3]),
        ((1000, 1000, 1100, 1100), [2]),
    ]
    for w, members in reads:  # every box inside its read
        for k in members:
            b = boxes[k]
            assert w[0] <= b[0] and w[1] <= b[1] and b[2] <= w[2] and b[3] <= w[3]
    # the cap: no read larger than it, even when joining would save pixels
    assert len(merge_reads(boxes[:2], cap=12_000)) == 2
    assert merge_reads([], cap=10) == []


def test_merge_across_borders_joins_one_region_cut_by_a_core_border():
    """Two halves of one flat region on either side of the border x=4 become one proposal; a touching region
    of another colour does not join."""
    a = np.zeros((8, 8), bool)
    a[:, :4] = True
    b = np.zeros((8, 8), bool)
    b[:4, 4:] = True
    c = np.zeros((8, 8), bool)
    c[4:, 4:] = True
    props = Proposals.from_masks(np.stack([a, b, c]), levels=[1, 1, 1])
    colours = np.array([[100, 100, 100], [104, 100, 100], [200, 0, 0]], float)
    merged = merge_across_borders(props, colours, ProposalConfig(), xs=[4], ys=[])
    areas = sorted(merged.areas.tolist())
    assert areas == [16, 48]  # a ∪ b, and c alone
