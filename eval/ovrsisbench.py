"""OVRSISBench-V1 sets (DLRSD, iSAID, LoveDA, Potsdam, UAVid, UDD5, Vaihingen, VDD): single-channel index
PNG labels, 255 = ignore.

Published layout (``--set NAME``): the folders RSKT-Seg's ``register_*.py`` read under its ``datasets/``
root (:data:`LAYOUTS`), e.g. ``DLRSD/imgs/*.jpg`` + ``DLRSD/D2masks/*.png`` (split ``all``) or
``DLRSD_split/{train,val}/{imgs,D2masks}``; ``VDD/src/*.JPG`` + ``VDD/gt/*.png``. ``--root`` is that
``datasets/`` folder. Images and labels are paired by file stem as detectron2's ``load_sem_seg`` pairs
them: images with the set's extension, labels ``.png``, the intersection of stems (unpaired files are
counted in a note). LoveDA's masks keep the release's values (0 = no-data, 1 = background … 7 =
agriculture): RSKT-Seg scores "no-data" as an 8th class; we ignore it (0 → 255) and shift 1…7 → 0…6 to
the 7-class vocabulary.

Generic layout (no ``--set``): images under ``root/{img_dir|images|image}/{split}``, labels under
``root/{ann_dir|annotations|labels|label}/{split}``, matched by file stem (a label stem may carry an
``_instance_color_RGB`` or ``_label`` suffix). Class names come from a class file: one class per line,
comma-separated synonyms, the first being the canonical name, ``#`` lines are comments (SegEarth-OV
convention); the bundled ``prompts/vocab/<set>.txt`` is the default with ``--set``.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from dglrsis.errors import DglrsisError

IMAGE_DIRS = ("img_dir", "images", "image")
LABEL_DIRS = ("ann_dir", "annotations", "labels", "label")
IMAGE_EXTS = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff")
LABEL_SUFFIXES = ("_instance_color_RGB", "_label", "_labelTrainIds", "_gt")


# set → split → (image folder, label folder, image extension), as RSKT-Seg registers them.
LAYOUTS: dict[str, dict[str, tuple[str, str, str]]] = {
    "dlrsd": {
        "all": ("DLRSD/imgs", "DLRSD/D2masks", ".jpg"),
        "train": ("DLRSD_split/train/imgs", "DLRSD_split/train/D2masks", ".jpg"),
        "val": ("DLRSD_split/val/imgs", "DLRSD_split/val/D2masks", ".jpg"),
    },
    "isaid": {
        "all": ("iSAID/imgs", "iSAID/D2masks", ".png"),
        "train": ("iSAID_split/train/imgs", "iSAID_split/train/D2masks", ".png"),
        "val": ("iSAID_split/val/imgs", "iSAID_split/val/D2masks", ".png"),
    },
    "loveda": {"all": ("LoveDA/images_png", "LoveDA/masks_png", ".png")},
    "potsdam": {"all": ("Potsdam/imgs", "Potsdam/D2masks", ".png")},
    "uavid": {"all": ("uavid/Images", "uavid/Labels", ".png")},
    "udd5": {"all": ("UDD5/all/src", "UDD5/all/gt", ".JPG")},
    "vaihingen": {"all": ("Vaihingen/imgs", "Vaihingen/D2masks", ".png")},
    "vdd": {"all": ("VDD/src", "VDD/gt", ".JPG")},
}
# Label value maps (stored value → index in the bundled vocabulary); absent = identity.
LABEL_MAPS = {"loveda": {0: 255, **{k: k - 1 for k in range(1, 8)}}}


@dataclass
class IndexSample:
    key: str  # image stem = prediction file name without .png
    image_path: Path  # image file (read by content)
    label_path: Path  # single-channel index PNG, 255 = ignore
    dataset: str | None = None  # OVRSISBench set name when read from its published layout

    def label(self) -> np.ndarray:
        """H×W uint8 class indices (255 = ignore), after the set's :data:`LABEL_MAPS` entry."""
        from PIL import Image

        try:
            with Image.open(self.label_path) as im:
                if im.mode not in ("L", "P"):
                    raise DglrsisError(
                        f"{self.label_path} is a {im.mode} image; expected a single-channel index label"
                    )
                lab = np.asarray(im).astype(np.uint8)
        except OSError as exc:
            raise DglrsisError(f"cannot read label {self.label_path}: {exc}") from None
        mapping = LABEL_MAPS.get(self.dataset or "")
        if mapping:
            lut = np.arange(256, dtype=np.uint8)
            for k, v in mapping.items():
                lut[k] = v
            lab = lut[lab]
        return lab


