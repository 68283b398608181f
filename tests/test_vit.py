"""dglrsis.vit: positional-embedding interpolation, tokens → grid (CLS and register tokens), layer picks."""

import pytest
import torch

from dglrsis.errors import DglrsisError
from dglrsis.models import load_clip
from dglrsis.vit import default_layers, interpolate_pos_embed, patch_size, resize_pos_embed, tokens_to_grid


@pytest.fixture(scope="module")
def world_random():
    torch.manual_seed(0)
    return load_clip("world-clip:random")


def test_reshape_transform_is_row_major_and_drops_cls():
    g, d = 3, 2
    tokens = torch.zeros(1, 1 + g * g, d)
    tokens[0, 0] = -100.0  # CLS
    tokens[0, 1:, 0] = torch.arange(g * g, dtype=torch.float32)
    grid = tokens_to_grid(tokens)
    assert grid.shape == (1, d, g, g)
    assert grid[0, 0, 1, 2] == 1 * g + 2 and grid.min() >= 0


def test_interpolate_pos_embed():
    torch.manual_seed(0)
    pos = torch.randn(1 + 4 * 4, 8)
    assert torch.equal(interpolate_pos_embed(pos, 4), pos)
    big = interpolate_pos_embed(pos, 6)
    assert big.shape == (1 + 36, 8) and torch.equal(big[0], pos[0])
    const = torch.cat([torch.zeros(1, 3), torch.full((16, 3), 2.5)])
    assert torch.allclose(interpolate_pos_embed(const, 7)[1:], torch.full((49, 3), 2.5), atol=1e-5)
    # down- then up-sampling a smooth (constant-per-row) field keeps the row order
    rows = torch.arange(4, dtype=torch.float32).repeat_interleave(4)[:, None]
    up = interpolate_pos_embed(torch.cat([torch.zeros(1, 1), rows]), 8)[1:, 0].reshape(8, 8)
    assert (up[1:, 0] >= up[:-1, 0]).all() and torch.allclose(up[:, 0], up[:, 5])
    with pytest.raises(DglrsisError):
        interpolate_pos_embed(torch.randn(1 + 15, 4), 4)


def test_resize_pos_embed_context_restores(world_random):
    visual = world_random.model.visual
    orig = visual.positional_embedding
    with resize_pos_embed(visual, 10):
        assert visual.positional_embedding.shape == (101, orig.shape[1])
        out = visual(torch.randn(1, 3, 80, 80))
        assert out.shape == (1, world_random.embed_dim)
    assert visual.positional_embedding is orig and visual.grid_size == (12, 12)
    with pytest.raises(RuntimeError):
        visual(torch.randn(1, 3, 80, 80))  # native embedding no longer fits 10×10


def test_tokens_to_grid_drops_register_tokens():
    """A DINOv2/v3 sequence is CLS + R registers + patches: the grid is the last h·w tokens."""
    h, w, d, regs = 2, 3, 4, 4
    tokens = torch.full((2, 1 + regs + h * w, d), -7.0)
    tokens[:, 1 + regs :] = 0.0
    tokens[:, 1 + regs :, 0] = torch.arange(h * w, dtype=torch.float32)
    grid = tokens_to_grid(tokens, (h, w))
    assert grid.shape == (2, d, h, w)
    assert grid[0, 0].flatten().tolist() == list(range(h * w))
    assert (grid > -7).all()
    with pytest.raises(DglrsisError):
        tokens_to_grid(tokens, (4, 4))  # 16 patches do not fit in 11 tokens


def test_interpolate_pos_embed_keeps_register_rows_and_gradient():
    pos = torch.randn(5 + 9, 3, requires_grad=True)  # CLS + 4 registers + 3×3
    out = interpolate_pos_embed(pos, (2, 4), n_prefix=5)
    assert out.shape == (5 + 8, 3) and torch.equal(out[:5], pos[:5])
    out.sum().backward()
    assert pos.grad is not None and pos.grad[5:].abs().sum() > 0


def test_patch_size_and_default_layers(world_random):
    assert patch_size(world_random.model.visual) == 8
    assert default_layers(12) == (3, 7) and default_layers(24) == (7, 15) and default_layers(4) == (0, 1)
