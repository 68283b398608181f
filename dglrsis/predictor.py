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

import argparse
from dataclasses import asdict, dataclass, field, replace

import numpy as np
import torch

from .errors import DglrsisError
from .lvta import LVTAConfig, TextBank, assign_pixels, classify, context_crops, encode_crops, logit_scale
from .proposals import ProposalConfig, generate_proposals

BACKGROUND_PROMPTS = ["background", "bare ground", "land", "grass", "road", "water"]


@dataclass
class PredictorConfig:
    clip: str = "world-clip"  # CLIP registry name (dglrsis models), e.g. ViT-B-16:openai
    clip_checkpoint: str | None = None  # local CLIP checkpoint file (then `clip` names the architecture)
    proposals: str = "slic"  # mask proposals: slic | felzenszwalb | sam
    sam: str = "vit_b"  # SAM architecture when proposals == "sam"
    sam_checkpoint: str | None = None  # SAM checkpoint path ("random" for random weights)
    device: str = "cpu"  # torch device for CLIP/SAM
    background: str = "none"  # none | threshold:T | prompt  (how background is predicted)
    lvta: LVTAConfig = field(default_factory=LVTAConfig)  # crop/prompt settings and ablations
    proposal_cfg: ProposalConfig | None = None  # full proposal settings (None: defaults for `proposals`)
    gvta: object | None = None  # GVTAConfig for refer(); None: defaults


@dataclass
class SegmentResult:
    labels: np.ndarray  # H×W int32: k = class_names[k], -1 = background / not covered
    class_names: list[str]  # the query's classes, in order
    probs: np.ndarray  # N×K mask-classification probabilities (N proposals)
    mask_labels: np.ndarray  # N int: class per proposal (-1 = background)
    boxes: np.ndarray  # N×4 XYXY proposal boxes
    areas: np.ndarray  # N proposal areas (pixels)

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


def parse_background(policy: str) -> tuple[str, float]:
    """``none`` | ``threshold:T`` (0<T<1) | ``prompt`` → (kind, threshold)."""
    kind, _, value = policy.partition(":")
    if kind == "none" and not value:
        return "none", 0.0
    if kind == "prompt" and not value:
        return "prompt", 0.0
    if kind == "threshold":
        try:
            t = float(value)
        except ValueError:
            t = -1.0
        if 0.0 < t < 1.0:
            return "threshold", t
    raise DglrsisError(f"bad background policy {policy!r}: use none, threshold:T with 0<T<1, or prompt")


def normalise_classes(classes) -> list[str]:
    """Canonical class names from a list or a comma-separated string (validation: ``vocab.parse_classes``)."""
    from .vocab import parse_classes

    text = classes if isinstance(classes, str) else ",".join(str(c) for c in classes)
    return list(parse_classes(text).names)


