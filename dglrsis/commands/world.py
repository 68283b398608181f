"""``dglrsis world``: write a synthetic world in the real iSAID and RRSIS-D formats."""

from __future__ import annotations

from ..errors import DglrsisError

HELP = "generate synthetic top-down scenes in the real iSAID and RRSIS-D on-disk formats"


def add_arguments(parser) -> None:
    parser.add_argument("--out", required=True, help="output folder (isaid/, rrsisd/, world.json)")
    parser.add_argument("--seed", type=int, default=0, help="world seed (same seed → identical files)")
    parser.add_argument("--n", type=int, default=20, help="scenes per dataset")
    parser.add_argument("--size", type=int, default=512, help="scene side in pixels")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")


def run(args) -> int:
    from dglrsis.eval.world import generate_world

    if not 1 <= args.n <= 100_000:
        raise DglrsisError(f"--n must be between 1 and 100000, got {args.n}")
    if not 128 <= args.size <= 4096:
        raise DglrsisError(f"--size must be between 128 and 4096 pixels, got {args.size}")
    if args.seed < 0:
        raise DglrsisError("--seed must be ≥ 0")
    s = generate_world(args.out, seed=args.seed, n=args.n, size=args.size, progress=not args.quiet)
    print(
        f"wrote {args.n} iSAID + {args.n} RRSIS-D scenes ({s['refs']} refs, {s['sentences']} expressions) "
        f"to {args.out}"
    )
    return 0
