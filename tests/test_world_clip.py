"""world-clip: the committed weights classify unseen crops; the training script runs, saves and repeats."""

import json
import os
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from dglrsis.models import BUNDLED_DIR, load_clip
from dglrsis.trainable.world_clip import data as wcd
from dglrsis.trainable.world_clip import trainer as wc


def _class_embeddings(clip, kind):
    from dglrsis.vocab import build_prompts, load_vocabulary

    groups = build_prompts(load_vocabulary(kind))
    emb = clip.encode_text([p for g in groups for p in g])
    sizes = [len(g) for g in groups]
    return torch.stack([F.normalize(e.mean(0), dim=-1) for e in emb.split(sizes)])


def test_committed_world_clip_classifies_unseen_crops():
    from dglrsis.eval.world import SCENE_CLASSES, iter_scenes
    from dglrsis.lvta import LVTAConfig, context_crops
    from dglrsis.masks import Proposals

    assert (BUNDLED_DIR / "world-clip.safetensors").stat().st_size <= 20 * 2**20
    clip = load_clip("world-clip")
    hits = total = 0
    for kind in ("isaid", "rrsisd"):
        text = _class_embeddings(clip, kind)
        classes = SCENE_CLASSES[kind]
        for scene in iter_scenes(seed=3, n=8, size=512, kind=kind):  # world seed 3: never used in training
            if not scene.instances:
                continue
            masks = np.stack([i.mask for i in scene.instances])
            boxes = np.array([i.bbox for i in scene.instances], dtype=float)
            props, cfg = Proposals.from_masks(masks), LVTAConfig()
            crops = context_crops(scene.image, props, clip.image_size, clip.mean, clip.std, cfg, boxes=boxes)
            pred = (clip.encode_images(crops) @ text.T).argmax(1).tolist()
            hits += sum(classes[p] == i.category for p, i in zip(pred, scene.instances, strict=False))
            total += len(pred)
    assert total >= 40
    # the committed 900-step weights classify 71/77 (0.92) of these crops (the benchmark's 371: 0.960);
    # regression guard at 0.80
    assert hits / total >= 0.80, f"{hits}/{total}"


def test_committed_json_matches_trainer_architecture():
    cfg = json.loads((BUNDLED_DIR / "world-clip.json").read_text())
    assert cfg["model_cfg"] == wc.ARCH


def test_multi_positive_loss_hand_computed():
    img = torch.eye(2)
    txt = torch.eye(2)
    scale = torch.tensor(1.0)
    pos = torch.eye(2, dtype=torch.bool)
    # logits = I: each row softmax = [e, 1] / (e + 1); loss = -log(e / (e + 1)) both ways
    expected = -np.log(np.e / (np.e + 1))
    assert float(wc.multi_positive_loss(img, txt, scale, pos)) == pytest.approx(expected, rel=1e-6)
    # all pairs positive: uniform target over 2 → -(log p_same + log p_other) / 2
    full = torch.ones(2, 2, dtype=torch.bool)
    exp_full = -(np.log(np.e / (np.e + 1)) + np.log(1 / (np.e + 1))) / 2
    assert float(wc.multi_positive_loss(img, txt, scale, full)) == pytest.approx(exp_full, rel=1e-6)


def test_positives_are_class_and_colour_aware():
    captions = [("ship", None), ("ship", "red"), ("plane", None)]
    labels = [[("ship", "white")], [("ship", "red"), ("Harbor", "grey")], [("plane", "grey")]]
    pos = wcd.positives(captions, labels).tolist()
    assert pos == [[True, False, False], [True, True, False], [False, False, True]]
    assert wcd.concept_of("airplane") == wcd.concept_of("plane") == "plane"


def test_position_phrases():
    assert wcd._position(0.1, 0.1) == "in the upper left corner"
    assert wcd._position(0.9, 0.5) == "on the right"
    assert wcd._position(0.5, 0.9) == "at the bottom"
    assert wcd._position(0.5, 0.5) == "in the middle"
    assert wcd._move(0.2, 0.7, (True, False, True)) == pytest.approx((0.3, 0.2))


