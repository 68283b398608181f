"""The bad-input corpus: every user-caused failure of every command is one line on stderr, exit code 2
(3 for ``refer``'s documented *not found*), no traceback, no output left behind and no input changed.

Each case gets a fresh folder holding a small world (iSAID, RRSIS-D, a 4-band GeoTIFF) and runs the
command in-process from that folder; the whole folder (every file's bytes and mode) must be the same
afterwards, except for what the case itself declares (none does)."""

from __future__ import annotations

import hashlib
import json
import shutil
import stat
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

W = "w"  # the world inside each case folder
IMG = f"{W}/isaid/train/images/P0000.png"
JPG = f"{W}/images/rrsisd/JPEGImages/00000.jpg"
TIF = f"{W}/geotiff/scene.tif"
REFS = f"{W}/rrsisd/refs(unc).p"
CLIP = ["--clip", "world-clip", "--proposals", "slic"]


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    from dglrsis.cli import main

    root = tmp_path_factory.mktemp("corpus") / W
    assert (
        main(["world", "--out", str(root), "--n", "2", "--size", "128", "--geotiff", "160", "--quiet"]) == 0
    )
    return root


@pytest.fixture(scope="module")
def run_folder(tmp_path_factory):
    """A finished two-step training run of the tiny stand-in model (for trainable.* cases)."""
    import torch
    from torch import nn

    import dglrsis.trainable.models as mm
    from dglrsis.trainable.config import build_config
    from dglrsis.trainable.train import train

    class Tiny(nn.Module):
        input_size, mean, std = 32, (0.5, 0.5, 0.5), (0.25, 0.25, 0.25)

        def __init__(self, cfg=None):
            super().__init__()
            self.net = nn.Conv2d(3, 8, 4, 4)
            self.chars = nn.Embedding(128, 8)

        def forward(self, images, class_names):
            text = torch.stack(
                [self.chars(torch.tensor([ord(c) % 128 for c in n])).mean(0) for n in class_names]
            )
            return torch.einsum("bchw,kc->bkhw", self.net(images), text)

        def param_groups(self, lr, clip_lr_mult=0.01, weight_decay=1e-4):
            return [{"params": list(self.parameters()), "lr": lr, "weight_decay": weight_decay}]

    mm.MODELS["tiny"] = Tiny
    over = ["name=tiny", "data.world_n=4", "data.world_size=32", "data.val_n=1", "train.iterations=2"]
    over += ["train.batch_size=2", "train.save_every=1", "train.grad_accum=1"]
    out = tmp_path_factory.mktemp("runs") / "run"
    train(build_config({}, over), out)
    yield out, over
    mm.MODELS.pop("tiny", None)


# --- helpers that spoil a file in the case folder -------------------------------------------------------


def truncate(path: Path, keep: float = 0.5) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * keep)])


def write(path: Path, data: bytes | str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data.encode() if isinstance(data, str) else data)


def edit_json(path: Path, fn) -> None:
    path.write_text(json.dumps(fn(json.loads(path.read_text()))))


