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
    a.add_argument(
        "--no-small-objects",
        action="store_true",
        help="slic/felzenszwalb: no proposals for objects smaller than a superpixel (local-contrast regions)",
    )


def add_raster_arguments(parser: argparse.ArgumentParser) -> None:
    """Band choice, stretch and nodata for reading a raster (``segment``, ``refer``)."""
    g = parser.add_argument_group("raster")
    g.add_argument(
        "--bands",
        help="bands read as R,G,B: 1-based numbers (3,2,1) or names (red,green,blue; B04,B03,B02); "
        "default: from the file's colour interpretation or band names, else 1,2,3",
    )
    g.add_argument(
        "--stretch",
        default="auto",
        help="values → 0–255, one mapping for the whole scene: auto (none for 8-bit, else percent), "
        "percent[:LO,HI] (default 2,98), minmax, scale:S (value ÷ S, e.g. scale:10000), none",
    )
    g.add_argument("--nodata", type=float, help="stored value of nodata pixels (default: the file's)")


def raster_options(args: argparse.Namespace) -> tuple:
    """(bands, stretch, nodata) from the options of :func:`add_raster_arguments`, validated."""
    from ..io import Stretch, parse_band_spec

    return parse_band_spec(args.bands), Stretch.parse(args.stretch), args.nodata


def add_tile_arguments(parser: argparse.ArgumentParser) -> None:
    """Tiling of large images (``segment``, ``eval ovss``): see :class:`dglrsis.scene.TileConfig`."""
    g = parser.add_argument_group("tiling (automatic above 4096×4096 pixels)")
    g.add_argument("--tile", type=int, help="tiles of at most N px a side (default: automatic)")
    g.add_argument("--no-tile", action="store_true", help="one pass over the whole image, whatever its size")
    g.add_argument("--overlap", type=int, default=128, help="least overlap of neighbouring tiles (px)")


def tile_config(args: argparse.Namespace):
    """:class:`dglrsis.scene.TileConfig` from the options of :func:`add_tile_arguments`, validated."""
    from ..scene import TileConfig

    if args.no_tile and args.tile is not None:
        raise DglrsisError("give --tile N or --no-tile, not both")
    if args.tile is not None and args.tile < 1:
        raise DglrsisError(f"--tile {args.tile}: a tile side ≥ 64 (--no-tile for one pass)")
    return TileConfig(tile=0 if args.no_tile else args.tile, overlap=args.overlap).check()


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
    g.add_argument(
        "--no-landcover",
        action="store_true",
        help="the land covers of --background-vocab do not compete with the noun for each mask",
    )
    g.add_argument(
        "--no-complete", action="store_true", help="do not grow the chosen mask by adjacent proposals"
    )
    g.add_argument(
        "--no-distinct",
        action="store_true",
        help="plural requests: keep small instances whose surroundings share their colour",
    )
    g.add_argument("--vocabulary", default="rrsisd", help="vocabulary for class nouns (bundled name or file)")
    g.add_argument(
        "--min-confidence",
        type=float,
        default=0.2,
        help="refer: below this noun probability of the best candidate the answer is 'not found' (exit 3)",
    )


def gvta_config(args: argparse.Namespace):
    """:class:`dglrsis.gvta.GVTAConfig` from the options of :func:`add_gvta_arguments`."""
    from ..gvta import GVTAConfig

    try:
        scales = tuple(float(s) for s in str(args.scales).split(",") if s.strip())
    except ValueError:
        raise DglrsisError(f"bad --scales {args.scales!r}: comma-separated numbers in (0, 1]") from None
    if not scales or any(not 0 < s <= 1 for s in scales):
        raise DglrsisError(f"bad --scales {args.scales!r}: comma-separated numbers in (0, 1]")
    if not 0 <= getattr(args, "min_confidence", 0.2) <= 1:
        raise DglrsisError(f"bad --min-confidence {args.min_confidence}: a probability in [0, 1]")
    return GVTAConfig(
        cam=not args.no_cam,
        scales=scales,
        global_enhance=not args.no_global,
        modifiers=not args.no_modifiers,
        mask_crops=not args.no_mask_crops,
        background="" if args.no_landcover else getattr(args, "background_vocab", DEFAULT_VOCAB),
        complete=not args.no_complete,
        distinct=0.0 if args.no_distinct else GVTAConfig.distinct,
        vocabulary=args.vocabulary,
        min_confidence=getattr(args, "min_confidence", 0.2),
    )


def predictor_config(args: argparse.Namespace):
    """:class:`dglrsis.PredictorConfig` from the options of the two functions above (GVTA when present)."""
    from ..lvta import LVTAConfig
    from ..predictor import PredictorConfig, parse_background
    from ..proposals import ProposalConfig

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
        proposal_cfg=ProposalConfig(method=args.proposals, small_objects=not args.no_small_objects),
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
