"""Many inputs in one call: input expansion, manifest and resume, sharding, the batch CLI
(failures recorded, rerun identical, resume after a kill, two processes equal to one)."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import rasterio
from PIL import Image
from rasterio.transform import from_origin

from dglrsis import batch
from dglrsis.cli import main
from dglrsis.errors import DglrsisError

CLASSES = "ship,storage tank,harbor,plane"


# ------------------------------------------------------------------------------------------ inputs
def _touch(p: Path, data=b"x"):
    p.parent.mkdir(parents=True, exist_ok=True)
    p.write_bytes(data)
    return p


def test_expand_files_folders_globs_lists(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    for rel in ("d/a.tif", "d/b.png", "d/notes.txt", "d/.hidden.tif", "d/sub/c.tif", "e/z.jpg"):
        _touch(tmp_path / rel)
    names = lambda entries: [e.name for e in entries]  # noqa: E731
    assert names(batch.expand_inputs(["d"])) == ["a", "b"]
    assert names(batch.expand_inputs(["d"], recursive=True)) == ["a", "b", "sub/c"]
    assert names(batch.expand_inputs(["d/*.tif"])) == ["a"]
    assert names(batch.expand_inputs(["d/**/*.tif"], recursive=True)) == ["a", "sub/c"]
    Path("list.txt").write_text("# scenes\nd/a.tif\n\ne/z.jpg\nd/a.tif\n")
    assert names(batch.expand_inputs(["@list.txt", "d/a.tif"])) == ["a", "z"]  # each file once
    for specs, msg in [
        (["nope.tif"], "no such file"),
        (["d/*.jpeg"], "no file matches"),
        (["@missing.txt"], "cannot read"),
    ]:
        with pytest.raises(DglrsisError, match=msg):
            batch.expand_inputs(specs)
    _touch(tmp_path / "f/a.png")
    with pytest.raises(DglrsisError, match="same outputs"):
        batch.expand_inputs(["d/a.tif", "f/a.png"])
    assert batch.is_batch(["d"]) and batch.is_batch(["*.tif"]) and not batch.is_batch(["d/a.tif"])


def test_plan_refuses_output_on_input_and_file_as_out_dir(tmp_path):
    src = _touch(tmp_path / "a.tif")
    entries = batch.expand_inputs([str(src)])
    with pytest.raises(DglrsisError, match="is the input"):
        batch.plan_jobs(entries, tmp_path, {"labels": ".tif"})
    with pytest.raises(DglrsisError, match="not a directory"):
        batch.plan_jobs(entries, src, {"labels": ".png"})
    job = batch.plan_jobs(entries, tmp_path / "out", {"labels": ".tif", "vectors": ".gpkg"})[0]
    assert job.outputs == {"labels": tmp_path / "out/a.tif", "vectors": tmp_path / "out/a.gpkg"}


def test_shards_partition_the_inputs():
    items = list(range(11))
    for world in (1, 2, 3, 4):
        parts = [batch.shard(items, r, world) for r in range(world)]
        assert sorted(sum(parts, [])) == items and max(map(len, parts)) - min(map(len, parts)) <= 1
    with pytest.raises(ValueError):
        batch.shard(items, 2, 2)


# ------------------------------------------------------------------------------------------ loop
def _jobs(tmp_path, n=6):
    entries = [batch.Entry(_touch(tmp_path / "in" / f"s{i}.txt", str(i).encode()), f"s{i}") for i in range(n)]
    return batch.plan_jobs(entries, tmp_path / "out", {"labels": ".txt"})


def _writer(calls, fail=()):
    def process(job):
        calls.append(job.name)
        if job.name in fail:
            raise DglrsisError(f"{job.input} is broken")
        out = job.outputs["labels"]
        out.write_text(job.input.read_text() * 2)
        return [out]

    return process


def test_run_batch_records_failures_and_resumes(tmp_path):
    jobs, out = _jobs(tmp_path), tmp_path / "out"
    calls = []
    s = batch.run_batch(jobs, out, {"a": 1}, _writer(calls, fail={"s2"}), progress=False)
    assert (s.done, s.skipped, len(s.failed)) == (5, 0, 1) and "s2.txt is broken" in s.failed[0][1]
    man = json.loads((out / batch.MANIFEST).read_text())["inputs"]
    assert man["s2"]["state"] == "failed" and man["s0"]["outputs"] == ["s0.txt"]
    assert not list(out.glob(".manifest.rank*"))  # merged
    calls.clear()
    s = batch.run_batch(jobs, out, {"a": 1}, _writer(calls), progress=False)
    assert calls == ["s2"] and (s.done, s.skipped) == (1, 5)  # only the failed one is redone
    calls.clear()
    (out / "s3.txt").unlink()
    os.utime(jobs[4].input, ns=(1, 1))  # the input changed
    batch.run_batch(jobs, out, {"a": 1}, _writer(calls), progress=False)
    assert calls == ["s3", "s4"]
    calls.clear()
    batch.run_batch(jobs, out, {"a": 2}, _writer(calls), progress=False)
    assert len(calls) == 6  # other settings: everything again


def test_interrupted_run_resumes_from_its_record_file(tmp_path):
    jobs, out = _jobs(tmp_path), tmp_path / "out"

    def dies_at_s3(job):
        if job.name == "s3":
            raise KeyboardInterrupt
        return _writer([])(job)

    with pytest.raises(KeyboardInterrupt):
        batch.run_batch(jobs, out, {}, dies_at_s3, progress=False)
    assert not (out / batch.MANIFEST).exists() and (out / ".manifest.rank0.jsonl").exists()
    calls = []
    s = batch.run_batch(jobs, out, {}, _writer(calls), progress=False)
    assert calls == ["s3", "s4", "s5"] and s.skipped == 3


def test_two_ranks_merge_into_one_manifest(tmp_path):
    jobs, out = _jobs(tmp_path, 7), tmp_path / "out"
    seen = {}
    for rank in (1, 0):
        calls = []
        batch.run_batch(jobs, out, {}, _writer(calls), rank=rank, world=2, progress=False)
        seen[rank] = calls
    assert seen == {0: ["s0", "s2", "s4", "s6"], 1: ["s1", "s3", "s5"]}
    man = json.loads((out / batch.MANIFEST).read_text())["inputs"]
    assert sorted(man) == [f"s{i}" for i in range(7)] and {r["state"] for r in man.values()} == {"done"}


# ------------------------------------------------------------------------------------------ CLI
@pytest.fixture(scope="module")
def scenes(tmp_path_factory):
    """10 small world GeoTIFFs (128 px, UTM 33N); s03 is empty, s07 truncated."""
    root = tmp_path_factory.mktemp("batch")
    assert main(["world", "--out", str(root / "W"), "--seed", "7", "--n", "8", "--size", "128"]) == 0
    pngs = sorted((root / "W").glob("*/*/images/P*.png"))[:10]
    assert len(pngs) >= 8
    src = root / "scenes"
    src.mkdir()
    for i in range(10):
        a = np.asarray(Image.open(pngs[i % len(pngs)]).convert("RGB"))
        if i >= len(pngs):
            a = a[::-1].copy()
        tr = from_origin(500000.0, 4000000.0 - 1000 * i, 0.5, 0.5)
        with rasterio.open(
            src / f"s{i:02d}.tif",
            "w",
            driver="GTiff",
            width=128,
            height=128,
            count=3,
            dtype="uint8",
            crs="EPSG:32633",
            transform=tr,
        ) as dst:
            dst.write(np.moveaxis(a, -1, 0))
    (src / "s03.tif").write_bytes(b"")
    data = (src / "s07.tif").read_bytes()
    (src / "s07.tif").write_bytes(data[: len(data) // 3])
    return src


def _cli(*args, **kw):
    cmd = [sys.executable, "-m", "dglrsis.cli", "segment", *map(str, args)]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=600, **kw)


def _args(src, out):
    return [
        src,
        "--classes",
        CLASSES,
        "--clip",
        "world-clip",
        "--proposals",
        "slic",
        "--vectors",
        "gpkg",
        "--out-dir",
        out,
    ]


def _outputs(d: Path) -> dict:
    return {p.name: p.read_bytes() for p in sorted(d.iterdir()) if not p.name.startswith((".", "manifest"))}


def _run(capsys, *args):
    code = main(["segment", *map(str, args)])
    out = capsys.readouterr()
    return code, out.out, out.err


@pytest.fixture(scope="module")
def clean_run(scenes, tmp_path_factory):
    """One clean batch run over the 10 scenes (in this process): its folder and output bytes."""
    out = tmp_path_factory.mktemp("clean") / "out"
    code = main(["segment", *map(str, _args(scenes, out))])
    return out, code, _outputs(out)


def test_batch_cli_records_failures_and_rerun_is_identical(scenes, clean_run, capsys):
    out, code, files = clean_run
    assert code == 2
    assert sorted(f for f in files if f.endswith(".tif")) == [
        f"s{i:02d}.tif" for i in range(10) if i not in (3, 7)
    ]
    assert len([f for f in files if f.endswith(".gpkg")]) == 8
    man = json.loads((out / "manifest.json").read_text())["inputs"]
    assert [k for k, r in man.items() if r["state"] == "failed"] == ["s03", "s07"]
    assert "empty" in man["s03"]["error"] and "truncated" in man["s07"]["error"]
    # a rerun recomputes nothing, leaves the same bytes, reports the failures again, one line each
    code, stdout, stderr = _run(capsys, *_args(scenes, out))
    assert code == 2 and "10 input(s): 0 done, 8 already done, 2 failed" in stdout
    failed = [ln for ln in stderr.splitlines() if ln.startswith("failed: ")]
    assert (
        len(failed) == 2 and "s03.tif" in failed[0] and "s07.tif" in failed[1] and "Traceback" not in stderr
    )
    assert _outputs(out) == files


def test_stale_partial_files_are_removed_on_resume(tmp_path):
    jobs, out = _jobs(tmp_path, 2), tmp_path / "out"
    out.mkdir()
    stale = out / ".s1.txt.part-abc123.txt"  # what a kill during s1's write leaves
    stale.write_text("half")
    batch.run_batch(jobs, out, {}, _writer([]), progress=False)
    assert not stale.exists() and (out / "s1.txt").read_text() == "11"


@pytest.mark.slow
def test_batch_cli_killed_half_way_then_rerun_equals_clean(scenes, clean_run, tmp_path, capsys):
    """SIGKILL a real run after 4 inputs; the rerun gives the clean run's bytes (light version:
    test_interrupted_run_resumes_from_its_record_file, test_stale_partial_files_are_removed_on_resume)."""
    _, _, files = clean_run
    killed = tmp_path / "killed"
    proc = subprocess.Popen(
        [sys.executable, "-m", "dglrsis.cli", "segment", *map(str, _args(scenes, killed))],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    log, t0 = killed / ".manifest.rank0.jsonl", time.time()
    while proc.poll() is None and time.time() - t0 < 300:
        if log.exists() and len(log.read_text().splitlines()) >= 4:
            break
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert not (killed / "manifest.json").exists(), "the run finished before it was killed"
    code, stdout, _ = _run(capsys, *_args(scenes, killed))
    assert code == 2 and "already done" in stdout and " 0 already done" not in stdout
    assert _outputs(killed) == files and not list(killed.glob(".*.part-*"))


def test_batch_cli_checks_before_any_model(scenes, tmp_path):
    for extra, msg in [
        (["--out", "jpg"], "takes a format"),
        (["--vectors", "shp"], "takes a format"),
        (["--out-dir", str(scenes / "s00.tif")], "not a directory"),
    ]:
        res = _cli(
            scenes, "--classes", "ship", "--clip", "no-such-model", "--out-dir", tmp_path / "o", *extra
        )
        assert res.returncode == 2 and msg in res.stderr and len(res.stderr.strip().splitlines()) == 1
    res = _cli(
        scenes / "s00.tif", "--classes", "ship", "--clip", "no-such-model", "--out", tmp_path / "x.jpg"
    )
    assert res.returncode == 2 and "--out" in res.stderr and ".png" in res.stderr
    res = _cli(scenes, "--classes", "ship", "--out", tmp_path / "x.tif")
    assert res.returncode == 2 and "--out-dir" in res.stderr
    assert not (tmp_path / "o").exists()


@pytest.mark.slow
def test_two_processes_give_the_same_bytes_as_one(scenes, tmp_path):
    """``accelerate launch`` with two CPU processes shards the inputs; outputs are the same bytes
    (light version: test_two_ranks_merge_into_one_manifest, test_shards_partition_the_inputs)."""
    subset = tmp_path / "in"
    subset.mkdir()
    for i in (0, 1, 2, 4):
        (subset / f"s{i:02d}.tif").write_bytes((scenes / f"s{i:02d}.tif").read_bytes())
    one, two = tmp_path / "one", tmp_path / "two"
    assert _cli(*_args(subset, one)).returncode == 0
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    res = subprocess.run(
        [
            sys.executable,
            "-m",
            "accelerate.commands.launch",
            "--multi_gpu",
            "--num_processes",
            "2",
            "--num_machines",
            "1",
            "--mixed_precision",
            "no",
            "--dynamo_backend",
            "no",
            "-m",
            "dglrsis.cli",
            "segment",
            *map(str, _args(subset, two)),
        ],
        capture_output=True,
        text=True,
        timeout=600,
        env=env,
    )
    assert res.returncode == 0, res.stderr[-2000:]
    assert (
        "[process 1/2] 2 input(s): 2 done" in res.stdout and "[process 2/2] 2 input(s): 2 done" in res.stdout
    )
    assert _outputs(two) == _outputs(one) and len(_outputs(one)) == 4 * 4
    man = json.loads((two / "manifest.json").read_text())["inputs"]
    assert sorted(man) == ["s00", "s01", "s02", "s04"] and not list(two.glob(".manifest.rank*"))


def test_refer_batch_one_expression(scenes, tmp_path, capsys):
    out = tmp_path / "r"
    inputs = [scenes / "s00.tif", scenes / "s03.tif", scenes / "s01.tif"]
    args = [
        "refer",
        *map(str, inputs),
        "the ship",
        "--clip",
        "world-clip",
        "--scales",
        "1.0",
        "--min-confidence",
        "0",
    ]
    assert main([*args, "--vectors", "gpkg", "--out-dir", str(out)]) == 2  # s03 is empty
    assert "3 input(s): 2 done, 0 already done, 1 failed" in capsys.readouterr().out
    assert sorted(p.name for p in out.iterdir() if not p.name.startswith(".")) == [
        "manifest.json", "s00.gpkg", "s00.tif", "s01.gpkg", "s01.tif",
    ]  # fmt: skip
    import pyogrio

    table = pyogrio.raw.read(out / "s01.gpkg")
    assert list(table[3][table[0]["fields"].tolist().index("expression")]) == ["the ship"]
    man = json.loads((out / "manifest.json").read_text())
    assert man["settings"]["text"] == "the ship" and man["inputs"]["s03"]["state"] == "failed"