class Predictor:
    """DGL-RSIS predictor with a cached image state (see module docstring)."""

    def __init__(self, cfg: PredictorConfig | None = None, clip=None, sam=None):
        self.cfg = cfg or PredictorConfig()
        parse_background(self.cfg.background)
        self._clip = clip
        self._sam = sam
        self._text = None
        self.image: np.ndarray | None = None
        self.proposals = None
        self.crop_emb: torch.Tensor | None = None
        self._masked_emb: torch.Tensor | None = None

    # -- models (loaded lazily, once) --------------------------------------------------------------
    @property
    def clip(self):
        if self._clip is None:
            from .models import load_clip

            self._clip = load_clip(self.cfg.clip, checkpoint=self.cfg.clip_checkpoint, device=self.cfg.device)
        return self._clip

    @property
    def text_bank(self) -> TextBank:
        if self._text is None:
            self._text = TextBank(self.clip)
        return self._text

    def _proposal_cfg(self) -> ProposalConfig:
        return self.cfg.proposal_cfg or ProposalConfig(method=self.cfg.proposals)

    def _sam_model(self):
        if self._sam is None and self._proposal_cfg().method == "sam":
            from .models import load_sam

            self._sam = load_sam(self.cfg.sam, checkpoint=self.cfg.sam_checkpoint, device=self.cfg.device)
        return self._sam

    # -- image state --------------------------------------------------------------------------------
    def set_image(self, image: np.ndarray) -> Predictor:
        """Compute and cache proposals and crop embeddings for ``image`` (H×W×3 uint8, not modified)."""
        image = np.asarray(image)
        if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
            raise DglrsisError(f"expected an H×W×3 uint8 image, got shape {image.shape} dtype {image.dtype}")
        if min(image.shape[:2]) < 2:
            raise DglrsisError(f"image of {image.shape[1]}×{image.shape[0]} pixels is too small to segment")
        props = generate_proposals(image, self._proposal_cfg(), sam=self._sam_model())
        crop_emb = self._embed_crops(image, props, self.cfg.lvta)
        self.image, self.proposals, self.crop_emb = image, props, crop_emb
        self._masked_emb = None
        self._cam_cache: dict = {}
        return self

    def _require_image(self) -> None:
        if self.image is None:
            raise DglrsisError("call set_image() before segment() or refer()")

    # -- OVSS ----------------------------------------------------------------------------------------
    def classify_masks(self, class_names: list[str], masked: bool = False) -> torch.Tensor:
        """``N×K`` probabilities of every cached proposal over ``class_names`` (no background).

        ``masked``: classify crops with everything outside the proposal blanked instead of the configured
        background treatment (encoded on first use, cached with the image; GVTA's mask selection).
        """
        self._require_image()
        text, owner = self.text_bank.embed(class_names, self.cfg.lvta)
        return classify(
            self._masked_embeddings() if masked else self.crop_emb, text, logit_scale(self.clip), owner
        )

    def _masked_embeddings(self) -> torch.Tensor:
        if self.cfg.lvta.background == "mask":
            return self.crop_emb
        if self._masked_emb is None:
            self._masked_emb = self._embed_crops(
                self.image, self.proposals, replace(self.cfg.lvta, background="mask")
            )
        return self._masked_emb

    def _embed_crops(self, image: np.ndarray, props, lvta: LVTAConfig) -> torch.Tensor:
        """``N×D`` CLIP embeddings of the context crops (made with ``lvta``) of ``props`` on ``image``."""
        clip = self.clip
        crops = context_crops(image, props.masks, props.boxes, clip.image_size, clip.mean, clip.std, lvta)
        return encode_crops(clip, crops, lvta.batch_size)

    def segment(self, classes, background: str | None = None) -> SegmentResult:
        """Open-vocabulary semantic segmentation of the cached image.

        classes: list of class names or a comma-separated string. background: overrides the config's
        policy — ``none`` (every covered pixel gets a class; uncovered pixels take the nearest label),
        ``threshold:T`` (proposals whose top probability < T are background), ``prompt`` (a background
        pseudo-class with generic prompts competes; proposals it wins are background).
        """
        self._require_image()
        names = normalise_classes(classes)
        kind, thr = parse_background(background or self.cfg.background)
        props = self.proposals
        if kind == "prompt":
            probs = self._classify_with_background(names)
        else:
            probs = self.classify_masks(names)
        conf, lab = probs.max(dim=1) if len(probs) else (torch.zeros(0), torch.zeros(0, dtype=torch.long))
        lab = lab.numpy().astype(np.int64)
        if kind == "threshold":
            lab[conf.numpy() < thr] = -1
        if kind == "prompt":
            lab[lab == len(names)] = -1
            probs = probs[:, : len(names)]
        labels = assign_pixels(props.masks, lab, conf.numpy(), fill_uncovered=kind == "none")
        return SegmentResult(
            labels=labels,
            class_names=names,
            probs=probs.numpy(),
            mask_labels=lab,
            boxes=np.asarray(props.boxes),
            areas=np.asarray(props.areas),
        )

    def _classify_with_background(self, names: list[str]) -> torch.Tensor:
        """Probabilities over names + one background class embedded from generic prompts."""
        text, owner = self.text_bank.embed(names, self.cfg.lvta)
        bg, _ = self.text_bank.embed(
            BACKGROUND_PROMPTS, LVTAConfig(knowledge=False, synonyms=False, templates=self.cfg.lvta.templates)
        )
        owner = torch.cat([owner, torch.full((len(bg),), len(names))])  # every background prompt competes
        return classify(self.crop_emb, torch.cat([text, bg]), logit_scale(self.clip), owner)

    # -- RES -----------------------------------------------------------------------------------------
    def refer(self, expression: str, classes=None):
        """Referring expression segmentation on the cached image; see :mod:`dglrsis.gvta`."""
        self._require_image()
        from .gvta import refer

        return refer(self, expression, classes)

    def settings(self) -> dict:
        """JSON-able description of the model and every ablation switch."""
        out = {
            "clip": self.cfg.clip,
            "clip_checkpoint": self.cfg.clip_checkpoint,
            "proposals": asdict(self._proposal_cfg()),
            "background": self.cfg.background,
            "lvta": asdict(self.cfg.lvta),
        }
        if self._proposal_cfg().method == "sam":
            out["sam"] = {"arch": self.cfg.sam, "checkpoint": self.cfg.sam_checkpoint}
        if self.cfg.gvta is not None:
            out["gvta"] = asdict(self.cfg.gvta)
        return out


