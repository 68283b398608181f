"""CAT-Seg computes what the public code (cvlab-kaist/CAT-Seg) computes: functional properties of each
public convention, the exact ViT-B parameter counts and the public-checkpoint key map (the public outputs
themselves: tests/test_trainable_catseg_reference.py)."""

import pytest
import torch
import torch.nn.functional as F

from dglrsis.errors import DglrsisError
from dglrsis.trainable.models import build_model
from dglrsis.trainable.models.blocks import ClassAggregation, GuidedWindowAttention

CLASSES = ["ship", "harbor, port", "plane"]


def _identity_class_layer(layer: ClassAggregation) -> ClassAggregation:
    """Attention value and MLP output zeroed: the layer adds nothing but its identities."""
    with torch.no_grad():
        for p in (*layer.v.parameters(), *layer.mlp[2].parameters()):
            p.zero_()
    return layer.eval()


def test_class_aggregation_carries_the_identity_twice_and_pools_with_aligned_corners():
    torch.manual_seed(0)
    x, t = torch.randn(2, 8, 3, 6, 6), torch.randn(2, 3, 4)
    plain = _identity_class_layer(ClassAggregation(8, 4, heads=2, pool=None, pad_len=0))
    with torch.no_grad():
        torch.testing.assert_close(plain(x, t), 2 * x)
        pooled = _identity_class_layer(ClassAggregation(8, 4, heads=2, pool=(2, 2), pad_len=0))
        p = F.avg_pool2d(x.reshape(2, 24, 6, 6), 2)
        up = F.interpolate(p, size=(6, 6), mode="bilinear", align_corners=True).view_as(x)
        torch.testing.assert_close(pooled(x, t), x + up)  # pooling in eval too (public POOLING_SIZES)


def test_class_aggregation_pads_to_pad_len_with_learned_tokens():
    """K < pad_len classes: the same as a layer without padding fed the padding token / guidance as
    extra classes, cropped back to K."""
    torch.manual_seed(0)
    padded = ClassAggregation(8, 4, heads=2, pool=None, pad_len=5).eval()
    with torch.no_grad():
        padded.padding_tokens.normal_()
        padded.padding_guidance.normal_()
    plain = ClassAggregation(8, 4, heads=2, pool=None, pad_len=0).eval()
    plain.load_state_dict({k: v for k, v in padded.state_dict().items() if not k.startswith("padding")})
    x, t = torch.randn(1, 8, 3, 4, 4), torch.randn(1, 3, 4)
    xp = torch.cat([x, padded.padding_tokens.view(1, 8, 1, 1, 1).expand(1, 8, 2, 4, 4)], 2)
    tp = torch.cat([t, padded.padding_guidance.expand(1, 2, 4)], 1)
    with torch.no_grad():
        torch.testing.assert_close(padded(x, t), plain(xp, tp)[:, :, :3])
        assert not torch.allclose(padded(x, t), plain(x, t))


def test_window_attention_has_no_position_bias():
    """Without a relative-position table, attention inside a window is permutation-equivariant."""
    torch.manual_seed(0)
    a = GuidedWindowAttention(8, 4, heads=2, ws=3).eval()
    assert {n for n, _ in a.named_parameters()} == {f"{m}.{p}" for m in "qkv" for p in ("weight", "bias")} | {
        "proj.weight",
        "proj.bias",
    }
    x, g = torch.randn(2, 9, 8), torch.randn(2, 9, 4)
    perm = torch.randperm(9)
    with torch.no_grad():
        torch.testing.assert_close(a(x[:, perm], g[:, perm]), a(x, g)[:, perm])


def test_dense_last_block_is_the_value_path_with_cls_residual():
    """Public forward_dense: a patch token's output depends on itself and the CLS token only."""
    from dglrsis.models import load_clip
    from dglrsis.trainable.models.clip_dense import dense_clip_features, value_path

    visual = load_clip("world-clip").model.visual
    blk = visual.transformer.resblocks[-1]
    x = torch.randn(2, 10, visual.conv1.out_channels)
    y = x.clone()
    y[:, 5] += 1.0
    with torch.no_grad():
        a, b = value_path(blk, x), value_path(blk, y)
        keep = [i for i in range(10) if i != 5]
        torch.testing.assert_close(a[:, keep], b[:, keep])
        assert not torch.allclose(a[:, 5], b[:, 5])
        z = x.clone()
        z[:, 0] += 1.0  # the CLS token is every token's residual
        assert (value_path(blk, z) - a).abs().amax(-1).min() > 0
        img = torch.randn(1, 3, 32, 32)
        dense, _ = dense_clip_features(visual, img, ())
        std, _ = dense_clip_features(visual, img, (), value_last=False)
        assert not torch.allclose(dense, std)


