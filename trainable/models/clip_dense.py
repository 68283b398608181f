"""Dense CLIP features for the cost-aggregation models, and the CAT-Seg partial fine-tuning selection.

Partial fine-tuning choice: open_clip keeps q, k and v of each attention in one fused
``in_proj_weight`` (3D×D) / ``in_proj_bias`` (3D). We keep the fused tensor trainable and register a
gradient hook that zeroes the k rows, so only the q and v slices receive gradient. The CLIP parameter
group uses weight decay 0 so that AdamW leaves the k slice untouched (zero gradient → zero Adam update).
Positional embeddings (image and text) are trainable; everything else in CLIP is frozen.
"""

from __future__ import annotations

import torch
from torch import nn

from dglrsis.vit import interpolate_pos_embed, tokens_to_grid


def dense_clip_features(visual: nn.Module, images: torch.Tensor, layers: tuple[int, ...]):
    """Run an open_clip VisionTransformer densely.

    images: B×3×H×W normalised. Returns (tokens B×h×w×E after ln_post and proj, [B×D×h×w for each
    index in ``layers`` — outputs of those residual blocks, 0-based]).
    """
    x = visual.conv1(images)  # B×D×h×w
    b, d, h, w = x.shape
    x = x.flatten(2).transpose(1, 2)  # B×hw×D
    cls = visual.class_embedding.to(x.dtype).expand(b, 1, d)
    x = torch.cat([cls, x], 1) + interpolate_pos_embed(visual.positional_embedding, (h, w)).to(x.dtype)
    x = visual.ln_pre(x)
    inter = []
    for i, blk in enumerate(visual.transformer.resblocks):
        x = blk(x)
        if i in layers:
            inter.append(tokens_to_grid(x, (h, w)))
    x = visual.ln_post(x[:, 1:])
    if visual.proj is not None:
        x = x @ visual.proj
    return x.reshape(b, h, w, -1), inter


def _mask_k_hook(dim: int):
    def hook(grad: torch.Tensor) -> torch.Tensor:
        grad = grad.clone()
        grad[dim : 2 * dim] = 0
        return grad

    return hook


def select_clip_finetune(clip: nn.Module, text: bool = True) -> list[nn.Parameter]:
    """Freeze CLIP except attention q/v (via a k-row gradient mask) and positional embeddings.

    Returns the list of trainable CLIP parameters. ``text``: also fine-tune the text tower's attention.
    """
    for p in clip.parameters():
        p.requires_grad_(False)
    towers = [clip.visual.transformer] + ([clip.transformer] if text else [])
    out: list[nn.Parameter] = [clip.visual.positional_embedding]
    if text:
        out.append(clip.positional_embedding)
    for tower in towers:
        for blk in tower.resblocks:
            attn = blk.attn
            for p in (attn.in_proj_weight, attn.in_proj_bias):
                if p is None:
                    continue
                p.requires_grad_(True)
                p.register_hook(_mask_k_hook(attn.embed_dim))
                p._is_in_proj = True  # only 2/3 of it (q, v) is trained
                out.append(p)
    for p in out:
        p.requires_grad_(True)
    return out


def count_trainable_clip(params: list[nn.Parameter]) -> int:
    """Elements actually trained: fused in_proj tensors count 2/3 (their q and v slices)."""
    return sum(p.numel() * 2 // 3 if getattr(p, "_is_in_proj", False) else p.numel() for p in params)
