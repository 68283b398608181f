"""dglrsis — training-free text-driven segmentation of remote-sensing images (DGL-RSIS).

Public API::

    from dglrsis import Predictor, PredictorConfig, read_image, load_clip, DglrsisError
"""

from .errors import DglrsisError

__version__ = "0.1.0"
__all__ = [
    "DglrsisError",
    "Predictor",
    "PredictorConfig",
    "SegmentResult",
    "read_image",
    "load_clip",
    "load_sam",
    "load_dino",
    "decompose",
    "write_label",
    "write_rgb_png",
    "overlay",
    "heatmap",
    "default_palette",
    "__version__",
]


def __getattr__(name):  # lazy: `import dglrsis` stays cheap (no torch) until a model is needed
    if name in ("Predictor", "PredictorConfig", "SegmentResult"):
        from . import predictor

        return getattr(predictor, name)
    if name in ("load_clip", "load_sam", "load_dino"):
        from . import models

        return getattr(models, name)
    if name in ("read_image", "write_label", "write_rgb_png", "overlay", "heatmap", "default_palette"):
        from . import io

        return getattr(io, name)
    if name == "decompose":
        from .text import decompose

        return decompose
    raise AttributeError(f"module 'dglrsis' has no attribute {name!r}")
