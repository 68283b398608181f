"""RSKT-Seg (seed 004): RS-CMA (rotation cost maps + gated DINO cost), RS-Fusion (SET spatial-reduction
attention + CET class attention on 2×2-pooled maps), RS-Transfer up blocks guided by CLIP, RemoteCLIP
and DINO intermediate layers. CLIP partially fine-tuned as CAT-Seg; DINO and RemoteCLIP frozen.

Parameter conventions: ``pi-seg`` counts the whole RemoteCLIP (text tower too, Pi-Seg Table XII),
``rsktseg-readme`` only its visual tower (see ``count_by_convention``)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .backbone import FrozenBackbone
from .blocks import ClassAggregation, Mlp
from .catseg import Aggregator, CostModel
from .config import ModelConfig, RSKTSegConfig


def resampler(cin: int, cout: int, src: int, dst: int) -> nn.Module:
    """Map a src×src grid to dst×dst: ConvTranspose (k = s = dst/src) up, strided conv down."""
    if dst >= src:
        f = dst // src
        return nn.ConvTranspose2d(cin, cout, f, stride=f)
    f = src // dst
    return nn.Conv2d(cin, cout, f, stride=f)


class SETLayer(nn.Module):
    """Spatial enhancement: q = cost tokens, k/v = R_s([cost; clip guid; dino guid]) reduced by sr."""

    def __init__(self, dim: int, guid: int, heads: int, sr: int):
        super().__init__()
        self.heads = heads
        self.reduce = nn.Conv2d(dim + 2 * guid, dim, sr, stride=sr)
        self.norm_kv, self.norm1, self.norm2 = nn.LayerNorm(dim), nn.LayerNorm(dim), nn.LayerNorm(dim)
        self.q, self.kv, self.proj = nn.Linear(dim, dim), nn.Linear(dim, 2 * dim), nn.Linear(dim, dim)
        self.mlp = Mlp(dim)

    def forward(self, x, g):
        """x B×C×K×h×w, g B×2G×h×w → B×C×K×h×w."""
        b, c, k, h, w = x.shape
        xs = x.transpose(1, 2).reshape(b * k, c, h, w)
        r = self.reduce(torch.cat([xs, g.repeat_interleave(k, 0)], 1)).flatten(2).transpose(1, 2)
        t = xs.flatten(2).transpose(1, 2)  # N×hw×C
        sh = lambda z: z.view(z.shape[0], z.shape[1], self.heads, -1).transpose(1, 2)  # noqa: E731
        kk, vv = self.kv(self.norm_kv(r)).chunk(2, -1)
        a = F.scaled_dot_product_attention(sh(self.q(self.norm1(t))), sh(kk), sh(vv))
        t = t + self.proj(a.transpose(1, 2).reshape(b * k, h * w, c))
        t = t + self.mlp(self.norm2(t))
        return t.transpose(1, 2).reshape(b, k, c, h, w).transpose(1, 2)


class CETLayer(nn.Module):
    """Class enhancement: softmax attention over classes on 2×2-pooled [cost; text], upsampled back."""

    def __init__(self, dim: int, guid: int, heads: int):
        super().__init__()
        self.heads = heads
        self.qkv = nn.Linear(dim + guid, 3 * dim)
        self.proj = nn.Linear(dim, dim)
        self.norm1, self.norm2 = nn.LayerNorm(dim + guid), nn.LayerNorm(dim)
        self.mlp = Mlp(dim)

    def forward(self, x, t):
        b, c, k, h, w = x.shape
        p = F.avg_pool2d(x.reshape(b, c * k, h, w), 2) if h > 1 and w > 1 else x.reshape(b, c * k, h, w)
        hp, wp = p.shape[-2:]
        p = p.view(b, c, k, hp * wp).permute(0, 3, 2, 1).reshape(b * hp * wp, k, c)
        z = self.norm1(torch.cat([p, t.repeat_interleave(hp * wp, 0)], -1))
        q, kk, v = (
            u.view(-1, k, self.heads, c // self.heads).transpose(1, 2) for u in self.qkv(z).chunk(3, -1)
        )
        p = p + self.proj(F.scaled_dot_product_attention(q, kk, v).transpose(1, 2).reshape(-1, k, c))
        p = p + self.mlp(self.norm2(p))
        p = p.view(b, hp, wp, k, c).permute(0, 4, 3, 1, 2).reshape(b, c * k, hp, wp)
        up = F.interpolate(p, size=(h, w), mode="bilinear", align_corners=False).view(b, c, k, h, w)
        return up


def rs_fusion_layers(cfg: RSKTSegConfig) -> nn.ModuleList:
    """RS-Fusion: ``num_layers`` × [SET (spatial), CET (class; CAT-Seg linear attention when ``cfg.cet``
    is off)]."""
    hd = cfg.hidden
    return nn.ModuleList(
        nn.ModuleList(
            [
                SETLayer(hd, cfg.guidance_dim, cfg.heads, cfg.set_sr),
                CETLayer(hd, cfg.text_guidance_dim, cfg.heads)
                if cfg.cet
                else ClassAggregation(hd, cfg.text_guidance_dim, cfg.heads, cfg.pool_size, cfg.pad_len),
            ]
        )
        for _ in range(cfg.num_layers)
    )


def rotated_costs(model: CostModel, images: torch.Tensor, text: torch.Tensor, rotations: int):
    """CLIP cost of the image rotated by r·90°, rotated back, for r < ``rotations``.

    → (list of ``rotations`` costs B×P×K×h×w, dense features B×h×w×E at 0°, their guidance layers)."""
    b = images.shape[0]
    batch = torch.cat([torch.rot90(images, r, (2, 3)) for r in range(rotations)], 0)
    img_all, inter_all = model.image_features(batch)  # (r·B)×h×w×E
    costs = [
        torch.rot90(model.cost_volume(img_all[r * b : (r + 1) * b], text), -r, (3, 4))
        for r in range(rotations)
    ]
    return costs, img_all[:b], [t[:b] for t in inter_all]


class RSCMA(nn.Module):
    """RS-CMA: the CLIP cost on 0/90/180/270° rotations (``rotations`` = 4, else 0° only) stacked as
    the aggregator's cost channels, and (``dino_cost``) a DINO cost map — DINO tokens projected into the
    CLIP text space, cosine against the text — embedded by a 7×7 conv and added through a sigmoid gate."""

    def __init__(
        self, prompts: int, hidden: int, embed: int, dino_dim: int, rotations: bool, dino_cost: bool
    ):
        super().__init__()
        self.rotations = 4 if rotations else 1
        self.dino_cost = dino_cost
        if dino_cost:
            self.dino_to_text = nn.Linear(dino_dim, embed)
            self.dino_conv = nn.Conv2d(prompts, hidden, 7, padding=3)
            self.dino_gate = nn.Conv2d(2 * hidden, hidden, 7, padding=3)

    def fuse(self, x, dino_cost):
        """x B×C×K×h×w, dino_cost B×P×K×H×W (any grid) → gated sum B×C×K×h×w."""
        b, c, k, h, w = x.shape
        p = dino_cost.shape[1]
        d = dino_cost.transpose(1, 2).reshape(b * k, p, *dino_cost.shape[-2:])
        d = self.dino_conv(F.adaptive_avg_pool2d(d, (h, w)))
        xs = x.transpose(1, 2).reshape(b * k, c, h, w)
        gate = torch.sigmoid(self.dino_gate(torch.cat([xs, d], 1)))
        return (xs + gate * d).view(b, k, c, h, w).transpose(1, 2)

    def forward(self, x, dino_last, text):
        """x B×C×K×h×w embedded CLIP cost, dino_last B×D×g×g, text K×P×E → B×C×K×h×w."""
        if not self.dino_cost:
            return x
        dtok = self.dino_to_text(dino_last.permute(0, 2, 3, 1))
        return self.fuse(x, CostModel.cost_volume(dtok, text))


class RSTransfer(nn.Module):
    """RS-Transfer: decoder guidance per level = [CLIP; RemoteCLIP; DINO] intermediate layers, the
    frozen encoders' grids resampled to the decoder's (×2, ×4 of the cost grid)."""

    def __init__(
        self, cfg: ModelConfig, rclip_dim: int, rclip_grid: int, dino_dim: int, dino_grid: int, grid: int
    ):
        super().__init__()
        up = lambda dim, src, dims: nn.ModuleList(  # noqa: E731
            resampler(dim, c, src, grid * f) for c, f in zip(dims, (2, 4), strict=True)
        )
        self.rclip_up = up(rclip_dim, rclip_grid, cfg.rclip_guidance_dims)
        self.dino_up = up(dino_dim, dino_grid, cfg.dino_guidance_dims)

    @staticmethod
    def widths(cfg: RSKTSegConfig) -> list[int]:
        """Channels of the guidance per decoder level."""
        dims = zip(cfg.decoder_guidance_dims, cfg.rclip_guidance_dims, cfg.dino_guidance_dims, strict=True)
        return [a + b + c for a, b, c in dims]

    def forward(self, clip_guid, rclip_inter, dino_inter):
        return [
            torch.cat([c, r(ri), d(di)], 1)
            for c, r, ri, d, di in zip(
                clip_guid, self.rclip_up, rclip_inter, self.dino_up, dino_inter, strict=True
            )
        ]


def rskt_aggregator(cfg: RSKTSegConfig, embed: int, grid: int, dino_dim: int, dino_grid: int) -> Aggregator:
    """The CAT-Seg aggregator composed with RS-Fusion layers, the rotation cost channels, DINO image
    guidance (resampled to the cost grid) and RS-Transfer decoder widths."""
    rot = 4 if cfg.use_rotations else 1
    return Aggregator(
        cfg,
        embed,
        grid,
        cost_in=rot * len(cfg.templates),
        layers=rs_fusion_layers(cfg),
        extra_guidance=nn.Sequential(resampler(dino_dim, cfg.guidance_dim, dino_grid, grid), nn.ReLU()),
        decoder_in=RSTransfer.widths(cfg),
    )


class RSKTSeg(CostModel):
    """RSKT-Seg: partially fine-tuned CLIP, frozen DINO (cfg.dino) and RemoteCLIP (cfg.rclip), RS-CMA,
    RS-Fusion aggregation, RS-Transfer decoder guidance."""

    def __init__(self, cfg: RSKTSegConfig, clip_bundle=None, rclip_bundle=None, dino_bundle=None):
        super().__init__(cfg, clip_bundle)
        self.dino = FrozenBackbone.dino(cfg.dino, dino_bundle)
        self.rclip = FrozenBackbone.clip(cfg.rclip, rclip_bundle)
        dgrid, rgrid = self.dino.grid(self.input_size), self.rclip.grid(self.input_size)
        self.rscma = RSCMA(
            len(cfg.templates), cfg.hidden, self.embed, self.dino.dim, cfg.use_rotations, cfg.use_dino_cost
        )
        self.aggregator = rskt_aggregator(cfg, self.embed, self.grid, self.dino.dim, dgrid)
        self.rs_transfer = RSTransfer(cfg, self.rclip.dim, rgrid, self.dino.dim, dgrid, self.grid)

    def forward(self, images: torch.Tensor, class_names: list[str]) -> torch.Tensor:
        """images B×3×S×S (CLIP normalisation; also fed to DINO and RemoteCLIP) → B×K×4h×4w."""
        text = self.text_embeddings(class_names)  # K×P×E
        b = images.shape[0]
        costs, img, inter = rotated_costs(self, images, text, self.rscma.rotations)
        x = self.aggregator.embed_cost(torch.cat(costs, 1))
        dino_last, dino_inter = self.dino(images)
        x = self.rscma(x, dino_last, text)
        text_guid = self.text_guidance(text, b)
        x = self.aggregator.aggregate(x, img.permute(0, 3, 1, 2), text_guid, dino_last)
        _, r_inter = self.rclip(images)
        return self.aggregator.decode(x, self.rs_transfer(self.decoder_guidance(inter), r_inter, dino_inter))

    def count_by_convention(self) -> dict:
        """Totals under the Pi-Seg (full RemoteCLIP) and RSKT-Seg README (visual towers) conventions."""
        total = sum(p.numel() for p in self.parameters())
        rtext = total_rclip = sum(p.numel() for p in self.rclip.parameters())
        rtext -= sum(p.numel() for p in self.rclip.model.visual.parameters())
        return {"pi-seg": total, "rsktseg-readme": total - rtext, "rclip_total": total_rclip}


def build_rsktseg(cfg: RSKTSegConfig) -> RSKTSeg:
    return RSKTSeg(cfg)
