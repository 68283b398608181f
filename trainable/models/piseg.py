"""Pi-Seg (the Pi-Seg paper): CAT-Seg plus learnable feature perturbations, active only in training —
the public Pi-Seg (Zlittlemoon/Pi-Seg, ``cat_seg/pini_vpn.py``, ``MODEL.PINI`` of its ``vitb_384_*`` configs).

Text-SPM (public ``TextVpnGenerator``): T̂ = T + (|σ|⊙ε + μ), μ, σ ∈ R^C learnable (init N(0, 0.02²)),
ε of the text's shape K×P×C — one draw for the whole batch.
Image-SPM (public ``ImageVpnGenerator``): from the dense CLIP tokens V (B×hw×C) and the prompt mean T̄
(K×C) of the perturbed text, both detached, a one-head cross-attention of width C/r
(a = softmax(q kᵀ) v, q = W_q V, k = W_k T̄, v = W_v T̄; no 1/√d scale) gives μ = W_μ a and
σ = |W_σ a| (C/r → C) per location: V̂ = V + (σ⊙ε + μ). With r = 1 this is 5C² + 5C parameters, which
with Text-SPM's 2C is Pi-Seg Table XII over CAT-Seg (155.60 − 154.29 M for C = 512).

Only the cost volume and the text guidance see the perturbed features: the appearance guidance is
projected from the clean CLIP features (public). ε is unit-variance noise of the configured family."""

from __future__ import annotations

import math

import torch
from torch import nn

from dglrsis.errors import DglrsisError

from .catseg import CATSeg
from .config import PiSegConfig

NOISES = ("gaussian", "laplace", "uniform", "gumbel", "student_t")
_EULER, _GUMBEL_STD = 0.5772156649, 1.2825498302  # the public Gumbel standardisation


def check_noise(family: str, df: float) -> None:
    """A DglrsisError unless ``family`` is one of NOISES (Student-t: ν = ``df`` > 2, finite variance)."""
    if family not in NOISES:
        raise DglrsisError(f"unknown noise {family!r}; choose from {', '.join(NOISES)}")
    if family == "student_t" and df <= 2:
        raise DglrsisError(f"student_t noise needs more than 2 degrees of freedom, got {df}")


def sample_noise(shape, family: str, like: torch.Tensor, df: float = 3.0) -> torch.Tensor:
    """Zero-mean, unit-variance noise of ``shape`` (public ``sample_noise_like``, the same numbers from
    the same RNG state): ``gaussian``; ``laplace`` with scale 1/√2; ``uniform`` on ±√3; ``gumbel``
    standardised; ``student_t`` with ν = ``df`` divided by √(ν/(ν−2))."""
    check_noise(family, df)
    dev, dt = like.device, like.dtype
    if family == "gaussian":
        return torch.randn(shape, device=dev, dtype=dt)
    if family == "uniform":
        return (torch.rand(shape, device=dev, dtype=dt) * 2.0 - 1.0) * math.sqrt(3.0)
    if family == "gumbel":
        u = torch.rand(shape, device=dev, dtype=dt).clamp(min=1e-6, max=1.0 - 1e-6)
        return (-torch.log(-torch.log(u)) - _EULER) / _GUMBEL_STD
    if family == "laplace":
        zero = torch.zeros(shape, device=dev, dtype=dt)
        return torch.distributions.Laplace(zero, torch.full_like(zero, 1.0 / math.sqrt(2.0))).sample()
    t = torch.distributions.StudentT(df=df).sample(shape).to(device=dev, dtype=dt)
    return t / math.sqrt(df / (df - 2.0))


class TextSPM(nn.Module):
    """Learnable perturbation of the text embeddings t (K×P×C): t + (|σ|⊙ε + μ)."""

    def __init__(self, dim: int, init_std: float):
        super().__init__()
        self.mu = nn.Parameter(torch.randn(dim) * init_std)
        self.sigma = nn.Parameter(torch.randn(dim) * init_std)

    def draw(self, like: torch.Tensor, family: str, df: float) -> torch.Tensor:
        """ε with the shape of ``like``."""
        return sample_noise(like.shape, family, like, df)

    def forward(self, t: torch.Tensor, family: str, df: float) -> torch.Tensor:
        return t + (self.sigma.abs() * self.draw(t, family, df) + self.mu)