def read_class_file(path: str | Path) -> list[list[str]]:
    """Class file → one list of names per class (first = canonical); blank lines are skipped."""
    try:
        lines = Path(path).read_text(encoding="utf-8").splitlines()
    except OSError as exc:
        raise DglrsisError(f"cannot read class file {path}: {exc.strerror or exc}") from None
    classes = [
        [n.strip() for n in line.split(",") if n.strip()]
        for line in lines
        if line.strip() and not line.lstrip().startswith("#")
    ]
    if not classes:
        raise DglrsisError(f"class file {path} lists no classes")
    return classes


def class_names(path: str | Path) -> list[str]:
    """Canonical class names (first synonym of each line) of a class file."""
    return [c[0] for c in read_class_file(path)]


def _first_dir(root: Path, names: tuple[str, ...], split: str) -> Path | None:
    return next((root / d / split for d in names if (root / d / split).is_dir()), None)


def _label_stem(p: Path) -> str:
    for suf in LABEL_SUFFIXES:
        if p.stem.endswith(suf):
            return p.stem[: -len(suf)]
    return p.stem


def ovrsis_samples(root: str | Path, split: str, limit: int | None = None) -> list[IndexSample]:
    """Image/label pairs of ``split`` sorted by image name; images without a label are an error."""
    root = Path(root)
    imgs, labs = _first_dir(root, IMAGE_DIRS, split), _first_dir(root, LABEL_DIRS, split)
    if imgs is None or labs is None:
        raise DglrsisError(
            f"{root}: expected {{{'|'.join(IMAGE_DIRS)}}}/{split} and {{{'|'.join(LABEL_DIRS)}}}/{split}"
        )
    by_stem = {_label_stem(p): p for p in labs.iterdir() if p.suffix.lower() == ".png"}
    out = []
    for p in sorted(imgs.iterdir()):
        if p.suffix.lower() not in IMAGE_EXTS:
            continue
        if p.stem not in by_stem:
            raise DglrsisError(f"no label for {p.name} in {labs}")
        out.append(IndexSample(p.stem, p, by_stem[p.stem]))
        if limit is not None and len(out) >= limit:
            break
    if not out:
        raise DglrsisError(f"no images in {imgs}")
    return out


def bundled_class_file(dataset: str) -> Path:
    """``prompts/vocab/<dataset>.txt`` shipped with the package."""
    from dglrsis import prompts

    path = Path(prompts.__file__).parent / "vocab" / f"{dataset}.txt"
    if not path.is_file():
        raise DglrsisError(f"no bundled class file for {dataset!r}; pass --classes-file")
    return path


def published_samples(root: str | Path, dataset: str, split: str = "all", limit: int | None = None):
    """Samples of an OVRSISBench set in RSKT-Seg's layout (see module docstring); ``root`` is the folder
    holding the set folders (RSKT-Seg's ``datasets/``). Returns (samples, unpaired file count)."""
    if dataset not in LAYOUTS:
        raise DglrsisError(f"unknown OVRSISBench set {dataset!r}; use one of {', '.join(LAYOUTS)}")
    if split not in LAYOUTS[dataset]:
        raise DglrsisError(f"{dataset} has splits {', '.join(LAYOUTS[dataset])}, not {split!r}")
    root = Path(root)
    img_rel, lab_rel, ext = LAYOUTS[dataset][split]
    imgs, labs = root / img_rel, root / lab_rel
    if not imgs.is_dir() or not labs.is_dir():
        raise DglrsisError(f"{root}: {dataset} {split} expects {img_rel}/*{ext} and {lab_rel}/*.png")
    images = {p.name[: -len(ext)]: p for p in imgs.iterdir() if p.name.endswith(ext) and p.is_file()}
    labels = {p.name[:-4]: p for p in labs.iterdir() if p.name.endswith(".png") and p.is_file()}
    stems = sorted(set(images) & set(labels))
    if not stems:
        raise DglrsisError(f"no image/label pairs in {imgs} (*{ext}) and {labs} (*.png)")
    unpaired = len(images) + len(labels) - 2 * len(stems)
    stems = stems[:limit] if limit is not None else stems
    return [IndexSample(k, images[k], labels[k], dataset) for k in stems], unpaired
