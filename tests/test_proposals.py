"""GLD image side: superpixel-hierarchy and SAM proposals on synthetic scenes."""

import numpy as np
import pytest

from dglrsis.masks import Proposals, mask_nms
from dglrsis.proposals import ProposalConfig, fill_holes, generate_proposals, pixel_coverage


def scene(seed=0, size=128):
    """Textured grass background with a grey rectangle, a white disk and a blue rectangle."""
    rng = np.random.default_rng(seed)
    img = np.empty((size, size, 3), np.uint8)
    img[:] = (60, 120, 50)
    img = np.clip(img + rng.normal(0, 6, img.shape), 0, 255).astype(np.uint8)
    truth = []
    m = np.zeros((size, size), bool)
    m[20:50, 15:60] = True
    truth.append(m)
    img[m] = (150, 150, 150)
    yy, xx = np.mgrid[:size, :size]
    m = (yy - 90) ** 2 + (xx - 40) ** 2 <= 15**2
    truth.append(m)
    img[m] = (235, 235, 235)
    m = np.zeros((size, size), bool)
    m[70:115, 75:120] = True
    truth.append(m)
    img[m] = (30, 60, 170)
    return img, truth


def iou(a, b):
    return (a & b).sum() / max((a | b).sum(), 1)


@pytest.fixture(scope="module")
def result():
    img, truth = scene()
    before = img.copy()
    cfg = ProposalConfig(method="slic")
    props = generate_proposals(img, cfg)
    return img, before, truth, cfg, props


def test_shapes_recovered(result):
    _, _, truth, _, props = result
    for t in truth:
        assert max(iou(props.mask(i), t) for i in range(len(props))) >= 0.8


def test_every_pixel_covered_and_input_untouched(result):
    img, before, _, _, props = result
    assert pixel_coverage(props).all()
    assert np.array_equal(img, before)


def test_no_duplicates_and_consistency(result):
    _, _, _, cfg, props = result
    n = len(props)
    masks = np.stack([props.mask(i) for i in range(n)])
    assert props.shape == (128, 128) and 0 < n <= cfg.max_masks
    assert all(c.dtype == bool for c in props.crops)
    assert props.boxes.shape == (n, 4) and props.scores.shape == (n,) and props.areas.shape == (n,)
    assert np.array_equal(props.areas, masks.reshape(n, -1).sum(1))
    for m, b, c in zip(masks, props.boxes, props.crops, strict=True):
        ys, xs = np.nonzero(m)
        assert b.tolist() == [xs.min(), ys.min(), xs.max() + 1, ys.max() + 1]  # tight box
        assert c.shape == (b[3] - b[1], b[2] - b[0])
    flat = masks.reshape(n, -1).astype(np.float32)
    inter = flat @ flat.T
    union = props.areas[:, None] + props.areas[None] - inter
    off = ~np.eye(n, dtype=bool)
    assert (inter / union)[off].max() <= cfg.nms_iou + 1e-6
    sub = props.select([0, n - 1])
    assert isinstance(sub, Proposals) and len(sub) == 2 and np.array_equal(sub.mask(1), masks[-1])
    assert np.array_equal(props.union([0, n - 1]), masks[0] | masks[-1])
    i, j = 0, n - 1
    assert props.intersection(i, j) == (masks[i] & masks[j]).sum()
    assert props.count_in(i, masks[j]) == (masks[i] & masks[j]).sum()
    assert np.array_equal(props.window(i, 10, 5, 60, 90), masks[i][5:90, 10:60])


def test_felzenszwalb_covers():
    img, _ = scene(1, 96)
    props = generate_proposals(img, ProposalConfig(method="felzenszwalb"))
    assert pixel_coverage(props).all() and props.source == "felzenszwalb"


@pytest.mark.parametrize("img", [np.full((1, 1, 3), 7, np.uint8), np.full((40, 30, 3), 128, np.uint8)])
def test_degenerate_images_one_full_mask(img):
    """A 1-pixel or constant image yields proposals covering it, one of them the whole image."""
    props = generate_proposals(img, ProposalConfig(method="slic"))
    assert len(props) >= 1 and pixel_coverage(props).all()
    assert props.areas.max() == img.shape[0] * img.shape[1]


