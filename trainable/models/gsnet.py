"""GSNet (the GSNet paper; public code yecy749/GSNet, ``FUSION_TYPE: query_guided``): DSIE = CLIP (partially
fine-tuned) + frozen RSIB DINO; QGFF = separate text-cost volumes for both streams, each embedded by a
7×7 conv and squashed by a sigmoid, fused by a 7×7 conv + sigmoid, plus the squashed CLIP embedding;
CAT-Seg aggregation (CLIP appearance guidance only); RIPD = up blocks that concatenate projected CLIP
and DINO intermediate layers.

Streams (ViT-B sizes: CLIP ViT-B/16 at 384 → 24×24; DINO ViT-B/8 at the same 384 input → 48×48):

- DINO last layer (LayerNorm'd) → ``qgff.dino_down`` Conv 2×2/2 (768 → E = 512) → 24×24, the second cost
  volume's image side;
- DINO blocks 3 and 7 (both LayerNorm'd, DINO ``get_intermediate_layers``) → ``ripd.proj1`` Conv 1×1
  (768 → 256, 48×48) and ``ripd.proj2`` ConvTranspose 2×2/2 (768 → 128, 96×96), projected again inside
  the decoder (3×3 conv → 32 / 16) and concatenated after the CLIP guidance.

Switches: ``cfg.qgff`` (False → CLIP cost only, embedded by the plain conv as in CAT-Seg),
``cfg.ripd`` (False → CLIP decoder guidance only)."""

from __future__ import annotations

import torch
from torch import nn

from dglrsis.errors import DglrsisError

from .backbone import FrozenBackbone
from .catseg import Aggregator, CostModel
from .config import GSNetConfig


class DSIE(nn.Module):
    """Dual-stream image encoder: the model's partially fine-tuned CLIP (passed in as ``model``) and a
    frozen DINO (child ``dino``, intermediate layers LayerNorm'd). → (CLIP dense B×h×w×E, CLIP guidance
    layers, DINO last B×D×g×g, DINO guidance layers [B×D×g×g])."""

    def __init__(self, dino: FrozenBackbone):
        super().__init__()
        self.dino = dino

    def forward(self, model: CostModel, images: torch.Tensor):
        img, inter = model.image_features(images)
        dino_last, dino_inter = self.dino(images)
        return img, inter, dino_last, dino_inter


class QGFF(nn.Module):
    """Query-guided feature fusion (public ``corr_fusion_embed_seperate``): with ``c = σ(conv1(cost))``
    (``conv1`` the aggregator's cost embedding) and ``d = σ(dino_conv(dino cost))``, the embedding is
    ``σ(fusion([c, d])) + c``. The DINO cost is the cosine between ``dino_down(DINO last)`` and the text."""

    def __init__(self, prompts: int, hidden: int, embed: int, dino_dim: int, ratio: int):
        super().__init__()
        self.dino_down = nn.Conv2d(dino_dim, embed, ratio, stride=ratio)
        self.dino_conv = nn.Conv2d(prompts, hidden, 7, padding=3)
        self.fusion = nn.Conv2d(2 * hidden, hidden, 7, padding=3)

    def forward(self, conv1: nn.Conv2d, cost, dino_last, text):
        """conv1: P'→C, cost B×P'×K×h×w (CLIP; P' = P, or 4P for RSKT-Seg's rotations), dino_last
        B×D×g×g, text B×K×P×E → B×C×K×h×w."""
        b, p, k, h, w = cost.shape
        dimg = self.dino_down(dino_last).permute(0, 2, 3, 1)  # B×h×w×E
        dcost = CostModel.cost_volume(dimg, text)
        c = torch.sigmoid(conv1(cost.transpose(1, 2).reshape(b * k, p, h, w)))
        d = torch.sigmoid(self.dino_conv(dcost.transpose(1, 2).reshape(b * k, -1, h, w)))
        x = torch.sigmoid(self.fusion(torch.cat([c, d], 1))) + c
        return x.view(b, k, -1, h, w).transpose(1, 2)


def _to_scale(cin: int, cout: int, factor: int) -> nn.Module:
    """Conv 1×1 (factor 1) or ConvTranspose factor×factor / factor (upsampling by ``factor``)."""
    return nn.Conv2d(cin, cout, 1) if factor == 1 else nn.ConvTranspose2d(cin, cout, factor, stride=factor)


class RIPD(nn.Module):
    """DINO decoder guidance (public ``dino_decod_proj1/2``): DINO layers at g×g → [``dims[0]`` channels
    at 2h×2w, ``dims[1]`` at 4h×4w]; for g = 2h (ViT-B/8 vs ViT-B/16) a 1×1 conv and a ConvTranspose
    ×2, as in the public code. Projected and concatenated inside the decoder (``extra_decoder``)."""

    def __init__(self, dino_dim: int, dims, ratio: int):
        super().__init__()
        if ratio not in (1, 2):
            raise DglrsisError(f"GSNet's RIPD needs a DINO grid 1 or 2 times the CLIP grid, got {ratio}")
        self.proj1 = _to_scale(dino_dim, dims[0], 2 // ratio)
        self.proj2 = _to_scale(dino_dim, dims[1], 4 // ratio)

    def forward(self, dino_inter):
        return [self.proj1(dino_inter[0]), self.proj2(dino_inter[1])]


class GSNet(CostModel):
    """CAT-Seg + DINO stream: DSIE, QGFF cost fusion, CAT-Seg aggregator, RIPD decoder guidance."""

    def __init__(self, cfg: GSNetConfig, clip_bundle=None, dino_bundle=None):
        super().__init__(cfg, clip_bundle)
        self.dsie = DSIE(FrozenBackbone.dino(cfg.dino, dino_bundle, norm_inter=True))
        if cfg.dino_layers is not None:
            self.dino.layers = tuple(cfg.dino_layers)
        dim, gd = self.dino.dim, cfg.decoder_guidance_dims
        ratio = max(1, self.dino.grid(self.input_size) // self.grid)  # 2 for ViT-B/8 vs ViT-B/16
        self.qgff = QGFF(len(cfg.templates), cfg.hidden, self.embed, dim, ratio) if cfg.qgff else None
        self.ripd = RIPD(dim, gd, ratio) if cfg.ripd else None
        extra = (gd, cfg.dino_decoder_guidance_proj_dims) if cfg.ripd else None
        self.aggregator = Aggregator(cfg, self.embed, self.grid, extra_decoder=extra)

    @property
    def dino(self) -> FrozenBackbone:
        return self.dsie.dino

    def forward(self, images: torch.Tensor, class_names: list[str]) -> torch.Tensor:
        """images B×3×S×S (CLIP normalisation, also fed to DINO) → logits B×K×4h×4w."""
        agg = self.aggregator
        b = images.shape[0]
        text = self.text_embeddings(class_names)[None].expand(b, -1, -1, -1)  # B×K×P×E
        img, inter, dino_last, dino_inter = self.dsie(self, images)
        cost = self.cost_volume(img, text)
        if self.qgff is not None:
            x = self.qgff(agg.conv1, cost, dino_last, text)
        else:
            x = agg.embed_cost(cost)
        x = agg.aggregate(x, img.permute(0, 3, 1, 2), self.text_guidance(text))
        extra = self.ripd(dino_inter) if self.ripd is not None else None
        return agg.decode(x, self.decoder_guidance(inter), extra)


def build_gsnet(cfg: GSNetConfig) -> GSNet:
    return GSNet(cfg)