def _tiny(seed, out):
    cfg = wc.WorldClipConfig(
        seed=seed,
        steps=2,
        batch_size=8,
        scenes_per_kind=2,
        landcover_crops=4,
        landcover_pieces=4,
        object_pieces=4,
        crops_per_instance=1,
        threads=1,
    )
    return wc.train(cfg, out, progress=False)


def test_tiny_training_run_is_deterministic_and_loadable(tmp_path):
    from safetensors.torch import load_file

    a, b, c = tmp_path / "a", tmp_path / "b", tmp_path / "c"
    card = _tiny(0, a)
    _tiny(0, b)
    _tiny(1, c)
    assert sorted(p.name for p in a.iterdir()) == [
        "world-clip.card.json",
        "world-clip.json",
        "world-clip.safetensors",
    ]  # no temp files left
    wa, wb, wcc = (load_file(str(d / "world-clip.safetensors")) for d in (a, b, c))
    assert all(v.dtype == torch.float16 for v in wa.values())
    assert wa.keys() == wb.keys() and all(torch.equal(wa[k], wb[k]) for k in wa)
    assert any(not torch.equal(wa[k], wcc[k]) for k in wa)
    assert card["world"]["train_world_seed"] == wc.WORLD_SEED_OFFSET and card["config"]["steps"] == 2
    assert json.loads((a / "world-clip.card.json").read_text())["pool"]["object_crops"] > 0
    assert (
        card["final_cam_loss"] is not None
    )  # both steps train the Grad-CAM loss (cam_start 0.25), hi-res too
    clip = load_clip(f"world-clip:{a / 'world-clip.safetensors'}")
    emb = clip.encode_images(torch.zeros(1, 3, 96, 96))
    assert emb.shape == (1, clip.embed_dim) and torch.isfinite(emb).all()


_TWO_RANKS = """
import os, sys
import accelerate
accelerate.Accelerator.is_main_process = property(lambda self: True)  # every rank saves, into its own folder
from dglrsis.trainable.world_clip import trainer as wc
if sys.argv[2] == "nosync":
    wc.average_gradients = lambda *a: None
cfg = wc.WorldClipConfig(seed=0, steps=4, batch_size=8, scenes_per_kind=2, landcover_crops=4,
                         landcover_pieces=4, object_pieces=4, crops_per_instance=1, threads=1,
                         cam_start=0.0, cam_hires=2)
wc.train(cfg, os.path.join(sys.argv[1], os.environ["RANK"]), progress=False)
"""


@pytest.mark.parametrize("mode", ["sync", "nosync"])
def test_two_process_training_keeps_the_ranks_identical(tmp_path, mode):
    """Two CPU processes (torchrun, gloo) see different batches; averaged gradients keep their weights equal
    (without the averaging they drift apart, which is what a DDP-less loop would silently do)."""
    import subprocess
    import sys

    from safetensors.torch import load_file

    script = tmp_path / "two_ranks.py"
    script.write_text(_TWO_RANKS)
    env = {**os.environ, "ACCELERATE_USE_CPU": "1", "OMP_NUM_THREADS": "1"}
    res = subprocess.run(
        [
            sys.executable,
            "-m",
            "torch.distributed.run",
            "--standalone",
            "--nproc_per_node",
            "2",
            str(script),
            str(tmp_path / "out"),
            mode,
        ],
        capture_output=True,
        text=True,
        env=env,
        timeout=600,
    )
    assert res.returncode == 0, res.stderr[-2000:]
    a, b = (load_file(str(tmp_path / "out" / r / "world-clip.safetensors")) for r in ("0", "1"))
    same = all(torch.equal(a[k], b[k]) for k in a)
    assert same is (mode == "sync")


def test_bad_config(tmp_path):
    from dglrsis.errors import DglrsisError

    with pytest.raises(DglrsisError):
        wc.train(wc.WorldClipConfig(steps=0), Path(tmp_path), progress=False)


