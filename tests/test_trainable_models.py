"""Trainable cost-aggregation models: shapes, gradient selection, parameter budgets (Pi-Seg Table XII)."""

import json
from pathlib import Path

import pytest
import torch

from dglrsis.errors import DglrsisError
from dglrsis.trainable.models import ModelConfig, build_model

CLASSES = ["ship", "harbor", "plane"]


@pytest.fixture(scope="module")
def small_catseg():
    torch.manual_seed(0)
    return build_model("catseg", ModelConfig(clip="world-clip", input_size=32))


def test_catseg_shape_and_gradients(small_catseg):
    m = small_catseg.train()
    x = torch.randn(2, 3, m.input_size, m.input_size)
    m.zero_grad()
    y = m(x, CLASSES)
    assert y.shape == (2, 3, 4 * m.grid, 4 * m.grid)
    y.square().mean().backward()
    for name, p in m.clip.named_parameters():
        if "in_proj" in name or "positional_embedding" in name:
            assert p.requires_grad and p.grad is not None, name
            if "in_proj" in name:
                d = p.shape[0] // 3
                assert p.grad[d : 2 * d].abs().sum() == 0, name  # k slice masked
                assert p.grad[:d].abs().sum() > 0 or p.grad[2 * d :].abs().sum() > 0, name
        else:
            assert not p.requires_grad and p.grad is None, name
    head = [p for n, p in m.named_parameters() if not n.startswith("clip.")]
    assert all(p.grad is not None for p in head)


def test_param_groups_cover_trainable(small_catseg):
    groups = small_catseg.param_groups(2e-4)
    ids = [id(p) for g in groups for p in g["params"]]
    assert len(ids) == len(set(ids))
    assert set(ids) == {id(p) for p in small_catseg.parameters() if p.requires_grad}
    assert groups[1]["lr"] == pytest.approx(2e-6) and groups[1]["weight_decay"] == 0.0


def test_eval_deterministic(small_catseg):
    m = small_catseg.eval()
    x = torch.randn(1, 3, m.input_size, m.input_size)
    with torch.no_grad():
        assert torch.equal(m(x, CLASSES), m(x, CLASSES))


@pytest.mark.parametrize("name,target", [("catseg", 154.29e6), ("piseg", 155.60e6)])
def test_param_budget_vit_b(name, target):
    m = build_model(name, ModelConfig(clip="ViT-B-16:random"))  # ~5 s on CPU
    total = sum(p.numel() for p in m.parameters())
    assert abs(total - target) / target < 0.01, total


@pytest.mark.slow
@pytest.mark.parametrize("name,target", [("catseg", 433.73e6), ("piseg", 436.68e6), ("rsktseg", 678.29e6)])
def test_param_budget_vit_l(name, target):
    m = build_model(name, ModelConfig(clip="ViT-L-14-336:random"))
    total = sum(p.numel() for p in m.parameters())
    assert abs(total - target) / target < 0.01, total


def _run(cfg, train: bool, seed: int = 0):
    torch.manual_seed(0)
    m = build_model("piseg", cfg)
    m.train(train)
    x = torch.randn(2, 3, m.input_size, m.input_size, generator=torch.Generator().manual_seed(1))
    torch.manual_seed(seed)
    with torch.no_grad():
        return m, m(x, CLASSES)


def test_piseg_eval_deterministic_train_perturbed():
    cfg = ModelConfig(clip="world-clip", input_size=32)
    m, a = _run(cfg, False)
    _, b = _run(cfg, False, seed=5)
    assert torch.equal(a, b)
    _, c = _run(cfg, True, seed=1)
    _, d = _run(cfg, True, seed=2)
    assert c.shape == (2, 3, 4 * m.grid, 4 * m.grid)
    assert not torch.allclose(c, d)


@pytest.mark.parametrize("noise", ["laplace", "uniform", "student_t"])
def test_piseg_noise_families_change_output(noise):
    _, ref = _run(ModelConfig(clip="world-clip", input_size=32), True, seed=3)
    _, out = _run(ModelConfig(clip="world-clip", input_size=32, noise=noise), True, seed=3)
    assert torch.isfinite(out).all() and not torch.allclose(ref, out)


