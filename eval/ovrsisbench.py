"""OVRSISBench-V1 sets (DLRSD, iSAID, LoveDA, Potsdam, UAVid, UDD5, Vaihingen, VDD): single-channel index
PNG labels, 255 = ignore.

Layout (flexible): images under ``root/{img_dir|images|image}/{split}``, labels under
``root/{ann_dir|annotations|labels|label}/{split}``, matched by file stem (a label stem may carry an
``_instance_color_RGB`` or ``_label`` suffix). Class names come from a class file: one class per line,
comma-separated synonyms, the first being the canonical name (SegEarth-OV convention).
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


@dataclass
class IndexSample:
    key: str  # image stem = prediction file name without .png
    image_path: Path  # image file (read by content)
    label_path: Path  # single-channel index PNG, 255 = ignore

    def label(self) -> np.ndarray:
        """H×W uint8 class indices (255 = ignore)."""
        from PIL import Image

        try:
            with Image.open(self.label_path) as im:
                if im.mode not in ("L", "P"):
                    raise DglrsisError(
                        f"{self.label_path} is a {im.mode} image; expected a single-channel index label"
                    )
                return np.asarray(im).astype(np.uint8)
        except OSError as exc:
            raise DglrsisError(f"cannot read label {self.label_path}: {exc}") from None


def read_class_file(path: str | Path) -> list[list[str]]:
    """Class file → one list of names per class (first = canonical); blank lines are skipped."""
    try:
        lines = Path(path).read_text(encoding="utf-8").splitlines()
    except OSError as exc:
        raise DglrsisError(f"cannot read class file {path}: {exc.strerror or exc}") from None
    classes = [[n.strip() for n in line.split(",") if n.strip()] for line in lines if line.strip()]
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
