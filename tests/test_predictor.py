"""Predictor: cached image state, segment/refer behaviour, bad inputs, the segment/refer CLI."""

import json
import subprocess
import sys

import numpy as np
import pytest

import dglrsis.state as state_mod
from dglrsis.errors import DglrsisError
from dglrsis.eval.world import iter_scenes
from dglrsis.masks import Proposals
from dglrsis.predictor import Predictor, PredictorConfig

CLASSES = ["ship", "storage tank", "harbor", "plane", "small vehicle"]


@pytest.fixture(scope="module")
def scene():
    return next(iter_scenes(seed=4242, n=1, size=160, kind="isaid"))


@pytest.fixture(scope="module")
def pred(scene):
    p = Predictor(PredictorConfig(clip="world-clip:random"))
    p.set_image(scene.image)
    return p


def test_segment_shapes_and_values(pred, scene):
    seg = pred.segment(CLASSES, background="none")
    assert seg.labels.shape == scene.image.shape[:2] and seg.labels.dtype == np.int32
    assert seg.labels.min() >= 0 and seg.labels.max() < len(CLASSES)  # background "none": all labelled
    assert seg.probs.shape == (len(pred.state.proposals), len(CLASSES))
    assert np.allclose(seg.probs.sum(1), 1, atol=1e-5)
    rows = seg.mask_scores()
    assert len(rows) == len(pred.state.proposals) and {"class", "score", "area", "box"} <= set(rows[0])


def test_set_image_is_cached_across_queries(scene, monkeypatch):
    calls = {"props": 0}
    real = state_mod.generate_proposals

    def counting(*a, **k):
        calls["props"] += 1
        return real(*a, **k)

    monkeypatch.setattr(state_mod, "generate_proposals", counting)
    p = Predictor(PredictorConfig(clip="world-clip:random"))
    before = scene.image.copy()
    p.set_image(scene.image)
    emb = p.state.crop_emb.clone()
    p.segment(CLASSES)
    p.segment(["ship", "harbor"])
    p.refer("the ship on the left")
    assert calls["props"] == 1
    assert (p.state.crop_emb == emb).all()
    assert np.array_equal(scene.image, before)


def test_background_policies(pred):
    strict = pred.segment(CLASSES, background="threshold:0.99")
    assert (strict.labels == -1).mean() > 0.5  # random weights: nothing is that confident
    none = pred.segment(CLASSES, background="none")
    lax = pred.segment(CLASSES, background="prompt:0.999")  # no proposal is that surely land cover
    assert np.array_equal(lax.labels, none.labels) and lax.probs.shape[1] == len(CLASSES)
    eager = pred.segment(CLASSES, background="prompt:0.001")  # every proposal is background
    assert (eager.labels == -1).all()
    either = pred.segment(CLASSES, background="prompt:0.001+threshold:0.99")
    assert (either.labels == -1).all()
    for bad in (
        "threshold:2",
        "threshold:x",
        "sometimes",
        "none:1",
        "threshold",
        "prompt:0",
        "prompt+prompt",
    ):
        with pytest.raises(DglrsisError):
            pred.segment(CLASSES, background=bad)


@pytest.mark.parametrize(
    "classes, ok",
    [
        ([], False),
        ("", False),
        (["ship", "Ship"], False),
        (["ship"] * 2, False),
        ([f"class {i}" for i in range(1001)], False),
        ([f"thing number {i}" for i in range(500)], True),  # 500 classes: allowed (documented limit 1000)
        (["zorblax", "ship"], True),  # unknown names are fine: open vocabulary
    ],
)
def test_class_list_validation(pred, classes, ok):
    if ok:
        seg = pred.segment(classes)
        assert seg.labels.max() < len(classes)
    else:
        with pytest.raises(DglrsisError):
            pred.segment(classes)


def test_bad_images():
    p = Predictor(PredictorConfig(clip="world-clip:random"))
    with pytest.raises(DglrsisError):
        p.set_image(np.zeros((1, 1, 3), np.uint8))
    with pytest.raises(DglrsisError):
        p.set_image(np.zeros((10, 10), np.uint8))
    with pytest.raises(DglrsisError):
        p.segment(["ship"])  # no image set


def test_image_without_proposals_is_all_background(monkeypatch):
    def none(image, cfg, sam=None):
        h, w = image.shape[:2]
        return Proposals.empty(h, w, "sam")

    monkeypatch.setattr(state_mod, "generate_proposals", none)
    p = Predictor(PredictorConfig(clip="world-clip:random"))
    p.set_image(np.full((32, 32, 3), 90, np.uint8))
    assert (p.segment(["ship"]).labels == -1).all()
    assert not p.refer("the ship").mask.any()


def test_refer_returns_one_instance_mask(pred, scene):
    ref = pred.refer("the storage tank on the left")
    assert ref.mask.shape == scene.image.shape[:2] and ref.mask.dtype == bool and ref.mask.any()
    assert ref.cam.shape == scene.image.shape[:2] and 0 <= ref.cam.min() and ref.cam.max() <= 1
    assert len(ref.selected) == 1
    assert json.dumps(ref.to_json())


def _cli(*args, cwd=None):
    return subprocess.run(
        [sys.executable, "-m", "dglrsis.cli", *args], capture_output=True, text=True, timeout=300, cwd=cwd
    )