@pytest.fixture(scope="module")
def small():
    torch.manual_seed(0)
    return build_model("catseg", dict(clip="world-clip", input_size=32))


def test_finetunes_only_q_and_v_projection_weights(small):
    m = small.train()
    m.zero_grad()
    m(torch.randn(1, 3, 32, 32), CLASSES).square().mean().backward()
    last = f"visual.transformer.resblocks.{len(m.clip.visual.transformer.resblocks) - 1}."
    for name, p in m.clip.named_parameters():
        if name.endswith("attn.in_proj_weight"):
            d = p.shape[0] // 3
            assert p.requires_grad and p.grad[d : 2 * d].abs().sum() == 0, name
            assert p.grad[2 * d :].abs().sum() > 0, name
            # the dense last block is the value path: its q is unused (public forward_dense)
            assert (p.grad[:d].abs().sum() == 0) == name.startswith(last), name
        else:
            assert not p.requires_grad and p.grad is None, name
    assert all(p.grad is not None for n, p in m.named_parameters() if not n.startswith("clip."))


def test_first_synonym_and_renormalised_prompt_mean(small):
    m = small.eval()
    with torch.no_grad():
        torch.testing.assert_close(m.text_embeddings(["harbor, port"]), m.text_embeddings(["harbor"]))
    t = torch.randn(3, 2, 16)
    g = m.text_guidance(t, 2)
    assert g.shape == (2, 3, 16)
    torch.testing.assert_close(g.norm(dim=-1), torch.ones(2, 3))
    torch.testing.assert_close(g[0], F.normalize(t.mean(1), dim=-1))


def test_beyond_pad_len_only_the_top_classes_are_aggregated(small):
    """pad_len = 2 with 3 classes: per image the class with the lowest peak cost gets −100 and the
    other two equal the model run on exactly those two classes (here all three fit a pad of 3)."""
    m = small.eval()
    x = torch.randn(1, 3, 32, 32, generator=torch.Generator().manual_seed(3))
    names = ["ship", "plane", "storage tank"]
    with torch.no_grad():
        img, _ = m.image_features(x)
        peak = m.cost_volume(img, m.text_embeddings(names)).amax(dim=(1, 3, 4))[0]
        drop = int(peak.argmin())
        kept = [n for i, n in enumerate(names) if i != drop]
        m.cfg.pad_len = 2
        try:
            out = m(x, names)
            ref = m(x, kept)
        finally:
            m.cfg.pad_len = 256
    assert torch.all(out[0, drop] == -100.0)
    torch.testing.assert_close(out[0, [i for i in range(3) if i != drop]], ref[0], rtol=1e-5, atol=1e-5)


def test_vit_b_parameter_counts_equal_the_public_model():
    m = build_model("catseg", dict(clip="ViT-B-16:random"))  # ~5 s on CPU
    assert sum(p.numel() for p in m.parameters()) == 154_289_378
    assert m.count_trainable() == 25_115_873


def _public_state(model) -> dict:
    """A forged public ``model_final.pth`` for ``model``: key names from the public code's modules
    (cat_seg_model.py, cat_seg_predictor.py, transformer/model.py, third_party/model_vpt.py)."""
    pub = {}
    for name, v in model.clip.state_dict().items():
        if name.endswith("attn.in_proj_weight"):
            for part, w in zip("qkv", v.chunk(3, 0), strict=True):
                pub[
                    f"sem_seg_head.predictor.clip_model.{name[: -len('in_proj_weight')]}{part}_proj_weight"
                ] = w
        else:
            pub[f"sem_seg_head.predictor.clip_model.{name}"] = v
    a, T = model.aggregator, "sem_seg_head.predictor.transformer."

    def put(prefix, module):
        for n, v in module.state_dict().items():
            pub[prefix + n] = torch.randn_like(v) if v.is_floating_point() else v

    put(T + "conv1.", a.conv1)
    put(T + "guidance_projection.", a.guidance_proj)
    put(T + "text_guidance_projection.", a.text_guidance_proj)
    for i, (spatial, cls) in enumerate(a.layers):
        L = f"{T}layers.{i}."
        put(L + "swin_block.guidance_norm.", spatial.guidance_norm)
        for j, blk in enumerate(spatial.blocks):
            B = f"{L}swin_block.block_{j + 1}."
            put(B + "norm1.", blk.norm1)
            put(B + "norm2.", blk.norm2)
            put(B + "attn.", blk.attn)
            put(B + "mlp.fc1.", blk.mlp[0])
            put(B + "mlp.fc2.", blk.mlp[2])
            if blk.shift:  # the public shifted block registers its mask as a buffer
                pub[B + "attn_mask"] = torch.zeros(1)
        for n in ("q", "k", "v"):
            put(f"{L}attention.attention.{n}.", getattr(cls, n))
        put(L + "attention.MLP.0.", cls.mlp[0])
        put(L + "attention.MLP.2.", cls.mlp[2])
        put(L + "attention.norm1.", cls.norm1)
        put(L + "attention.norm2.", cls.norm2)
        pub[L + "attention.padding_tokens"] = torch.randn_like(cls.padding_tokens)
        pub[L + "attention.padding_guidance"] = torch.randn_like(cls.padding_guidance)
    for j, proj in enumerate(a.decoder_guidance):
        put(f"{T}decoder_guidance_projection.{j}.", proj)
    for d in ("decoder1", "decoder2"):
        put(f"{T}{d}.up.", getattr(a, d).up)
        put(f"{T}{d}.conv.double_conv.", getattr(a, d).conv)
    put(T + "head.", a.head)
    put("upsample1.", model.upsample1)
    put("upsample2.", model.upsample2)
    return pub


