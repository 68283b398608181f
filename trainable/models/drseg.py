"""DR-Seg (seed 001): SPSD channel split (offline order, ratio ρ), PDGR (DINO-guided top-k sparse graph
with learned softplus edge weights rectifying the structure channels), UGAF (entropy-gated fusion of the
refined cost with the rotation-averaged CLIP cost), then CAT-Seg aggregation and decoder."""

from __future__ import annotations

import json
import logging

import torch
import torch.nn.functional as F
from torch import nn

from dglrsis.errors import DglrsisError

from .catseg import CATSeg
from .config import ModelConfig

log = logging.getLogger(__name__)


class PDGR(nn.Module):
    """Graph rectification of x N×L×Cs over DINO features d N×L×D on an h×w grid."""

    def __init__(self, cs: int, dino_dim: int, k: int = 75, tau: float = 0.1, lam: float = 1.0):
        super().__init__()
        self.k, self.tau, self.lam = k, tau, lam
        self.edge = nn.Sequential(nn.Linear(2 * dino_dim, 64), nn.ReLU(), nn.Linear(64, 1))
        self.proj = nn.Linear(cs, cs)
        self.norm = nn.LayerNorm(cs)

    def forward(self, x, d, h: int, w: int):
        n, length, _ = x.shape
        yy, xx = torch.meshgrid(
            torch.arange(h, device=x.device), torch.arange(w, device=x.device), indexing="ij"
        )
        pos = torch.stack([yy, xx], -1).view(-1, 2).float()
        dist = torch.cdist(pos, pos) / max(torch.cdist(pos, pos).max().item(), 1.0)
        dn = F.normalize(d, dim=-1)
        aff = dn @ dn.transpose(1, 2) / self.tau - self.lam * dist  # N×L×L
        k = min(self.k, length)
        idx = aff.topk(k, -1).indices  # N×L×k
        nb = torch.gather(
            d[:, None].expand(-1, length, -1, -1), 2, idx[..., None].expand(-1, -1, -1, d.shape[-1])
        )
        wgt = F.softplus(self.edge(torch.cat([d[:, :, None].expand_as(nb), nb], -1))).squeeze(-1)  # N×L×k
        xn = torch.gather(
            x[:, None].expand(-1, length, -1, -1), 2, idx[..., None].expand(-1, -1, -1, x.shape[-1])
        )
        agg = (wgt[..., None] * xn).sum(2) / wgt.sum(-1, keepdim=True).clamp_min(1e-6)
        return self.norm(x + F.relu(self.proj(agg)))


class DRSeg(CATSeg):
    """CAT-Seg + SPSD/PDGR/UGAF (switches: cfg.spsd_ratio, cfg.pdgr_k (0 → off), cfg.ugaf)."""

    def __init__(self, cfg: ModelConfig, clip_bundle=None, dino_bundle=None):
        from dglrsis.models import load_dino

        dino_b = dino_bundle or load_dino(cfg.dino)
        super().__init__(cfg, clip_bundle)
        self.dino = dino_b.model.requires_grad_(False)
        embed = self.aggregator.text_guidance_proj[0].in_features
        order = torch.arange(embed)
        if cfg.spsd_path:
            try:
                order = torch.tensor(json.loads(open(cfg.spsd_path).read())["order"])
            except (OSError, ValueError, KeyError, TypeError) as exc:
                raise DglrsisError(
                    f"cannot read the SPSD ranking {cfg.spsd_path} ({type(exc).__name__}: {exc}); "
                    "compute it with python -m dglrsis.trainable.spsd"
                ) from None
            if sorted(order.tolist()) != list(range(embed)):
                raise DglrsisError(
                    f"SPSD ranking {cfg.spsd_path} is not a permutation of the {embed} CLIP channels"
                )
        else:
            log.warning("DR-Seg: no SPSD ranking given (spsd_path); using identity channel order")
        self.register_buffer("spsd_order", order, persistent=True)
        self.n_sem = int(round(cfg.spsd_ratio * embed))
        self.pdgr = (
            PDGR(embed - self.n_sem, dino_b.embed_dim, cfg.pdgr_k)
            if cfg.pdgr_k > 0 and self.n_sem < embed
            else None
        )
        self.ugaf_proj = nn.Conv2d(1, 1, 1)

    def train(self, mode: bool = True):
        super().train(mode)
        if hasattr(self, "dino"):
            self.dino.eval()
        return self

    def refine(self, img, images):
        """img B×h×w×E → refined B×h×w×E (structure channels rectified on the DINO graph)."""
        if self.pdgr is None:
            return img
        b, h, w, e = img.shape
        with torch.no_grad():
            d = self.dino(pixel_values=images, interpolate_pos_encoding=True).last_hidden_state[:, 1:]
        g = int(d.shape[1] ** 0.5)
        d = F.adaptive_avg_pool2d(d.transpose(1, 2).reshape(b, -1, g, g), (h, w)).flatten(2).transpose(1, 2)
        x = img.reshape(b, h * w, e)[..., self.spsd_order]
        st = self.pdgr(x[..., self.n_sem :], d, h, w)
        x = torch.cat([x[..., : self.n_sem], st], -1)
        out = torch.empty_like(x)
        out[..., self.spsd_order] = x
        return out.view(b, h, w, e)

    def forward(self, images: torch.Tensor, class_names: list[str]) -> torch.Tensor:
        """images B×3×S×S → logits B×K×4h×4w."""
        text = self.text_embeddings(class_names)
        b = images.shape[0]
        batch = torch.cat([torch.rot90(images, r, (2, 3)) for r in range(4)], 0)
        img_all, inter_all = self.image_features(batch)
        c_orig = torch.stack(
            [torch.rot90(self.cost_volume(img_all[r * b : (r + 1) * b], text), -r, (3, 4)) for r in range(4)]
        ).mean(0)  # B×P×K×h×w
        img, inter = img_all[:b], [t[:b] for t in inter_all]
        c_ref = self.cost_volume(self.refine(img, images), text)
        if self.cfg.ugaf:
            prob = (c_orig.mean(1) / 0.07).softmax(1)  # B×K×h×w
            ent = -(prob * prob.clamp_min(1e-12).log()).sum(1, keepdim=True) / torch.log(
                torch.tensor(max(prob.shape[1], 2.0))
            )
            cost = c_orig + torch.sigmoid(self.ugaf_proj(ent))[:, None] * c_ref
        else:
            cost = 0.5 * (c_orig + c_ref)
        return self.aggregator(
            cost, img.permute(0, 3, 1, 2), text.mean(1)[None].expand(b, -1, -1), self.decoder_guidance(inter)
        )


def build_drseg(cfg: ModelConfig) -> DRSeg:
    return DRSeg(cfg)
