"""LVTA — Local Visual–Textual Alignment (DGL-RSIS, OVSS branch).

For each class-agnostic mask proposal a *context-aware crop* is cut (the mask's box enlarged by a
context ratio, made square, background outside the mask treated: keep / blur / mean-fill / mask-out),
resized to CLIP's input and encoded in batches. Text features come from knowledge-enriched prompts
(RS templates × class synonyms + short visual descriptions, :func:`dglrsis.vocab.build_prompts`),
averaged per class and cached per vocabulary. Mask classification is a softmax over the cosine
similarities scaled by the CLIP model's own learned logit scale (its calibrated temperature).

Pixel assignment when proposals overlap: every pixel takes the class of the most confident covering
proposal (ties → the smaller proposal), background proposals included (their label −1 and confidence
come from :mod:`dglrsis.background`); see :func:`assign_pixels`. The paper does not spell these rules
out; these are our choices.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np
import torch
import torch.nn.functional as F

from .errors import DglrsisError

BACKGROUNDS = ("keep", "blur", "mean", "mask")


@dataclass
class LVTAConfig:
    context: bool = True  # enlarge the mask box by `context_ratio` (False: tight box; ablation)
    context_ratio: float = 1.5  # side of the square crop ÷ the longer side of the mask's box
    background: str = "blur"  # outside-mask treatment: keep | blur | mean | mask (ablation: keep)
    blur_sigma: float = 4.0  # Gaussian sigma (pixels of the source image) for background="blur"
    knowledge: bool = True  # add RS knowledge descriptions to the prompts (ablation)
    synonyms: bool = True  # prompt every synonym of a class, not only its canonical name
    templates: str = "rs"  # prompt template set: rs | imagenet80 | simple | a file path
    batch_size: int = 64  # crops per CLIP forward
    min_side: int = 8  # crops smaller than this (pixels) are grown to it


# --------------------------------------------------------------------------------------------- crops
def crop_box(box: np.ndarray, cfg: LVTAConfig) -> tuple[float, float, float, float]:
    """Square crop window (XYXY, float pixels, may leave the image) for a mask box ``XYXY``."""
    x0, y0, x1, y1 = (float(v) for v in box)
    cx, cy = (x0 + x1) / 2, (y0 + y1) / 2
    side = max(x1 - x0, y1 - y0, 1.0)
    if cfg.context:
        side *= cfg.context_ratio
    side = max(side, float(cfg.min_side))
    return cx - side / 2, cy - side / 2, cx + side / 2, cy + side / 2


def _gaussian_blur(img: torch.Tensor, sigma: float) -> torch.Tensor:
    """Separable Gaussian blur of a ``1×C×H×W`` tensor: kernel radius ``int(3σ)``, reflect padding
    (the edge pixel not repeated). Computed by ``scipy.ndimage.correlate1d`` (``mode="mirror"`` is
    torch's ``"reflect"``), about twice as fast as two ``conv1d`` passes on CPU; images no larger than the
    radius use the ``conv1d`` form with the kernel cut to the image."""
    if sigma <= 0:
        return img
    radius = max(1, int(3 * sigma))
    x = torch.arange(-radius, radius + 1, dtype=img.dtype)
    k = torch.exp(-(x**2) / (2 * sigma**2))
    k = k / k.sum()
    c = img.shape[1]
    h, w = img.shape[-2:]
    if min(h, w) > radius and img.device.type == "cpu":
        from scipy.ndimage import correlate1d

        a = img[0].numpy()
        kn = k.numpy()
        out = correlate1d(correlate1d(a, kn, axis=2, mode="mirror"), kn, axis=1, mode="mirror")
        return torch.from_numpy(out)[None]
    k = k.to(img.device)
    pad_x, pad_y = min(radius, w - 1), min(radius, h - 1)
    if pad_x > 0:
        img = F.conv1d(
            F.pad(img.reshape(-1, 1, w), (pad_x, pad_x), mode="reflect"),
            k[radius - pad_x : radius + pad_x + 1].view(1, 1, -1),
        ).reshape(1, c, h, w)
    if pad_y > 0:
        t = img.transpose(2, 3).reshape(-1, 1, h)
        t = F.conv1d(
            F.pad(t, (pad_y, pad_y), mode="reflect"), k[radius - pad_y : radius + pad_y + 1].view(1, 1, -1)
        )
        img = t.reshape(1, c, w, h).transpose(2, 3)
    return img


def context_crops(
    image: np.ndarray,
    props,
    size: int,
    mean: tuple,
    std: tuple,
    cfg: LVTAConfig,
    boxes: np.ndarray | None = None,
) -> torch.Tensor:
    """Context-aware crops of every proposal, normalised for CLIP.

    image: H×W×3 uint8; props: :class:`dglrsis.masks.Proposals` on it; boxes: N×4 XYXY pixels the crop
    windows are built around (default: the proposals' own boxes). Returns ``N×3×size×size`` float32.
    Outside the image the crop is filled with the CLIP mean colour (0 after normalisation).
    """
    img, bg = _normalised(image, mean, std, cfg)
    boxes = props.boxes if boxes is None else np.asarray(boxes)
    return _crops(img, bg, props, range(len(props)), boxes, size, cfg)


def _normalised(
    image: np.ndarray, mean: tuple, std: tuple, cfg: LVTAConfig
) -> tuple[torch.Tensor, torch.Tensor]:
    """(1×3×H×W CLIP-normalised image, the background it is blended with outside a mask)."""
    if cfg.background not in BACKGROUNDS:
        raise DglrsisError(
            f"unknown background treatment {cfg.background!r}; use one of {', '.join(BACKGROUNDS)}"
        )
    m = torch.tensor(mean, dtype=torch.float32).view(1, 3, 1, 1)
    s = torch.tensor(std, dtype=torch.float32).view(1, 3, 1, 1)
    img = (torch.from_numpy(np.ascontiguousarray(image)).permute(2, 0, 1)[None].float() / 255.0 - m) / s
    if cfg.background == "blur":
        bg = _gaussian_blur(img, cfg.blur_sigma)
    elif cfg.background == "mean":
        bg = img.mean(dim=(2, 3), keepdim=True).expand_as(img)
    else:  # "mask": the CLIP mean colour; "keep": unused
        bg = torch.zeros(1, 3, 1, 1).expand_as(img)
    return img, bg


def _crops(img, bg, props, idx, boxes: np.ndarray, size: int, cfg: LVTAConfig) -> torch.Tensor:
    """``len(idx)×3×size×size`` crops of the proposals ``idx`` (see :func:`context_crops`)."""
    h, w = img.shape[-2:]
    idx = list(idx)
    out = torch.zeros(len(idx), 3, size, size)
    for k, i in enumerate(idx):
        x0, y0, x1, y1 = crop_box(boxes[i], cfg)
        ix0, iy0 = int(np.floor(x0)), int(np.floor(y0))
        ix1, iy1 = max(int(np.ceil(x1)), ix0 + 1), max(int(np.ceil(y1)), iy0 + 1)
        cx0, cy0, cx1, cy1 = max(ix0, 0), max(iy0, 0), min(ix1, w), min(iy1, h)
        if cx1 <= cx0 or cy1 <= cy0:
            continue
        patch = img[:, :, cy0:cy1, cx0:cx1]
        if cfg.background != "keep":
            mk = torch.from_numpy(props.window(i, cx0, cy0, cx1, cy1))[None, None].float()
            patch = patch * mk + bg[:, :, cy0:cy1, cx0:cx1] * (1 - mk)
        patch = F.pad(patch, (cx0 - ix0, ix1 - cx1, cy0 - iy0, iy1 - cy1))  # outside image → mean colour
        out[k] = F.interpolate(
            patch, size=(size, size), mode="bilinear", align_corners=False, antialias=True
        )[0]
    return out


def encode_crops(clip, crops: torch.Tensor, batch_size: int) -> torch.Tensor:
    """CLIP image embeddings of ``N×3×S×S`` crops in batches → ``N×D`` (L2-normalised)."""
    if len(crops) == 0:
        return torch.zeros(0, clip.embed_dim)
    return torch.cat(
        [clip.encode_images(crops[i : i + batch_size]) for i in range(0, len(crops), batch_size)]
    )


def embed_proposals(image: np.ndarray, props, clip, cfg: LVTAConfig) -> torch.Tensor:
    """``N×D`` CLIP embeddings of the context crops (made with ``cfg``) of ``props`` on ``image``.

    Crops are cut and encoded ``cfg.batch_size`` at a time, so memory holds one batch of crops.
    """
    if len(props) == 0:
        return torch.zeros(0, clip.embed_dim)
    img, bg = _normalised(image, clip.mean, clip.std, cfg)
    out = []
    for start in range(0, len(props), cfg.batch_size):
        idx = range(start, min(start + cfg.batch_size, len(props)))
        out.append(clip.encode_images(_crops(img, bg, props, idx, props.boxes, clip.image_size, cfg)))
    return torch.cat(out)


def masked_embeddings(state, clip) -> torch.Tensor:
    """``N×D`` embeddings of the *masked* crops of ``state`` (everything outside each proposal blanked).

    Encoded on first use and kept in ``state.masked_emb``; equal to the context crops when those are
    already masked (``background="mask"``).
    """
    if state.lvta.background == "mask":
        return state.crop_emb
    if state.masked_emb is None:
        cfg = replace(state.lvta, background="mask")
        state.masked_emb = embed_proposals(state.image, state.proposals, clip, cfg)
    return state.masked_emb


# --------------------------------------------------------------------------------------------- text
class TextBank:
    """Text embeddings of knowledge-enriched prompts, cached per (classes, settings).

    Each class has one embedding per synonym (the mean of its template prompts; the canonical name's
    also averages the knowledge prompts); a class's score is the max over its synonyms (SegEarth-OV).
    """

    def __init__(self, clip):
        self.clip = clip
        self._cache: dict[tuple, tuple[torch.Tensor, torch.Tensor]] = {}

    def clear(self) -> None:
        """Forget every cached embedding (benchmarks time the text side afresh)."""
        self._cache.clear()

    def prompt_groups(
        self, class_names: list[str], cfg: LVTAConfig, synonyms: list[list[str]] | None = None
    ) -> list[list[list[str]]]:
        """Per class, per synonym, the prompts; ``synonyms`` (per class) replaces the bundled ones."""
        from .vocab import Vocabulary, build_prompt_groups, synonyms_for

        if synonyms is None or not cfg.synonyms:
            synonyms = [synonyms_for(n) if cfg.synonyms else [n] for n in class_names]
        vocab = Vocabulary(names=list(class_names), synonyms=[list(s) for s in synonyms], source="query")
        return build_prompt_groups(
            vocab, templates=cfg.templates, synonyms=cfg.synonyms, knowledge=cfg.knowledge
        )

    def embed(
        self, class_names: list[str], cfg: LVTAConfig, synonyms: list[list[str]] | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """(``M×D`` L2-normalised synonym embeddings, ``M`` owning class index).

        ``synonyms``: per class, the names to prompt it with (default: the bundled synonyms).
        """
        syn_key = None if synonyms is None else tuple(tuple(s) for s in synonyms)
        key = (tuple(class_names), syn_key, cfg.templates, cfg.synonyms, cfg.knowledge)
        if key not in self._cache:
            groups = [
                (k, g) for k, gs in enumerate(self.prompt_groups(class_names, cfg, synonyms)) for g in gs
            ]
            flat = [p for _, g in groups for p in g]
            emb = self.clip.encode_text(flat)
            out, i = [], 0
            for _, g in groups:
                out.append(F.normalize(emb[i : i + len(g)].mean(0), dim=-1))
                i += len(g)
            self._cache[key] = (torch.stack(out), torch.tensor([k for k, _ in groups]))
        return self._cache[key]


def logit_scale(clip) -> float:
    """The CLIP model's learned softmax temperature (100 for OpenAI CLIP)."""
    ls = getattr(clip.model, "logit_scale", None)
    return float(ls.detach().exp()) if ls is not None else 100.0


def classify(
    crop_emb: torch.Tensor, text_emb: torch.Tensor, scale: float, owner: torch.Tensor | None = None
) -> torch.Tensor:
    """Calibrated mask-classification probabilities ``N×K`` = softmax(scale · cos(crop, class)), where a
    class's cosine is the max over its synonym embeddings (``owner[m]`` = class of embedding ``m``)."""
    sims = crop_emb @ text_emb.T  # N×M
    if owner is not None:
        k = int(owner.max()) + 1 if len(owner) else 0
        per = torch.full((sims.shape[0], k), -2.0)
        sims = per.scatter_reduce(1, owner.expand(sims.shape[0], -1), sims, reduce="amax")
    return (scale * sims).softmax(dim=-1)


def classify_proposals(state, models, class_names: list[str], masked: bool = False) -> torch.Tensor:
    """``N×K`` probabilities of every proposal of ``state`` over ``class_names`` (no background).

    ``state``: :class:`dglrsis.state.ImageState`; ``models``: :class:`dglrsis.state.Models`. ``masked``:
    classify the masked crops (:func:`masked_embeddings`) instead of the context crops.
    """
    text, owner = models.text.embed(class_names, state.lvta)
    emb = masked_embeddings(state, models.clip) if masked else state.crop_emb
    return classify(emb, text, logit_scale(models.clip), owner)


# --------------------------------------------------------------------------------------------- pixels
def assign_pixels(props, labels: np.ndarray, confidence: np.ndarray, fill_uncovered: bool) -> np.ndarray:
    """Per-pixel label map from overlapping labelled proposals.

    props: :class:`dglrsis.masks.Proposals`; labels: N int (-1 = background); confidence: N float.
    Each pixel takes the label of the most confident covering proposal; ties go to the smaller one.
    Uncovered pixels are -1, or — with ``fill_uncovered`` — the label of the nearest covered pixel.
    Returns H×W int32.
    """
    h, w = props.shape
    out = np.full((h, w), -1, dtype=np.int32)
    if len(props) == 0:
        return out
    order = np.lexsort((-props.areas, confidence))  # ascending confidence, larger first → best written last
    covered = np.zeros((h, w), dtype=bool)
    for i in order:
        props.paste(out, i, labels[i])
        props.paste(covered, i, True)
    if fill_uncovered and covered.any() and not covered.all():
        from scipy.ndimage import distance_transform_edt

        _, (iy, ix) = distance_transform_edt(~covered, return_indices=True)
        out = out[iy, ix]
    return out
