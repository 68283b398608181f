"""Evaluate a trained model on OVRSISBench sets (seeds' Table 1 layout: per set mIoU/mACC, m-mIoU, m-mACC).

    python -m dglrsis.trainable.evaluate --checkpoint RUN_DIR --sets dlrsd,isaid,potsdam,world \
        [--root DATA_ROOT]
        [--single-view] [--out DIR] [--limit N]

Scores with the same metric code as ``dglrsis eval ovss`` (``dglrsis.eval.metrics.SemSegMetric``).
Set ``NAME`` reads ``ROOT/NAME`` (index PNGs, vocabulary ``NAME``); ``isaid`` reads raw or converted
iSAID under ``ROOT/isaid``; ``world`` renders held-out synthetic-world scenes in memory.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from dglrsis.errors import DglrsisError, OneLineParser, guarded
from dglrsis.io import atomic_path, transaction, write_json

from .config import DataConfig, config_from_dict
from .data import SegDataset, background_lut, build_source


def _logit(prob: torch.Tensor) -> torch.Tensor:
    return torch.logit(prob.clamp(1e-6, 1 - 1e-6))


def _forward(model, image: torch.Tensor, names: list[str]) -> torch.Tensor:
    """One view (public CAT-Seg eval ``forward``): resized to the model input size, the sigmoid at the
    model's output resolution, probabilities upsampled bilinearly to the view's size; returned as
    logits of those probabilities (B×K×H×W)."""
    s = model.input_size
    x = F.interpolate(image, (s, s), mode="bilinear", align_corners=False)
    prob = F.interpolate(
        model(x, names).float().sigmoid(), image.shape[-2:], mode="bilinear", align_corners=False
    )
    return _logit(prob)


def window_sizes(model) -> tuple[int, int]:
    """(kernel, out_res) of the public sliding scheme: 384 / 640 for CAT-Seg's ViT-B (384) and ViT-L
    (336) inputs, else scaled with the model's input size (kernel = input size, out_res = 5/3 of it)."""
    s = model.input_size
    kernel = 384 if s in (336, 384) else s
    return kernel, round(kernel * 640 / 384)


@torch.no_grad()
def predict_logits(
    model, image: torch.Tensor, names: list[str], sliding: bool = False, overlap: float = 0.333
) -> torch.Tensor:
    """B×K×H×W scores for a normalised B×3×H×W image (argmax = prediction).

    ``sliding`` (public CAT-Seg ``inference_sliding_window``): the image resized to out_res², windows
    of kernel² with stride ``int(kernel·(1 − overlap))`` plus the whole image resized to kernel² as a
    global view, each view resized to the model input; logits upsampled to kernel², then the sigmoid;
    windows averaged where they overlap, averaged with the global map upsampled to out_res², resized
    to H×W. Returned as logits of that probability. Otherwise one view at the input size, the sigmoid
    before upsampling to H×W (see :func:`_forward`)."""
    if not sliding:
        return _forward(model, image, names)
    kernel, res = window_sizes(model)
    stride = int(kernel * (1 - overlap))
    s = model.input_size
    big = F.interpolate(image, (res, res), mode="bilinear", align_corners=False)
    starts = range(0, res - kernel + 1, stride)
    views = [big[..., y : y + kernel, x : x + kernel] for y in starts for x in starts]
    views.append(F.interpolate(image, (kernel, kernel), mode="bilinear", align_corners=False))
    b = image.shape[0]
    batch = F.interpolate(torch.cat(views, 0), (s, s), mode="bilinear", align_corners=False)
    out = F.interpolate(model(batch, names).float(), (kernel, kernel), mode="bilinear", align_corners=False)
    out = out.sigmoid()
    acc = out.new_zeros(b, out.shape[1], res, res)
    count = out.new_zeros(1, 1, res, res)
    for i, (y, x) in enumerate((y, x) for y in starts for x in starts):
        acc[..., y : y + kernel, x : x + kernel] += out[i * b : (i + 1) * b]
        count[..., y : y + kernel, x : x + kernel] += 1
    glob = F.interpolate(out[-b:], (res, res), mode="bilinear", align_corners=False)
    prob = (acc / count + glob) / 2
    prob = F.interpolate(prob, image.shape[-2:], mode="bilinear", align_corners=False)
    return _logit(prob)