def test_dense_patch_target_and_loss():
    from dglrsis.trainable.world_clip import dense as wd

    keys, names = wd.concepts()
    assert keys[:5] == ["bare soil", "vegetation", "water", "road", "built-up"] and len(set(keys)) == len(
        keys
    )
    assert "airplane" not in keys and names["plane"] in ("plane", "airplane")
    lab = torch.zeros(16, 16, dtype=torch.uint8)
    lab[:8, :4] = 3  # left half of the top-left patch
    t = wd.patch_target(lab, 5, 2)
    assert t.shape == (5, 2, 2) and torch.allclose(t.sum(0), torch.ones(2, 2))
    assert float(t[3, 0, 0]) == pytest.approx(0.5) and float(t[0, 1, 1]) == 1.0
    # one labelled patch with target on concept 0; logits = [1, 0] → -log(e / (e + 1));
    # unlabelled rows ignored
    patches = torch.tensor([[[1.0, 0.0], [0.0, 1.0]]])
    target = torch.tensor([[[1.0, 0.0], [0.0, 0.0]]])
    expected = -np.log(np.e / (np.e + 1))
    assert float(wd.dense_loss(patches, torch.eye(2), torch.tensor(1.0), target)) == pytest.approx(expected)
    assert float(wd.dense_loss(patches, torch.eye(2), torch.tensor(1.0), torch.zeros(1, 2, 2))) == 0.0


def test_scene_samples_carry_flipped_dense_targets():
    from dglrsis.trainable.world_clip import dense as wd

    keys, _ = wd.concepts()
    pool = wcd.build_pool(1000, 1, 512, 1, 2, wc.OPENAI_MEAN, wc.OPENAI_STD)
    assert pool.labels.shape == (len(pool.scenes), wcd.SCENE, wcd.SCENE) and int(pool.labels.max()) < len(
        keys
    )
    data = wcd.PoolDataset(
        pool, wcd.TextSource.load(), 40, 0, (0.0, 0.0, 1.0), wc.OPENAI_MEAN, wc.OPENAI_STD, grid=12
    )
    items = [data[k] for k in range(8)]
    assert all(it[4] is not None and it[4].shape == (len(keys), 12, 12) for it in items)
    assert all(torch.allclose(it[4].sum(0), torch.ones(12, 12), atol=1e-5) for it in items)
    # the whole-scene target is the label map's patch shares under the sample's flips
    full = wd.patch_target(pool.labels[0], len(keys), 12)
    variants = [wcd._flip(full, (h, v, t)) for h in (0, 1) for v in (0, 1) for t in (0, 1)]
    whole = [it[4] for it in items if any(torch.allclose(it[4], f) for f in variants)]
    assert whole, "no whole-scene sample matched a flip of the full label map"
    batch = wcd.dense_targets([items[0][4], None])
    assert batch.shape == (2, 144, len(keys)) and float(batch[1].sum()) == 0.0


def test_dense_features_and_symmetric_loss():
    import open_clip

    from dglrsis.trainable.world_clip import dense as wd

    torch.manual_seed(0)
    model = open_clip.CLIP(**wc.ARCH).eval()
    x = torch.randn(2, 3, 96, 96)
    with torch.no_grad():
        ref = model.visual(x)
        feats = {}
        for feature, count in (("none", 0), ("output", 1), ("cls", 1), ("both", 2)):
            pooled, feats[feature] = wd._visual(model.visual, x, feature)
            assert torch.allclose(pooled, ref, atol=1e-5)
            assert len(feats[feature]) == count and all(f.shape == (2, 144, 128) for f in feats[feature])
        assert torch.allclose(feats["both"][0], feats["cls"][0]) and torch.allclose(
            feats["both"][1], feats["output"][0]
        )
        assert not torch.allclose(feats["cls"][0], feats["output"][0], atol=1e-3)
    # symmetric: concept → patch CE over the patches, averaged with patch → concept
    patches = torch.tensor([[[1.0, 0.0], [0.0, 1.0]]])
    target = torch.tensor([[[1.0, 0.0], [0.0, 1.0]]])
    one = -np.log(np.e / (np.e + 1))  # both directions: a softmax over [1, 0]
    assert float(wd.dense_loss(patches, torch.eye(2), torch.tensor(1.0), target, True)) == pytest.approx(one)


