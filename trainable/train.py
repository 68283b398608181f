"""Train a cost-aggregation model with 🤗 accelerate.

    accelerate launch -m dglrsis.trainable.train --config trainable/configs/NAME.yaml [key=value ...]
        [--resume [DIR]] [--output DIR] [--stop-after N]

Also runs as ``python -m dglrsis.trainable.train`` / ``python -m dglrsis.trainable.train`` (one process).
Output folder: ``config.json``, ``log.csv`` (step, loss, lr, miou), ``checkpoints/step_XXXXX``
(``accelerator.save_state``, written to a temporary folder then renamed), ``model.safetensors``.
"""

from __future__ import annotations

import argparse
import csv
import math
import os
import shutil
import sys
from pathlib import Path

import torch
import torch.nn.functional as F

from dglrsis.errors import DglrsisError, OneLineParser, guarded
from dglrsis.io import atomic_path, write_json

from .config import Config, load_config
from .data import IGNORE, SegDataset, StepBatchSampler, build_source, collate, training_labels

LOG_FIELDS = ("step", "loss", "lr", "miou")


def seg_loss(logits: torch.Tensor, label: torch.Tensor, ignore_as_negative: bool = True) -> torch.Tensor:
    """Per-class BCE-with-logits on logits (B×K×h×w) upsampled (bilinear) to the label size (B×H×W,
    255 = ignore).

    ``ignore_as_negative`` (public CAT-Seg): an ignored pixel has an all-zero target and counts in the
    mean over every pixel and class; False → ignored pixels are left out of the loss."""
    logits = F.interpolate(logits.float(), label.shape[-2:], mode="bilinear", align_corners=False)
    valid = label != IGNORE
    k = logits.shape[1]
    target = F.one_hot(label.clamp(max=k - 1) * valid, k).permute(0, 3, 1, 2).float() * valid[:, None]
    loss = F.binary_cross_entropy_with_logits(logits, target, reduction="none")
    if ignore_as_negative:
        return loss.mean()
    if not valid.any():
        return logits.sum() * 0.0
    return loss.mean(1)[valid].mean()


def cosine_lambda(total: int, warmup: int = 0):
    """Scheduler multiplier: linear warm-up then cosine decay to 0 at ``total``."""

    def f(step: int) -> float:
        if warmup and step < warmup:
            return (step + 1) / warmup
        return 0.5 * (1 + math.cos(math.pi * min(1.0, (step - warmup) / max(1, total - warmup))))

    return f


def last_checkpoint(output: Path) -> Path | None:
    """Newest complete ``checkpoints/step_XXXXX`` folder (temporary folders are ignored)."""
    ckpts = sorted(p for p in (output / "checkpoints").glob("step_*") if p.name[5:].isdigit())
    return ckpts[-1] if ckpts else None


def save_checkpoint(accelerator, output: Path, step: int, keep: int) -> Path:
    """``save_state`` into a temporary folder renamed to ``step_XXXXX`` (atomic), pruning old ones."""
    final = output / "checkpoints" / f"step_{step:05d}"
    tmp = output / "checkpoints" / f".tmp_step_{step:05d}"
    if accelerator.is_main_process and tmp.exists():
        shutil.rmtree(tmp)
    accelerator.wait_for_everyone()
    accelerator.save_state(str(tmp), safe_serialization=True)
    accelerator.wait_for_everyone()
    if accelerator.is_main_process:
        (tmp / "step.txt").write_text(str(step))
        if final.exists():
            shutil.rmtree(final)
        os.replace(tmp, final)
        for old in sorted(p for p in final.parent.glob("step_*") if p.name[5:].isdigit())[: -max(1, keep)]:
            shutil.rmtree(old)
    accelerator.wait_for_everyone()
    return final


def read_log(path: Path) -> list[dict]:
    """Rows of ``log.csv`` (strings), [] when absent."""
    if not path.is_file():
        return []
    with path.open(newline="") as f:
        return list(csv.DictReader(f))


def _rewrite_log(path: Path, upto: int) -> None:
    rows = [r for r in read_log(path) if int(r["step"]) <= upto]
    with atomic_path(path) as tmp, tmp.open("w", newline="") as f:
        w = csv.DictWriter(f, LOG_FIELDS)
        w.writeheader()
        w.writerows(rows)


def _append_log(path: Path, row: dict) -> None:
    new = not path.is_file()
    with path.open("a", newline="") as f:
        w = csv.DictWriter(f, LOG_FIELDS)
        if new:
            w.writeheader()
        w.writerow(row)


