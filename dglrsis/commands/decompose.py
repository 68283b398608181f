"""``dglrsis decompose "TEXT"``: the GLD text split (local class nouns + typed global tokens) as JSON."""

from __future__ import annotations

import json

HELP = "split a referring expression into local class nouns and global context tokens (JSON)"


def add_arguments(parser) -> None:
    parser.add_argument("text", help="the referring expression, e.g. 'the white ship next to the harbor'")
    group = parser.add_mutually_exclusive_group()
    group.add_argument(
        "--vocabulary",
        default=None,
        help="bundled vocabulary (isaid, rrsisd, dlrsd, potsdam, vaihingen, loveda, uavid, "
        "udd5, vdd) or a vocabulary file; class nouns are mapped onto its names",
    )
    group.add_argument(
        "--classes-file", default=None, help="a class file: one class per line, synonyms comma-separated"
    )
    group.add_argument(
        "--classes", default=None, help="comma-separated class names, synonyms joined with '|'"
    )


def run(args) -> int:
    from ..text import decompose
    from ..vocab import load_vocabulary, parse_classes

    vocab = None
    if args.classes is not None:
        vocab = parse_classes(args.classes)
    elif args.classes_file or args.vocabulary:
        vocab = load_vocabulary(args.classes_file or args.vocabulary)
    dec = decompose(args.text, vocab)
    print(json.dumps(dec.to_json(), ensure_ascii=False))
    return 0
