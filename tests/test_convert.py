"""`dglrsis convert isaid` against a re-statement of mmsegmentation's iSAID converter (its pad branches,
window loops, names and colour→index rule), on world scenes packed as the release (zips) and extracted."""

import io
import zipfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from dglrsis.cli import main
from dglrsis.errors import DglrsisError
from dglrsis.eval import isaid
from dglrsis.eval.isaid_convert import convert_isaid

PALETTE = {c: i for i, c in enumerate(isaid.ISAID_PALETTE)}


def _impad(arr, shape, value):
    """mmcv.impad(arr, shape=(H, W), pad_val): pad at the bottom/right."""
    out = np.full(tuple(shape) + arr.shape[2:], value, arr.dtype)
    out[: arr.shape[0], : arr.shape[1]] = arr
    return out


def _converter_pad(arr, ph, pw, value):
    h, w = arr.shape[:2]
    if h < ph and w > pw:
        return _impad(arr, (ph, w), value)
    if h > ph and w < pw:
        return _impad(arr, (h, pw), value)
    if h < ph and w < pw:
        return _impad(arr, (ph, pw), value)
    return arr


def reference_convert(stem, rgb_image, rgb_label, ph=896, pw=896, overlap=384) -> dict:
    """mmseg tools/dataset_converters/isaid.py slide_crop_image/_label, as a name → (image, label) dict."""
    lab = np.zeros(rgb_label.shape[:2], np.uint8)  # unknown colours stay 0
    for c, i in PALETTE.items():
        lab[np.all(rgb_label == np.array(c).reshape(1, 1, 3), axis=2)] = i
    img, lab = _converter_pad(rgb_image, ph, pw, 0), _converter_pad(lab, ph, pw, 255)
    h, w = img.shape[:2]
    out = {}
    for x in range(0, w, pw - overlap):
        for y in range(0, h, ph - overlap):
            xs, xe, ys, ye = x, x + pw, y, y + ph
            if xe > w:
                xs, xe = xs - (xe - w), w
            if ye > h:
                ys, ye = ys - (ye - h), h
            out[f"{stem}_{ys}_{ye}_{xs}_{xe}"] = (img[ys:ye, xs:xe], lab[ys:ye, xs:xe])
    return out


def _scenes():
    """World scenes cut to shapes that hit every pad branch of the converter (patch 128 / overlap 48)."""
    from dglrsis.eval.world import iter_scenes

    pal = np.array(isaid.ISAID_PALETTE, np.uint8)
    shapes = [(256, 200), (100, 256), (90, 110), (200, 100)]
    out = []
    for i, (scene, (h, w)) in enumerate(zip(iter_scenes(11, len(shapes), 256, "isaid"), shapes, strict=True)):
        rgb = pal[scene.class_map][:h, :w].copy()
        if i == 0:
            rgb[:3, :3] = (9, 9, 9)  # off the palette: the converter makes it 0
        out.append((f"P{i:04d}", scene.image[:h, :w].copy(), rgb))
    return out


def _png(arr) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, format="PNG")
    return buf.getvalue()


def make_release(root: Path, scenes, zipped: bool) -> Path:
    for split, chunk in (("train", scenes[:2]), ("val", scenes[2:])):
        imgs = {f"images/{s}.png": _png(im) for s, im, _ in chunk}
        labs = {f"images/{s}_instance_color_RGB.png": _png(lab) for s, _, lab in chunk}
        labs.update({f"images/{s}_instance_id_RGB.png": _png(lab[..., ::-1].copy()) for s, _, lab in chunk})
        for sub, files in (("images", imgs), ("Semantic_masks", labs)):
            d = root / split / sub
            d.mkdir(parents=True)
            if zipped:
                with zipfile.ZipFile(d / "part1.zip", "w") as z:
                    for name, data in files.items():
                        z.writestr(name, data)
            else:
                target = d if sub == "images" else d / "images"
                target.mkdir(exist_ok=True)
                for name, data in files.items():
                    (target / Path(name).name).write_bytes(data)
    (root / "test" / "images").mkdir(parents=True)
    with zipfile.ZipFile(root / "test" / "images" / "part1.zip", "w") as z:
        z.writestr("images/P0100.png", _png(scenes[0][1]))
    return root


