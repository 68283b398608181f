"""CAT-Seg: cosine cost volume between dense CLIP tokens and class text, spatial (Swin) + class
(linear attention) aggregation, two up blocks guided by intermediate CLIP layers.

:class:`CostModel` is the CLIP half every model of the family shares (partially fine-tuned CLIP, text
embeddings, dense image features, cosine cost, CLIP decoder-guidance upsamplers, parameter groups); it
builds no aggregator. Each model composes its own components after ``CostModel.__init__``.

forward(images B×3×S×S, class_names list[str]) → logits B×K×4h×4w (h = S/patch)."""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from dglrsis.vit import default_layers

from .blocks import ClassAggregation, SpatialAggregation, Up
from .clip_dense import count_trainable_clip, dense_clip_features, select_clip_finetune
from .config import ModelConfig


def catseg_layers(cfg: ModelConfig, grid: int) -> nn.ModuleList:
    """CAT-Seg aggregation layers: ``num_layers`` × [SpatialAggregation, ClassAggregation]."""
    return nn.ModuleList(
        nn.ModuleList(
            [
                SpatialAggregation(cfg.hidden, cfg.guidance_dim, cfg.heads, cfg.window, grid),
                ClassAggregation(cfg.hidden, cfg.text_guidance_dim, cfg.heads, cfg.pool_size, cfg.pad_len),
            ]
        )
        for _ in range(cfg.num_layers)
    )


def _projections(ins: Sequence[int], outs: Sequence[int]) -> nn.ModuleList:
    """Decoder-guidance projections: 3×3 conv + ReLU per level."""
    return nn.ModuleList(
        [nn.Sequential(nn.Conv2d(a, b, 3, padding=1), nn.ReLU()) for a, b in zip(ins, outs, strict=True)]
    )


class Aggregator(nn.Module):
    """CAT-Seg aggregator: cost embedding, guidance projections, aggregation layers, decoder.

    cost B×P'×K×h×w → logits B×K×4h×4w. Composition points (defaults = CAT-Seg):
    ``cost_in`` channels of the cost (P'), ``layers`` (pairs of spatial, class modules called as
    ``spatial(x, g)``, ``cls(x, t)``), ``decoder_in`` (input widths of the decoder-guidance
    projections), ``extra_decoder`` (input widths and projected widths of a second decoder guidance,
    concatenated after the first: GSNet's DINO guidance) or ``extra_widths`` (widths of a second decoder
    guidance the caller has projected already: RSKT-Seg's RemoteCLIP and DINO guidance)."""

    def __init__(
        self,
        cfg: ModelConfig,
        embed: int,
        grid: int,
        cost_in: int | None = None,
        layers: nn.ModuleList | None = None,
        decoder_in: Sequence[int] | None = None,
        extra_decoder: tuple[Sequence[int], Sequence[int]] | None = None,
        extra_widths: Sequence[int] | None = None,
    ):
        super().__init__()
        hd = cfg.hidden
        self.conv1 = nn.Conv2d(cost_in or len(cfg.templates), hd, 7, padding=3)
        self.guidance_proj = nn.Sequential(nn.Conv2d(embed, cfg.guidance_dim, 3, padding=1), nn.ReLU())
        self.text_guidance_proj = nn.Sequential(nn.Linear(embed, cfg.text_guidance_dim), nn.ReLU())
        self.layers = layers if layers is not None else catseg_layers(cfg, grid)
        gd, gp, dd = decoder_in or cfg.decoder_guidance_dims, cfg.decoder_guidance_proj_dims, cfg.decoder_dims
        self.decoder_guidance = _projections(gd, gp)
        ein, ep = extra_decoder or ((), extra_widths or (0, 0))
        self.extra_decoder_guidance = _projections(ein, ep) if extra_decoder else None
        self.decoder1 = Up(hd, dd[0], gp[0], ep[0])
        self.decoder2 = Up(dd[0], dd[1], gp[1], ep[1])
        self.head = nn.Conv2d(dd[1], 1, 3, padding=1)

    def embed_cost(self, cost: torch.Tensor) -> torch.Tensor:
        """cost B×P×K×h×w → B×C×K×h×w."""
        b, p, k, h, w = cost.shape
        x = self.conv1(cost.transpose(1, 2).reshape(b * k, p, h, w))
        return x.view(b, k, -1, h, w).transpose(1, 2)

    def aggregate(self, x, img_guid, text_guid):
        """x B×C×K×h×w, img_guid B×E×h×w, text_guid B×K×E → B×C×K×h×w."""
        g = self.guidance_proj(img_guid)
        t = self.text_guidance_proj(text_guid)
        for spatial, cls in self.layers:
            x = spatial(x, g)
            x = cls(x, t)
        return x

    def decode(self, x, dec_guid, extra_guid=None):
        """x B×C×K×h×w, dec_guid [B×·×2h×2w, B×·×4h×4w] (, extra_guid the same for
        ``extra_decoder``, or already projected for ``extra_widths``) → B×K×4h×4w."""
        b, c, k, h, w = x.shape
        x = x.transpose(1, 2).reshape(b * k, c, h, w)

        def project(projs, guid):
            if projs is None:  # projected by the caller
                return [g.repeat_interleave(k, 0) for g in guid]
            return [proj(g).repeat_interleave(k, 0) for proj, g in zip(projs, guid, strict=True)]

        gs = project(self.decoder_guidance, dec_guid)
        es = project(self.extra_decoder_guidance, extra_guid) if extra_guid is not None else [None, None]
        x = self.decoder1(x, gs[0], es[0])
        x = self.decoder2(x, gs[1], es[1])
        return self.head(x).view(b, k, 4 * h, 4 * w)

    def forward(self, cost, img_guid, text_guid, dec_guid):
        return self.decode(self.aggregate(self.embed_cost(cost), img_guid, text_guid), dec_guid)


