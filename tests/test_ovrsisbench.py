"""OVRSISBench-V1 sets in RSKT-Seg's published layout (its register_*.py folders and extensions), a tiny
fixture per set; pairing as detectron2's load_sem_seg (stem intersection); LoveDA's no-data value."""

import json

import numpy as np
import pytest
from PIL import Image

from dglrsis.cli import main
from dglrsis.errors import DglrsisError
from dglrsis.eval import ovrsisbench

# set → (image folder, label folder, image extension, number of classes in the bundled vocabulary),
# written out from RSKT-Seg's register_*.py (split "all").
PUBLISHED = {
    "dlrsd": ("DLRSD/imgs", "DLRSD/D2masks", ".jpg", 17),
    "isaid": ("iSAID/imgs", "iSAID/D2masks", ".png", 15),
    "loveda": ("LoveDA/images_png", "LoveDA/masks_png", ".png", 7),
    "potsdam": ("Potsdam/imgs", "Potsdam/D2masks", ".png", 6),
    "uavid": ("uavid/Images", "uavid/Labels", ".png", 8),
    "udd5": ("UDD5/all/src", "UDD5/all/gt", ".JPG", 5),
    "vaihingen": ("Vaihingen/imgs", "Vaihingen/D2masks", ".png", 6),
    "vdd": ("VDD/src", "VDD/gt", ".JPG", 7),
}


def make_set(root, name, n=3, extra_image=True):
    img_dir, lab_dir, ext, k = PUBLISHED[name]
    (root / img_dir).mkdir(parents=True)
    (root / lab_dir).mkdir(parents=True)
    rng = np.random.default_rng(len(name))
    labels = {}
    for i in range(n):
        stem = f"{name}_{i:03d}"
        img = Image.fromarray(rng.integers(0, 255, (8, 10, 3), dtype=np.uint8))
        img.save(root / img_dir / f"{stem}{ext}", format="JPEG" if ext.lower() == ".jpg" else "PNG")
        hi = k + 1 if name == "loveda" else k  # LoveDA stores 0 = no-data, 1..7
        lab = rng.integers(0, hi, (8, 10)).astype(np.uint8)
        lab[0, 0] = 255
        Image.fromarray(lab, mode="L").save(root / lab_dir / f"{stem}.png")
        labels[stem] = lab
    if extra_image:  # an image without a mask: skipped, as load_sem_seg's intersection
        Image.fromarray(np.zeros((8, 10, 3), np.uint8)).save(
            root / img_dir / f"zz_unlabelled{ext}", format="JPEG" if ext.lower() == ".jpg" else "PNG"
        )
    return labels


@pytest.mark.parametrize("name", sorted(PUBLISHED))
def test_published_layout_per_set(tmp_path, name):
    labels = make_set(tmp_path, name)
    samples, unpaired = ovrsisbench.published_samples(tmp_path, name)
    assert [s.key for s in samples] == sorted(labels) and unpaired == 1
    names = ovrsisbench.class_names(ovrsisbench.bundled_class_file(name))
    assert len(names) == PUBLISHED[name][3] and not any(n.startswith("#") for n in names)
    for s in samples:
        got, raw = s.label(), labels[s.key]
        if name == "loveda":  # 0 = no-data → ignored, 1..7 → 0..6
            want = np.where(raw == 0, 255, np.where(raw == 255, 255, raw.astype(np.int64) - 1))
        else:
            want = raw
        np.testing.assert_array_equal(got, want)
        assert got[got != 255].max() < len(names)


def test_dlrsd_and_isaid_splits(tmp_path):
    (tmp_path / "DLRSD_split" / "val" / "imgs").mkdir(parents=True)
    (tmp_path / "DLRSD_split" / "val" / "D2masks").mkdir(parents=True)
    Image.fromarray(np.zeros((4, 4, 3), np.uint8)).save(tmp_path / "DLRSD_split/val/imgs/a.jpg")
    Image.fromarray(np.ones((4, 4), np.uint8), mode="L").save(tmp_path / "DLRSD_split/val/D2masks/a.png")
    samples, _ = ovrsisbench.published_samples(tmp_path, "dlrsd", "val")
    assert [s.key for s in samples] == ["a"]
    with pytest.raises(DglrsisError, match="splits all"):
        ovrsisbench.published_samples(tmp_path, "vdd", "val")


def test_cli_ovrsisbench_set_with_bundled_classes(tmp_path, capsys):
    labels = make_set(tmp_path / "datasets", "udd5")
    preds = tmp_path / "p"
    preds.mkdir()
    for stem, lab in labels.items():
        Image.fromarray(np.where(lab == 255, 0, lab).astype(np.uint8)).save(preds / f"{stem}.png")
    out = tmp_path / "r.json"
    argv = ["eval", "ovss", "--dataset", "ovrsisbench", "--set", "udd5", "--root", str(tmp_path / "datasets")]
    assert main([*argv, "--predictions", str(preds), "--out", str(out), "--quiet"]) == 0
    r = json.loads(out.read_text())
    assert r["mIoU"] == 100.0 and r["n"] == 3 and list(r["per_class"])[0] == "vegetation"
    assert "1 udd5 files without a partner" in capsys.readouterr().err


def test_label_values_beyond_the_classes_are_an_error(tmp_path, capsys):
    """LoveDA read without its value map against a 7-class file: class 7 used to be dropped silently."""
    make_set(tmp_path / "d", "loveda", extra_image=False)
    ann = tmp_path / "d" / "label" / "test"
    img = tmp_path / "d" / "image" / "test"
    img.mkdir(parents=True)
    ann.mkdir(parents=True)
    for p in sorted((tmp_path / "d" / "LoveDA" / "masks_png").glob("*.png")):
        lab = np.asarray(Image.open(p)).copy()
        lab[1, 1] = 7
        Image.fromarray(lab, mode="L").save(ann / p.name)
        Image.fromarray(np.zeros((8, 10, 3), np.uint8)).save(img / p.name)
    preds = tmp_path / "p"
    preds.mkdir()
    for p in sorted(img.glob("*.png")):
        Image.fromarray(np.zeros((8, 10), np.uint8)).save(preds / p.name)
    vocab = str(ovrsisbench.bundled_class_file("loveda"))
    argv = ["eval", "ovss", "--dataset", "ovrsisbench", "--root", str(tmp_path / "d"), "--split", "test"]
    assert main([*argv, "--classes-file", vocab, "--predictions", str(preds), "--quiet"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "class 7" in err[0] and "7 classes" in err[0]