@pytest.mark.parametrize("side", [96, 192])
def test_training_gradcam_equals_the_inference_gradcam(side):
    """The differentiable Grad-CAM the CAM loss trains is the map dglrsis.cam.clip_gradcam computes, at the
    native side and (positional embedding interpolated) at the 192 px of the hi-res CAM steps."""
    import open_clip
    from pytorch_grad_cam.utils.image import scale_cam_image

    from dglrsis.cam import clip_gradcam
    from dglrsis.trainable.world_clip import cam as wcam
    from dglrsis.vit import resize_pos_embed

    torch.manual_seed(0)
    model = open_clip.CLIP(**wc.ARCH).eval()
    g = side // 8
    x, text = torch.randn(3, 3, side, side), F.normalize(torch.randn(3, 128), dim=-1)
    ref = clip_gradcam(model, x, text)
    with resize_pos_embed(model.visual, g), wcam.capture_ln1(model.visual) as acts:
        img = F.normalize(model.encode_image(x), dim=-1)
    assert model.visual.positional_embedding.shape[0] == 145  # restored
    logits = wcam.gradcam_logits(acts["a"], (img * text).sum(-1))
    assert logits.shape == (3, g * g) and logits.requires_grad
    # the library min–max scales per layer, resizes, then min–max scales the layer mean again
    mine = scale_cam_image(
        scale_cam_image(logits.detach().clamp_min(0).reshape(3, g, g).numpy(), (side, side))
    )
    np.testing.assert_allclose(mine, ref, atol=1e-4)
    # second order: the map's loss reaches the weights
    wcam.cam_loss(logits, torch.zeros(3, g * g).index_fill_(1, torch.arange(10), 1.0)).backward()
    assert model.visual.transformer.resblocks[0].attn.in_proj_weight.grad.abs().sum() > 0


def test_hires_scenes_are_flipped_pool_scenes_with_matching_targets():
    from dglrsis.trainable.world_clip import cam as wcam
    from dglrsis.trainable.world_clip import dense as wd

    keys, _ = wd.concepts()
    pool = wcd.build_pool(1000, 1, 512, 1, 2, wc.OPENAI_MEAN, wc.OPENAI_STD, progress=False)
    x, dense = wcam.hires_scenes(pool, 6, np.random.default_rng(0), wc.OPENAI_MEAN, wc.OPENAI_STD, 24)
    assert x.shape == (6, 3, wcd.SCENE, wcd.SCENE) and dense.shape == (6, 576, len(keys))
    assert torch.allclose(dense.sum(-1), torch.ones(6, 576), atol=1e-5)
    mean, std = torch.tensor(wc.OPENAI_MEAN).view(3, 1, 1), torch.tensor(wc.OPENAI_STD).view(3, 1, 1)
    flips = [(h, v, t) for h in (0, 1) for v in (0, 1) for t in (0, 1)]
    for img, target in zip(x, dense, strict=False):
        raw = (img * std + mean) * 255
        match = [
            (j, f)
            for j in range(len(pool.scenes))
            for f in flips
            if torch.allclose(raw, wcd._flip(pool.scenes[j].float(), f), atol=1e-3)
        ]
        assert match, "a hi-res sample is not a flip of a pool scene"
        j, f = match[0]
        full = wcd._flip(wd.patch_target(pool.labels[j], len(keys), 24), f).flatten(1).T
        assert torch.allclose(target, full)