@pytest.mark.parametrize("switch", ["text_spm", "image_spm"])
def test_piseg_switches_change_output(switch):
    _, ref = _run(ModelConfig(clip="world-clip", input_size=32), True, seed=3)
    _, out = _run(ModelConfig(clip="world-clip", input_size=32, **{switch: False}), True, seed=3)
    assert not torch.allclose(ref, out)


def test_piseg_noise_unit_variance():
    from dglrsis.trainable.models.piseg import sample_noise

    like = torch.zeros(1)
    for fam in ("gaussian", "laplace", "uniform"):
        z = sample_noise((200000,), fam, like)
        assert abs(z.mean()) < 0.02 and abs(z.var() - 1) < 0.05, fam


SMALL_RSKT = dict(clip="world-clip", rclip="world-clip", dino="dino-tiny:random", input_size=32)


@pytest.fixture(scope="module")
def small_rskt():
    torch.manual_seed(0)
    return build_model("rsktseg", ModelConfig(**SMALL_RSKT))


def test_rsktseg_shape_and_frozen_encoders(small_rskt):
    m = small_rskt.train()
    assert not m.dino.training and not m.rclip.training
    m.zero_grad()
    y = m(torch.randn(2, 3, m.input_size, m.input_size), CLASSES)
    assert y.shape == (2, 3, 4 * m.grid, 4 * m.grid)
    y.square().mean().backward()
    assert all(p.grad is None and not p.requires_grad for p in m.dino.parameters())
    assert all(p.grad is None and not p.requires_grad for p in m.rclip.parameters())
    head = [n for n, p in m.named_parameters() if not n.startswith(("clip.", "dino.", "rclip."))]
    assert all(dict(m.named_parameters())[n].grad is not None for n in head)


@pytest.mark.parametrize(
    "switch", [{"use_rotations": False}, {"use_dino_cost": False}, {"set_sr": 1}, {"cet": False}]
)
def test_rsktseg_switches_change_output(switch):
    x = torch.randn(1, 3, 64, 64, generator=torch.Generator().manual_seed(2))
    outs = []
    for kw in ({}, switch):
        torch.manual_seed(0)
        m = build_model("rsktseg", ModelConfig(**SMALL_RSKT, **kw)).eval()
        with torch.no_grad():
            outs.append(m(torch.nn.functional.interpolate(x, size=m.input_size), CLASSES))
    assert outs[0].shape == outs[1].shape and not torch.allclose(outs[0], outs[1])


def test_rsktseg_param_conventions_vit_b():
    m = build_model(
        "rsktseg", ModelConfig(clip="ViT-B-16:random", rclip="ViT-B-32:random", dino="rsib:random")
    )
    c = m.count_by_convention()
    assert abs(c["pi-seg"] - 398.07e6) / 398.07e6 < 0.01, c
    assert abs(c["rsktseg-readme"] - 334.62e6) / 334.62e6 < 0.01, c


SMALL = dict(clip="world-clip", dino="dino-tiny:random", input_size=32)  # GSNet / DR-Seg at toy size


def _with_and_without(name: str, switch: dict):
    """Train-mode forward + backward of ``name`` as configured and with ``switch`` (same init, same
    input): yields (model, output) for each; the caller asserts on both and that they differ."""
    x = torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(2))
    for kw in ({}, switch):
        torch.manual_seed(0)
        m = build_model(name, ModelConfig(**SMALL, **kw)).train()
        y = m(x, CLASSES)
        assert y.shape == (2, 3, 4 * m.grid, 4 * m.grid)
        y.square().mean().backward()
        yield m, y.detach()


@pytest.mark.parametrize("switch", [{"qgff": False}, {"ripd": False}])
def test_gsnet_frozen_dino_and_switches(switch):
    outs = []
    for m, y in _with_and_without("gsnet", switch):
        assert not m.dino.training
        assert all(p.grad is None and not p.requires_grad for p in m.dino.parameters())
        outs.append(y)
    assert not torch.allclose(outs[0], outs[1])


