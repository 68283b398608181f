"""GVTA mask selection: the CAM agreement statistic, masked crops, and referring quality on the world."""

import numpy as np
import pytest
import torch

from dglrsis.eval.world import expressions_for, iter_scenes
from dglrsis.gvta import GVTAConfig, cam_agreement
from dglrsis.lvta import LVTAConfig, classify_proposals, context_crops, encode_crops
from dglrsis.masks import Proposals
from dglrsis.predictor import Predictor, PredictorConfig


def test_cam_agreement_hand_computed():
    cam = np.zeros((4, 4), np.float32)
    cam[:2, :2] = 1.0  # hot region: the 2×2 top-left block (4 px)
    cam[2, 2] = 0.49  # below the threshold
    masks = np.zeros((3, 4, 4), bool)
    masks[0, :2, :2] = True  # the hot region exactly → 1
    masks[1, :2, :] = True  # 8 px covering it → 4 / 8
    masks[2, 2:, 2:] = True  # disjoint (holds the 0.49 pixel) → 0
    props = Proposals.from_masks(masks)
    assert cam_agreement(props, cam, 0.5) == pytest.approx([1.0, 0.5, 0.0])
    assert cam_agreement(props, cam, 0.4)[2] == pytest.approx(1 / 8)  # 0.49 now hot: 1 / (4 + 5 − 1)


@pytest.fixture(scope="module")
def scene():
    return next(iter_scenes(seed=4243, n=1, size=160, kind="rrsisd"))


def test_masked_crops_encoded_once_and_blank_outside_the_mask(scene):
    p = Predictor(PredictorConfig(clip="world-clip:random"))
    p.set_image(scene.image)
    names = ["ship", "harbor"]
    masked = classify_proposals(p.state, p.models, names, masked=True)
    first = p.state.masked_emb
    assert first is not None and masked.shape == (len(p.state.proposals), 2)
    p.refer("the ship")
    assert p.state.masked_emb is first  # cached with the image
    clip, props = p.models.clip, p.state.proposals
    crops = context_crops(
        p.state.image, props, clip.image_size, clip.mean, clip.std, LVTAConfig(background="mask")
    )
    assert torch.allclose(first, encode_crops(clip, crops, 64), atol=1e-5)
    assert not torch.allclose(first, p.state.crop_emb, atol=1e-3)  # the blurred-context crops differ
    p.set_image(scene.image)
    assert p.state.masked_emb is None  # a new image drops them


def _world_refs(seed: int, n: int):
    """(image, expression, target mask, modifier kinds) of ``n`` rrsisd-kind world scenes."""
    out = []
    for i, sc in enumerate(iter_scenes(seed=seed, n=n, size=512, kind="rrsisd")):
        rng = np.random.default_rng([seed, i])
        for target, sents in expressions_for(sc, rng):
            out += [(sc.image, text, target.mask, kinds) for text, kinds, _ in sents]
    return out


def _miou(refs, gvta: GVTAConfig) -> float:
    pred = Predictor(PredictorConfig(clip="world-clip", gvta=gvta))
    ious, last = [], None
    for image, text, gt, _ in refs:
        if image is not last:
            pred.set_image(image)
            last = image
        m = pred.refer(text).mask
        ious.append((m & gt).sum() / max((m | gt).sum(), 1))
    return 100 * float(np.mean(ious))


def test_refer_quality_on_unseen_world_and_cam_ablation():
    # world seed 12: not a training world (those are ≥ 1000) and not the README's benchmark world (7).
    # With the 900-step world-clip: 53.5 with the CAM, 45.3 without (30 expressions; on 101 expressions of
    # this world 60.3 vs 55.6). The masked-crop ablation is not asserted: it helps on the benchmark world
    # (+5.8) and its train split (+4.7) but costs 2.9 here (README).
    refs = _world_refs(12, 8)
    assert len(refs) >= 20
    full = _miou(refs, GVTAConfig())
    ablated = _miou(refs, GVTAConfig(cam=False))
    print(f"RES world seed 12: mIoU {full:.1f}, without the CAM {ablated:.1f} ({len(refs)} expressions)")
    assert full >= 45.0
    assert full > ablated + 3.0


