"""Options shared by the model-running commands (``segment``, ``refer``, ``eval``, ``demo``).

Building the parser imports nothing heavy (no torch): the configs are built from the parsed options only
when a command runs.
"""

from __future__ import annotations

import argparse

from ..background import DEFAULT_BACKGROUND, DEFAULT_VOCAB
from ..errors import DglrsisError


def add_predictor_arguments(parser: argparse.ArgumentParser) -> None:
    """Model choice and LVTA ablations."""
    g = parser.add_argument_group("model")
    g.add_argument("--clip", default="world-clip", help="CLIP registry name (see `dglrsis models`)")
    g.add_argument("--clip-checkpoint", help="local CLIP checkpoint; --clip then names the architecture")
    g.add_argument("--proposals", default="slic", choices=("slic", "felzenszwalb", "sam"))
    g.add_argument("--sam", default="vit_b", choices=("vit_b", "vit_l", "vit_h"))
    g.add_argument("--sam-checkpoint", help="SAM checkpoint file (or 'random')")
    g.add_argument("--device", default="auto", help="torch device: auto (CUDA when present), cpu, cuda:0, …")
    g.add_argument(
        "--background",
        help=f"background policy: none | threshold:T | prompt[:P] | prompt:P+threshold:T "
        f"(default {DEFAULT_BACKGROUND}; see README)",
    )
    g.add_argument(
        "--background-vocab",
        default=DEFAULT_VOCAB,
        help="land covers the prompt policy calls background: bundled name (landcover) or a vocabulary file",
    )
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


def add_gvta_arguments(parser: argparse.ArgumentParser) -> None:
    """GVTA ablations (``refer``, ``eval res``)."""
    g = parser.add_argument_group("GVTA ablations")
    g.add_argument(
        "--scales", default="1.0,0.5", help="cross-scale CAM window sizes, e.g. 1.0 (single scale)"
    )
    g.add_argument("--no-cam", action="store_true", help="do not use Grad-CAM in mask selection")
    g.add_argument("--no-global", action="store_true", help="no global-token enhancement of the CAM text")
    g.add_argument("--no-modifiers", action="store_true", help="no modifier (global token) scoring")
    g.add_argument("--no-mask-crops", action="store_true", help="noun probability from context crops only")
    g.add_argument("--vocabulary", default="rrsisd", help="vocabulary for class nouns (bundled name or file)")


def gvta_config(args: argparse.Namespace):
    """:class:`dglrsis.gvta.GVTAConfig` from the options of :func:`add_gvta_arguments`."""
    from ..gvta import GVTAConfig

    try:
        scales = tuple(float(s) for s in str(args.scales).split(",") if s.strip())
    except ValueError:
        raise DglrsisError(f"bad --scales {args.scales!r}: comma-separated numbers in (0, 1]") from None
    if not scales or any(not 0 < s <= 1 for s in scales):
        raise DglrsisError(f"bad --scales {args.scales!r}: comma-separated numbers in (0, 1]")
    return GVTAConfig(
        cam=not args.no_cam,
        scales=scales,
        global_enhance=not args.no_global,
        modifiers=not args.no_modifiers,
        mask_crops=not args.no_mask_crops,
        vocabulary=args.vocabulary,
    )


def predictor_config(args: argparse.Namespace):
    """:class:`dglrsis.PredictorConfig` from the options of the two functions above (GVTA when present)."""
    from ..lvta import LVTAConfig
    from ..predictor import PredictorConfig, parse_background

    background = args.background or DEFAULT_BACKGROUND
    parse_background(background)
    lvta = LVTAConfig(
        context=not args.no_context,
        background=args.crop_background,
        knowledge=not args.no_knowledge,
        synonyms=not args.no_synonyms,
        templates=args.templates,
    )
    kwargs = {"gvta": gvta_config(args)} if hasattr(args, "scales") else {}
    return PredictorConfig(
        clip=args.clip,
        clip_checkpoint=args.clip_checkpoint,
        proposals=args.proposals,
        sam=args.sam,
        sam_checkpoint=args.sam_checkpoint,
        device=args.device,
        background=background,
        background_vocab=args.background_vocab,
        lvta=lvta,
        **kwargs,
    )


def predictor_from_args(args: argparse.Namespace):
    """A :class:`dglrsis.Predictor` (models load lazily, on first use)."""
    from ..predictor import Predictor

    return Predictor(predictor_config(args))
