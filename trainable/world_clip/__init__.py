"""world-clip: the trainer of the small CLIP bundled with dglrsis (``dglrsis/weights/world-clip.*``).

Not a paper model: a 4-layer open_clip CLIP trained on the synthetic world (:mod:`dglrsis.eval.world`) so
that the training-free pipeline can be tested for quality without downloading web-scale weights.

``python -m dglrsis.trainable.world_clip --threads 2 --out DIR`` regenerates it (:mod:`.trainer`); the data
pool, captions and augmentation live in :mod:`.data`, the dense region–text loss in :mod:`.dense` and the
Grad-CAM alignment loss in :mod:`.cam`.
"""

from .trainer import ARCH, WORLD_SEED_OFFSET, WorldClipConfig, main, multi_positive_loss, train

__all__ = ["ARCH", "WORLD_SEED_OFFSET", "WorldClipConfig", "main", "multi_positive_loss", "train"]
