"""RSKT-Seg (seed 004): RS-CMA (rotation cost maps + gated DINO cost), RS-Fusion (SET spatial-reduction
attention + CET class attention on 2×2-pooled maps), RS-Transfer up blocks guided by CLIP, RemoteCLIP
and DINO intermediate layers. CLIP partially fine-tuned as CAT-Seg; DINO and RemoteCLIP frozen.

Parameter conventions: ``pi-seg`` counts the whole RemoteCLIP (text tower too, Pi-Seg Table XII),
``rsktseg-readme`` only its visual tower (see ``count_by_convention``)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .blocks import ClassAggregation, Mlp, Up
from .catseg import Aggregator, CATSeg
from .clip_dense import dense_clip_features
from .config import ModelConfig


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


class RSKTAggregator(Aggregator):
    """Aggregator with rotation cost input (4P), gated DINO cost, SET/CET layers, RS-Transfer decoder."""

    def __init__(self, cfg: ModelConfig, embed: int, grid: int, dino_dim: int, dino_grid: int):
        rot = 4 if cfg.use_rotations else 1
        super().__init__(cfg, len(cfg.templates), embed, grid, cost_in=rot * len(cfg.templates))
        hd, g = cfg.hidden, cfg.guidance_dim
        self.dino_to_text = nn.Linear(dino_dim, embed)  # DINO tokens into CLIP text space for the cost
        self.dino_conv = nn.Conv2d(len(cfg.templates), hd, 7, padding=3)
        self.dino_gate = nn.Conv2d(2 * hd, hd, 7, padding=3)
        self.dino_guidance_proj = nn.Sequential(resampler(dino_dim, g, dino_grid, grid), nn.ReLU())
        self.layers = nn.ModuleList(
            nn.ModuleList(
                [
                    SETLayer(hd, g, cfg.heads, cfg.set_sr),
                    CETLayer(hd, cfg.text_guidance_dim, cfg.heads)
                    if cfg.cet
                    else ClassAggregation(hd, cfg.text_guidance_dim, cfg.heads),
                ]
            )
            for _ in range(cfg.num_layers)
        )
        gp = cfg.decoder_guidance_proj_dims
        srcs = [
            a + b + c
            for a, b, c in zip(
                cfg.decoder_guidance_dims, cfg.rclip_guidance_dims, cfg.dino_guidance_dims, strict=False
            )
        ]
        self.decoder_guidance = nn.ModuleList(
            [nn.Sequential(nn.Conv2d(a, b, 3, padding=1), nn.ReLU()) for a, b in zip(srcs, gp, strict=False)]
        )
        self.decoder1 = Up(hd, cfg.decoder_dims[0], gp[0])
        self.decoder2 = Up(cfg.decoder_dims[0], cfg.decoder_dims[1], gp[1])

    def fuse_dino(self, x, dino_cost):
        """x B×C×K×h×w, dino_cost B×P×K×H×W (any grid) → gated sum B×C×K×h×w ("separate" fusion)."""
        b, c, k, h, w = x.shape
        p = dino_cost.shape[1]
        d = dino_cost.transpose(1, 2).reshape(b * k, p, *dino_cost.shape[-2:])
        d = self.dino_conv(F.adaptive_avg_pool2d(d, (h, w)))
        xs = x.transpose(1, 2).reshape(b * k, c, h, w)
        gate = torch.sigmoid(self.dino_gate(torch.cat([xs, d], 1)))
        return (xs + gate * d).view(b, k, c, h, w).transpose(1, 2)

    def aggregate(self, x, img_guid, text_guid, dino_feat=None):
        g = torch.cat([self.guidance_proj(img_guid), self.dino_guidance_proj(dino_feat)], 1)
        t = self.text_guidance_proj(text_guid)
        for spatial, cls in self.layers:
            x = spatial(x, g)
            x = cls(x, t)
        return x


class RSKTSeg(CATSeg):
    """RSKT-Seg with registry CLIP, RemoteCLIP (cfg.rclip) and DINO (cfg.dino)."""

    def __init__(self, cfg: ModelConfig, clip_bundle=None, rclip_bundle=None, dino_bundle=None):
        from dglrsis.models import load_clip, load_dino

        self._dino_b = dino_bundle or load_dino(cfg.dino)
        self._rclip_b = rclip_bundle or load_clip(cfg.rclip)
        super().__init__(cfg, clip_bundle)
        self.dino = self._dino_b.model.requires_grad_(False)
        self.rclip = self._rclip_b.model.requires_grad_(False)
        rv = self.rclip.visual
        self.rclip_grid = self.input_size // rv.conv1.kernel_size[0]
        nl = len(rv.transformer.resblocks)
        self.rclip_layers = (max(nl // 3 - 1, 0), max(2 * nl // 3 - 1, 0))
        nd = self.dino.config.num_hidden_layers
        self.dino_layers = (max(nd // 3 - 1, 0), max(2 * nd // 3 - 1, 0))
        rw, dw = rv.conv1.out_channels, self._dino_b.embed_dim
        self.rclip_up = nn.ModuleList(
            [
                resampler(rw, c, self.rclip_grid, self.grid * f)
                for c, f in zip(cfg.rclip_guidance_dims, (2, 4), strict=False)
            ]
        )
        self.dino_up = nn.ModuleList(
            [
                resampler(dw, c, self.dino_grid, self.grid * f)
                for c, f in zip(cfg.dino_guidance_dims, (2, 4), strict=False)
            ]
        )
        del self._dino_b, self._rclip_b

    def _make_aggregator(self, cfg, embed):
        self.dino_grid = self.input_size // self._dino_b.patch_size
        return RSKTAggregator(cfg, embed, self.grid, self._dino_b.embed_dim, self.dino_grid)

    def train(self, mode: bool = True):
        super().train(mode)
        for m in ("dino", "rclip"):
            if hasattr(self, m):
                getattr(self, m).eval()
        return self

    def dino_features(self, images):
        """→ (last tokens B×D×g×g, [B×D×g×g at self.dino_layers]); frozen, no grad."""
        with torch.no_grad():
            out = self.dino(pixel_values=images, output_hidden_states=True, interpolate_pos_encoding=True)
        b, g = images.shape[0], self.dino_grid
        grid = lambda t: t[:, 1:].transpose(1, 2).reshape(b, -1, g, g)  # noqa: E731
        return grid(out.last_hidden_state), [grid(out.hidden_states[i + 1]) for i in self.dino_layers]

    def forward(self, images: torch.Tensor, class_names: list[str]) -> torch.Tensor:
        """images B×3×S×S (CLIP normalisation; also fed to DINO and RemoteCLIP) → B×K×4h×4w."""
        text = self.text_embeddings(class_names)  # K×P×E
        b = images.shape[0]
        rots = 4 if self.cfg.use_rotations else 1
        batch = torch.cat([torch.rot90(images, r, (2, 3)) for r in range(rots)], 0)
        img_all, inter_all = self.image_features(batch)  # (rots·B)×h×w×E
        costs = [
            torch.rot90(self.cost_volume(img_all[r * b : (r + 1) * b], text), -r, (3, 4)) for r in range(rots)
        ]
        img, inter = img_all[:b], [t[:b] for t in inter_all]
        x = self.aggregator.embed_cost(torch.cat(costs, 1))
        dino_last, dino_inter = self.dino_features(images)
        if self.cfg.use_dino_cost:
            dtok = self.aggregator.dino_to_text(dino_last.permute(0, 2, 3, 1))
            x = self.aggregator.fuse_dino(x, self.cost_volume(dtok, text))
        text_guid = text.mean(1)[None].expand(b, -1, -1)
        x = self.aggregator.aggregate(x, img.permute(0, 3, 1, 2), text_guid, dino_last)
        with torch.no_grad():
            _, r_inter = dense_clip_features(self.rclip.visual, images, self.rclip_layers)
        guid = [
            torch.cat([c, r(ri), d(di)], 1)
            for c, r, ri, d, di in zip(
                self.decoder_guidance(inter), self.rclip_up, r_inter, self.dino_up, dino_inter, strict=False
            )
        ]
        return self.aggregator.decode(x, guid)

    def count_by_convention(self) -> dict:
        """Totals under the Pi-Seg (full RemoteCLIP) and RSKT-Seg README (visual towers) conventions."""
        total = sum(p.numel() for p in self.parameters())
        rtext = total_rclip = sum(p.numel() for p in self.rclip.parameters())
        rtext -= sum(p.numel() for p in self.rclip.visual.parameters())
        return {"pi-seg": total, "rsktseg-readme": total - rtext, "rclip_total": total_rclip}


def build_rsktseg(cfg: ModelConfig) -> RSKTSeg:
    return RSKTSeg(cfg)
