"""iSAID release → patch form (``img_dir/{split}``, ``ann_dir/{split}``), as mmsegmentation's iSAID
converter cuts it.

Input: the release's folder layout, zipped or extracted — ``ROOT/{split}/images/*.zip`` (members
``images/P0000.png``) and ``ROOT/{split}/Semantic_masks/*.zip`` (members
``images/P0000_instance_color_RGB.png``), or the same files extracted into ``ROOT/{split}/images/`` and
``ROOT/{split}/Semantic_masks/images/``. Zip members are read in place (nothing is extracted);
``*_instance_id_RGB.png`` files are skipped. Any of ``train``/``val``/``test`` may be present.

Algorithm (the converter's): a side shorter than the patch is padded at the bottom/right (images with 0,
labels with 255); windows start every ``patch - overlap`` pixels and a window running past the edge is
shifted back to end at the edge (:func:`windows`); colour labels become indices by exact palette match,
**any other colour → 0** (the converter's rule; the count is reported). ``test`` images (no labels) are
copied unpatched. Names: ``P0000_{y0}_{y1}_{x0}_{x1}.png`` and ``…_instance_color_RGB.png``.

Where we differ, on purpose: images are written as real PNG (the converter writes BMP bytes under
``.png``; pixels are identical); labels are single-channel ``L`` PNGs, which every Pillow reads back as the
indices (the converter's palette-less ``P`` PNGs read back wrong with Pillow ≥ 10.1); a side exactly
equal to the patch with the other shorter is padded too (the converter skips the pad there and slices
with a negative start).
"""

from __future__ import annotations

import io
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from dglrsis.errors import DglrsisError

from .isaid import ISAID_PALETTE, LABEL_SUFFIX

SPLITS = ("train", "val", "test")
SKIP = ("_instance_id_RGB",)


def windows(height: int, width: int, patch: int = 896, overlap: int = 384) -> list[tuple[int, int, int, int]]:
    """(y0, y1, x0, x1) of every patch of a ``height``×``width`` (already padded) image, deduplicated,
    in the converter's order (x outer, y inner)."""
    if not 0 <= overlap < patch:
        raise DglrsisError(f"overlap must be in [0, patch), got {overlap} for patch {patch}")
    out: list[tuple[int, int, int, int]] = []
    step = patch - overlap
    for x in range(0, width, step):
        x0, x1 = (x, x + patch) if x + patch <= width else (width - patch, width)
        for y in range(0, height, step):
            y0, y1 = (y, y + patch) if y + patch <= height else (height - patch, height)
            if (y0, y1, x0, x1) not in out:
                out.append((y0, y1, x0, x1))
    return out


def pad_to(arr: np.ndarray, patch: int, value: int) -> np.ndarray:
    """Pad bottom/right so both sides are at least ``patch``."""
    h, w = arr.shape[:2]
    if h >= patch and w >= patch:
        return arr
    widths = [(0, max(0, patch - h)), (0, max(0, patch - w))] + [(0, 0)] * (arr.ndim - 2)
    return np.pad(arr, widths, constant_values=value)


def colour_to_index(rgb: np.ndarray) -> tuple[np.ndarray, int]:
    """H×W×3 colour label → (H×W uint8 indices, number of off-palette pixels, which become 0)."""
    rgb = rgb.astype(np.int64)
    key = rgb[..., 0] << 16 | rgb[..., 1] << 8 | rgb[..., 2]
    out = np.zeros(key.shape, np.uint8)
    known = np.zeros(key.shape, bool)
    for idx, (r, g, b) in enumerate(ISAID_PALETTE):
        m = key == (r << 16 | g << 8 | b)
        out[m] = idx
        known |= m
    return out, int((~known).sum())


@dataclass
class Source:
    """One image (or label) file, on disk or inside a zip."""

    name: str  # file name, e.g. P0000.png
    path: Path  # the file, or the zip holding it
    member: str | None = None  # zip member name

    def read(self) -> bytes:
        if self.member is None:
            return self.path.read_bytes()
        with zipfile.ZipFile(self.path) as z:
            return z.read(self.member)

    def rgb(self) -> np.ndarray:
        from PIL import Image

        try:
            with Image.open(io.BytesIO(self.read())) as im:
                return np.asarray(im.convert("RGB"))
        except (OSError, zipfile.BadZipFile, KeyError) as exc:
            raise DglrsisError(f"cannot read {self}: {exc}") from None

    def __str__(self) -> str:
        return f"{self.path}:{self.member}" if self.member else str(self.path)


