"""File I/O: atomic writes (and, below, raster reading/writing).

Every file the toolkit writes goes through :func:`atomic_path`: the content is written to a temporary
file in the destination folder and renamed into place only when complete, so an error never leaves a
half-written output. Inside :func:`transaction` the renames wait until the whole block succeeds, so the
outputs of one command (or one input of a batch) appear all together or not at all. A new file gets
the mode the umask allows (0644 under umask 022), a replaced file keeps its own mode, and a read-only
existing output is refused rather than replaced.
"""

from __future__ import annotations

import contextlib
import contextvars
import json
import os
import stat
import tempfile
import threading
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .errors import DglrsisError

_UMASK_LOCK = threading.Lock()
_PENDING: contextvars.ContextVar[list | None] = contextvars.ContextVar("dglrsis_pending", default=None)


def current_umask() -> int:
    """The process umask (read by setting and restoring it, under a lock)."""
    with _UMASK_LOCK:
        mask = os.umask(0o022)
        os.umask(mask)
    return mask


def check_writable(path: str | os.PathLike, new_folders: bool = True) -> Path:
    """Raise DglrsisError unless ``path`` can be created or replaced: not a folder, not read-only, in a
    writable folder — which must already exist unless ``new_folders`` (then the nearest existing
    ancestor must be a writable folder). Returns the path."""
    path = Path(path)
    if path.is_dir():
        raise DglrsisError(f"output {path} is a directory")
    if path.exists() and (not os.access(path, os.W_OK) or not os.stat(path).st_mode & 0o222):
        raise DglrsisError(f"output {path} exists and is read-only; refusing to replace it")
    parent = path.parent if str(path.parent) else Path(".")
    if not new_folders and not parent.exists():
        raise DglrsisError(f"cannot write {path}: folder {parent} does not exist (create it first)")
    existing = next((p for p in [parent, *parent.parents] if p.exists()), Path("."))
    if not existing.is_dir():
        raise DglrsisError(f"cannot write {path}: {existing} is not a directory")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise DglrsisError(f"cannot write {path}: {existing} is not writable")
    return path


def check_outputs(
    outputs: Iterable[str | os.PathLike], inputs: Iterable[str | os.PathLike] = (), new_folders: bool = False
) -> None:
    """Validate output paths before any work: each writable (:func:`check_writable`; a user-named file
    goes into an existing folder unless ``new_folders``), none resolving to an input (same path, symlink
    or hard link) and no two the same file."""
    ins = [Path(p) for p in inputs]
    seen: dict[Path, Path] = {}
    for out in (Path(p) for p in outputs):
        real = out.resolve()
        for src in ins:
            if real == src.resolve() or (out.exists() and src.exists() and os.path.samefile(out, src)):
                raise DglrsisError(f"output {out} is the input {src}; choose another output path")
        check_writable(out, new_folders)
        if real in seen:
            raise DglrsisError(f"two outputs are the same file: {seen[real]} and {out}")
        seen[real] = out


