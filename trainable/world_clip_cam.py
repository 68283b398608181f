"""Grad-CAM alignment of world-clip: the differentiable Grad-CAM of a scene sample, and its patch loss.

:func:`dglrsis.cam.clip_gradcam` explains the cosine similarity of the image and text embeddings at the
output of the last block's ``ln_1``: per channel weight = gradient averaged over the patch tokens, map =
ReLU(Σ_c weight_c · activation_c) per patch. :func:`gradcam_logits` computes the same map before the ReLU,
with ``create_graph=True`` so it can be trained. :func:`cam_loss` asks it to be positive on the patches of
the captioned object and negative elsewhere (balanced binary cross-entropy on the map standardised per
sample), so the top of the CAM concentrates on the object — what GVTA's mask selection reads and what the
CAM sanity figure of ``bench/bench_world_clip.py`` measures.

The paper trains no CLIP (DGL-RSIS is training-free with a web-scale CLIP); this loss only makes the
small stand-in CLIP's CAM behave like a usable one. Run the forward inside :func:`capture_ln1`.
"""

from __future__ import annotations

import contextlib

import torch
import torch.nn.functional as F


@contextlib.contextmanager
def capture_ln1(visual):
    """Forward under PyTorch's math SDPA kernel (the fused CPU/GPU kernels have no double backward),
    recording the output of the last vision block's ``ln_1`` on its **first** call (the full token
    sequence ``B×(1+N)×W``; later calls on patch subsets are ignored) into the yielded dict under ``"a"``."""
    from torch.nn.attention import SDPBackend, sdpa_kernel

    store: dict = {}

    def hook(_module, _inputs, output):
        store.setdefault("a", output)

    handle = visual.transformer.resblocks[-1].ln_1.register_forward_hook(hook)
    try:
        with sdpa_kernel([SDPBackend.MATH]):
            yield store
    finally:
        handle.remove()


def gradcam_logits(acts: torch.Tensor, sim: torch.Tensor) -> torch.Tensor:
    """Grad-CAM before ReLU of ``sim`` w.r.t. ``acts``, differentiable.

    acts: ``B×(1+N)×W`` token activations (CLS first); sim: similarities computed from them, one per
    sample of interest (each depends on its own sample only). Returns ``B×N``: for every patch i,
    Σ_c mean_j(∂sim/∂a_jc) · a_ic over the patch tokens j (all zeros for samples ``sim`` does not read).
    """
    grad = torch.autograd.grad(sim.sum(), acts, create_graph=True)[0][:, 1:]
    weight = grad.mean(1)                                       # B×W: Grad-CAM channel weights
    return (acts[:, 1:] * weight[:, None]).sum(-1)


def pick_concepts(dense: torch.Tensor, first_object: int, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """One object concept per scene sample that shows one: (rows ``R``, concept index ``R``).

    dense: ``B×N×K`` patch shares (:func:`~trainable.world_clip_data.dense_targets`); concepts before
    ``first_object`` (land covers) are never picked; a sample qualifies when an object concept covers at
    least half a patch in total; the concept is drawn with probability proportional to its area.
    """
    mass = dense.sum(1).clone()
    mass[:, :first_object] = 0
    rows = torch.nonzero(mass.amax(1) >= 0.5).flatten()
    if not len(rows):
        return rows, rows
    return rows, torch.multinomial(mass[rows], 1, generator=generator).flatten()


def cam_loss(logits: torch.Tensor, target: torch.Tensor, on: float = 0.25, sharpness: float = 3.0) -> torch.Tensor:
    """Balanced BCE of a Grad-CAM map against the object's patches.

    logits: ``R×N`` pre-ReLU Grad-CAM (:func:`gradcam_logits`); target: ``R×N`` share of the object in
    each patch; a patch is positive when its share is ≥ ``on``. The map is divided by its per-sample
    standard deviation (Grad-CAM is min–max normalised before use, so only its shape matters) and scaled by
    ``sharpness``; the mean BCE of the positive and of the negative patches are averaged.
    """
    z = sharpness * logits / (logits.std(1, keepdim=True) + 1e-8)
    pos = (target >= on).float()
    bce = F.binary_cross_entropy_with_logits(z, pos, reduction="none")
    pos_term = (bce * pos).sum(1) / pos.sum(1).clamp_min(1)
    neg_term = (bce * (1 - pos)).sum(1) / (1 - pos).sum(1).clamp_min(1)
    return ((pos_term + neg_term) / 2).mean()
