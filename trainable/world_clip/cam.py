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

:func:`hires_scenes` feeds the same loss whole pool scenes at their stored 192 px (twice the model's
side: the positional embedding interpolated by :func:`dglrsis.vit.resize_pos_embed`, exactly as
``clip_gradcam`` does at inference), so the CAM is also trained on a grid fine enough for small objects.
"""

from __future__ import annotations

import contextlib

import numpy as np
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


def hires_scenes(
    pool, n: int, rng: np.random.Generator, mean, std, grid: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """``n`` whole pool scenes at their stored side ``S`` (random top-down orientation), for the CAM loss.

    Returns images ``n×3×S×S`` (float, normalised with ``mean``/``std``) and their soft patch targets
    ``n×grid²×K`` (:func:`~dglrsis.trainable.world_clip.dense.patch_target`, flipped like the image).
    """
    from .data import _dihedral, _flip
    from .dense import concepts, patch_target

    k = len(concepts()[0])
    m, s = torch.tensor(mean).view(3, 1, 1), torch.tensor(std).view(3, 1, 1)
    images, dense = [], []
    for j in rng.integers(len(pool.scenes), size=n).tolist():
        img, flags = _dihedral(pool.scenes[j], rng)
        images.append((img.float() / 255 - m) / s)
        dense.append(_flip(patch_target(pool.labels[j], k, grid), flags).flatten(1).T)
    return torch.stack(images), torch.stack(dense)


def gradcam_logits(acts: torch.Tensor, sim: torch.Tensor) -> torch.Tensor:
    """Grad-CAM before ReLU of ``sim`` w.r.t. ``acts``, differentiable.

    acts: ``B×(1+N)×W`` token activations (CLS first); sim: similarities computed from them, one per
    sample of interest (each depends on its own sample only). Returns ``B×N``: for every patch i,
    Σ_c mean_j(∂sim/∂a_jc) · a_ic over the patch tokens j (all zeros for samples ``sim`` does not read).
    """
    grad = torch.autograd.grad(sim.sum(), acts, create_graph=True)[0][:, 1:]
    weight = grad.mean(1)  # B×W: Grad-CAM channel weights
    return (acts[:, 1:] * weight[:, None]).sum(-1)


def pick_concepts(
    dense: torch.Tensor, first_object: int, generator: torch.Generator
) -> tuple[torch.Tensor, torch.Tensor]:
    """One object concept per scene sample that shows one: (rows ``R``, concept index ``R``).

    dense: ``B×N×K`` patch shares (:func:`~dglrsis.trainable.world_clip.data.dense_targets`); concepts before
    ``first_object`` (land covers) are never picked; a sample qualifies when an object concept covers at
    least half a patch in total; the concept is drawn with probability proportional to its area.
    """
    mass = dense.sum(1).clone()
    mass[:, :first_object] = 0
    rows = torch.nonzero(mass.amax(1) >= 0.5).flatten()
    if not len(rows):
        return rows, rows
    return rows, torch.multinomial(mass[rows].cpu(), 1, generator=generator).flatten().to(dense.device)


def cam_term(
    acts: torch.Tensor,
    img: torch.Tensor,
    concept_txt: torch.Tensor,
    dense: torch.Tensor,
    first_object: int,
    generator: torch.Generator,
) -> torch.Tensor | None:
    """Grad-CAM loss of one picked object concept per sample (:func:`pick_concepts`), or ``None`` when no
    sample shows an object. acts: the captured ``B×(1+N)×W`` ``ln_1`` output; img: ``B×D`` normalised image
    embeddings computed from it; concept_txt: ``K×D`` normalised concept captions; dense: ``B×N×K``."""
    rows, concept = pick_concepts(dense, first_object, generator)
    if not len(rows):
        return None
    sim = (img[rows] * concept_txt[concept]).sum(-1)
    return cam_loss(gradcam_logits(acts, sim)[rows], dense[rows, :, concept])


def cam_loss(
    logits: torch.Tensor, target: torch.Tensor, on: float = 0.25, sharpness: float = 3.0
) -> torch.Tensor:
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