def test_choose_multiplicity():
    from dglrsis.gvta import _choose
    from dglrsis.text import decompose

    total = np.array([0.2, 1.0, 0.7, 0.65, 0.1])
    order = np.argsort(-total, kind="stable")
    cfg = GVTAConfig(multi_keep=0.6)
    assert _choose(decompose("the ship", "rrsisd"), total, order, cfg) == ([1], 1)
    assert _choose(decompose("the two ships", "rrsisd"), total, order, cfg) == ([1, 2, 3, 0, 4], 2)
    assert _choose(decompose("three ships", "rrsisd"), total, order, cfg) == ([1, 2, 3, 0, 4], 3)
    assert _choose(decompose("all ships", "rrsisd"), total, order, cfg) == ([1, 2, 3], None)  # ≥ 0.6 × best
    assert _choose(decompose("the ships", "rrsisd"), total, order, cfg) == ([1, 2, 3], None)


def test_rank_score_ties_share_the_better_rank():
    from dglrsis.gvta import _rank_score

    assert _rank_score(np.array([3.0, 1.0, 2.0]), True) == pytest.approx([1.0, 0.0, 0.5])
    assert _rank_score(np.array([3.0, 1.0, 2.0]), False) == pytest.approx([0.0, 1.0, 0.5])
    # "the smallest harbor": two pieces of one 4968-px instance and a 2816-px one; the pieces tie
    assert _rank_score(np.array([4968.0, 4968.0, 2816.0]), False) == pytest.approx([0.5, 0.5, 1.0])
    assert _rank_score(np.array([7.0, 7.0, 1.0]), True) == pytest.approx([1.0, 1.0, 0.0])
    assert _rank_score(np.array([5.0]), True) == pytest.approx([1.0])


def test_candidates_kept_fill_up_to_the_number_asked():
    from dglrsis.gvta import candidates_kept
    from dglrsis.text import decompose

    p_noun = np.array([0.8, 0.28, 0.1, 0.5])  # class_keep 0.5: only 0 and 3 (≥ 0.4) pass
    score = np.array([0.81, 0.48, 0.5, 0.3])  # noun + CAM
    cfg = GVTAConfig(class_keep=0.5)
    kept = lambda text: candidates_kept(p_noun, score, decompose(text, "rrsisd"), cfg).tolist()  # noqa: E731
    assert kept("the ship") == kept("all ships") == kept("the two ships") == [True, False, False, True]
    assert kept("the three ships") == [True, False, True, True]  # filled by score: 2 (0.5) before 1 (0.48)
    assert kept("the four ships") == [True, True, True, True]


def test_take_instances_skips_pieces_of_instances_taken():
    """Two windmills on a 1×12 strip: proposal 0 (px 0–2) is the best, 1 (px 3–4) its blade, 2 (px 8–10)
    the other windmill. Completion grows 0 by its blade; the blade is then no second windmill."""
    from dglrsis.gvta import take_instances

    masks = np.zeros((3, 1, 12), bool)
    masks[0, 0, 0:3] = masks[1, 0, 3:5] = masks[2, 0, 8:11] = True
    props = Proposals.from_masks(masks)
    calls = []

    def grow(j, taken):
        calls.append((j, int(taken.sum())))
        return [0, 1] if j == 0 else [j]

    assert take_instances(props, [0, 1, 2], 2, grow) == ([0, 2], [0, 2, 1])
    assert calls == [(0, 0), (2, 5)]  # the second instance grows knowing the first (5 px) is taken
    assert take_instances(props, [0, 1, 2], None, grow) == ([0, 2], [0, 2, 1])  # "all": the same two
    assert take_instances(props, [0, 1, 2], 2, lambda j, t: [j]) == ([0, 1], [0, 1])  # no completion
    assert take_instances(props, [2, 0, 1], 1, grow) == ([2], [2])


def test_ring_same_share_hand_computed():
    """A 2×2 red square on grey whose 2-px ring (6×6 − 4 corners × 3 − 4 = 20 px) meets a red strip below
    it: the strip's 4 ring pixels have its colour; a grey corner of the grey image is all its colour."""
    from dglrsis.gvta import ring_same_share

    img = np.full((8, 8, 3), 100, np.uint8)
    img[3:5, 3:5] = (200, 0, 0)
    masks = np.zeros((2, 8, 8), bool)
    masks[0, 3:5, 3:5] = True
    img[5:8, 3:5] = (190, 20, 10)  # a red strip below the square, within 30 of its colour
    masks[1, 0:2, 0:2] = True  # a grey corner of grey: its ring is all its colour
    props = Proposals.from_masks(masks)
    # square 0's 2-px ring (city-block dilation, 2 iterations): 20 px, of which rows 5–6 under it (4) red
    assert ring_same_share(img, props, 0) == pytest.approx(4 / 20)
    assert ring_same_share(img, props, 1) == 1.0
    assert ring_same_share(img, props, 0, tol=20) == 0.0  # (190, 20, 10) is 20 off (200, 0, 0): not within
    assert ring_same_share(img, props, 0, tol=21) == pytest.approx(4 / 20)