def build_training(cfg: Config):
    """(model, train dataset, eval dataset, all class names, seen class names)."""
    from .models import build_model

    model = build_model(cfg.name, cfg.model)
    src, train_lut, bg, names, seen_names = training_labels(cfg.data)
    aug = {
        "scale": tuple(cfg.data.scale),
        "hflip": cfg.data.hflip,
        "vflip": cfg.data.vflip,
        "rot90": cfg.data.rot90,
    }
    train_ds = SegDataset(src, train_lut, model.input_size, model.mean, model.std, True, aug)
    if cfg.data.kind == "world":
        vsrc = build_source(cfg.data, "val", world_start=10_000, world_n=cfg.data.val_n)
    else:
        vsrc = build_source(cfg.data, cfg.data.val_split, limit=cfg.data.val_n or None)
    eval_ds = SegDataset(vsrc, bg, model.input_size, model.mean, model.std, False)
    return model, train_ds, eval_ds, names, seen_names


def train(cfg: Config, output: str | Path, resume: str | None = None, stop_after: int | None = None) -> dict:
    """Run (or resume) training; returns dict(step, losses, miou). ``stop_after`` stops early after that
    step (as an interruption would), after saving a checkpoint there."""
    from accelerate import Accelerator
    from accelerate.utils import set_seed

    output = Path(output)
    t = cfg.train
    accelerator = Accelerator(
        gradient_accumulation_steps=t.grad_accum,
        mixed_precision=t.mixed_precision if os.environ.get("ACCELERATE_MIXED_PRECISION") is None else None,
    )
    set_seed(t.seed)
    model, train_ds, eval_ds, names, seen_names = build_training(cfg)
    opt = torch.optim.AdamW(
        model.param_groups(t.lr, clip_lr_mult=t.clip_lr_mult, weight_decay=t.weight_decay),
        lr=t.lr,
        weight_decay=t.weight_decay,
    )
    sched = torch.optim.lr_scheduler.LambdaLR(opt, cosine_lambda(t.iterations, t.warmup))
    model, opt, sched = accelerator.prepare(model, opt, sched)
    start, ckpt = 0, None
    if resume is not None:
        ckpt = Path(resume) if resume else last_checkpoint(output)
        if ckpt is None or not (ckpt / "step.txt").is_file():
            raise DglrsisError(f"no checkpoint to resume from in {resume or output / 'checkpoints'}")
        start = checkpoint_step(ckpt)
        try:
            load_state(accelerator, ckpt)
        except Exception as exc:  # noqa: BLE001 - a damaged checkpoint is the user's file, not our bug
            msg = " ".join(f"{type(exc).__name__}: {exc}".split())[:200]
            raise DglrsisError(
                f"cannot resume from {ckpt}: {msg}; the checkpoint is damaged, resume from an earlier "
                f"checkpoints/step_XXXXX folder (--resume DIR) or start afresh"
            ) from None
    log = output / "log.csv"
    if accelerator.is_main_process:
        output.mkdir(parents=True, exist_ok=True)
        write_json(output / "config.json", cfg.to_dict())
        if start or log.exists():
            _rewrite_log(log, start)
    end = min(t.iterations, stop_after) if stop_after else t.iterations
    sampler = StepBatchSampler(
        len(train_ds),
        t.batch_size,
        t.seed,
        start,
        end,
        t.grad_accum,
        accelerator.num_processes,
        accelerator.process_index,
    )
    loader = torch.utils.data.DataLoader(
        train_ds, batch_sampler=sampler, collate_fn=collate, num_workers=cfg.data.num_workers
    )
    return _loop(accelerator, cfg, model, opt, sched, loader, eval_ds, names, seen_names, start, end, output)