def default_input_size(clip_model, clip_size: int) -> int:
    """384 for patch 16, 336 for patch 14 (CAT-Seg's 24×24 grid), else the CLIP's own size."""
    patch = clip_model.visual.conv1.kernel_size[0]
    return {16: 384, 14: 336}.get(patch, clip_size)


class CostModel(nn.Module):
    """The CLIP half shared by the family (registry CLIP via ``dglrsis.models.load_clip``): partially
    fine-tuned CLIP, prompt text embeddings, dense image features, cosine cost volume, CLIP
    decoder-guidance upsamplers (``upsample1`` ×2, ``upsample2`` ×4), optimiser groups and counts."""

    def __init__(self, cfg: ModelConfig, clip_bundle=None):
        super().__init__()
        if clip_bundle is None:
            from dglrsis.models import load_clip

            clip_bundle = load_clip(cfg.clip)
        self.cfg = cfg
        self.clip = clip_bundle.model
        self.tokenizer = clip_bundle.tokenizer
        self.mean, self.std = tuple(clip_bundle.mean), tuple(clip_bundle.std)
        self.input_size = cfg.input_size or default_input_size(self.clip, clip_bundle.image_size)
        vis = self.clip.visual
        self.grid = self.input_size // vis.conv1.kernel_size[0]
        width = vis.conv1.out_channels
        nl = len(vis.transformer.resblocks)
        self.guidance_layers = tuple(cfg.guidance_layers or default_layers(nl))
        self.embed = clip_bundle.embed_dim
        self.clip_trainable = select_clip_finetune(self.clip, text=cfg.finetune_text)
        gd = cfg.decoder_guidance_dims
        self.upsample1 = nn.ConvTranspose2d(width, gd[0], 2, stride=2)
        self.upsample2 = nn.ConvTranspose2d(width, gd[1], 4, stride=4)
        self._text_cache: dict = {}

    # ------------------------------------------------------------------ text
    def text_embeddings(self, class_names: list[str]) -> torch.Tensor:
        """K×P×E L2-normalised text features (cached when the text tower is frozen or in eval mode).

        A name listing synonyms (``"harbor, port"``) is prompted with its first one, as the public
        CAT-Seg does."""
        key = tuple(class_names)
        cacheable = not (self.training and self.cfg.finetune_text)
        if cacheable and key in self._text_cache:
            return self._text_cache[key]
        prompts = [t.format(c.split(", ")[0]) for c in class_names for t in self.cfg.templates]
        dev = self.clip.visual.conv1.weight.device
        tokens = self.tokenizer(prompts).to(dev)
        with torch.set_grad_enabled(torch.is_grad_enabled() and not cacheable):
            emb = F.normalize(self.clip.encode_text(tokens), dim=-1)
        emb = emb.view(len(class_names), len(self.cfg.templates), -1)
        if cacheable:
            self._text_cache = {key: emb.detach()}
        return emb

    def train(self, mode: bool = True):
        self._text_cache = {}
        return super().train(mode)

    # ------------------------------------------------------------------ image
    def image_features(self, images: torch.Tensor):
        """→ (dense B×h×w×E, [B×W×h×w at the guidance layers])."""
        return dense_clip_features(self.clip.visual, images, self.guidance_layers, self.cfg.dense_value_path)

    @staticmethod
    def text_guidance(text: torch.Tensor, batch: int | None = None) -> torch.Tensor:
        """Prompt mean, re-normalised (public CAT-Seg): K×P×E → B×K×E (``batch`` B), or B×K×P×E → B×K×E."""
        t = F.normalize(text.mean(-2), dim=-1)
        return t[None].expand(batch, -1, -1) if text.dim() == 3 else t

    @staticmethod
    def cost_volume(img: torch.Tensor, text: torch.Tensor) -> torch.Tensor:
        """img B×h×w×E, text K×P×E (or B×K×P×E) → cosine cost B×P×K×h×w."""
        img = F.normalize(img, dim=-1)
        text = F.normalize(text, dim=-1)
        if text.dim() == 3:
            return torch.einsum("bhwe,kpe->bpkhw", img, text)
        return torch.einsum("bhwe,bkpe->bpkhw", img, text)

    def decoder_guidance(self, inter):
        """CLIP intermediate layers [B×W×h×w]×2 → [B×256×2h×2w, B×128×4h×4w] (ViT-B widths)."""
        return [self.upsample1(inter[0]), self.upsample2(inter[1])]

    # ------------------------------------------------------------------ optimisation
    def param_groups(self, lr: float, clip_lr_mult: float = 0.01, weight_decay: float = 1e-4) -> list[dict]:
        """Head params at lr (AdamW wd), CLIP q/v projection weights at lr×clip_lr_mult, wd 0
        (so the masked k rows of the fused in_proj stay unchanged). Frozen backbones are in neither."""
        clip_ids = {id(p) for p in self.clip.parameters()}
        head = [p for p in self.parameters() if p.requires_grad and id(p) not in clip_ids]
        clip = [p for p in self.clip_trainable if p.requires_grad]
        return [
            {"params": head, "lr": lr, "weight_decay": weight_decay, "name": "head"},
            {"params": clip, "lr": lr * clip_lr_mult, "weight_decay": 0.0, "name": "clip"},
        ]

    def count_trainable(self) -> int:
        """Trained elements: head + CLIP (fused in_proj counted as its q and v slices)."""
        clip_ids = {id(p) for p in self.clip.parameters()}
        head = sum(p.numel() for p in self.parameters() if p.requires_grad and id(p) not in clip_ids)
        return head + count_trainable_clip(self.clip_trainable)


