"""Trainable cost-aggregation models: shapes, gradient selection, parameter budgets (Pi-Seg Table XII)."""

import json
from pathlib import Path

import pytest
import torch

from dglrsis.errors import DglrsisError
from dglrsis.trainable.models import ModelConfig, build_model, model_config

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
    y.square().mean().backward()  # which CLIP tensors train: test_trainable_catseg_public
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


@pytest.mark.parametrize("name,target", [("catseg", 154.29e6)])  # Pi-Seg exact: test_trainable_piseg_public
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


X32 = torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(1))


def _out(m, train: bool = False, seed: int = 3, x=X32):
    """Forward of ``m`` on x without grad; the noise RNG seeded (Pi-Seg perturbations)."""
    m.train(train)
    torch.manual_seed(seed)
    with torch.no_grad():
        return m(x, CLASSES)


def transfer(src: torch.nn.Module, dst: torch.nn.Module) -> tuple[set, set]:
    """Copy src's weights into dst for every shared key — where dst's tensor is smaller along dim 1
    (input channels) it gets the leading slice, other shape mismatches are left alone. Returns
    (keys only in src, keys only in dst): what a switch removed / added."""
    s, d = src.state_dict(), dst.state_dict()
    with torch.no_grad():
        for k, v in d.items():
            w = s.get(k)
            if w is None:
                continue
            if w.shape == v.shape:
                v.copy_(w)
            elif w.dim() > 1 and w.shape[0] == v.shape[0] and w.shape[2:] == v.shape[2:]:
                v.copy_(w[:, : v.shape[1]])
    return set(s) - set(d), set(d) - set(s)


def _pair(name: str, switch: dict, **kw):
    """(model as configured, model with ``switch`` carrying the first one's weights, removed keys)."""
    torch.manual_seed(0)
    on = build_model(name, dict(SMALL_ALL[name], **kw))
    off = build_model(name, dict(SMALL_ALL[name], **kw, **switch))
    removed, added = transfer(on, off)
    return on, off, removed, added


def _zero(m, *prefixes):
    with torch.no_grad():
        for n, p in m.named_parameters():
            if n.startswith(prefixes):
                p.zero_()


def test_piseg_eval_deterministic_train_perturbed():
    torch.manual_seed(0)
    m = build_model("piseg", dict(clip="world-clip", input_size=32))
    assert torch.equal(_out(m, False, 1), _out(m, False, 5))
    c, d = _out(m, True, 1), _out(m, True, 2)
    assert c.shape == (2, 3, 4 * m.grid, 4 * m.grid)
    assert not torch.allclose(c, d)


def test_piseg_noise_families_change_output():
    torch.manual_seed(0)
    m = build_model("piseg", dict(clip="world-clip", input_size=32))  # one instance, noise read at forward
    ref = _out(m, True)
    for noise in ("laplace", "uniform", "gumbel", "student_t"):
        m.cfg.text_noise = m.cfg.image_noise = noise
        out = _out(m, True)
        assert torch.isfinite(out).all() and not torch.allclose(ref, out), noise


@pytest.mark.parametrize("switch,other", [("text_spm", "image_spm"), ("image_spm", "text_spm")])
def test_piseg_spm_switch_removes_exactly_that_perturbation(switch, other):
    on, off, removed, added = _pair("piseg", {switch: False}, **{other: False})
    assert removed and {k.split(".")[0] for k in removed} == {switch} and not added
    assert not torch.allclose(_out(on, True), _out(off, True))
    with torch.no_grad():  # the perturbation made zero: the switched-off model is what remains
        if switch == "text_spm":
            on.text_spm.mu.zero_()
            on.text_spm.sigma.zero_()
        else:
            _zero(on, "image_spm.mu.", "image_spm.sigma.")  # σ = |W_σ a| → 0
    torch.testing.assert_close(_out(on, True), _out(off, True), rtol=1e-5, atol=1e-5)
    assert torch.equal(_out(on, False), _out(off, False))  # eval: no perturbation either way


def test_piseg_noise_unit_variance():
    from dglrsis.trainable.models.piseg import sample_noise

    like = torch.zeros(1)
    torch.manual_seed(0)
    for fam in ("gaussian", "laplace", "uniform", "gumbel"):
        z = sample_noise((200000,), fam, like)
        assert abs(z.mean()) < 0.02 and abs(z.var() - 1) < 0.05, fam
    z = sample_noise((200000,), "student_t", like, df=5.0)  # ν = 3 has no finite fourth moment to test by
    assert abs(z.mean()) < 0.02 and abs(z.var() - 1) < 0.1


