"""Training/evaluation data for the trainable models.

Sources (all yield H×W×3 uint8 images and H×W uint8 labels, 255 = ignore):

* ``ovrsis``: OVRSISBench-style index-PNG sets (``dglrsis.eval.ovrsisbench``) with a class file or a
  bundled vocabulary name (``prompts/vocab/*.txt``);
* ``isaid``: iSAID raw (colour masks) or converted form (``dglrsis.eval.isaid``);
* ``world``: the synthetic world rendered in memory (``dglrsis.eval.world.iter_scenes``).

Background policy: ``ignore`` removes a class named ``background`` from the class list (its pixels
become 255, other classes shift down); ``class`` keeps it as an ordinary class.

Open vocabulary: ``train_classes`` lists the seen classes; training labels are re-indexed into that
subset and every other class becomes 255, while evaluation uses all classes.

Augmentation (CAT-Seg/detectron2 style, documented choice): the short side is resized to
``input_size × U(scale)`` (``ResizeShortestEdge`` with a continuous range, bilinear for the image,
nearest for the label), then a random ``input_size²`` crop (padding with 0 / 255 when smaller), then
optional horizontal/vertical flips and 90° rotations. Every random draw comes from a per-sample seed
chosen by :class:`StepBatchSampler`, so a given training step always sees the same pixels (exact resume).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from dglrsis.errors import DglrsisError

IGNORE = 255


@dataclass
class Source:
    names: list[str]  # class names, label index order
    items: list[Callable[[], tuple[np.ndarray, np.ndarray]]]  # loaders → (H×W×3 uint8, H×W uint8)
    keys: list[str]  # one id per item


def class_list(spec: str | None) -> list[str]:
    """Canonical class names from a class file path or a bundled vocabulary name (``dglrsis.vocab``);
    ``None`` → iSAID in label order: ``background`` + the bundled ``isaid`` vocabulary (natural spelling)."""
    from dglrsis.vocab import load_vocabulary

    if spec is None:
        return ["background", *load_vocabulary("isaid").names]
    return list(load_vocabulary(spec).names)


def background_lut(names: list[str], policy: str) -> tuple[np.ndarray, list[str]]:
    """(256-entry uint8 lookup table, new class names) for a background policy (ignore | class)."""
    if policy not in ("ignore", "class"):
        raise DglrsisError(f"background policy must be ignore or class, got {policy!r}")
    lut = np.arange(256, dtype=np.uint8)
    lut[len(names) :] = IGNORE
    if policy == "class" or "background" not in names:
        return lut, list(names)
    b = names.index("background")
    lut[b] = IGNORE
    lut[b + 1 : len(names)] = np.arange(b, len(names) - 1, dtype=np.uint8)
    return lut, [n for n in names if n != "background"]


def seen_lut(names: list[str], train_classes: list[str] | None) -> tuple[np.ndarray, list[str]]:
    """(lookup table, seen names): labels of classes outside ``train_classes`` become 255 and the seen
    ones are re-indexed in their original order."""
    lut = np.full(256, IGNORE, np.uint8)
    if not train_classes:
        lut[: len(names)] = np.arange(len(names))
        return lut, list(names)
    unknown = [c for c in train_classes if c not in names]
    if unknown:
        raise DglrsisError(f"train_classes not in the class list: {', '.join(map(str, unknown))}")
    seen = [n for n in names if n in set(train_classes)]
    for j, n in enumerate(seen):
        lut[names.index(n)] = j
    return lut, seen


def training_labels(cfg) -> tuple[Source, np.ndarray, np.ndarray, list[str], list[str]]:
    """The training split of ``cfg`` (a DataConfig) under its class policies:
    (source, training LUT — background policy then seen classes —, evaluation LUT — background policy
    only —, all class names, seen class names indexed by the training LUT)."""
    src = build_source(cfg, cfg.split)
    bg, names = background_lut(src.names, cfg.background)
    seen, seen_names = seen_lut(names, cfg.train_classes)
    return src, seen[bg], bg, names, seen_names


def _load_rgb(path) -> np.ndarray:
    from PIL import Image

    with Image.open(path) as im:
        return np.asarray(im.convert("RGB"))


def build_source(
    cfg, split: str, limit: int | None = None, world_start: int = 0, world_n: int | None = None
) -> Source:
    """A :class:`Source` for ``cfg`` (a DataConfig) and ``split`` (raw class space, before policies)."""
    if cfg.kind == "world":
        from dglrsis.eval.world import iter_scenes

        scenes = list(
            iter_scenes(cfg.world_seed, world_n or cfg.world_n, cfg.world_size, "isaid", world_start)
        )
        return Source(
            class_list(None),
            [(lambda s=s: (s.image, s.class_map)) for s in scenes],
            [f"world_{world_start + i:05d}" for i in range(len(scenes))],
        )
    if cfg.root is None:
        raise DglrsisError(f"data.root is required for data.kind={cfg.kind}")
    if cfg.kind == "isaid":
        from dglrsis.eval.isaid import isaid_samples

        samples = isaid_samples(cfg.root, split, "include", limit)
        return Source(
            class_list(None),
            [(lambda s=s: (_load_rgb(s.image_path), s.label())) for s in samples],
            [s.key for s in samples],
        )
    if cfg.kind == "ovrsis":
        from dglrsis.eval.ovrsisbench import ovrsis_samples

        samples = ovrsis_samples(cfg.root, split, limit)
        return Source(
            class_list(cfg.classes),
            [(lambda s=s: (_load_rgb(s.image_path), s.label())) for s in samples],
            [s.key for s in samples],
        )
    raise DglrsisError(f"unknown data.kind {cfg.kind!r}; choose world, ovrsis or isaid")


def augment(
    image: np.ndarray,
    label: np.ndarray,
    size: int,
    rng: np.random.Generator,
    scale=(0.5, 2.0),
    hflip=True,
    vflip=False,
    rot90=False,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Random resized crop + flips. Returns (3×size×size float image in [0, 255], size×size long label)."""
    img = torch.from_numpy(np.ascontiguousarray(image)).permute(2, 0, 1).float()[None]
    lab = torch.from_numpy(np.ascontiguousarray(label)).float()[None, None]
    h, w = label.shape
    short = size * rng.uniform(*scale)
    nh, nw = max(1, round(h * short / min(h, w))), max(1, round(w * short / min(h, w)))
    img = F.interpolate(img, (nh, nw), mode="bilinear", align_corners=False)[0]
    lab = F.interpolate(lab, (nh, nw), mode="nearest")[0, 0].long()
    ph, pw = max(0, size - nh), max(0, size - nw)
    if ph or pw:
        img = F.pad(img, (0, pw, 0, ph), value=0.0)
        lab = F.pad(lab, (0, pw, 0, ph), value=IGNORE)
    y0 = int(rng.integers(0, img.shape[1] - size + 1))
    x0 = int(rng.integers(0, img.shape[2] - size + 1))
    img, lab = img[:, y0 : y0 + size, x0 : x0 + size], lab[y0 : y0 + size, x0 : x0 + size]
    if hflip and rng.random() < 0.5:
        img, lab = img.flip(-1), lab.flip(-1)
    if vflip and rng.random() < 0.5:
        img, lab = img.flip(-2), lab.flip(-2)
    if rot90:
        k = int(rng.integers(0, 4))
        img, lab = torch.rot90(img, k, (1, 2)), torch.rot90(lab, k, (0, 1))
    return img.contiguous(), lab.contiguous()