def test_public_checkpoint_loads_with_no_missing_or_unexpected_keys(small):
    from dglrsis.trainable.models.public_keys import load_public_catseg

    pub = _public_state(small)
    load_public_catseg(small, {"model": pub, "iteration": 79999})
    sd = small.state_dict()
    T = "sem_seg_head.predictor.transformer."
    assert torch.equal(sd["aggregator.layers.1.1.mlp.2.weight"], pub[T + "layers.1.attention.MLP.2.weight"])
    assert torch.equal(
        sd["aggregator.layers.0.0.blocks.1.mlp.0.bias"], pub[T + "layers.0.swin_block.block_2.mlp.fc1.bias"]
    )
    assert torch.equal(sd["aggregator.decoder2.conv.3.weight"], pub[T + "decoder2.conv.double_conv.3.weight"])
    q = pub["sem_seg_head.predictor.clip_model.visual.transformer.resblocks.0.attn.k_proj_weight"]
    d = q.shape[0]
    assert torch.equal(sd["clip.visual.transformer.resblocks.0.attn.in_proj_weight"][d : 2 * d], q)
    with pytest.raises(DglrsisError, match="no counterpart"):
        load_public_catseg(small, {"model": {**pub, "sem_seg_head.predictor.extra.weight": torch.zeros(1)}})
    short = {k: v for k, v in pub.items() if "head.weight" not in k}
    with pytest.raises(DglrsisError, match="missing"):
        load_public_catseg(small, {"model": short})


class _Stub(torch.nn.Module):
    """Stand-in for the contract: B×3×S×S → B×K×S/4×S/4 (a fixed strided conv per class)."""

    input_size = 384

    def __init__(self):
        super().__init__()
        self.conv = torch.nn.Conv2d(3, 2, 4, stride=4)

    def forward(self, x, names):
        assert x.shape[-1] == self.input_size
        return self.conv(x)


def test_sliding_window_inference_is_the_public_scheme():
    """512×683 input: written here as the public inference_sliding_window (nn.Unfold / nn.Fold)."""
    from dglrsis.trainable.evaluate import predict_logits

    torch.manual_seed(0)
    model = _Stub().eval()
    image = torch.randn(1, 3, 512, 683)
    kernel, stride, res = 384, int(384 * (1 - 0.333)), [640, 640]
    unfold = torch.nn.Unfold(kernel_size=kernel, stride=stride)
    fold = torch.nn.Fold(res, kernel_size=kernel, stride=stride)
    with torch.no_grad():
        big = F.interpolate(image, size=res, mode="bilinear", align_corners=False).squeeze(0)
        wins = unfold(big).T.reshape(-1, 3, kernel, kernel)
        glob = F.interpolate(image, size=(kernel, kernel), mode="bilinear", align_corners=False)
        out = model(torch.cat([wins, glob]), None)
        out = F.interpolate(out, size=kernel, mode="bilinear", align_corners=False).sigmoid()
        g = F.interpolate(out[-1:], size=res, mode="bilinear", align_corners=False)
        local = fold(out[:-1].flatten(1).T) / fold(unfold(torch.ones([1] + res)))
        want = F.interpolate((local[None] + g) / 2, size=(512, 683), mode="bilinear", align_corners=False)
        got = predict_logits(model, image, ["a", "b"], sliding=True).sigmoid()
    assert wins.shape[0] == 4
    torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-5)


def test_bce_counts_ignored_pixels_as_negatives():
    from dglrsis.trainable.train import seg_loss

    logits = torch.tensor([2.0, -1.0]).view(1, 2, 1, 1).expand(1, 2, 1, 2)  # both pixels alike
    label = torch.tensor([[[0, 255]]])
    sp = F.softplus
    a, b = sp(torch.tensor(2.0)), sp(torch.tensor(-1.0))
    torch.testing.assert_close(seg_loss(logits, label), (a - 2 + b + a + b) / 4)
    torch.testing.assert_close(seg_loss(logits, label, ignore_as_negative=False), (a - 2 + b) / 2)
