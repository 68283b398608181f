"""Aggregation + decoder time of CAT-Seg ÷ RSKT-Seg at ViT-B sizes (24×24 cost grid, 15 classes, random
weights, each at its public default: CAT-Seg 2 Swin + linear-attention layers, RSKT-Seg 3 RS-Fusion layers;
backbone features precomputed and excluded), and the time of each stage (cost embedding — for RSKT-Seg the
four rotation costs and the DINO cost fusion —, aggregation layers, decoder — for RSKT-Seg with the
RemoteCLIP and DINO guidance of RS-Transfer). CAT-Seg's class aggregation runs on 256 tokens (public
pad_len: 15 classes + 241 padding tokens). Last line: one JSON object."""

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
    from dglrsis.trainable.models import ModelConfig, RSKTSegConfig
    from dglrsis.trainable.models.catseg import Aggregator
    from dglrsis.trainable.models.gsnet import QGFF
    from dglrsis.trainable.models.rsktseg import RSTransfer, rs_fusion_layers

    dev = "cuda" if torch.cuda.is_available() else "cpu"
    ccfg, cfg, k, h, e, p, w, d = ModelConfig(), RSKTSegConfig(), a.classes, 24, 512, 1, 768, 768
    cat = Aggregator(ccfg, e, h).to(dev).eval()
    rst = RSTransfer(cfg, w, d).to(dev).eval()
    rsk = Aggregator(cfg, e, h, 4 * p, rs_fusion_layers(cfg), extra_widths=rst.widths).to(dev).eval()
    qgff = QGFF(p, cfg.hidden, e, d, 2).to(dev).eval()
    r = lambda *s: torch.randn(*s, device=dev)  # noqa: E731
    img, text, text4 = r(1, e, h, h), r(1, k, e), r(1, k, p, e)
    guid = [r(1, 256, 2 * h, 2 * h), r(1, 128, 4 * h, 4 * h)]
    rclip_inter, dino_inter = [r(1, w, h, h)] * 2, [r(1, d, 2 * h, 2 * h)] * 2
    cost, cost4, dino = r(1, p, k, h, h), r(1, 4 * p, k, h, h), r(1, d, 2 * h, 2 * h)

    def rskt_decode(x):
        return rsk.decode(x, guid, rst(rclip_inter, dino_inter))

    def run_rskt():
        return rskt_decode(rsk.aggregate(qgff(rsk.conv1, cost4, dino, text4), img, text))

    t_cat = _time(lambda: cat(cost, img, text, guid), a.reps)
    t_rsk = _time(run_rskt, a.reps)
    with torch.no_grad():  # inputs of the later stages, to time each stage alone
        xc = cat.embed_cost(cost)
        yc = cat.aggregate(xc, img, text)
        xr = qgff(rsk.conv1, cost4, dino, text4)
        yr = rsk.aggregate(xr, img, text)
    stages = {
        "catseg": {
            "embed_ms": _time(lambda: cat.embed_cost(cost), a.reps),
            "aggregate_ms": _time(lambda: cat.aggregate(xc, img, text), a.reps),
            "decode_ms": _time(lambda: cat.decode(yc, guid), a.reps),
        },
        "rsktseg": {
            "embed_and_dino_fusion_ms": _time(lambda: qgff(rsk.conv1, cost4, dino, text4), a.reps),
            "aggregate_ms": _time(lambda: rsk.aggregate(xr, img, text), a.reps),
            "decode_ms": _time(lambda: rskt_decode(yr), a.reps),
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