def _finish(tmp: Path, path: Path) -> None:
    """Give ``tmp`` the mode ``path`` should have and rename it onto ``path``."""
    try:
        mode = stat.S_IMODE(os.stat(path).st_mode)  # an existing output keeps its permissions
    except FileNotFoundError:
        mode = 0o666 & ~current_umask()
    os.chmod(tmp, mode)
    os.replace(tmp, path)


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike, suffix: str | None = None) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; rename it onto ``path`` if the block succeeds.

    ``suffix`` defaults to the destination's suffix, so writers that pick a format from the
    extension (PIL, rasterio) still see it. On error the temporary file is removed. Inside
    :func:`transaction` the rename is deferred to the end of the transaction. A read-only existing
    ``path`` is refused (DglrsisError) before anything is written.
    """
    path = check_writable(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(
        prefix=f".{path.name}.part-", suffix=suffix if suffix is not None else path.suffix, dir=path.parent
    )
    os.close(fd)
    tmp = Path(tmp)
    pending = _PENDING.get()
    try:
        yield tmp
        if pending is None:
            _finish(tmp, path)
        else:
            pending.append((tmp, path))
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
        raise


@contextlib.contextmanager
def transaction() -> Iterator[None]:
    """Defer every :func:`atomic_path` rename inside the block to its end: all outputs or none.

    If the block fails, every temporary file is removed and no output is touched. The renames at
    the end are checked first (each destination still replaceable), then done in order.
    """
    if _PENDING.get() is not None:  # nested: the outer transaction commits
        yield
        return
    pending: list[tuple[Path, Path]] = []
    token = _PENDING.set(pending)
    try:
        yield
        for _, path in pending:
            check_writable(path)
        for tmp, path in pending:
            _finish(tmp, path)
    finally:
        _PENDING.reset(token)
        for tmp, _ in pending:
            with contextlib.suppress(FileNotFoundError):
                tmp.unlink()


def write_json(path: str | os.PathLike, obj: Any, indent: int = 2) -> None:
    """Write ``obj`` as JSON atomically."""
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(obj, indent=indent, sort_keys=False) + "\n")


def write_text(path: str | os.PathLike, text: str) -> None:
    """Write text atomically."""
    with atomic_path(path) as tmp:
        tmp.write_text(text)


def write_bytes(path: str | os.PathLike, data: bytes) -> None:
    """Write raw bytes atomically."""
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)


# ============================================================================================ rasters
# Reading is by content (magic bytes), never by extension. Models get H×W×3 uint8 RGB in the order red,
# green, blue: the bands are chosen from the file's colour interpretation or band descriptions
# (:func:`select_bands`), and data with more than 8 bits is mapped to 8 bits by one stretch computed
# once over the whole scene (:class:`Stretch`), so a tile and the whole image see the same colours.
# Nodata (the file's value, ``nodata=``), internal masks and alpha mark pixels as invalid
# (:meth:`RasterReader.read_valid`); they are never classified.


MAX_PIXELS = 40_000 * 40_000  # larger rasters are refused as likely decompression bombs
MAX_IN_MEMORY = 12_000 * 12_000  # read_image refuses more; use open_raster + tiling for larger rasters
_MAGIC = [
    (b"\x89PNG\r\n\x1a\n", "PNG"),
    (b"\xff\xd8\xff", "JPEG"),
    (b"BM", "BMP"),
    (b"II*\x00", "TIFF"),
    (b"MM\x00*", "TIFF"),
    (b"II+\x00", "TIFF"),
    (b"MM\x00+", "TIFF"),
    (b"GIF8", "GIF"),
]
# Band names read as red / green / blue: colour interpretation, plain words, and the band numbers of
# Sentinel-2 (B04/B03/B02) and Landsat 8–9 (B4/B3/B2). Landsat 4–7 number their bands differently
# (red = B3): name those bands with --bands 3,2,1.
BAND_ALIASES = {
    "red": ("red", "r", "b04", "b4", "sr_b4"),
    "green": ("green", "g", "b03", "b3", "sr_b3"),
    "blue": ("blue", "b", "b02", "b2", "sr_b2"),
}
STRETCH_SAMPLE_SIDE = 2048  # the whole-scene stretch is computed on a decimated read of at most this side


@dataclass
class RasterMeta:
    path: str
    format: str  # PNG | JPEG | BMP | TIFF | GIF (from the file's content)
    width: int
    height: int
    count: int  # number of bands
    dtype: str  # numpy dtype name of the stored data
    crs: str | None = None  # CRS as WKT/EPSG string, TIFF only
    transform: tuple | None = None  # affine (a, b, c, d, e, f), TIFF only
    nodata: float | None = None
    profile: dict = field(default_factory=dict, repr=False)  # rasterio profile for writing
    band_names: list = field(
        default_factory=list
    )  # per band: colour interpretation / description, lower case


@dataclass
class Raster:
    array: np.ndarray  # H×W×3 uint8 RGB for the models
    meta: RasterMeta
    valid: np.ndarray | None = None  # H×W bool, False = nodata / masked / transparent (None: all valid)


def sniff_format(path: str | os.PathLike) -> str:
    """Image format from the first bytes of the file; DglrsisError for missing/empty/unknown files."""
    p = Path(path)
    if not p.exists():
        raise DglrsisError(f"{p}: no such file")
    if p.is_dir():
        raise DglrsisError(f"{p} is a directory, not an image")
    try:
        with open(p, "rb") as f:
            head = f.read(16)
    except OSError as exc:
        raise DglrsisError(f"cannot read {p}: {exc.strerror or exc}") from None
    if not head:
        raise DglrsisError(f"{p} is empty (0 bytes)")
    for magic, fmt in _MAGIC:
        if head.startswith(magic):
            return fmt
    raise DglrsisError(f"{p} is not a supported image (PNG, JPEG, BMP, TIFF/GeoTIFF, GIF)")


def _check_size(path, width: int, height: int) -> None:
    if width <= 0 or height <= 0:
        raise DglrsisError(f"{path} has an invalid size {width}×{height}")
    if width * height > MAX_PIXELS:
        raise DglrsisError(
            f"{path} claims {width}×{height} pixels, more than the {MAX_PIXELS:,} allowed "
            f"(a decompression bomb or a mistake)"
        )


def _read_pil(path, fmt: str) -> tuple[np.ndarray, RasterMeta]:
    from PIL import Image

    try:
        with Image.open(path) as im:
            _check_size(path, *im.size)
            if im.mode == "P":
                im = im.convert("RGBA" if "transparency" in im.info else "RGB")
            im.load()
            mode = im.mode
            arr = np.asarray(im)
    except DglrsisError:
        raise
    except Image.DecompressionBombError:
        raise DglrsisError(f"{path} is larger than Pillow allows (a decompression bomb?)") from None
    except (OSError, SyntaxError, ValueError) as exc:
        raise DglrsisError(f"{path} is truncated or corrupt ({fmt}: {exc})") from None
    if arr.ndim == 2:
        arr = arr[:, :, None]
    if arr.dtype == np.int32:  # PIL 'I' mode for 16-bit PNGs
        arr = arr.astype(np.uint16) if arr.min() >= 0 and arr.max() < 65536 else arr
    h, w, c = arr.shape
    names = {
        "RGB": ["red", "green", "blue"],
        "RGBA": ["red", "green", "blue", "alpha"],
        "LA": ["gray", "alpha"],
    }
    band_names = names.get(mode, ["gray"] if c == 1 else [""] * c)
    return arr, RasterMeta(str(path), fmt, w, h, c, arr.dtype.name, band_names=band_names)


def _tiff_band_names(ds) -> list[str]:
    """Per band: its colour interpretation when it says red/green/blue/alpha, else its description."""
    out = []
    for ci, desc in zip(ds.colorinterp, ds.descriptions, strict=True):
        name = ci.name.lower()
        out.append(name if name in ("red", "green", "blue", "alpha") else (desc or "").strip().lower())
    return out


@dataclass(frozen=True)
class Stretch:
    """How stored values become 0–255 (the same for every band, so a grey surface stays grey).

    ``percent`` (LO, HI): the LO-th and HI-th percentiles of the valid pixels of the three bands, computed
    once over the whole scene from a decimated read; ``minmax``: their minimum and maximum; ``scale`` (S):
    value ÷ S × 255 (e.g. S = 10000 for reflectance × 10⁴, 1 for reflectance in [0, 1]); ``none``: values
    taken as they are (8-bit data). ``auto`` (the default): none for uint8 data, percent 2–98 otherwise.
    """

    kind: str = "auto"  # auto | percent | minmax | scale | none
    low: float = 2.0  # percent: lower percentile
    high: float = 98.0  # percent: upper percentile; scale: the divisor S

    @classmethod
    def parse(cls, spec) -> Stretch:
        """``auto`` | ``none`` | ``minmax`` | ``percent[:LO,HI]`` | ``scale:S``; (LO, HI) = percent."""
        if isinstance(spec, Stretch):
            return spec
        if isinstance(spec, (tuple, list)) and len(spec) == 2:
            return cls._percent(float(spec[0]), float(spec[1]), spec)
        text = str(spec).strip().lower()
        kind, _, value = text.partition(":")
        if kind in ("auto", "none", "minmax") and not value:
            return cls(kind)
        try:
            if kind == "percent":
                lo, hi = (float(v) for v in value.split(",")) if value else (2.0, 98.0)
                return cls._percent(lo, hi, spec)
            if kind == "scale" and float(value) > 0:
                return cls("scale", 0.0, float(value))
        except ValueError:
            pass
        raise DglrsisError(
            f"bad stretch {spec!r}: use auto, none, minmax, percent[:LO,HI] (e.g. percent:2,98) or scale:S"
        )

    @classmethod
    def _percent(cls, lo: float, hi: float, spec) -> Stretch:
        if not 0 <= lo < hi <= 100:
            raise DglrsisError(f"bad stretch {spec!r}: percentiles need 0 ≤ LO < HI ≤ 100")
        return cls("percent", lo, hi)

    def limits(self, sample: np.ndarray, dtype: str) -> tuple[float, float] | None:
        """(low, high) stored values mapped to 0 and 255 from ``sample`` (valid pixels × bands), or None
        when values are used as they are."""
        kind = self.kind
        if kind == "auto":
            kind = "none" if dtype == "uint8" else "percent"
        if kind == "none":
            return None
        if kind == "scale":
            return 0.0, float(self.high)
        v = sample.ravel()
        v = v[np.isfinite(v)] if v.dtype.kind == "f" else v
        if not v.size:
            return 0.0, 1.0
        if kind == "minmax":
            lo, hi = float(v.min()), float(v.max())
        else:
            lo, hi = (float(x) for x in np.percentile(v, (self.low, self.high)))
        return lo, (hi if hi > lo else lo + 1.0)


def apply_stretch(data: np.ndarray, limits: tuple[float, float] | None) -> np.ndarray:
    """Linear map of every band from [low, high] to [0, 255], clipped → uint8 (None: clip only)."""
    if limits is None:
        return np.ascontiguousarray(
            np.clip(data, 0, 255).astype(np.uint8) if data.dtype != np.uint8 else data
        )
    lo, hi = limits
    out = (data.astype(np.float32) - lo) * np.float32(255.0 / (hi - lo))
    return np.clip(np.nan_to_num(out), 0, 255).round().astype(np.uint8)


class RasterReader:
    """Windowed access to a raster (rasterio for TIFF, PIL for the rest). Use as a context manager.

    ``bands``: None (automatic, see :func:`select_bands`), 1-based numbers, band names (``red,green,blue``,
    ``B04,B03,B02``) or "all" (raw values of every band). ``stretch``: see :class:`Stretch`. ``nodata``:
    a stored value marking invalid pixels (overrides the file's). ``notice``: a line describing a guessed
    band choice (None when the file said which bands are red, green and blue).
    """

    def __init__(self, path, bands=None, stretch="auto", nodata: float | None = None):
        self.path, self.fmt = str(path), sniff_format(path)
        self._ds, self._arr = None, None
        if self.fmt == "TIFF":
            import rasterio

            try:
                self._ds = rasterio.open(self.path)
            except Exception as exc:  # noqa: BLE001 - rasterio raises its own error types
                raise DglrsisError(f"{path} is truncated or corrupt (TIFF: {exc})") from None
            ds = self._ds
            _check_size(path, ds.width, ds.height)
            crs = ds.crs.to_string() if ds.crs else None
            tr = tuple(ds.transform)[:6] if ds.crs or not ds.transform.is_identity else None
            self.meta = RasterMeta(
                self.path,
                "TIFF",
                ds.width,
                ds.height,
                ds.count,
                ds.dtypes[0],
                crs,
                tr,
                ds.nodata,
                dict(ds.profile),
                _tiff_band_names(ds),
            )
        else:
            self._arr, self.meta = _read_pil(path, self.fmt)
        if nodata is not None:
            self.meta.nodata = float(nodata)
        self._nodata_override = nodata is not None
        self.raw = isinstance(bands, str) and bands == "all"
        self.notice = None
        if self.raw:
            self.bands = list(range(self.meta.count))
        else:
            self.bands, self.notice = select_bands(self.meta.count, bands, self.path, self.meta.band_names)
        self.stretch = Stretch.parse(stretch)
        self.limits = None
        if not self.raw:
            sample, valid = self.overview()
            self.limits = self.stretch.limits(sample[valid], self.meta.dtype)

    # -- reading ---------------------------------------------------------------------------------------
    def overview(self, max_side: int = STRETCH_SAMPLE_SIDE) -> tuple[np.ndarray, np.ndarray]:
        """A decimated read of the selected bands over the whole scene: (h×w×3 native dtype, h×w valid)."""
        if self._ds is None:
            step = max(1, int(np.ceil(max(self.meta.width, self.meta.height) / max_side)))
            data = self._arr[::step, ::step][:, :, self.bands]
            return data, self._valid_pil(data, self._arr[::step, ::step])
        scale = max(1, int(np.ceil(max(self.meta.width, self.meta.height) / max_side)))
        shape = (max(1, self.meta.height // scale), max(1, self.meta.width // scale))
        try:
            data = self._ds.read([b + 1 for b in self.bands], out_shape=(len(self.bands), *shape))
            data = np.moveaxis(data, 0, -1)
            if self._nodata_override:
                return data, ~np.all(data == self.meta.nodata, axis=-1)
            return data, self._ds.dataset_mask(out_shape=shape) > 0
        except Exception as exc:  # noqa: BLE001 - rasterio raises its own error types
            raise DglrsisError(f"{self.path} is truncated or corrupt (TIFF: {exc})") from None

    def _raw_window(self, x0: int, y0: int, x1: int, y1: int) -> np.ndarray:
        if self._ds is None:
            return self._arr[y0:y1, x0:x1][:, :, self.bands]
        from rasterio.windows import Window

        try:
            data = self._ds.read([b + 1 for b in self.bands], window=Window(x0, y0, x1 - x0, y1 - y0))
        except Exception as exc:  # noqa: BLE001
            raise DglrsisError(f"{self.path} is truncated or corrupt (TIFF: {exc})") from None
        return np.moveaxis(data, 0, -1)

    def read_window(self, x0: int, y0: int, x1: int, y1: int, raw: bool = False) -> np.ndarray:
        """Pixels [y0:y1, x0:x1] as h×w×3 uint8 RGB (or the selected bands in the native dtype with raw)."""
        data = self._raw_window(x0, y0, x1, y1)
        return data if raw or self.raw else apply_stretch(data, self.limits)

    def read_valid(self, x0: int, y0: int, x1: int, y1: int) -> np.ndarray:
        """h×w bool of the window: False where the pixel is nodata, masked or transparent."""
        if self._nodata_override:
            return ~np.all(self._raw_window(x0, y0, x1, y1) == self.meta.nodata, axis=-1)
        if self._ds is None:
            return self._valid_pil(None, self._arr[y0:y1, x0:x1])
        from rasterio.windows import Window

        try:
            return self._ds.dataset_mask(window=Window(x0, y0, x1 - x0, y1 - y0)) > 0
        except Exception as exc:  # noqa: BLE001
            raise DglrsisError(f"{self.path} is truncated or corrupt (TIFF: {exc})") from None

    def _valid_pil(self, _data, full: np.ndarray) -> np.ndarray:
        names = self.meta.band_names
        if "alpha" in names:
            return full[:, :, names.index("alpha")] > 0
        return np.ones(full.shape[:2], bool)

    def read(self, raw: bool = False) -> np.ndarray:
        return self.read_window(0, 0, self.meta.width, self.meta.height, raw=raw)

    def close(self) -> None:
        if self._ds is not None:
            self._ds.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def _band_role(name: str) -> str | None:
    """red / green / blue for a band name (colour interpretation or description), else None."""
    import re

    words = set(re.findall(r"[a-z0-9_]+", str(name).lower()))
    for role, aliases in BAND_ALIASES.items():
        if words & set(aliases):
            return role
    return None


def parse_band_spec(text: str | None) -> list | None:
    """``--bands`` text → 1-based numbers or band names (``3,2,1``, ``red,green,blue``, ``B04,B03,B02``)."""
    if not text or not str(text).strip():
        return None
    parts = [p.strip() for p in str(text).split(",") if p.strip()]
    out = [int(p) if p.isdigit() else p for p in parts]
    if not out or any(isinstance(b, int) and b < 1 for b in out) or len(out) not in (1, 3):
        raise DglrsisError(
            f"bad --bands {text!r}: one or three 1-based band numbers or names, e.g. 3,2,1 or red,green,blue"
        )
    return out


def select_bands(
    count: int, bands=None, path: str = "", names: list | None = None
) -> tuple[list[int], str | None]:
    """0-based band indices read as R, G, B, and a notice when the choice is a guess.

    ``bands``: None, or one/three 1-based numbers or band names (matched against ``names``, the file's
    colour interpretation or descriptions, and the aliases in ``BAND_ALIASES``). Without a selection: the
    bands the file names red, green and blue; else grayscale replicated, bands 1–3 for 3 or more bands
    (alpha dropped; for 4+ bands with a notice), an error for 2 bands.
    """
    names = list(names or [""] * count)
    roles = [_band_role(n) for n in names]
    if bands:
        idx = []
        for b in bands:
            if isinstance(b, int):
                if not 1 <= b <= count:
                    raise DglrsisError(f"{path} has {count} band(s); band {b} does not exist")
                idx.append(b - 1)
                continue
            role = _band_role(b)
            hits = [i for i, n in enumerate(names) if n == str(b).lower()] or (
                [i for i, r in enumerate(roles) if r == role] if role else []
            )
            if not hits:
                known = ", ".join(f"{i + 1}={n or '?'}" for i, n in enumerate(names))
                raise DglrsisError(f"{path} has no band named {b!r} (bands: {known}); use band numbers")
            idx.append(hits[0])
        if len(idx) not in (1, 3):
            raise DglrsisError(f"select one or three bands, got {len(idx)}: {bands}")
        return (idx * 3 if len(idx) == 1 else idx), None
    if all(r in roles for r in ("red", "green", "blue")):
        return [roles.index("red"), roles.index("green"), roles.index("blue")], None
    if count == 1 or (count == 2 and names[1] == "alpha"):
        return [0, 0, 0], None
    if count == 2:
        raise DglrsisError(f"{path} has 2 bands; choose with --bands, e.g. --bands 1 (grayscale)")
    if count == 3 or (count == 4 and names[3] == "alpha"):
        return [0, 1, 2], None
    return [0, 1, 2], (
        f"{path}: {count} bands and no colour interpretation or band names; using bands 1,2,3 as red, green, "
        f"blue (choose with --bands, e.g. --bands 3,2,1)"
    )


def open_raster(path, bands=None, stretch="auto", nodata: float | None = None) -> RasterReader:
    """Open a raster for windowed reading (``.meta``, ``.read_window(x0, y0, x1, y1)``, ``.read_valid``)."""
    return RasterReader(path, bands, stretch, nodata)


def read_raster(path, bands: list[int] | None = None) -> tuple[np.ndarray, RasterMeta]:
    """All bands (or the 1-based selection) in the native dtype, H×W×C, plus metadata (exact values)."""
    with RasterReader(path, bands=bands or "all") as r:
        return r.read(raw=True), r.meta


def read_image(path, bands=None, stretch="auto", nodata: float | None = None) -> Raster:
    """Read an image for the models: H×W×3 uint8 RGB (band choice, whole-scene stretch), metadata and the
    valid-pixel mask (None when every pixel is valid)."""
    with RasterReader(path, bands, stretch, nodata) as r:
        if r.meta.width * r.meta.height > MAX_IN_MEMORY:
            raise DglrsisError(f"{path} is {r.meta.width}×{r.meta.height}; segment it with --tile")
        valid = r.read_valid(0, 0, r.meta.width, r.meta.height)
        return Raster(r.read(), r.meta, None if valid.all() else valid)


# ============================================================================================ writing
def default_palette(n: int) -> list[tuple[int, int, int]]:
    """``n`` distinct RGB colours; index 0 (background) is black."""
    base = [
        (0, 0, 0),
        (230, 25, 75),
        (60, 180, 75),
        (255, 225, 25),
        (0, 130, 200),
        (245, 130, 48),
        (145, 30, 180),
        (70, 240, 240),
        (240, 50, 230),
        (210, 245, 60),
        (250, 190, 212),
        (0, 128, 128),
        (220, 190, 255),
        (170, 110, 40),
        (255, 250, 200),
        (128, 0, 0),
        (170, 255, 195),
        (128, 128, 0),
        (255, 215, 180),
        (0, 0, 128),
        (128, 128, 128),
    ]
    out = list(base[:n])
    rng = np.random.default_rng(12345)
    while len(out) < n:
        out.append(tuple(int(v) for v in rng.integers(40, 256, 3)))
    return out


def write_index_png(path, labels: np.ndarray, palette: list | None = None) -> None:
    """Single-channel PNG of ``labels`` (H×W, values 0–255) with an optional RGB palette, atomically."""
    from PIL import Image

    labels = np.asarray(labels)
    if labels.ndim != 2:
        raise DglrsisError(f"labels must be H×W, got shape {labels.shape}")
    if labels.size and (labels.min() < 0 or labels.max() > 255):
        raise DglrsisError(f"an index PNG holds values 0–255; got {labels.min()}–{labels.max()} (use .tif)")
    im = Image.fromarray(labels.astype(np.uint8), mode="P" if palette else "L")
    if palette:
        flat = [v for rgb in palette[:256] for v in rgb]
        im.putpalette(flat + [0] * (768 - len(flat)))
    with atomic_path(path, suffix=".png") as tmp:
        im.save(tmp, format="PNG")


def write_geotiff(
    path, array: np.ndarray, meta: RasterMeta | None, palette: list | None = None, nodata=None
) -> None:
    """GeoTIFF of ``array`` (H×W or H×W×C) with the source CRS and transform (LZW), atomically; a
    single-band 8-bit raster gets ``palette`` as its colour table; ``nodata`` is recorded."""
    import rasterio
    from rasterio.transform import Affine

    arr = np.asarray(array)
    arr = arr[:, :, None] if arr.ndim == 2 else arr
    h, w, c = arr.shape
    profile = {
        "driver": "GTiff",
        "width": w,
        "height": h,
        "count": c,
        "dtype": arr.dtype.name,
        "compress": "lzw",
    }
    if meta is not None and meta.crs:
        profile["crs"] = meta.crs
    if meta is not None and meta.transform:
        profile["transform"] = Affine(*meta.transform)
    if nodata is not None:
        profile["nodata"] = nodata
    with atomic_path(path, suffix=".tif") as tmp:
        with rasterio.open(tmp, "w", **profile) as dst:
            dst.write(np.moveaxis(arr, -1, 0))
            if palette and c == 1 and arr.dtype == np.uint8:
                dst.write_colormap(1, {i: (*map(int, rgb), 255) for i, rgb in enumerate(palette[:256])})


def write_label(
    path, labels: np.ndarray, meta: RasterMeta | None = None, palette: list | None = None, nodata=None
) -> None:
    """Write a label map by extension: ``.png`` → index PNG with palette, ``.tif``/``.tiff`` → GeoTIFF
    (georeference, colour table, ``nodata``)."""
    ext = Path(path).suffix.lower()
    if ext == ".png":
        write_index_png(path, labels, palette)
    elif ext in (".tif", ".tiff"):
        write_geotiff(path, labels, meta, palette, nodata)
    else:
        raise DglrsisError(f"unsupported output {path}: use .png or .tif")


def write_rgb_png(path, rgb: np.ndarray) -> None:
    """H×W×3 uint8 RGB PNG, atomically."""
    from PIL import Image

    with atomic_path(path, suffix=".png") as tmp:
        Image.fromarray(np.asarray(rgb, dtype=np.uint8)).save(tmp, format="PNG")


def overlay(image: np.ndarray, labels: np.ndarray, palette: list, alpha: float = 0.5) -> np.ndarray:
    """Blend palette colours of ``labels`` (H×W, 0 = background left as is) over ``image`` (H×W×3 uint8)."""
    pal = np.array(palette + [(0, 0, 0)] * max(0, int(labels.max(initial=0)) + 1 - len(palette)), np.float32)
    col = pal[labels]
    out = image.astype(np.float32)
    fg = labels > 0
    out[fg] = (1 - alpha) * out[fg] + alpha * col[fg]
    return out.round().astype(np.uint8)


def heatmap(values: np.ndarray) -> np.ndarray:
    """H×W values in [0, 1] → H×W×3 uint8 colour map (blue → red)."""
    v = np.clip(np.nan_to_num(np.asarray(values, np.float32)), 0, 1)
    r = np.clip(1.5 - np.abs(4 * v - 3), 0, 1)
    g = np.clip(1.5 - np.abs(4 * v - 2), 0, 1)
    b = np.clip(1.5 - np.abs(4 * v - 1), 0, 1)
    return (np.stack([r, g, b], -1) * 255).round().astype(np.uint8)
