"""The predictor: ``set_image`` once, then ask many ``segment(classes)`` and ``refer(expression)`` queries.

``set_image`` runs GLD's image side (class-agnostic mask proposals) and LVTA's context-aware crop
encoding once and caches both; ``segment`` only embeds the class prompts (cached per vocabulary) and
classifies the cached crop embeddings; ``refer`` adds GVTA's Grad-CAM and mask selection on the same
cached state. Numpy in, numpy out.

Example::

    from dglrsis import Predictor, PredictorConfig
    pred = Predictor(PredictorConfig(clip="world-clip", proposals="slic"))
    pred.set_image(image)                       # H×W×3 uint8
    seg = pred.segment(["ship", "storage tank"])  # seg.labels: H×W int32, -1 = background
    ref = pred.refer("the large ship on the left")  # ref.mask: H×W bool
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

import numpy as np
import torch

from .background import DEFAULT_BACKGROUND, DEFAULT_VOCAB, decide, load_background_vocab, parse_background
from .errors import DglrsisError
from .gvta import GVTAConfig, ReferResult, refer
from .lvta import LVTAConfig, assign_pixels
from .proposals import ProposalConfig
from .state import ImageState, Models, build_state


@dataclass
class PredictorConfig:
    clip: str = "world-clip"  # CLIP registry name (dglrsis models), e.g. ViT-B-16:openai
    clip_checkpoint: str | None = None  # local CLIP checkpoint file (then `clip` names the architecture)
    proposals: str = "slic"  # mask proposals: slic | felzenszwalb | sam
    sam: str = "vit_b"  # SAM architecture when proposals == "sam"
    sam_checkpoint: str | None = None  # SAM checkpoint path ("random" for random weights)
    device: str = "auto"  # torch device for CLIP/SAM; auto: CUDA when available, else CPU
    background: str = DEFAULT_BACKGROUND  # none | threshold:T | prompt[:P] | prompt:P+threshold:T
    background_vocab: str = DEFAULT_VOCAB  # background land covers: bundled name or vocabulary file
    lvta: LVTAConfig = field(default_factory=LVTAConfig)  # crop/prompt settings and ablations
    proposal_cfg: ProposalConfig | None = None  # full proposal settings (None: defaults for `proposals`)
    gvta: GVTAConfig = field(default_factory=GVTAConfig)  # refer() settings and ablations


@dataclass
class SegmentResult:
    labels: np.ndarray  # H×W int32: k = class_names[k], -1 = background / not covered
    class_names: list[str]  # the query's classes, in order
    probs: np.ndarray  # N×K mask-classification probabilities (N proposals)
    mask_labels: np.ndarray  # N int: class per proposal (-1 = background)
    boxes: np.ndarray  # N×4 XYXY proposal boxes
    areas: np.ndarray  # N proposal areas (pixels)
    valid: np.ndarray | None = None  # H×W bool, False = nodata / masked (labels -1 there); None = all valid

    def mask_scores(self) -> list[dict]:
        """One JSON-able row per proposal: index, class, probability, area, box."""
        rows = []
        for i, lab in enumerate(self.mask_labels):
            rows.append(
                {
                    "mask": i,
                    "class": self.class_names[lab] if lab >= 0 else "background",
                    "score": round(float(self.probs[i].max()), 4) if self.probs.size else 0.0,
                    "area": int(self.areas[i]),
                    "box": [round(float(v), 1) for v in self.boxes[i]],
                }
            )
        return rows


def normalise_classes(classes) -> list[str]:
    """Canonical class names from a list or a comma-separated string (validation: ``vocab.parse_classes``)."""
    from .vocab import parse_classes

    text = classes if isinstance(classes, str) else ",".join(str(c) for c in classes)
    return list(parse_classes(text).names)


class Predictor:
    """DGL-RSIS predictor: models loaded once, one cached :class:`~dglrsis.state.ImageState` per image."""

    def __init__(self, cfg: PredictorConfig | None = None, clip=None, sam=None):
        self.cfg = cfg or PredictorConfig()
        parse_background(self.cfg.background)
        self.background_vocab = load_background_vocab(self.cfg.background_vocab)
        self._clip, self._sam, self._models = clip, sam, None
        self.state: ImageState | None = None

    # -- models (loaded lazily, once) --------------------------------------------------------------
    @property
    def device(self) -> str:
        if self.cfg.device != "auto":
            return self.cfg.device
        return "cuda" if torch.cuda.is_available() else "cpu"

    @property
    def models(self) -> Models:
        """CLIP (+ its prompt cache) and SAM, loaded on first use."""
        if self._models is None:
            from .models import load_clip, load_sam

            clip = self._clip or load_clip(
                self.cfg.clip, checkpoint=self.cfg.clip_checkpoint, device=self.device
            )
            sam = self._sam
            if sam is None and self.proposal_config.method == "sam":
                sam = load_sam(self.cfg.sam, checkpoint=self.cfg.sam_checkpoint, device=self.device)
            self._models = Models.from_clip(clip, sam)
        return self._models

    @property
    def proposal_config(self) -> ProposalConfig:
        return self.cfg.proposal_cfg or ProposalConfig(method=self.cfg.proposals)

    # -- image state --------------------------------------------------------------------------------
    def set_image(self, image: np.ndarray, valid: np.ndarray | None = None) -> Predictor:
        """Compute and cache proposals and crop embeddings for ``image`` (H×W×3 uint8, not modified).
        ``valid`` (H×W bool): pixels outside it (nodata, masked) are never classified."""
        self.state = build_state(image, self.models, self.proposal_config, self.cfg.lvta, valid)
        return self

    def set_raster(self, source, tiles=None, bands=None, stretch="auto", nodata=None, progress=False):
        """Like :meth:`set_image` for a raster file or an open :class:`dglrsis.io.RasterReader` of any size:
        tiled above a size (``tiles``: :class:`dglrsis.scene.TileConfig`), band choice, whole-scene stretch
        and nodata from the file (see :mod:`dglrsis.scene`). ``refer`` needs a one-pass state."""
        from .io import open_raster
        from .scene import build_scene_state

        args = (self.models, self.proposal_config, self.cfg.lvta, tiles, progress)
        if hasattr(source, "read_window"):
            self.state = build_scene_state(source, *args)
        else:
            with open_raster(source, bands, stretch, nodata) as reader:
                self.state = build_scene_state(reader, *args)
        return self

    def _require_state(self) -> ImageState:
        if self.state is None:
            raise DglrsisError("call set_image() before segment() or refer()")
        return self.state

    # -- OVSS ----------------------------------------------------------------------------------------
    def segment(self, classes, background: str | None = None) -> SegmentResult:
        """Open-vocabulary semantic segmentation of the cached image.

        classes: list of class names or a comma-separated string. background: overrides the config's
        policy (:mod:`dglrsis.background`): ``none`` (every pixel gets a class; uncovered pixels take the
        nearest label), ``threshold:T`` (proposals whose top class probability < T are background),
        ``prompt[:P]`` (proposals whose masked crop the background land covers win with probability > P
        are background), ``prompt:P+threshold:T`` (either; the default).
        """
        state = self._require_state()
        names = normalise_classes(classes)
        policy = parse_background(background or self.cfg.background)
        props = state.proposals
        probs, lab, conf = decide(state, self.models, names, policy, self.background_vocab)
        labels = assign_pixels(props, lab, conf, fill_uncovered=policy.none)
        if state.valid is not None:
            labels[~state.valid] = -1
        return SegmentResult(
            labels=labels,
            class_names=names,
            probs=probs.numpy(),
            mask_labels=lab,
            boxes=np.asarray(props.boxes),
            areas=np.asarray(props.areas),
            valid=state.valid,
        )

    # -- RES -----------------------------------------------------------------------------------------
    def refer(self, expression: str, classes=None) -> ReferResult:
        """Referring expression segmentation on the cached image; see :mod:`dglrsis.gvta`."""
        state = self._require_state()
        if state.image is None:
            raise DglrsisError("refer needs the whole image in one pass: this scene was set in tiles")
        return refer(state, self.models, expression, self.cfg.gvta, classes)

    def settings(self) -> dict:
        """JSON-able description of the model and every ablation switch."""
        out = {
            "clip": self.cfg.clip,
            "clip_checkpoint": self.cfg.clip_checkpoint,
            "proposals": asdict(self.proposal_config),
            "background": self.cfg.background,
            "background_vocab": self.cfg.background_vocab,
            "lvta": asdict(self.cfg.lvta),
            "gvta": asdict(self.cfg.gvta),
        }
        if self.proposal_config.method == "sam":
            out["sam"] = {"arch": self.cfg.sam, "checkpoint": self.cfg.sam_checkpoint}
        return out
