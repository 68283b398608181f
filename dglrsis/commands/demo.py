"""``dglrsis demo``: the Gradio app (free-text OVSS and RES in the browser, API endpoints segment/refer)."""

from __future__ import annotations

HELP = "launch the Gradio demo (upload an image, type classes or an expression)"


def port(text: str) -> int:
    """``--port`` value: an integer in 1–65535."""
    import argparse

    try:
        value = int(text)
    except ValueError:
        value = 0
    if not 1 <= value <= 65535:
        raise argparse.ArgumentTypeError(f"{text!r} is not a TCP port (1–65535)")
    return value


def add_arguments(parser) -> None:
    parser.add_argument(
        "--host", default="127.0.0.1", help="address to serve on (default: this machine only)"
    )
    parser.add_argument("--port", type=port, default=7860, help="TCP port, 1–65535 (default 7860)")
    parser.add_argument(
        "--clip",
        help="CLIP registry name; default ViT-B-16:openai when its weights are on this machine, else the "
        "bundled world-clip (no download is tried)",
    )
    parser.add_argument("--proposals", default="slic", choices=("slic", "felzenszwalb", "sam"))
    parser.add_argument("--sam-checkpoint", help="SAM vit_b checkpoint for --proposals sam")


def run(args) -> int:
    from ..demos.app import launch

    print(f"dglrsis demo on http://{args.host}:{args.port} (Ctrl+C to stop)", flush=True)
    launch(args.host, args.port, args.clip, args.proposals, args.sam_checkpoint, block=True)
    return 0
