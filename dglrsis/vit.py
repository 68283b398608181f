"""Vision-transformer helpers shared by the training-free core (Grad-CAM) and the trainable models.

- :func:`interpolate_pos_embed`: resize a positional embedding with ``n_prefix`` leading tokens (CLS, and
  register tokens for DINOv2/v3-style models) to another patch grid, bicubically (differentiable);
- :func:`resize_pos_embed`: the same applied to an open_clip ``VisionTransformer`` for the duration of a
  ``with`` block;
- :func:`tokens_to_grid`: ``B×N×D`` tokens → ``B×D×h×w`` patch grid, dropping every prefix token (CLS
  and registers: the patch tokens are the last ``h·w``);
- :func:`patch_size` and :func:`default_layers` (the intermediate blocks CAT-Seg-style models tap).
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Iterator

import torch
import torch.nn.functional as F
from torch import nn

from .errors import DglrsisError


def interpolate_pos_embed(pos: torch.Tensor, grid: int | tuple[int, int], n_prefix: int = 1) -> torch.Tensor:
    """Resize a ViT positional embedding ``(n_prefix + g0²)×D`` to ``(n_prefix + gh·gw)×D``.

    The patch part is treated as a ``D×g0×g0`` image and resized bicubically (``align_corners=False``,
    computed in float32, returned in ``pos.dtype``); the prefix rows are kept. When the grid is unchanged
    ``pos`` itself is returned. Gradients flow through (trainable positional embeddings).
    """
    gh, gw = (grid, grid) if isinstance(grid, int) else grid
    n, dim = pos.shape
    g0 = math.isqrt(n - n_prefix)
    if g0 * g0 != n - n_prefix:
        raise DglrsisError(f"positional embedding with {n - n_prefix} patch tokens is not a square grid")
    if (gh, gw) == (g0, g0):
        return pos
    patches = pos[n_prefix:].float().reshape(1, g0, g0, dim).permute(0, 3, 1, 2)
    patches = F.interpolate(patches, size=(gh, gw), mode="bicubic", align_corners=False)
    patches = patches.permute(0, 2, 3, 1).reshape(gh * gw, dim).to(pos.dtype)
    return torch.cat([pos[:n_prefix], patches], dim=0)


@contextlib.contextmanager
def resize_pos_embed(visual: nn.Module, grid: int) -> Iterator[nn.Module]:
    """Temporarily give an open_clip ``VisionTransformer`` a positional embedding for a ``grid×grid`` input.

    Inside the block the module accepts images of side ``grid × patch``; on exit the original
    ``positional_embedding`` Parameter (same object, same values) and ``grid_size`` are restored.
    """
    orig = visual.positional_embedding
    orig_grid = getattr(visual, "grid_size", None)
    if math.isqrt(orig.shape[0] - 1) == grid:
        yield visual
        return
    new = interpolate_pos_embed(orig.detach(), grid)
    visual.positional_embedding = nn.Parameter(new, requires_grad=orig.requires_grad)
    if orig_grid is not None:
        visual.grid_size = (grid, grid)
    try:
        yield visual
    finally:
        visual.positional_embedding = orig
        if orig_grid is not None:
            visual.grid_size = orig_grid


def tokens_to_grid(tokens: torch.Tensor, grid: int | tuple[int, int] | None = None) -> torch.Tensor:
    """``B×N×D`` transformer tokens → ``B×D×h×w`` patch grid (dtype kept).

    The patch tokens are the last ``h·w`` of the sequence, whatever precedes them (a CLS token, register
    tokens). ``grid`` = ``(h, w)`` (or a side); None infers the largest square grid that fits behind at
    least one prefix token.
    """
    if tokens.dim() != 3:
        raise DglrsisError(f"expected B×N×D transformer tokens, got shape {tuple(tokens.shape)}")
    b, n, d = tokens.shape
    if grid is None:
        g = math.isqrt(n - 1)
        if g < 1:
            raise DglrsisError(f"{n} tokens hold no patch grid")
        grid = (g, g)
    h, w = (grid, grid) if isinstance(grid, int) else grid
    if h * w > n:
        raise DglrsisError(f"a {h}×{w} grid needs {h * w} patch tokens, the sequence has {n}")
    return tokens[:, n - h * w :].transpose(1, 2).reshape(b, d, h, w)


def patch_size(visual: nn.Module) -> int:
    """Patch side of an open_clip ``VisionTransformer`` (its ``conv1`` kernel)."""
    k = visual.conv1.kernel_size
    return int(k[0] if isinstance(k, (tuple, list)) else k)


def default_layers(num_layers: int) -> tuple[int, int]:
    """0-based blocks tapped for decoder guidance: ``(L/3 − 1, 2L/3 − 1)`` (ViT-B: 3, 7; ViT-L: 7, 15)."""
    return max(num_layers // 3 - 1, 0), max(2 * num_layers // 3 - 1, 0)
