"""Grad-CAM of the CLIP image–text similarity for open_clip vision transformers.

The map explains the cosine similarity of the image and text embeddings at the output of ``ln_1`` of a
residual block (the last block's output carries gradient only for the CLS token): per image, channel
weights = gradient averaged over the patch tokens, map = ReLU(Σ_c w_c A_c) on the ``g×g`` patch grid
(``g = S // patch``; the CLS token dropped, open_clip 3.x is batch-first ``B×N×D``), then
pytorch-grad-cam's post-processing (min–max, bilinear resize to the input side, min–max) — the maps equal
``pytorch_grad_cam.GradCAM`` on CLIP wrapped as an image → similarity model (tests check 1e-5).

The work is split in two (:func:`cam_features`, :func:`gradcam_from_features`): the forward through the
blocks before the explained one does not depend on the text, so it runs once per image window under
``no_grad`` and is reused for every expression; the gradient is taken with ``torch.autograd.grad`` w.r.t.
the captured activation only, so the backward stops at the explained block instead of running back to the
pixels. Inputs of a non-native size work: the positional embedding is interpolated for the duration of the
call (:func:`dglrsis.vit.resize_pos_embed`). Hooks are released, the caller's tensor, the model's
``requires_grad`` flags and train/eval mode are left as they were (weights are frozen during the call, so
no weight gradients are computed). Because the model is changed for the duration of a call, calls hold
:func:`dglrsis.models.model_lock` and are safe from several threads.

Also two pure scoring helpers for CAM sanity checks: :func:`cam_mass_inside` and :func:`pointing_game`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from .errors import DglrsisError
from .models import model_lock
from .vit import patch_size, resize_pos_embed, tokens_to_grid


def _grid_activations(tokens: torch.Tensor) -> torch.Tensor:
    """pytorch-grad-cam reshape transform: ``B×N×D`` tokens (CLS first) → ``B×D×g×g`` float32."""
    return tokens_to_grid(tokens).float()


def _check(images: torch.Tensor, text_emb: torch.Tensor | None) -> torch.Tensor | None:
    if images.dim() != 4 or images.shape[1] != 3 or images.shape[2] != images.shape[3]:
        raise DglrsisError(f"images must be B×3×S×S, got {tuple(images.shape)}")
    if text_emb is None:
        return None
    if text_emb.dim() == 1:
        text_emb = text_emb[None]
    if text_emb.shape[0] not in (1, images.shape[0]):
        raise DglrsisError(
            f"text_emb must be 1×D or B×D with B={images.shape[0]}, got {tuple(text_emb.shape)}"
        )
    return text_emb


def clip_gradcam(clip, images: torch.Tensor, text_emb: torch.Tensor, layer: int = -1) -> np.ndarray:
    """Grad-CAM maps of image–text similarity.

    Args:
        clip: a :class:`dglrsis.models.ClipBundle` (or a bare open_clip ``CLIP`` with ``encode_image``).
        images: ``B×3×S×S`` normalised image tensor (any square side ``S``; the positional embedding is
            interpolated when ``S // patch`` differs from the native grid). Not modified.
        text_emb: ``B×D`` or ``1×D`` text embedding(s) (normalised inside).
        layer: index of the residual block whose ``ln_1`` output is explained (``-1`` = last block).

    Returns:
        ``B×S×S`` float32 numpy array, each map min–max scaled to [0, 1] (all zeros where the CAM is
        flat). Equal to :func:`gradcam_from_features` of :func:`cam_features` (the two halves below).
    """
    text_emb = _check(images, text_emb)
    return gradcam_from_features(clip, cam_features(clip, images, layer), text_emb)


@dataclass
class CamFeatures:
    """The text-independent half of a Grad-CAM: the residual stream entering the explained block.

    ``tokens``: ``B×N×D`` (batch first) under ``torch.no_grad``; ``layer``: the block index (≥ 0);
    ``size``: the input side ``S`` the maps are resized to. Reusable for any number of texts: the
    forward through blocks ``0 … layer-1`` does not depend on the text, so a second expression on the
    same windows costs only the explained block onwards, forward and backward.
    """

    tokens: torch.Tensor
    layer: int
    size: int

    def __len__(self) -> int:
        return self.tokens.shape[0]


def cam_features(clip, images: torch.Tensor, layer: int = -1) -> CamFeatures:
    """Forward ``images`` (``B×3×S×S``) through CLIP's vision tower up to the input of block ``layer``."""
    _check(images, None)
    model = getattr(clip, "model", clip)
    visual = model.visual
    blocks = visual.transformer.resblocks
    layer = layer % len(blocks)
    param = next(model.parameters())
    grid = images.shape[-1] // patch_size(visual)
    with model_lock(model), torch.no_grad(), resize_pos_embed(visual, grid):
        was_training = model.training
        model.eval()
        try:
            x = visual._embeds(images.detach().to(device=param.device, dtype=param.dtype))
            batch_first = getattr(visual.transformer, "batch_first", True)
            x = x if batch_first else x.transpose(0, 1)
            for blk in blocks[:layer]:
                x = blk(x)
            x = x if batch_first else x.transpose(0, 1)
        finally:
            model.train(was_training)
    return CamFeatures(x.contiguous(), layer, int(images.shape[-1]))


def gradcam_from_features(clip, feats: CamFeatures, text_emb: torch.Tensor) -> np.ndarray:
    """``B×S×S`` Grad-CAM maps (as :func:`clip_gradcam`) from precomputed :class:`CamFeatures`.

    The explained block's ``ln_1`` output ``A`` (``B×N×D``) is captured, the rest of the tower is run to
    the cosine similarity ``s_b`` with the text, and ``∂Σ s_b / ∂A`` is taken (each image's similarity
    depends on its own tokens only, so batching changes nothing); per image, channel weights = gradient
    averaged over the patch tokens, map = ReLU(Σ_c w_c A_c) over the ``g×g`` grid, then pytorch-grad-cam's
    own post-processing (min–max, bilinear resize to ``S×S``, min–max again).
    """
    from pytorch_grad_cam.utils.image import scale_cam_image

    model = getattr(clip, "model", clip)
    visual = model.visual
    blocks = visual.transformer.resblocks
    if text_emb.dim() == 1:
        text_emb = text_emb[None]
    if text_emb.shape[0] not in (1, len(feats)):
        raise DglrsisError(f"text_emb must be 1×D or B×D with B={len(feats)}, got {tuple(text_emb.shape)}")
    param = next(model.parameters())
    text = F.normalize(text_emb.detach().to(param.device).float(), dim=-1)
    captured: list[torch.Tensor] = []

    def keep(_module, _inputs, output):
        captured.append(output)

    flags = [(p, p.requires_grad) for p in model.parameters()]
    with model_lock(model):
        was_training = model.training
        handle = blocks[feats.layer].ln_1.register_forward_hook(keep)
        try:
            model.eval()
            for p, _ in flags:
                p.requires_grad_(False)
            with torch.enable_grad():
                x = feats.tokens.detach().requires_grad_(True)
                batch_first = getattr(visual.transformer, "batch_first", True)
                x = x if batch_first else x.transpose(0, 1)
                for blk in blocks[feats.layer :]:
                    x = blk(x)
                x = x if batch_first else x.transpose(0, 1)
                pooled, _ = visual._pool(x)
                if visual.proj is not None:
                    pooled = pooled @ visual.proj
                sim = (F.normalize(pooled.float(), dim=-1) * text).sum(-1)
                act = captured[0]
                grad = torch.autograd.grad(sim.sum(), act)[0]
        finally:
            handle.remove()
            for p, flag in flags:
                p.requires_grad_(flag)
            model.train(was_training)
    acts = _grid_activations(act.detach() if batch_first else act.detach().transpose(0, 1))
    grads = _grid_activations(grad if batch_first else grad.transpose(0, 1))
    acts, grads = acts.cpu().numpy(), grads.cpu().numpy()
    weights = grads.mean(axis=(2, 3))
    cam = np.maximum((weights[:, :, None, None] * acts).sum(axis=1), 0)
    cam = scale_cam_image(cam, (feats.size, feats.size))
    return np.ascontiguousarray(scale_cam_image(np.maximum(cam, 0)), dtype=np.float32)


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
