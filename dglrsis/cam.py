"""Grad-CAM of the CLIP image–text similarity for open_clip vision transformers.

Built on pytorch-grad-cam: CLIP is wrapped so that it is called with one image tensor and returns the
cosine similarity to a fixed text embedding (``B×1``); the target layer is ``ln_1`` of a residual block
(the output of the last block carries gradient only for the CLS token); a reshape transform drops the CLS
token and folds the patch tokens (open_clip 3.x is batch-first, ``B×N×D``) into the ``g×g`` grid,
``g = S // patch``. Inputs of a non-native size work: the positional embedding is interpolated for the
duration of the call (:func:`dglrsis.vit.resize_pos_embed`). Hooks are released, the caller's tensor, the
model's ``requires_grad`` flags and train/eval mode are left as they were (weights are frozen during the
call, so no weight gradients are computed; note pytorch-grad-cam calls ``zero_grad`` on the model).
Because the model is changed for the duration of the call, calls hold
:func:`dglrsis.models.model_lock` and are safe from several threads.

Also two pure scoring helpers for CAM sanity checks: :func:`cam_mass_inside` and :func:`pointing_game`.
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from .errors import DglrsisError
from .models import model_lock
from .vit import patch_size, resize_pos_embed, tokens_to_grid


class _Similarity(nn.Module):
    """CLIP as a one-input model: images ``B×3×S×S`` → cosine similarity to the text, ``B×1``."""

    def __init__(self, model: nn.Module, text_emb: torch.Tensor):
        super().__init__()
        self.model = model
        self.text = F.normalize(text_emb.float(), dim=-1)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        img = F.normalize(self.model.encode_image(images).float(), dim=-1)
        return (img * self.text).sum(-1, keepdim=True)


def _grid_activations(tokens: torch.Tensor) -> torch.Tensor:
    """pytorch-grad-cam reshape transform: ``B×N×D`` tokens (CLS first) → ``B×D×g×g`` float32."""
    return tokens_to_grid(tokens).float()


def clip_gradcam(clip, images: torch.Tensor, text_emb: torch.Tensor, layer: int = -1) -> np.ndarray:
    """Grad-CAM maps of image–text similarity.

    Args:
        clip: a :class:`dglrsis.models.ClipBundle` (or a bare open_clip ``CLIP`` with ``encode_image``).
        images: ``B×3×S×S`` normalised image tensor (any square side ``S``; the positional embedding is
            interpolated when ``S // patch`` differs from the native grid). Not modified.
        text_emb: ``B×D`` or ``1×D`` text embedding(s) (normalised inside).
        layer: index of the residual block whose ``ln_1`` input is explained (``-1`` = last block).

    Returns:
        ``B×S×S`` float32 numpy array, each map min–max scaled to [0, 1] (all zeros where the CAM is
        flat).
    """
    model = getattr(clip, "model", clip)
    with model_lock(model):
        return _clip_gradcam(model, images, text_emb, layer)


def _clip_gradcam(model: nn.Module, images: torch.Tensor, text_emb: torch.Tensor, layer: int) -> np.ndarray:
    from pytorch_grad_cam import GradCAM
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

    visual = model.visual
    if images.dim() != 4 or images.shape[1] != 3 or images.shape[2] != images.shape[3]:
        raise DglrsisError(f"images must be B×3×S×S, got {tuple(images.shape)}")
    if text_emb.dim() == 1:
        text_emb = text_emb[None]
    if text_emb.shape[0] not in (1, images.shape[0]):
        raise DglrsisError(
            f"text_emb must be 1×D or B×D with B={images.shape[0]}, got {tuple(text_emb.shape)}"
        )
    param = next(model.parameters())
    grid = images.shape[-1] // patch_size(visual)
    blocks = visual.transformer.resblocks
    target = blocks[layer].ln_1
    was_training = model.training
    # Weights are frozen for the call (no weight gradients computed, flags restored afterwards); a fresh
    # leaf input that requires grad keeps the graph alive.
    flags = [(p, p.requires_grad) for p in model.parameters()]
    x = images.detach().to(device=param.device, dtype=param.dtype).clone().requires_grad_(True)
    wrapper = _Similarity(model, text_emb.detach().to(param.device))
    try:
        for p, _ in flags:
            p.requires_grad_(False)
        with (
            torch.enable_grad(),
            resize_pos_embed(visual, grid),
            GradCAM(model=wrapper, target_layers=[target], reshape_transform=_grid_activations) as cam,
        ):
            maps = cam(input_tensor=x, targets=[ClassifierOutputTarget(0)] * x.shape[0])
    finally:
        for p, flag in flags:
            p.requires_grad_(flag)
        model.train(was_training)
    return np.ascontiguousarray(maps, dtype=np.float32)


def _flat(cam: np.ndarray, mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    cam = np.asarray(cam, dtype=np.float64)
    mask = np.asarray(mask, dtype=bool)
    if cam.shape != mask.shape or cam.ndim != 2:
        raise DglrsisError(f"cam {cam.shape} and mask {mask.shape} must be the same H×W")
    return cam.ravel(), mask.ravel()


def cam_mass_inside(cam: np.ndarray, mask: np.ndarray, top: float = 0.10) -> float:
    """Share of the CAM mass of the top ``top`` fraction of pixels (by activation) lying inside ``mask``.

    ``cam``: H×W non-negative activations; ``mask``: H×W bool. The ``ceil(top·H·W)`` highest pixels are
    kept (ties broken by a stable sort on position); returns Σ cam over kept∩mask / Σ cam over kept, or
    0.0 when the kept mass is zero.
    """
    c, m = _flat(cam, mask)
    k = max(1, int(math.ceil(top * c.size)))
    keep = np.argsort(-c, kind="stable")[:k]
    total = c[keep].sum()
    return float(c[keep][m[keep]].sum() / total) if total > 0 else 0.0


def pointing_game(cam: np.ndarray, mask: np.ndarray) -> bool:
    """True when the CAM's arg-max pixel (first in row-major order on ties) lies inside ``mask`` (H×W)."""
    c, m = _flat(cam, mask)
    return bool(m[int(np.argmax(c))])
