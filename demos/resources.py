"""What keeps the demo small: a bounded store of per-session image states, per-request output folders that
are removed once the answer is delivered, a pixel budget per upload, and messages without server paths.

- :class:`SessionStore`: at most ``cap`` sessions (least recently used dropped first), each dropped
  ``ttl`` seconds after its last request, or at once when its browser tab closes.
- :class:`RequestFiles`: each request writes its outputs into its own folder; the web server copies them
  into its file cache as the request finishes, and the folder is removed ``grace`` seconds later (at once
  when the request fails). Files and folders are created as the umask allows.
- :func:`load_upload`: an upload above ``budget`` pixels is read decimated and downscaled to fit (aspect
  kept, georeference scaled); above ``hard_limit`` it is refused.
- :func:`user_message`: an error message with every filesystem path cut to its file name.
"""

from __future__ import annotations

import contextlib
import os
import re
import secrets
import shutil
import tempfile
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np

import dglrsis

PIXEL_BUDGET = 1024 * 1024  # uploads above this many pixels are downscaled to fit (aspect kept)
HARD_LIMIT = 100_000_000  # uploads above this many pixels are refused (use the CLI with --tile)
_PATH = re.compile(r"(?:[A-Za-z]:)?(?:[\\/][^\s\\/'\"`:;,()]+)+[\\/]?")


def user_message(text: str) -> str:
    """``text`` with every absolute path replaced by its last component (no server paths in messages)."""
    return _PATH.sub(lambda m: Path(m.group(0).rstrip("/\\")).name or "file", str(text))


def current_umask() -> int:
    """The process umask, read without changing it (Linux /proc; elsewhere set and restored once)."""
    with contextlib.suppress(OSError, ValueError):
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


# ------------------------------------------------------------------------------------------ sessions
@dataclass
class Session:
    """One browser session's cached image state (the lock serialises its requests)."""

    lock: threading.Lock = field(default_factory=threading.Lock)
    predictor: object = None
    digest: str = ""
    last_used: float = 0.0
    extra: dict = field(default_factory=dict)  # e.g. the last referring answer, for table selection


class SessionStore:
    """At most ``cap`` sessions; one unused for ``ttl`` seconds is dropped (see module docstring)."""

    def __init__(self, cap: int = 16, ttl: float = 900.0, clock=time.monotonic):
        self.cap, self.ttl, self.clock = cap, ttl, clock
        self._items: OrderedDict[str, Session] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: str) -> Session:
        """The session for ``key`` (created if new), marked as just used; evicts expired and excess ones."""
        with self._lock:
            now = self.clock()
            self._expire(now)
            session = self._items.pop(key, None) or Session()
            session.last_used = now
            self._items[key] = session
            while len(self._items) > self.cap:
                self._items.popitem(last=False)
            return session

    def drop(self, key: str) -> None:
        with self._lock:
            self._items.pop(key, None)

    def expire(self) -> None:
        with self._lock:
            self._expire(self.clock())

    def _expire(self, now: float) -> None:
        for key in [k for k, s in self._items.items() if now - s.last_used > self.ttl]:
            del self._items[key]

    def __len__(self) -> int:
        return len(self._items)

    def __contains__(self, key: str) -> bool:
        return key in self._items


# ------------------------------------------------------------------------------------- request files
class RequestFiles:
    """Per-request output folders under one root, removed ``grace`` seconds after the request ends."""

    def __init__(self, root: str | os.PathLike | None = None, grace: float = 20.0):
        self.umask = current_umask()
        self.root = Path(root or tempfile.mkdtemp(prefix="dglrsis-demo-requests-"))
        self.root.mkdir(parents=True, exist_ok=True)
        os.chmod(self.root, 0o777 & ~self.umask)
        self.grace = grace
        self._done: dict[Path, float] = {}
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._sweeper: threading.Thread | None = None

    @contextlib.contextmanager
    def request(self):
        """Yield a new empty folder; it is removed ``grace`` s after the block ends (at once on error)."""
        folder = self.root / secrets.token_hex(8)
        folder.mkdir(mode=0o777)
        try:
            yield folder
        except BaseException:
            shutil.rmtree(folder, ignore_errors=True)
            raise
        with self._lock:
            self._done[folder] = time.monotonic()
            if self._sweeper is None or not self._sweeper.is_alive():
                self._sweeper = threading.Thread(target=self._sweep, name="dglrsis-demo-files", daemon=True)
                self._sweeper.start()

    def publish(self, path: Path) -> str:
        """Make a written file readable as the umask allows (writers create 0600 files); its path."""
        os.chmod(path, 0o666 & ~self.umask)
        return str(path)

    def pending(self) -> int:
        """Folders of finished requests not yet removed."""
        with self._lock:
            return len(self._done)

    def sweep(self, now: float | None = None) -> None:
        """Remove folders whose request ended more than ``grace`` seconds ago."""
        now = time.monotonic() if now is None else now
        with self._lock:
            old = [f for f, t in self._done.items() if now - t >= self.grace]
            for f in old:
                del self._done[f]
        for f in old:
            shutil.rmtree(f, ignore_errors=True)

    def _sweep(self) -> None:
        while True:
            self._wake.wait(max(self.grace / 4, 0.05))
            self.sweep()
            with self._lock:
                if not self._done:
                    self._sweeper = None
                    return

    def close(self) -> None:
        """Remove every folder and the root."""
        with self._lock:
            self._done.clear()
        shutil.rmtree(self.root, ignore_errors=True)