def _sources(folder: Path, zips: Path) -> dict[str, Source]:
    """PNG files in ``folder`` and PNG members of ``zips/*.zip``, by stem (instance-id maps skipped)."""
    out: dict[str, Source] = {}
    if folder.is_dir():
        for p in sorted(folder.glob("*.png")):
            out[p.stem] = Source(p.name, p)
    for z in sorted(zips.glob("*.zip")) if zips.is_dir() else []:
        try:
            with zipfile.ZipFile(z) as zf:
                names = zf.namelist()
        except zipfile.BadZipFile as exc:
            raise DglrsisError(f"{z} is not a readable zip: {exc}") from None
        for m in sorted(names):
            stem = Path(m).stem
            if m.lower().endswith(".png") and not m.endswith("/"):
                out.setdefault(stem, Source(Path(m).name, z, m))
    return {k: v for k, v in out.items() if not any(k.endswith(s) for s in SKIP)}


def split_sources(root: Path, split: str) -> list[tuple[Source, Source | None]]:
    """(image, colour label or None for test) pairs of one split, sorted by name."""
    images = {
        k: v
        for k, v in _sources(root / split / "images", root / split / "images").items()
        if not k.endswith(LABEL_SUFFIX)
    }
    labels = _sources(root / split / "Semantic_masks" / "images", root / split / "Semantic_masks")
    labels.update(
        {
            k: v
            for k, v in _sources(root / split / "images", root / split / "images").items()
            if k.endswith(LABEL_SUFFIX)
        }
    )
    pairs = []
    for stem in sorted(images):
        lab = labels.get(f"{stem}{LABEL_SUFFIX}")
        if lab is None and split != "test":
            raise DglrsisError(f"no colour label {stem}{LABEL_SUFFIX}.png for {images[stem]}")
        pairs.append((images[stem], lab))
    return pairs


def patches(
    image: np.ndarray, label: np.ndarray | None, patch: int = 896, overlap: int = 384
) -> Iterator[tuple[tuple[int, int, int, int], np.ndarray, np.ndarray | None]]:
    """((y0, y1, x0, x1), image patch, index-label patch) — ``label`` already in indices."""
    img = pad_to(image, patch, 0)
    lab = pad_to(label, patch, 255) if label is not None else None
    for y0, y1, x0, x1 in windows(img.shape[0], img.shape[1], patch, overlap):
        yield (y0, y1, x0, x1), img[y0:y1, x0:x1], None if lab is None else lab[y0:y1, x0:x1]


def convert_isaid(
    root, out, patch: int = 896, overlap: int = 384, splits=SPLITS, progress: bool = True
) -> dict:
    """Convert every present split of ``root`` into ``out``; returns counts per split."""
    from PIL import Image
    from tqdm import tqdm

    from dglrsis.io import atomic_path

    root, out = Path(root), Path(out)
    if patch < 1:
        raise DglrsisError(f"patch must be ≥ 1, got {patch}")
    windows(patch, patch, patch, overlap)  # validates the overlap
    present = [s for s in splits if (root / s).is_dir()]
    if not present:
        raise DglrsisError(f"{root} has none of {', '.join(splits)} (the iSAID release's split folders)")
    summary: dict = {}
    for split in present:
        pairs = split_sources(root, split)
        n_img = n_off = 0
        for img_src, lab_src in tqdm(pairs, desc=f"isaid {split}", disable=not progress):
            stem = Path(img_src.name).stem
            image = img_src.rgb()
            if lab_src is None:  # test: copied unpatched, as the converter does
                with atomic_path(out / "img_dir" / split / f"{stem}.png") as tmp:
                    Image.fromarray(image).save(tmp, format="PNG")
                n_img += 1
                continue
            rgb = lab_src.rgb()
            if rgb.shape != image.shape:
                raise DglrsisError(
                    f"{lab_src} is {rgb.shape[1]}×{rgb.shape[0]}, its image {image.shape[1]}×{image.shape[0]}"
                )
            label, off = colour_to_index(rgb)
            n_off += off
            for (y0, y1, x0, x1), ip, lp in patches(image, label, patch, overlap):
                name = f"{stem}_{y0}_{y1}_{x0}_{x1}"
                with atomic_path(out / "img_dir" / split / f"{name}.png") as tmp:
                    Image.fromarray(np.ascontiguousarray(ip)).save(tmp, format="PNG")
                with atomic_path(out / "ann_dir" / split / f"{name}{LABEL_SUFFIX}.png") as tmp:
                    Image.fromarray(np.ascontiguousarray(lp), mode="L").save(tmp, format="PNG")
                n_img += 1
        summary[split] = {"images": len(pairs), "patches": n_img, "off_palette_pixels": n_off}
    return summary
