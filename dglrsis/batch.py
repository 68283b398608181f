"""Many inputs in one call: input expansion, output naming, a resumable manifest, sharding.

``dglrsis segment INPUT... --out-dir DIR`` loads the models once and processes every input; this
module holds the parts that do not depend on the model:

- :func:`expand_inputs`: files, folders (``recursive``), quoted globs and ``@list.txt`` files (one
  input spec per line, ``#`` comments; relative paths are relative to the current folder, as on a
  command line) → sorted, de-duplicated image files, each with the name its outputs take.
- :func:`plan_jobs`: the output paths of each input under DIR (``DIR/<name><suffix>``; a folder's
  sub-folders are mirrored), checked before any model is loaded.
- :func:`run_batch`: the loop. A manifest (``DIR/manifest.json``) records each input's state
  (``done`` / ``failed``), settings hash, input fingerprint (size, mtime), output files and one-line
  error. A rerun skips inputs done with the same settings, input and outputs present, and redoes the
  rest (so a killed run resumes). A failing input is recorded and the run goes on.
- Sharding: under ``accelerate launch`` (or ``torchrun``, ``mpirun``), process ``r`` of ``w`` takes inputs
  ``r, r + w, …`` of the sorted list (jobs of one input — ``refer --pairs``, see :mod:`dglrsis.pairs` —
  stay together, so each input is read and embedded by one process). Each process appends its records
  to its own ``DIR/.manifest.rank<r>.jsonl`` (one flushed line per input) and, when done, merges them into
  ``manifest.json`` under a lock file, so the manifest is consistent whatever the number of processes
  and whichever finishes last.
"""

from __future__ import annotations

import contextlib
import fcntl
import glob
import json
import os
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from .errors import DglrsisError
from .io import check_outputs, write_json

IMAGE_EXTS = (".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp", ".gif")
MANIFEST = "manifest.json"


# ============================================================================================ inputs
@dataclass(frozen=True)
class Entry:
    path: Path  # the input file
    name: str  # output name: posix path without extension, relative to DIR
    text: str | None = None  # refer --pairs: this job's expression (None: the command's own)
    error: str | None = None  # a bad pairs row: the one-line error its job records (nothing is run)


def _is_glob(spec: str) -> bool:
    return any(c in spec for c in "*?[")


def _folder_files(folder: Path, recursive: bool) -> list[Path]:
    it = folder.rglob("*") if recursive else folder.iterdir()
    return sorted(
        p for p in it if p.is_file() and p.suffix.lower() in IMAGE_EXTS and not p.name.startswith(".")
    )


def _expand_one(spec: str, recursive: bool, depth: int = 0) -> list[Entry]:
    if spec.startswith("@"):
        if depth:
            raise DglrsisError(f"{spec}: a list file may not name another list file")
        lst = Path(spec[1:])
        try:
            lines = lst.read_text().splitlines()
        except (OSError, UnicodeDecodeError) as exc:
            raise DglrsisError(f"cannot read the input list {lst}: {exc}") from None
        out = []
        for line in lines:
            line = line.strip()
            if line and not line.startswith("#"):
                out += _expand_one(line, recursive, depth + 1)
        return out
    if _is_glob(spec):
        matches = sorted(Path(p) for p in glob.glob(spec, recursive=recursive) if Path(p).is_file())
        if not matches:
            raise DglrsisError(f"{spec}: no file matches")
        parts = Path(spec).parts
        first = next(i for i, part in enumerate(parts) if _is_glob(part))
        root = Path(*parts[:first]) if first else Path(".")  # names relative to the fixed folder
        return [Entry(p, _name(p, root)) for p in matches]
    p = Path(spec)
    if p.is_dir():
        files = _folder_files(p, recursive)
        if not files:
            hint = "" if recursive else " (add --recursive for sub-folders)"
            raise DglrsisError(f"{p}: no image file in this folder{hint}")
        return [Entry(f, _name(f, p)) for f in files]
    if not p.exists():
        raise DglrsisError(f"{p}: no such file")
    return [Entry(p, p.stem)]


def _name(path: Path, root: Path) -> str:
    try:
        rel = path.relative_to(root)
    except ValueError:
        rel = Path(path.name)
    return rel.with_suffix("").as_posix()


def expand_inputs(specs: list[str], recursive: bool = False) -> list[Entry]:
    """Input specs → entries sorted by name, each file once. DglrsisError for a spec matching
    nothing or two different inputs that would write the same output name."""
    seen: dict[Path, Entry] = {}
    for spec in specs:
        for e in _expand_one(str(spec), recursive):
            seen.setdefault(e.path.resolve(), e)
    by_name: dict[str, Entry] = {}
    for e in seen.values():
        if e.name in by_name:
            raise DglrsisError(
                f"{by_name[e.name].path} and {e.path} would write the same outputs ({e.name}.*); "
                "give their folder instead, or rename one"
            )
        by_name[e.name] = e
    return [by_name[k] for k in sorted(by_name)]