# --------------------------------------------------------------------------------------------- CLI glue
def add_predictor_arguments(parser: argparse.ArgumentParser) -> None:
    """Options shared by ``segment``, ``refer``, ``eval`` and ``demo``."""
    g = parser.add_argument_group("model")
    g.add_argument("--clip", default="world-clip", help="CLIP registry name (see `dglrsis models`)")
    g.add_argument("--clip-checkpoint", help="local CLIP checkpoint; --clip then names the architecture")
    g.add_argument("--proposals", default="slic", choices=("slic", "felzenszwalb", "sam"))
    g.add_argument("--sam", default="vit_b", choices=("vit_b", "vit_l", "vit_h"))
    g.add_argument("--sam-checkpoint", help="SAM checkpoint file (or 'random')")
    g.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    g.add_argument("--background", default="none", help="none | threshold:T | prompt")
    a = parser.add_argument_group("ablations")
    a.add_argument("--no-context", action="store_true", help="LVTA: tight mask box, no context enlargement")
    a.add_argument(
        "--crop-background",
        default="blur",
        choices=("keep", "blur", "mean", "mask"),
        help="LVTA: treatment of pixels outside the mask in each crop",
    )
    a.add_argument("--no-knowledge", action="store_true", help="LVTA: prompts without RS knowledge")
    a.add_argument("--no-synonyms", action="store_true", help="LVTA: canonical class names only")
    a.add_argument("--templates", default="rs", help="prompt templates: rs | imagenet80 | simple | FILE")


def predictor_from_args(args: argparse.Namespace) -> Predictor:
    """Build a :class:`Predictor` from the options of :func:`add_predictor_arguments`."""
    lvta = LVTAConfig(
        context=not args.no_context,
        background=args.crop_background,
        knowledge=not args.no_knowledge,
        synonyms=not args.no_synonyms,
        templates=args.templates,
    )
    gvta = None
    if hasattr(args, "scales"):
        from .gvta import gvta_config_from_args

        gvta = gvta_config_from_args(args)
    cfg = PredictorConfig(
        clip=args.clip,
        clip_checkpoint=args.clip_checkpoint,
        proposals=args.proposals,
        sam=args.sam,
        sam_checkpoint=args.sam_checkpoint,
        device=args.device,
        background=args.background,
        lvta=lvta,
        gvta=gvta,
    )
    return Predictor(cfg)
