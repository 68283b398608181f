"""Configuration shared by all cost-aggregation models (one dataclass, one switch per paper component)."""

from __future__ import annotations

from dataclasses import dataclass, field

DEFAULT_TEMPLATES = ("A photo of a {} in the scene",)


@dataclass
class ModelConfig:
    clip: str = "ViT-B-16:random"  # CLIP registry name (dglrsis.models.load_clip)
    dino: str = "rsib:random"  # DINO registry name (GSNet / RSKT-Seg / DR-Seg only)
    templates: tuple = DEFAULT_TEMPLATES  # prompt templates P, each with one "{}"
    input_size: int | None = None  # image side; None → 384 (patch 16), 336 (patch 14), else CLIP's size
    hidden: int = 128  # aggregation width
    num_layers: int = 2  # aggregation layers
    heads: int = 4  # attention heads (spatial and class)
    window: int = 12  # Swin window (clamped to the grid)
    guidance_dim: int = 128  # projected CLIP image guidance
    text_guidance_dim: int = 128  # projected text guidance
    decoder_dims: tuple = (64, 32)  # up-block output channels
    decoder_guidance_dims: tuple = (256, 128)  # guidance upsampler outputs (×2, ×4)
    decoder_guidance_proj_dims: tuple = (32, 16)  # their projection inside the decoder
    guidance_layers: tuple | None = None  # CLIP blocks for decoder guidance; None → (L/3−1, 2L/3−1)
    class_pool: bool = False  # 2×2 avg-pool of the cost in the class transformer (training only)
    finetune_text: bool = True  # also fine-tune the text tower's attention q/v
    # Pi-Seg
    text_spm: bool = True  # Text-SPM: learnable μ, σ perturbation of text embeddings
    image_spm: bool = True  # Image-SPM: text-guided cross-attention predicting μ, σ per location
    noise: str = "gaussian"  # noise family: gaussian | laplace | uniform | student_t
    spm_reduction: int = 2  # Image-SPM channel reduction r
    spm_init_std: float = 0.02  # Text-SPM σ initialisation
    student_t_df: float = 5.0  # degrees of freedom ν of the Student-t noise
    # GSNet
    qgff: bool = True  # QGFF: gated fusion of the DINO text-cost volume (+ CLIP residual)
    ripd: bool = True  # RIPD: DINO intermediate layers as extra decoder guidance
    # DR-Seg
    spsd_ratio: float = 0.5  # SPSD semantic ratio ρ (share of channels kept untouched)
    spsd_path: str | None = (
        None  # SPSD ranking JSON from `python -m dglrsis.trainable.spsd`; None → identity order (warned)
    )
    pdgr_k: int = 75  # PDGR top-k neighbours (0 → PDGR off)
    ugaf: bool = True  # UGAF entropy gate (False → plain average of the two costs)
    # RSKT-Seg
    rclip: str = "ViT-B-32:random"  # RemoteCLIP registry name (e.g. RemoteCLIP-ViT-B-32), frozen
    use_rotations: bool = True  # RS-CMA: CLIP cost on 0/90/180/270° rotations (else 0° only)
    use_dino_cost: bool = True  # RS-CMA: DINO cost map fused by sigmoid-gated 7×7 convs
    set_sr: int = 2  # RS-Fusion SET spatial-reduction ratio (1 = no reduction)
    cet: bool = True  # RS-Fusion CET class attention (False → CAT-Seg linear class attention)
    rclip_guidance_dims: tuple = (
        96,
        48,
    )  # RemoteCLIP guidance upsampler outputs per level (sized to the ≈11.35 M head budget)
    dino_guidance_dims: tuple = (256, 128)  # DINO guidance upsampler outputs per decoder level
    extra: dict = field(
        default_factory=dict
    )  # free-form overrides for experiments (logged, unused by default)