def is_batch(specs: list[str]) -> bool:
    """Whether the specs name more than one file or a folder / glob / list."""
    return len(specs) != 1 or _is_glob(specs[0]) or specs[0].startswith("@") or Path(specs[0]).is_dir()


# ============================================================================================ jobs
@dataclass(frozen=True)
class Job:
    input: Path
    name: str
    outputs: dict  # kind → Path under DIR
    text: str | None = None  # refer --pairs: this job's expression
    error: str | None = None  # a bad pairs row: recorded as this job's failure, nothing is run

    def files(self) -> list[Path]:
        return list(self.outputs.values())

    @property
    def label(self) -> str:
        """How a failure names this job: the input, and the expression of a pairs job."""
        return str(self.input) if self.text is None else f"{self.input} | {self.text}"


def plan_jobs(entries: list[Entry], out_dir: str | os.PathLike, suffixes: dict[str, str]) -> list[Job]:
    """One job per entry with ``DIR/<name><suffix>`` for each output kind; every path validated
    (writable, none an input, no two the same) before anything runs."""
    out_dir = Path(out_dir)
    if out_dir.exists() and not out_dir.is_dir():
        raise DglrsisError(f"--out-dir {out_dir} exists and is not a directory")
    jobs = []
    for e in entries:  # a bad pairs row writes nothing
        outputs = {} if e.error else {k: out_dir / f"{e.name}{s}" for k, s in suffixes.items()}
        jobs.append(Job(e.path, e.name, outputs, e.text, e.error))
    check_outputs([p for j in jobs for p in j.files()], [e.path for e in entries if not e.error], True)
    return jobs


def shard(items: list, rank: int, world: int) -> list:
    """The items process ``rank`` of ``world`` handles: ``items[rank::world]``."""
    if not 0 <= rank < world:
        raise ValueError(f"rank {rank} not in [0, {world})")
    return items[rank::world]


def shard_jobs(jobs: list[Job], rank: int, world: int) -> list[Job]:
    """The jobs of process ``rank``: :func:`shard` over the distinct inputs (in order of first appearance),
    so all jobs of one input go to one process. With one job per input this is ``shard(jobs, …)``."""
    inputs = list(dict.fromkeys(j.input for j in jobs))
    mine = set(shard(inputs, rank, world))
    return [j for j in jobs if j.input in mine]


_RANK_VARS = [  # (rank, world size, local rank) as set by torchrun / accelerate launch, Open MPI, MPICH
    ("RANK", "WORLD_SIZE", "LOCAL_RANK"),
    ("OMPI_COMM_WORLD_RANK", "OMPI_COMM_WORLD_SIZE", "OMPI_COMM_WORLD_LOCAL_RANK"),
    ("PMI_RANK", "PMI_SIZE", "MPI_LOCALRANKID"),
]


def rank_world(rank: int | None = None, world: int | None = None) -> tuple[int, int]:
    """(rank, world): explicit values, or the launcher's environment (``accelerate launch``,
    ``torchrun``, ``mpirun``), else (0, 1). No process group is needed: the processes share only
    the output folder. With several processes and CUDA, each uses the GPU of its local rank."""
    if rank is not None or world is not None:
        return rank or 0, world or 1
    env = os.environ
    for r, w, local in _RANK_VARS:
        if int(env.get(w, "1") or 1) > 1 and r in env:
            rank, world = int(env[r]), int(env[w])
            _pick_gpu(int(env.get(local, rank)))
            return rank, world
    return 0, 1


def _pick_gpu(local_rank: int) -> None:
    import torch

    if torch.cuda.is_available():
        torch.cuda.set_device(local_rank % torch.cuda.device_count())


# ============================================================================================ manifest
def fingerprint(path: Path) -> dict:
    st = os.stat(path)
    return {"size": st.st_size, "mtime_ns": st.st_mtime_ns}


def _rank_files(out_dir: Path) -> list[Path]:
    return sorted(out_dir.glob(".manifest.rank*.jsonl"))


def load_manifest(out_dir: str | os.PathLike) -> dict[str, dict]:
    """name → latest record: ``manifest.json``, then any per-process record files of an unfinished
    run (a line cut by a kill is ignored)."""
    out_dir = Path(out_dir)
    records: dict[str, dict] = {}
    with contextlib.suppress(FileNotFoundError, json.JSONDecodeError, AttributeError):
        records.update(json.loads((out_dir / MANIFEST).read_text()).get("inputs", {}))
    for f in _rank_files(out_dir):
        for line in f.read_text().splitlines():
            with contextlib.suppress(json.JSONDecodeError):
                rec = json.loads(line)
                if isinstance(rec, dict) and "name" in rec:
                    records[rec["name"]] = rec
    return records


