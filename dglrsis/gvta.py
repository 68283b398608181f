"""GVTA — Global Visual–Textual Alignment (DGL-RSIS, RES branch).

1. **GLD text split** (:func:`dglrsis.text.decompose`): local class nouns + global context tokens.
2. **Global-enhanced Grad-CAM**: Grad-CAM of the CLIP image–text similarity where the text embedding is
   the expression's, enhanced with one embedding per global token composed with the local noun
   ("white ship", "ship on the left"): ``t = normalise(t_expr + λ·Σ_i t_i)``. (The paper names the
   mechanism but not its formula; this is our reading. Switch: ``global_enhance``.)
3. **Cross-scale fusion**: the CAM of the whole image (scale 1) plus CAMs of overlapping crops at finer
   scales (scale s → windows of side s·max(H, W) on a grid with 50 % overlap), pasted back with a Hann
   taper per window (:func:`window_weight`: no steps where windows meet), each scale min–max
   normalised, then averaged over scales. (Switch: ``scales``.)
4. **Mask selection**: every cached proposal is scored by its probability for the local noun and by its
   agreement with the CAM (IoU of the proposal with the CAM's hot region, CAM ≥ ``cam_threshold``);
   nested proposals are grouped into instances (greedy by score, a proposal covered ≥ 50 % by a better
   one joins it); instances whose noun probability is far below the best one's are dropped, the rest are
   scored by each global token (position, size rank, colour, relation to the anchor's best mask,
   ordinal). The best instance is returned, or the union of the good ones when the expression asks for
   several. (Switches: ``cam``, ``modifiers``, ``mask_crops``.)

   The noun probability is the geometric mean of the LVTA context-crop probability and that of a
   *masked* crop (same window, everything outside the proposal blanked): a fragment's context crop sees
   the whole object around it and scores like the object, its masked crop does not. The background land
   covers (``background``, the vocabulary the OVSS background policy uses) compete in both softmaxes, so
   a patch of trees or water is not a candidate for the noun. Each chosen instance is then *completed*:
   adjacent proposals join it while their union raises its noun probability (``complete``; superpixels
   split a vehicle from its shadow, a windmill's hub from its blades). Several instances are taken one
   after the other, each completed before the next, and a candidate lying mostly inside one taken already
   is a piece of it, not another instance (:func:`take_instances`). The paper selects by the CAM and
   is silent on how class evidence enters; the masked crop, the land-cover competition, the completion,
   the CAM-IoU statistic and the weights are our choices, measured on synthetic worlds other than the
   reported one (README, RES figures). (Switches: ``mask_crops``, ``background``, ``complete``.)
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F

from .lvta import classify_proposals
from .masks import Proposals
from .proposals import REFERENCE_AREA

COLOURS = {  # named colour → RGB prototype
    "white": (235, 235, 235),
    "grey": (128, 128, 128),
    "gray": (128, 128, 128),
    "black": (25, 25, 25),
    "red": (200, 40, 40),
    "blue": (40, 70, 200),
    "green": (40, 150, 60),
    "yellow": (230, 210, 40),
    "orange": (235, 130, 30),
    "brown": (130, 85, 45),
    "dark": (45, 45, 45),
    "light": (210, 210, 210),
    "silver": (190, 190, 195),
    "purple": (120, 50, 150),
}


NEAR_GAP = 0.03  # a gap up to this fraction of max(H, W) is "next to" a land-cover region (~15 px of 512)


@dataclass
class GVTAConfig:
    cam: bool = True  # use Grad-CAM in mask scoring (ablation "no CAM")
    scales: tuple = (1.0, 0.5)  # cross-scale Grad-CAM window sizes relative to the image (ablation: (1.0,))
    global_enhance: bool = True  # enhance the CAM text embedding with the global tokens (ablation)
    enhance_weight: float = 0.5  # λ in t = normalise(t_expr + λ Σ t_i)
    modifiers: bool = True  # score instances by the global tokens (ablation "no modifier scoring")
    vocabulary: str = "rrsisd"  # vocabulary for mapping nouns and competing classes in LVTA
    w_class: float = 1.0  # weight of the LVTA probability of the local noun
    w_cam: float = 1.0  # weight of the proposal's IoU with the CAM's hot region
    cam_threshold: float = 0.5  # the CAM's hot region: fused CAM ≥ this (the CAM is min–max normalised)
    mask_crops: bool = True  # noun probability also from masked crops (geometric mean; ablation)
    w_mod: float = 0.75  # weight of the mean modifier score
    group_overlap: float = 0.5  # a proposal covered this much by a better one joins its instance
    multi_keep: float = 0.6  # multiple targets: keep instances scoring ≥ this × the best
    distinct: float = 0.2  # multiple targets: a further instance of ≤ distinct_px is skipped when this
    # share of the ring around it has its colour: a piece of a larger region (a wedge of trees where land
    # covers meet) is no vehicle, which stands apart from the road around it (0 = off; ablation)
    distinct_px: int = 350  # the largest instance so tested, in pixels per 512² of image
    class_keep: float = 0.5  # candidate instances need a noun probability ≥ this × the best one
    size_keep: float = 0.8  # size ranks only the plausible candidates, the others score 0 ("the
    # smallest court" is not a 50-px court-coloured speck; 0 = rank all): noun + CAM score ≥ this × the
    # best, or noun probability ≥ this × the best with the CAM lit on the candidate (size_lit)
    size_lit: float = 0.25  # "lit": the CAM's peak on the candidate ≥ this (> 1 = noun + CAM only)
    min_confidence: float = 0.2  # below this noun probability of the best candidate: "not found"
    background: str = "landcover"  # land covers competing with the classes for each proposal ("" = none;
    # a bundled name or a vocabulary file): a patch of trees beside a harbor is no harbor candidate
    complete: bool = True  # grow each chosen instance by adjacent proposals that make it more the noun
    complete_rounds: int = 4  # at most this many pieces joined per instance
    complete_gain: float = 0.02  # a piece joins when it raises the noun probability by more than this


@dataclass
class ReferResult:
    mask: np.ndarray  # H×W bool, the referred region (the best candidate even when not found)
    cam: np.ndarray  # H×W float32 in [0, 1] (zeros when CAM is off)
    decomposition: object  # dglrsis.text.Decomposition
    target: str  # the class noun used for LVTA
    selected: list[int] = field(default_factory=list)  # proposal indices in the mask
    candidates: list[dict] = field(default_factory=list)  # scored instances, best first (explain())
    confidence: float = 0.0  # the best candidate's noun probability (LVTA, in [0, 1])
    found: bool = True  # confidence ≥ GVTAConfig.min_confidence

    def to_json(self) -> dict:
        return {
            "text": self.decomposition.text,
            "target": self.target,
            "found": self.found,
            "confidence": round(float(self.confidence), 4),
            "selected": self.selected,
            "decomposition": self.decomposition.to_json(),
            "candidates": self.candidates,
            "area": int(self.mask.sum()),
        }


def explain(result: ReferResult, top: int = 5) -> str:
    """The top candidates as a readable table: total = noun + CAM + modifiers (each modifier's own
    score in [0, 1] is listed; the modifier term is ``w_mod`` × their mean)."""
    lines = [
        f"{'':2}{'rank':>4} {'box (x0,y0,x1,y1)':>22} {'area':>7} {'total':>6} {'noun':>6} "
        f"{'cam':>6} {'mods':>6}  modifier scores"
    ]
    for c in result.candidates[:top]:
        mods = ", ".join(f"{k} {v:.2f}" for k, v in c["modifier_scores"].items())
        if "instance_area" in c:  # size ranks the area of the touching pieces the candidate belongs to
            mods += f" (instance {c['instance_area']} px{'' if c['size_ranked'] else ', not plausible'})"
        if "ring_same" in c:  # multiple targets: a small one whose ring has its colour is a piece
            mods += f" (ring {c['ring_same']:.0%} its colour)"
        box = ",".join(str(v) for v in c["box"])
        lines.append(
            f"{'*' if c['selected'] else ' ':2}{c['rank']:>4} {box:>22} {c['area']:>7} {c['score']:>6.3f} "
            f"{c['noun']:>6.3f} {c['cam']:>6.3f} {c['modifiers']:>6.3f}  {mods}"
        )
    return "\n".join(lines)


# --------------------------------------------------------------------------------------------- CAM
def _square_resize(image: np.ndarray, size: int, mean, std) -> tuple[torch.Tensor, int]:
    """Pad ``h×w×3`` uint8 to a square (mean colour), resize to ``size``; returns 1×3×S×S and the side."""
    h, w = image.shape[:2]
    side = max(h, w)
    m = torch.tensor(mean).view(1, 3, 1, 1)
    s = torch.tensor(std).view(1, 3, 1, 1)
    t = (torch.from_numpy(np.ascontiguousarray(image)).permute(2, 0, 1)[None].float() / 255 - m) / s
    t = F.pad(t, (0, side - w, 0, side - h))
    return F.interpolate(t, size=(size, size), mode="bilinear", align_corners=False, antialias=True), side


def _windows(h: int, w: int, scale: float) -> list[tuple[int, int, int, int]]:
    """Square windows (x0, y0, x1, y1) of side scale·max(h, w) covering the image with 50 % overlap."""
    side = max(2, int(round(scale * max(h, w))))
    if side >= max(h, w):
        return [(0, 0, w, h)]
    step = max(1, side // 2)
    xs = sorted({*range(0, max(w - side, 0) + 1, step), max(w - side, 0)})
    ys = sorted({*range(0, max(h - side, 0) + 1, step), max(h - side, 0)})
    return [(x, y, min(x + side, w), min(y + side, h)) for y in ys for x in xs]


def window_weight(side: int, single: bool = False) -> np.ndarray:
    """``side×side`` blending weight of one CAM window: a separable Hann taper ``sin²(π(u+½)/side)``.

    Each window's Grad-CAM is min–max normalised on its own, so pasting windows with box weights leaves a
    step wherever one window ends and the next begins (at x = 256 and y = 256 for a 512 px image at scale
    0.5). The taper falls to ~0 at a window's edges, so the fused map is continuous there; with the 50 %
    overlap of :func:`_windows` two neighbouring tapers sum to 1, and dividing by the summed weight keeps
    the image borders (covered by one window) unweighted. ``single``: one window covers the image → ones.
    """
    if single:
        return np.ones((side, side), np.float32)
    u = np.sin(np.pi * (np.arange(side, dtype=np.float64) + 0.5) / side) ** 2
    u = np.maximum(u, 1e-3).astype(np.float32)
    return np.outer(u, u)


def cross_scale_cam(
    clip, image: np.ndarray, text_emb: torch.Tensor, scales=(1.0, 0.5), cache: dict | None = None
) -> np.ndarray:
    """Fused Grad-CAM ``H×W`` in [0, 1] of ``image`` (H×W×3 uint8) for a ``1×D`` text embedding.

    The windows of a scale go through CLIP as one batch. ``cache`` (a dict, e.g. the image state's
    ``cam_features``) keeps each scale's text-independent forward (:func:`dglrsis.cam.cam_features`), so a
    later expression on the same image only pays the explained block forward and backward.
    """
    from .cam import cam_features, gradcam_from_features

    h, w = image.shape[:2]
    fused = np.zeros((h, w), np.float32)
    cache = {} if cache is None else cache
    for scale in scales:
        key = (float(scale), clip.image_size, id(clip))
        if key not in cache:
            wins = _windows(h, w, scale)
            batch, sides = zip(
                *[
                    _square_resize(image[y0:y1, x0:x1], clip.image_size, clip.mean, clip.std)
                    for x0, y0, x1, y1 in wins
                ],
                strict=True,
            )
            cache[key] = (wins, sides, cam_features(clip, torch.cat(batch)))
        wins, sides, feats = cache[key]
        cams = gradcam_from_features(clip, feats, text_emb)
        acc = np.zeros((h, w), np.float32)
        wsum = np.zeros((h, w), np.float32)
        for (x0, y0, x1, y1), side, cam in zip(wins, sides, cams, strict=True):
            c = torch.as_tensor(cam, dtype=torch.float32)[None, None]
            c = F.interpolate(c, size=(side, side), mode="bilinear", align_corners=False)[0, 0].numpy()
            wt = window_weight(side, single=len(wins) == 1)[: y1 - y0, : x1 - x0]
            acc[y0:y1, x0:x1] += wt * c[: y1 - y0, : x1 - x0]
            wsum[y0:y1, x0:x1] += wt
        level = acc / np.maximum(wsum, 1e-12)
        rng = level.max() - level.min()
        fused += (level - level.min()) / rng if rng > 1e-8 else 0.0
    return fused / max(len(scales), 1)


def enhanced_text_embedding(clip, dec, target: str, cfg: GVTAConfig) -> torch.Tensor:
    """``1×D`` text embedding of the expression, enhanced with its global tokens (module docstring)."""
    texts = [dec.text]
    if cfg.global_enhance:
        texts += [
            f"{g.text} {target}" if g.kind in ("colour", "size", "multiplicity") else f"{target} {g.text}"
            for g in dec.global_
            if not (g.kind == "multiplicity" and g.value.get("n") == "some")  # the plural noun itself
        ]
    emb = clip.encode_text(texts)
    t = emb[0] + cfg.enhance_weight * emb[1:].sum(0) if len(texts) > 1 else emb[0]
    return F.normalize(t, dim=-1)[None]


# --------------------------------------------------------------------------------------------- modifiers
def _rank_score(values: np.ndarray, higher_is_better: bool, method: str = "max") -> np.ndarray:
    """Scores in [0, 1] by rank (best → 1, worst → 0; a single value scores 1). ``method`` is scipy's
    ``rankdata`` tie rule: ``"max"`` gives equal values the better rank; ``"dense"`` ranks the distinct
    values only, evenly between 0 and 1 — sizes rank instances, not the pieces they are split into, so
    three pieces of the largest court do not lift it to the middle of the ranking."""
    from scipy.stats import rankdata

    r = rankdata(values if higher_is_better else -values, method=method)
    top = r.max(initial=1)
    return (r - 1) / (top - 1) if top > 1 else np.ones(len(values))


def size_plausible(score: np.ndarray, p_noun: np.ndarray, cam_peak: np.ndarray, cfg) -> np.ndarray:
    """``N`` bool: the candidates (leaders, with noun + CAM ``score``, noun probability ``p_noun`` and
    the CAM's peak on each, ``cam_peak``) that size ranks: those scoring ≥ ``cfg.size_keep`` × the best,
    and those whose noun probability is ≥ ``cfg.size_keep`` × the best one's and whom the CAM lights
    (peak ≥ ``cfg.size_lit``). The CAM term is an IoU with the hot region, which a small instance cannot
    reach even when the CAM peaks on it, and the CAM of "the smallest X" lights the largest X most: by
    score alone the true smallest one drops out. A speck the CAM does not light stays out."""
    ok = score >= cfg.size_keep * score.max(initial=0)
    return ok | ((p_noun >= cfg.size_keep * p_noun.max(initial=0)) & (cam_peak >= cfg.size_lit))


def _axis_score(c: np.ndarray, want: str | None) -> np.ndarray:
    """Position score of normalised coordinates ``c`` (0 = left/top) for left/right/top/bottom/center."""
    if want in ("left", "top"):
        return 0.5 * _rank_score(-c, True) + 0.5 * (1 - c)
    if want in ("right", "bottom"):
        return 0.5 * _rank_score(c, True) + 0.5 * c
    if want == "center":
        return 1 - 2 * np.abs(c - 0.5)
    return np.ones_like(c)


def modifier_scores(inst: dict, tokens, image: np.ndarray, anchors=None) -> tuple[np.ndarray, dict]:
    """Per-instance mean score over the global tokens and each scoring token's own ``n`` scores
    (``{"kind: text": array}``); ``inst`` holds arrays cx, cy, area, rgb (n-long) and, for region
    anchors, ``in_anchor`` / ``anchor_dist`` per relation token index; ``anchors`` maps a relation
    token's index to its :class:`Anchor`."""
    h, w = image.shape[:2]
    cx, cy = inst["cx"] / w, inst["cy"] / h
    anchors = anchors or {}
    parts: dict[str, np.ndarray] = {}
    for k, g in enumerate(tokens):
        v = g.value if isinstance(g.value, dict) else {}
        label = f"{g.kind}: {g.text}"
        if g.kind == "position":
            part = _axis_score(cx, _norm_dir(v.get("x"))) * _axis_score(cy, _norm_dir(v.get("y")))
        elif g.kind == "size":
            want_small = (v.get("extreme") or v.get("degree") or "") in (
                "smallest",
                "small",
                "tiny",
                "short",
                "shortest",
            )
            part = np.zeros(len(cx))
            ok = inst.get("plausible", np.ones(len(cx), bool))
            part[ok] = _rank_score(inst["area"][ok], not want_small, "dense")
        elif g.kind == "colour":
            proto = COLOURS.get(str(g.value).lower() if not isinstance(g.value, dict) else "", None)
            if proto is None:
                continue
            d = np.linalg.norm(inst["rgb"] - np.array(proto, dtype=np.float32), axis=1) / 441.7
            part = 0.5 * np.exp(-d / 0.15) + 0.5 * _rank_score(-d, True)
        elif g.kind == "relation" and k in anchors:
            part = _relation_score(inst, v.get("type"), anchors[k], k, w, h)
        elif g.kind == "ordinal":
            key = {"left": cx, "right": -cx, "top": cy, "bottom": -cy}.get(_norm_dir(v.get("direction")), cx)
            n = int(v.get("n") or 1)
            order = np.argsort(key, kind="stable")
            part = np.zeros(len(key))
            if n - 1 < len(order):
                part[order[n - 1]] = 1.0
        else:
            continue
        parts[label if label not in parts else f"{label} ({k})"] = np.asarray(part, np.float64)
    if not parts:
        return np.zeros(len(cx)), parts
    return np.mean(list(parts.values()), axis=0), parts


@dataclass
class Anchor:
    """Where a relation's anchor lies: ``centroid`` (x, y) pixels, and for land-cover / free anchors
    the ``region`` (H×W bool) its proposals cover."""

    centroid: tuple[float, float]
    region: np.ndarray | None = None


def _norm_dir(d):
    return {"middle": "center", "centre": "center", "upper": "top", "lower": "bottom"}.get(d, d)


def _relation_score(inst: dict, kind: str | None, anchor: Anchor, k: int, w: int, h: int) -> np.ndarray:
    """Relation score in [0, 1] of every instance to ``anchor``: near = close to the anchor (the nearest
    anchor pixel for a region, else its centroid); above/below/left_of/right_of = near × on that side of
    the anchor's centroid; on = share of the instance inside the anchor region (centroid distance for
    an object anchor); across = overlapping the region while reaching out of it."""
    ax, ay = anchor.centroid
    dx, dy = (inst["cx"] - ax) / w, (inst["cy"] - ay) / h
    dist = inst[f"anchor_dist_{k}"] if f"anchor_dist_{k}" in inst else np.hypot(dx, dy)
    inside = inst.get(f"in_anchor_{k}")
    if inside is None:  # an object anchor: the nearer the better
        near = _rank_score(-dist, True) * 0.5 + 0.5 * np.exp(-dist / 0.2)
    else:  # a region: within a small gap is next to it, however small the gap
        near = np.exp(-np.maximum(dist - NEAR_GAP, 0) / 0.05)
    if kind == "on" and inside is not None:
        return 0.5 * inside + 0.5 * near
    if kind == "near" and inside is not None:  # next to a region is outside it: a tree-covered patch is
        return near * (1 - inside)  # not "next to the trees"
    if kind == "across" and inside is not None:
        return near * np.clip(4 * inside * (1 - inside), 0, 1) ** 0.5
    side = {"above": -dy, "below": dy, "left_of": -dx, "right_of": dx}.get(kind or "")
    if side is None:
        return near
    return near * (1 / (1 + np.exp(-side / 0.03)))


# --------------------------------------------------------------------------------------------- selection
def _target_and_vocab(dec, cfg: GVTAConfig, classes) -> tuple[str, list[str]]:
    from .vocab import load_vocabulary

    names = list(classes) if classes else list(load_vocabulary(cfg.vocabulary).names)
    target = dec.local[0] if dec.local else None
    if target is None:
        return "", names
    lower = [n.lower() for n in names]
    if target.lower() not in lower:
        names = names + [target]
    return target, names


def class_probabilities(
    state, models, names: list[str], background: str = "", masked: bool = False
) -> np.ndarray:
    """``N×(K+B)`` probabilities of every proposal over the ``K`` ``names`` (context crops, or masked
    ones) followed by the ``B`` concepts of the ``background`` vocabulary competing with them (``B`` = 0
    when none is named)."""
    if not background:
        return classify_proposals(state, models, names, masked=masked).numpy()
    from .background import joint_probabilities, load_background_vocab

    vocab = load_background_vocab(background)
    return joint_probabilities(state, models, names, vocab, masked=masked).numpy()


def _noun_probability(probs: np.ndarray, col: int | None, k: int) -> np.ndarray:
    """``N`` probability of the noun's column of ``N×(K+B)`` probabilities (no noun: the top of the
    ``k`` classes')."""
    return probs[:, col] if col is not None else probs[:, :k].max(1)


def cam_agreement(props, cam: np.ndarray, threshold: float) -> np.ndarray:
    """``N`` IoU of each proposal with the CAM's hot region ``cam ≥ threshold`` (H×W)."""
    hot = cam >= threshold
    total = int(np.count_nonzero(hot))
    inter = np.array([props.count_in(i, hot) for i in range(len(props))], np.int64)
    union = props.areas + total - inter
    return inter / np.maximum(union, 1)


def group_instances(props, order: np.ndarray, overlap: float) -> list[list[int]]:
    """Greedy grouping of nested proposals: in ``order`` (best first) a proposal covered ≥ ``overlap`` of
    its area by an existing group's leader joins that group. Returns lists of indices, leader first."""
    groups: list[list[int]] = []
    areas = props.areas.astype(np.float64)
    for i in order:
        for g in groups:
            inter = props.intersection(int(i), g[0])
            if inter >= overlap * min(areas[i], areas[g[0]]):
                g.append(int(i))
                break
        else:
            groups.append([int(i)])
    return groups


def refer(state, models, expression: str, cfg: GVTAConfig | None = None, classes=None) -> ReferResult:
    """Select the mask referred to by ``expression`` on an image state (see module docstring).

    ``state``: :class:`dglrsis.state.ImageState` (its CAM and masked-crop caches are filled);
    ``models``: :class:`dglrsis.state.Models`; ``classes``: competing class names (default: the
    ``cfg.vocabulary``).
    """
    from .text import decompose
    from .vocab import load_vocabulary

    cfg = cfg or GVTAConfig()
    dec = decompose(expression, load_vocabulary(cfg.vocabulary))
    target, names = _target_and_vocab(dec, cfg, classes)
    image, props = state.image, state.proposals
    h, w = image.shape[:2]
    n = len(props)
    cam = np.zeros((h, w), np.float32)
    if n == 0:
        return ReferResult(np.zeros((h, w), bool), cam, dec, target)
    col = [x.lower() for x in names].index(target.lower()) if target else None
    p_cls = _noun_probability(class_probabilities(state, models, names, cfg.background), col, len(names))
    masked = None  # N×(K+B) masked-crop probabilities
    if cfg.mask_crops:
        masked = class_probabilities(state, models, names, cfg.background, masked=True)
        p_cls = np.sqrt(p_cls * _noun_probability(masked, col, len(names)))
    score = cfg.w_class * p_cls
    cam_iou = np.zeros(n)
    if cfg.cam:
        key = (expression, target, cfg.scales, cfg.global_enhance, cfg.enhance_weight)
        if key not in state.cam_cache:
            text = enhanced_text_embedding(models.clip, dec, target or dec.text, cfg)
            state.cam_cache[key] = cross_scale_cam(
                models.clip, image, text, cfg.scales, cache=state.cam_features
            )
        cam = state.cam_cache[key]
        cam_iou = cam_agreement(props, cam, cfg.cam_threshold)
        score = score + cfg.w_cam * cam_iou
    groups = group_instances(props, np.argsort(-score, kind="stable"), cfg.group_overlap)
    leaders = np.array([g[0] for g in groups])
    leaders = leaders[candidates_kept(p_cls[leaders], score[leaders], dec, cfg)]
    total = score[leaders].copy()
    parts: dict[str, np.ndarray] = {}
    mod = np.zeros(len(leaders))
    sized = ranked = None  # the instance areas that size ranks and which ones it ranks (explanations)
    if cfg.modifiers and dec.global_:
        cand = props.select(leaders)
        inst = _instance_stats(image, cand)
        if any(g.kind == "size" for g in dec.global_):
            # an instance's size is that of the touching candidates it is a piece of (superpixels
            # split objects), ranked among the plausible candidates only
            inst["area"] = sized = _group_areas(cand, touching_groups(cand))
            peak = np.array([cand.values_in(i, cam).max(initial=0.0) for i in range(len(cand))])
            inst["plausible"] = ranked = size_plausible(total, p_cls[leaders], peak, cfg)
        anchors = _anchors(state, models, dec, names, leaders, cfg.background)
        for k, a in anchors.items():
            if a.region is not None:
                # the land cover under a candidate: its overlap with the region, or the share of its
                # ring inside it (the candidates are left out of the region: a court among the trees
                # is a hole in "the trees")
                overlap = np.array([cand.count_in(i, a.region) for i in range(len(cand))])
                inst[f"in_anchor_{k}"] = np.maximum(
                    overlap / np.maximum(cand.areas, 1), _ring_share(a.region, cand)
                )
                inst[f"anchor_dist_{k}"] = _region_distance(a.region, cand)
        mod, parts = modifier_scores(inst, dec.global_, image, anchors)
        total = total + cfg.w_mod * mod
    order = np.argsort(-total, kind="stable")
    pool, wanted = _choose(dec, total, order, cfg)
    same = {}  # candidate → ring share of its colour (explanations)
    if dec.wants_multiple and cfg.distinct > 0:
        pool, same = distinct_instances(image, props, leaders, pool, cfg)

    def grow(j: int, taken: np.ndarray) -> list[int]:
        return [j]

    if cfg.complete and target:
        if masked is None:
            masked = class_probabilities(state, models, names, cfg.background, masked=True)
        cover = masked.argmax(1) >= len(names)  # a land cover wins the proposal's masked crop

        def grow(j: int, taken: np.ndarray) -> list[int]:
            return complete_instance(state, models, names, col, j, taken, cfg, cover)

    _, chosen = take_instances(props, [int(leaders[i]) for i in pool], wanted, grow)
    mask = props.union(chosen)
    cands = []
    for rank, i in enumerate(order[:10], 1):
        j = int(leaders[i])
        cands.append(
            {
                "rank": rank,
                "mask": j,
                "box": [int(v) for v in props.boxes[j]],
                "area": int(props.areas[j]),
                "score": round(float(total[i]), 4),
                "noun": round(float(cfg.w_class * p_cls[j]), 4),
                "noun_prob": round(float(p_cls[j]), 4),
                "cam": round(float(cfg.w_cam * cam_iou[j]), 4),
                "cam_iou": round(float(cam_iou[j]), 4),
                "modifiers": round(float(cfg.w_mod * mod[i]), 4),
                "modifier_scores": {k: round(float(v[i]), 4) for k, v in parts.items()},
                "selected": j in chosen,
            }
        )
        if sized is not None:
            cands[-1]["instance_area"] = int(sized[i])
            cands[-1]["size_ranked"] = bool(ranked[i])
        if i in same:
            cands[-1]["ring_same"] = round(same[i], 4)
    confidence = float(p_cls[leaders[order[0]]])
    return ReferResult(
        mask=mask,
        cam=cam.astype(np.float32),
        decomposition=dec,
        target=target,
        selected=chosen,
        candidates=cands,
        confidence=confidence,
        found=confidence >= cfg.min_confidence,
    )


def _union_probability(state, models, names: list[str], col: int, masks: np.ndarray, cfg) -> np.ndarray:
    """``M`` noun probabilities of ``M×H×W`` candidate masks, scored as proposals are: against the
    competing classes and the ``cfg.background`` land covers, as the geometric mean of the context-crop
    and masked-crop probabilities when ``cfg.mask_crops``."""
    from dataclasses import replace

    from .lvta import classify, embed_proposals, logit_scale

    cand = Proposals.from_masks(masks)
    if cfg.background:
        from .background import joint_text, load_background_vocab

        text, owner = joint_text(state, models, names, load_background_vocab(cfg.background))
    else:
        text, owner = models.text.embed(names, state.lvta)
    scale = logit_scale(models.clip)
    p = classify(embed_proposals(state.image, cand, models.clip, state.lvta), text, scale, owner)[:, col]
    if cfg.mask_crops:
        masked = replace(state.lvta, background="mask")
        pm = classify(embed_proposals(state.image, cand, models.clip, masked), text, scale, owner)[:, col]
        p = (p * pm).sqrt()
    return p.numpy()


def complete_instance(
    state, models, names, col: int, seed: int, taken: np.ndarray, cfg, cover: np.ndarray
) -> list[int]:
    """Proposal indices of the instance grown from proposal ``seed``: each round, every proposal touching
    it (not mostly inside it, not in ``taken`` (H×W bool, the instances taken before)) is tried, and the
    one whose union has the highest noun probability joins if that beats the instance's own. Superpixel
    proposals split multi-coloured objects (a vehicle and its shadow, a windmill's tower and blades) into
    pieces; a SAM mask is usually whole already and stays as it is. A piece larger than the instance may
    join unless a land cover wins its masked crop (``cover``, ``N`` bool): the best-scoring piece of an
    airport or an overpass is often a small one with the rest of it in larger pieces, while a bridge must
    not take in its river (whose union with the bridge CLIP may find more bridge-like than the bridge
    alone)."""
    from scipy.ndimage import binary_dilation

    props = state.proposals
    members = [seed]
    current = props.mask(seed)
    others = taken & ~current
    best = _union_probability(state, models, names, col, current[None], cfg)[0]
    for _ in range(cfg.complete_rounds):
        ring = binary_dilation(current, iterations=2) & ~current
        area = int(current.sum())
        cands = [
            j
            for j in range(len(props))
            if j not in members
            and props.count_in(j, ring) > 0
            and props.count_in(j, current) < 0.5 * props.areas[j]
            and props.count_in(j, others) == 0
            and (props.areas[j] <= area or not cover[j])
        ]
        if not cands:
            break
        unions = np.stack([current | props.mask(j) for j in cands])
        p = _union_probability(state, models, names, col, unions, cfg)
        k = int(np.argmax(p))
        if p[k] <= best + cfg.complete_gain:
            break
        best, current = p[k], unions[k]
        members.append(cands[k])
    return members


def _asked_count(dec) -> int:
    """The number an expression asks for ("the two ships" → 2; 1 without a number)."""
    ns = [g.value["n"] for g in dec.global_ if g.kind == "multiplicity" and isinstance(g.value["n"], int)]
    return max(ns, default=1)


def candidates_kept(p_noun: np.ndarray, score: np.ndarray, dec, cfg) -> np.ndarray:
    """``N`` bool: the candidate instances (leaders, with their noun probabilities and noun + CAM scores):
    those whose noun probability is ≥ ``cfg.class_keep`` × the best one's; when the expression asks for
    a number n of them and fewer pass, the others with the best scores fill up to n ("the two toll
    stations": the user says how many there are; a small piece the classifier is sure of must not leave
    the second one out)."""
    keep = p_noun >= cfg.class_keep * p_noun.max()
    n = _asked_count(dec)
    rest = [i for i in np.argsort(-score, kind="stable") if not keep[i]]
    keep[rest[: max(n - int(keep.sum()), 0)]] = True
    return keep


def _choose(dec, total: np.ndarray, order: np.ndarray, cfg: GVTAConfig) -> tuple[list[int], int | None]:
    """(indices into ``total`` the instances are taken from, best first; how many to take, None = all of
    them): the best one; with a number ``n`` > 1 the best ``n`` (from all); with "all"/a plural, every
    one scoring ≥ ``multi_keep`` × the best."""
    if not dec.wants_multiple:
        return [int(order[0])], 1
    n = _asked_count(dec)
    if n > 1:
        return [int(i) for i in order], n
    best = total[order[0]]
    return [int(i) for i in order if i == order[0] or total[i] >= cfg.multi_keep * best], None


def distinct_instances(image: np.ndarray, props, leaders, pool: list[int], cfg) -> tuple[list[int], dict]:
    """(``pool`` (indices into ``leaders``, best first) without the further instances that are pieces
    of a larger region, {index: ring share of its colour} of those tested): the best is kept;
    another of ≤ ``cfg.distinct_px`` px per 512² (image ``H×W×3``) is dropped when a share ≥
    ``cfg.distinct`` of its ring has its colour (:func:`ring_same_share`)."""
    h, w = image.shape[:2]
    small = cfg.distinct_px * h * w / REFERENCE_AREA
    tested = [i for i in pool[1:] if props.areas[leaders[i]] <= small]
    same = {i: ring_same_share(image, props, int(leaders[i])) for i in tested}
    return pool[:1] + [i for i in pool[1:] if same.get(i, 0.0) < cfg.distinct], same


def take_instances(props, pool: list[int], wanted: int | None, grow) -> tuple[list[int], list[int]]:
    """(the proposals the instances grew from, every proposal of the instances) for candidate proposals
    ``pool`` (best first): each is grown in turn by ``grow(j, taken) -> proposal indices`` (``taken``:
    H×W bool, the instances so far), and one lying mostly (> 50 %) inside an instance already taken is
    a piece of it, skipped — "the two windmills" are two windmills, not a windmill and its blade —
    until ``wanted`` instances (None: the whole pool)."""
    taken = np.zeros(props.shape, bool)
    heads: list[int] = []
    members: list[int] = []
    for j in pool:
        if wanted is not None and len(heads) >= wanted:
            break
        if heads and props.count_in(j, taken) > 0.5 * props.areas[j]:
            continue
        grown = grow(j, taken)
        taken |= props.union(grown)
        heads.append(j)
        members += [m for m in grown if m not in members]
    return heads, sorted(members, key=lambda m: (m not in heads, m))


def _grown_window(props, i: int, r: int) -> tuple[tuple[int, int, int, int], np.ndarray, np.ndarray]:
    """(box ``x0, y0, x1, y1`` of proposal ``i`` padded by ``r`` px and clipped to the image, the
    proposal's mask in that box, the mask dilated ``r`` times there): box-local, not a full-image pass."""
    from scipy.ndimage import binary_dilation

    h, w = props.shape
    x0, y0, x1, y1 = props.boxes[i]
    box = (max(x0 - r, 0), max(y0 - r, 0), min(x1 + r, w), min(y1 + r, h))
    m = props.window(i, *box)
    return box, m, binary_dilation(m, iterations=r)


def ring_same_share(image: np.ndarray, props, i: int, width: int = 2, tol: float = 30.0) -> float:
    """Share of the ``width``-pixel ring around proposal ``i`` whose colour lies within ``tol`` (largest
    per-channel difference, 0–255) of the proposal's mean colour, in ``image`` (H×W×3): ~0 for a thing
    that stands apart from what surrounds it (a vehicle on a road), high for a piece of a larger region
    of its colour (0 when the proposal fills its window and has no ring)."""
    (x0, y0, x1, y1), m, grown = _grown_window(props, i, width)
    ring = grown & ~m
    if not ring.any() or not m.any():
        return 0.0
    sub = image[y0:y1, x0:x1].astype(np.float32)
    return float((np.abs(sub[ring] - sub[m].mean(0)).max(1) < tol).mean())


def _ring_share(region: np.ndarray, props, width: int = 3) -> np.ndarray:
    """Per proposal, the share of the ``width``-pixel ring around it that lies in ``region`` (H×W bool)."""
    out = np.zeros(len(props))
    for i in range(len(props)):
        (x0, y0, x1, y1), m, grown = _grown_window(props, i, width)
        ring = grown & ~m
        out[i] = region[y0:y1, x0:x1][ring].mean() if ring.any() else 0.0
    return out


def _region_distance(region: np.ndarray, props) -> np.ndarray:
    """Per proposal, the gap (as a fraction of max(H, W)) between its nearest pixel and the nearest pixel
    of ``region`` (0 when they touch or overlap): "next to the trees" is about the gap, which a long
    bridge's centroid would overstate."""
    from scipy.ndimage import distance_transform_edt

    h, w = region.shape
    dist = distance_transform_edt(~region) / max(h, w)
    return np.array([props.values_in(i, dist).min() if props.areas[i] else 1.0 for i in range(len(props))])


def touching_groups(props, gap: int = 2) -> np.ndarray:
    """``N`` group labels (0..G−1) of the proposals: those that overlap or whose pixels lie within a
    city-block distance of ``gap`` of each other (``gap − 1`` empty pixels between them), directly or
    through others, share a label (connected components of the box-local dilations' contacts)."""
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components

    n = len(props)
    lab = np.full(props.shape, -1, np.int64)
    for i in range(n):
        props.paste(lab, i, i)
    edges = []
    for i in range(n):
        (x0, y0, x1, y1), _, grown = _grown_window(props, i, gap)
        edges += [(i, int(j)) for j in np.unique(lab[y0:y1, x0:x1][grown]) if j >= 0]
    e = np.array(edges, np.int64).reshape(-1, 2)
    graph = coo_matrix((np.ones(len(e)), (e[:, 0], e[:, 1])), shape=(n, n))
    return connected_components(graph, directed=False)[1]


def _group_areas(props, groups: np.ndarray) -> np.ndarray:
    """``N`` pixel area of the union of each proposal's group (``groups`` from :func:`touching_groups`)."""
    lab = np.full(props.shape, -1, np.int64)
    for i in range(len(props)):
        props.paste(lab, i, groups[i])
    areas = np.bincount(lab[lab >= 0], minlength=int(groups.max(initial=-1)) + 1)
    return areas[groups].astype(np.float64)


def _instance_stats(image: np.ndarray, props) -> dict:
    """Per proposal: centroid ``cx``, ``cy`` (pixels), ``area`` and mean colour ``rgb`` (n×3)."""
    c = props.centroids()
    rgb = [props.values_in(i, image).mean(0) if props.areas[i] else np.zeros(3) for i in range(len(props))]
    rgb = np.stack(rgb).astype(np.float32) if rgb else np.zeros((0, 3), np.float32)
    return {
        "cx": np.nan_to_num(c[:, 0]),
        "cy": np.nan_to_num(c[:, 1]),
        "area": props.areas.astype(np.float64),
        "rgb": rgb,
    }


def _anchors(state, models, dec, names, leaders, background: str = "") -> dict[int, Anchor]:
    """Per relation token (by index in ``dec.global_``), where its anchor lies.

    The anchor is found by LVTA from its own prompt: the proposals are classified over the competing
    classes plus the anchor's name (a land cover such as "road" or an out-of-vocabulary thing such as
    "helipad" joins the list), and proposals lying mostly inside a target candidate are skipped. A class
    anchor is an object: its best proposal's centroid (context crops). A land-cover or free anchor is a
    region: the union of the proposals it wins on their *masked* crops (a tree patch's context crop shows
    the objects around it and scores like them), or its best proposal when it wins none.
    """
    out = {}
    props = state.proposals
    cand = props.union(leaders)
    inside = np.array([props.count_in(j, cand) for j in range(len(props))]) / np.maximum(props.areas, 1)
    for k, g in enumerate(dec.global_):
        if g.kind != "relation" or not isinstance(g.value, dict) or not g.value.get("anchor"):
            continue
        anchor = g.value["anchor"]
        query = names if anchor.lower() in [x.lower() for x in names] else names + [anchor]
        col = [x.lower() for x in query].index(anchor.lower())
        is_region = g.value.get("anchor_kind") in ("landcover", "thing")
        probs = class_probabilities(state, models, query, background, masked=is_region)
        p = probs[:, col].copy()
        p[inside > 0.5] = -1
        a = int(np.argmax(p))
        cx, cy = props.centroids()[a]
        if np.isnan(cx):
            continue
        region = None
        if is_region:
            wins = np.flatnonzero((probs.argmax(1) == col) & (inside <= 0.5))
            region = props.union(wins if len(wins) else [a])
            ys, xs = np.nonzero(region)
            cx, cy = float(xs.mean()), float(ys.mean())
        out[k] = Anchor((float(cx), float(cy)), region)
    return out