def evaluate_dataset(model, ds: SegDataset, names: list[str], sliding: bool = False) -> dict:
    """``SemSegMetric`` report (mIoU, mACC, fwIoU, pACC, per_class) of ``model`` on an eval dataset."""
    from dglrsis.eval.metrics import SemSegMetric

    metric = SemSegMetric(names)
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    for i in range(len(ds)):
        item = ds[i]
        logits = predict_logits(model, item["image"][None].to(device), names, sliding)
        metric.update(logits.argmax(1)[0].cpu().numpy().astype(np.int64), item["label"].numpy())
    model.train(was_training)
    return metric.report()


def set_config(
    name: str, root: str | None, world_seed: int = 0, world_size: int = 128, world_n: int = 16
) -> tuple[DataConfig, str]:
    """(DataConfig, split) of one benchmark set name (``world``: scenes from index 10 000 of the training
    world seed — held out of training, the same scenes as the periodic evaluation in trainable.train)."""
    if name == "world":
        return DataConfig(kind="world", world_seed=world_seed, world_size=world_size, world_n=world_n), "val"
    if root is None:
        raise DglrsisError(f"set {name!r} needs --root DATA_ROOT")
    if name == "isaid":
        return DataConfig(kind="isaid", root=str(Path(root) / "isaid")), "val"
    return DataConfig(kind="ovrsis", root=str(Path(root) / name), classes=name), "val"


def load_trained(checkpoint: str | Path):
    """(model, Config) from a run folder (``config.json`` + ``model.safetensors``) or a checkpoint folder
    ``run/checkpoints/step_XXXXX`` (``model.safetensors`` inside, config two levels up)."""
    from dglrsis.safeload import load_checkpoint

    from .models import build_model

    ckpt = Path(checkpoint)
    cfg_file = next(
        (p / "config.json" for p in (ckpt, ckpt.parent.parent) if (p / "config.json").is_file()), None
    )
    weights = ckpt / "model.safetensors"
    if cfg_file is None or not weights.is_file():
        raise DglrsisError(f"{ckpt} has no config.json / model.safetensors (train it with trainable.train)")
    import json

    try:
        saved = json.loads(cfg_file.read_text())
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise DglrsisError(f"{cfg_file} is not valid JSON ({exc}); the run folder is damaged") from None
    if not isinstance(saved, dict):
        raise DglrsisError(f"{cfg_file} holds a {type(saved).__name__}, not a config object")
    cfg = config_from_dict(saved)
    model = build_model(cfg.name, cfg.model)
    state = load_checkpoint(weights)
    load_matching(model, state, f"{weights} does not match model {cfg.name}")
    return model.eval(), cfg


def load_matching(model, state: dict, what: str, shown: int = 4) -> None:
    """``model.load_state_dict(state)``, strict, with a one-line DglrsisError naming the first ``shown``
    missing, unexpected and mis-shaped keys (and how many there are)."""
    own = model.state_dict()
    missing = [k for k in own if k not in state]
    unexpected = [k for k in state if k not in own]
    shapes = [
        f"{k} {tuple(state[k].shape)} vs {tuple(v.shape)}"
        for k, v in own.items()
        if k in state and hasattr(state[k], "shape") and tuple(state[k].shape) != tuple(v.shape)
    ]
    parts = [
        f"{len(keys)} {label}: {', '.join(keys[:shown])}{', …' if len(keys) > shown else ''}"
        for label, keys in (("missing", missing), ("unexpected", unexpected), ("mis-shaped", shapes))
        if keys
    ]
    if parts:
        raise DglrsisError(f"{what}: {'; '.join(parts)}")
    model.load_state_dict(state)


