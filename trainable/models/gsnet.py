"""GSNet (seed 002): DSIE = CLIP (partially fine-tuned) + frozen RSIB DINO; QGFF = separate text-cost
volumes for both streams, each embedded by a 7×7 conv, fused by a learned sigmoid gate plus a CLIP
residual; CAT-Seg aggregation; RIPD = up blocks guided by CLIP and DINO intermediate layers.
Switches: ``cfg.qgff`` (False → CLIP cost only), ``cfg.ripd`` (False → CLIP guidance only)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .backbone import FrozenBackbone
from .catseg import Aggregator, CostModel
from .config import GSNetConfig
from .rsktseg import resampler


class DSIE(nn.Module):
    """Dual-stream image encoder: the model's partially fine-tuned CLIP (passed in as ``model``) and a
    frozen DINO (child ``dino``). → (CLIP dense B×h×w×E, CLIP guidance layers, DINO last B×D×g×g,
    DINO guidance layers)."""

    def __init__(self, dino: FrozenBackbone):
        super().__init__()
        self.dino = dino

    def forward(self, model: CostModel, images: torch.Tensor):
        img, inter = model.image_features(images)
        dino_last, dino_inter = self.dino(images)
        return img, inter, dino_last, dino_inter


class QGFF(nn.Module):
    """Query-guided feature fusion: DINO tokens projected into the CLIP text space give a second cost
    volume, embedded by a 7×7 conv and fused with the embedded CLIP cost x by a sigmoid gate:
    ``x + g·d + (1 − g)·x`` (gated fusion plus the CLIP residual)."""

    def __init__(self, prompts: int, hidden: int, embed: int, dino_dim: int):
        super().__init__()
        self.dino_to_text = nn.Linear(dino_dim, embed)
        self.cost_conv = nn.Conv2d(prompts, hidden, 7, padding=3)
        self.gate = nn.Conv2d(2 * hidden, hidden, 7, padding=3)

    def forward(self, x, dino_last, text):
        """x B×C×K×h×w, dino_last B×D×g×g, text K×P×E → B×C×K×h×w."""
        b, c, k, h, w = x.shape
        dcost = CostModel.cost_volume(self.dino_to_text(dino_last.permute(0, 2, 3, 1)), text)  # B×P×K×g×g
        p = dcost.shape[1]
        d = F.adaptive_avg_pool2d(dcost.transpose(1, 2).reshape(b * k, p, *dcost.shape[-2:]), (h, w))
        d = self.cost_conv(d)
        xs = x.transpose(1, 2).reshape(b * k, c, h, w)
        gate = torch.sigmoid(self.gate(torch.cat([xs, d], 1)))
        return (xs + gate * d + (1 - gate) * xs).view(b, k, c, h, w).transpose(1, 2)


class RIPD(nn.Module):
    """RS-specific intermediate-layer prior decoding: DINO guidance layers resampled to the decoder
    grids (×2, ×4 of the cost grid) and concatenated after the CLIP guidance."""

    def __init__(self, dino_dim: int, dims, dino_grid: int, grid: int):
        super().__init__()
        self.up = nn.ModuleList(
            resampler(dino_dim, c, dino_grid, grid * f) for c, f in zip(dims, (2, 4), strict=True)
        )

    def forward(self, clip_guid, dino_inter):
        return [torch.cat([g, up(d)], 1) for g, up, d in zip(clip_guid, self.up, dino_inter, strict=True)]


class GSNet(CostModel):
    """CAT-Seg + DINO stream: DSIE, QGFF cost fusion, CAT-Seg aggregator, RIPD decoder guidance."""

    def __init__(self, cfg: GSNetConfig, clip_bundle=None, dino_bundle=None):
        super().__init__(cfg, clip_bundle)
        self.dsie = DSIE(FrozenBackbone.dino(cfg.dino, dino_bundle))
        dim, gd = self.dino.dim, cfg.decoder_guidance_dims
        self.qgff = QGFF(len(cfg.templates), cfg.hidden, self.embed, dim) if cfg.qgff else None
        self.ripd = RIPD(dim, gd, self.dino.grid(self.input_size), self.grid) if cfg.ripd else None
        dec_in = [2 * a for a in gd] if cfg.ripd else gd  # RIPD: [CLIP; DINO] guidance
        self.aggregator = Aggregator(cfg, self.embed, self.grid, decoder_in=dec_in)

    @property
    def dino(self) -> FrozenBackbone:
        return self.dsie.dino

    def forward(self, images: torch.Tensor, class_names: list[str]) -> torch.Tensor:
        """images B×3×S×S (CLIP normalisation) → logits B×K×4h×4w."""
        agg = self.aggregator
        text = self.text_embeddings(class_names)
        b = images.shape[0]
        img, inter, dino_last, dino_inter = self.dsie(self, images)
        x = agg.embed_cost(self.cost_volume(img, text))  # B×C×K×h×w
        if self.qgff is not None:
            x = self.qgff(x, dino_last, text)
        x = agg.aggregate(x, img.permute(0, 3, 1, 2), self.text_guidance(text, b))
        guid = self.decoder_guidance(inter)
        if self.ripd is not None:
            guid = self.ripd(guid, dino_inter)
        return agg.decode(x, guid)


def build_gsnet(cfg: GSNetConfig) -> GSNet:
    return GSNet(cfg)
