"""Grad-CAM for open_clip ViTs (dglrsis.cam): shapes, ranges, side effects, pure helpers."""

import numpy as np
import pytest
import torch

from dglrsis.cam import cam_mass_inside, clip_gradcam, pointing_game
from dglrsis.errors import DglrsisError
from dglrsis.models import load_clip


@pytest.fixture(scope="module")
def world_random():
    torch.manual_seed(0)
    return load_clip("world-clip:random")


@pytest.fixture(scope="module")
def vitb_random():
    torch.manual_seed(0)
    return load_clip("ViT-B-16:random")


def _hooks(model):
    return [
        (n, len(m._forward_hooks), len(m._backward_hooks), len(m._forward_pre_hooks))
        for n, m in model.named_modules()
        if m._forward_hooks or m._backward_hooks or m._forward_pre_hooks
    ]


def _check_call(clip, size, batch=2, text_rows=1):
    torch.manual_seed(1)
    x = torch.randn(batch, 3, size, size)
    x_before = x.clone()
    text = clip.encode_text(["a ship", "a storage tank"][:text_rows])
    flags = [p.requires_grad for p in clip.model.parameters()]
    pos = clip.model.visual.positional_embedding
    pos_before = pos.detach().clone()
    cams = clip_gradcam(clip, x, text)
    assert cams.shape == (batch, size, size) and cams.dtype == np.float32
    assert np.isfinite(cams).all() and cams.min() >= 0.0 and cams.max() <= 1.0 + 1e-6
    assert cams.reshape(batch, -1).max(1).min() > 0.99  # each map is min–max scaled
    assert torch.equal(x, x_before) and not x.requires_grad  # input untouched
    assert [p.requires_grad for p in clip.model.parameters()] == flags
    assert all(p.grad is None for p in clip.model.parameters())
    assert clip.model.visual.positional_embedding is pos
    assert torch.equal(pos.detach(), pos_before)
    assert _hooks(clip.model) == []
    assert not clip.model.training
    return cams


def test_world_clip_native_and_non_native(world_random):
    _check_call(world_random, 96)  # 12×12 grid
    _check_call(world_random, 128, text_rows=2)  # 16×16 grid, interpolated positions, B×D text


def test_vit_b16_224(vitb_random):
    _check_call(vitb_random, 224, batch=1)  # 14×14 grid


def test_frozen_model_and_no_grad_context(world_random):
    for p in world_random.model.parameters():
        p.requires_grad_(False)
    try:
        with torch.no_grad():
            cams = clip_gradcam(world_random, torch.randn(1, 3, 96, 96), world_random.encode_text(["a ship"]))
        assert cams.max() > 0.99
        assert not any(p.requires_grad for p in world_random.model.parameters())
    finally:
        for p in world_random.model.parameters():
            p.requires_grad_(True)


def test_concurrent_calls_share_one_model(world_random):
    """Grad-CAM at a non-native size and native-size encoders from many threads at once give the
    sequential results (the model is changed during a CAM call, so calls are serialised per model)."""
    import concurrent.futures

    torch.manual_seed(3)
    x = torch.randn(1, 3, 128, 128)  # 16×16 grid: positional embedding interpolated
    crops = torch.randn(2, 3, 96, 96)  # native size
    text = world_random.encode_text(["a ship"])
    want_cam = clip_gradcam(world_random, x, text)
    want_emb = world_random.encode_images(crops)

    def job(i):
        if i % 2:
            return "cam", clip_gradcam(world_random, x, text)
        return "emb", world_random.encode_images(crops).numpy()

    with concurrent.futures.ThreadPoolExecutor(max_workers=8) as pool:
        results = list(pool.map(job, range(24)))
    for kind, got in results:
        want = want_cam if kind == "cam" else want_emb.numpy()
        np.testing.assert_allclose(got, want, atol=1e-5)
    assert _hooks(world_random.model) == []
    assert world_random.model.visual.positional_embedding.shape[0] == 12 * 12 + 1