def test_distinct_instances_drop_small_pieces_of_larger_regions():
    """Plural requests: vehicles stand apart from the road; a wedge of trees where covers meet does not."""
    from dglrsis.gvta import distinct_instances

    img = np.full((64, 64, 3), 90, np.uint8)  # road
    img[:, 40:] = (40, 120, 40)  # trees on the right
    masks = np.zeros((4, 64, 64), bool)
    for k, (y, x) in enumerate([(10, 10), (30, 10)]):  # two vehicles
        img[y : y + 4, x : x + 6] = (220, 220, 30)
        masks[k, y : y + 4, x : x + 6] = True
    masks[2, 50:55, 40:44] = True  # a piece of the trees
    masks[3, :, 40:] = True  # the trees, too large to be tested
    props = Proposals.from_masks(masks)
    leaders = np.array([3, 0, 2, 1])  # candidate i is proposal leaders[i]
    cfg = GVTAConfig(distinct_px=2000)  # per 512²: 31 px on this 64² image (the trees' 1536 px are not)
    pool, same = distinct_instances(img, props, leaders, [1, 2, 3, 0], cfg)
    # the wedge's 40-px ring: 12 px of road (columns 38–39 on its left), 28 of trees
    assert pool == [1, 3, 0] and same[2] == pytest.approx(28 / 40) and same[3] == 0.0
    assert 0 not in same and 1 not in same  # the trees are too large to be tested; the best is kept
    assert distinct_instances(img, props, leaders, [2, 1], cfg)[0] == [2, 1]  # the best is always kept
    assert distinct_instances(img, props, leaders, [1, 2], GVTAConfig())[0] == [1, 2]  # 350 → 5.5 px here
    assert distinct_instances(img, props, leaders, [1, 2], GVTAConfig(distinct_px=2000, distinct=1.01))[
        0
    ] == [
        1,
        2,
    ]


def test_relation_scores_on_region_anchor():
    from dglrsis.gvta import Anchor, _relation_score

    # four instances: fully on the anchor region, half on it, off it and far away, just beside it
    inst = {
        "cx": np.array([10.0, 50.0, 90.0, 60.0]),
        "cy": np.array([10.0, 10.0, 90.0, 60.0]),
        "in_anchor_0": np.array([1.0, 0.5, 0.0, 0.0]),
        "anchor_dist_0": np.array([0.0, 0.0, 0.6, 0.02]),
    }
    a = Anchor((10.0, 10.0), np.ones((4, 4), bool))
    on = _relation_score(inst, "on", a, 0, 100, 100)
    across = _relation_score(inst, "across", a, 0, 100, 100)
    near = _relation_score(inst, "near", a, 0, 100, 100)
    assert on[0] > on[1] > on[2]
    assert across[1] > across[0] and across[1] > across[2]  # overlapping while reaching out
    # "next to the trees" is outside the trees: beside > half on > on it, and beside > far away
    assert near[3] > near[1] > near[0] and near[3] > near[2]
    # distance to the nearest anchor pixel, not to its centroid (60, 60 is far from 10, 10)
    assert (
        near[3]
        > _relation_score({k: v for k, v in inst.items() if "dist" not in k}, "near", a, 0, 100, 100)[3]
    )
    # any gap up to NEAR_GAP is "next to" (a touching junk blob does not beat an object 8 px away);
    # beyond it the score falls
    gaps = {"cx": np.zeros(3), "cy": np.zeros(3), "in_anchor_0": np.zeros(3)}
    gaps["anchor_dist_0"] = np.array([0.0, 0.02, 0.1])
    near = _relation_score(gaps, "near", a, 0, 100, 100)
    assert near[0] == near[1] == 1.0 and near[2] < 0.5


