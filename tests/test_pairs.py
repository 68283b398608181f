"""``dglrsis refer --pairs FILE --out-dir DIR``: the pairs file, output names, one embedding per image,
bad rows recorded, a rerun that recomputes nothing, sharding by image."""

import json
from pathlib import Path

import pytest

from dglrsis import batch, io
from dglrsis.cli import main
from dglrsis.errors import DglrsisError
from dglrsis.eval.world import iter_scenes
from dglrsis.pairs import read_pairs, slug
from dglrsis.predictor import Predictor


def _touch(p: Path) -> Path:
    p.parent.mkdir(parents=True, exist_ok=True)
    p.write_bytes(b"x")
    return p


def test_read_pairs_csv_tsv_names_and_bad_rows(tmp_path):
    for rel in ("imgs/a.png", "imgs/sub/b.png", "other/a.png"):
        _touch(tmp_path / rel)
    (tmp_path / "p.csv").write_text(
        "Expression,note,IMAGE\n"  # any column order and case; other columns ignored
        '"the ship, on the left",x,imgs/a.png\n'
        "# a comment\n\n"
        "the harbor,,imgs/sub/b.png\n"
        "the tank,,imgs/sub/../a.png\n"
        '"the ship, on the left",y,imgs/a.png\n'  # the same pair again: dropped
        "the plane,,imgs/missing.png\n"
        ",,imgs/a.png\n"
        "of the,,imgs/a.png\n"
    )
    refuse = lambda t: "no noun" if t == "of the" else None  # noqa: E731
    entries = read_pairs(tmp_path / "p.csv", refuse)
    ship, tank = slug("the ship, on the left"), slug("the tank")
    assert [(e.name, e.text) for e in entries if not e.error] == [
        (f"imgs/a.{ship}", "the ship, on the left"),  # named by the path from the pairs file's folder
        (f"imgs/a.{tank}", "the tank"),
        (f"imgs/sub/b.{slug('the harbor')}", "the harbor"),
    ]
    assert {e.name: e.error for e in entries if e.error} == {
        f"imgs/a.{slug('of the')}": "p.csv line 10: no noun",
        f"imgs/missing.{slug('the plane')}": f"p.csv line 8: no such image {tmp_path / 'imgs/missing.png'}",
        "p.csv:9": "p.csv line 9: no expression",
    }
    assert ship.startswith("the-ship-on-the-left-") and len(ship) == 20 + 7 and slug("船").startswith("expr-")
    assert len(slug("the very very long expression about the small ship next to the pier")) <= 32 + 7
    (tmp_path / "p.tsv").write_text("image\texpression\nimgs/a.png\tthe ship, on the left\n")
    assert [e.name for e in read_pairs(tmp_path / "p.tsv")] == [f"imgs/a.{ship}"]
    lists = tmp_path / "lists"
    lists.mkdir()
    for name, text, msg in [
        ("p.txt", "image,expression\n", "use a .csv"),
        ("h.csv", "img,expression\na.png,x\n", "missing: image"),
        ("e.csv", "image,expression\n", "no pairs"),
        ("c.csv", "image,expression\n../imgs/a.png,x\n../other/a.png,z\n", "same outputs"),  # stems
    ]:
        (lists / name).write_text(text)
        with pytest.raises(DglrsisError, match=msg):
            read_pairs(lists / name)


def test_shard_jobs_keeps_an_images_pairs_together(tmp_path):
    entries = [batch.Entry(Path(f"{i // 2}.png"), f"{i // 2}.e{i}", f"e{i}") for i in range(7)]
    jobs = batch.plan_jobs(entries, tmp_path / "o", {"labels": ".tif"})
    parts = [batch.shard_jobs(jobs, r, 2) for r in range(2)]
    assert [[j.name for j in p] for p in parts] == [
        ["0.e0", "0.e1", "2.e4", "2.e5"],
        ["1.e2", "1.e3", "3.e6"],
    ]
    single = batch.plan_jobs([batch.Entry(Path(f"{i}.png"), str(i)) for i in range(5)], tmp_path / "o", {})
    assert batch.shard_jobs(single, 1, 2) == batch.shard(single, 1, 2)  # one job per input: as before


