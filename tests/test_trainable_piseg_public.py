"""Pi-Seg computes what the public code (Zlittlemoon/Pi-Seg) computes: functional properties of the public
perturbation modules, the exact parameter counts at the published sizes and the public-checkpoint key map
at ViT-B sizes (the public outputs themselves: tests/test_trainable_piseg_reference.py)."""

import json
from pathlib import Path

import pytest
import torch

from dglrsis.errors import DglrsisError
from dglrsis.trainable.models import build_model

SHAPES = Path(__file__).parent / "fixtures" / "piseg_vitb_public_shapes.json"


@pytest.mark.parametrize("scale", [False, True])
def test_image_spm_is_one_head_attention_over_the_classes(scale):
    """μ = W_μ a, σ = |W_σ a| with a = softmax(q kᵀ) v over the K class tokens — unscaled as in the
    public code (``spm_attn_scale`` divides by √(C/r))."""
    from dglrsis.trainable.models.piseg import ImageSPM

    torch.manual_seed(0)
    spm = ImageSPM(8, reduction=2, scale=scale)
    v, t = torch.randn(2, 5, 8), torch.randn(3, 8)
    with torch.no_grad():
        logits = spm.q(v) @ spm.k(t).T / (2.0 if scale else 1.0)  # √(8 / 2)
        a = torch.softmax(logits, -1) @ spm.v(t)
        mu, sigma = spm.stats(v, t)
    torch.testing.assert_close(mu, spm.mu(a))
    torch.testing.assert_close(sigma, spm.sigma(a).abs())
    assert spm.q.out_features == spm.mu.in_features == 4


def test_image_spm_passes_no_gradient_into_its_inputs():
    """The public generator reads detached image features and text: the image features get exactly the
    identity's gradient, the text none; the generator's weights get theirs."""
    from dglrsis.trainable.models.piseg import ImageSPM

    torch.manual_seed(0)
    spm = ImageSPM(8)
    v = torch.randn(2, 3, 3, 8, requires_grad=True)
    t = torch.randn(4, 8, requires_grad=True)
    out = spm(v, t, "gaussian", 3.0)
    out.sum().backward()
    assert out.shape == v.shape and torch.equal(v.grad, torch.ones_like(v)) and t.grad is None
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in spm.parameters())


def test_every_class_is_aggregated_beyond_pad_len():
    """The public Pi-Seg aggregator has no top-``pad_len`` selection (CAT-Seg's has): a pad_len below the
    number of classes changes nothing, no class gets −100."""
    torch.manual_seed(0)
    m = build_model("piseg", dict(clip="world-clip", input_size=32)).eval()
    x = torch.randn(1, 3, 32, 32, generator=torch.Generator().manual_seed(3))
    names = ["ship", "plane", "storage tank"]
    with torch.no_grad():
        ref = m(x, names)
        m.cfg.pad_len = 2
        out = m(x, names)
    assert torch.equal(out, ref) and not (out == -100.0).any()


@pytest.mark.parametrize("field", ["text_noise", "image_noise"])
def test_unknown_noise_family_and_student_t_without_variance_are_refused(field):
    with pytest.raises(DglrsisError, match="unknown noise"):
        build_model("piseg", {"clip": "world-clip", field: "cauchy"})
    df = field.replace("noise", "student_t_df")
    with pytest.raises(DglrsisError, match="more than 2 degrees"):
        build_model("piseg", {"clip": "world-clip", field: "student_t", df: 2.0})


@pytest.fixture(scope="module")
def vit_b():
    torch.manual_seed(0)
    return build_model("piseg", dict(clip="ViT-B-16:random"))  # ~5 s on CPU


def test_vit_b_parameter_counts_equal_the_public_model(vit_b):
    """The public Pi-Seg at vitb_384_*.yaml sizes (CLIP ViT-B/16, 2 layers, REDUCTION 1: our defaults),
    counted by tests/fixtures/make_reference_piseg.py --count vitb: every parameter of the public model
    (both CLIP towers included), and those it trains (CLIP q/v weights, the head, both generators)."""
    doc = json.loads(SHAPES.read_text())
    assert sum(p.numel() for p in vit_b.parameters()) == doc["n_total"] == 155_603_682
    assert vit_b.count_trainable() == doc["n_trainable"] == 26_430_177


def test_vit_b_public_checkpoint_loads_with_no_missing_or_unexpected_keys(vit_b):
    """A public ``model_final.pth`` forged with every key and shape the public code has at ViT-B sizes
    (recorded from it by make_reference_piseg.py --count vitb --shapes): each tensor constant with its
    key's index, so the loaded model shows where each public key went."""
    from fixtures.reference import check_forged_checkpoint

    from dglrsis.trainable.models.public_keys import load_public_piseg

    P, T = "sem_seg_head.predictor.", "sem_seg_head.predictor.transformer."
    where = {
        "text_spm.mu": P + "text_vpn.mu",
        "text_spm.sigma": P + "text_vpn.var",
        "image_spm.k.weight": P + "image_vpn.cross_attn.fc_k.weight",
        "image_spm.mu.bias": P + "image_vpn.fc_mean.bias",
        "image_spm.sigma.weight": P + "image_vpn.fc_variance.weight",
        "aggregator.layers.1.0.blocks.1.mlp.0.weight": T + "layers.1.sptial_agg.block_2.mlp.fc1.weight",
        "aggregator.layers.0.0.guidance_norm.bias": T + "layers.0.sptial_agg.guidance_norm.bias",
        "aggregator.layers.1.1.q.weight": T + "layers.1.class_agg.attention.q.weight",
        "aggregator.layers.0.1.mlp.2.bias": T + "layers.0.class_agg.MLP.2.bias",
        "aggregator.layers.0.1.padding_guidance": T + "layers.0.class_agg.padding_guidance",
        "aggregator.decoder1.conv.4.weight": T + "decoder1.conv.double_conv.4.weight",
        "upsample2.weight": "upsample2.weight",
    }
    fused = (
        "clip.visual.transformer.resblocks.5.attn.in_proj_weight",
        P + "clip_model.visual.transformer.resblocks.5.attn.{}_proj_weight",
        768,
    )
    check_forged_checkpoint(
        vit_b, SHAPES, load_public_piseg, where, fused, P + "image_vpn.extra.weight", "text_vpn.var"
    )
    assert vit_b.text_spm.mu.shape == (512,)  # the public 1×1×1×C flattened


@pytest.mark.slow
def test_vit_l_parameter_counts_equal_the_public_model():
    """vitl_336_*.yaml sizes (CLIP ViT-L/14@336px), make_reference_piseg.py --count vitl."""
    m = build_model("piseg", dict(clip="ViT-L-14-336:random"))
    assert sum(p.numel() for p in m.parameters()) == 436_681_442
    assert m.count_trainable() == 73_224_673
