"""RSKT-Seg (the RSKT-Seg paper; public code LiBingyu01/RSKT-Seg, ``configs/vitb_384_*.yaml``: ``USE_ROTATE``,
``USE_REMOTE_CLIP``, ``USE_REMOTE_DINO``, ``FUSION_TYPE: simple_separate``, ``USE_EFFICIENT``).

- RS-CMA: the CLIP cost of the image rotated by 0/90/180/270°, each rotated back, stacked as 4P cost
  channels (``rotated_costs``); a frozen DINO's cost (its last layer brought to the CLIP grid by a 2×2/2
  conv, cosine against the text) fused as GSNet's QGFF does (``qgff``: ``σ(fusion([c, d])) + c``,
  ``c = σ(conv1(CLIP cost))``, ``d = σ(dino_conv(DINO cost))``);
- RS-Fusion: ``num_layers`` × [:class:`SpatialFusion` (softmax attention over the h×w grid, keys and
  values reduced by an sr×sr conv, gated MLP with a 7×7 depth-wise conv), :class:`ClassFusion` (softmax
  attention over the classes on 2×2-pooled maps, gated MLP)], guided by the projected CLIP dense
  features (spatial) and text (class) — the public ``EffAggregatorLayer``, 8 heads;
- RS-Transfer: the CAT-Seg up blocks guided by [CLIP; RemoteCLIP; DINO] intermediate layers
  (:class:`RSTransfer`).

Input sizes as the public code: CLIP at ``input_size`` (grid h), DINO at ``2·h·patch`` (public 384 px,
grid 48 = 2h), RemoteCLIP at ``h·patch`` (public 768 px for ViT-B/32, grid h); the model's input is
resized bilinearly for each. Every encoder sees the CLIP-normalised image, as in the public code.
CLIP partially fine-tuned as CAT-Seg; DINO and RemoteCLIP frozen.

Parameter conventions: ``pi-seg`` counts the whole RemoteCLIP (text tower too, Pi-Seg Table XII),
``rsktseg-readme`` only its visual tower (see ``count_by_convention``)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .backbone import FrozenBackbone
from .catseg import Aggregator, CostModel, _projections
from .config import RSKTSegConfig
from .gsnet import QGFF, RIPD


class GatedMlp(nn.Module):
    """N×T×C → N×T×C: ``fc3(ReLU6(fc1 x) · fc2 x)`` (C → 3C → C), then (``spatial``) a 7×7 depth-wise
    conv over the h×w token grid, else ReLU6 — the public EffAggregator's spatial / class MLPs."""

    def __init__(self, dim: int, spatial: bool, ratio: int = 3):
        super().__init__()
        self.fc1, self.fc2 = nn.Linear(dim, ratio * dim), nn.Linear(dim, ratio * dim)
        self.fc3 = nn.Linear(ratio * dim, dim)
        self.dwconv = nn.Conv2d(dim, dim, 7, padding=3, groups=dim) if spatial else None

    def forward(self, x: torch.Tensor, hw: tuple[int, int] | None = None) -> torch.Tensor:
        x = self.fc3(F.relu6(self.fc1(x)) * self.fc2(x))
        if self.dwconv is None:
            return F.relu6(x)
        n, _, c = x.shape
        return self.dwconv(x.transpose(1, 2).reshape(n, c, *hw)).flatten(2).transpose(1, 2)