def _loop(
    accelerator, cfg, model, opt, sched, loader, eval_ds, names, seen_names, start, end, output
) -> dict:
    from tqdm import tqdm

    from .evaluate import evaluate_dataset

    t, log, losses, miou = cfg.train, output / "log.csv", [], None
    tb = _tensorboard(output) if accelerator.is_main_process else None
    bar = tqdm(total=end - start, initial=0, desc="train", disable=not accelerator.is_local_main_process)
    step, acc_loss, micro = start, 0.0, 0
    model.train()
    for batch in loader:
        with accelerator.accumulate(model):
            logits = model(batch["image"].to(accelerator.device), seen_names)
            loss = seg_loss(logits, batch["label"].to(accelerator.device), cfg.train.ignore_as_negative)
            accelerator.backward(loss)
            if accelerator.sync_gradients and t.grad_clip:
                accelerator.clip_grad_norm_(model.parameters(), t.grad_clip)
            opt.step()
            sched.step()
            opt.zero_grad()
        acc_loss += accelerator.gather(loss.detach()[None]).mean().item() / t.grad_accum
        micro += 1
        if micro < t.grad_accum:
            continue
        step, micro, value, acc_loss = step + 1, 0, acc_loss, 0.0
        losses.append(value)
        miou = None
        if (t.eval_every and step % t.eval_every == 0) or step == t.iterations:
            miou = evaluate_dataset(accelerator.unwrap_model(model), eval_ds, names)["mIoU"]
            model.train()
        if accelerator.is_main_process and (step % t.log_every == 0 or miou is not None):
            lr = opt.param_groups[0]["lr"]
            _append_log(
                log, {"step": step, "loss": repr(value), "lr": repr(lr), "miou": "" if miou is None else miou}
            )
            if tb is not None:
                tb.add_scalar("loss", value, step)
                tb.add_scalar("lr", lr, step)
                if miou is not None:
                    tb.add_scalar("miou", miou, step)
        bar.update(1)
        if step % t.save_every == 0 or step == end:
            save_checkpoint(accelerator, output, step, t.keep_checkpoints)
    bar.close()
    if step >= t.iterations:
        accelerator.wait_for_everyone()
        accelerator.save_model(model, str(output), safe_serialization=True)
    if tb is not None:
        tb.close()
    return {"step": step, "losses": losses, "miou": miou}


def _tensorboard(output: Path):
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:
        return None
    return SummaryWriter(str(output / "tb"))


def load_state(accelerator, ckpt: Path) -> None:
    """``accelerator.load_state(ckpt)``, with a visible warning on stderr when a process's random-number
    state is missing or unreadable (accelerate notes that at INFO level only and goes on, so the resumed
    run silently stops being identical to an uninterrupted one)."""
    import logging

    class Catch(logging.Handler):
        hit = False

        def emit(self, record):
            if "Could not load random states" in record.getMessage():
                Catch.hit = True

    log = logging.getLogger("accelerate.checkpointing")
    level, propagate, handler = log.level, log.propagate, Catch()
    log.setLevel(logging.INFO)
    log.propagate = False
    log.addHandler(handler)
    try:
        accelerator.load_state(str(ckpt))
    finally:
        log.removeHandler(handler)
        log.setLevel(level)
        log.propagate = propagate
    if Catch.hit:
        i = accelerator.process_index
        print(
            f"trainable.train: warning: {ckpt / f'random_states_{i}.pkl'} is missing or unreadable: the "
            "random-number state was not restored, so this resumed run will differ from an uninterrupted one",
            file=sys.stderr,
        )


def checkpoint_step(ckpt: Path) -> int:
    """The step a checkpoint folder was saved at (its ``step.txt``); DglrsisError if unreadable."""
    text = (ckpt / "step.txt").read_text(errors="replace").strip()
    if not text.isdigit():
        raise DglrsisError(
            f"{ckpt / 'step.txt'} holds {text[:20]!r}, not a step number; the checkpoint is damaged"
        )
    return int(text)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = OneLineParser(prog="trainable.train", description=__doc__.splitlines()[0])
    p.add_argument("--config", help="YAML config (trainable/configs/*.yaml)")
    p.add_argument("overrides", nargs="*", help="dotted key=value overrides, e.g. train.lr=1e-4")
    p.add_argument("--output", default=None, help="run folder (default runs/<config name>)")
    p.add_argument(
        "--resume",
        nargs="?",
        const="",
        default=None,
        help="resume from DIR, or from the last checkpoint of --output when no DIR is given",
    )
    p.add_argument("--stop-after", type=int, default=None, help="stop after this step (checkpointed)")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)

    def run() -> int:
        cfg = load_config(args.config, args.overrides)
        output = args.output or str(Path("runs") / (Path(args.config).stem if args.config else cfg.name))
        out = train(cfg, output, args.resume, args.stop_after)
        if os.environ.get("RANK", "0") != "0":  # one summary line under accelerate launch
            return 0
        last = out["losses"][-1] if out["losses"] else float("nan")
        print(f"step {out['step']}  last loss {last:.4f}  mIoU {out['miou']}")
        return 0

    return guarded("trainable.train", run, memory_hint="lower train.batch_size (raise train.grad_accum)")


if __name__ == "__main__":
    sys.exit(main())