class CATSeg(CostModel):
    """CAT-Seg: :class:`CostModel` + the CAT-Seg :class:`Aggregator`."""

    def __init__(self, cfg: ModelConfig, clip_bundle=None):
        super().__init__(cfg, clip_bundle)
        self.aggregator = Aggregator(cfg, self.embed, self.grid)

    def forward(self, images: torch.Tensor, class_names: list[str]) -> torch.Tensor:
        """images B×3×S×S normalised with self.mean/std → logits B×K×(4·S/patch)².

        Beyond ``cfg.pad_len`` classes only the ``pad_len`` with the highest cost anywhere in the image
        are aggregated (per image); the others get logit −100 (public CAT-Seg)."""
        text = self.text_embeddings(class_names)  # K×P×E
        img, inter = self.image_features(images)
        b, k = images.shape[0], text.shape[0]
        text = text[None].expand(b, -1, -1, -1)  # B×K×P×E
        cost = self.cost_volume(img, text)
        keep = None
        if 0 < self.cfg.pad_len < k:
            keep = cost.amax(dim=(1, 3, 4)).topk(self.cfg.pad_len, dim=1).indices  # B×pad_len
            text = torch.gather(text, 1, keep[..., None, None].expand(-1, -1, *text.shape[2:]))
            cost = self.cost_volume(img, text)
        logits = self.aggregator(
            cost, img.permute(0, 3, 1, 2), self.text_guidance(text), self.decoder_guidance(inter)
        )
        if keep is None:
            return logits
        out = logits.new_full((b, k, *logits.shape[2:]), -100.0)
        return out.scatter(1, keep[..., None, None].expand(-1, -1, *logits.shape[2:]), logits)


def build_catseg(cfg: ModelConfig) -> CATSeg:
    return CATSeg(cfg)
