"""DR-Seg (the DR-Seg paper; no public code): SPSD channel split (offline order, ratio ρ), PDGR
(DINO-guided top-k sparse graph with learned softplus edge weights rectifying the structure channels),
UGAF (Sec. 3.4: the entropy gate of Eq. (13) modulates the refined cost; after Eq. (13) both costs are
projected into a latent embedding space, the refined one goes through a multi-scale convolutional block
and a fusion head combines them: :class:`LatentFusion`), then CAT-Seg aggregation and decoder. Which
sentence of the paper each part follows: README, "DR-Seg follows its paper's text"."""

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
    """Eqs. (12)–(13): the normalised class entropy U of the original cost (softmax at temperature 0.07,
    divided by log K) through a 1×1 conv φ and a sigmoid gates the refined cost: σ(φ(U)) ⊙ c_ref."""

    def __init__(self):
        super().__init__()
        self.proj = nn.Conv2d(1, 1, 1)

    def forward(self, c_orig, c_ref):
        """c_orig, c_ref B×P×K×h×w → the uncertainty-modulated refined cost B×P×K×h×w."""
        prob = (c_orig.mean(1) / 0.07).softmax(1)  # B×K×h×w
        ent = -(prob * prob.clamp_min(1e-12).log()).sum(1, keepdim=True) / torch.log(
            torch.tensor(max(prob.shape[1], 2.0))
        )
        return torch.sigmoid(self.proj(ent))[:, None] * c_ref


class MultiScale(nn.Module):
    """The paper's "lightweight multi-scale convolutional block" (after Eq. (13)), which it does not
    specify; ours: x + GELU(Σ_d conv3×3_d(x)) over dilations d = 1, 2, 3 (receptive fields 3, 5, 7:
    "local structural corrections and broader contextual cues"), width kept."""

    def __init__(self, dim: int, dilations: tuple = (1, 2, 3)):
        super().__init__()
        self.convs = nn.ModuleList(nn.Conv2d(dim, dim, 3, padding=d, dilation=d) for d in dilations)

    def forward(self, x):
        return x + F.gelu(sum(conv(x) for conv in self.convs))


class LatentFusion(nn.Module):
    """UGAF's fusion after Eq. (13): "we project both [the modulated refined cost] and the original
    correlation map into a latent embedding space", the refined branch "is further processed by a
    lightweight multi-scale convolutional block", "the two branches are then fused by a lightweight
    fusion head, and the fused representation is fed into the subsequent aggregation layers".

    Our choices where the paper is silent: the latent space is CAT-Seg's cost embedding (width
    ``hidden`` = 128); the original cost is projected by CAT-Seg's own 7×7 cost embedding (the
    aggregator's ``conv1``, so the original branch keeps CAT-Seg's embedding and nothing more), the
    refined cost by a second 7×7 conv P → hidden (``ref_embed``); the multi-scale block is
    :class:`MultiScale`; the fusion head is concat → 1×1 conv 2·hidden → hidden → GroupNorm(hidden/16)
    (the family's group size) → GELU (``head``). Every conv runs per class on the h×w grid, as
    ``conv1``. Its output replaces ``conv1``'s output as the input of the aggregation layers."""

    def __init__(self, cost_in: int, hidden: int):
        super().__init__()
        self.ref_embed = nn.Conv2d(cost_in, hidden, 7, padding=3)
        self.multiscale = MultiScale(hidden)
        self.head = nn.Sequential(
            nn.Conv2d(2 * hidden, hidden, 1), nn.GroupNorm(max(hidden // 16, 1), hidden), nn.GELU()
        )

    def forward(self, e_orig, c_ref):
        """e_orig B×C×K×h×w (the embedded original cost), c_ref B×P×K×h×w (the modulated refined
        cost) → fused B×C×K×h×w."""
        b, p, k, h, w = c_ref.shape
        e_ref = self.multiscale(self.ref_embed(c_ref.transpose(1, 2).reshape(b * k, p, h, w)))
        e_orig = e_orig.transpose(1, 2).reshape(b * k, -1, h, w)
        x = self.head(torch.cat([e_orig, e_ref], 1))
        return x.view(b, k, -1, h, w).transpose(1, 2)


FUSIONS = ("paper", "sum")


class DRSeg(CATSeg):
    """CAT-Seg + SPSD/PDGR/UGAF (switches: cfg.spsd_ratio, cfg.pdgr_k (0 → off), cfg.ugaf, cfg.fusion).

    ``fusion`` (with ``ugaf``): ``paper`` — the gated refined cost and the original cost embedded and fused
    in the latent space (:class:`LatentFusion`) before aggregation; ``sum`` — the cost
    c_orig + σ(φ(U)) ⊙ c_ref into CAT-Seg's cost embedding (our earlier simplification). ``ugaf`` false:
    no gate and no latent fusion, ½(c_orig + c_ref) into CAT-Seg's cost embedding (Table 4's "mean"),
    whatever ``fusion`` says."""

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
        if cfg.fusion not in FUSIONS:
            raise DglrsisError(f"unknown DR-Seg fusion {cfg.fusion!r}; choose from {', '.join(FUSIONS)}")
        self.ugaf = UGAF() if cfg.ugaf else None
        paper = cfg.ugaf and cfg.fusion == "paper"
        self.latent_fusion = LatentFusion(len(cfg.templates), cfg.hidden) if paper else None

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
        guid = (img.permute(0, 3, 1, 2), self.text_guidance(text, b))
        if self.ugaf is None:
            cost = 0.5 * (c_orig + c_ref)
        elif self.latent_fusion is None:
            cost = c_orig + self.ugaf(c_orig, c_ref)
        else:
            agg = self.aggregator
            x = self.latent_fusion(agg.embed_cost(c_orig), self.ugaf(c_orig, c_ref))
            return agg.decode(agg.aggregate(x, *guid), self.decoder_guidance(inter))
        return self.aggregator(cost, *guid, self.decoder_guidance(inter))


def build_drseg(cfg: DRSegConfig) -> DRSeg:
    return DRSeg(cfg)