def table(results: dict[str, dict]) -> dict:
    """Table-1 summary: per set mIoU/mACC plus m-mIoU/m-mACC (means over sets)."""
    sets = {k: {"mIoU": v["mIoU"], "mACC": v["mACC"]} for k, v in results.items()}

    def mean(key):
        return round(float(np.mean([v[key] for v in sets.values()])), 4) if sets else None

    return {"sets": sets, "m-mIoU": mean("mIoU"), "m-mACC": mean("mACC")}


def markdown(summary: dict) -> str:
    """One-row Markdown table in the seeds' Table 1 layout."""
    names = list(summary["sets"])
    head = "| " + " | ".join(f"{n} mIoU | {n} mACC" for n in names) + " | m-mIoU | m-mACC |"
    sep = "|" + "---|" * (2 * len(names) + 2)
    row = (
        "| "
        + " | ".join(f"{summary['sets'][n]['mIoU']:.2f} | {summary['sets'][n]['mACC']:.2f}" for n in names)
        + f" | {summary['m-mIoU']:.2f} | {summary['m-mACC']:.2f} |"
    )
    return f"{head}\n{sep}\n{row}" + "\n"


def evaluate(checkpoint, sets: list[str], root=None, sliding=True, out=None, limit=None) -> dict:
    """Evaluate every set; writes ``results.json`` and ``results.md`` atomically under ``out``."""
    from dglrsis.eval.ovrsisbench import LAYOUTS

    known = ["world", *LAYOUTS]
    unknown = [n for n in sets if n not in known]
    if unknown or not sets:
        raise DglrsisError(f"unknown set(s) {', '.join(unknown) or '(none given)'}: use {', '.join(known)}")
    for name in sets:  # every set's --root checked before the model is loaded
        set_config(name, root)
    model, cfg = load_trained(checkpoint)
    results = {}
    for name in sets:
        dcfg, split = set_config(name, root, cfg.data.world_seed, cfg.data.world_size, limit or 16)
        src = (
            build_source(dcfg, split, limit=limit, world_start=10_000)
            if name == "world"
            else build_source(dcfg, split, limit=limit)
        )
        lut, names = background_lut(src.names, cfg.data.background)
        ds = SegDataset(src, lut, model.input_size, model.mean, model.std, train=False)
        results[name] = evaluate_dataset(model, ds, names, sliding)
    summary = table(results)
    summary["per_set"] = results
    out = Path(out or Path(checkpoint) / "eval")
    with transaction():  # both files or neither
        write_json(out / "results.json", summary)
        with atomic_path(out / "results.md") as tmp:
            tmp.write_text(markdown(summary))
    return summary


def main(argv: list[str] | None = None) -> int:
    p = OneLineParser(prog="trainable.evaluate", description=__doc__.splitlines()[0])
    p.add_argument("--checkpoint", required=True, help="run folder or checkpoints/step_XXXXX")
    p.add_argument("--sets", required=True, help="comma-separated set names (dlrsd,isaid,potsdam,...,world)")
    p.add_argument("--root", default=None, help="folder holding one sub-folder per set")
    p.add_argument(
        "--single-view",
        action="store_true",
        help="one view at the input size instead of the public sliding windows + global view",
    )
    p.add_argument("--out", default=None, help="output folder (default CHECKPOINT/eval)")
    p.add_argument("--limit", type=int, default=None, help="images per set")
    args = p.parse_args(argv)
    if args.limit is not None and args.limit < 1:
        p.error(f"--limit must be ≥ 1, got {args.limit}")

    def run() -> int:
        sets = [x for x in args.sets.split(",") if x]
        s = evaluate(args.checkpoint, sets, args.root, not args.single_view, args.out, args.limit)
        print(markdown(s), end="")
        return 0

    return guarded("trainable.evaluate", run)


if __name__ == "__main__":
    sys.exit(main())
