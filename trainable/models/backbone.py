"""The one frozen-backbone component: a DINO-family ViT (Hugging Face) or an open_clip model, loaded
once, with every parameter frozen and the module pinned to eval mode (``model.train()`` leaves it in eval).

``forward(images)`` → ``(last B×D×g×g, [B×W×g×g at self.layers])`` under ``torch.no_grad``. Patch
tokens are taken as the last ``g·g`` of the sequence (:func:`dglrsis.vit.tokens_to_grid`), so DINOs with
register tokens (DINOv2-reg, ``dinov3-vitb16``) are read the same way as DINO v1.
"""

from __future__ import annotations

import torch
from torch import nn

from dglrsis.vit import default_layers, tokens_to_grid

from .clip_dense import dense_clip_features


class FrozenBackbone(nn.Module):
    """Frozen encoder. ``kind``: ``"dino"`` (HF ViT / DINOv2 / DINOv3) or ``"clip"`` (open_clip CLIP;
    ``last`` is the projected dense output, ``inter`` the residual stream of the tapped blocks)."""

    def __init__(self, model: nn.Module, kind: str, patch: int, dim: int, num_layers: int):
        super().__init__()
        self.model = model.requires_grad_(False).eval()
        self.kind, self.patch, self.dim = kind, patch, dim
        self.layers = default_layers(num_layers)

    @classmethod
    def dino(cls, name: str, bundle=None) -> FrozenBackbone:
        """From a DINO registry name (``dglrsis.models.load_dino``) or an already loaded bundle."""
        if bundle is None:
            from dglrsis.models import load_dino

            bundle = load_dino(name)
        return cls(
            bundle.model, "dino", bundle.patch_size, bundle.embed_dim, bundle.model.config.num_hidden_layers
        )

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
    def forward(self, images: torch.Tensor):
        """images B×3×H×W → (last B×D×h×w, [B×W×h×w for each of self.layers])."""
        hw = (images.shape[-2] // self.patch, images.shape[-1] // self.patch)
        if self.kind == "clip":
            last, inter = dense_clip_features(self.model.visual, images, self.layers)
            return last.permute(0, 3, 1, 2), inter
        out = self.model(pixel_values=images, output_hidden_states=True, interpolate_pos_encoding=True)
        last = tokens_to_grid(out.last_hidden_state, hw)
        return last, [tokens_to_grid(out.hidden_states[i + 1], hw) for i in self.layers]
