"""GSNet (seed 002): DSIE = CLIP (partially fine-tuned) + frozen RSIB DINO; QGFF = separate text-cost
volumes for both streams, each embedded by a 7×7 conv, fused by a learned sigmoid gate plus a CLIP
residual; CAT-Seg aggregation; RIPD = up blocks guided by CLIP and DINO intermediate layers.
Switches: ``cfg.qgff`` (False → CLIP cost only), ``cfg.ripd`` (False → CLIP guidance only)."""

from __future__ import annotations

import torch
from torch import nn

from .catseg import Aggregator, CATSeg
from .config import ModelConfig
from .rsktseg import resampler


class GSNet(CATSeg):
    """CAT-Seg + DINO stream (QGFF cost fusion, RIPD guidance)."""

    def __init__(self, cfg: ModelConfig, clip_bundle=None, dino_bundle=None):
        from dglrsis.models import load_dino

        dino_b = dino_bundle or load_dino(cfg.dino)
        super().__init__(cfg, clip_bundle)
        self.dino = dino_b.model.requires_grad_(False)
        self.dino_grid = self.input_size // dino_b.patch_size
        nd = self.dino.config.num_hidden_layers
        self.dino_layers = (max(nd // 3 - 1, 0), max(2 * nd // 3 - 1, 0))
        embed = self.aggregator.text_guidance_proj[0].in_features
        hd, p = cfg.hidden, len(cfg.templates)
        self.dino_to_text = nn.Linear(dino_b.embed_dim, embed)  # DINO tokens into the text space
        self.dino_cost_conv = nn.Conv2d(p, hd, 7, padding=3)
        self.qgff_gate = nn.Conv2d(2 * hd, hd, 7, padding=3)
        gd, gp = cfg.decoder_guidance_dims, cfg.decoder_guidance_proj_dims
        self.dino_up = nn.ModuleList(
            [
                resampler(dino_b.embed_dim, c, self.dino_grid, self.grid * f)
                for c, f in zip(gd, (2, 4), strict=False)
            ]
        )
        if cfg.ripd:  # decoder guidance = [CLIP; DINO] projected to the CAT-Seg widths
            self.aggregator.decoder_guidance = nn.ModuleList(
                [
                    nn.Sequential(nn.Conv2d(2 * a, b, 3, padding=1), nn.ReLU())
                    for a, b in zip(gd, gp, strict=False)
                ]
            )

    def train(self, mode: bool = True):
        super().train(mode)
        if hasattr(self, "dino"):
            self.dino.eval()
        return self

    def forward(self, images: torch.Tensor, class_names: list[str]) -> torch.Tensor:
        """images B×3×S×S (CLIP normalisation) → logits B×K×4h×4w."""
        import torch.nn.functional as F

        agg: Aggregator = self.aggregator
        text = self.text_embeddings(class_names)
        b, (h, w) = images.shape[0], (self.grid, self.grid)
        img, inter = self.image_features(images)
        x = agg.embed_cost(self.cost_volume(img, text))  # B×C×K×h×w
        with torch.no_grad():
            out = self.dino(pixel_values=images, output_hidden_states=True, interpolate_pos_encoding=True)
        grid = lambda t: t[:, 1:].transpose(1, 2).reshape(b, -1, self.dino_grid, self.dino_grid)  # noqa: E731
        if self.cfg.qgff:
            dcost = self.cost_volume(
                self.dino_to_text(out.last_hidden_state[:, 1:]).view(b, self.dino_grid, self.dino_grid, -1),
                text,
            )  # B×P×K×g×g
            k, p = dcost.shape[2], dcost.shape[1]
            d = F.adaptive_avg_pool2d(
                dcost.transpose(1, 2).reshape(b * k, p, self.dino_grid, self.dino_grid), (h, w)
            )
            d = self.dino_cost_conv(d)
            xs = x.transpose(1, 2).reshape(b * k, -1, h, w)
            gate = torch.sigmoid(self.qgff_gate(torch.cat([xs, d], 1)))
            x = (
                (xs + gate * d + (1 - gate) * xs).view(b, k, -1, h, w).transpose(1, 2)
            )  # gated fusion + CLIP residual
        x = agg.aggregate(x, img.permute(0, 3, 1, 2), text.mean(1)[None].expand(b, -1, -1))
        guid = self.decoder_guidance(inter)
        if self.cfg.ripd:
            guid = [
                torch.cat([g, up(grid(out.hidden_states[i + 1]))], 1)
                for g, up, i in zip(guid, self.dino_up, self.dino_layers, strict=False)
            ]
        return agg.decode(x, guid)


def build_gsnet(cfg: ModelConfig) -> GSNet:
    return GSNet(cfg)