def test_mask_nms_hand_case():
    a = np.zeros((4, 4), bool)
    a[:2] = True  # 8 px
    b = a.copy()
    b[2, 0] = True  # 9 px, IoU(a, b) = 8/9
    c = np.zeros((4, 4), bool)
    c[3] = True  # disjoint
    props, scores = Proposals.from_masks(np.stack([a, b, c])), np.array([0.5, 0.9, 0.1])
    assert mask_nms(props, scores, 0.85).tolist() == [1, 2]  # best first
    assert mask_nms(props, scores, 0.95).tolist() == [1, 0, 2]
    assert mask_nms(props, scores, 0.85, cell=1).tolist() == [1, 2]  # any bucket size: same answer


def test_fill_holes_equals_scipy():
    from scipy.ndimage import binary_fill_holes

    rng = np.random.default_rng(0)
    for _ in range(200):
        m = rng.random(tuple(rng.integers(1, 25, 2))) < rng.uniform(0.2, 0.9)
        assert np.array_equal(fill_holes(m), binary_fill_holes(m))


def test_proposals_memory_is_linear_in_pixels_not_regions():
    """1350 proposals (600 per 512²) on a 768² scene of random colour blocks: a full-image boolean stack
    alone would take 796 MB; the compact proposals, and the whole generation's peak, stay far below it."""
    import tracemalloc

    rng = np.random.default_rng(0)
    side = 768
    img = np.repeat(
        np.repeat(rng.integers(0, 256, (side // 16, side // 16, 3)).astype(np.uint8), 16, 0), 16, 1
    )
    tracemalloc.start()
    try:
        props = generate_proposals(img, ProposalConfig(method="slic"))
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    stack = len(props) * side * side
    assert len(props) == 1350  # capped at max_masks per 512²
    assert props.nbytes < 0.02 * stack
    assert peak < 0.4 * stack and peak < 250 * side * side  # bytes: O(pixels)


@pytest.mark.slow
def test_sam_random_weights():
    """Real vit_b at random weights (~1 min on 2 busy cores; test_sam_conversion is the light twin)."""
    sam_mod = pytest.importorskip("segment_anything")
    import torch

    torch.manual_seed(0)
    sam = sam_mod.sam_model_registry["vit_b"]()
    img, _ = scene(2, 64)
    cfg = ProposalConfig(
        method="sam", points_per_side=4, points_per_batch=16, pred_iou_thresh=0.0, stability_score_thresh=0.0
    )
    props = generate_proposals(img, cfg, sam=sam)
    n = len(props)
    assert props.source == "sam" and props.shape == (64, 64) and props.boxes.shape == (n, 4)
    assert all(c.dtype == bool for c in props.crops) and props.scores.shape == (n,)


@pytest.mark.slow
def test_sam_bool_masks_match_library():
    """The cropped-mask generator returns exactly segment-anything's binary masks and scores, in order."""
    sam_mod = pytest.importorskip("segment_anything")
    import torch

    from dglrsis.proposals import _mask_generator

    torch.manual_seed(0)
    sam = sam_mod.sam_model_registry["vit_b"]().eval()
    img, _ = scene(3, 40)
    kw = dict(
        points_per_side=4,
        points_per_batch=7,
        pred_iou_thresh=0.0,
        stability_score_thresh=0.0,
        box_nms_thresh=1.0,
        min_mask_region_area=0,
    )  # no NMS: every candidate mask is compared
    recs = sam_mod.SamAutomaticMaskGenerator(sam, **kw).generate(img)
    boxes, crops, scores = _mask_generator()(sam, **kw).generate_masks(img)
    props = Proposals(boxes, crops, scores, (40, 40))
    assert len(recs) > 1 and len(props) == len(recs)
    masks = np.stack([props.mask(i) for i in range(len(props))])
    assert np.array_equal(masks, np.stack([r["segmentation"] for r in recs]))
    assert np.array_equal(scores, np.array([r["predicted_iou"] for r in recs], np.float32))


def test_sam_conversion(monkeypatch):
    """SAM masks → Proposals: config passed through, tiny masks dropped, duplicates removed."""
    from dglrsis import proposals

    seen = {}
    a = np.zeros((32, 32), bool)
    a[2:20, 2:20] = True
    b = a.copy()
    b[2, 20] = True  # near-duplicate of a, lower score
    tiny = np.zeros((32, 32), bool)
    tiny[30, 30] = True

    class FakeGen:
        def __init__(self, model, **kw):
            seen.update(kw)

        def generate_masks(self, image):
            p = Proposals.from_masks(np.stack([a, b, tiny]))
            return p.boxes, p.crops, np.array([0.9, 0.8, 0.99], np.float32)

    monkeypatch.setattr(proposals, "_mask_generator", lambda: FakeGen)
    cfg = ProposalConfig(method="sam", points_per_side=5, points_per_batch=7, min_area=4)
    props = generate_proposals(np.zeros((32, 32, 3), np.uint8), cfg, sam=object())
    assert seen["points_per_side"] == 5 and seen["points_per_batch"] == 7
    assert len(props) == 1 and np.array_equal(props.mask(0), a) and props.scores[0] == pytest.approx(0.9)
    assert props.boxes[0].tolist() == [2, 2, 20, 20] and props.areas[0] == 324


def road_scene(size=256, seed=0):
    """Sand with a grey road carrying three 8×12 px cars (light bonnet and boot, a road-grey roof between)
    and one 24 px windmill hub with 2 px blades on the sand. Returns the image and the object masks."""
    rng = np.random.default_rng(seed)
    img = np.empty((size, size, 3), np.float32)
    img[:] = (170, 145, 105)
    img[100:130] = (105, 105, 110)  # the road
    objects = []
    for x0, colour in ((40, (240, 240, 245)), (120, (220, 200, 40)), (200, (200, 40, 40))):
        m = np.zeros((size, size), bool)
        m[109:117, x0 : x0 + 12] = True
        img[m] = colour
        img[109:117, x0 + 5 : x0 + 7] = (95, 95, 100)  # the roof: road grey
        objects.append(m)
    m = np.zeros((size, size), bool)
    m[196:204, 60:68] = True  # hub
    m[199:201, 40:90] = True  # blades
    m[180:222, 63:65] = True
    img[m] = (120, 120, 125)
    objects.append(m)
    img = np.clip(img + rng.normal(0, 4, img.shape), 0, 255).astype(np.uint8)
    return img, objects


def test_small_objects_get_proposals_superpixels_miss():
    from dglrsis.proposals import SMALL_OBJECT_LEVEL

    img, objects = road_scene()

    def best(props, m):
        return max(iou(props.mask(i), m) for i in range(len(props)))

    plain = generate_proposals(img, ProposalConfig(method="slic", small_objects=False))
    full = generate_proposals(img, ProposalConfig(method="slic"))
    # superpixels (~9 px at this size) do not follow a 8×12 car with a road-grey roof or 2 px blades
    plain_best = [best(plain, m) for m in objects]
    full_best = [best(full, m) for m in objects]
    assert max(plain_best) < 0.75 and np.mean(plain_best) < 0.6, plain_best
    assert min(full_best) >= 0.9, full_best
    # the hierarchy is kept as it was; the small objects come on top, at their own level
    assert len(full) > len(plain)
    assert (full.levels == SMALL_OBJECT_LEVEL).any()
    assert np.array_equal(full.boxes[full.levels != SMALL_OBJECT_LEVEL], plain.boxes)


def test_local_contrast_hand_case():
    from dglrsis.proposals import local_contrast

    img = np.full((64, 64, 3), 100, np.uint8)
    assert np.abs(local_contrast(img)).max() < 1e-3  # uniform: no contrast anywhere
    img[30:34, 30:34] = (100, 180, 100)  # a 4×4 square 80 greener than its background
    c = local_contrast(img)
    assert c[30:34, 30:34].min() > 70 and c[31, 31] <= 80 + 1e-3
    assert c[:20].max() < 1e-3 and c[:, 45:].max() < 1e-3  # far from it the background is the median
