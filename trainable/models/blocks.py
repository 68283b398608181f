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
    """Window attention whose q and k see [x, guidance] (guidance dim g), v sees x only. As in the
    public CAT-Seg there is no relative-position bias table (only the shifted-window mask)."""

    def __init__(self, dim: int, guid: int, heads: int, ws: int):
        super().__init__()
        self.heads, self.ws = heads, ws
        self.q = nn.Linear(dim + guid, dim)
        self.k = nn.Linear(dim + guid, dim)
        self.v = nn.Linear(dim, dim)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x, g, mask=None):
        """x: N×T×C, g: N×T×G (or None), mask: nW×T×T additive or None."""
        n, t, c = x.shape
        xg = torch.cat([x, g], -1) if g is not None else x
        q, k, v = (
            m(i).view(n, t, self.heads, -1).transpose(1, 2)
            for m, i in ((self.q, xg), (self.k, xg), (self.v, x))
        )
        bias = None
        if mask is not None:
            nw = mask.shape[0]
            bias = (
                mask.view(1, nw, 1, t, t).expand(n // nw, -1, self.heads, -1, -1).reshape(n, self.heads, t, t)
            )
            bias = bias.to(q.dtype)
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=bias)
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
    """Class transformer (public CAT-Seg ``ClassTransformerLayer``): tokens = classes at each location,
    text guidance in q/k, linear attention.

    x: B×C×K×H×W, t: B×K×G → ``x + up(p)`` with ``p = pool(x)``, ``p ← p + attn(norm1(p), t)``,
    ``p ← p + MLP(norm2(p))`` and ``up`` bilinear (align_corners=True) back to H×W: the identity is
    carried twice, as in the public code. ``pool``: average-pooling kernel (public ``POOLING_SIZES``,
    2×2 for ViT-B and ViT-L, train and eval; None = none). ``pad_len``: below that many classes the
    sequence is padded with a learnable token (and guidance) before the attention, so the linear
    attention always sees ``pad_len`` tokens (0 = off)."""

    def __init__(self, dim: int, guid: int, heads: int = 4, pool: tuple | None = (2, 2), pad_len: int = 256):
        super().__init__()
        self.heads, self.pool, self.pad_len = heads, tuple(pool) if pool else None, pad_len
        self.q = nn.Linear(dim + guid, dim)
        self.k = nn.Linear(dim + guid, dim)
        self.v = nn.Linear(dim, dim)
        self.attn = LinearAttention()
        self.norm1, self.norm2 = nn.LayerNorm(dim), nn.LayerNorm(dim)
        self.mlp = nn.Sequential(nn.Linear(dim, dim * 4), nn.ReLU(), nn.Linear(dim * 4, dim))
        self.padding_tokens = nn.Parameter(torch.zeros(1, 1, dim)) if pad_len > 0 else None
        self.padding_guidance = nn.Parameter(torch.zeros(1, 1, guid)) if pad_len > 0 and guid > 0 else None

    def forward(self, x, t):
        b, c, k, h, w = x.shape
        y = x.reshape(b, c * k, h, w)
        if self.pool is not None:
            y = F.avg_pool2d(y, self.pool)
        hp, wp = y.shape[-2:]
        y = y.view(b, c, k, hp, wp).permute(0, 3, 4, 2, 1).reshape(b * hp * wp, k, c)  # N×K×C
        kk = k
        if self.padding_tokens is not None and k < self.pad_len:
            kk = self.pad_len
            y = torch.cat([y, self.padding_tokens.expand(y.shape[0], kk - k, -1)], 1)
            if t is not None and self.padding_guidance is not None:
                t = torch.cat([t, self.padding_guidance.expand(b, kk - k, -1)], 1)
        y0 = self.norm1(y)
        yg = torch.cat([y0, t.repeat_interleave(hp * wp, 0)], -1) if t is not None else y0
        sh = lambda z: z.view(z.shape[0], kk, self.heads, -1).transpose(1, 2)  # noqa: E731
        out = self.attn(sh(self.q(yg)), sh(self.k(yg)), sh(self.v(y0))).transpose(1, 2).reshape(-1, kk, c)
        y = y + out
        y = y + self.mlp(self.norm2(y))
        y = y.view(b, hp, wp, kk, c).permute(0, 3, 4, 1, 2).reshape(b * kk, c, hp, wp)
        y = F.interpolate(y, size=(h, w), mode="bilinear", align_corners=True)
        y = y.view(b, kk, c, h, w)[:, :k].transpose(1, 2)
        return x + y


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
    """ConvTranspose ×2 (cin → cin−guid), concat guidance (guid ch) and an optional second guidance
    (``extra`` ch, GSNet's DINO guidance in ``FusionUP``), DoubleConv → cout."""

    def __init__(self, cin: int, cout: int, guid: int, extra: int = 0):
        super().__init__()
        self.up = nn.ConvTranspose2d(cin, cin - guid, 2, stride=2)
        self.conv = DoubleConv(cin + extra, cout)

    def forward(self, x, g, extra=None):
        x = self.up(x)
        x = torch.cat([x] + [t for t in (g, extra) if t is not None], 1)
        return self.conv(x)
