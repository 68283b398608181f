"""LVTA pure parts: context crops, calibrated classification, pixel assignment."""

import numpy as np
import pytest
import torch

from dglrsis.errors import DglrsisError
from dglrsis.lvta import LVTAConfig, assign_pixels, classify, context_crops, crop_box
from dglrsis.masks import Proposals

MEAN, STD = (0.5, 0.5, 0.5), (0.25, 0.25, 0.25)


def _scene():
    img = np.zeros((40, 60, 3), np.uint8)
    img[:, :, 1] = 100  # green background
    img[10:20, 30:40] = (250, 0, 0)  # red square object
    mask = np.zeros((40, 60), bool)
    mask[10:20, 30:40] = True
    return img, mask, np.array([[30, 10, 40, 20]], float)


def test_crop_box_square_with_context():
    cfg = LVTAConfig(context=True, context_ratio=2.0)
    assert crop_box(np.array([10, 20, 30, 30]), cfg) == (0.0, 5.0, 40.0, 45.0)
    assert crop_box(np.array([10, 20, 30, 30]), LVTAConfig(context=False)) == (10.0, 15.0, 30.0, 35.0)


def _denorm(t):
    return ((t * torch.tensor(STD).view(3, 1, 1) + torch.tensor(MEAN).view(3, 1, 1)) * 255).round()


@pytest.mark.parametrize("background", ["keep", "blur", "mean", "mask"])
def test_context_crop_background_treatments(background):
    img, mask, boxes = _scene()
    before = img.copy()
    cfg = LVTAConfig(context_ratio=2.0, background=background)
    crops = context_crops(img, Proposals.from_masks(mask[None]), 32, MEAN, STD, cfg, boxes=boxes)
    assert crops.shape == (1, 3, 32, 32)
    assert np.array_equal(img, before)  # input untouched
    c = _denorm(crops[0])
    assert c[:, 16, 16].tolist() == [250.0, 0.0, 0.0]  # object centre kept as is
    corner = c[:, 1, 1].tolist()  # context pixel, outside the mask
    if background == "keep":
        assert corner == [0.0, 100.0, 0.0]
    elif background == "mask":
        assert corner == [128.0, 128.0, 128.0]  # CLIP mean colour
    elif background == "mean":
        expected = img.reshape(-1, 3).mean(0)
        assert np.allclose(corner, expected, atol=1.5)
    else:
        assert corner[1] < 101 and corner[0] < 60  # blurred green, slightly red-tinted


def test_crop_outside_image_is_mean_colour():
    img, mask, _ = _scene()
    m = np.zeros_like(mask)
    m[0:4, 0:4] = True
    cfg = LVTAConfig(context_ratio=3.0, background="keep")
    crops = context_crops(img, Proposals.from_masks(m[None]), 16, MEAN, STD, cfg)
    assert torch.allclose(crops[0, :, 0, 0], torch.zeros(3), atol=1e-6)  # padded corner = mean


def test_unknown_background_treatment():
    img, mask, boxes = _scene()
    with pytest.raises(DglrsisError):
        context_crops(img, Proposals.from_masks(mask[None]), 16, MEAN, STD, LVTAConfig(background="sepia"))


def test_classify_is_calibrated_softmax():
    crop = torch.nn.functional.normalize(torch.tensor([[1.0, 0.0], [0.6, 0.8]]), dim=-1)
    text = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    p = classify(crop, text, scale=10.0)
    assert torch.allclose(p.sum(1), torch.ones(2))
    assert torch.allclose(p[0], torch.softmax(torch.tensor([10.0, 0.0]), 0))
    assert torch.allclose(p[1], torch.softmax(torch.tensor([6.0, 8.0]), 0))


def test_assign_pixels_most_confident_wins_and_ties_go_to_smaller():
    masks = np.zeros((3, 4, 4), bool)
    masks[0] = True  # whole image, class 0, conf 0.6
    masks[1, :2, :2] = True  # corner, class 1, conf 0.9 → wins its pixels
    masks[2, 2:, 2:] = True  # corner, class 2, conf 0.6 → tie with mask 0: smaller wins
    out = assign_pixels(
        Proposals.from_masks(masks), np.array([0, 1, 2]), np.array([0.6, 0.9, 0.6]), fill_uncovered=False
    )
    expected = np.zeros((4, 4), int)
    expected[:2, :2] = 1
    expected[2:, 2:] = 2
    assert np.array_equal(out, expected)


def test_assign_pixels_uncovered():
    masks = np.zeros((1, 3, 5), bool)
    masks[0, :, :2] = True
    out = assign_pixels(Proposals.from_masks(masks), np.array([4]), np.array([0.9]), fill_uncovered=False)
    assert (out[:, 2:] == -1).all() and (out[:, :2] == 4).all()
    filled = assign_pixels(Proposals.from_masks(masks), np.array([4]), np.array([0.9]), fill_uncovered=True)
    assert (filled == 4).all()
    assert (assign_pixels(Proposals.empty(3, 5), np.zeros(0, int), np.zeros(0), True) == -1).all()


def test_classify_takes_the_max_over_synonyms():
    crop = torch.tensor([[1.0, 0.0]])
    text = torch.tensor([[0.0, 1.0], [1.0, 0.0], [0.6, 0.8]])  # class 0: synonyms 0 and 1; class 1: 2
    p = classify(crop, text, scale=10.0, owner=torch.tensor([0, 0, 1]))
    assert torch.allclose(p[0], torch.softmax(torch.tensor([10.0, 6.0]), 0))


def test_prompt_groups_switches():
    from dglrsis.vocab import Vocabulary, build_prompt_groups, build_prompts

    v = Vocabulary(["storage tank"], [["storage tank", "oil tank"]])
    full = build_prompt_groups(v, "simple", synonyms=True, knowledge=True)
    assert len(full[0]) == 2 and full[0][1] == ["a photo of a oil tank."]
    assert any("cylindrical" in p for p in full[0][0])
    assert len(build_prompt_groups(v, "simple", synonyms=False, knowledge=True)[0]) == 1
    assert build_prompts(v, "simple", synonyms=False, knowledge=False) == [["a photo of a storage tank."]]