SMALL_ALL = {
    "catseg": dict(clip="world-clip", input_size=32),
    "piseg": dict(clip="world-clip", input_size=32),
    "gsnet": dict(clip="world-clip", dino="dino-tiny:random", input_size=32),
    "drseg": dict(clip="world-clip", dino="dino-tiny:random", input_size=32, spsd_path="identity"),
    "rsktseg": dict(clip="world-clip", rclip="world-clip", dino="dino-tiny:random", input_size=32),
}
SMALL_RSKT = SMALL_ALL["rsktseg"]
SMALL = SMALL_ALL["gsnet"]  # GSNet / DR-Seg at toy size


@pytest.fixture(scope="module")
def small_rskt():
    torch.manual_seed(0)
    return build_model("rsktseg", SMALL_RSKT)


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


def test_rsktseg_rotations_off_equals_on_with_rotated_cost_weights_zeroed():
    on, off, removed, added = _pair("rsktseg", {"use_rotations": False})
    assert on.aggregator.conv1.in_channels == 4 * off.aggregator.conv1.in_channels
    assert not torch.allclose(_out(on), _out(off))
    with torch.no_grad():  # conv1's channels for the 90/180/270° costs: zero → only 0° is seen
        on.aggregator.conv1.weight[:, off.aggregator.conv1.in_channels :] = 0
    torch.testing.assert_close(_out(on), _out(off), rtol=1e-5, atol=1e-5)


def test_rsktseg_dino_cost_off_embeds_the_clip_cost_alone():
    on, off, removed, added = _pair("rsktseg", {"use_dino_cost": False})
    assert {k.rsplit(".", 1)[0] for k in removed} == {"qgff.dino_down", "qgff.dino_conv", "qgff.fusion"}
    assert off.qgff is None and off.dino is not None  # the DINO decoder guidance still needs it
    assert not torch.allclose(_out(on), _out(off))
    x = torch.randn(1, 4, 3, 4, 4)  # off: the public corr_embed, conv1 without a sigmoid
    with torch.no_grad():
        torch.testing.assert_close(off.embed_cost(x, None, None), off.aggregator.embed_cost(x))


@pytest.mark.parametrize(
    "switch,gone",
    [
        ({"rclip_guidance": False}, {"rclip", "rs_transfer.rclip_up", "rs_transfer.rclip_proj"}),
        ({"dino_guidance": False}, {"rs_transfer.ripd", "rs_transfer.dino_proj"}),
    ],
)
def test_rsktseg_transfer_switches_remove_their_guidance(switch, gone):
    on, off, removed, added = _pair("rsktseg", switch)
    assert {
        k.split(".")[0] if k.startswith("rclip.") else ".".join(k.split(".")[:2]) for k in removed
    } == gone
    w_on, w_off = on.rs_transfer.widths, off.rs_transfer.widths
    assert all(a > b for a, b in zip(w_on, w_off, strict=True))
    assert off.aggregator.decoder1.conv[0].in_channels == on.aggregator.decoder1.conv[0].in_channels - (
        w_on[0] - w_off[0]
    )
    assert not torch.allclose(_out(on), _out(off))
    both = build_model(
        "rsktseg", dict(SMALL_RSKT, rclip_guidance=False, dino_guidance=False, use_dino_cost=False)
    )
    assert both.dino is None and both.rclip is None and both.rs_transfer.widths == [0, 0]
    assert _out(both).shape == (2, 3, 16, 16)


def test_rsktseg_set_sr_is_wired():
    on, off, removed, added = _pair("rsktseg", {"set_sr": 1})
    assert on.aggregator.layers[0][0].attn.sr_k.kernel_size == (2, 2)
    assert removed and all(".attn.sr_" in k or ".attn.norm_" in k for k in removed)
    assert not torch.allclose(_out(on), _out(off))


@pytest.mark.parametrize("switch", [{"qgff": False}, {"ripd": False}])
def test_gsnet_frozen_dino_and_switches(switch):
    on, off, removed, added = _pair("gsnet", switch)
    on.train().zero_grad()
    y = on(X32, CLASSES)
    assert y.shape == (2, 3, 4 * on.grid, 4 * on.grid)
    y.square().mean().backward()
    assert not on.dino.training
    assert all(p.grad is None and not p.requires_grad for p in on.dino.parameters())
    tops = {k.split(".")[0] if k.startswith(("qgff", "ripd")) else k.rsplit(".", 3)[0] for k in removed}
    assert tops == ({"ripd", "aggregator.extra_decoder_guidance"} if "ripd" in switch else {"qgff"})
    assert not torch.allclose(_out(on), _out(off))
    if "ripd" in switch:  # the decoder's DINO input channels (after the CLIP ones) weighted 0
        with torch.no_grad():
            for d_on, d_off in (
                (on.aggregator.decoder1, off.aggregator.decoder1),
                (on.aggregator.decoder2, off.aggregator.decoder2),
            ):
                d_on.conv[0].weight[:, d_off.conv[0].in_channels :] = 0
        torch.testing.assert_close(_out(on), _out(off), rtol=1e-5, atol=1e-5)