def test_bad_inputs(world_random):
    with pytest.raises(DglrsisError):
        clip_gradcam(world_random, torch.randn(1, 3, 96, 64), world_random.encode_text(["a"]))
    with pytest.raises(DglrsisError):
        clip_gradcam(world_random, torch.randn(3, 3, 96, 96), world_random.encode_text(["a", "b"]))


def test_cam_mass_inside_hand_computed():
    cam = np.zeros((4, 5))
    cam[0, 0], cam[0, 1], cam[3, 4] = 4.0, 3.0, 1.0
    mask = np.zeros((4, 5), bool)
    mask[0, 0] = True
    # top 10 % of 20 pixels = 2 pixels: values 4 (inside) and 3 (outside) → 4 / 7
    assert cam_mass_inside(cam, mask, top=0.10) == pytest.approx(4 / 7)
    # top 15 % = ceil(3) = 3 pixels: 4, 3, 1 → 4 / 8
    assert cam_mass_inside(cam, mask, top=0.15) == pytest.approx(0.5)
    assert cam_mass_inside(np.zeros((4, 5)), mask) == 0.0
    assert cam_mass_inside(cam, np.ones((4, 5), bool)) == pytest.approx(1.0)
    with pytest.raises(DglrsisError):
        cam_mass_inside(cam, mask[:3])


def test_pointing_game_hand_computed():
    cam = np.zeros((3, 3))
    cam[2, 1] = 0.9
    cam[0, 0] = 0.5
    mask = np.zeros((3, 3), bool)
    mask[2, 1] = True
    assert pointing_game(cam, mask) is True
    assert pointing_game(cam, ~mask) is False


def _reference_gradcam(clip, x, text):
    """pytorch-grad-cam's GradCAM on CLIP wrapped as image → cosine similarity (the owning tool)."""
    import torch.nn.functional as F
    from pytorch_grad_cam import GradCAM
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

    from dglrsis.vit import patch_size, resize_pos_embed, tokens_to_grid

    model = clip.model

    class Sim(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.model = model

        def forward(self, images):
            img = F.normalize(model.encode_image(images).float(), dim=-1)
            return (img * F.normalize(text.float(), dim=-1)).sum(-1, keepdim=True)

    visual = model.visual
    with (
        torch.enable_grad(),
        resize_pos_embed(visual, x.shape[-1] // patch_size(visual)),
        GradCAM(
            model=Sim(),
            target_layers=[visual.transformer.resblocks[-1].ln_1],
            reshape_transform=lambda t: tokens_to_grid(t).float(),
        ) as cam,
    ):
        out = cam(input_tensor=x.clone().requires_grad_(True), targets=[ClassifierOutputTarget(0)] * len(x))
    for p in model.parameters():
        p.grad = None
    return out


@pytest.mark.parametrize("size", [96, 192])
def test_equals_pytorch_grad_cam(world_random, size):
    torch.manual_seed(3)
    x = torch.randn(3, 3, size, size)
    text = world_random.encode_text(["a ship"])
    np.testing.assert_allclose(
        clip_gradcam(world_random, x, text), _reference_gradcam(world_random, x, text), atol=1e-5
    )


def test_batched_equals_one_by_one_and_features_reuse(world_random):
    from dglrsis.cam import cam_features, gradcam_from_features

    torch.manual_seed(4)
    x = torch.randn(4, 3, 96, 96)
    t1, t2 = world_random.encode_text(["a ship"]), world_random.encode_text(["a storage tank"])
    batched = clip_gradcam(world_random, x, t1)
    single = np.concatenate([clip_gradcam(world_random, x[i : i + 1], t1) for i in range(len(x))])
    np.testing.assert_allclose(batched, single, atol=1e-5)
    feats = cam_features(world_random, x)  # the text-independent half, computed once
    np.testing.assert_allclose(gradcam_from_features(world_random, feats, t1), batched, atol=1e-5)
    np.testing.assert_allclose(
        gradcam_from_features(world_random, feats, t2), clip_gradcam(world_random, x, t2), atol=1e-5
    )
    assert not np.allclose(
        gradcam_from_features(world_random, feats, t1), gradcam_from_features(world_random, feats, t2)
    )
    assert _hooks(world_random.model) == []
