"""Dense region–text supervision of world-clip: patch-grid labels of scene samples and the patch loss.

Every pool scene keeps a label map (``S×S`` uint8 index into :func:`concepts`: the land cover under each
pixel, overwritten by the concept of the object drawn there). A scene sample (a window of the scene,
flipped like the image) gets a soft patch target ``K×g×g``: the share of each concept's pixels in each of
the ``g×g`` patches of the model input. The loss classifies every patch's features (:func:`_visual`;
passed through ``ln_post`` and the visual projection, exactly as the CLS token is) against one caption
embedding per concept (:func:`dense_loss`), so that each patch's contribution to the image embedding
(what the Grad-CAM of the image–text similarity reads) and each patch token (what dense-CLIP cost
volumes read) carry that region's class in the shared image–text space.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from .data import concept_of

_REP_SEED = 15485863  # rng stream of the per-step concept captions


def concepts() -> tuple[list, dict]:
    """Concept keys (5 land covers, then the sorted object concepts) and a key → world-name map.

    The world name is the :class:`~.data.TextSource` key used to caption the concept.
    """
    from dglrsis.eval.world import LANDCOVER, SCENE_CLASSES

    name = {lc: lc for lc in LANDCOVER}
    for kind in ("isaid", "rrsisd"):
        for c in SCENE_CLASSES[kind]:
            name.setdefault(concept_of(c), c)
    keys = list(LANDCOVER) + sorted(k for k in name if k not in LANDCOVER)
    return keys, name


def label_map(scene, side: int, index: dict) -> torch.Tensor:
    """``side×side`` uint8 concept index of a rendered scene (nearest-neighbour down-sampling).

    scene: a ``dglrsis.eval.world.Scene`` (``landcover`` H×W, instances with H×W masks); index: concept
    key → position in :func:`concepts`.
    """
    from dglrsis.eval.world import LANDCOVER

    lut = np.array([index[lc] for lc in LANDCOVER], np.uint8)
    lab = lut[scene.landcover]
    for inst in scene.instances:
        lab[inst.mask] = index[concept_of(inst.category)]
    h = lab.shape[0]
    pick = ((np.arange(side) + 0.5) * h / side).astype(int)
    return torch.from_numpy(np.ascontiguousarray(lab[pick][:, pick]))


def patch_target(labels: torch.Tensor, k: int, grid: int) -> torch.Tensor:
    """Soft patch target ``k×grid×grid`` (concept shares per patch) of an ``s×s`` uint8 label window."""
    onehot = F.one_hot(labels.long(), k).permute(2, 0, 1).float()[None]
    return F.adaptive_avg_pool2d(onehot, grid)[0]


def concept_captions(texts, keys: list, names: dict, seed: int, step: int) -> list:
    """One caption per concept for a step.

    ``K`` strings, drawn from ``default_rng([seed, _REP_SEED, step])``."""
    from .data import object_caption

    rng = np.random.default_rng([seed, _REP_SEED, step])
    return [object_caption(rng, texts, names[k], None)[0] for k in keys]


def dense_loss(
    patches: torch.Tensor,
    concept_txt: torch.Tensor,
    scale: torch.Tensor,
    target: torch.Tensor,
    symmetric: bool = False,
) -> torch.Tensor:
    """Soft cross-entropy of patch tokens against concept caption embeddings.

    patches: ``B×N×D`` L2-normalised projected patch tokens; concept_txt: ``K×D`` L2-normalised; scale: the
    (exponentiated) logit scale; target: ``B×N×K`` concept shares (rows of samples without dense labels
    are all zero and ignored). ``symmetric`` averages in the concept → patch direction: for every concept
    present in a sample, a softmax over its ``N`` patches with the concept's share map as soft target (so
    the patches of an object outscore the other patches for its text, which is what a CAM ranks).
    Returns 0 (with a graph) when no patch is labelled.
    """
    logits = scale * patches @ concept_txt.T
    has = target.sum(-1) > 0
    if not bool(has.any()):
        return logits.sum() * 0
    loss = -(target * logits.log_softmax(-1)).sum(-1)[has].mean()
    if symmetric:
        mass = target.sum(1)  # B×K patches' worth of each concept
        present = mass > 0
        q = target / mass.clamp_min(1e-9)[:, None, :]
        c2p = -(q * logits.log_softmax(1)).sum(1)  # B×K
        loss = (loss + c2p[present].mean()) / 2
    return loss


def _visual(visual, images: torch.Tensor, feature: str) -> tuple[torch.Tensor, list[torch.Tensor]]:
    """open_clip ``VisionTransformer`` forward (CLS pooling) → pooled ``B×D`` and a list of patch features
    ``B×N×D``, one per kind named by ``feature``.

    ``"output"``: the last block's patch tokens (what dense-CLIP models such as CAT-Seg read); ``"cls"``: for
    each patch j, the CLS output the last block would give if the CLS token attended to j alone (CLS
    residual + value path of j, then the MLP) — the quantity the Grad-CAM of the similarity at the last
    block's ``ln_1`` linearises; ``"both"``: both; ``"none"``: an empty list. Every kind goes through
    ``ln_post`` and the projection like the CLS token.
    """
    h = visual._embeds(images)
    blocks = visual.transformer.resblocks
    for block in blocks[:-1]:
        h = block(h)
    last = blocks[-1]
    out = last(h)
    pooled = visual.ln_post(out[:, 0]) @ visual.proj
    kinds = {"none": (), "output": ("output",), "cls": ("cls",), "both": ("cls", "output")}[feature]
    feats = []
    for kind in kinds:
        if kind == "output":
            feats.append(visual.ln_post(out[:, 1:]) @ visual.proj)
            continue
        attn, d = last.attn, h.shape[-1]
        value = attn.out_proj(
            F.linear(last.ln_1(h[:, 1:]), attn.in_proj_weight[2 * d :], attn.in_proj_bias[2 * d :])
        )
        y = h[:, :1] + last.ls_1(value)
        y = y + last.ls_2(last.mlp(last.ln_2(y)))
        feats.append(visual.ln_post(y) @ visual.proj)
    return pooled, feats


def encode(model, images: torch.Tensor, tokens: torch.Tensor, feature: str = "none"):
    """Normalised image ``B×D`` and caption ``T×D`` embeddings, plus the list of L2-normalised projected
    patch features ``B×N×D`` named by ``feature`` (see :func:`_visual`). ``model``: an unwrapped open_clip
    ``CLIP``."""
    pooled, feats = _visual(model.visual, images, feature)
    img = F.normalize(pooled, dim=-1)
    txt = F.normalize(model.encode_text(tokens), dim=-1)
    return img, txt, [F.normalize(f, dim=-1) for f in feats]
