"""GIS outputs: file modes and transactions, vector layers read back with pyogrio, self-describing
label GeoTIFFs read back with rasterio, legend and colour-bar pictures."""

import json
import os
import stat

import numpy as np
import pyogrio
import pytest
import rasterio
import shapely
from rasterio.crs import CRS
from rasterio.transform import from_origin

from dglrsis import export, io
from dglrsis.errors import DglrsisError
from dglrsis.io import RasterMeta

PIXEL = 0.5  # metres
META = RasterMeta(
    "in.tif", "TIFF", 90, 70, 3, "uint8", "EPSG:32633", tuple(from_origin(5e5, 4e6, PIXEL, PIXEL))[:6]
)
NAMES = ["ship", "storage tank", "harbor"]


def _labels(h=70, w=90):
    lab = np.full((h, w), -1, np.int32)
    lab[5:20, 5:30] = 0
    lab[55:60, 2:6] = 0  # a second ship region
    lab[30:50, 40:70] = 1
    lab[35:40, 45:50] = -1  # a hole in the tank
    lab[60:68, 60:88] = 2
    return lab


@pytest.fixture
def umask022():
    old = os.umask(0o022)
    yield
    os.umask(old)


def _mode(p):
    return stat.S_IMODE(os.stat(p).st_mode)


def test_new_files_follow_umask_and_existing_keep_mode(tmp_path, umask022):
    io.write_json(tmp_path / "a.json", {"x": 1})
    export.write_label_raster(tmp_path / "l.tif", _labels(), NAMES, io.default_palette(4), META)
    for name in ("a.json", "l.tif", "l.qml", "l.tif.aux.xml"):
        assert _mode(tmp_path / name) == 0o644, name
    os.chmod(tmp_path / "a.json", 0o600)
    io.write_json(tmp_path / "a.json", {"x": 2})
    assert _mode(tmp_path / "a.json") == 0o600 and json.loads((tmp_path / "a.json").read_text()) == {"x": 2}
    os.umask(0o077)
    io.write_json(tmp_path / "b.json", {})
    assert _mode(tmp_path / "b.json") == 0o600


def test_read_only_output_refused_and_kept(tmp_path):
    p = tmp_path / "ro.json"
    p.write_text("keep")
    os.chmod(p, 0o444)
    with pytest.raises(DglrsisError, match="read-only"):
        io.write_json(p, {})
    assert p.read_text() == "keep" and [f.name for f in tmp_path.iterdir()] == ["ro.json"]


def test_output_resolving_to_input_refused(tmp_path):
    src = tmp_path / "img.png"
    src.write_bytes(b"x")
    os.symlink(src, tmp_path / "link.png")
    os.link(src, tmp_path / "hard.png")
    for out in (src, tmp_path / "sub" / ".." / "img.png", tmp_path / "link.png", tmp_path / "hard.png"):
        with pytest.raises(DglrsisError, match="is the input"):
            io.check_outputs([out], [src])
    with pytest.raises(DglrsisError, match="same file"):
        io.check_outputs([tmp_path / "a.png", tmp_path / "a.png"], [src])
    io.check_outputs([tmp_path / "a.png", tmp_path / "b.json"], [src])


def test_transaction_all_or_none(tmp_path):
    with pytest.raises(RuntimeError), io.transaction():
        io.write_json(tmp_path / "a.json", {})
        assert not (tmp_path / "a.json").exists()  # deferred
        raise RuntimeError("second output failed")
    assert list(tmp_path.iterdir()) == []  # no output, no temporary file
    with io.transaction():
        io.write_json(tmp_path / "a.json", {})
        io.write_text(tmp_path / "b.txt", "b")
    assert sorted(f.name for f in tmp_path.iterdir()) == ["a.json", "b.txt"]


def _read(path):
    meta, _, geoms, fields = pyogrio.raw.read(path)
    cols = dict(zip(meta["fields"], fields, strict=True))
    return meta, shapely.from_wkb(geoms), cols


@pytest.mark.parametrize("simplify", [None, 1.0])
def test_gpkg_crs_areas_attributes(tmp_path, simplify):
    lab = _labels()
    rows = [{"class": "ship", "score": 0.8, "box": [5, 5, 30, 20]}]
    geoms, cols = export.label_features(lab, NAMES, META, mask_rows=rows, simplify=simplify)
    export.write_vectors(tmp_path / "v.gpkg", geoms, cols, META)
    meta, geoms, cols = _read(tmp_path / "v.gpkg")
    assert CRS.from_user_input(meta["crs"]) == CRS.from_user_input(META.crs)
    assert set(cols) == {"class", "score", "area_m2"}
    assert list(cols["class"]).count("ship") == 2  # one polygon per connected region
    for k, name in enumerate(NAMES):
        want = (lab == k).sum() * PIXEL * PIXEL
        sel = cols["class"] == name
        assert abs(cols["area_m2"][sel].sum() - want) <= 0.01 * want
        assert abs(sum(g.area for g in geoms[sel]) - want) <= 0.01 * want
    ship = cols["class"] == "ship"
    assert sorted(np.nan_to_num(cols["score"][ship], nan=-1)) == [-1, 0.8]  # no overlapping mask → null


