"""The synthetic world: procedurally generated top-down scenes in the real iSAID and RRSIS-D formats.

``iter_scenes(seed, n, size, kind)`` renders scenes in memory; ``generate_world(out, seed, n, size)``
writes ``out/isaid/`` (raw devkit form: RGB images + RGB colour labels with the exact iSAID palette) and
``out/rrsisd/`` (``refs(unc).p``, ``instances.json`` with ``categories_id``, x1y1x2y2 boxes and RLE masks)
+ ``out/images/rrsisd/JPEGImages/NNNNN.jpg`` (RMSIN's tree: ``out`` is its data root). Scene ``i``
depends only on ``(seed, i)``; the same seed gives
byte-identical files. Referring expressions are built from a structured spec and kept only when the
:func:`resolve` check says they identify exactly one instance.
"""

from .draw import LANDCOVER
from .expressions import expressions_for, resolve, spec_text
from .scenes import (
    GENERATOR_VERSION,
    ISAID_CLASSES,
    READABLE,
    RRSISD_AS_ISAID,
    RRSISD_CATEGORIES,
    SCENE_CLASSES,
    Instance,
    Scene,
    iter_scenes,
    render_scene,
    scene_rng,
)
from .writers import convert_isaid_to_index, generate_world

__all__ = [
    "GENERATOR_VERSION",
    "ISAID_CLASSES",
    "LANDCOVER",
    "READABLE",
    "RRSISD_AS_ISAID",
    "RRSISD_CATEGORIES",
    "SCENE_CLASSES",
    "Instance",
    "Scene",
    "convert_isaid_to_index",
    "expressions_for",
    "generate_world",
    "iter_scenes",
    "render_scene",
    "resolve",
    "scene_rng",
    "spec_text",
]
