"""iSAID reader (OVSS): the raw devkit form or the mmseg-converted form.

Raw: ``root/{split}/images/P0000.png`` + ``root/{split}/Semantic_masks/images/P0000_instance_color_RGB.png``
(RGB colour labels; index = exact RGB match with :data:`ISAID_PALETTE`, any other colour → 255). The
devkit's extracted folders may also hold ``P0000_instance_id_RGB.png`` (instance ids) and the colour label
beside the image; both are skipped.
Converted: ``root/img_dir/{split}/*.png`` + ``root/ann_dir/{split}/*_instance_color_RGB.png`` (or
``*.png``), single-channel index labels (0–15, 255 = ignore). The form is detected from the folders;
each label is decoded by its content (mode RGB → palette lookup, L/P → indices). Images are read by
content: the converter writes BMP bytes under a ``.png`` name.

Background policy: ``include`` scores background as class 0; ``ignore`` maps ground-truth 0 → 255
(RSKT-Seg). Reports name the policy used.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np

from dglrsis.errors import DglrsisError

from .metrics import CHUNK_PIXELS

ISAID_NAMES = [
    "background",
    "ship",
    "storage_tank",
    "baseball_diamond",
    "tennis_court",
    "basketball_court",
    "Ground_Track_Field",
    "Bridge",
    "Large_Vehicle",
    "Small_Vehicle",
    "Helicopter",
    "Swimming_pool",
    "Roundabout",
    "Soccer_ball_field",
    "plane",
    "Harbor",
]
ISAID_PALETTE = [
    (0, 0, 0),
    (0, 0, 63),
    (0, 63, 63),
    (0, 63, 0),
    (0, 63, 127),
    (0, 63, 191),
    (0, 63, 255),
    (0, 127, 63),
    (0, 127, 127),
    (0, 0, 127),
    (0, 0, 191),
    (0, 0, 255),
    (0, 191, 127),
    (0, 127, 191),
    (0, 127, 255),
    (0, 100, 155),
]
OFF_PALETTE_SHARE = 0.01  # more off-palette pixels than this share (and the count below) → error
OFF_PALETTE_PIXELS = 16
IMAGE_EXTS = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff")
BACKGROUND_POLICIES = ("include", "ignore")
LABEL_SUFFIX = "_instance_color_RGB"
# Files the devkit keeps beside images and colour labels: instance-id maps (not images, not labels).
SKIP_SUFFIXES = (LABEL_SUFFIX, "_instance_id_RGB")


def query_names() -> list[str]:
    """The 15 foreground names as model queries: underscores → spaces, lower case (index k ↔ class k+1)."""
    return [n.replace("_", " ").lower() for n in ISAID_NAMES[1:]]


@lru_cache(maxsize=1)
def _palette_lut() -> np.ndarray:
    """2²⁴ uint8 look-up table: packed RGB (r << 16 | g << 8 | b) → iSAID index, 255 off the palette."""
    lut = np.full(1 << 24, 255, np.uint8)
    for idx, (r, g, b) in enumerate(ISAID_PALETTE):
        lut[r << 16 | g << 8 | b] = idx
    lut.flags.writeable = False
    return lut


def colours_to_index(rgb: np.ndarray) -> np.ndarray:
    """h×w×3 uint8 colours → h×w uint8 iSAID indices, 255 off the palette: one table look-up per pixel
    (no per-class masks)."""
    c = rgb.astype(np.uint32)
    return _palette_lut()[c[..., 0] << 16 | c[..., 1] << 8 | c[..., 2]]


def decode_label(path: str | Path) -> np.ndarray:
    """iSAID label file → H×W uint8 class indices (255 = ignore), decoded by content.

    RGB/RGBA labels: exact palette match, other colours → 255 (ignored) — unless more than
    :data:`OFF_PALETTE_SHARE` of the pixels (and more than :data:`OFF_PALETTE_PIXELS`) are off the palette:
    then the file is not an iSAID colour label and a :class:`DglrsisError` gives the count. L/P labels:
    the stored indices (a P image's palette is not applied). 16-bit/int labels: values > 255 → 255.
    Memory: the decoded file (Pillow's) and the H×W output; colours are looked up in strips of about
    :data:`CHUNK_PIXELS` pixels, so nothing else grows with the image.
    """
    from PIL import Image

    try:
        with Image.open(path) as im:
            if im.mode in ("L", "P"):
                return np.asarray(im).astype(np.uint8)
            if im.mode in ("I", "I;16", "I;16B", "F"):
                a = np.asarray(im).astype(np.int64)
                return np.where((a < 0) | (a > 255), 255, a).astype(np.uint8)
            rgb = im if im.mode == "RGB" else im.convert("RGB")
            rgb.load()
            w, h = rgb.size
            out = np.empty((h, w), np.uint8)
            off, example = 0, None
            rows = max(1, CHUNK_PIXELS // w)
            for y in range(0, h, rows):
                strip = np.asarray(rgb.crop((0, y, w, min(h, y + rows))))
                out[y : y + rows] = block = colours_to_index(strip)
                bad = block == 255
                n = int(np.count_nonzero(bad))
                if n and example is None:
                    by, bx = np.argwhere(bad)[0]
                    example = (tuple(int(v) for v in strip[by, bx]), int(bx), int(y + by))
                off += n
    except OSError as exc:
        raise DglrsisError(f"cannot read label {path}: {exc}") from None
    if off > max(OFF_PALETTE_PIXELS, OFF_PALETTE_SHARE * out.size):
        colour, x, y = example
        raise DglrsisError(
            f"{path}: {off} of {out.size} pixels ({100 * off / out.size:.1f} %) have colours off the iSAID "
            f"palette, e.g. {colour} at ({x}, {y}); is this an iSAID colour label?"
        )
    return out


def apply_background(label: np.ndarray, policy: str) -> np.ndarray:
    """``include``: unchanged; ``ignore``: ground-truth background (0) → 255."""
    if policy not in BACKGROUND_POLICIES:
        raise DglrsisError(f"background policy must be one of {BACKGROUND_POLICIES}, got {policy!r}")
    return np.where(label == 0, 255, label).astype(np.uint8) if policy == "ignore" else label


@dataclass
class IsaidSample:
    key: str  # image stem = prediction file name without .png
    image_path: Path  # image file (read by content)
    label_path: Path  # colour (raw) or index (converted) label
    form: str  # "raw" or "converted"
    background: str = "include"  # background policy applied by label()

    def label(self) -> np.ndarray:
        """H×W uint8 ground truth in iSAID index space after the background policy."""
        return apply_background(decode_label(self.label_path), self.background)


def detect_form(root: str | Path, split: str) -> tuple[str, Path, Path]:
    """(form, image folder, label folder) of an iSAID root for ``split``."""
    root = Path(root)
    if (root / split / "images").is_dir():
        labels = root / split / "Semantic_masks" / "images"
        return "raw", root / split / "images", labels if labels.is_dir() else root / split / "images"
    if (root / "img_dir" / split).is_dir():
        labels = root / "ann_dir" / split
        if not labels.is_dir():
            raise DglrsisError(f"{root}: img_dir/{split} exists but ann_dir/{split} does not")
        return "converted", root / "img_dir" / split, labels
    raise DglrsisError(f"{root} has neither {split}/images (raw iSAID) nor img_dir/{split} (converted iSAID)")


def isaid_samples(
    root: str | Path, split: str, background: str = "include", limit: int | None = None
) -> list[IsaidSample]:
    """Samples of ``split`` sorted by image name; every image needs a label (else a DglrsisError)."""
    apply_background(np.zeros(1, np.uint8), background)  # validates the policy
    form, imgs, labels = detect_form(root, split)
    out = []
    for p in sorted(imgs.iterdir()):
        if (
            p.suffix.lower() not in IMAGE_EXTS
            or any(p.stem.endswith(suf) for suf in SKIP_SUFFIXES)
            or not p.is_file()
        ):
            continue
        for cand in (labels / f"{p.stem}{LABEL_SUFFIX}.png", labels / f"{p.stem}.png"):
            if cand.is_file() and cand != p:
                out.append(IsaidSample(p.stem, p, cand, form, background))
                break
        else:
            raise DglrsisError(f"no label for {p.name} in {labels}")
        if limit is not None and len(out) >= limit:
            break
    if not out:
        if any(imgs.glob("*.zip")):
            raise DglrsisError(
                f"{imgs} holds the release's zip files: unzip them there (and Semantic_masks/*.zip into "
                f"Semantic_masks/), or cut patches with `dglrsis convert isaid --root {Path(root)} --out DIR`"
            )
        raise DglrsisError(f"no images in {imgs}")
    return out


# Names of converted patches (`dglrsis convert isaid`, mmseg's converter): P0000_{y0}_{y1}_{x0}_{x1}
PATCH_NAME = re.compile(r"_(\d+)_(\d+)_(\d+)_(\d+)$")


def is_patch(sample) -> bool:
    """Whether ``sample`` is a converted patch: converted form, patch name with y0 < y1 and x0 < x1."""
    m = PATCH_NAME.search(sample.key)
    if getattr(sample, "form", None) != "converted" or m is None:
        return False
    y0, y1, x0, x1 = (int(v) for v in m.groups())
    return y0 < y1 and x0 < x1


def input_kind(samples) -> str:
    """``patches`` when every sample is a converted patch (:func:`is_patch`), else ``raw`` (full images,
    whether colour-labelled release images or whole images in index form)."""
    return "patches" if samples and all(is_patch(s) for s in samples) else "raw"