def test_dino_with_register_tokens_in_every_dino_model():
    """A DINOv3-style stand-in with 4 register tokens (random weights) drives GSNet, RSKT-Seg and
    DR-Seg: patch tokens are the last g² of the sequence, registers dropped."""
    from transformers import AutoConfig, AutoModel

    from dglrsis.models import DinoBundle

    arch = dict(
        hidden_size=32, num_hidden_layers=3, num_attention_heads=2, intermediate_size=64, patch_size=8
    )
    cfg = AutoConfig.for_model("dinov3_vit", **arch, image_size=32, num_register_tokens=4)
    torch.manual_seed(0)
    bundle = DinoBundle(name="dinov3-tiny", model=AutoModel.from_config(cfg), patch_size=8, embed_dim=32)
    from dglrsis.trainable.models import DRSeg, GSNet, RSKTSeg

    for cls, name in ((GSNet, "gsnet"), (RSKTSeg, "rsktseg"), (DRSeg, "drseg")):
        m = cls(model_config(name, SMALL_ALL[name]), dino_bundle=bundle)
        last, inter = m.dino(X32)
        assert last.shape == (2, 32, 4, 4) and all(t.shape == (2, 32, 4, 4) for t in inter)
        tokens = bundle.model(pixel_values=X32).last_hidden_state
        assert tokens.shape[1] == 1 + 4 + 16
        torch.testing.assert_close(last.flatten(2).transpose(1, 2), tokens[:, 5:])
        y = _out(m)
        assert y.shape == (2, 3, 16, 16) and torch.isfinite(y).all(), name


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


def test_params_bare_architecture_means_random_weights(capsys):
    from dglrsis.trainable.params import main

    assert main(["--model", "catseg", "--clip", "ViT-B-32", "--json"]) == 0  # as the README writes it
    out = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert out["clip"] == "ViT-B-32:random" and out["total"] > 80e6


@pytest.mark.parametrize(
    "switch,gone",
    [
        ({"pdgr_k": 0}, {"pdgr"}),
        ({"ugaf": False}, {"ugaf", "latent_fusion"}),
        ({"fusion": "sum"}, {"latent_fusion"}),
    ],
)
def test_drseg_frozen_dino_and_module_switches(switch, gone):
    on, off, removed, added = _pair("drseg", switch)
    on.train().zero_grad()
    on(X32, CLASSES).square().mean().backward()
    assert all(p.grad is None for p in on.dino.parameters())
    assert removed and {k.split(".")[0] for k in removed} == gone and not added
    assert not torch.allclose(_out(on), _out(off))


def test_drseg_pdgr_k_is_the_neighbourhood_size():
    torch.manual_seed(0)
    m = build_model("drseg", dict(SMALL_ALL["drseg"], pdgr_k=3))
    assert m.pdgr.k == 3
    ref = _out(m)
    m.pdgr.k = 75
    assert not torch.allclose(ref, _out(m))
    from dglrsis.trainable.models.drseg import PDGR

    p = PDGR(4, 6, k=1).eval()  # k = 1: each location's only neighbour is itself (top affinity)
    x, d = torch.randn(2, 9, 4), torch.randn(2, 9, 6)
    with torch.no_grad():
        torch.testing.assert_close(p(x, d, 3, 3), p.norm(x + torch.relu(p.proj(x))))


def test_drseg_spsd_ratio_keeps_exactly_the_semantic_channels():
    for ratio in (0.25, 0.5):
        torch.manual_seed(0)
        m = build_model("drseg", dict(SMALL_ALL["drseg"], spsd_ratio=ratio)).eval()
        order = torch.randperm(m.embed, generator=torch.Generator().manual_seed(0))
        m.spsd.order.copy_(order)
        img = torch.randn(2, 4, 4, m.embed)
        with torch.no_grad():
            out = m.refine(img, X32)
        n = round(ratio * m.embed)
        sem, st = order[:n], order[n:]
        assert torch.equal(out[..., sem], img[..., sem])
        assert (out[..., st] - img[..., st]).abs().amax(dim=(0, 1, 2)).min() > 0


def test_ugaf_gate_is_the_entropy_sigmoid():
    from dglrsis.trainable.models.drseg import UGAF

    u = UGAF()
    with torch.no_grad():
        u.proj.weight.fill_(2.0)
        u.proj.bias.fill_(-1.0)
    c_orig = torch.zeros(1, 1, 2, 1, 1)  # two equal classes: normalised entropy 1
    c_ref = torch.ones(1, 1, 2, 1, 1)
    with torch.no_grad():
        out = u(c_orig, c_ref)
    torch.testing.assert_close(out, torch.sigmoid(torch.tensor(1.0)) * c_ref)  # Eq. (13)


