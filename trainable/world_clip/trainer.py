"""Train world-clip, the small open_clip CLIP of the synthetic world.

``python -m dglrsis.trainable.world_clip --config trainable/configs/world_clip.yaml [key=value ...]
--out DIR`` (the YAML file holds the recipe of the bundled weights; keys are :class:`WorldClipConfig`
fields).

Data (rendered once per run into an in-memory pool, then sampled): scenes of both kinds from
``dglrsis.eval.world.iter_scenes`` with **world seeds 1000 + seed** (evaluation uses world seeds < 1000,
e.g. 0 and 7), rendered at 512 px like the world's default.

* **object crops** — every instance, ``crops_per_instance`` times: the LVTA context-aware crop
  (:func:`dglrsis.lvta.context_crops`) of the mask box enlarged by a random context ratio 1.0–2.0 (centre
  jittered), with a random background treatment (keep / blur / mean / mask), 96 px;
* **land-cover crops** — windows dominated (≥ 80 %) by one land cover without objects, the land-cover mask
  as proposal, random background treatment; and (``landcover_pieces``) superpixel proposals of object size
  lying on one land cover, cropped like the object crops: the pieces of road, soil or water LVTA asks
  about on every image (without them world-clip took 43 % of them for objects, a road patch for a vehicle);
* **scenes** — the whole scene or a random 40–80 % window of it, 96 px, captioned with one object inside
  ("an aerial image with a storage tank", "the white ship on the left").

Captions: RS templates × class synonyms (``dglrsis.vocab``: ``prompts/templates/rs.txt``,
``prompts/vocab/{isaid,rrsisd}.txt``) × optional colour word × optional knowledge description, the way
``build_prompts`` composes them, so knowledge-enriched prompts at inference are in-distribution. Every
sample is flipped/transposed at random (all 8 top-down orientations; caption positions follow).

Loss: symmetric InfoNCE with the CLIP's learnable temperature and a **multi-positive** target: image i
and caption j are a positive pair when j's class (and colour, if it names one) is present in i; both
directions use the row/column-normalised positive mask as soft target. Plus (``dense_weight`` > 0) a
**dense region–text loss** on scene samples (:mod:`.dense`): every patch's features
(default ``"both"``: the CLS output were the last block's CLS token to attend to that patch alone — the
quantity the Grad-CAM at the last block's ``ln_1`` linearises — and the patch token itself — what
dense-CLIP models such as CAT-Seg build their cost volume from) are classified against one caption per
concept (land covers and object classes) with the patch's concept shares as soft target, and (symmetric)
each present concept's text picks its patches; the two features' losses are averaged. Plus, from
``cam_start`` of the steps on (``cam_weight`` > 0), a **Grad-CAM alignment loss**
(:mod:`.cam`): the differentiable Grad-CAM of one object concept's caption on each scene
sample should be positive on that object's patches and negative elsewhere; with ``cam_hires`` > 0 also on
that many whole scenes per step at their stored 192 px (24² patches, positional embedding interpolated).
AdamW, linear warm-up + cosine.
Accelerate (``Accelerator``, ``prepare`` of the optimiser, loader and schedule, ``accelerator.backward``,
``reduce`` of the gradients across processes, ``set_seed``) runs the loop; the same seed and thread count
give identical weights. Output: fp16 safetensors (atomic), the architecture json
and a card json with the recipe.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from dglrsis.constants import OPENAI_MEAN, OPENAI_STD
from dglrsis.errors import DglrsisError
from dglrsis.io import atomic_path, write_json
from dglrsis.vit import resize_pos_embed

from . import cam as wcam
from . import data as wcd
from . import dense as wdense

WORLD_SEED_OFFSET = 1000  # training world seed = WORLD_SEED_OFFSET + seed; evaluation seeds stay below it
ARCH = {
    "embed_dim": 128,
    "vision_cfg": {
        "image_size": 96,
        "patch_size": 8,
        "width": 128,
        "layers": 4,
        "head_width": 32,
        "mlp_ratio": 4.0,
    },
    "text_cfg": {"context_length": 32, "vocab_size": 49408, "width": 128, "heads": 2, "layers": 4},
}


@dataclass
class WorldClipConfig:
    seed: int = 0  # model init, training world (1000 + seed), sampling and captions
    steps: int = 900  # optimisation steps
    batch_size: int = 128  # samples per step
    lr: float = 1e-3  # AdamW peak learning rate
    warmup: float = 0.05  # share of the steps with linear warm-up (then cosine to 0)
    weight_decay: float = 0.05  # AdamW weight decay on matrices (not on gains, biases, embeddings)
    scenes_per_kind: int = 300  # scenes rendered per kind (isaid, rrsisd) into the pool
    scene_size: int = 512  # rendered scene side (pixels)
    crops_per_instance: int = 2  # object crops per instance (different context / background)
    landcover_crops: int = 600  # land-cover windows in the pool
    landcover_pieces: int = 0  # land-cover proposals of object size in the pool (0: none)
    object_pieces: int = 0  # proposals inside instances in the pool, with the object crops (0: none)
    mix: tuple = (0.50, 0.10, 0.40)  # share of object crops, land-cover crops and scenes in a batch
    dense_weight: float = 1.0  # weight of the dense patch–concept loss on scene samples (0: off)
    # patch features of the dense loss: "cls" (CLS attending to one patch, what the Grad-CAM reads) |
    # "output" (patch tokens, what dense-CLIP models read) | "both"
    dense_feature: str = "both"
    dense_symmetric: bool = True  # also the concept → patch direction of the dense loss
    cam_weight: float = 1.5  # weight of the Grad-CAM alignment loss on scene samples (0: off)
    cam_start: float = 0.25  # share of the steps trained before the Grad-CAM loss joins
    cam_hires: int = 8  # whole scenes per Grad-CAM step also at the stored 192 px (24² patches; 0: off)
    threads: int = 1  # torch CPU threads (1: no thread thrashing on a shared CPU)
    arch: dict = field(default_factory=lambda: json.loads(json.dumps(ARCH)))  # open_clip CLIP(**arch)


def _lr_lambda(steps: int, warmup: float):
    warm = max(1, int(round(steps * warmup)))

    def f(step: int) -> float:
        if step < warm:
            return (step + 1) / warm
        return 0.5 * (1 + np.cos(np.pi * min(1.0, (step - warm) / max(1, steps - warm))))

    return f


def _param_groups(model, weight_decay: float) -> list[dict]:
    decay, no_decay = [], []
    for name, p in model.named_parameters():
        skip = p.ndim < 2 or "embedding" in name or name in ("logit_scale", "visual.proj", "text_projection")
        (no_decay if skip else decay).append(p)
    return [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]


def multi_positive_loss(
    img: torch.Tensor, txt: torch.Tensor, scale: torch.Tensor, pos: torch.Tensor
) -> torch.Tensor:
    """Symmetric InfoNCE with soft multi-positive targets.

    img, txt: ``B×D`` L2-normalised embeddings; scale: the (exponentiated) logit scale; pos: ``B×B`` bool,
    ``pos[i, j]`` = caption j describes image i (the diagonal must be True).
    """
    logits = scale * img @ txt.T
    t = pos.float()
    i2t = -(t / t.sum(1, keepdim=True) * logits.log_softmax(1)).sum(1).mean()
    t2i = -(t / t.sum(0, keepdim=True) * logits.log_softmax(0)).sum(0).mean()
    return (i2t + t2i) / 2


def average_gradients(accelerator, model) -> None:
    """Replace every trainable parameter's gradient by its mean over the processes (no-op for one).
    A parameter without a gradient in this process counts as zeros, so every process joins every reduce."""
    if accelerator.num_processes == 1:
        return
    for p in model.parameters():
        if p.requires_grad:
            p.grad = accelerator.reduce(
                p.grad if p.grad is not None else torch.zeros_like(p), reduction="mean"
            )


def _save(model, cfg: WorldClipConfig, out: Path, card: dict) -> Path:
    from safetensors.torch import save_file

    out.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().to("cpu", torch.float16).contiguous() for k, v in model.state_dict().items()}
    path = out / "world-clip.safetensors"
    with atomic_path(path) as tmp:
        save_file(state, str(tmp), metadata={"format": "pt", "seed": str(cfg.seed)})
    write_json(
        out / "world-clip.json",
        {
            "note": "architecture of world-clip, the small CLIP trained on the synthetic world "
            "by dglrsis.trainable.world_clip",
            "model_cfg": cfg.arch,
            "mean": list(OPENAI_MEAN),
            "std": list(OPENAI_STD),
        },
    )
    write_json(out / "world-clip.card.json", card)
    return path


def train(cfg: WorldClipConfig, out: str | Path = "dglrsis/weights", progress: bool = True) -> dict:
    """Render the pool, train, save ``world-clip.{safetensors,json,card.json}`` into ``out``.

    Returns the card."""
    if cfg.steps < 1 or cfg.batch_size < 2:
        raise DglrsisError("world-clip training needs steps >= 1 and batch_size >= 2")
    threads_before = torch.get_num_threads()
    torch.set_num_threads(cfg.threads)
    try:
        return _train(cfg, Path(out), progress)
    finally:
        torch.set_num_threads(threads_before)


def _train(cfg: WorldClipConfig, out: Path, progress: bool) -> dict:
    import open_clip
    from accelerate import Accelerator
    from accelerate.utils import set_seed
    from tqdm.auto import tqdm

    from dglrsis.eval.world import LANDCOVER

    t0 = time.time()
    accelerator = Accelerator()
    set_seed(cfg.seed)
    texts = wcd.TextSource.load()
    pool = wcd.build_pool(
        WORLD_SEED_OFFSET + cfg.seed,
        cfg.scenes_per_kind,
        cfg.scene_size,
        cfg.crops_per_instance,
        cfg.landcover_crops,
        OPENAI_MEAN,
        OPENAI_STD,
        progress,
        cfg.landcover_pieces,
        cfg.object_pieces,
    )
    t_pool = time.time() - t0
    tokenizer = open_clip.SimpleTokenizer(context_length=cfg.arch["text_cfg"]["context_length"])
    patch = cfg.arch["vision_cfg"]["patch_size"]
    grid = cfg.arch["vision_cfg"]["image_size"] // patch
    data = wcd.PoolDataset(
        pool,
        texts,
        cfg.steps * cfg.batch_size,
        cfg.seed,
        cfg.mix,
        OPENAI_MEAN,
        OPENAI_STD,
        grid=grid if cfg.dense_weight > 0 else 0,
    )
    loader = torch.utils.data.DataLoader(
        data, batch_size=cfg.batch_size, shuffle=False, num_workers=0, collate_fn=wcd.make_collate(tokenizer)
    )
    model = open_clip.CLIP(**cfg.arch).to(accelerator.device)
    opt = torch.optim.AdamW(_param_groups(model, cfg.weight_decay), lr=cfg.lr, betas=(0.9, 0.98), eps=1e-6)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, _lr_lambda(cfg.steps, cfg.warmup))
    # The model is not wrapped for DDP: the losses read its internals and the CAM loss needs a double
    # backward, neither of which goes through DDP's forward; gradients are averaged across processes by hand.
    opt, loader, sched = accelerator.prepare(opt, loader, sched)
    model.train()
    device, rank, world = accelerator.device, accelerator.process_index, accelerator.num_processes
    losses, dense_losses, cam_losses = [], [], []
    keys, names = wdense.concepts()
    cam_from, cam_gen = int(cfg.cam_start * len(loader)), torch.Generator().manual_seed(cfg.seed + 7919)
    hires_grid = wcd.SCENE // patch
    bar = tqdm(
        loader, total=len(loader), desc="world-clip", disable=not (progress and accelerator.is_main_process)
    )
    for step, (images, tokens, pos, dense) in enumerate(bar):
        use_dense = cfg.dense_weight > 0 and dense is not None
        if use_dense:  # one caption per concept, encoded with the batch's captions
            concept_tokens = tokenizer(wdense.concept_captions(texts, keys, names, cfg.seed, step))
            tokens = torch.cat([tokens, concept_tokens.to(tokens.device)])
        use_cam = use_dense and cfg.cam_weight > 0 and step >= cam_from
        with wcam.capture_ln1(model.visual) if use_cam else contextlib.nullcontext() as acts:
            img, txt, patches = wdense.encode(
                model, images, tokens, cfg.dense_feature if use_dense else "none"
            )
        scale = model.logit_scale.exp()
        loss = multi_positive_loss(img, txt[: len(img)], scale, pos)
        losses.append(float(loss.detach()))
        if use_dense:
            d = torch.stack(
                [wdense.dense_loss(p, txt[len(img) :], scale, dense, cfg.dense_symmetric) for p in patches]
            ).mean()
            dense_losses.append(float(d.detach()))
            loss = loss + cfg.dense_weight * d
        if use_cam:
            terms = [wcam.cam_term(acts["a"], img, txt[len(img) :], dense, len(LANDCOVER), cam_gen)]
            if cfg.cam_hires > 0:  # whole scenes at the stored side, CAM on the finer grid
                rng = np.random.default_rng([cfg.seed, 31, step * world + rank])
                x, dense_hi = (
                    t.to(device)
                    for t in wcam.hires_scenes(pool, cfg.cam_hires, rng, OPENAI_MEAN, OPENAI_STD, hires_grid)
                )
                with resize_pos_embed(model.visual, hires_grid), wcam.capture_ln1(model.visual) as hi:
                    img_hi = F.normalize(model.encode_image(x), dim=-1)
                terms.append(
                    wcam.cam_term(hi["a"], img_hi, txt[len(img) :], dense_hi, len(LANDCOVER), cam_gen)
                )
            terms = [t for t in terms if t is not None]
            if terms:
                c = torch.stack(terms).mean()
                cam_losses.append(float(c.detach()))
                loss = loss + cfg.cam_weight * c
        accelerator.backward(loss)
        average_gradients(accelerator, model)
        opt.step()
        sched.step()
        opt.zero_grad(set_to_none=True)
        with torch.no_grad():
            model.logit_scale.clamp_(0, float(np.log(100)))
        bar.set_postfix(loss=f"{np.mean(losses[-20:]):.3f}")
    accelerator.wait_for_everyone()
    model.eval()
    card = {
        "model": "world-clip",
        "trainer": "python -m dglrsis.trainable.world_clip",
        "config": asdict(cfg),
        "world": {
            "generator": "dglrsis.eval.world.iter_scenes",
            "kinds": ["isaid", "rrsisd"],
            "train_world_seed": WORLD_SEED_OFFSET + cfg.seed,
            "eval_world_seeds": f"< {WORLD_SEED_OFFSET} (benchmark: 7)",
        },
        "pool": pool.summary(),
        "prompt_source": texts.source,
        "final_loss": float(np.mean(losses[-20:])),
        "final_dense_loss": float(np.mean(dense_losses[-20:])) if dense_losses else None,
        "final_cam_loss": float(np.mean(cam_losses[-20:])) if cam_losses else None,
        "logit_scale": float(model.logit_scale.detach().exp()),
        "pool_seconds": round(t_pool, 1),
        "wall_seconds": round(time.time() - t0, 1),
        "torch": torch.__version__,
        "threads": cfg.threads,
    }
    if accelerator.is_main_process:
        _save(model, cfg, out, card)
    return card


def load_world_clip_config(path: str | Path | None = None, overrides: list[str] | None = None):
    """:class:`WorldClipConfig` from a YAML mapping of its fields (``trainable/configs/world_clip.yaml``
    holds the bundled recipe) then ``key=value`` overrides, type-checked like the models' configs
    (:func:`dglrsis.trainable.config.build_config`): an unknown key or a wrong type is an error naming it."""
    from ..config import parse_value, read_yaml
    from ..models.config import check_fields

    values = read_yaml(Path(path)) if path is not None else {}
    for item in overrides or []:
        key, sep, text = item.partition("=")
        if not sep:
            raise DglrsisError(f"override {item!r} is not key=value")
        values[key] = parse_value(text)
    return WorldClipConfig(**check_fields(WorldClipConfig, values, "world_clip"))


def main(argv: list[str] | None = None) -> int:
    import sys

    p = argparse.ArgumentParser(
        prog="python -m dglrsis.trainable.world_clip", description=__doc__.splitlines()[0]
    )
    p.add_argument("--config", help="YAML recipe (trainable/configs/world_clip.yaml: the bundled weights')")
    p.add_argument("overrides", nargs="*", help="key=value overrides of WorldClipConfig, e.g. steps=200")
    p.add_argument(
        "--out", default="dglrsis/weights", help="folder for world-clip.{safetensors,json,card.json}"
    )
    p.add_argument("--no-progress", action="store_true")
    a = p.parse_args(argv)
    try:
        cfg = load_world_clip_config(a.config, a.overrides)
        card = train(cfg, a.out, progress=not a.no_progress)
    except DglrsisError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(json.dumps({k: card[k] for k in ("final_loss", "logit_scale", "pool", "wall_seconds")}))
    return 0