class SegDataset(torch.utils.data.Dataset):
    """Items are ``(index, seed)`` pairs (from :class:`StepBatchSampler`) for training, or plain indices
    for evaluation (no augmentation, labels only remapped).

    Returns dict(image=3×S×S float normalised, label=S×S long, key=str).
    """

    def __init__(
        self,
        source: Source,
        lut: np.ndarray,
        size: int,
        mean,
        std,
        train: bool = True,
        aug: dict | None = None,
    ):
        self.source, self.lut, self.size, self.train = source, lut, size, train
        self.mean = torch.tensor(mean, dtype=torch.float32).view(3, 1, 1) * 255
        self.std = torch.tensor(std, dtype=torch.float32).view(3, 1, 1) * 255
        self.aug = aug or {}

    def __len__(self) -> int:
        return len(self.source.items)

    def __getitem__(self, item):
        index, seed = item if isinstance(item, tuple) else (item, None)
        image, label = self.source.items[index]()
        label = self.lut[label]
        if self.train:
            img, lab = augment(image, label, self.size, np.random.default_rng(seed), **self.aug)
        else:
            img = torch.from_numpy(np.ascontiguousarray(image)).permute(2, 0, 1).float()
            lab = torch.from_numpy(label.astype(np.int64))
        return {"image": (img - self.mean) / self.std, "label": lab, "key": self.source.keys[index]}


class StepBatchSampler(torch.utils.data.Sampler):
    """Deterministic per-step batches: step ``s`` draws its global batch of ``batch_size`` (index, seed)
    pairs from ``default_rng([seed, s])``; each (micro-step, process) pair gets its own slice.

    Yields ``grad_accum`` micro-batches per step for steps ``start .. total-1`` — a resumed run starts at
    the saved step and sees exactly the batches of an uninterrupted one, for any number of processes.
    """

    def __init__(
        self,
        n: int,
        batch_size: int,
        seed: int,
        start: int,
        total: int,
        grad_accum: int = 1,
        num_processes: int = 1,
        rank: int = 0,
    ):
        if batch_size % (grad_accum * num_processes):
            raise DglrsisError(
                f"batch_size {batch_size} is not divisible by grad_accum × processes "
                f"({grad_accum} × {num_processes})"
            )
        self.n, self.batch, self.seed, self.start, self.total = n, batch_size, seed, start, total
        self.accum, self.procs, self.rank = grad_accum, num_processes, rank
        self.micro = batch_size // (grad_accum * num_processes)

    def __len__(self) -> int:
        return max(0, self.total - self.start) * self.accum

    def __iter__(self):
        for s in range(self.start, self.total):
            rng = np.random.default_rng([self.seed, s])
            idx = rng.permutation(max(self.n, self.batch))[: self.batch] % self.n
            seeds = rng.integers(0, 2**31 - 1, self.batch)
            for m in range(self.accum):
                o = (m * self.procs + self.rank) * self.micro
                yield [
                    (int(i), int(z))
                    for i, z in zip(idx[o : o + self.micro], seeds[o : o + self.micro], strict=False)
                ]


def collate(items: list[dict]) -> dict:
    """Stack images (B×3×S×S) and labels (B×S×S); keys as a list."""
    return {
        "image": torch.stack([i["image"] for i in items]),
        "label": torch.stack([i["label"] for i in items]),
        "key": [i["key"] for i in items],
    }