def test_segment_and_refer_cli(tmp_path, scene):
    from dglrsis.io import write_rgb_png

    img = tmp_path / "scene.png"
    write_rgb_png(img, scene.image)
    out = _cli(
        "segment",
        str(img),
        "--classes",
        "ship,storage tank,harbor",
        "--clip",
        "world-clip:random",
        "--out",
        str(tmp_path / "seg.png"),
        "--overlay",
        str(tmp_path / "ov.png"),
        "--scores",
        str(tmp_path / "s.json"),
    )
    assert out.returncode == 0, out.stderr
    data = json.loads((tmp_path / "s.json").read_text())
    assert data["classes"] == ["ship", "storage tank", "harbor"] and data["masks"]
    from PIL import Image

    lab = np.asarray(Image.open(tmp_path / "seg.png"))
    assert lab.shape == scene.image.shape[:2] and lab.max() <= 3
    out = _cli(
        "refer",
        str(img),
        "the storage tank",
        "--clip",
        "world-clip:random",
        "--min-confidence",
        "0",  # random weights are never confident
        "--scales",
        "1.0",
        "--out",
        str(tmp_path / "m.png"),
        "--cam",
        str(tmp_path / "cam.png"),
    )
    assert out.returncode == 0, out.stderr
    assert set(np.unique(np.asarray(Image.open(tmp_path / "m.png")))) <= {0, 255}


def test_segment_cli_agreement_with_ground_truth(tmp_path, scene):
    """--gt: pixel accuracy of the written label map against the iSAID label, classes matched by name."""
    from PIL import Image

    from dglrsis.eval.isaid import ISAID_NAMES
    from dglrsis.io import write_rgb_png

    img, gt = tmp_path / "scene.png", tmp_path / "gt.png"
    write_rgb_png(img, scene.image)
    Image.fromarray(scene.class_map).save(gt)  # index form (0 = background, 1..15 iSAID classes)
    args = ["--classes", "ship,oil tank", "--clip", "world-clip:random", "--scores", str(tmp_path / "s.json")]
    out = _cli("segment", str(img), *args, "--out", str(tmp_path / "seg.png"), "--gt", str(gt))
    assert out.returncode == 0, out.stderr
    lab = np.asarray(Image.open(tmp_path / "seg.png")).astype(int)
    names = [n.lower() for n in ISAID_NAMES]
    want = np.select(
        [scene.class_map == names.index("ship"), scene.class_map == names.index("storage_tank")], [1, 2], 0
    )
    acc = 100 * (lab == want).mean()
    data = json.loads((tmp_path / "s.json").read_text())["ground_truth"]
    assert data["pACC"] == pytest.approx(acc, abs=1e-3) and "background" in data["per_class"]
    assert f"pixel accuracy {acc:.1f}%" in out.stdout
    Image.fromarray(scene.class_map[:50]).save(gt)  # wrong size: one error line, nothing written
    (tmp_path / "s.json").unlink()
    out = _cli("segment", str(img), *args, "--gt", str(gt))
    assert out.returncode == 2 and "ground truth" in out.stderr and len(out.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "s.json").exists()


@pytest.mark.parametrize(
    "args",
    [
        ["--classes", ""],
        ["--classes", "ship,ship"],
        ["--classes", "ship", "--background", "maybe"],
        ["--classes", "ship", "--clip", "ViT-B-16:no_such_tag"],
    ],
)
def test_segment_cli_bad_input_one_line_exit_2_no_output(tmp_path, scene, args):
    from dglrsis.io import write_rgb_png

    img = tmp_path / "scene.png"
    write_rgb_png(img, scene.image)
    out = _cli("segment", str(img), *args, "--out", str(tmp_path / "seg.png"))
    assert out.returncode == 2, out.stderr
    assert len(out.stderr.strip().splitlines()) == 1 and "Traceback" not in out.stderr
    assert not (tmp_path / "seg.png").exists()
    assert [p.name for p in tmp_path.iterdir()] == ["scene.png"]  # no temp file left either


def test_tiled_segment_geotiff_keeps_georeference(tmp_path, scene):
    import rasterio
    from rasterio.transform import from_origin

    src = tmp_path / "big.tif"
    img = np.concatenate([scene.image, scene.image], 1)  # 160×320
    with rasterio.open(
        src,
        "w",
        driver="GTiff",
        width=img.shape[1],
        height=img.shape[0],
        count=3,
        dtype="uint8",
        crs="EPSG:32633",
        transform=from_origin(500000, 4000000, 0.5, 0.5),
    ) as dst:
        dst.write(np.moveaxis(img, -1, 0))
    out = _cli(
        "segment",
        str(src),
        "--classes",
        "ship,storage tank",
        "--clip",
        "world-clip:random",
        "--tile",
        "96",
        "--overlap",
        "16",
        "--background",
        "none",
        "--out",
        str(tmp_path / "seg.tif"),
    )
    assert out.returncode == 0, out.stderr
    with rasterio.open(tmp_path / "seg.tif") as ds:
        assert ds.crs.to_string() == "EPSG:32633" and ds.transform == from_origin(500000, 4000000, 0.5, 0.5)
        lab = ds.read(1)
    assert lab.shape == img.shape[:2] and set(np.unique(lab)) <= {1, 2}