def test_ring_share_hand_computed():
    from dglrsis.gvta import _ring_share

    region = np.zeros((10, 10), bool)
    region[:, :5] = True  # the left half is the land cover
    masks = np.zeros((2, 10, 10), bool)
    masks[0, 4:6, 1:3] = True  # 2×2 inside the region: its 1-px ring (12 px) lies all in it
    masks[1, 4:6, 4:6] = True  # 2×2 straddling the edge x = 5: ring columns 3, 4 in, 6, 7 out → half
    share = _ring_share(region, Proposals.from_masks(masks), width=1)
    assert share == pytest.approx([1.0, 0.5])


def test_touching_groups_and_group_areas_hand_computed():
    from dglrsis.gvta import _group_areas, touching_groups

    masks = np.zeros((5, 12, 12), bool)
    masks[0, 0:2, 0:2] = True  # 4 px
    masks[1, 0:2, 3:5] = True  # 4 px, one column of gap from 0 → same group
    masks[2, 1:3, 1:4] = True  # 6 px overlapping 0 and 1 (2 px shared) → same group
    masks[3, 8:10, 8:10] = True  # 4 px, far away → its own group
    masks[4, 8:10, 0:2] = True  # 4 px, 6 columns from 3 and 6 rows below 0 → its own group
    props = Proposals.from_masks(masks)
    g = touching_groups(props, gap=2)
    assert g[0] == g[1] == g[2] and len({g[0], g[3], g[4]}) == 3
    # union of 0, 1, 2 = 4 + 4 + 6 − 2 shared = 12 px
    assert _group_areas(props, g) == pytest.approx([12, 12, 12, 4, 4])
    apart = np.zeros((2, 8, 8), bool)
    apart[0, :, 0] = apart[1, :, 2] = True  # one empty column (distance 2): grouped at gap 2, not at 1
    assert len(set(touching_groups(Proposals.from_masks(apart), gap=2))) == 1
    assert len(set(touching_groups(Proposals.from_masks(apart), gap=1))) == 2


def test_size_ranks_only_plausible_instances():
    """Size ranks the candidates that are plausibly the noun: "the smallest court" is not a speck whose
    noun + CAM score is far below the best; the others score 0 on size."""
    from dglrsis.gvta import modifier_scores
    from dglrsis.text import decompose

    dec = decompose("the smallest storage tank", "rrsisd")
    inst = {
        "cx": np.full(4, 50.0),
        "cy": np.full(4, 50.0),
        "area": np.array([40.0, 500.0, 900.0, 1500.0]),
        "rgb": np.zeros((4, 3), np.float32),
    }
    image = np.zeros((100, 100, 3), np.uint8)
    mod, _ = modifier_scores(inst, dec.global_, image)
    assert np.argmax(mod) == 0  # ranking every candidate: the speck is the smallest
    inst["plausible"] = np.array([False, True, True, True])
    mod, _ = modifier_scores(inst, dec.global_, image)
    assert mod.tolist() == [0.0, 1.0, 0.5, 0.0]
    dec = decompose("the largest storage tank", "rrsisd")
    assert modifier_scores(inst, dec.global_, image)[0].tolist() == [0.0, 0.0, 0.5, 1.0]


def test_size_plausible_admits_the_small_one_the_cam_lights_but_no_unlit_speck():
    """A world scene's "the smallest basketball court": the true court (noun 0.98) covers little of the
    CAM's hot region (score 0.99 < 0.8 × 1.29), though the CAM peaks on it (0.57); a 53-px speck with
    noun 0.87 is not lit. Hand-computed: noun + CAM ≥ 0.8 × 1.29 = 1.032 keeps the two large courts;
    noun ≥ 0.8 × 0.99 = 0.792 and peak ≥ 0.25 also keeps the true one; the speck stays out."""
    from dglrsis.gvta import size_plausible

    score = np.array([1.29, 1.286, 0.99, 0.87])
    noun = np.array([0.99, 0.985, 0.98, 0.87])
    peak = np.array([0.77, 0.84, 0.57, 0.0])
    cfg = GVTAConfig()
    assert size_plausible(score, noun, peak, cfg).tolist() == [True, True, True, False]
    # size_lit > 1 leaves the noun + CAM score alone: the true court drops out
    assert size_plausible(score, noun, peak, GVTAConfig(size_lit=2.0)).tolist() == [True, True, False, False]
    # lit but not the noun (0.7 < 0.792): out
    assert not size_plausible(score[:3], np.array([0.99, 0.985, 0.7]), peak[:3], cfg)[2]
    # the table says which candidates size did not rank (they score 0 on size)
    from dglrsis.gvta import ReferResult, explain
    from dglrsis.text import decompose

    rows = [
        {"rank": r, "box": [0, 0, 1, 1], "area": 9, "score": 1.0, "noun": 1.0, "cam": 0.0, "modifiers": 0.0}
        | {
            "modifier_scores": {"size: smallest": 0.0},
            "selected": r == 1,
            "instance_area": 9,
            "size_ranked": ok,
        }
        for r, ok in ((1, True), (2, False))
    ]
    dec = decompose("the smallest basketball court", "rrsisd")
    lines = explain(ReferResult(np.zeros((2, 2), bool), np.zeros((2, 2)), dec, "basketball court", [], rows))
    assert ["not plausible" in line for line in lines.splitlines()[1:]] == [False, True]