def test_bench_patch_share_reference_and_summary_hand_computed(bench_module):
    bench = bench_module("bench_world_clip")
    mask = np.zeros((4, 4), bool)
    mask[:2] = True  # top half: patch shares [[1, 1], [0, 0]] on a 2×2 grid
    ref = bench.patch_share_map(mask, 2)
    # bilinear (align_corners=False) 2 → 4 rows sample at −0.25, 0.25, 0.75, 1.25 → 1, 0.75, 0.25, 0
    np.testing.assert_allclose(ref, np.repeat([[1.0], [0.75], [0.25], [0.0]], 4, axis=1), atol=1e-6)
    recs = [
        {"area": 0.005, "mass": 0.2, "hit": True, "reference": 0.4},
        {"area": 0.02, "mass": 0.6, "hit": False, "reference": 0.8},
        {"area": 0.03, "mass": 0.4, "hit": True, "reference": 0.6},
    ]
    s = bench.summarise_cam(recs, "cam192")
    assert s["cam192_top10_mass_inside"] == pytest.approx(0.4) and s["cam192_pointing_game"] == pytest.approx(
        2 / 3
    )
    assert s["cam192_reference_medium"] == pytest.approx(0.7) and s["cam192_n_small"] == 1
    assert s["cam192_top10_mass_inside_large"] is None and s["cam192_n_large"] == 0


def test_cam_loss_and_concept_pick_hand_computed():
    from dglrsis.trainable.world_clip import cam as wcam

    # std([1, -1]) = √2 → z = ±3/√2; both halves are log(1 + e^(−3/√2))
    good = wcam.cam_loss(torch.tensor([[1.0, -1.0]]), torch.tensor([[1.0, 0.0]]))
    assert float(good) == pytest.approx(np.log1p(np.exp(-3 / np.sqrt(2))), rel=1e-5)
    bad = wcam.cam_loss(torch.tensor([[-1.0, 1.0]]), torch.tensor([[1.0, 0.0]]))
    assert float(bad) == pytest.approx(np.log1p(np.exp(3 / np.sqrt(2))), rel=1e-5)
    dense = torch.zeros(3, 4, 7)
    dense[0, :, 0] = 1.0  # land cover only: never picked
    dense[1, :2, 5] = 0.2  # 0.4 patch of an object: too little
    dense[2, :, 6] = 0.5  # two patches' worth of concept 6
    rows, concept = wcam.pick_concepts(dense, 5, torch.Generator().manual_seed(0))
    assert rows.tolist() == [2] and concept.tolist() == [6]


