"""Output options of ``segment`` and ``refer``: one input with output paths, or many with ``--out-dir``.

:func:`plan` checks every output path, extension and option before any model is loaded and returns
the jobs (input → output paths); :meth:`Plan.run` runs one job, or the resumable batch of
:mod:`dglrsis.batch`. Imports nothing heavy.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from ..errors import DglrsisError

FLAGS = {
    "labels": "--out",
    "overlay": "--overlay",
    "scores": "--scores",
    "vectors": "--vectors",
    "cam": "--cam",
}
# one input: allowed extensions of each output path
EXTS = {
    "labels": (".png", ".tif", ".tiff"),
    "overlay": (".png",),
    "scores": (".json",),
    "vectors": (".gpkg", ".geojson"),
    "cam": (".png",),
}
# --out-dir: format → suffix of DIR/<name><suffix>
FORMATS = {
    "labels": {"tif": ".tif", "tiff": ".tif", "png": ".png"},
    "overlay": {"png": ".overlay.png"},
    "scores": {"json": ".scores.json"},
    "vectors": {"gpkg": ".gpkg", "geojson": ".geojson"},
    "cam": {"png": ".cam.png"},
}


def add_output_arguments(parser, batch: bool = True) -> None:
    """``--vectors``, ``--simplify`` and (``batch``) ``--out-dir``, ``--recursive``."""
    parser.add_argument(
        "--vectors",
        help="polygons with class, score and area: .gpkg (in the raster's CRS) or .geojson (WGS 84, "
        "RFC 7946); with --out-dir: gpkg or geojson",
    )
    parser.add_argument(
        "--simplify", type=float, help="vector simplification tolerance in map units (default: exact)"
    )
    if batch:
        parser.add_argument(
            "--out-dir",
            help="many inputs: write DIR/<input name>.<ext> per input, a manifest DIR/manifest.json, "
            "skip what a previous run finished; --out/--overlay/--scores/--vectors then take a format",
        )
        parser.add_argument(
            "--recursive", action="store_true", help="with a folder input: its sub-folders too"
        )


@dataclass
class Plan:
    jobs: list  # dglrsis.batch.Job
    out_dir: Path | None = None  # None: one input, explicit paths
    suffixes: dict = field(default_factory=dict)

    @property
    def batch(self) -> bool:
        return self.out_dir is not None

    def run(self, one, settings: dict) -> int:
        """``one(job) -> files written``: once, or over the batch (manifest, resume, sharding)."""
        if not self.batch:
            one(self.jobs[0])
            return 0
        from ..batch import rank_world, report, run_batch

        rank, world = rank_world()
        summary = run_batch(
            self.jobs, self.out_dir, {**settings, "outputs": self.suffixes}, one, rank=rank, world=world
        )
        return report(summary, self.out_dir, rank, world)


def _check_simplify(args) -> None:
    tol = getattr(args, "simplify", None)
    if tol is not None and not tol >= 0:
        raise DglrsisError(f"--simplify {tol}: a tolerance ≥ 0 in map units")


def plan(args, kinds: dict, check_text=None) -> Plan:
    """Jobs for ``args.image`` (a path or a list of input specs) or ``args.pairs`` (a pairs file, see
    :mod:`dglrsis.pairs`; ``check_text(expression)`` → a reason to refuse a row, or None) with the
    outputs in ``kinds`` (kind → the option's value or None). DglrsisError for any bad path, extension
    or option."""
    from ..batch import Job, expand_inputs, is_batch, plan_jobs
    from ..io import check_outputs

    _check_simplify(args)
    specs = [args.image] if isinstance(args.image, str) else list(args.image)
    out_dir = getattr(args, "out_dir", None)
    pairs = getattr(args, "pairs", None)
    if pairs and out_dir is None:
        raise DglrsisError("--pairs needs --out-dir DIR")
    if out_dir is None:
        if is_batch(specs):
            raise DglrsisError("several inputs, a folder, a glob or an @list need --out-dir DIR")
        given = {k: Path(v) for k, v in kinds.items() if v}
        if not given:
            names = ", ".join(FLAGS[k] for k in kinds)
            raise DglrsisError(f"nothing to write: give {names}")
        for kind, path in given.items():
            if path.suffix.lower() not in EXTS[kind]:
                raise DglrsisError(f"{FLAGS[kind]} {path}: use {' or '.join(EXTS[kind])}")
        inp = Path(specs[0])
        if not inp.exists():
            raise DglrsisError(f"{inp}: no such file")
        check_outputs(given.values(), [inp])
        return Plan([Job(inp, inp.stem, given)])
    suffixes = {}
    for kind, value in kinds.items():
        if value is None and kind != "labels":
            continue
        fmt = (value or "tif").lower().lstrip(".")
        if fmt not in FORMATS[kind]:
            raise DglrsisError(f"with --out-dir, {FLAGS[kind]} takes a format: {' or '.join(FORMATS[kind])}")
        suffixes[kind] = FORMATS[kind][fmt]
    if pairs:
        from ..pairs import read_pairs

        entries = read_pairs(pairs, check_text)
    else:
        entries = expand_inputs(specs, getattr(args, "recursive", False))
    return Plan(plan_jobs(entries, out_dir, suffixes), Path(out_dir), suffixes)