def test_size_ranks_instances_not_their_pieces():
    """Three pieces of the largest court (2531 px), two of the middle one (1847), the true smallest one
    (535): distinct-area ranks give 0 / 0.5 / 1 for "smallest"; ranking the six pieces instead scores the
    largest court's 0.4 and the middle one's 0.8, close enough to the smallest one's 1 for a better CAM
    to outweigh the size."""
    from dglrsis.gvta import _rank_score, modifier_scores
    from dglrsis.text import decompose

    areas = np.array([2531.0, 2531.0, 2531.0, 1847.0, 1847.0, 535.0])
    assert _rank_score(areas, False, "dense").tolist() == [0.0, 0.0, 0.0, 0.5, 0.5, 1.0]
    assert _rank_score(areas, True, "dense").tolist() == [1.0, 1.0, 1.0, 0.5, 0.5, 0.0]
    assert _rank_score(np.array([7.0, 7.0]), True, "dense").tolist() == [1.0, 1.0]
    # the default tie rule (colour): equal values share the better rank among all n
    assert _rank_score(areas, False).tolist() == [0.4, 0.4, 0.4, 0.8, 0.8, 1.0]
    assert (
        _rank_score(np.array([7.0, 7.0]), True).tolist() == [1.0, 1.0]
        and _rank_score(np.array([3.0]), True) == 1
    )
    inst = {"cx": np.full(6, 5.0), "cy": np.full(6, 5.0), "area": areas, "rgb": np.zeros((6, 3), np.float32)}
    mod, _ = modifier_scores(
        inst, decompose("the smallest basketball court", "rrsisd").global_, np.zeros((9, 9, 3))
    )
    assert mod.tolist() == [0.0, 0.0, 0.0, 0.5, 0.5, 1.0]


def test_landcover_anchor_is_the_land_cover_not_its_context():
    """The anchor of "next to the trees" is found on masked crops: a vegetation superpixel's context
    crop shows the objects around it and scored like them (the region then covered ~1 % of the trees)."""
    from dglrsis.eval.world.draw import LANDCOVER
    from dglrsis.gvta import _anchors, _target_and_vocab
    from dglrsis.text import decompose

    veg = LANDCOVER.index("vegetation")
    scenes = iter_scenes(seed=12, n=20, size=256, kind="rrsisd")
    sc = next(s for s in scenes if (s.landcover == veg).mean() > 0.1)
    p = Predictor(PredictorConfig(clip="world-clip"))
    p.set_image(sc.image)
    cfg = GVTAConfig()
    dec = decompose("the vehicle next to the trees", cfg.vocabulary)
    _, names = _target_and_vocab(dec, cfg, None)
    (anchor,) = _anchors(p.state, p.models, dec, names, np.array([], int), cfg.background).values()
    true = sc.landcover == veg
    iou = (anchor.region & true).sum() / (anchor.region | true).sum()
    assert iou > 0.6, iou