def paint_off_palette(d: Path) -> None:
    """Half of P0000's iSAID colour label painted in a colour that is no iSAID class."""
    lab = d / W / "isaid/train/Semantic_masks/images/P0000_instance_color_RGB.png"
    arr = np.array(Image.open(lab).convert("RGB"))
    arr[: arr.shape[0] // 2] = (17, 201, 93)
    Image.fromarray(arr).save(lab)


def read_only(path: Path) -> None:
    path.write_bytes(b"keep me")
    path.chmod(0o444)


def run_dir(d: Path, run_folder) -> Path:
    dst = d / "run"
    shutil.copytree(run_folder[0], dst)
    return dst


# --- the corpus -------------------------------------------------------------------------------------------
# Case(id, argv, prep): argv runs from the case folder after prep(case folder, finished run) spoils a file.
# entry: "cli" (dglrsis), "train" (python -m dglrsis.trainable.train), "evaluate" (…trainable.evaluate).


@dataclass(frozen=True)
class Case:
    id: str
    argv: list
    prep: object = None
    entry: str = "cli"


SEG = ["segment", "--classes", "ship,plane"]
EV_RES = ["eval", "res", "--dataset", "rrsisd", "--root", f"{W}/rrsisd", "--split", "test", *CLIP]
EV_OVSS = ["eval", "ovss", "--dataset", "isaid", "--root", f"{W}/isaid", "--split", "train", *CLIP]
OUT = ["--out", "o.png"]
LABEL = f"{W}/isaid/train/Semantic_masks/images/P0000_instance_color_RGB.png"
CKPT = "run/checkpoints/step_00002"
EVAL_RUN = ["--checkpoint", "run", "--sets", "world", "--out", "ev"]
TRAIN_RUN = ["--output", "run", "--resume", CKPT]


def _tensor_ckpt(d, rf) -> None:
    import torch

    torch.save(torch.zeros(3), d / "t.pt")


def _drop_ann_ids(data):
    for a in data["annotations"]:
        a.pop("id", None)
    return data


def _bad_cfg_type(cfg):
    cfg.setdefault("train", {})["lr"] = "fast"
    return cfg


def _other_weights(run: Path) -> None:
    import torch
    from safetensors.torch import save_file

    save_file({"nosuch.weight": torch.zeros(2)}, str(run / "model.safetensors"))


def put(name, data):
    return lambda d, rf: write(d / name, data)


def cut(name, keep=0.5):
    return lambda d, rf: truncate(d / name, keep)


def on_run(fn=None):
    """A copy of the finished run as ``run/`` in the case folder, then ``fn(run)``."""

    def prep(d, rf):
        run = run_dir(d, rf)
        if fn:
            fn(run)

    return prep


CASES = [
    # info
    Case("info-missing", ["info", "nope.tif"]),
    Case("info-zero-byte", ["info", "z.tif"], put("z.tif", b"")),
    Case("info-truncated-png", ["info", IMG], cut(IMG, 0.3)),
    Case("info-text-as-tif", ["info", "t.tif"], put("t.tif", "not an image\n")),
    Case("info-directory", ["info", W]),
    # segment: inputs
    Case("segment-missing-input", [*SEG, "nope.png", *OUT]),
    Case("segment-zero-byte", [*SEG, "z.png", *OUT, *CLIP], put("z.png", b"")),
    Case("segment-truncated-tif", [*SEG, TIF, "--out", "o.tif", *CLIP], cut(TIF, 0.4)),
    Case("segment-folder-without-out-dir", [*SEG, W, *OUT]),
    Case("segment-glob-matches-nothing", [*SEG, "none/*.png", "--out-dir", "od", *CLIP]),
    Case("segment-missing-list", [*SEG, "@list.txt", "--out-dir", "od", *CLIP]),
    # segment: outputs
    Case("segment-out-is-input", [*SEG, IMG, "--out", IMG, *CLIP]),
    Case("segment-out-jpg", [*SEG, IMG, "--out", "o.jpg", *CLIP]),
    Case("segment-nothing-to-write", [*SEG, IMG, *CLIP]),
    Case("segment-out-is-folder", [*SEG, IMG, "--out", "x.png", *CLIP], lambda d, rf: (d / "x.png").mkdir()),
    Case(
        "segment-out-read-only", [*SEG, IMG, "--out", "ro.png", *CLIP], lambda d, rf: read_only(d / "ro.png")
    ),
    Case("segment-out-missing-folder", [*SEG, IMG, "--out", "no/such/o.png", *CLIP]),
    Case("segment-out-under-a-file", [*SEG, IMG, "--out", f"{IMG}/o.png", *CLIP]),
    Case("segment-two-outputs-same", [*SEG, IMG, *OUT, "--overlay", "o.png", *CLIP]),
    Case("segment-scores-not-json", [*SEG, IMG, *OUT, "--scores", "s.txt", *CLIP]),
    Case("segment-vectors-shp", [*SEG, IMG, "--vectors", "v.shp", *CLIP]),
    Case("segment-out-dir-bad-format", [*SEG, W, "--out-dir", "od", "--out", "jpg", *CLIP]),
    Case("segment-out-dir-is-file", [*SEG, IMG, "--out-dir", "od", *CLIP], put("od", "x")),
    # segment: options
    Case("segment-empty-classes", ["segment", "--classes", " , ", IMG, *OUT, *CLIP]),
    Case("segment-missing-classes-file", ["segment", "--classes-file", "v.txt", IMG, *OUT]),
    Case("segment-bands-out-of-range", [*SEG, TIF, "--bands", "5,6,7", "--out", "o.tif", *CLIP]),
    Case("segment-bands-unknown-name", [*SEG, TIF, "--bands", "B99,B03,B02", "--out", "o.tif", *CLIP]),
    Case("segment-bad-stretch", [*SEG, TIF, "--stretch", "sideways", "--out", "o.tif", *CLIP]),
    Case("segment-tile-zero", [*SEG, IMG, "--tile", "0", *OUT, *CLIP]),
    Case("segment-overlap-ge-tile", [*SEG, IMG, "--tile", "64", "--overlap", "64", *OUT]),
    Case("segment-unknown-clip", [*SEG, IMG, "--clip", "ViT-Q-99", *OUT]),
    Case("segment-openai-weights-absent", [*SEG, IMG, "--clip", "ViT-B-16:openai", *OUT]),
    Case("segment-sam-weights-absent", [*SEG, IMG, "--proposals", "sam", *OUT]),
    Case(
        "segment-clip-checkpoint-tensor",
        [*SEG, IMG, "--clip", "ViT-B-16", "--clip-checkpoint", "t.pt", *OUT],
        _tensor_ckpt,
    ),
    Case("segment-unknown-proposals", [*SEG, IMG, "--proposals", "watershed", *OUT]),
    Case("segment-negative-simplify", [*SEG, IMG, "--vectors", "v.gpkg", "--simplify", "-1", *CLIP]),
    Case("segment-bad-background", [*SEG, IMG, "--background", "magic:9", *OUT, *CLIP]),
    # refer
    Case("refer-no-text", ["refer", IMG]),
    Case("refer-stop-words-only", ["refer", JPG, "the of and on", "--out", "m.png", *CLIP]),
    Case("refer-emoji", ["refer", JPG, "🚢🛩️", "--out", "m.png", *CLIP]),
    Case("refer-french", ["refer", JPG, "le grand bâteau à gauche", "--out", "m.png", *CLIP]),
    Case("refer-out-is-input", ["refer", IMG, "the ship", "--out", IMG, *CLIP]),
    Case("refer-chinese", ["refer", JPG, "左边的大船", "--out", "m.png", *CLIP]),
    Case("refer-cam-jpg", ["refer", JPG, "the ship", "--cam", "c.jpg", *CLIP]),
    Case(
        "refer-pairs-without-out-dir",
        ["refer", "--pairs", "p.csv"],
        put("p.csv", f"image,expression\n{JPG},ship\n"),
    ),
    Case(
        "refer-pairs-bad-header",
        ["refer", "--pairs", "p.csv", "--out-dir", "od", *CLIP],
        put("p.csv", "a,b\nx,y\n"),
    ),
    Case("refer-bad-scales", ["refer", JPG, "the ship", "--scales", "0,-1", "--out", "m.png", *CLIP]),
    # decompose
    Case("decompose-empty", ["decompose", "   "]),
    Case("decompose-missing-vocabulary", ["decompose", "the ship", "--classes-file", "nope.txt"]),
    # world, convert
    Case("world-n-zero", ["world", "--out", "nw", "--n", "0", "--quiet"]),
    Case("world-out-is-file", ["world", "--out", "nw", "--n", "1", "--quiet"], put("nw", "x")),
    Case("world-size-tiny", ["world", "--out", "nw", "--n", "1", "--size", "3", "--quiet"]),
    Case("convert-missing-root", ["convert", "isaid", "--root", "nope", "--out", "cv"]),
    Case(
        "convert-overlap-ge-patch",
        ["convert", "isaid", "--root", f"{W}/isaid", "--out", "cv", "--patch", "64", "--overlap", "64"],
    ),
    Case("convert-out-is-input", ["convert", "isaid", "--root", f"{W}/isaid", "--out", f"{W}/isaid"]),
    # eval
    Case("eval-missing-root", ["eval", "res", "--dataset", "rrsisd", "--root", "nope", *CLIP]),
    Case(
        "eval-bad-split",
        ["eval", "res", "--dataset", "rrsisd", "--root", f"{W}/rrsisd", "--split", "x", *CLIP],
    ),
    Case("eval-memo-bomb", EV_RES, put(REFS, bytes.fromhex("80025d72000000402e"))),
    Case("eval-truncated-refs", EV_RES, cut(REFS)),
    Case("eval-instances-list", EV_RES, put(f"{W}/rrsisd/instances.json", "[]")),
    Case(
        "eval-instances-no-ids",
        EV_RES,
        lambda d, rf: edit_json(d / W / "rrsisd/instances.json", _drop_ann_ids),
    ),
    Case(
        "eval-off-palette-labels", [*EV_OVSS, "--quiet", "--cache", "c"], lambda d, rf: paint_off_palette(d)
    ),
    Case("eval-out-is-folder", [*EV_RES, "--out", "r.json"], lambda d, rf: (d / "r.json").mkdir()),
    Case("eval-out-not-json", [*EV_RES, "--out", "r.txt"]),
    Case("eval-out-missing-folder", [*EV_RES, "--out", "no/r.json"]),
    Case("eval-cache-is-file", [*EV_RES, "--cache", "c"], put("c", "x")),
    Case("eval-limit-zero", [*EV_RES, "--limit", "0"]),
    Case("eval-ovrsisbench-without-set", ["eval", "ovss", "--dataset", "ovrsisbench", "--root", W, *CLIP]),
    Case("eval-missing-predictions", [*EV_OVSS, "--predictions", "nope"]),
    Case(
        "eval-missing-prediction-file",
        [*EV_OVSS, "--quiet", "--predictions", "pr"],
        lambda d, rf: (d / "pr").mkdir(),
    ),
    # models, demo, the command line itself
    Case("models-bad-family", ["models", "--family", "yolo"]),
    Case("demo-bad-port", ["demo", "--port", "99999"]),
    Case("no-command", []),
    Case("unknown-command", ["paint"]),
    # trainable.train
    Case("train-missing-config", ["--config", "nope.yaml", "--output", "r2"], entry="train"),
    Case(
        "train-bad-yaml",
        ["--config", "c.yaml", "--output", "r2"],
        put("c.yaml", "model: [unclosed\n"),
        "train",
    ),
    Case(
        "train-truncated-config",
        ["--config", "c.json", "--output", "r2"],
        put("c.json", '{"name": "tiny", "tr'),
        "train",
    ),
    Case(
        "train-config-is-list", ["--config", "c.yaml", "--output", "r2"], put("c.yaml", "- 1\n- 2\n"), "train"
    ),
    Case("train-unknown-key", ["--output", "r2", "train.nosuch=1"], entry="train"),
    Case("train-bad-type", ["--output", "r2", "train.lr=fast"], entry="train"),
    Case("train-resume-nothing", ["--output", "r2", "--resume", ""], entry="train"),
    Case(
        "train-truncated-checkpoint",
        TRAIN_RUN,
        on_run(lambda r: truncate(r / "checkpoints/step_00002/model.safetensors")),
        "train",
    ),
    Case(
        "train-tampered-optimizer",
        TRAIN_RUN,
        on_run(lambda r: write(r / "checkpoints/step_00002/optimizer.bin", b"\x80\x04junk")),
        "train",
    ),
    Case(
        "train-bad-step",
        TRAIN_RUN,
        on_run(lambda r: write(r / "checkpoints/step_00002/step.txt", "seven")),
        "train",
    ),
    # trainable.evaluate
    Case("evaluate-missing-checkpoint", ["--checkpoint", "nope", "--sets", "world"], entry="evaluate"),
    Case("evaluate-unknown-set", [*EVAL_RUN[:3], "nosuch"], on_run(), "evaluate"),
    Case("evaluate-set-needs-root", [*EVAL_RUN[:3], "dlrsd"], on_run(), "evaluate"),
    Case("evaluate-truncated-config", EVAL_RUN, on_run(lambda r: truncate(r / "config.json")), "evaluate"),
    Case(
        "evaluate-config-bad-type",
        EVAL_RUN,
        on_run(lambda r: edit_json(r / "config.json", _bad_cfg_type)),
        "evaluate",
    ),
    Case(
        "evaluate-truncated-weights",
        EVAL_RUN,
        on_run(lambda r: truncate(r / "model.safetensors")),
        "evaluate",
    ),
    Case("evaluate-weights-mismatch", EVAL_RUN, on_run(_other_weights), "evaluate"),
    Case("evaluate-limit-negative", [*EVAL_RUN, "--limit", "-1"], on_run(), "evaluate"),
]


# --- the harness ------------------------------------------------------------------------------------------


def snapshot(root: Path) -> dict:
    """Every entry under ``root`` → (kind, mode, sha256 of the bytes)."""
    out = {}
    for p in sorted(root.rglob("*")):
        st = p.lstat()
        digest = hashlib.sha256(p.read_bytes()).hexdigest() if p.is_file() else ""
        out[str(p.relative_to(root))] = (stat.S_IFMT(st.st_mode), stat.S_IMODE(st.st_mode), digest)
    return out


def invoke(entry: str, argv: list[str], capsys) -> tuple[int, str]:
    if entry == "cli":
        from dglrsis.cli import main
    elif entry == "train":
        from dglrsis.trainable.train import main
    else:
        from dglrsis.trainable.evaluate import main
    capsys.readouterr()
    try:
        code = main(argv)
    except SystemExit as exc:  # argparse
        code = exc.code
    return code, capsys.readouterr().err


def check(entry, argv, d, capsys, expected=2):
    before = snapshot(d)
    code, err = invoke(entry, argv, capsys)
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert code == expected, f"exit {code}, stderr: {err[-600:]}"
    assert "Traceback" not in err and "internal error" not in err, err[-600:]
    assert len(lines) == 1, f"{len(lines)} stderr lines: {err[-600:]}"
    assert "error" in lines[0] or "not found" in lines[0], lines[0]
    after = snapshot(d)
    assert after == before, f"changed: {sorted(set(after.items()) ^ set(before.items()))[:4]}"
    return lines[0]


@pytest.fixture
def case_dir(tmp_path, world, monkeypatch):
    shutil.copytree(world, tmp_path / W)
    monkeypatch.chdir(tmp_path)
    for var in ("ACCELERATE_PROCESS_ID", "RANK", "WORLD_SIZE", "LOCAL_RANK"):
        monkeypatch.delenv(var, raising=False)
    return tmp_path


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_bad_input_is_one_line_exit_2_and_leaves_nothing(case, case_dir, request, capsys):
    rf = request.getfixturevalue("run_folder") if case.entry != "cli" else None
    argv = list(case.argv)
    if case.entry == "train":
        argv += rf[1]  # the tiny model's overrides
    if case.prep:
        case.prep(case_dir, rf)
    check(case.entry, argv, case_dir, capsys)


def test_purple_giraffe_is_not_found_exit_3(case_dir, capsys):
    """An expression naming nothing in the image: the documented *not found* (exit 3), no mask."""
    line = check(
        "cli", ["refer", JPG, "the purple giraffe", "--out", "m.png", *CLIP], case_dir, capsys, expected=3
    )
    assert "not found" in line


def test_corpus_is_large_enough():
    assert len(CASES) >= 40 and len({c.id for c in CASES}) == len(CASES)
    assert {c.entry for c in CASES} == {"cli", "train", "evaluate"}


def test_resume_without_rng_state_warns_on_stderr(tmp_path, run_folder, monkeypatch, capsys):
    """accelerate only logs a skipped random-number state at INFO; trainable.train says it on stderr."""
    run = run_dir(tmp_path, run_folder)
    (run / "checkpoints/step_00002/random_states_0.pkl").unlink()
    monkeypatch.chdir(tmp_path)
    code, err = invoke("train", [*TRAIN_RUN, *run_folder[1]], capsys)
    assert code == 0
    assert "warning" in err and "random_states_0.pkl" in err and "differ" in err
    shutil.copy(run_folder[0] / "checkpoints/step_00002/random_states_0.pkl", run / "checkpoints/step_00002")
    code, err = invoke("train", [*TRAIN_RUN, *run_folder[1]], capsys)  # a sound checkpoint: no warning
    assert code == 0 and "warning" not in err
