"""Training loop, exact resume, config overrides, open-vocabulary labels and Table-1 evaluation
(tiny stand-in model, tiny world scenes, CPU)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from torch import nn

from dglrsis.errors import DglrsisError
from dglrsis.trainable import models as models_mod
from dglrsis.trainable.config import build_config, parse_value
from dglrsis.trainable.data import SegDataset, Source, StepBatchSampler, augment, background_lut, seen_lut
from dglrsis.trainable.evaluate import evaluate, table
from dglrsis.trainable.train import read_log, seg_loss, train


class TinySeg(nn.Module):
    """Stand-in for the contract: B×3×H×W → B×K×H/4×W/4, class embeddings from character codes."""

    input_size, mean, std = 32, (0.5, 0.5, 0.5), (0.25, 0.25, 0.25)

    def __init__(self, cfg=None):
        super().__init__()
        self.net = nn.Sequential(nn.Conv2d(3, 16, 3, 2, 1), nn.ReLU(), nn.Conv2d(16, 16, 3, 2, 1))
        self.chars = nn.Embedding(128, 16)

    def forward(self, images, class_names):
        codes = [torch.tensor([ord(c) % 128 for c in n]) for n in class_names]
        text = torch.stack([self.chars(c).mean(0) for c in codes])
        return torch.einsum("bchw,kc->bkhw", self.net(images), text)

    def param_groups(self, lr, clip_lr_mult=0.01, weight_decay=1e-4):
        return [
            {"params": list(self.net.parameters()), "lr": lr, "weight_decay": weight_decay},
            {"params": list(self.chars.parameters()), "lr": lr * clip_lr_mult, "weight_decay": weight_decay},
        ]


@pytest.fixture(autouse=True)
def tiny_model(monkeypatch):
    monkeypatch.setitem(models_mod.MODELS, "tiny", TinySeg)


OVR = [
    "name=tiny",
    "data.world_n=6",
    "data.world_size=48",
    "data.val_n=2",
    "train.iterations=6",
    "train.batch_size=2",
    "train.grad_accum=2",
    "train.save_every=2",
    "train.lr=1e-2",
    "train.grad_clip=1.0",
]


def test_overrides_parse_with_types():
    cfg = build_config(
        {"name": "catseg", "train": {"lr": 1}},
        [
            "train.lr=1e-4",
            "train.iterations=10",
            "data.train_classes=[ship,harbor]",
            "data.hflip=false",
            "data.scale=[0.5,1.5]",
            "data.root=null",
        ],
    )
    assert cfg.train.lr == 1e-4 and isinstance(cfg.train.lr, float)
    assert cfg.train.iterations == 10 and cfg.data.train_classes == ["ship", "harbor"]
    assert cfg.data.hflip is False and cfg.data.scale == (0.5, 1.5) and cfg.data.root is None
    assert parse_value("2e-4") == 2e-4
    with pytest.raises(DglrsisError):
        build_config({}, ["train.nope=1"])
    with pytest.raises(DglrsisError):
        build_config({}, ["train.lr"])


def test_background_and_held_out_classes_become_ignore():
    names = ["background", "ship", "harbor", "bridge"]
    bg, kept = background_lut(names, "ignore")
    assert kept == ["ship", "harbor", "bridge"]
    seen, seen_names = seen_lut(kept, ["ship", "bridge"])
    assert seen_names == ["ship", "bridge"]
    label = np.array([[0, 1, 2, 3, 255]], np.uint8)
    np.testing.assert_array_equal(seen[bg][label], [[255, 0, 255, 1, 255]])
    np.testing.assert_array_equal(background_lut(names, "class")[0][label], label)
    src = Source(names, [lambda: (np.zeros((8, 8, 3), np.uint8), np.tile(label[:, :4], (8, 2)))], ["a"])
    item = SegDataset(src, seen[bg], 8, (0, 0, 0), (1, 1, 1), train=True, aug={"scale": (1.0, 1.0)})[(0, 3)]
    assert set(item["label"].unique().tolist()) == {0, 1, 255}
    with pytest.raises(DglrsisError):
        seen_lut(kept, ["plane"])


def test_augment_shapes_and_nearest_labels():
    rng = np.random.default_rng(0)
    img = rng.integers(0, 255, (20, 30, 3), dtype=np.uint8)
    lab = rng.integers(0, 3, (20, 30)).astype(np.uint8)
    for seed in range(5):
        x, y = augment(img, lab, 16, np.random.default_rng(seed), (0.5, 2.0), True, True, True)
        assert x.shape == (3, 16, 16) and y.shape == (16, 16)
        assert set(y.unique().tolist()) <= {0, 1, 2, 255}  # nearest: no blended label values


def test_step_sampler_is_deterministic_and_resumable():
    full = list(StepBatchSampler(10, 4, 7, 0, 5, grad_accum=2))
    tail = list(StepBatchSampler(10, 4, 7, 3, 5, grad_accum=2))
    assert len(full) == 10 and full[6:] == tail
    r0 = list(StepBatchSampler(10, 4, 7, 0, 5, 1, num_processes=2, rank=0))
    r1 = list(StepBatchSampler(10, 4, 7, 0, 5, 1, num_processes=2, rank=1))
    assert [a + b for a, b in zip(r0, r1, strict=False)] == list(StepBatchSampler(10, 4, 7, 0, 5))
    with pytest.raises(DglrsisError):
        StepBatchSampler(10, 3, 0, 0, 1, grad_accum=2)


def test_loss_decreases_on_fixed_batch():
    torch.manual_seed(0)
    model = TinySeg()
    x = torch.randn(2, 3, 32, 32) * 0.1
    x[..., 16:] += 1.0  # bright right half = class 1
    y = torch.zeros(2, 32, 32, dtype=torch.long)
    y[..., 16:] = 1
    y[:, :4] = 255
    opt = torch.optim.AdamW(model.param_groups(1e-2, clip_lr_mult=1.0), lr=1e-2)
    losses = []
    for _ in range(15):
        loss = seg_loss(model(x, ["dark", "bright"]), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < 0.8 * losses[0]


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    import dglrsis.trainable.models as mm

    mm.MODELS["tiny"] = TinySeg
    root = tmp_path_factory.mktemp("runs")
    cfg = build_config({}, OVR)
    full = train(cfg, root / "full")
    train(cfg, root / "split", stop_after=3)
    interrupted = [float(r["loss"]) for r in read_log(root / "split" / "log.csv")]
    resumed = train(cfg, root / "split", resume="")
    return root, full, interrupted, resumed


def test_resume_gives_identical_losses(runs):
    root, _full, interrupted, resumed = runs
    a = [float(r["loss"]) for r in read_log(root / "full" / "log.csv")]
    b = [float(r["loss"]) for r in read_log(root / "split" / "log.csv")]
    assert len(a) == 6 and len(interrupted) == 3 and resumed["step"] == 6
    np.testing.assert_allclose(b, a, rtol=0, atol=1e-6)
    assert [int(r["step"]) for r in read_log(root / "split" / "log.csv")] == list(range(1, 7))


def test_checkpoints_are_complete_and_pruned(runs):
    root = runs[0]
    ckpts = sorted(p.name for p in (root / "full" / "checkpoints").iterdir())
    assert ckpts == ["step_00002", "step_00004", "step_00006"]  # keep_checkpoints=3, no temporary folder left
    assert (root / "full" / "checkpoints" / "step_00006" / "step.txt").read_text() == "6"
    assert (root / "full" / "model.safetensors").is_file()
    assert read_log(root / "full" / "log.csv")[-1]["miou"] != ""
    with pytest.raises(DglrsisError):
        train(build_config({}, OVR), root / "empty", resume="")


def test_evaluate_writes_table1(runs, tmp_path):
    root = runs[0]
    out = evaluate(root / "full", ["world"], out=tmp_path / "ev", limit=2)
    data = json.loads((tmp_path / "ev" / "results.json").read_text())
    md = (tmp_path / "ev" / "results.md").read_text()
    assert {"sets", "m-mIoU", "m-mACC"} <= set(data) and "m-mIoU" in md and "world mIoU" in md
    assert data["m-mIoU"] == pytest.approx(out["sets"]["world"]["mIoU"], abs=1e-4)
    # same held-out scenes and metric code as the periodic evaluation at the last training step
    assert out["sets"]["world"]["mIoU"] == pytest.approx(
        float(read_log(root / "full" / "log.csv")[-1]["miou"])
    )
    two = table({"a": {"mIoU": 40.0, "mACC": 50.0}, "b": {"mIoU": 60.0, "mACC": 70.0}})
    assert two["m-mIoU"] == 50.0 and two["m-mACC"] == 60.0


def _model_configs(root):
    """The models' configs (world_clip.yaml is world-clip's recipe: tests/test_world_clip.py)."""
    return [f for f in sorted(root.glob("*.yaml")) if f.name != "world_clip.yaml"]


def test_shipped_configs_load():
    from pathlib import Path

    import dglrsis.trainable as pkg
    from dglrsis.trainable.config import load_config

    files = _model_configs(Path(pkg.__file__).parent / "configs")
    assert len(files) >= 20
    for f in files:
        cfg = load_config(f)
        assert cfg.train.batch_size == 8, f.name
        if f.name.startswith("world_"):  # short CPU schedule on the synthetic world (README figures)
            assert cfg.model.clip == "world-clip" and cfg.train.iterations <= 1000, f.name
        else:  # the papers' setting
            assert cfg.train.lr == pytest.approx(2e-4) and cfg.train.clip_lr_mult == pytest.approx(0.01), (
                f.name
            )
            assert cfg.train.iterations >= 30000, f.name
    assert load_config(files[0], ["train.iterations=5"]).train.iterations == 5


def test_configs_are_one_level_deltas_with_typed_keys(tmp_path):
    from pathlib import Path

    import yaml

    import dglrsis.trainable as pkg
    from dglrsis.trainable.config import load_config

    root = Path(pkg.__file__).parent / "configs"
    for f in _model_configs(root):
        base = yaml.safe_load(f.read_text())["base"]
        assert "base" not in yaml.safe_load((root / base).read_text()), f.name
        if f.name.startswith("drseg_"):  # the paper DR-Seg configs name their SPSD ranking
            assert load_config(f).model.spsd_path.endswith(".spsd.json"), f.name
    (tmp_path / "b.yaml").write_text("model: {hidden: 8}\ntrain: {lr: 0.5, iterations: 7}\n")
    (tmp_path / "d.yaml").write_text("base: b.yaml\nname: gsnet\nmodel: {qgff: false}\ntrain: {lr: 0.25}\n")
    cfg = load_config(tmp_path / "d.yaml")
    assert (cfg.model.hidden, cfg.model.qgff, cfg.train.lr, cfg.train.iterations) == (8, False, 0.25, 7)
    (tmp_path / "c.yaml").write_text("base: d.yaml\n")
    with pytest.raises(DglrsisError, match="one level"):
        load_config(tmp_path / "c.yaml")
    with pytest.raises(DglrsisError, match=r"model\.qgff is not an option of catseg"):
        load_config(tmp_path / "d.yaml", ["name=catseg"])
    with pytest.raises(DglrsisError, match=r"train\.iterations must be int"):
        build_config({}, ["train.iterations=many"])
    with pytest.raises(DglrsisError, match=r"model\.use_rotations must be bool"):
        build_config({"name": "rsktseg"}, ["model.use_rotations=3"])