def test_recipe_file_is_the_bundled_recipe_and_overrides_are_typed(tmp_path, capsys):
    """trainable/configs/world_clip.yaml reproduces the config recorded in the bundled weights' card;
    overrides are type-checked like the trainable models' configs; a bad key is one line, exit 2."""
    from dataclasses import asdict

    from dglrsis.errors import DglrsisError

    recipe = Path(__file__).resolve().parents[1] / "trainable" / "configs" / "world_clip.yaml"
    card = json.loads((BUNDLED_DIR / "world-clip.card.json").read_text())
    cfg = asdict(wc.load_world_clip_config(recipe))
    assert json.loads(json.dumps(cfg)) == card["config"]
    cfg = wc.load_world_clip_config(recipe, ["steps=3", "mix=[0.2,0.3,0.5]", "lr=1"])
    assert (cfg.steps, cfg.mix, cfg.lr) == (3, (0.2, 0.3, 0.5), 1.0) and isinstance(cfg.lr, float)
    for bad in (["stepz=3"], ["steps=many"], ["steps"]):
        with pytest.raises(DglrsisError):
            wc.load_world_clip_config(None, bad)
    assert wc.main(["steps=x", "--out", str(tmp_path / "o"), "--no-progress"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "steps" in err[0] and not (tmp_path / "o").exists()


def test_landcover_proposals_are_small_pieces_of_one_cover():
    from dglrsis.masks import Proposals

    landcover = np.zeros((40, 40), int)
    landcover[:, 20:] = 3  # left: cover 0, right: cover 3
    objects = np.zeros((40, 40), bool)
    objects[0:4, 0:4] = True
    masks = np.zeros((5, 40, 40), bool)
    masks[0, 10:14, 2:6] = True  # inside cover 0, no object pixels → piece of cover 0
    masks[1, 10:14, 22:26] = True  # inside cover 3 → piece of cover 3
    masks[2, 0:5, 0:5] = True  # 16 of 25 px an object → no
    masks[3, 20:24, 17:22] = True  # 12 px cover 0, 8 px cover 3: 60 % one cover → no
    masks[4, :, :] = True  # the whole image: not of object size → no
    masks[4, 0:4, 0:4] = False
    found = wcd.landcover_proposals(Proposals.from_masks(masks), landcover, objects)
    assert found == [(0, 0), (1, 3)]


def test_object_proposals_are_pieces_of_one_instance():
    from dglrsis.masks import Proposals

    a = np.zeros((30, 30), bool)
    a[2:12, 2:12] = True
    b = np.zeros((30, 30), bool)
    b[15:25, 15:25] = True
    masks = np.zeros((4, 30, 30), bool)
    masks[0, 2:6, 2:6] = True  # inside a
    masks[1, 15:25, 15:25] = True  # all of b
    masks[2, 10:14, 10:14] = True  # 4 of 16 px in a → no
    masks[3, 26:29, 26:29] = True  # in neither → no
    assert wcd.object_proposals(Proposals.from_masks(masks), [a, b]) == [(0, 0), (1, 1)]
    assert wcd.object_proposals(Proposals.from_masks(masks), []) == []


def test_pool_pieces_join_the_crops_they_are_captioned_like():
    plain = wcd.build_pool(1000, 1, 512, 1, 2, wc.OPENAI_MEAN, wc.OPENAI_STD)
    both = wcd.build_pool(
        1000, 1, 512, 1, 2, wc.OPENAI_MEAN, wc.OPENAI_STD, landcover_pieces=4, object_pieces=4
    )
    assert len(plain.lc) == 2 and len(both.lc) == 6
    assert len(both.crops) == len(plain.crops) + 4
    assert set(both.lc_meta) <= set(wcd.LANDCOVER_WORDS)
    classes = {c for scene in both.scene_meta for c, _, _ in scene}
    assert {
        c for c, _ in both.crop_meta
    } <= classes  # object pieces are captioned with their instance's class
    # the first scene's object crops and window come before its pieces: the pieces are added, not swapped in
    n = len(both.scene_meta[0])  # crops_per_instance = 1
    assert torch.equal(both.lc[0], plain.lc[0]) and torch.equal(both.crops[:n], plain.crops[:n])


def test_bench_piece_accuracy_counts_the_pieces_of_each_kind(bench_module):
    from dglrsis.eval.world import iter_scenes
    from dglrsis.proposals import generate_proposals

    bench = bench_module("bench_world_clip")
    out = bench.piece_accuracy(load_clip("world-clip"), "rrsisd", 7, 1, 512)
    scene = next(iter(iter_scenes(7, 1, 512, "rrsisd")))
    props = generate_proposals(scene.image)
    assert out["landcover_n"] == len(wcd.landcover_proposals(props, scene.landcover, scene.class_map > 0))
    assert out["object_n"] == len(wcd.object_proposals(props, [i.mask for i in scene.instances]))
    assert out["landcover_n"] > 0 and out["object_n"] > 0
    assert all(
        0 <= out[f"{w}_{c}"] <= out[f"{w}_n"] for w in ("landcover", "object") for c in ("context", "masked")
    )


def test_bench_refusals_summary_hand_computed():
    import importlib.util

    path = Path(__file__).resolve().parents[1] / "bench" / "bench_refusals.py"
    spec = importlib.util.spec_from_file_location("bench_refusals", path)
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    k = len(bench.ABSENT)
    absent = [0.5] + [0.0] * (k - 1) + [0.1] * k  # two images; the first query found on the first only
    s = bench.summary([0.3, 0.25, 0.1, 0.9], absent, 0.2)
    assert s["expressions_found"] == 0.75 and s["expressions_min"] == 0.1
    assert s["absent_not_found"] == pytest.approx((2 * k - 1) / (2 * k)) and s["absent_median"] == 0.1
    assert s["absent_found"][bench.ABSENT[0]] == 0.5 and s["absent_found"][bench.ABSENT[1]] == 0.0