@pytest.mark.parametrize("zipped", [True, False])
def test_patches_equal_the_converter_pixel_for_pixel(tmp_path, zipped):
    scenes = _scenes()
    root = make_release(tmp_path / "release", scenes, zipped)
    summary = convert_isaid(root, tmp_path / "out", patch=128, overlap=48, progress=False)
    assert summary["train"]["off_palette_pixels"] == 9 and summary["test"]["patches"] == 1
    for split, chunk in (("train", scenes[:2]), ("val", scenes[2:])):
        ref = {}
        for stem, im, lab in chunk:
            ref.update(reference_convert(stem, im, lab, 128, 128, 48))
        got_imgs = sorted(p.stem for p in (tmp_path / "out" / "img_dir" / split).glob("*.png"))
        assert got_imgs == sorted(ref)
        for name, (im, lab) in ref.items():
            with Image.open(tmp_path / "out" / "img_dir" / split / f"{name}.png") as g:
                assert g.format == "PNG"
                np.testing.assert_array_equal(np.asarray(g.convert("RGB")), im)
            with Image.open(tmp_path / "out" / "ann_dir" / split / f"{name}_instance_color_RGB.png") as g:
                assert g.mode == "L"  # indices, whatever Pillow reads it
                np.testing.assert_array_equal(np.asarray(g), lab)
    with Image.open(tmp_path / "out" / "img_dir" / "test" / "P0100.png") as g:
        np.testing.assert_array_equal(np.asarray(g.convert("RGB")), scenes[0][1])
    # the converted form is read by the evaluation reader, labels decoded unchanged
    samples = isaid.isaid_samples(tmp_path / "out", "val")
    assert [s.form for s in samples] == ["converted"] * len(samples)
    for s in samples:
        ref_lab = reference_convert(
            s.key.split("_")[0],
            *next((im, lab) for st, im, lab in scenes if st == s.key.split("_")[0]),
            128,
            128,
            48,
        )[s.key][1]
        np.testing.assert_array_equal(s.label(), ref_lab)


def test_default_896_384_on_a_large_label(tmp_path):
    """The converter's defaults on a 1000×1900 image: windows at x 0/512/1004, y 0/104."""
    rng = np.random.default_rng(0)
    pal = np.array(isaid.ISAID_PALETTE, np.uint8)
    lab = pal[rng.integers(0, 16, (1000, 1900))]
    im = rng.integers(0, 255, (1000, 1900, 3), dtype=np.uint8)
    make_release(tmp_path / "r", [("P0007", im, lab)] * 2 + [("P0008", im[:500], lab[:500])], zipped=True)
    convert_isaid(tmp_path / "r", tmp_path / "o", splits=("val",), progress=False)
    ref = reference_convert("P0008", im[:500], lab[:500])
    names = sorted(p.stem for p in (tmp_path / "o" / "img_dir" / "val").glob("*.png"))
    assert names == sorted(ref) == ["P0008_0_896_0_896", "P0008_0_896_1004_1900", "P0008_0_896_512_1408"]
    for name, (_, ref_lab) in ref.items():
        with Image.open(tmp_path / "o" / "ann_dir" / "val" / f"{name}_instance_color_RGB.png") as g:
            np.testing.assert_array_equal(np.asarray(g), ref_lab)  # 255 in the padded rows


def test_cli_convert(tmp_path, capsys):
    root = make_release(tmp_path / "r", _scenes(), zipped=True)
    argv = ["convert", "isaid", "--root", str(root), "--out", str(tmp_path / "o"), "--quiet"]
    assert main([*argv, "--patch", "128", "--overlap", "48"]) == 0
    assert "off-palette" in capsys.readouterr().out
    assert main([*argv, "--overlap", "900"]) == 2
    assert main(["convert", "isaid", "--root", str(tmp_path / "none"), "--out", str(tmp_path / "o2")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 2 and "overlap" in err[0] and "train" in err[1]


def test_reader_points_a_zipped_release_at_convert(tmp_path):
    root = make_release(tmp_path / "r", _scenes(), zipped=True)
    with pytest.raises(DglrsisError, match="dglrsis convert isaid"):
        isaid.isaid_samples(root, "val")
