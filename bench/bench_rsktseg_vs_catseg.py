"""Aggregation + decoder time of CAT-Seg ÷ RSKT-Seg at ViT-B sizes (24×24 cost grid, 15 classes, random
weights, backbone features precomputed and excluded), and the time of each stage (cost embedding, aggregation
layers, decoder). CAT-Seg's class aggregation runs on 256 tokens (public pad_len: 15 classes + 241 padding
tokens). Last line: one JSON object."""

from __future__ import annotations

import argparse
import json
import time

import torch


def _time(fn, reps: int) -> float:
    with torch.no_grad():
        fn()
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        t = time.perf_counter()
        for _ in range(reps):
            fn()
        if torch.cuda.is_available():
            torch.cuda.synchronize()
    return (time.perf_counter() - t) / reps * 1000


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--reps", type=int, default=5, help="timed repetitions")
    ap.add_argument("--classes", type=int, default=15, help="number of classes K")
    a = ap.parse_args(argv)
    from dglrsis.trainable.models import RSKTSegConfig
    from dglrsis.trainable.models.catseg import Aggregator
    from dglrsis.trainable.models.rsktseg import RSCMA, rskt_aggregator

    dev = "cuda" if torch.cuda.is_available() else "cpu"
    cfg, k, h, e, p = RSKTSegConfig(), a.classes, 24, 512, 1
    cat = Aggregator(cfg, e, h).to(dev).eval()
    rsk = rskt_aggregator(cfg, e, h, 768, 48).to(dev).eval()
    cma = RSCMA(p, cfg.hidden, e, 768, rotations=True, dino_cost=True).to(dev).eval()
    r = lambda *s: torch.randn(*s, device=dev)  # noqa: E731
    img, text = r(1, e, h, h), r(1, k, e)
    guid = [r(1, 256, 2 * h, 2 * h), r(1, 128, 4 * h, 4 * h)]
    rguid = [r(1, 256 + 96 + 256, 2 * h, 2 * h), r(1, 128 + 48 + 128, 4 * h, 4 * h)]
    cost, cost4, dcost, dino = r(1, p, k, h, h), r(1, 4 * p, k, h, h), r(1, p, k, 48, 48), r(1, 768, 48, 48)

    def run_rskt():
        x = cma.fuse(rsk.embed_cost(cost4), dcost)
        return rsk.decode(rsk.aggregate(x, img, text, dino), rguid)

    t_cat = _time(lambda: cat(cost, img, text, guid), a.reps)
    t_rsk = _time(run_rskt, a.reps)
    with torch.no_grad():  # inputs of the later stages, to time each stage alone
        xc = cat.embed_cost(cost)
        yc = cat.aggregate(xc, img, text)
        xr = cma.fuse(rsk.embed_cost(cost4), dcost)
        yr = rsk.aggregate(xr, img, text, dino)
    stages = {
        "catseg": {
            "embed_ms": _time(lambda: cat.embed_cost(cost), a.reps),
            "aggregate_ms": _time(lambda: cat.aggregate(xc, img, text), a.reps),
            "decode_ms": _time(lambda: cat.decode(yc, guid), a.reps),
        },
        "rsktseg": {
            "embed_and_dino_fusion_ms": _time(lambda: cma.fuse(rsk.embed_cost(cost4), dcost), a.reps),
            "aggregate_ms": _time(lambda: rsk.aggregate(xr, img, text, dino), a.reps),
            "decode_ms": _time(lambda: rsk.decode(yr, rguid), a.reps),
        },
    }
    print(f"CAT-Seg {t_cat:.1f} ms, RSKT-Seg {t_rsk:.1f} ms on {dev}")
    for m, st in stages.items():
        print(f"  {m}: " + ", ".join(f"{k} {v:.1f}" for k, v in st.items()))
    print(
        json.dumps(
            {
                "catseg_ms": t_cat,
                "rsktseg_ms": t_rsk,
                "rsktseg_vs_catseg_speedup": t_cat / t_rsk,
                "stages": stages,
                "device": dev,
                "classes": k,
            }
        )
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