def _drseg_sum_reference(m, x):
    """The DR-Seg forward before the latent fusion, written out: c_orig + σ(φ(U))·c_ref into CAT-Seg's
    aggregator (the ``fusion: sum`` model must compute exactly this)."""
    from dglrsis.trainable.models.rsktseg import rotated_costs

    text = m.text_embeddings(CLASSES)
    costs, img, inter = rotated_costs(m, x, text, 4)
    c_orig = torch.stack(costs).mean(0)
    c_ref = m.cost_volume(m.refine(img, x), text)
    prob = (c_orig.mean(1) / 0.07).softmax(1)
    ent = -(prob * prob.clamp_min(1e-12).log()).sum(1, keepdim=True) / torch.log(
        torch.tensor(max(prob.shape[1], 2.0))
    )
    cost = c_orig + torch.sigmoid(m.ugaf.proj(ent))[:, None] * c_ref
    return m.aggregator(
        cost, img.permute(0, 3, 1, 2), m.text_guidance(text, x.shape[0]), m.decoder_guidance(inter)
    )


def test_drseg_fusion_sum_is_the_earlier_formula():
    torch.manual_seed(0)
    m = build_model("drseg", dict(SMALL_ALL["drseg"], fusion="sum")).eval()
    assert m.latent_fusion is None
    with torch.no_grad():
        assert torch.equal(m(X32, CLASSES), _drseg_sum_reference(m, X32))


def test_drseg_paper_fusion_shapes_params_and_gradients():
    on, off, removed, added = _pair("drseg", {"fusion": "sum"})
    assert on.cfg.fusion == "paper"  # the default
    for train in (True, False):
        y = _out(on, train)
        assert y.shape == (2, 3, 4 * on.grid, 4 * on.grid) and torch.isfinite(y).all()
    p, c = len(on.cfg.templates), on.cfg.hidden  # P cost channels, latent width 128
    by_hand = (
        (p * 7 * 7 * c + c)  # ref_embed: 7×7 conv P → C
        + 3 * (c * c * 3 * 3 + c)  # multiscale: three 3×3 convs C → C (dilations 1, 2, 3)
        + (2 * c * c + c)  # head: 1×1 conv 2C → C
        + 2 * c  # head: GroupNorm affine
    )
    assert by_hand == 482_304 and c == 128 and p == 1
    n = sum(t.numel() for t in on.parameters()) - sum(t.numel() for t in off.parameters())
    assert n == by_hand == sum(t.numel() for t in on.latent_fusion.parameters())
    assert on.count_trainable() - off.count_trainable() == by_hand
    assert [m.dilation for m in on.latent_fusion.multiscale.convs] == [(1, 1), (2, 2), (3, 3)]
    assert not torch.allclose(_out(on), _drseg_sum_reference(on.eval(), X32))
    on.train().zero_grad()
    on(X32, CLASSES).square().mean().backward()
    for name, t in [*on.latent_fusion.named_parameters(), *on.ugaf.named_parameters()]:
        assert t.grad is not None and t.grad.abs().sum() > 0, name
    assert on.aggregator.conv1.weight.grad.abs().sum() > 0  # embeds C_orig into the latent space
    with pytest.raises(DglrsisError, match="unknown DR-Seg fusion 'concat'"):
        build_model("drseg", dict(SMALL_ALL["drseg"], fusion="concat"))


def test_model_configs_reject_keys_the_model_does_not_use():
    with pytest.raises(DglrsisError, match=r"model\.qgff is not an option of catseg"):
        build_model("catseg", {"qgff": False})
    with pytest.raises(DglrsisError, match=r"model\.hidden must be int"):
        model_config("gsnet", {"hidden": "wide"})
    with pytest.raises(DglrsisError, match="takes a GSNetConfig"):
        build_model("gsnet", model_config("drseg"))
    with pytest.raises(DglrsisError, match="SPSD channel ranking"):
        build_model("drseg", dict(SMALL))
    assert model_config("rsktseg", {"rclip_guidance_dims": [8, 4]}).rclip_guidance_dims == (8, 4)
    assert isinstance(model_config("catseg"), ModelConfig)


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
    m = build_model("drseg", dict(SMALL, spsd_path=str(tmp_path / "r.json")))
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
    m = build_model("drseg", dict(SMALL, spsd_path=str(out)))
    assert m.spsd.order.tolist() == r["order"]
    (tmp_path / "bad.json").write_text(json.dumps({"order": [0, 0, 1]}))
    for bad in ("bad.json", "absent.json"):
        with pytest.raises(DglrsisError, match="SPSD ranking"):
            build_model("drseg", dict(SMALL, spsd_path=str(tmp_path / bad)))
    assert main(["--config", str(tmp_path / "missing.yaml"), str(tmp_path / "x.json")]) == 2
    assert not (tmp_path / "x.json").exists()
    assert "error:" in capsys.readouterr().err
