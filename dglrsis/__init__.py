"""dglrsis — training-free text-driven segmentation of remote-sensing images (DGL-RSIS).

Public API (everything else is internal and may change)::

    from dglrsis import Predictor, PredictorConfig            # set_image once, segment()/refer() many times
    from dglrsis import ProposalConfig, LVTAConfig, GVTAConfig  # every stage's settings and ablations
    from dglrsis import SegmentResult, ReferResult             # what segment() and refer() return
    from dglrsis import read_image, write_label, load_clip, load_sam, load_dino, decompose, DglrsisError
"""

from .errors import DglrsisError

__version__ = "0.1.0"
_LAZY = {  # name -> module: `import dglrsis` stays cheap (no torch) until a model is needed
    "Predictor": "predictor",
    "PredictorConfig": "predictor",
    "SegmentResult": "predictor",
    "ReferResult": "gvta",
    "GVTAConfig": "gvta",
    "LVTAConfig": "lvta",
    "ProposalConfig": "proposals",
    "load_clip": "models",
    "load_sam": "models",
    "load_dino": "models",
    "read_image": "io",
    "write_label": "io",
    "write_rgb_png": "io",
    "overlay": "io",
    "heatmap": "io",
    "default_palette": "io",
    "decompose": "text",
}
__all__ = ["DglrsisError", "__version__", *_LAZY]


def __getattr__(name):
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(f".{_LAZY[name]}", __name__), name)
    raise AttributeError(f"module 'dglrsis' has no attribute {name!r}")
