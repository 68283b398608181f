"""Typed model configurations: :class:`ModelConfig` holds what every model of the family uses (the
CAT-Seg fields); each other model has its own dataclass adding only its switches. A key a model does not
use is an error naming the key (``qgff`` on CAT-Seg), and every value is checked against its field's type.

``model_config(name, values)`` builds the config of a registered model from a mapping (YAML content,
overrides), ``check_fields`` is the type check shared with the training config."""

from __future__ import annotations

import dataclasses
import types
import typing
from dataclasses import dataclass

from dglrsis.errors import DglrsisError

DEFAULT_TEMPLATES = ("A photo of a {} in the scene",)


@dataclass
class ModelConfig:
    """CAT-Seg, and the fields every model of the family shares."""

    clip: str = "ViT-B-16:random"  # CLIP registry name (dglrsis.models.load_clip)
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
    pool_size: tuple | None = (2, 2)  # class-aggregation average pooling (public POOLING_SIZES); None → off
    pad_len: int = 256  # class aggregation padded to / top-k'd to this many classes (public pad_len; 0 → off)
    dense_value_path: bool = True  # last CLIP block as value path + CLS residual (public dense features)
    finetune_text: bool = True  # also fine-tune the text tower's attention q/v weights


@dataclass
class PiSegConfig(ModelConfig):
    """Pi-Seg (public Zlittlemoon/Pi-Seg, ``MODEL.PINI`` of its vitb_384 / vitl_336 configs) = CAT-Seg +
    Text-SPM / Image-SPM (the public TextVpnGenerator / ImageVpnGenerator), perturbing in training only.
    Noise families: gaussian | laplace | uniform | gumbel | student_t, each of unit variance."""

    text_spm: bool = True  # Text-SPM: learnable μ, σ perturbation of the text embeddings (TEXT_VPN_ENABLED)
    image_spm: bool = True  # Image-SPM: attention to the text predicts μ, σ per location (IMAGE_VPN_ENABLED)
    text_noise: str = "gaussian"  # Text-SPM noise family (TEXT_NOISE_TYPE)
    image_noise: str = "gaussian"  # Image-SPM noise family (IMAGE_NOISE_TYPE)
    text_student_t_df: float = 3.0  # ν of Text-SPM's Student-t noise (TEXT_STUDENT_T_DF)
    image_student_t_df: float = 3.0  # ν of Image-SPM's Student-t noise (IMAGE_STUDENT_T_DF)
    spm_reduction: int = 1  # Image-SPM attention width C/r (REDUCTION)
    spm_init_std: float = 0.02  # Text-SPM μ, σ initialisation std (TEXT_NOISE_STD)
    # Image-SPM softmax(q·kᵀ/√d): the public code comments "scaled dot-product is more stable" but leaves
    # the scale out, so its logits grow with the width C/r and sharpen the softmax; off = public
    spm_attn_scale: bool = False


@dataclass
class GSNetConfig(ModelConfig):
    """GSNet = CAT-Seg + frozen DINO stream (DSIE), QGFF, RIPD."""

    dino: str = "rsib:random"  # DINO registry name (frozen)
    qgff: bool = True  # QGFF: gated fusion of the DINO text-cost volume (+ CLIP residual)
    ripd: bool = True  # RIPD: DINO intermediate layers as extra decoder guidance
    dino_decoder_guidance_proj_dims: tuple = (32, 16)  # RIPD: DINO guidance projection inside the decoder
    dino_layers: tuple | None = None  # DINO blocks for RIPD; None → (L/3−1, 2L/3−1) = public (3, 7) at L = 12


@dataclass
class DRSegConfig(ModelConfig):
    """DR-Seg = CAT-Seg + SPSD / PDGR / UGAF (the entropy gate and, ``fusion`` = paper, the latent fusion)."""

    dino: str = "rsib:random"  # DINO registry name (frozen; PDGR's graph)
    spsd_ratio: float = 0.5  # SPSD semantic ratio ρ (share of channels kept untouched)
    spsd_path: str | None = None  # SPSD ranking JSON (trainable.spsd) or "identity"; None → error
    pdgr_k: int = 75  # PDGR top-k neighbours (0 → PDGR off)
    ugaf: bool = True  # UGAF entropy gate and fusion (False → plain average of the two costs, Table 4 "mean")
    # UGAF fusion after Eq. (13): "paper" → both costs embedded (7×7 convs), the refined one through a
    # multi-scale block, fused by a 1×1-conv head in the latent space; "sum" → c_orig + gated c_ref into
    # CAT-Seg's cost embedding (the earlier simplification)
    fusion: str = "paper"