@contextlib.contextmanager
def _lock(out_dir: Path) -> Iterator[None]:
    with open(out_dir / ".manifest.lock", "a") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def merge_manifest(out_dir: str | os.PathLike, settings: dict, own: Path | None = None) -> dict:
    """Under the lock: fold the record files into ``manifest.json`` (sorted by name), remove ``own``
    (this process's record file). Returns the merged records."""
    out_dir = Path(out_dir)
    with _lock(out_dir):
        records = load_manifest(out_dir)
        write_json(
            out_dir / MANIFEST, {"version": 1, "settings": settings, "inputs": dict(sorted(records.items()))}
        )
        if own is not None:
            with contextlib.suppress(FileNotFoundError):
                own.unlink()
    return records


def up_to_date(rec: dict | None, job: Job, key: str, out_dir: Path) -> bool:
    """Whether ``rec`` shows ``job`` done with settings ``key``, the same input and its outputs present."""
    if not rec or rec.get("state") != "done" or rec.get("settings") != key:
        return False
    try:
        if rec.get("fingerprint") != fingerprint(job.input):
            return False
    except OSError:
        return False
    return all((out_dir / f).exists() for f in rec.get("outputs", []))


def _clean_partial(job: Job) -> None:
    """Remove temporary files a killed run left for this job's outputs."""
    for out in job.files():
        for tmp in out.parent.glob(f".{glob.escape(out.name)}.part-*"):
            with contextlib.suppress(OSError):
                tmp.unlink()


# ============================================================================================ loop
@dataclass
class BatchSummary:
    total: int = 0  # inputs of this process's shard
    done: int = 0  # computed now
    skipped: int = 0  # already done with the same settings
    failed: list = field(default_factory=list)  # (input, one-line error)

    def line(self, manifest: Path, rank: int = 0, world: int = 1) -> str:
        who = f"[process {rank + 1}/{world}] " if world > 1 else ""
        return (
            f"{who}{self.total} input(s): {self.done} done, {self.skipped} already done, "
            f"{len(self.failed)} failed; manifest {manifest}"
        )


def run_batch(
    jobs: list[Job],
    out_dir: str | os.PathLike,
    settings: dict,
    process: Callable[[Job], list[Path]],
    rank: int | None = None,
    world: int | None = None,
    progress: bool = True,
) -> BatchSummary:
    """Run ``process(job) -> files written`` over this process's shard of ``jobs``, resumably.

    ``settings`` (JSON-able; the outputs asked for belong in it) is hashed into each record: a
    rerun with other settings redoes everything. Any exception but KeyboardInterrupt/SystemExit is
    recorded as the input's one-line error and the loop goes on.
    """
    from tqdm import tqdm

    from .eval.runner import settings_hash

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    rank, world = rank_world(rank, world)
    key = settings_hash(settings)
    previous = load_manifest(out_dir)
    mine = shard_jobs(jobs, rank, world)
    summary = BatchSummary(total=len(mine))
    own = out_dir / f".manifest.rank{rank}.jsonl"
    with open(own, "a") as log:
        for job in tqdm(mine, desc="inputs", unit="input", disable=not progress, position=rank):
            if up_to_date(previous.get(job.name), job, key, out_dir):
                summary.skipped += 1
                continue
            _clean_partial(job)
            t0 = time.perf_counter()
            rec = {"name": job.name, "input": str(job.input), "settings": key}
            if job.text is not None:
                rec["expression"] = job.text
            try:
                if job.error:
                    raise DglrsisError(job.error)
                rec["fingerprint"] = fingerprint(job.input)
                files = process(job)
                rec.update(state="done", outputs=sorted(_rel(f, out_dir) for f in files), error=None)
                summary.done += 1
            except Exception as exc:  # noqa: BLE001 - recorded per input, the batch goes on
                msg = (
                    str(exc)
                    if isinstance(exc, DglrsisError)
                    else f"internal error: {type(exc).__name__}: {exc}"
                )
                msg = " ".join(msg.split())
                rec.update(state="failed", outputs=[], error=msg)
                summary.failed.append((job.label, msg))
            rec["seconds"] = round(time.perf_counter() - t0, 3)
            log.write(json.dumps(rec, sort_keys=True) + "\n")
            log.flush()
            os.fsync(log.fileno())
    merge_manifest(out_dir, {"hash": key, **settings}, own)
    return summary


def _rel(path: Path, out_dir: Path) -> str:
    try:
        return Path(path).relative_to(out_dir).as_posix()
    except ValueError:
        return str(path)


def report(summary: BatchSummary, out_dir: Path, rank: int = 0, world: int = 1) -> int:
    """Print the failures (one line each) and the summary line; exit code 2 if any input failed."""
    for path, msg in summary.failed:
        print(f"failed: {path}: {msg}", file=sys.stderr)
    print(summary.line(Path(out_dir) / MANIFEST, rank, world))
    return 2 if summary.failed else 0
