"""Trainable cost-aggregation models: flat registry ``MODELS`` and ``build_model(name, cfg)``."""

from __future__ import annotations

from .catseg import CATSeg, build_catseg
from .config import ModelConfig
from .drseg import DRSeg, build_drseg
from .gsnet import GSNet, build_gsnet
from .piseg import PiSeg, build_piseg
from .rsktseg import RSKTSeg, build_rsktseg

MODELS = {
    "catseg": build_catseg,
    "drseg": build_drseg,
    "gsnet": build_gsnet,
    "piseg": build_piseg,
    "rsktseg": build_rsktseg,
}


def build_model(name: str, cfg: ModelConfig | None = None):
    """Build a registered model (random or registry weights per cfg.clip / cfg.dino)."""
    from dglrsis.errors import DglrsisError

    if name not in MODELS:
        raise DglrsisError(f"unknown model {name!r}; choose from {', '.join(sorted(MODELS))}")
    return MODELS[name](cfg or ModelConfig())


def list_models() -> list[str]:
    return sorted(MODELS)


__all__ = [
    "MODELS",
    "ModelConfig",
    "CATSeg",
    "DRSeg",
    "GSNet",
    "PiSeg",
    "RSKTSeg",
    "build_model",
    "list_models",
]
