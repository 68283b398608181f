"""Pairs files: ``dglrsis refer --pairs FILE --out-dir DIR`` runs many (image, expression) pairs in one call.

Format: ``.csv`` (comma) or ``.tsv`` / ``.tab`` (tab), UTF-8 (an Excel byte-order mark is fine), quoted
fields as Python's :mod:`csv` reads them. The first row names the columns; ``image`` and ``expression``
are required (any order, any case; other columns are ignored). Blank rows and rows whose first cell
starts with ``#`` are skipped. A relative image path is taken from the pairs file's folder, so the file
travels with its images.

Each pair writes ``DIR/<image name>.<slug>-<hash><suffix>``: the image name as for folder inputs (its
path relative to the pairs file's folder without the extension — sub-folders mirrored — or its stem
when it lies elsewhere), ``slug`` the expression's first words (a–z, 0–9 and ``-``, at most
:data:`SLUG_CHARS` characters) and ``hash`` 6 hex digits of the expression, so a name depends only on
its own pair: reordering or adding rows changes no other pair's outputs, and a rerun skips what is done.

Entries are sorted by image path, then output name: the pairs of one image are consecutive, so the caller
embeds each image once (and :func:`dglrsis.batch.shard_jobs` keeps them in one process). A row repeating
an earlier (image, expression) pair is dropped. A bad row — an empty cell, a missing image, an
expression the ``check`` callable refuses — becomes an entry carrying its one-line error, recorded as a
failure in the manifest while the run goes on; a file that cannot be read or has no such columns is a
:class:`DglrsisError` before anything runs.
"""

from __future__ import annotations

import csv
import hashlib
import os
import re
from collections.abc import Callable
from pathlib import Path

from .batch import Entry, _name
from .errors import DglrsisError

DELIMITERS = {".csv": ",", ".tsv": "\t", ".tab": "\t"}
COLUMNS = ("image", "expression")
SLUG_CHARS = 32


def slug(text: str) -> str:
    """Short file-name part for an expression: ``<first words>-<6 hex>`` (``expr-<6 hex>`` when the
    expression has no ASCII letter or digit)."""
    words = re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")
    if len(words) > SLUG_CHARS:
        words = words[:SLUG_CHARS].rsplit("-", 1)[0] if "-" in words[:SLUG_CHARS] else words[:SLUG_CHARS]
    digest = hashlib.sha1(text.encode()).hexdigest()[:6]
    return f"{words or 'expr'}-{digest}"


def _rows(path: Path) -> tuple[list[tuple[int, dict]], list[str]]:
    """(line number, {column: cell}) of each data row, and the header."""
    delim = DELIMITERS.get(path.suffix.lower())
    if delim is None:
        raise DglrsisError(f"--pairs {path}: use a .csv (comma) or .tsv (tab) file")
    try:
        text = path.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as exc:
        raise DglrsisError(f"cannot read the pairs file {path}: {exc}") from None
    reader = csv.reader(text.splitlines(), delimiter=delim)
    header, rows = None, []
    try:
        for cells in reader:
            if not any(c.strip() for c in cells) or cells[0].lstrip().startswith("#"):
                continue
            if header is None:
                header = [c.strip().lower() for c in cells]
                continue
            rows.append((reader.line_num, dict(zip(header, (c.strip() for c in cells), strict=False))))
    except csv.Error as exc:
        raise DglrsisError(f"{path} line {reader.line_num}: {exc}") from None
    missing = [c for c in COLUMNS if c not in (header or [])]
    if missing:
        raise DglrsisError(
            f"{path}: the first row must name the columns image and expression "
            f"(missing: {', '.join(missing)})"
        )
    return rows, header


def read_pairs(path: str | Path, check: Callable[[str], str | None] | None = None) -> list[Entry]:
    """A pairs file → entries (one per distinct pair, sorted by image path then name) with
    ``text`` set; bad rows as entries with ``error`` set. ``check(expression)`` returns a reason to
    refuse it (e.g. no noun to look for) or None. DglrsisError for an unreadable file, a missing column,
    or two images that would write the same names."""
    path = Path(path)
    rows, _ = _rows(path)
    if not rows:
        raise DglrsisError(f"{path}: no pairs (only a header)")
    root = path.parent
    entries: dict[str, Entry] = {}
    owner: dict[str, Path] = {}  # image name → the image that uses it
    for line, row in rows:
        image, text = row.get("image", ""), row.get("expression", "")
        where = f"{path.name} line {line}"
        if not image or not text:
            empty = "image" if not image else "expression"
            err = Entry(path, f"{path.name}:{line}", text, f"{where}: no {empty}")
            entries[err.name] = err
            continue
        img = Path(os.path.normpath(root / image))  # an absolute image path stays as it is
        name = _name(img, root)
        key = img.resolve()
        if owner.setdefault(name, key) != key:
            raise DglrsisError(f"{owner[name]} and {img} would write the same outputs ({name}.*); rename one")
        full = f"{name}.{slug(text)}"
        if full in entries:
            continue  # the same pair again
        reason = f"no such image {img}" if not img.is_file() else check(text) if check else None
        entries[full] = Entry(img, full, text, reason and f"{where}: {reason}")
    return [entries[k] for k in sorted(entries, key=lambda k: (str(entries[k].path), k))]
