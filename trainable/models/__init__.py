"""Trainable cost-aggregation models: flat registry ``MODELS`` and ``build_model(name, cfg)``."""

from __future__ import annotations

from .catseg import CATSeg, build_catseg
from .config import (
    CONFIGS,
    DRSegConfig,
    GSNetConfig,
    ModelConfig,
    PiSegConfig,
    RSKTSegConfig,
    config_class,
    model_config,
)
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


def build_model(name: str, cfg: ModelConfig | dict | None = None, **kw):
    """Build a registered model (random or registry weights per cfg.clip / cfg.dino).

    ``cfg``: the model's typed config (``CONFIGS[name]``), a plain :class:`ModelConfig` (its fields
    are shared by all), a mapping, or None; keywords are further fields. Keys the model does not use
    and ill-typed values raise a DglrsisError naming the key."""
    from dataclasses import asdict, is_dataclass

    from dglrsis.errors import DglrsisError

    if name not in MODELS:
        raise DglrsisError(f"unknown model {name!r}; choose from {', '.join(sorted(MODELS))}")
    cls = config_class(name)
    if is_dataclass(cfg):
        if not isinstance(cfg, ModelConfig) or not issubclass(cls, type(cfg)):
            raise DglrsisError(f"model {name} takes a {cls.__name__}, not a {type(cfg).__name__}")
        cfg = asdict(cfg)
    return MODELS[name](model_config(name, cfg, **kw))


def list_models() -> list[str]:
    return sorted(MODELS)


__all__ = [
    "CONFIGS",
    "MODELS",
    "DRSegConfig",
    "GSNetConfig",
    "ModelConfig",
    "PiSegConfig",
    "RSKTSegConfig",
    "model_config",
    "CATSeg",
    "DRSeg",
    "GSNet",
    "PiSeg",
    "RSKTSeg",
    "build_model",
    "list_models",
]