def test_completion_scores_a_piece_as_refer_scores_the_proposal(scene):
    """Completion judges a grown instance by the same competition as the proposals were judged: the
    classes *and* the background land covers. Scored alone, a proposal's mask gets its own noun
    probability (without the land covers, a patch of road scored as the likeliest vehicle)."""
    from dglrsis.gvta import _noun_probability, _target_and_vocab, _union_probability, class_probabilities
    from dglrsis.text import decompose

    p = Predictor(PredictorConfig(clip="world-clip"))
    p.set_image(scene.image)
    for cfg in (GVTAConfig(), GVTAConfig(mask_crops=False), GVTAConfig(background="")):
        _, names = _target_and_vocab(decompose("the vehicle", cfg.vocabulary), cfg, None)
        col = names.index("vehicle")
        probs = class_probabilities(p.state, p.models, names, cfg.background)
        p_cls = _noun_probability(probs, col, len(names))
        if cfg.mask_crops:
            masked = class_probabilities(p.state, p.models, names, cfg.background, masked=True)
            p_cls = np.sqrt(p_cls * _noun_probability(masked, col, len(names)))
        props = p.state.proposals
        js = np.argsort(-props.areas)[:6]  # the largest proposals: land covers among them
        got = _union_probability(p.state, p.models, names, col, np.stack([props.mask(j) for j in js]), cfg)
        assert got == pytest.approx(p_cls[js], abs=2e-3), cfg


def test_explanations_and_not_found(scene):
    from dglrsis.gvta import explain

    p = Predictor(PredictorConfig(clip="world-clip"))
    from dglrsis.eval.world.scenes import READABLE

    p.set_image(scene.image)
    name = READABLE[scene.instances[0].category]
    ref = p.refer(f"the {name} on the left")
    c = ref.candidates
    assert (
        c
        and c[0]["rank"] == 1
        and c[0]["selected"]
        and [x["score"] for x in c] == sorted((x["score"] for x in c), reverse=True)
    )
    for row in c:  # total = noun + CAM + modifier terms (rounded to 4 places)
        assert row["score"] == pytest.approx(row["noun"] + row["cam"] + row["modifiers"], abs=3e-4)
        assert list(row["modifier_scores"]) == ["position: left"]
        assert row["modifiers"] == pytest.approx(0.75 * row["modifier_scores"]["position: left"], abs=2e-4)
    text = explain(ref)
    assert "position: left" in text and len(text.splitlines()) == 1 + min(5, len(c))
    assert ref.found and ref.confidence == pytest.approx(c[0]["noun_prob"], abs=1e-4)
    assert all("instance_area" not in row for row in c)
    # size ranks instance areas (a candidate with the touching pieces it belongs to): the table says so
    big = p.refer(f"the largest {name}")
    table = explain(big, 10).splitlines()[1:]
    for row, line in zip(big.candidates, table, strict=True):
        assert row["instance_area"] >= row["area"] and f"(instance {row['instance_area']} px" in line
        # a candidate outside the plausible set scores 0 on size, and the table says why
        assert row["size_ranked"] or row["modifier_scores"]["size: largest"] == 0.0
        assert ("not plausible" in line) == (not row["size_ranked"])
    assert big.candidates[0]["size_ranked"]
    gone = p.refer("the purple giraffe")
    assert not gone.found and gone.confidence < GVTAConfig().min_confidence


def _refer_cli(tmp_path, scene, text, *extra):
    import subprocess
    import sys

    from dglrsis.io import write_rgb_png

    img = tmp_path / "scene.png"
    write_rgb_png(img, scene.image)
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "dglrsis.cli",
            "refer",
            str(img),
            text,
            "--out",
            str(tmp_path / "m.png"),
            *extra,
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    return out, sorted(p.name for p in tmp_path.iterdir())


@pytest.mark.parametrize("text", ["the of a the", "🚢🛳", "港口旁边的白色船只", "le navire blanc à gauche"])
def test_refer_cli_no_noun_is_a_usage_error(tmp_path, scene, text):
    out, files = _refer_cli(tmp_path, scene, text, "--clip", "world-clip")
    assert out.returncode == 2 and "no noun to look for" in out.stderr
    assert len(out.stderr.strip().splitlines()) == 1 and "Traceback" not in out.stderr
    assert files == ["scene.png"]


def test_refer_cli_not_found_exit_3_no_mask(tmp_path, scene):
    import json

    out, files = _refer_cli(
        tmp_path,
        scene,
        "the purple giraffe",
        "--clip",
        "world-clip",
        "--scales",
        "1.0",
        "--scores",
        str(tmp_path / "s.json"),
    )
    assert out.returncode == 3, out.stderr
    assert out.stderr.strip().startswith("not found: no giraffe") and "Traceback" not in out.stderr
    assert files == ["s.json", "scene.png"]  # the explanation, no mask
    data = json.loads((tmp_path / "s.json").read_text())
    assert data["found"] is False and data["confidence"] < 0.2 and data["candidates"]


