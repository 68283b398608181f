"""Background policies on hand-built scenes (one object on uniform land cover) with the bundled world-clip."""

import numpy as np
import pytest

from dglrsis.background import (
    DEFAULT_BACKGROUND,
    PROMPT_P,
    BackgroundPolicy,
    concepts_for,
    load_background_vocab,
    parse_background,
)
from dglrsis.errors import DglrsisError
from dglrsis.predictor import Predictor, PredictorConfig

CLASSES = ["ship", "storage tank", "plane", "small vehicle", "tennis court", "swimming pool"]
SOIL, VEGETATION = (164, 140, 104), (78, 112, 56)


def scene(kind: str, land: tuple, size: int = 160) -> tuple[np.ndarray, np.ndarray, int]:
    """(H×W×3 image of one object on uniform land, the object's mask, its index in CLASSES)."""
    img = np.empty((size, size, 3), np.uint8)
    img[:] = land
    yy, xx = np.mgrid[:size, :size]
    c = size // 2
    if kind == "storage tank":  # white disk, grey rim, dark centre, as seen from above
        r = np.hypot(yy - c, xx - c)
        obj = r <= 20
        img[obj] = (180, 180, 180)
        img[r <= 16.4] = (240, 240, 240)
        img[r <= 3] = (144, 144, 144)
    else:  # swimming pool: a blue rectangle
        obj = (abs(yy - c) <= 12) & (abs(xx - c) <= 20)
        img[obj] = (40, 150, 220)
    return img, obj, CLASSES.index(kind)


@pytest.fixture(scope="module")
def pred():
    return Predictor(PredictorConfig(clip="world-clip"))


@pytest.mark.parametrize("kind", ["storage tank", "swimming pool"])
@pytest.mark.parametrize("land", [SOIL, VEGETATION])
def test_default_policy_object_as_its_class_rest_background(pred, kind, land):
    img, obj, k = scene(kind, land)
    pred.set_image(img)
    labels = pred.segment(CLASSES).labels  # the default policy
    assert pred.cfg.background == DEFAULT_BACKGROUND
    assert (labels[obj] == k).all()
    assert (labels[~obj] == -1).all()


def test_prompt_makes_the_land_background(pred):
    img, obj, k = scene("storage tank", SOIL)
    pred.set_image(img)
    assert not (pred.segment(CLASSES, background="none").labels == -1).any()
    labels = pred.segment(CLASSES, background="prompt").labels
    assert (labels[~obj] == -1).all() and (labels[obj] == k).all()


def test_threshold_is_background_below_t(pred):
    """``threshold:T``: a proposal whose top probability is < T is background, and only such proposals."""
    img, obj, k = scene("storage tank", SOIL)
    pred.set_image(img)
    seg = pred.segment(CLASSES, background="none")
    props = pred.state.proposals
    conf = seg.probs.max(1)
    outside = np.array([not obj[props.mask(i)].any() for i in range(len(props))])
    land, best_obj = conf[outside].max(), conf[~outside].max()
    assert land < best_obj  # the premise: the object is more confident than the land around it
    labels = pred.segment(CLASSES, background=f"threshold:{(land + best_obj) / 2:.4f}").labels
    assert (labels[~obj] == -1).all() and (labels[obj] == k).all()
    low = pred.segment(CLASSES, background=f"threshold:{0.99 * conf.min():.4f}")
    assert (low.mask_labels >= 0).all()  # nothing below T: no background proposal


def test_policy_syntax():
    assert parse_background("none").none
    assert parse_background("threshold:0.4") == BackgroundPolicy(threshold=0.4)
    assert parse_background("prompt") == BackgroundPolicy(prompt=PROMPT_P)
    assert parse_background("prompt:0.2+threshold:0.6") == BackgroundPolicy(prompt=0.2, threshold=0.6)
    assert parse_background(DEFAULT_BACKGROUND) == BackgroundPolicy(prompt=0.3, threshold=0.5)
    for bad in ("threshold", "threshold:1", "prompt:0", "prompt+prompt", "none+prompt", "auto", ""):
        with pytest.raises(DglrsisError, match="background policy"):
            parse_background(bad)


def test_asked_classes_leave_the_background_vocabulary():
    vocab = load_background_vocab()
    assert {"bare soil", "vegetation", "water", "road", "built-up area"} <= set(vocab.names)
    names, syns = concepts_for(vocab, [["ship", "boat"], ["highway"], ["tree", "trees"]])
    assert "road" not in names and "vegetation" not in names and "water" in names
    assert len(names) == len(vocab.names) - 2 and all(s[0] == n for n, s in zip(names, syns, strict=True))


def test_background_vocabulary_file_and_errors(tmp_path):
    f = tmp_path / "bg.txt"
    f.write_text("# land\nsand, beach\nsnow\n")
    assert load_background_vocab(str(f)).names == ["sand", "snow"]
    with pytest.raises(DglrsisError, match="no background vocabulary"):
        load_background_vocab(str(tmp_path / "missing.txt"))
    with pytest.raises(DglrsisError, match="no background vocabulary"):
        Predictor(PredictorConfig(clip="world-clip", background_vocab="nowhere"))