def test_score_is_mean_confidence_and_geojson_is_wgs84(tmp_path):
    lab = _labels()
    conf = np.where(lab == 1, 0.25, 0.0)
    conf[30:40, 40:70] = 0.75
    geoms, cols = export.label_features(lab, NAMES, META, confidence=conf)
    tank = cols["class"].index("storage tank")
    assert cols["score"][tank] == pytest.approx(conf[lab == 1].mean())
    export.write_vectors(tmp_path / "v.geojson", geoms, cols, META)
    doc = json.loads((tmp_path / "v.geojson").read_text())
    lon, lat = np.array(doc["features"][0]["geometry"]["coordinates"][0][0]).T
    assert 14.9 < lon.min() and lon.max() < 15.1 and 36.0 < lat.min() < 36.3  # UTM 33N near (15°E, 36°N)
    assert "crs" not in doc or "4326" in json.dumps(doc["crs"])


def test_geographic_area_and_refer_feature(tmp_path):
    deg = 1e-4
    meta = RasterMeta(
        "g.tif", "TIFF", 20, 20, 3, "uint8", "EPSG:4326", tuple(from_origin(10.0, 1.0, deg, deg))[:6]
    )
    mask = np.zeros((20, 20), bool)
    mask[2:8, 2:8] = mask[12:18, 12:18] = True
    geoms, cols = export.mask_feature(mask, meta, {"class": "ship", "expression": "the ship", "score": 0.7})
    export.write_vectors(tmp_path / "r.gpkg", geoms, cols, meta)
    _, geoms, cols = _read(tmp_path / "r.gpkg")
    assert len(geoms) == 1 and cols["expression"][0] == "the ship" and geoms[0].geom_type == "MultiPolygon"
    side = deg * np.pi / 180 * 6_371_008.8  # ≈ 11.1 m near the equator
    assert cols["area_m2"][0] == pytest.approx(72 * side * side, rel=0.01)


def test_label_geotiff_describes_itself(tmp_path):
    h, w = 1100, 700  # larger than one 512-px tile: overviews are built
    lab = np.full((h, w), -1, np.int32)
    lab[100:600, 50:400] = 2
    lab[700:900, 300:650] = 0
    valid = np.ones((h, w), bool)
    valid[:, :10] = False
    meta = RasterMeta("in.tif", "TIFF", w, h, 3, "uint8", "EPSG:32633", META.transform)
    pal = io.default_palette(4)
    files = export.write_label_raster(tmp_path / "l.tif", lab, NAMES, pal, meta, valid=valid)
    assert [f.name for f in files] == ["l.tif", "l.qml", "l.tif.aux.xml"]
    with rasterio.open(tmp_path / "l.tif") as ds:
        data = ds.read(1)
        assert ds.crs == CRS.from_epsg(32633) and tuple(ds.transform)[:6] == meta.transform
        assert ds.nodata == 255 and (data[:, :10] == 255).all()
        assert ds.compression.name.lower() == "deflate" and ds.profile["tiled"]
        assert ds.overviews(1), "no overviews"
        assert ds.colormap(1)[3][:3] == tuple(pal[3])
        assert ds.descriptions == ("class",) and ds.tags(1)["CLASS_3"] == "harbor"
        assert json.loads(ds.tags(1)["CLASSES"]) == ["background", *NAMES]
        assert (data[100:600, 50:400] == 3).all() and (data[:100, 10:] == 0).all()
    qml = (tmp_path / "l.qml").read_text()
    assert 'label="storage tank"' in qml and 'value="2"' in qml
    aux = (tmp_path / "l.tif.aux.xml").read_text()
    assert "<Category>harbor</Category>" in aux and "GDALRasterAttributeTable" in aux


