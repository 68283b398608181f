"""Pi-Seg (seed 003): CAT-Seg plus semantic-aware perturbation modules, active only in training.

Text-SPM: T̂ = T + |σ|⊙Z + μ, μ, σ ∈ R^C learnable (init N(0, σt²)).
Image-SPM: the perturbed text is summarised (Linear C→C), dense visual tokens attend to it through a
cross-attention whose hidden width is C/r (q, k, v: C→C/r, out: C/r→C), and two Linear C→C heads
predict μ_vis and σ_vis (softplus) per location: V̂ = V + σ_vis⊙Z + μ_vis. With r = 2 this is 5C²
parameters, which is exactly what Pi-Seg Table XII implies over CAT-Seg (155.60 − 154.29 M for C = 512,
436.68 − 433.73 M for C = 768). Z is drawn from the configured family (unit variance)."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from .catseg import CATSeg
from .config import PiSegConfig

NOISES = ("gaussian", "laplace", "uniform", "student_t")


def sample_noise(shape, family: str, like: torch.Tensor, df: float = 5.0) -> torch.Tensor:
    """Zero-mean, unit-variance noise of ``shape`` from ``family`` (Student-t: unscaled, ν = df)."""
    if family == "gaussian":
        return torch.randn(shape, device=like.device, dtype=like.dtype)
    if family == "uniform":
        return (torch.rand(shape, device=like.device, dtype=like.dtype) * 2 - 1) * math.sqrt(3.0)
    if family == "laplace":
        d = torch.distributions.Laplace(
            torch.zeros((), device=like.device), torch.tensor(2**-0.5, device=like.device)
        )
        return d.sample(shape).to(like.dtype)
    if family == "student_t":
        d = torch.distributions.StudentT(torch.tensor(float(df), device=like.device))
        return d.sample(shape).to(like.dtype)
    from dglrsis.errors import DglrsisError

    raise DglrsisError(f"unknown noise {family!r}; choose from {', '.join(NOISES)}")


class TextSPM(nn.Module):
    """Learnable residual perturbation of text embeddings (…×C)."""

    def __init__(self, dim: int, init_std: float):
        super().__init__()
        self.mu = nn.Parameter(torch.randn(dim) * init_std)
        self.sigma = nn.Parameter(torch.randn(dim) * init_std)

    def forward(self, t: torch.Tensor, noise: str, df: float) -> torch.Tensor:
        return t + self.sigma.abs() * sample_noise(t.shape, noise, t, df) + self.mu


class ImageSPM(nn.Module):
    """Text-guided cross-attention predicting μ, σ per location. v: B×h×w×C, t: B×K×C."""

    def __init__(self, dim: int, reduction: int = 2, heads: int = 4):
        super().__init__()
        hid = dim // reduction
        self.heads = heads
        self.summary = nn.Linear(dim, dim)
        self.q, self.k, self.v = nn.Linear(dim, hid), nn.Linear(dim, hid), nn.Linear(dim, hid)
        self.out = nn.Linear(hid, dim)
        self.mu, self.sigma = nn.Linear(dim, dim), nn.Linear(dim, dim)

    def forward(self, v: torch.Tensor, t: torch.Tensor, noise: str, df: float) -> torch.Tensor:
        b, h, w, c = v.shape
        cue = self.summary(t)  # B×K×C
        sh = lambda z: z.view(b, z.shape[1], self.heads, -1).transpose(1, 2)  # noqa: E731
        a = F.scaled_dot_product_attention(sh(self.q(v.view(b, h * w, c))), sh(self.k(cue)), sh(self.v(cue)))
        a = self.out(a.transpose(1, 2).reshape(b, h * w, -1))
        mu, sigma = self.mu(a), F.softplus(self.sigma(a))
        eps = sigma * sample_noise(sigma.shape, noise, sigma, df) + mu
        return v + eps.view(b, h, w, c)


class PiSeg(CATSeg):
    """CAT-Seg with Text-SPM / Image-SPM (switches ``cfg.text_spm``, ``cfg.image_spm``, ``cfg.noise``)."""

    def __init__(self, cfg: PiSegConfig, clip_bundle=None):
        super().__init__(cfg, clip_bundle)
        if cfg.noise not in NOISES:
            from dglrsis.errors import DglrsisError

            raise DglrsisError(f"unknown noise {cfg.noise!r}; choose from {', '.join(NOISES)}")
        embed = self.embed
        self.text_spm = TextSPM(embed, cfg.spm_init_std) if cfg.text_spm else None
        self.image_spm = ImageSPM(embed, cfg.spm_reduction, cfg.heads) if cfg.image_spm else None

    def forward(self, images: torch.Tensor, class_names: list[str]) -> torch.Tensor:
        """As CATSeg.forward; perturbations only when ``self.training``."""
        cfg = self.cfg
        text = self.text_embeddings(class_names)  # K×P×E
        img, inter = self.image_features(images)
        b = images.shape[0]
        text = text[None].expand(b, -1, -1, -1)  # B×K×P×E
        if self.training and self.text_spm is not None:
            text = self.text_spm(text, cfg.noise, cfg.student_t_df)
        if self.training and self.image_spm is not None:
            img = self.image_spm(img, text.mean(2), cfg.noise, cfg.student_t_df)
        cost = self.cost_volume(img, text)
        return self.aggregator(
            cost, img.permute(0, 3, 1, 2), self.text_guidance(text), self.decoder_guidance(inter)
        )


def build_piseg(cfg: PiSegConfig) -> PiSeg:
    return PiSeg(cfg)