class ImageSPM(nn.Module):
    """Text-guided perturbation of the dense image features. v: B×h×w×C, t: K×C (prompt mean of the
    perturbed text) → B×h×w×C. ``scale``: divide q·kᵀ by √(C/r) (off in the public code)."""

    def __init__(self, dim: int, reduction: int = 1, scale: bool = False):
        super().__init__()
        hid = dim // reduction
        self.scale = hid**-0.5 if scale else None
        self.q, self.k, self.v = nn.Linear(dim, hid), nn.Linear(dim, hid), nn.Linear(dim, hid)
        self.mu, self.sigma = nn.Linear(hid, dim), nn.Linear(hid, dim)

    def stats(self, v: torch.Tensor, t: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """v B×N×C, t K×C → (μ, σ), each B×N×C."""
        logits = self.q(v) @ self.k(t).transpose(-2, -1)  # B×N×K
        if self.scale is not None:
            logits = logits * self.scale
        a = torch.softmax(logits, dim=-1) @ self.v(t)
        return self.mu(a), self.sigma(a).abs()

    def draw(self, like: torch.Tensor, family: str, df: float) -> torch.Tensor:
        """ε with the shape of ``like`` (B×N×C)."""
        return sample_noise(like.shape, family, like, df)

    def forward(self, v: torch.Tensor, t: torch.Tensor, family: str, df: float) -> torch.Tensor:
        mu, sigma = self.stats(v.detach().flatten(1, 2), t.detach())  # no gradient into the inputs (public)
        return v + (sigma * self.draw(sigma, family, df) + mu).view_as(v)


class PiSeg(CATSeg):
    """CAT-Seg with Text-SPM / Image-SPM (switches ``cfg.text_spm``, ``cfg.image_spm``; noise families
    ``cfg.text_noise``, ``cfg.image_noise``)."""

    def __init__(self, cfg: PiSegConfig, clip_bundle=None):
        check_noise(cfg.text_noise, cfg.text_student_t_df)
        check_noise(cfg.image_noise, cfg.image_student_t_df)
        super().__init__(cfg, clip_bundle)
        embed = self.embed
        self.text_spm = TextSPM(embed, cfg.spm_init_std) if cfg.text_spm else None
        self.image_spm = ImageSPM(embed, cfg.spm_reduction, cfg.spm_attn_scale) if cfg.image_spm else None

    def perturb(self, img: torch.Tensor, text: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Training only: img B×h×w×E, text K×P×E → (perturbed img, perturbed text); the text noise
        is drawn first, then the image noise (the public order)."""
        cfg = self.cfg
        if not self.training:
            return img, text
        if self.text_spm is not None:
            text = self.text_spm(text, cfg.text_noise, cfg.text_student_t_df)
        if self.image_spm is not None:
            img = self.image_spm(img, text.mean(1), cfg.image_noise, cfg.image_student_t_df)
        return img, text

    def forward(self, images: torch.Tensor, class_names: list[str]) -> torch.Tensor:
        """images B×3×S×S → logits B×K×4h×4w. The cost volume and the text guidance use the perturbed
        features, the appearance guidance the clean ones; every class is aggregated (the public Pi-Seg
        aggregator has no top-``pad_len`` selection)."""
        text = self.text_embeddings(class_names)  # K×P×E
        img, inter = self.image_features(images)
        noisy, text = self.perturb(img, text)
        text = text[None].expand(images.shape[0], -1, -1, -1)  # B×K×P×E
        cost = self.cost_volume(noisy, text)
        return self.aggregator(
            cost, img.permute(0, 3, 1, 2), self.text_guidance(text), self.decoder_guidance(inter)
        )


def build_piseg(cfg: PiSegConfig) -> PiSeg:
    return PiSeg(cfg)
