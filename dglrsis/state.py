"""The two things every inference stage works on: the loaded models and the state of one image.

Data flows one way — models + image → :class:`ImageState` (GLD image side + LVTA crop embeddings, built
once by :func:`dglrsis.lvta.build_state`) → OVSS (:mod:`dglrsis.lvta`) and RES (:mod:`dglrsis.gvta`), which
read the state and add to its caches (masked-crop embeddings, CAMs) but never replace what it holds. The
:class:`dglrsis.Predictor` owns one of each, in the shape of segment-anything's ``SamPredictor``;
:func:`build_state` is its ``set_image``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .errors import DglrsisError
from .lvta import LVTAConfig, TextBank, embed_proposals
from .proposals import ProposalConfig, Proposals, generate_proposals


@dataclass
class Models:
    """Models shared by every image (loaded once)."""

    clip: Any  # dglrsis.models.ClipBundle
    text: TextBank  # cached prompt embeddings of ``clip``
    sam: Any = None  # segment-anything Sam (proposals == "sam")

    @classmethod
    def from_clip(cls, clip, sam=None) -> Models:
        return cls(clip=clip, text=TextBank(clip), sam=sam)


@dataclass
class ImageState:
    """What ``set_image`` computes once per image; read by every query on it."""

    image: np.ndarray | None  # H×W×3 uint8 (the caller's array, not modified); None for a tiled scene
    proposals: Proposals  # class-agnostic mask proposals (GLD image side)
    crop_emb: Any  # N×D torch tensor: CLIP embeddings of the context-aware crops (LVTA)
    lvta: LVTAConfig  # the crop / prompt settings the embeddings were made with
    masked_emb: Any = None  # N×D embeddings of the masked crops (GVTA), filled on first use
    cam_cache: dict = field(default_factory=dict)  # (expression, settings) → H×W fused CAM (GVTA)
    valid: np.ndarray | None = None  # H×W bool, False = nodata / masked (never classified); None = all valid
    timings: dict = field(default_factory=dict)  # stage → seconds spent building the state
    cam_features: dict = field(default_factory=dict)  # scale → windows + text-free CLIP forward (GVTA)

    @property
    def shape(self) -> tuple[int, int]:
        """(H, W) of the image."""
        return self.proposals.shape


def check_image(image: np.ndarray) -> np.ndarray:
    """``image`` as an H×W×3 uint8 array, or a DglrsisError saying what is wrong with it."""
    image = np.asarray(image)
    if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
        raise DglrsisError(f"expected an H×W×3 uint8 image, got shape {image.shape} dtype {image.dtype}")
    if min(image.shape[:2]) < 2:
        raise DglrsisError(f"image of {image.shape[1]}×{image.shape[0]} pixels is too small to segment")
    return image


def build_state(
    image: np.ndarray,
    models: Models,
    proposals: ProposalConfig,
    lvta: LVTAConfig,
    valid: np.ndarray | None = None,
) -> ImageState:
    """GLD image side + LVTA crop encoding of ``image`` (H×W×3 uint8, not modified). ``valid`` (H×W bool):
    pixels outside it are left out of every proposal, so they are never classified."""
    image = check_image(image)
    props = generate_proposals(image, proposals, sam=models.sam)
    if valid is not None:
        valid = np.asarray(valid, bool)
        props = props.restricted(valid)
    return ImageState(image, props, embed_proposals(image, props, models.clip, lvta), lvta, valid=valid)
