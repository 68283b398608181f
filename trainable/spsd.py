"""DR-Seg SPSD: offline CLIP channel ranking by class-response entropy and inter-class prototype similarity.

    python -m dglrsis.trainable.spsd --config trainable/configs/world_drseg.yaml OUT.json \
        [--pixels 512] [--alpha 0.5]

Runs the config's frozen CLIP densely over its training set (no augmentation, training class policy:
background and held-out classes ignored), samples up to ``--pixels`` L2-normalised pixel features per
class inside the ground-truth regions, ranks the channels with :func:`spsd_ranking` and writes OUT.json:
{"order": [E channel ids, most semantic first], "entropy": [...], "similarity": [...], "classes": [...],
"pixels": {class: n}}. Point ``model.spsd_path`` at OUT.json to use it.
"""

from __future__ import annotations

import argparse
import sys

import torch

from dglrsis.errors import DglrsisError


def _norm_rank(v: torch.Tensor) -> torch.Tensor:
    """Rank of each entry (0 = smallest) scaled to [0, 1]."""
    r = torch.empty_like(v)
    r[v.argsort()] = torch.arange(len(v), dtype=v.dtype)
    return r / max(len(v) - 1, 1)


def spsd_ranking(
    features: torch.Tensor, labels: torch.Tensor, alpha: float = 0.5, protos: int = 8, seed: int = 0
) -> dict:
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
    return {
        "order": score.argsort(descending=True).tolist(),
        "entropy": entropy.tolist(),
        "similarity": similarity.tolist(),
    }


def sample_features(cfg, pixels: int = 512, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor, list[str]]:
    """(features N×E, labels N, seen class names indexed by labels) from the training set of ``cfg``.

    ``cfg`` is a trainable Config.

    Dense CLIP features (B×h×w×E, ``trainable.models.clip_dense``) are compared with the label map
    nearest-downsampled to h×w; at most ``pixels`` features per class are drawn (seeded)."""
    import numpy as np
    from tqdm import tqdm

    from dglrsis.models import load_clip

    from .data import SegDataset, training_labels
    from .models.clip_dense import dense_clip_features

    clip = load_clip(cfg.model.clip)
    src, lut, _, _, names = training_labels(cfg.data)  # labels index the seen classes
    ds = SegDataset(src, lut, clip.image_size, clip.mean, clip.std, train=False)  # size unused: no resizing
    feats: dict[int, list[torch.Tensor]] = {}
    visual = clip.model.visual.eval()
    with torch.no_grad():
        for i in tqdm(range(len(ds)), desc="spsd features"):
            item = ds[i]
            tokens, _ = dense_clip_features(visual, item["image"][None], ())
            h, w = tokens.shape[1:3]
            lab = torch.nn.functional.interpolate(
                item["label"][None, None].float(), size=(h, w), mode="nearest"
            )
            lab = lab[0, 0].long().flatten()
            tok = torch.nn.functional.normalize(tokens[0].reshape(h * w, -1).float(), dim=-1)
            for c in lab.unique().tolist():
                if c != 255:
                    feats.setdefault(c, []).append(tok[lab == c])
    if len(feats) < 2:
        raise DglrsisError("SPSD needs labelled pixels of at least two classes in the training set")
    rng = np.random.default_rng(seed)
    xs, ys = [], []
    for c in sorted(feats):
        f = torch.cat(feats[c])
        keep = torch.from_numpy(np.sort(rng.permutation(len(f))[:pixels]))
        xs.append(f[keep])
        ys.append(torch.full((len(keep),), c))
    return torch.cat(xs), torch.cat(ys), names


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        prog="trainable.spsd", description="DR-Seg SPSD channel ranking from a training set"
    )
    ap.add_argument(
        "--config", required=True, help="training config YAML (its CLIP and training data are used)"
    )
    ap.add_argument("out", help="output JSON (model.spsd_path)")
    ap.add_argument("overrides", nargs="*", help="config overrides key=value")
    ap.add_argument("--pixels", type=int, default=512, help="pixel features sampled per class")
    ap.add_argument("--alpha", type=float, default=0.5, help="weight of the entropy criterion")
    ap.add_argument("--protos", type=int, default=8, help="prototypes per class")
    a = ap.parse_args(argv)
    from dglrsis.io import write_json

    from .config import load_config

    try:
        cfg = load_config(a.config, a.overrides)
        x, y, names = sample_features(cfg, a.pixels)
        out = spsd_ranking(x, y, a.alpha, a.protos)
        out["classes"] = names
        out["pixels"] = {names[c]: int((y == c).sum()) for c in y.unique().tolist()}
        write_json(a.out, out)
    except DglrsisError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(f"SPSD ranking of {len(out['order'])} channels from {len(y)} pixel features -> {a.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