class GuidedAttention(nn.Module):
    """Softmax attention with q and k from [x; guidance] (C + G → C), v from x. ``sr`` > 1: keys and
    values from the token grid reduced by an sr×sr stride-sr conv and a LayerNorm (SegFormer's spatial
    reduction; the public ``sr_k`` / ``norm_k`` on [x; guidance], ``sr_v`` / ``norm_v`` on x)."""

    def __init__(self, dim: int, guid: int, heads: int, sr: int = 1):
        super().__init__()
        if dim % heads:
            raise ValueError(f"width {dim} is not a multiple of {heads} heads")
        self.heads, self.sr = heads, sr
        self.q, self.k = nn.Linear(dim + guid, dim), nn.Linear(dim + guid, dim)
        self.v, self.proj = nn.Linear(dim, dim), nn.Linear(dim, dim)
        if sr > 1:
            self.sr_k = nn.Conv2d(dim + guid, dim + guid, sr, stride=sr)
            self.norm_k = nn.LayerNorm(dim + guid)
            self.sr_v, self.norm_v = nn.Conv2d(dim, dim, sr, stride=sr), nn.LayerNorm(dim)

    def forward(self, x: torch.Tensor, g: torch.Tensor, hw: tuple[int, int] | None = None) -> torch.Tensor:
        """x N×T×C, g N×T×G (T = h·w, row-major, when ``sr`` > 1) → N×T×C."""
        n, t, c = x.shape
        xg = torch.cat([x, g], -1)
        kin, vin = xg, x
        if self.sr > 1:

            def reduce(z, conv, norm):
                return norm(conv(z.transpose(1, 2).reshape(n, -1, *hw)).flatten(2).transpose(1, 2))

            kin, vin = reduce(xg, self.sr_k, self.norm_k), reduce(x, self.sr_v, self.norm_v)
        sh = lambda z: z.view(n, -1, self.heads, c // self.heads).transpose(1, 2)  # noqa: E731
        out = F.scaled_dot_product_attention(sh(self.q(xg)), sh(self.k(kin)), sh(self.v(vin)))
        return self.proj(out.transpose(1, 2).reshape(n, t, c))


class SpatialFusion(nn.Module):
    """Per class, over the h×w grid: ``x + attn(norm1 x, g)``, then ``+ mlp(norm2 x)`` (public
    ``SptialFusionBlock``). x B×C×K×h×w, g B×G×h×w (guidance not normalised) → B×C×K×h×w."""

    def __init__(self, dim: int, guid: int, heads: int, sr: int):
        super().__init__()
        self.norm1, self.norm2 = nn.LayerNorm(dim), nn.LayerNorm(dim)
        self.attn = GuidedAttention(dim, guid, heads, sr)
        self.mlp = GatedMlp(dim, spatial=True)

    def forward(self, x: torch.Tensor, g: torch.Tensor) -> torch.Tensor:
        b, c, k, h, w = x.shape
        t = x.transpose(1, 2).reshape(b * k, c, h * w).transpose(1, 2)  # (B·K)×hw×C
        gg = g.flatten(2).transpose(1, 2).repeat_interleave(k, 0)
        t = t + self.attn(self.norm1(t), gg, (h, w))
        t = t + self.mlp(self.norm2(t), (h, w))
        return t.transpose(1, 2).reshape(b, k, c, h, w).transpose(1, 2)


class ClassFusion(nn.Module):
    """Over the K classes at each location of the ``pool``-averaged grid: ``y + attn(norm1 y, t)``,
    ``+ mlp(norm2 y)``, upsampled back (bilinear, align_corners) and added to x (public
    ``ClassFusionBlock``). x B×C×K×h×w, t B×K×T → B×C×K×h×w."""

    def __init__(self, dim: int, guid: int, heads: int, pool: tuple | None):
        super().__init__()
        self.pool = tuple(pool) if pool else None
        self.norm1, self.norm2 = nn.LayerNorm(dim), nn.LayerNorm(dim)
        self.attn = GuidedAttention(dim, guid, heads)
        self.mlp = GatedMlp(dim, spatial=False)

    def forward(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        b, c, k, h, w = x.shape
        y = x.transpose(1, 2).reshape(b * k, c, h, w)
        if self.pool:
            y = F.avg_pool2d(y, self.pool)
        hp, wp = y.shape[-2:]
        y = y.view(b, k, c, hp, wp).permute(0, 3, 4, 1, 2).reshape(b * hp * wp, k, c)
        y = y + self.attn(self.norm1(y), t.repeat_interleave(hp * wp, 0))
        y = y + self.mlp(self.norm2(y))
        y = y.view(b, hp, wp, k, c).permute(0, 3, 4, 1, 2).reshape(b * k, c, hp, wp)
        y = F.interpolate(y, size=(h, w), mode="bilinear", align_corners=True)
        return x + y.view(b, k, c, h, w).transpose(1, 2)


def rs_fusion_layers(cfg: RSKTSegConfig) -> nn.ModuleList:
    """RS-Fusion: ``num_layers`` × [SpatialFusion, ClassFusion]."""
    hd = cfg.hidden
    return nn.ModuleList(
        nn.ModuleList(
            [
                SpatialFusion(hd, cfg.guidance_dim, cfg.heads, cfg.set_sr),
                ClassFusion(hd, cfg.text_guidance_dim, cfg.heads, cfg.pool_size),
            ]
        )
        for _ in range(cfg.num_layers)
    )


def rotated_costs(model: CostModel, images: torch.Tensor, text: torch.Tensor, rotations: int):
    """CLIP cost of the image rotated by r·90°, rotated back, for r < ``rotations`` (one CLIP pass over
    the r·B rotated images).

    → (list of ``rotations`` costs B×P×K×h×w, dense features B×h×w×E at 0°, their guidance layers)."""
    b = images.shape[0]
    batch = torch.cat([torch.rot90(images, r, (2, 3)) for r in range(rotations)], 0)
    img_all, inter_all = model.image_features(batch)  # (r·B)×h×w×E
    costs = [
        torch.rot90(model.cost_volume(img_all[r * b : (r + 1) * b], text), -r, (3, 4))
        for r in range(rotations)
    ]
    return costs, img_all[:b], [t[:b] for t in inter_all]


class RSTransfer(nn.Module):
    """Decoder guidance of the frozen encoders, per level (2h×2w, 4h×4w) [RemoteCLIP; DINO]:

    - RemoteCLIP blocks (public ``layer_indexes_remote``) at grid h → ConvTranspose ×2 / ×4
      (``rclip_up``, public ``upsample1/2_remote``) → 3×3 conv + ReLU to ``decoder_guidance_proj_dims``
      (``rclip_proj``, public ``CLIP_decoder_guidance_projection_remote``);
    - DINO blocks at grid 2h → GSNet's RIPD (1×1 conv / ConvTranspose ×2, public ``dino_decod_proj1/2``)
      → 3×3 conv + ReLU to ``dino_decoder_guidance_proj_dims`` (``dino_proj``, public
      ``DINO_decoder_guidance_projection``).

    ``rclip_dim`` / ``dino_dim`` None: that guidance is off."""

    def __init__(self, cfg: RSKTSegConfig, rclip_dim: int | None, dino_dim: int | None):
        super().__init__()
        rd, dd = cfg.rclip_guidance_dims, cfg.dino_guidance_dims
        self.rclip_up = self.rclip_proj = self.ripd = self.dino_proj = None
        if rclip_dim:
            self.rclip_up = nn.ModuleList(
                nn.ConvTranspose2d(rclip_dim, d, f, stride=f) for d, f in zip(rd, (2, 4), strict=True)
            )
            self.rclip_proj = _projections(rd, cfg.decoder_guidance_proj_dims)
        if dino_dim:
            self.ripd = RIPD(dino_dim, dd, 2)
            self.dino_proj = _projections(dd, cfg.dino_decoder_guidance_proj_dims)
        self.widths = [
            (a if rclip_dim else 0) + (b if dino_dim else 0)
            for a, b in zip(cfg.decoder_guidance_proj_dims, cfg.dino_decoder_guidance_proj_dims, strict=True)
        ]

    def forward(self, rclip_inter, dino_inter) -> list[torch.Tensor] | None:
        """rclip_inter [B×W×h×h]×2, dino_inter [B×D×2h×2h]×2 → [B×widths[j]×…] (None when both off)."""
        levels: list[list[torch.Tensor]] = [[], []]
        if self.rclip_up is not None:
            for j in range(2):
                levels[j].append(self.rclip_proj[j](self.rclip_up[j](rclip_inter[j])))
        if self.ripd is not None:
            for j, d in enumerate(self.ripd(dino_inter)):
                levels[j].append(self.dino_proj[j](d))
        return [torch.cat(lv, 1) for lv in levels] if levels[0] else None


def resize(images: torch.Tensor, side: int) -> torch.Tensor:
    """Bilinear (align_corners False, as the public code) to side×side; unchanged at that size."""
    if tuple(images.shape[-2:]) == (side, side):
        return images
    return F.interpolate(images, size=(side, side), mode="bilinear", align_corners=False)


class RSKTSeg(CostModel):
    """RSKT-Seg: partially fine-tuned CLIP, frozen DINO (``cfg.dino``) and RemoteCLIP (``cfg.rclip``),
    rotation costs + DINO cost fusion, RS-Fusion aggregation, RS-Transfer decoder guidance.

    Switches (all on = the public model): ``use_rotations``, ``use_dino_cost`` (off → the CLIP cost
    embedded by ``conv1`` alone, the public ``corr_embed``), ``rclip_guidance``, ``dino_guidance``; an
    encoder no switch uses is not loaded."""

    def __init__(self, cfg: RSKTSegConfig, clip_bundle=None, rclip_bundle=None, dino_bundle=None):
        super().__init__(cfg, clip_bundle)
        self.dino = self.rclip = None
        if cfg.use_dino_cost or cfg.dino_guidance:
            self.dino = FrozenBackbone.dino(cfg.dino, dino_bundle, norm_inter=True)
            if cfg.dino_layers is not None:
                self.dino.layers = tuple(cfg.dino_layers)
            self.dino_size = 2 * self.grid * self.dino.patch
        if cfg.rclip_guidance:
            self.rclip = FrozenBackbone.clip(cfg.rclip, rclip_bundle)
            if cfg.rclip_layers is not None:
                self.rclip.layers = tuple(cfg.rclip_layers)
            self.rclip_size = self.grid * self.rclip.patch
        self.rotations = 4 if cfg.use_rotations else 1
        prompts = len(cfg.templates)
        ddim = self.dino.dim if self.dino is not None else None
        self.qgff = QGFF(prompts, cfg.hidden, self.embed, ddim, 2) if cfg.use_dino_cost else None
        self.rs_transfer = RSTransfer(
            cfg, self.rclip.dim if self.rclip is not None else None, ddim if cfg.dino_guidance else None
        )
        self.aggregator = Aggregator(
            cfg,
            self.embed,
            self.grid,
            cost_in=self.rotations * prompts,
            layers=rs_fusion_layers(cfg),
            extra_widths=self.rs_transfer.widths,
        )

    def encoders(self, images: torch.Tensor):
        """The frozen encoders on their resized inputs → (DINO last B×D×2h×2h, DINO layers, RemoteCLIP
        layers [B×W×h×h]; its later blocks, whose output the public code never reads, not run); None for
        an encoder that is off."""
        dino_last = dino_inter = rclip_inter = None
        if self.dino is not None:
            dino_last, dino_inter = self.dino(resize(images, self.dino_size))
        if self.rclip is not None:
            rclip_inter = self.rclip(resize(images, self.rclip_size), inter_only=True)[1]
        return dino_last, dino_inter, rclip_inter

    def embed_cost(self, cost: torch.Tensor, dino_last, text: torch.Tensor) -> torch.Tensor:
        """cost B×4P×K×h×w, dino_last B×D×2h×2h, text B×K×P×E → B×C×K×h×w."""
        if self.qgff is None:
            return self.aggregator.embed_cost(cost)
        return self.qgff(self.aggregator.conv1, cost, dino_last, text)

    def forward(self, images: torch.Tensor, class_names: list[str]) -> torch.Tensor:
        """images B×3×S×S (CLIP normalisation; also fed to DINO and RemoteCLIP) → B×K×4h×4w."""
        agg = self.aggregator
        b = images.shape[0]
        text = self.text_embeddings(class_names)[None].expand(b, -1, -1, -1)  # B×K×P×E
        costs, img, inter = rotated_costs(self, images, text, self.rotations)
        dino_last, dino_inter, rclip_inter = self.encoders(images)
        x = self.embed_cost(torch.cat(costs, 1), dino_last, text)
        x = agg.aggregate(x, img.permute(0, 3, 1, 2), self.text_guidance(text))
        extra = self.rs_transfer(rclip_inter, dino_inter)
        return agg.decode(x, self.decoder_guidance(inter), extra)

    def count_by_convention(self) -> dict:
        """Totals under the Pi-Seg (full RemoteCLIP) and RSKT-Seg README (visual towers) conventions."""
        total = sum(p.numel() for p in self.parameters())
        rtext = total_rclip = 0
        if self.rclip is not None:
            rtext = total_rclip = sum(p.numel() for p in self.rclip.parameters())
            rtext -= sum(p.numel() for p in self.rclip.model.visual.parameters())
        return {"pi-seg": total, "rsktseg-readme": total - rtext, "rclip_total": total_rclip}


def build_rsktseg(cfg: RSKTSegConfig) -> RSKTSeg:
    return RSKTSeg(cfg)
