"""DR-Seg (the DR-Seg paper; no public code): SPSD channel split (offline order, ratio ρ), PDGR
(DINO-guided top-k sparse graph with learned softplus edge weights rectifying the structure channels),
UGAF (entropy-gated fusion of the refined cost with the rotation-averaged CLIP cost), then CAT-Seg
aggregation and decoder. Which sentence of the paper each part follows: README, "DR-Seg follows its
paper's text"."""

from __future__ import annotations

import json

import torch
import torch.nn.functional as F
from torch import nn

from dglrsis.errors import DglrsisError

from .backbone import FrozenBackbone
from .catseg import CATSeg
from .config import DRSegConfig
from .rsktseg import rotated_costs


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


def read_spsd_order(path: str, embed: int) -> torch.Tensor:
    """The channel order of an SPSD ranking JSON (``python -m dglrsis.trainable.spsd``), checked to be a
    permutation of ``embed`` channels."""
    try:
        order = torch.tensor(json.loads(open(path).read())["order"])
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise DglrsisError(
            f"cannot read the SPSD ranking {path} ({type(exc).__name__}: {exc}); "
            "compute it with python -m dglrsis.trainable.spsd"
        ) from None
    if sorted(order.tolist()) != list(range(embed)):
        raise DglrsisError(f"SPSD ranking {path} is not a permutation of the {embed} CLIP channels")
    return order


class SPSD(nn.Module):
    """Semantic/structure channel split: channels in ranking ``order``; the first ``round(ratio·E)``
    are semantic (kept), the rest structural (rectified). ``split`` x …×E → (semantic, structure);
    ``merge`` inverts it."""

    def __init__(self, order: torch.Tensor, ratio: float):
        super().__init__()
        self.register_buffer("order", order, persistent=True)
        self.n_sem = int(round(ratio * order.numel()))

    def split(self, x):
        x = x[..., self.order]
        return x[..., : self.n_sem], x[..., self.n_sem :]

    def merge(self, sem, st):
        x = torch.cat([sem, st], -1)
        out = torch.empty_like(x)
        out[..., self.order] = x
        return out


class UGAF(nn.Module):
    """Uncertainty-gated adaptive fusion: the normalised class entropy of the original cost (softmax at
    temperature 0.07) through a 1×1 conv and a sigmoid gates the refined cost: ``c_orig + g·c_ref``."""

    def __init__(self):
        super().__init__()
        self.proj = nn.Conv2d(1, 1, 1)

    def forward(self, c_orig, c_ref):
        """c_orig, c_ref B×P×K×h×w → fused B×P×K×h×w."""
        prob = (c_orig.mean(1) / 0.07).softmax(1)  # B×K×h×w
        ent = -(prob * prob.clamp_min(1e-12).log()).sum(1, keepdim=True) / torch.log(
            torch.tensor(max(prob.shape[1], 2.0))
        )
        return c_orig + torch.sigmoid(self.proj(ent))[:, None] * c_ref


class DRSeg(CATSeg):
    """CAT-Seg + SPSD/PDGR/UGAF (switches: cfg.spsd_ratio, cfg.pdgr_k (0 → off), cfg.ugaf)."""

    def __init__(self, cfg: DRSegConfig, clip_bundle=None, dino_bundle=None):
        super().__init__(cfg, clip_bundle)
        self.dino = FrozenBackbone.dino(cfg.dino, dino_bundle)
        if cfg.spsd_path is None:
            raise DglrsisError(
                "DR-Seg needs an SPSD channel ranking: set model.spsd_path to the JSON written by "
                "python -m dglrsis.trainable.spsd (or model.spsd_path=identity for the unranked ablation)"
            )
        if cfg.spsd_path == "identity":
            order = torch.arange(self.embed)
        else:
            order = read_spsd_order(cfg.spsd_path, self.embed)
        self.spsd = SPSD(order, cfg.spsd_ratio)
        n_st = self.embed - self.spsd.n_sem
        self.pdgr = PDGR(n_st, self.dino.dim, cfg.pdgr_k) if cfg.pdgr_k > 0 and n_st > 0 else None
        self.ugaf = UGAF() if cfg.ugaf else None

    def refine(self, img, images):
        """img B×h×w×E → refined B×h×w×E (structure channels rectified on the DINO graph)."""
        if self.pdgr is None:
            return img
        b, h, w, e = img.shape
        d, _ = self.dino(images)
        d = F.adaptive_avg_pool2d(d, (h, w)).flatten(2).transpose(1, 2)
        sem, st = self.spsd.split(img.reshape(b, h * w, e))
        return self.spsd.merge(sem, self.pdgr(st, d, h, w)).view(b, h, w, e)

    def forward(self, images: torch.Tensor, class_names: list[str]) -> torch.Tensor:
        """images B×3×S×S → logits B×K×4h×4w."""
        text = self.text_embeddings(class_names)
        b = images.shape[0]
        costs, img, inter = rotated_costs(self, images, text, 4)
        c_orig = torch.stack(costs).mean(0)  # B×P×K×h×w
        c_ref = self.cost_volume(self.refine(img, images), text)
        cost = self.ugaf(c_orig, c_ref) if self.ugaf is not None else 0.5 * (c_orig + c_ref)
        return self.aggregator(
            cost, img.permute(0, 3, 1, 2), self.text_guidance(text, b), self.decoder_guidance(inter)
        )


def build_drseg(cfg: DRSegConfig) -> DRSeg:
    return DRSeg(cfg)