def prune_empty_dirs(root: str | os.PathLike, age: float, now: float | None = None) -> int:
    """Remove the empty folders directly under ``root`` untouched for ``age`` seconds (a web cache
    whose expired files were deleted leaves one per cached file); returns how many were removed."""
    now = time.time() if now is None else now
    removed = 0
    with contextlib.suppress(FileNotFoundError), os.scandir(root) as entries:
        for entry in entries:
            with contextlib.suppress(OSError):  # not empty, gone, or not a folder: leave it
                if entry.is_dir(follow_symlinks=False) and now - entry.stat().st_mtime > age:
                    os.rmdir(entry.path)
                    removed += 1
    return removed


class CacheJanitor:
    """Every ``every`` seconds, :func:`prune_empty_dirs` on ``root`` (a daemon thread)."""

    def __init__(self, root: str | os.PathLike, age: float, every: float = 60.0):
        self.root, self.age, self.every = Path(root), age, every
        self._stop = threading.Event()
        threading.Thread(target=self._run, name="dglrsis-demo-cache", daemon=True).start()

    def _run(self) -> None:
        while not self._stop.wait(self.every):
            prune_empty_dirs(self.root, self.age)

    def close(self) -> None:
        """Stop, and remove the whole cache folder."""
        self._stop.set()
        shutil.rmtree(self.root, ignore_errors=True)


# ------------------------------------------------------------------------------------------- uploads
@dataclass
class Upload:
    array: np.ndarray  # h×w×3 uint8 working image (downscaled to the pixel budget)
    meta: object  # dglrsis RasterMeta of the working image (georeference scaled)
    bands: list[int]  # 1-based bands used
    count: int  # bands in the file
    source_size: tuple[int, int]  # (width, height) of the file
    scaled: bool  # downscaled to the budget


def fit_size(width: int, height: int, budget: int) -> tuple[int, int]:
    """(w, h) with w·h ≤ budget, aspect kept (unchanged when already within the budget)."""
    if width * height <= budget:
        return width, height
    s = (budget / (width * height)) ** 0.5
    return max(1, int(width * s)), max(1, int(height * s))


def _check_limit(w: int, h: int, hard_limit: int) -> None:
    if w * h > hard_limit:
        raise dglrsis.DglrsisError(
            f"the image is {w}×{h} pixels, more than the demo's {hard_limit:,}; use `dglrsis segment "
            f"--tile` for large rasters"
        )


def load_upload(path, bands: list[int] | None, budget: int = PIXEL_BUDGET, hard_limit: int = HARD_LIMIT):
    """Read an upload for the models within ``budget`` pixels (see module docstring) → :class:`Upload`."""
    from PIL import Image

    from dglrsis.io import RasterReader, apply_stretch, sniff_format

    if sniff_format(path) != "TIFF":  # PIL decodes the whole file: check its header's size first
        with contextlib.suppress(OSError, Image.DecompressionBombError), Image.open(path) as im:
            _check_limit(*im.size, hard_limit)
    with RasterReader(path, bands) as reader:
        meta = reader.meta
        w, h = meta.width, meta.height
        _check_limit(w, h, hard_limit)
        tw, th = fit_size(w, h, budget)
        if (tw, th) == (w, h):
            array = reader.read()
        else:
            data, _ = reader.overview(max_side=2 * max(tw, th))  # decimated read
            data = np.ascontiguousarray(apply_stretch(data, reader.limits), dtype=np.uint8)
            array = np.asarray(Image.fromarray(data).resize((tw, th), Image.Resampling.BOX))
            tr = meta.transform
            if tr:
                sx, sy = w / tw, h / th
                tr = (tr[0] * sx, tr[1] * sy, tr[2], tr[3] * sx, tr[4] * sy, tr[5])
            meta = replace(meta, width=tw, height=th, transform=tr)
        return Upload(array, meta, [b + 1 for b in reader.bands], meta.count, (w, h), (tw, th) != (w, h))
