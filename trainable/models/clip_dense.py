"""Dense CLIP features for the cost-aggregation models, and the CAT-Seg partial fine-tuning selection.

Dense features follow the public CAT-Seg (``model_vpt.py`` ``forward_dense``): the last visual block's
attention is replaced by its value path — ``out_proj(W_v·ln_1(x) + b_v)`` plus the input CLS token as
residual — followed by the block's MLP; every other block runs as usual.

Partial fine-tuning as the public code's ``CLIP_FINETUNE: attention``: only the q and v projection
*weights* of every attention (both towers) train; biases, positional embeddings and everything else in
CLIP are frozen. open_clip keeps q, k and v in one fused ``in_proj_weight`` (3D×D): the fused tensor
stays trainable with a gradient hook that zeroes its k rows, and the CLIP parameter group uses weight
decay 0 so that AdamW leaves the k slice untouched (zero gradient → zero Adam update).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from dglrsis.vit import interpolate_pos_embed, tokens_to_grid


def value_path(blk: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """The public CAT-Seg dense last block: x B×N×D → ``v + MLP(ln_2(v))`` with
    ``v = out_proj(W_v·ln_1(x) + b_v) + x[:, :1]`` (the CLS token as residual of every token)."""
    attn = blk.attn
    d = attn.embed_dim
    bias = attn.in_proj_bias[2 * d :] if attn.in_proj_bias is not None else None
    v = attn.out_proj(F.linear(blk.ln_1(x), attn.in_proj_weight[2 * d :], bias))
    v = getattr(blk, "ls_1", nn.Identity())(v) + x[:, :1]
    return v + getattr(blk, "ls_2", nn.Identity())(blk.mlp(blk.ln_2(v)))


def dense_clip_features(
    visual: nn.Module,
    images: torch.Tensor,
    layers: tuple[int, ...],
    value_last: bool = True,
    inter_only: bool = False,
):
    """Run an open_clip VisionTransformer densely.

    images: B×3×H×W normalised. Returns (tokens B×h×w×E after ln_post and proj, [B×D×h×w for each
    index in ``layers`` — outputs of those residual blocks, 0-based]). ``value_last``: the last block
    as :func:`value_path` (public CAT-Seg); False → the standard block. ``inter_only``: stop after the
    last block in ``layers``, the tokens None (RSKT-Seg's RemoteCLIP, read at two blocks only).
    """
    x = visual.conv1(images)  # B×D×h×w
    b, d, h, w = x.shape
    x = x.flatten(2).transpose(1, 2)  # B×hw×D
    cls = visual.class_embedding.to(x.dtype).expand(b, 1, d)
    x = torch.cat([cls, x], 1) + interpolate_pos_embed(visual.positional_embedding, (h, w)).to(x.dtype)
    x = visual.ln_pre(x)
    inter = []
    blocks = visual.transformer.resblocks
    for i, blk in enumerate(blocks):
        x = value_path(blk, x) if value_last and i == len(blocks) - 1 else blk(x)
        if i in layers:
            inter.append(tokens_to_grid(x, (h, w)))
        if inter_only and i >= max(layers):
            return None, inter
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
    """Freeze CLIP except the attention q/v projection weights (a k-row gradient mask on the fused
    ``in_proj_weight``) of the visual tower and (``text``) the text tower. Returns those parameters."""
    for p in clip.parameters():
        p.requires_grad_(False)
    towers = [clip.visual.transformer] + ([clip.transformer] if text else [])
    out: list[nn.Parameter] = []
    for tower in towers:
        for blk in tower.resblocks:
            p = blk.attn.in_proj_weight
            p.requires_grad_(True)
            p.register_hook(_mask_k_hook(blk.attn.embed_dim))
            p._is_in_proj = True  # only 2/3 of it (q, v) is trained
            out.append(p)
    return out


def count_trainable_clip(params: list[nn.Parameter]) -> int:
    """Elements actually trained: fused in_proj tensors count 2/3 (their q and v slices)."""
    return sum(p.numel() * 2 // 3 if getattr(p, "_is_in_proj", False) else p.numel() for p in params)