@dataclass
class RSKTSegConfig(ModelConfig):
    """RSKT-Seg (public LiBingyu01/RSKT-Seg, vitb_384 configs) = CLIP costs of four rotations fused with a
    DINO cost, RS-Fusion aggregation, CLIP + RemoteCLIP + DINO decoder guidance; DINO and RemoteCLIP
    frozen. The aggregation needs ``guidance_dim`` = ``text_guidance_dim`` = ``hidden`` only in the
    public code (its q / k take 2·hidden); here any widths work."""

    num_layers: int = 3  # RS-Fusion layers: the public vitb_384_*.yaml NUM_LAYERS (vitl_336_*.yaml: 2)
    heads: int = 8  # RS-Fusion heads: the public EffAggregatorLayer's default (NUM_HEADS is not passed to it)
    dino: str = "rsib:random"  # DINO registry name (frozen)
    rclip: str = "ViT-B-32:random"  # RemoteCLIP registry name (e.g. RemoteCLIP-ViT-B-32), frozen
    use_rotations: bool = True  # RS-CMA: CLIP cost on 0/90/180/270° rotations (else 0° only)
    use_dino_cost: bool = True  # RS-CMA: DINO cost fused as GSNet's QGFF (else conv1 on the CLIP cost)
    set_sr: int = 2  # RS-Fusion spatial attention: keys / values reduced sr×sr (public sr_ratio; 1 = none)
    rclip_guidance: bool = True  # RS-Transfer: RemoteCLIP decoder guidance (public USE_REMOTE_CLIP)
    dino_guidance: bool = True  # RS-Transfer: DINO decoder guidance
    rclip_guidance_dims: tuple = (256, 128)  # RemoteCLIP upsampler outputs (public upsample1/2_remote)
    dino_guidance_dims: tuple = (256, 128)  # DINO guidance outputs (public dino_decod_proj1/2)
    dino_decoder_guidance_proj_dims: tuple = (32, 16)  # DINO guidance projection inside the decoder
    rclip_layers: tuple | None = None  # RemoteCLIP blocks; None → (L/3−1, 2L/3−1) = public (3, 7) at L = 12
    dino_layers: tuple | None = None  # DINO blocks; None → (L/3−1, 2L/3−1) = public (3, 7) at L = 12


CONFIGS: dict[str, type[ModelConfig]] = {
    "catseg": ModelConfig,
    "piseg": PiSegConfig,
    "gsnet": GSNetConfig,
    "drseg": DRSegConfig,
    "rsktseg": RSKTSegConfig,
}


def _type_ok(value, hint) -> bool:
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        return any(_type_ok(value, h) for h in typing.get_args(hint))
    if hint is type(None):
        return value is None
    if hint is bool:
        return isinstance(value, bool)
    if hint is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if hint is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if hint is tuple:
        return isinstance(value, (tuple, list))
    if hint is list:
        return isinstance(value, (list, tuple))
    return isinstance(value, hint) if isinstance(hint, type) else True


def check_fields(cls: type, values: dict, where: str, owner: str | None = None) -> dict:
    """``values`` checked against the dataclass ``cls``: unknown keys and wrong types raise a
    DglrsisError naming ``where.key``; lists become tuples and ints floats where the field says so."""
    if not isinstance(values, dict):
        raise DglrsisError(f"config section {where!r} must be a mapping")
    hints = typing.get_type_hints(cls)
    known = {f.name for f in dataclasses.fields(cls)}
    out = {}
    for key, value in values.items():
        if key not in known:
            raise DglrsisError(
                f"{where}.{key} is not an option of {owner or cls.__name__}; "
                f"known: {', '.join(sorted(known))}"
            )
        hint = hints[key]
        if not _type_ok(value, hint):
            raise DglrsisError(f"{where}.{key} must be {_name(hint)}, got {value!r}")
        members = set(typing.get_args(hint)) or {hint}
        if isinstance(value, list) and tuple in members:
            value = tuple(value)
        elif isinstance(value, int) and not isinstance(value, bool) and float in members:
            value = float(value)
        out[key] = value
    return out


def _name(hint) -> str:
    return getattr(hint, "__name__", None) or str(hint).replace("NoneType", "null")


def config_class(name: str) -> type[ModelConfig]:
    """The config dataclass of model ``name`` (:class:`ModelConfig` for names not in CONFIGS)."""
    return CONFIGS.get(name, ModelConfig)


def model_config(name: str, values: dict | None = None, **kw) -> ModelConfig:
    """The typed config of model ``name`` from ``values`` / keywords (checked, see check_fields)."""
    cls = config_class(name)
    return cls(**check_fields(cls, {**(values or {}), **kw}, "model", f"{name} ({cls.__name__})"))
