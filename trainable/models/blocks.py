"""Shared blocks of the cost-aggregation family (CAT-Seg layout): guided Swin window attention,
linear-attention class transformer, up blocks with guidance. Tensors: B×C×H×W unless stated."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class Mlp(nn.Sequential):
    """Linear C→4C, GELU, Linear 4C→C."""

    def __init__(self, dim: int, ratio: int = 4):
        super().__init__(nn.Linear(dim, dim * ratio), nn.GELU(), nn.Linear(dim * ratio, dim))


def _windows(x: torch.Tensor, ws: int) -> torch.Tensor:
    """B×H×W×C → (B·nW)×ws²×C."""
    b, h, w, c = x.shape
    x = x.view(b, h // ws, ws, w // ws, ws, c).permute(0, 1, 3, 2, 4, 5)
    return x.reshape(-1, ws * ws, c)


def _unwindows(x: torch.Tensor, ws: int, b: int, h: int, w: int) -> torch.Tensor:
    """(B·nW)×ws²×C → B×H×W×C."""
    x = x.view(b, h // ws, w // ws, ws, ws, -1).permute(0, 1, 3, 2, 4, 5)
    return x.reshape(b, h, w, -1)


class GuidedWindowAttention(nn.Module):
    """Window attention whose q and k see [x, guidance] (guidance dim g), v sees x only; relative
    position bias per head as in Swin."""

    def __init__(self, dim: int, guid: int, heads: int, ws: int):
        super().__init__()
        self.heads, self.ws = heads, ws
        self.q = nn.Linear(dim + guid, dim)
        self.k = nn.Linear(dim + guid, dim)
        self.v = nn.Linear(dim, dim)
        self.proj = nn.Linear(dim, dim)
        self.bias_table = nn.Parameter(torch.zeros((2 * ws - 1) ** 2, heads))
        nn.init.trunc_normal_(self.bias_table, std=0.02)
        coords = torch.stack(torch.meshgrid(torch.arange(ws), torch.arange(ws), indexing="ij")).flatten(1)
        rel = (coords[:, :, None] - coords[:, None, :]).permute(1, 2, 0) + ws - 1
        self.register_buffer("bias_index", rel[..., 0] * (2 * ws - 1) + rel[..., 1], persistent=False)

    def forward(self, x, g, mask=None):
        """x: N×T×C, g: N×T×G (or None), mask: nW×T×T additive or None."""
        n, t, c = x.shape
        xg = torch.cat([x, g], -1) if g is not None else x
        q, k, v = (
            m(i).view(n, t, self.heads, -1).transpose(1, 2)
            for m, i in ((self.q, xg), (self.k, xg), (self.v, x))
        )
        bias = self.bias_table[self.bias_index.view(-1)].view(t, t, -1).permute(2, 0, 1)  # heads×T×T
        if mask is not None:
            nw = mask.shape[0]
            bias = bias[None, None] + mask.view(1, nw, 1, t, t)
            bias = bias.expand(n // nw, -1, -1, -1, -1).reshape(n, self.heads, t, t)
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=bias.to(q.dtype))
        return self.proj(out.transpose(1, 2).reshape(n, t, c))


def _shift_mask(h: int, w: int, ws: int, shift: int, device) -> torch.Tensor:
    img = torch.zeros(1, h, w, 1, device=device)
    cnt = 0
    for hs in (slice(0, -ws), slice(-ws, -shift), slice(-shift, None)):
        for wsl in (slice(0, -ws), slice(-ws, -shift), slice(-shift, None)):
            img[:, hs, wsl] = cnt
            cnt += 1
    win = _windows(img, ws).squeeze(-1)  # nW×T
    diff = win[:, None, :] - win[:, :, None]
    return diff.ne(0).float() * -100.0


class SwinBlock(nn.Module):
    """Pre-norm Swin block with guidance in q/k. Input x: B×H×W×C, g: B×H×W×G."""

    def __init__(self, dim: int, guid: int, heads: int, ws: int, shift: int):
        super().__init__()
        self.ws, self.shift = ws, shift
        self.norm1, self.norm2 = nn.LayerNorm(dim), nn.LayerNorm(dim)
        self.attn = GuidedWindowAttention(dim, guid, heads, ws)
        self.mlp = Mlp(dim)

    def forward(self, x, g):
        b, h, w, c = x.shape
        y = self.norm1(x)
        mask = None
        if self.shift:
            y = torch.roll(y, (-self.shift, -self.shift), (1, 2))
            g = torch.roll(g, (-self.shift, -self.shift), (1, 2)) if g is not None else None
            mask = _shift_mask(h, w, self.ws, self.shift, x.device)
        gw = _windows(g, self.ws) if g is not None else None
        y = _unwindows(self.attn(_windows(y, self.ws), gw, mask), self.ws, b, h, w)
        if self.shift:
            y = torch.roll(y, (self.shift, self.shift), (1, 2))
        x = x + y
        return x + self.mlp(self.norm2(x))


class SpatialAggregation(nn.Module):
    """Two Swin blocks (shift 0 and ws/2) applied per class. x: B×C×K×H×W, g: B×G×H×W."""

    def __init__(self, dim: int, guid: int, heads: int = 4, ws: int = 12, grid: int = 24):
        super().__init__()
        ws = min(ws, grid)
        shift = ws // 2 if grid > ws else 0
        self.guidance_norm = nn.LayerNorm(guid) if guid else None
        self.blocks = nn.ModuleList(
            [SwinBlock(dim, guid, heads, ws, 0), SwinBlock(dim, guid, heads, ws, shift)]
        )

    def forward(self, x, g):
        b, c, k, h, w = x.shape
        x = x.permute(0, 2, 3, 4, 1).reshape(b * k, h, w, c)
        if g is not None:
            g = self.guidance_norm(g.permute(0, 2, 3, 1))
            g = g.repeat_interleave(k, 0)
        for blk in self.blocks:
            x = blk(x, g)
        return x.view(b, k, h, w, c).permute(0, 4, 1, 2, 3)


class LinearAttention(nn.Module):
    """Linear attention (elu+1 feature map). q,k,v: N×heads×T×d."""

    def forward(self, q, k, v, eps: float = 1e-6):
        q, k = F.elu(q) + 1, F.elu(k) + 1
        kv = torch.einsum("nhtd,nhte->nhde", k, v)
        z = 1 / (torch.einsum("nhtd,nhd->nht", q, k.sum(2)) + eps)
        return torch.einsum("nhtd,nhde,nht->nhte", q, kv, z)


class ClassAggregation(nn.Module):
    """Class transformer: tokens = classes at each location, text guidance in q/k.

    x: B×C×K×H×W, t: B×K×G. ``pool``: 2×2 average pooling of the cost before attention (training)."""

    def __init__(self, dim: int, guid: int, heads: int = 4, pool: bool = False):
        super().__init__()
        self.heads, self.pool = heads, pool
        self.q = nn.Linear(dim + guid, dim)
        self.k = nn.Linear(dim + guid, dim)
        self.v = nn.Linear(dim, dim)
        self.attn = LinearAttention()
        self.norm1, self.norm2 = nn.LayerNorm(dim), nn.LayerNorm(dim)
        self.mlp = nn.Sequential(nn.Linear(dim, dim * 4), nn.ReLU(), nn.Linear(dim * 4, dim))

    def forward(self, x, t):
        b, c, k, h, w = x.shape
        y = x
        if self.pool and self.training and h > 1 and w > 1:
            y = F.avg_pool2d(x.reshape(b, c * k, h, w), 2).view(b, c, k, h // 2, w // 2)
        hp, wp = y.shape[-2:]
        y = y.permute(0, 3, 4, 2, 1).reshape(b * hp * wp, k, c)  # N×K×C
        y0 = self.norm1(y)
        yg = torch.cat([y0, t.repeat_interleave(hp * wp, 0)], -1) if t is not None else y0
        q, kk = self.q(yg), self.k(yg)
        v = self.v(y0)
        sh = lambda z: z.view(z.shape[0], k, self.heads, -1).transpose(1, 2)  # noqa: E731
        out = self.attn(sh(q), sh(kk), sh(v)).transpose(1, 2).reshape(-1, k, c)
        y = y + out
        y = y + self.mlp(self.norm2(y))
        y = y.view(b, hp, wp, k, c).permute(0, 4, 3, 1, 2)
        if (hp, wp) != (h, w):
            y = F.interpolate(y.reshape(b, c * k, hp, wp), size=(h, w), mode="bilinear", align_corners=False)
            y = y.view(b, c, k, h, w)
        return y


class DoubleConv(nn.Sequential):
    """(conv3×3 no bias → GroupNorm(C/16) → ReLU) ×2."""

    def __init__(self, cin: int, cout: int):
        super().__init__(
            nn.Conv2d(cin, cout, 3, padding=1, bias=False),
            nn.GroupNorm(max(cout // 16, 1), cout),
            nn.ReLU(True),
            nn.Conv2d(cout, cout, 3, padding=1, bias=False),
            nn.GroupNorm(max(cout // 16, 1), cout),
            nn.ReLU(True),
        )


class Up(nn.Module):
    """ConvTranspose ×2 (cin → cin−guid), concat guidance (guid ch), DoubleConv → cout."""

    def __init__(self, cin: int, cout: int, guid: int):
        super().__init__()
        self.up = nn.ConvTranspose2d(cin, cin - guid, 2, stride=2)
        self.conv = DoubleConv(cin, cout)

    def forward(self, x, g):
        x = self.up(x)
        if g is not None:
            x = torch.cat([x, g], 1)
        return self.conv(x)
