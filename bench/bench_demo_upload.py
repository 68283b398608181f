"""Demo pixel budget: extra peak memory of one large upload over a small one, in one process.

Serves no page: calls the demo's ``segment`` and ``refer`` handlers directly (world-clip, SLIC) on a
384² world image, then on the same scene upscaled to ``--side``² and saved as JPEG. Uploads above the
1,048,576-pixel budget are downscaled before any model work, so the extra peak resident memory stays a
few hundred MB (before the budget a 2048² JPEG took about 6 GB). Prints one JSON object on its last line.

Usage: python bench/bench_demo_upload.py [--side 2048]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import tempfile
import time
from pathlib import Path

from PIL import Image


def peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--side", type=int, default=2048)
    args = ap.parse_args()
    from dglrsis.demos.app import Demo, DemoModels, world_examples

    with tempfile.TemporaryDirectory(prefix="bench-upload-") as tmp:
        small = world_examples(str(Path(tmp) / "world"), 1)[0]
        big = Path(tmp) / "big.jpg"
        Image.open(small).convert("RGB").resize((args.side, args.side)).save(big, quality=90)
        demo = Demo(DemoModels("world-clip"))

        class Request:
            session_hash = "bench"

        demo.segment(small, "ship, harbor", request=Request)
        demo.refer(small, "the storage tank on the left", request=Request)
        before = peak_mb()
        t = time.perf_counter()
        out = demo.segment(str(big), "ship, harbor, storage tank", request=Request)
        segment_s = time.perf_counter() - t
        t = time.perf_counter()
        demo.refer(str(big), "the storage tank on the left", request=Request)
        refer_s = time.perf_counter() - t
        after = peak_mb()
        demo.files.close()
        result = {
            "upload_side": args.side,
            "upload_bytes": os.path.getsize(big),
            "downscaled": "downscaled to 1024×1024" in out[5],
            "peak_before_mb": round(before),
            "peak_after_mb": round(after),
            "extra_peak_mb": round(after - before),
            "segment_s": round(segment_s, 1),
            "refer_s": round(refer_s, 1),
        }
    print(json.dumps(result))


if __name__ == "__main__":
    main()
