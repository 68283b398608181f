"""RSKT-Seg computes what the public code (LiBingyu01/RSKT-Seg) computes: functional properties of the
public RS-Fusion blocks, the exact parameter counts at the published sizes and the public-checkpoint key
map at ViT-B sizes (the public outputs themselves: tests/test_trainable_rsktseg_reference.py)."""

import json
from pathlib import Path

import pytest
import torch

from dglrsis.trainable.models import build_model

SHAPES = Path(__file__).parent / "fixtures" / "rsktseg_vitb_public_shapes.json"
VIT_B = dict(clip="ViT-B-16:random", rclip="ViT-B-32:random", dino="rsib:random")


def test_class_fusion_is_equivariant_to_the_class_order():
    """Softmax attention over the classes without any position: permuting the classes (cost and text
    guidance) permutes the output."""
    from dglrsis.trainable.models.rsktseg import ClassFusion

    torch.manual_seed(0)
    layer = ClassFusion(8, 8, heads=2, pool=(2, 2)).eval()
    x, t = torch.randn(2, 8, 5, 6, 6), torch.randn(2, 5, 8)
    perm = torch.randperm(5)
    with torch.no_grad():
        torch.testing.assert_close(layer(x[:, :, perm], t[:, perm]), layer(x, t)[:, :, perm])


def test_spatial_fusion_treats_each_class_alone():
    """The spatial block runs per class: one class's output ignores the other classes' costs."""
    from dglrsis.trainable.models.rsktseg import SpatialFusion

    torch.manual_seed(0)
    layer = SpatialFusion(8, 8, heads=2, sr=2).eval()
    x, g = torch.randn(1, 8, 3, 6, 6), torch.randn(1, 8, 6, 6)
    y = x.clone()
    y[:, :, 1:] += torch.randn_like(y[:, :, 1:])
    with torch.no_grad():
        a, b = layer(x, g), layer(y, g)
    torch.testing.assert_close(a[:, :, 0], b[:, :, 0])
    assert not torch.allclose(a[:, :, 1], b[:, :, 1])


def test_spatial_keys_and_values_come_from_the_reduced_grid():
    """sr = 2: keys and values are one per 2×2 block, so a query attends over (h/2)·(w/2) tokens;
    with the reduction convs averaging their block, a map constant on 2×2 blocks gives the same
    output as sr = 1 with norms that do nothing (unit LayerNorm on an already-normalised input is not
    the identity, so compare against the reduced tokens written out)."""
    import torch.nn.functional as F

    from dglrsis.trainable.models.rsktseg import GuidedAttention

    torch.manual_seed(0)
    a = GuidedAttention(4, 4, heads=2, sr=2).eval()
    x, g = torch.randn(1, 16, 4), torch.randn(1, 16, 4)
    with torch.no_grad():
        xg = torch.cat([x, g], -1)
        grid = lambda z: z.transpose(1, 2).reshape(1, -1, 4, 4)  # noqa: E731
        kin = a.norm_k(a.sr_k(grid(xg)).flatten(2).transpose(1, 2))
        vin = a.norm_v(a.sr_v(grid(x)).flatten(2).transpose(1, 2))
        assert kin.shape == (1, 4, 8) and vin.shape == (1, 4, 4)
        sh = lambda z: z.view(1, -1, 2, 2).transpose(1, 2)  # noqa: E731
        want = F.scaled_dot_product_attention(sh(a.q(xg)), sh(a.k(kin)), sh(a.v(vin)))
        want = a.proj(want.transpose(1, 2).reshape(1, 16, 4))
        torch.testing.assert_close(a(x, g, (4, 4)), want)


@pytest.fixture(scope="module")
def vit_b():
    torch.manual_seed(0)
    return build_model("rsktseg", VIT_B)  # ~15 s on CPU


def test_vit_b_parameter_counts_equal_the_public_model(vit_b):
    """The public RSKT-Seg at vitb_384_iSAID.yaml sizes (CLIP ViT-B/16, RemoteCLIP ViT-B/32, RSIB DINO
    ViT-B/8, 3 layers: our defaults), counted by tests/fixtures/make_reference_rsktseg.py --count vitb."""
    doc = json.loads(SHAPES.read_text())
    assert sum(p.numel() for p in vit_b.parameters()) == doc["n_total"] == 398_896_835
    assert vit_b.count_trainable() == doc["n_trainable"] == 32_638_145


def test_vit_b_public_checkpoint_loads_with_no_missing_or_unexpected_keys(vit_b):
    """A public ``model_final.pth`` forged with every key and shape the public code has at ViT-B sizes
    (recorded from it by make_reference_rsktseg.py --count vitb --shapes): each tensor constant with
    its key's index, so the loaded model shows where each public key went."""
    from fixtures.reference import check_forged_checkpoint

    from dglrsis.trainable.models.public_keys import load_public_rsktseg

    P, T = "sem_seg_head.predictor.", "sem_seg_head.predictor.transformer."
    where = {
        "rs_transfer.rclip_up.0.weight": "upsample1_remote.weight",
        "rs_transfer.ripd.proj2.bias": "dino_decod_proj2.bias",
        "qgff.dino_down.weight": "dino_down_sample.weight",
        "qgff.fusion.weight": T + "fusion_corr.weight",
        "aggregator.layers.2.0.attn.sr_k.weight": T + "layers.2.spatial_fusion.sa.attention.sr_k.weight",
        "aggregator.layers.0.0.mlp.dwconv.bias": T + "layers.0.spatial_fusion.sa.mlp.dwconv.dwconv.bias",
        "aggregator.layers.1.1.mlp.fc3.weight": T + "layers.1.class_fusion.sa.mlp.fc3.weight",
        "rs_transfer.rclip_proj.1.0.weight": T + "CLIP_decoder_guidance_projection_remote.1.0.weight",
        "rs_transfer.dino_proj.0.0.bias": T + "DINO_decoder_guidance_projection.0.0.bias",
        "aggregator.decoder2.conv.4.weight": T + "Fusiondecoder2.conv.double_conv.4.weight",
        "rclip.model.visual.conv1.weight": P + "clip_model_remote.visual.conv1.weight",
    }
    fused = (
        "rclip.model.visual.transformer.resblocks.3.attn.in_proj_weight",
        P + "clip_model_remote.visual.transformer.resblocks.3.attn.{}_proj_weight",
        768,
    )
    check_forged_checkpoint(
        vit_b, SHAPES, load_public_rsktseg, where, fused, P + "transformer.extra.weight", "upsample2_remote"
    )


@pytest.mark.slow
def test_vit_l_parameter_counts_equal_the_public_model():
    """vitl_336_iSAID.yaml sizes (CLIP ViT-L/14@336px, NUM_LAYERS 2), make_reference_rsktseg.py --count
    vitl."""
    m = build_model("rsktseg", dict(VIT_B, clip="ViT-L-14-336:random", num_layers=2))
    assert sum(p.numel() for p in m.parameters()) == 678_290_499
    assert m.count_trainable() == 77_748_545