def test_params_report_small(capsys):
    from dglrsis.trainable.params import main, report

    rep = report("rsktseg", "world-clip", "dino-tiny:random", "world-clip")
    assert {"model", "total", "trainable", "convention", "breakdown", "total_rsktseg_readme"} <= set(rep)
    assert sum(rep["breakdown"].values()) == rep["total"] and 0 < rep["trainable"] < rep["total"]
    assert rep["total_rsktseg_readme"] < rep["total"]
    assert main(["--model", "catseg", "--clip", "world-clip", "--json"]) == 0
    import json

    out = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert out["model"] == "catseg" and out["breakdown"]["clip"] < out["total"]
    assert main(["--model", "nope", "--clip", "world-clip"]) == 2


@pytest.mark.parametrize("switch", [{"pdgr_k": 0}, {"ugaf": False}, {"spsd_ratio": 0.25}])
def test_drseg_shape_frozen_and_switches(switch):
    outs = []
    for m, y in _with_and_without("drseg", switch):
        assert all(p.grad is None for p in m.dino.parameters())
        outs.append(y)
    assert not torch.allclose(outs[0], outs[1])


def test_spsd_ranking_prefers_selective_channel(tmp_path):
    from dglrsis.trainable.spsd import spsd_ranking

    n = 60
    labels = torch.arange(3).repeat_interleave(n)
    feats = torch.zeros(3 * n, 3)
    feats[:, 1] = 1.0  # uniform response: high entropy, identical across classes
    feats[labels == 0, 0] = 1.0  # responds to class 0 only
    feats[:, 2] = labels.float() * 0.5 + 0.1  # graded response
    rank = spsd_ranking(feats, labels)
    assert rank["order"][0] == 0 and rank["order"][-1] == 1
    assert rank["entropy"][1] == pytest.approx(torch.log(torch.tensor(3.0)).item(), rel=1e-4)
    e = (
        build_model("catseg", ModelConfig(clip="world-clip", input_size=32))
        .aggregator.text_guidance_proj[0]
        .in_features
    )
    order = list(range(e))[::-1]
    (tmp_path / "r.json").write_text(json.dumps({"order": order}))
    m = build_model("drseg", ModelConfig(**SMALL, spsd_path=str(tmp_path / "r.json")))
    assert m.spsd.order.tolist() == order


def test_spsd_script_ranks_from_a_training_set(tmp_path, capsys):
    from dglrsis.trainable.spsd import main

    cfg = Path(__file__).resolve().parents[1] / "trainable" / "configs" / "world_drseg.yaml"
    out = tmp_path / "spsd.json"
    assert (
        main(["--config", str(cfg), str(out), "data.world_n=3", "data.world_size=96", "--pixels", "40"]) == 0
    )
    r = json.loads(out.read_text())
    e = len(r["entropy"])
    assert sorted(r["order"]) == list(range(e)) and e == len(r["similarity"])
    assert {"bridge", "helicopter", "harbor"}.isdisjoint(r["pixels"])  # held out of training
    assert len(r["pixels"]) >= 2 and all(0 < n <= 40 for n in r["pixels"].values())
    m = build_model("drseg", ModelConfig(**SMALL, spsd_path=str(out)))
    assert m.spsd.order.tolist() == r["order"]
    (tmp_path / "bad.json").write_text(json.dumps({"order": [0, 0, 1]}))
    for bad in ("bad.json", "absent.json"):
        with pytest.raises(DglrsisError, match="SPSD ranking"):
            build_model("drseg", ModelConfig(**SMALL, spsd_path=str(tmp_path / bad)))
    assert main(["--config", str(tmp_path / "missing.yaml"), str(tmp_path / "x.json")]) == 2
    assert not (tmp_path / "x.json").exists()
    assert "error:" in capsys.readouterr().err