@pytest.fixture(scope="module")
def pair_images(tmp_path_factory):
    root = tmp_path_factory.mktemp("pairs")
    for i, scene in enumerate(iter_scenes(seed=7, n=2, size=128)):
        io.write_rgb_png(root / f"s{i}.png", scene.image)
    (root / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n")  # a truncated image
    (root / "pairs.csv").write_text(
        "image,expression\n"
        "s0.png,the ship\n"
        "s0.png,the large storage tank on the left\n"
        "s1.png,the harbor\n"
        "nope.png,the ship\n"
        "broken.png,the plane\n"
        "s1.png,of the\n"
    )
    return root


ARGS = ["--clip", "world-clip", "--scales", "1.0", "--min-confidence", "0", "--scores", "json"]


def _outputs(d: Path) -> dict:
    return {p.name: p.read_bytes() for p in sorted(d.iterdir()) if not p.name.startswith((".", "manifest"))}


def test_refer_pairs_cli(pair_images, tmp_path, capsys, monkeypatch):
    calls, set_image = [], Predictor.set_image
    monkeypatch.setattr(Predictor, "set_image", lambda s, *a, **k: calls.append(1) or set_image(s, *a, **k))
    out = tmp_path / "out"
    argv = ["refer", "--pairs", str(pair_images / "pairs.csv"), *ARGS, "--out-dir", str(out)]
    assert main(argv) == 2
    std = capsys.readouterr()
    assert "6 input(s): 3 done, 0 already done, 3 failed" in std.out
    failed = [ln for ln in std.err.splitlines() if ln.startswith("failed: ")]
    assert len(failed) == 3 and "Traceback" not in std.err and "internal error" not in std.err
    assert len(calls) == 2  # s0 (two expressions) embedded once, s1 once (broken.png fails on reading)
    files = _outputs(out)
    ship, tank, harbor = (slug(t) for t in ("the ship", "the large storage tank on the left", "the harbor"))
    assert sorted(files) == sorted(
        f"{n}{s}" for n in (f"s0.{ship}", f"s0.{tank}", f"s1.{harbor}") for s in (".tif", ".scores.json")
    )
    assert json.loads(files[f"s0.{tank}.scores.json"])["text"] == "the large storage tank on the left"
    man = json.loads((out / "manifest.json").read_text())
    recs = man["inputs"]
    assert man["settings"]["pairs"] is True and man["settings"]["text"] is None
    assert recs[f"s0.{ship}"]["expression"] == "the ship" and recs[f"s0.{ship}"]["state"] == "done"
    bad = {k: r["error"] for k, r in recs.items() if r["state"] == "failed"}
    assert sorted(bad) == sorted([f"nope.{ship}", f"broken.{slug('the plane')}", f"s1.{slug('of the')}"])
    assert "line 5: no such image" in bad[f"nope.{ship}"] and "no noun" in bad[f"s1.{slug('of the')}"]
    assert "truncated" in bad[f"broken.{slug('the plane')}"] or "cannot" in bad[f"broken.{slug('the plane')}"]
    assert all("\n" not in e for e in bad.values())
    # a rerun recomputes nothing (no image embedded) and leaves the same bytes
    calls.clear()
    assert main(argv) == 2
    assert "6 input(s): 0 done, 3 already done, 3 failed" in capsys.readouterr().out
    assert calls == [] and _outputs(out) == files  # (the failures are tried again and fail again)


def test_refer_pairs_checks_before_any_model(pair_images, tmp_path, capsys):
    pairs = str(pair_images / "pairs.csv")
    for argv, msg in [
        (["--pairs", pairs], "needs --out-dir"),
        (["x.png", "--pairs", pairs, "--out-dir", str(tmp_path)], "not both"),
        (["--pairs", str(tmp_path / "none.csv"), "--out-dir", str(tmp_path / "o")], "cannot read"),
    ]:
        assert main(["refer", *argv, "--clip", "no-such-model"]) == 2
        err = capsys.readouterr().err
        assert msg in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "o").exists()
