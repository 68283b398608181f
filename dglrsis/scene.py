"""Scenes of any size: proposals tile by tile, every proposal classified on the scene itself.

A raster larger than ``AUTO_TILE_PIXELS`` is processed in tiles (``TileConfig``); smaller ones in one pass.
What depends on the tiling is kept to the one stage whose memory grows fastest — the superpixel/SAM
proposals, computed on each tile's read window (tile + overlap). Everything after it is tile-independent:

1. **Ownership.** Each tile keeps the proposals whose centroid lies in its *core* (the cores partition the
   scene, :func:`dglrsis.tiling.tile_windows`); the finest level, which partitions the window, is clipped to
   the core, so the kept finest regions partition the scene and every valid pixel is covered exactly as in
   one pass. A region cut by a tile border is kept by each tile as its part on that side.
2. **Crops on the scene.** A kept proposal's context crop (LVTA) is cut from the scene around the proposal's
   own box — read from the raster over the union of the tile's crop windows — never from the tile, so a
   proposal near a border sees the same context as in one pass: there is no tile edge in any crop.
3. **Decisions on the scene.** Classification, the background policy and the pixel assignment run once over
   all proposals of the scene (:meth:`dglrsis.Predictor.segment`), so overlapping proposals from two tiles
   compete exactly like two proposals of one image.

Seams can then only come from the superpixels themselves differing near a border, which is what
``bench/bench_scenes.py`` measures (``tile_seam_agreement``). Memory: the proposals are compact
(:mod:`dglrsis.masks`), so a scene costs O(pixels); the peak of one pass is set by the superpixel stage on
the whole image, the peak of a tiled run by one tile's read window plus the scene's compact state.
Stretch and band choice come from the reader and are computed once for the whole scene.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, replace

import numpy as np

from .errors import DglrsisError
from .lvta import LVTAConfig, context_crops, crop_box
from .masks import Proposals
from .proposals import ProposalConfig, generate_proposals
from .state import ImageState, Models, build_state, check_image
from .tiling import Window, tile_windows

AUTO_TILE_PIXELS = 4096 * 4096  # one pass up to this many pixels (≈ 2.5 GB with SLIC); tiles above it
AUTO_TILE = 1024  # tile side used above AUTO_TILE_PIXELS
BLUR_MARGIN = 16  # extra pixels read around the crop windows so the crop background blur sees no edge


@dataclass
class TileConfig:
    """``tile``: None = automatic (``AUTO_TILE`` above ``AUTO_TILE_PIXELS``, else one pass), 0 = one pass,
    N = tiles of at most N pixels a side; ``overlap``: the least number of pixels shared by neighbouring read
    windows (:func:`dglrsis.tiling.tile_windows`)."""

    tile: int | None = None
    overlap: int = 128

    def check(self) -> TileConfig:
        if self.tile not in (None, 0) and (self.tile < 64 or not 0 <= self.overlap < self.tile // 2):
            raise DglrsisError(
                f"bad tiling (tile {self.tile}, overlap {self.overlap}): tile ≥ 64 and 0 ≤ overlap < tile/2"
            )
        return self

    def side(self, height: int, width: int) -> int:
        """The tile side for a scene (0 = one pass)."""
        if self.tile is None:
            return AUTO_TILE if height * width > AUTO_TILE_PIXELS else 0
        return self.tile

    def windows(self, height: int, width: int) -> list[Window]:
        side = self.side(height, width)
        if not side or (side >= height and side >= width):
            return [Window(0, 0, width, height, 0, 0, width, height)]
        return tile_windows(height, width, side, min(self.overlap, side // 2 - 1))


def _tile_pieces(props: Proposals, image: np.ndarray, win: Window) -> tuple[Proposals, np.ndarray]:
    """A tile's proposals (window coordinates) clipped to its core, with each piece's mean colour (N×3)."""
    (r0, r1), (c0, c1) = ((s.start, s.stop) for s in win.core_in_tile())
    core = np.zeros(props.shape, bool)
    core[r0:r1, c0:c1] = True
    props = props.restricted(core)
    colours = np.array([props.values_in(i, image).mean(0) for i in range(len(props))]).reshape(-1, 3)
    return props, colours


def _level_threshold(level: int, cfg: ProposalConfig) -> float:
    """The mean-colour cut of a hierarchy level (filled-region levels take the coarsest one)."""
    thr = cfg.merge_thresholds
    return float(thr[min(max(level, 1), len(thr)) - 1]) if len(thr) else 0.0


def _border_pairs(ids: np.ndarray, xs: list[int], ys: list[int]) -> np.ndarray:
    """Unique pairs (a, b) of piece ids facing each other across the core borders at columns ``xs`` and
    rows ``ys`` of an H×W id map (−1 = none)."""
    pairs = [np.stack([ids[:, x - 1], ids[:, x]], 1) for x in xs]
    pairs += [np.stack([ids[y - 1], ids[y]], 1) for y in ys]
    if not pairs:
        return np.zeros((0, 2), int)
    p = np.concatenate(pairs)
    p = p[(p[:, 0] >= 0) & (p[:, 1] >= 0) & (p[:, 0] != p[:, 1])]
    return np.unique(np.sort(p, 1), axis=0)


def merge_across_borders(
    props: Proposals, colours: np.ndarray, cfg: ProposalConfig, xs: list[int], ys: list[int]
) -> Proposals:
    """Join the pieces of one region that the tile cores cut apart: pieces of the same hierarchy level that
    touch across a core border and whose mean colours differ by less than that level's cut threshold (the
    rule that made each of them a region) become one proposal. ``props`` in scene coordinates."""
    n = len(props)
    parent = np.arange(n)

    def find(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    levels = props.levels if len(props.levels) == n else np.zeros(n, int)
    for level in np.unique(levels):
        idx = np.flatnonzero(levels == level)
        ids = np.full(props.shape, -1, np.int64)
        for i in idx:
            props.paste(ids, int(i), int(i))
        thr = _level_threshold(int(level), cfg)
        for a, b in _border_pairs(ids, xs, ys):
            if np.linalg.norm(colours[a] - colours[b]) < thr:
                ra, rb = find(int(a)), find(int(b))
                if ra != rb:
                    parent[max(ra, rb)] = min(ra, rb)
    roots = np.array([find(i) for i in range(n)])
    boxes, crops, scores, lv = [], [], [], []
    for r in np.unique(roots):
        members = np.flatnonzero(roots == r)
        if len(members) == 1:
            i = int(members[0])
            boxes.append(props.boxes[i])
            crops.append(props.crops[i])
            scores.append(props.scores[i])
        else:
            b = props.boxes[members]
            box = np.array([b[:, 0].min(), b[:, 1].min(), b[:, 2].max(), b[:, 3].max()], np.int64)
            crop = np.zeros((box[3] - box[1], box[2] - box[0]), bool)
            for i in members:
                x0, y0, x1, y1 = props.boxes[i] - np.array([box[0], box[1], box[0], box[1]])
                crop[y0:y1, x0:x1] |= props.crops[i]
            boxes.append(box)
            crops.append(crop)
            scores.append(float(np.average(props.scores[members], weights=props.areas[members])))
        lv.append(levels[r])
    return Proposals(np.reshape(boxes, (-1, 4)), crops, scores, props.shape, props.source, np.array(lv))


def _crop_window(props: Proposals, lvta: LVTAConfig, height: int, width: int) -> tuple[int, int, int, int]:
    """The scene window (x0, y0, x1, y1) holding every context crop of ``props`` (scene coordinates)."""
    wins = np.array([crop_box(b, lvta) for b in props.boxes])
    x0 = max(0, int(np.floor(wins[:, 0].min())) - BLUR_MARGIN)
    y0 = max(0, int(np.floor(wins[:, 1].min())) - BLUR_MARGIN)
    x1 = min(width, int(np.ceil(wins[:, 2].max())) + BLUR_MARGIN)
    y1 = min(height, int(np.ceil(wins[:, 3].max())) + BLUR_MARGIN)
    return x0, y0, x1, y1


def merge_reads(
    boxes: list[tuple[int, int, int, int]], cap: int
) -> list[tuple[tuple[int, int, int, int], list[int]]]:
    """Join read windows ``(x0, y0, x1, y1)`` (half-open pixels) while the union of two has no more pixels
    than the two together and at most ``cap`` pixels, the pair saving most first. Returns
    ``[(window, [indices of the boxes it holds]), ...]``; every box lies inside its window."""
    reads = [(tuple(int(v) for v in b), [k]) for k, b in enumerate(boxes)]

    def area(b):
        return (b[2] - b[0]) * (b[3] - b[1])

    while True:
        best, pair = -1, None
        for i in range(len(reads)):
            a = reads[i][0]
            for j in range(i + 1, len(reads)):
                b = reads[j][0]
                u = (min(a[0], b[0]), min(a[1], b[1]), max(a[2], b[2]), max(a[3], b[3]))
                saving = area(a) + area(b) - area(u)
                if saving >= 0 and area(u) <= cap and saving > best:
                    best, pair = saving, (i, j, u)
        if pair is None:
            return reads
        i, j, u = pair
        reads[i] = (u, reads[i][1] + reads[j][1])
        del reads[j]


def _embed_on_scene(
    reader, props: Proposals, windows: list[Window], clip, cfgs: list[LVTAConfig], side: int
) -> list:
    """One ``N×D`` crop-embedding tensor of the scene proposals per config of ``cfgs`` (e.g. the context
    crops and the masked crops: same crop boxes, other outside-mask treatment), cut from the raster, each
    window read once for all configs. Proposals are grouped by the
    tile core holding their centroid; the crops of a group whose crop windows stay within a quarter tile of
    the core are cut from one read of the union of those windows, any other proposal from a read of its own
    crop window (plus ``BLUR_MARGIN``) shared with the smaller windows inside it, so every crop equals the
    one-pass crop and no read is much larger than a tile unless the proposal itself is. Reads are then
    joined wherever one read of the union costs no more pixels than the two (:func:`merge_reads`, up to 4
    tiles' pixels), so overlapping windows are read, normalised and blurred once. Crops of all groups are
    encoded together, ``lvta.batch_size`` at a time."""
    import torch

    lvta = cfgs[0]
    height, width = props.shape
    outs = [torch.zeros(len(props), clip.embed_dim) for _ in cfgs]
    if not len(props):
        return outs
    cen = props.centroids()
    cwin = np.array([crop_box(b, lvta) for b in props.boxes])
    reach = side // 4
    groups, alone = [], np.ones(len(props), bool)
    for w in windows:
        own = (cen[:, 0] >= w.cx0) & (cen[:, 0] < w.cx1) & (cen[:, 1] >= w.cy0) & (cen[:, 1] < w.cy1)
        fits = (cwin[:, 0] >= w.cx0 - reach) & (cwin[:, 1] >= w.cy0 - reach)
        fits &= (cwin[:, 2] <= w.cx1 + reach) & (cwin[:, 3] <= w.cy1 + reach)
        groups.append(np.flatnonzero(own & fits))
        alone[own & fits] = False
    # the rest: largest crop window first; one whose window lies inside an earlier one's joins that read
    big: list[tuple[np.ndarray, list[int]]] = []
    for i in sorted(np.flatnonzero(alone), key=lambda i: -np.prod(cwin[i, 2:] - cwin[i, :2])):
        home = next(
            (g for w, g in big if (cwin[i, :2] >= w[:2]).all() and (cwin[i, 2:] <= w[2:]).all()), None
        )
        if home is None:
            big.append((cwin[i], [int(i)]))
        else:
            home.append(int(i))
    groups += [np.array(g) for _, g in big]
    groups = [g for g in groups if len(g)]
    reads = merge_reads([_crop_window(props.select(g), lvta, height, width) for g in groups], 4 * side * side)
    pending: list[int] = []
    crops: list[list] = [[] for _ in cfgs]

    def flush(final: bool = False) -> None:
        while pending and (final or len(pending) >= lvta.batch_size):
            n = min(lvta.batch_size, len(pending))
            for out, parts in zip(outs, crops, strict=True):
                batch = torch.cat(parts)
                out[pending[:n]] = clip.encode_images(batch[:n])
                parts[:] = [batch[n:]] if len(batch) > n else []
            del pending[:n]

    for (x0, y0, x1, y1), members in reads:
        idx = np.concatenate([groups[k] for k in members])
        sub = props.select(idx)
        src = reader.read_window(x0, y0, x1, y1)
        local = sub.shifted(-x0, -y0, (y1 - y0, x1 - x0))
        for cfg, parts in zip(cfgs, crops, strict=True):
            parts.append(context_crops(src, local, clip.image_size, clip.mean, clip.std, cfg))
        pending += [int(i) for i in idx]
        flush()
    flush(final=True)
    return outs


def build_scene_state(
    reader,
    models: Models,
    proposals: ProposalConfig,
    lvta: LVTAConfig,
    tiles: TileConfig | None = None,
    progress: bool = False,
) -> ImageState:
    """:class:`ImageState` of a whole raster read through ``reader`` (:class:`dglrsis.io.RasterReader`).

    One pass (the image kept in the state, so ``refer`` works) or tiles (``image`` None). Tiles whose
    pixels are all invalid are skipped. ``timings`` holds seconds per stage (read, proposals, crops+CLIP).
    """
    from tqdm import tqdm

    tiles = (tiles or TileConfig()).check()
    height, width = int(reader.meta.height), int(reader.meta.width)
    windows = tiles.windows(height, width)
    timings = {"read": 0.0, "proposals": 0.0, "embed": 0.0, "tiles": len(windows), "skipped": 0}
    if len(windows) == 1:
        t0 = time.perf_counter()
        image = check_image(reader.read())
        valid = reader.read_valid(0, 0, width, height)
        timings["read"] = time.perf_counter() - t0
        state = build_state(image, models, proposals, lvta, None if valid.all() else valid)
        if not valid.any():
            raise DglrsisError(f"{reader.path}: every pixel is nodata or masked; nothing to segment")
        state.timings = timings
        return state
    parts, colours = [], []
    valid_all = np.zeros((height, width), bool)
    for win in tqdm(windows, desc="tiles", unit="tile", disable=not progress):
        t0 = time.perf_counter()
        image = reader.read_window(win.x0, win.y0, win.x1, win.y1)
        valid = reader.read_valid(win.x0, win.y0, win.x1, win.y1)
        rows, cols = win.core_in_tile()
        valid_all[win.cy0 : win.cy1, win.cx0 : win.cx1] = valid[rows, cols]
        t1 = time.perf_counter()
        timings["read"] += t1 - t0
        if not valid[rows, cols].any():
            timings["skipped"] += 1
            continue
        props = generate_proposals(check_image(image), proposals, sam=models.sam)
        if not valid.all():
            props = props.restricted(valid)
        props, col = _tile_pieces(props, image, win)
        parts.append(props.shifted(win.x0, win.y0, (height, width)))
        colours.append(col)
        timings["proposals"] += time.perf_counter() - t1
    if not valid_all.any():
        raise DglrsisError(f"{reader.path}: every pixel is nodata or masked; nothing to segment")
    t0 = time.perf_counter()
    xs = sorted({w.cx0 for w in windows if w.cx0 > 0})
    ys = sorted({w.cy0 for w in windows if w.cy0 > 0})
    scene = Proposals.concat(parts, (height, width), proposals.method)
    scene = merge_across_borders(
        scene, np.concatenate(colours) if colours else np.zeros((0, 3)), proposals, xs, ys
    )
    t1 = time.perf_counter()
    timings["merge"] = t1 - t0
    side = tiles.side(height, width)
    # masked crops (background decision, GVTA) need the scene too: there is no image to cut them from later
    cfgs = [lvta] if lvta.background == "mask" else [lvta, replace(lvta, background="mask")]
    embs = _embed_on_scene(reader, scene, windows, models.clip, cfgs, side)
    emb, masked = embs[0], embs[-1]
    timings["embed"] = time.perf_counter() - t1
    valid = None if valid_all.all() else valid_all
    return ImageState(None, scene, emb, lvta, masked_emb=masked, valid=valid, timings=timings)