def test_legend_and_colour_bar_pictures():
    img = np.full((70, 90, 3), 100, np.uint8)
    pal = io.default_palette(4)
    out = export.legend_overlay(img, _labels(), NAMES, pal)
    assert out.shape[0] == 70 and out.shape[1] > 90
    panel = out[:, 90:].reshape(-1, 3)
    for k in (1, 2, 3):  # every present class has its swatch in the legend
        assert (panel == pal[k]).all(1).any()
    lab = _labels()
    lab[lab == 2] = -1
    panel = export.legend_overlay(img, lab, NAMES, pal)[:, 90:].reshape(-1, 3)
    assert not (panel == pal[3]).all(1).any()  # absent classes are not listed
    cam = np.zeros((70, 90))
    cam[:, 45:] = 1.0
    fig = export.cam_figure(img, cam)
    assert fig.shape[1] > 90
    hot, cold = io.heatmap(np.ones((1, 1)))[0, 0], io.heatmap(np.zeros((1, 1)))[0, 0]
    assert tuple(fig[35, 80]) == tuple(np.round(0.5 * 100 + 0.5 * hot.astype(float)).astype(np.uint8))
    bar = fig[:, 90:].reshape(-1, 3)
    assert (bar == hot).all(1).any() and (bar == cold).all(1).any()


# ------------------------------------------------------------------------------------------ CLI
def _scene_tif(path):
    rng = np.random.default_rng(3)
    img = np.zeros((96, 96, 3), np.uint8)
    img[:] = (90, 110, 80)
    img[10:40, 10:60] = (200, 200, 210)
    img[55:85, 50:90] = (40, 60, 150)
    img = np.clip(img + rng.integers(-8, 9, img.shape), 0, 255).astype(np.uint8)
    with rasterio.open(
        path, "w", driver="GTiff", width=96, height=96, count=3, dtype="uint8", crs="EPSG:32633",
        transform=from_origin(5e5, 4e6, PIXEL, PIXEL),
    ) as dst:  # fmt: skip
        dst.write(np.moveaxis(img, -1, 0))
    return path


def test_segment_cli_writes_gis_outputs(tmp_path, capsys, umask022):
    from dglrsis.cli import main

    src = _scene_tif(tmp_path / "in.tif")
    o = tmp_path / "o"
    o.mkdir()  # output files go into an existing folder
    args = [
        "segment",
        str(src),
        "--classes",
        "ship,harbor",
        "--clip",
        "world-clip",
        "--out",
        str(o / "l.tif"),
    ]
    args += ["--vectors", str(o / "v.gpkg"), "--overlay", str(o / "ov.png"), "--scores", str(o / "s.json")]
    assert main(args) == 0
    with rasterio.open(o / "l.tif") as ds:
        lab = ds.read(1).astype(int) - 1
        assert ds.crs == CRS.from_epsg(32633) and ds.tags(1)["CLASS_2"] == "harbor"
    meta, geoms, cols = _read(o / "v.gpkg")
    assert CRS.from_user_input(meta["crs"]) == CRS.from_epsg(32633)
    for k, name in enumerate(["ship", "harbor"]):
        want = (lab == k).sum() * PIXEL * PIXEL
        got = sum(g.area for g in geoms[cols["class"] == name])
        assert abs(got - want) <= 0.01 * max(want, 1e-9)
    assert np.isfinite(cols["score"]).all()  # every region meets a mask of its class
    assert all(_mode(p) == 0o644 for p in o.iterdir())


@pytest.mark.parametrize(
    "cmd,msg",
    [
        (["refer", "IMG", "the ship", "--out", "IMG"], "is the input"),
        (["segment", "IMG", "--classes", "ship", "--overlay", "IMG"], "--overlay"),
        (["segment", "IMG", "--classes", "ship", "--out", "RO"], "read-only"),
        (["segment", "IMG", "--classes", "ship", "--vectors", "v.shp"], "--vectors"),
        (["segment", "IMG", "--classes", "ship", "--out", "o.png", "--scores", "o.png"], "--scores"),
        (["refer", "IMG", "the ship", "--cam", "c.png", "--overlay", "c.png"], "same file"),
        (["segment", "IMG", "--classes", "ship", "--vectors", "v.gpkg", "--simplify", "-1"], "--simplify"),
    ],
)
def test_bad_outputs_refused_before_any_model(tmp_path, capsys, cmd, msg):
    from dglrsis.cli import main

    src = _scene_tif(tmp_path / "in.tif")
    ro = tmp_path / "ro.tif"
    ro.write_bytes(b"keep")
    os.chmod(ro, 0o444)
    before = {p.name: p.read_bytes() for p in tmp_path.iterdir()}
    subst = {"IMG": str(src), "RO": str(ro)}
    argv = [subst.get(a, str(tmp_path / a) if a.endswith((".png", ".shp", ".gpkg")) else a) for a in cmd]
    assert main([*argv, "--clip", "no-such-model"]) == 2  # a model would fail: checks come first
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and msg in err[0]
    assert {p.name: p.read_bytes() for p in tmp_path.iterdir()} == before  # input unchanged, nothing new