def test_cross_scale_cam_has_no_steps_where_windows_meet(monkeypatch):
    """Each window's CAM is min–max normalised on its own, so the same smooth field gets a different offset
    and gain in each window. Pasted with box weights that leaves steps at x = 128, 256, 384 (window starts
    and ends of a 512 px image at scale 0.5); the Hann blend leaves none."""
    from types import SimpleNamespace

    from dglrsis import cam as cam_module
    from dglrsis.gvta import cross_scale_cam

    def window_cams(clip, feats, text_emb):  # per-window CAM: the window's content, min–max normalised
        g = feats[:, 0].numpy()
        lo, hi = g.min(axis=(1, 2), keepdims=True), g.max(axis=(1, 2), keepdims=True)
        return (g - lo) / (hi - lo)

    monkeypatch.setattr(cam_module, "cam_features", lambda clip, batch: batch)
    monkeypatch.setattr(cam_module, "gradcam_from_features", window_cams)
    clip = SimpleNamespace(image_size=64, mean=(0.0, 0.0, 0.0), std=(1.0, 1.0, 1.0))
    y, x = np.mgrid[0:512, 0:512]
    field = 127 + 110 * np.sin(2 * np.pi * x / 700 + 0.3) * np.cos(2 * np.pi * y / 900 + 0.2)
    image = np.repeat(field[..., None], 3, axis=2).astype(np.uint8)
    fused = cross_scale_cam(clip, image, torch.zeros(1, 4), scales=(0.5,))
    step = np.abs(np.diff(fused, axis=1)).mean(axis=0)  # step[i]: mean |fused[:, i+1] − fused[:, i]|
    borders = [127, 255, 383]  # between columns 127|128, 255|256, 383|384
    typical = np.median(step)
    assert max(step[b] for b in borders) < 3 * typical, (step[borders], typical)


def test_gvta_ablation_switches_reach_the_config():
    import argparse

    from dglrsis.commands.options import add_gvta_arguments, gvta_config

    ap = argparse.ArgumentParser()
    add_gvta_arguments(ap)
    base = gvta_config(ap.parse_args([]))
    assert base == GVTAConfig()
    off = gvta_config(ap.parse_args(["--no-distinct", "--no-complete", "--no-cam", "--scales", "1.0"]))
    assert (off.distinct, off.complete, off.cam, off.scales) == (0.0, False, False, (1.0,))
    assert off.multi_keep == base.multi_keep and off.mask_crops and off.modifiers


def test_completion_joins_larger_object_pieces_but_not_a_larger_land_cover(monkeypatch):
    """The best-scoring piece of a bridge is often a small one: completion must join the larger piece of
    the same bridge beside it (it once tried only pieces no larger than the instance so far), but not the
    larger river piece whose masked crop a land cover wins, although CLIP finds bridge + river more
    bridge-like than the bridge alone."""
    from types import SimpleNamespace

    import dglrsis.gvta as gvta

    masks = np.zeros((3, 30, 30), bool)
    masks[0, 8:12, 0:4] = True  # the seed: 16 px of the bridge
    masks[1, 8:12, 4:20] = True  # 64 px more of the bridge, touching the seed
    masks[2, 12:30, 0:12] = True  # 216 px of river below the seed
    state = SimpleNamespace(proposals=Proposals.from_masks(masks))
    bridge = masks[0] | masks[1]

    def union_probability(state, models, names, col, unions, cfg):
        # the share of the bridge the union covers, plus 1 when it holds river
        return (unions & bridge).sum((1, 2)) / bridge.sum() + 1.0 * (unions & masks[2]).any((1, 2))

    monkeypatch.setattr(gvta, "_union_probability", union_probability)
    taken = np.zeros((30, 30), bool)
    cover = np.array([False, False, True])  # a land cover wins the river's masked crop
    members = gvta.complete_instance(state, None, ["bridge"], 0, 0, taken, GVTAConfig(), cover)
    assert members == [0, 1]
    # without land covers the river is just a larger piece, and it joins first
    no_cover = np.zeros(3, bool)
    assert gvta.complete_instance(state, None, ["bridge"], 0, 0, taken, GVTAConfig(), no_cover)[:2] == [0, 2]
