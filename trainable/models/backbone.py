"""The one frozen-backbone component: a DINO-family ViT (Hugging Face) or an open_clip model, loaded
once, with every parameter frozen and the module pinned to eval mode (``model.train()`` leaves it in eval).

``forward(images)`` → ``(last B×D×g×g, [B×W×g×g at self.layers])`` under ``torch.no_grad``. Patch
tokens are taken as the last ``g·g`` of the sequence (:func:`dglrsis.vit.tokens_to_grid`), so DINOs with
register tokens (DINOv2-reg, ``dinov3-vitb16``) are read the same way as DINO v1.

A DINO v1 ViT (transformers ``ViTModel``) resizes its positional table as the DINO v1 code does
(``vision_transformer.py`` ``interpolate_pos_encoding``, which GSNet and RSKT-Seg run): bicubic with
``scale_factor = (g + 0.1) / g0`` instead of transformers' ``size = g`` (the sampling positions differ
by 0.2 % at 28 → 48).
"""

from __future__ import annotations

import types

import torch
import torch.nn.functional as F
from torch import nn

from dglrsis.vit import default_layers, tokens_to_grid

from .clip_dense import dense_clip_features


def dino_v1_pos(emb: nn.Module, tokens: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """DINO v1 positional table for a ``height×width`` input: 1×(1 + g·g)×D (method of ``emb``, a
    transformers ``ViTEmbeddings``; ``tokens`` 1×N×D only gives the token count)."""
    pos = emb.position_embeddings
    n0, dim = pos.shape[1] - 1, pos.shape[-1]
    if tokens.shape[1] - 1 == n0 and height == width:
        return pos
    g0 = int(n0**0.5)
    gh, gw = height // emb.patch_size, width // emb.patch_size
    grid = pos[:, 1:].reshape(1, g0, g0, dim).permute(0, 3, 1, 2)
    grid = F.interpolate(grid, scale_factor=((gh + 0.1) / g0, (gw + 0.1) / g0), mode="bicubic")
    return torch.cat([pos[:, :1], grid.permute(0, 2, 3, 1).reshape(1, -1, dim)], 1)


class FrozenBackbone(nn.Module):
    """Frozen encoder. ``kind``: ``"dino"`` (HF ViT / DINOv2 / DINOv3) or ``"clip"`` (open_clip CLIP;
    ``last`` is the projected dense output, ``inter`` the residual stream of the tapped blocks).
    ``norm_inter``: the tapped DINO layers pass through the final LayerNorm too (DINO v1
    ``get_intermediate_layers``, as GSNet reads them)."""

    def __init__(
        self, model: nn.Module, kind: str, patch: int, dim: int, num_layers: int, norm_inter: bool = False
    ):
        super().__init__()
        self.model = model.requires_grad_(False).eval()
        self.kind, self.patch, self.dim, self.norm_inter = kind, patch, dim, norm_inter
        self.layers = default_layers(num_layers)
        emb = getattr(model, "embeddings", None)
        if type(model).__name__ == "ViTModel" and hasattr(emb, "interpolate_pos_encoding"):
            emb.interpolate_pos_encoding = types.MethodType(dino_v1_pos, emb)

    @classmethod
    def dino(cls, name: str, bundle=None, norm_inter: bool = False) -> FrozenBackbone:
        """From a DINO registry name (``dglrsis.models.load_dino``) or an already loaded bundle."""
        if bundle is None:
            from dglrsis.models import load_dino

            bundle = load_dino(name)
        n = bundle.model.config.num_hidden_layers
        return cls(bundle.model, "dino", bundle.patch_size, bundle.embed_dim, n, norm_inter)

    @classmethod
    def clip(cls, name: str, bundle=None) -> FrozenBackbone:
        """From a CLIP registry name (``dglrsis.models.load_clip``) or an already loaded bundle."""
        if bundle is None:
            from dglrsis.models import load_clip

            bundle = load_clip(name)
        vis = bundle.model.visual
        return cls(
            bundle.model,
            "clip",
            vis.conv1.kernel_size[0],
            vis.conv1.out_channels,
            len(vis.transformer.resblocks),
        )

    def train(self, mode: bool = True):
        return super().train(False)

    def grid(self, size: int) -> int:
        """Patch-grid side for an input side ``size``."""
        return size // self.patch

    @torch.no_grad()
    def forward(self, images: torch.Tensor, inter_only: bool = False):
        """images B×3×H×W → (last B×D×h×w, [B×W×h×w for each of self.layers]). ``inter_only`` (CLIP):
        the blocks after the last of ``self.layers`` are not run and ``last`` is None."""
        hw = (images.shape[-2] // self.patch, images.shape[-1] // self.patch)
        if self.kind == "clip":
            last, inter = dense_clip_features(self.model.visual, images, self.layers, inter_only=inter_only)
            return (None if last is None else last.permute(0, 3, 1, 2)), inter
        out = self.model(pixel_values=images, output_hidden_states=True, interpolate_pos_encoding=True)
        last = tokens_to_grid(out.last_hidden_state, hw)
        norm = nn.Identity()
        if self.norm_inter:  # the final LayerNorm: ``layernorm`` (ViT, DINOv2) or ``norm`` (DINOv3)
            norm = getattr(self.model, "layernorm", None) or self.model.norm
        return last, [tokens_to_grid(norm(out.hidden_states[i + 1]), hw) for i in self.layers]
