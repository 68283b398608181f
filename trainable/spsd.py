"""DR-Seg SPSD: offline CLIP channel ranking by class-response entropy and inter-class prototype similarity.

    python -m trainable.spsd FEATURES.safetensors OUT.json [--alpha 0.5] [--protos 8]

FEATURES holds ``features`` (N×E float, L2-normalised CLIP pixel features sampled inside ground-truth
regions) and ``labels`` (N int, class index per feature). OUT.json: {"order": [E channel ids, most
semantic first], "entropy": [...], "similarity": [...]}."""
from __future__ import annotations

import argparse

import torch


def _norm_rank(v: torch.Tensor) -> torch.Tensor:
    """Rank of each entry (0 = smallest) scaled to [0, 1]."""
    r = torch.empty_like(v)
    r[v.argsort()] = torch.arange(len(v), dtype=v.dtype)
    return r / max(len(v) - 1, 1)


def spsd_ranking(features: torch.Tensor, labels: torch.Tensor, alpha: float = 0.5, protos: int = 8,
                 seed: int = 0) -> dict:
    """features N×E, labels N → {"order", "entropy", "similarity"} (lists). Low entropy of the mean ReLU
    response over classes and low inter-class prototype response similarity → semantic channel."""
    g = torch.Generator().manual_seed(seed)
    classes = labels.unique()
    act = torch.stack([features[labels == c].relu().mean(0) for c in classes])  # C×E
    p = act / act.sum(0, keepdim=True).clamp_min(1e-12)
    entropy = -(p * p.clamp_min(1e-12).log()).sum(0)  # E
    proto, plab = [], []
    for c in classes:
        f = features[labels == c]
        for chunk in torch.randperm(len(f), generator=g).chunk(min(protos, len(f))):
            proto.append(f[chunk].mean(0))
            plab.append(int(c))
    proto, plab = torch.stack(proto), torch.tensor(plab)  # M×E, M
    diff = plab[:, None] != plab[None, :]
    r = proto  # scalar response of each channel per prototype
    sim = 1 - (r[:, None, :] - r[None, :, :]).abs() / (r[:, None, :].abs() + r[None, :, :].abs() + 1e-6)
    similarity = (sim * diff[..., None]).sum((0, 1)) / diff.sum().clamp_min(1)  # E
    score = alpha * (1 - _norm_rank(entropy)) + (1 - alpha) * (1 - _norm_rank(similarity))
    return {"order": score.argsort(descending=True).tolist(), "entropy": entropy.tolist(),
            "similarity": similarity.tolist()}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description="DR-Seg SPSD channel ranking")
    ap.add_argument("features", help="safetensors file with 'features' (N×E) and 'labels' (N)")
    ap.add_argument("out", help="output JSON")
    ap.add_argument("--alpha", type=float, default=0.5, help="weight of the entropy criterion")
    ap.add_argument("--protos", type=int, default=8, help="prototypes per class")
    a = ap.parse_args(argv)
    from safetensors.torch import load_file

    from dglrsis.io import write_json
    t = load_file(a.features)
    write_json(a.out, spsd_ranking(t["features"].float(), t["labels"].long(), a.alpha, a.protos))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
