"""CAT-Seg against the public code's own outputs (tests/fixtures/catseg_reference.safetensors, written by
tests/fixtures/make_reference.py from cvlab-kaist/CAT-Seg): the public state dict is mapped into our
model by the public key map, and every stage, the logits (eval and train mode), the BCE loss, the
gradients of the fine-tuned parameters, the one-view output and the sliding-window output on a
512×683 image must agree in float32."""

from pathlib import Path

import pytest
import torch
from fixtures.reference import (
    TOL,
    blocks,
    check_counts,
    check_gradients,
    clip_bundle,
    diff,
    load,
    model_config_of,
    normalise,
    one_view_prob,
    public_state,
    run_stages,
    stage_diffs,
    train_step,
)

FIXTURE = Path(__file__).parent / "fixtures" / "catseg_reference.safetensors"


@pytest.fixture(scope="module")
def ref():
    return load(FIXTURE)


def _model(t: dict, c: dict):
    from dglrsis.trainable.models import CATSeg
    from dglrsis.trainable.models.public_keys import load_public_catseg

    m = CATSeg(model_config_of("catseg", c), clip_bundle(c))
    load_public_catseg(m, {"model": public_state(t, c)})
    return m


def _stages(m, x: torch.Tensor, names: list[str]) -> dict:
    """Our model run stage by stage, in the layouts the public hooks saw."""
    text = m.text_embeddings(names)
    img, inter = m.image_features(x)
    b, k = x.shape[0], len(names)
    res4, res5 = m.decoder_guidance(inter)
    a = m.aggregator
    cost = m.cost_volume(img, text)
    emb = a.embed_cost(cost)
    s = {"res4": res4, "res5": res5, "embed": emb.transpose(1, 2).reshape(b * k, -1, *emb.shape[-2:])}
    s["dense"] = img.flatten(1, 2)  # patch tokens only: the public output has the CLS token first
    g = a.guidance_proj(img.permute(0, 3, 1, 2))
    tg = a.text_guidance_proj(m.text_guidance(text, b))
    x_ = emb
    for i, (spatial, cls) in enumerate(a.layers):
        x_ = cls(spatial(x_, g), tg)
        s[f"layer{i}"] = x_
    s["logits"] = m(x, names)
    return s


def test_parameter_counts_equal_the_public_model(ref):
    check_counts(_model(*ref), ref[1])


@pytest.mark.parametrize("mode", ["eval", "train"])
def test_every_stage_matches_the_public_code(ref, mode):
    t, c = ref
    ours = run_stages(_model(t, c), _stages, t, c, mode)
    got = stage_diffs(t, mode, ours)
    assert "logits" in got and len(got) >= 3
    assert max(got.values()) <= TOL, got


def test_train_loss_and_gradients_match_the_public_code(ref):
    from dglrsis.trainable.models.public_keys import from_public_catseg

    t, c = ref
    m = _model(t, c)
    # the public gradients (zeros where the public code trains nothing) through the same key map
    loss, want = train_step(m, t, c, from_public_catseg)
    assert abs(loss - t["train.loss"].item()) <= 1e-6
    assert len(check_gradients(m, want)) > 100  # most of the aggregator and the CLIP q/v weights


def test_one_view_output_matches_the_public_eval_forward(ref):
    t, c = ref
    assert diff(one_view_prob(_model(t, c), t, c), t["eval.prob"]) <= TOL


def test_sliding_window_output_matches_the_public_inference(ref):
    from dglrsis.trainable.evaluate import predict_logits

    t, c = ref
    m = _model(t, c).eval()
    x = normalise(blocks(t["slide.image"], c["slide_size"], c["block"]), c)
    prob = predict_logits(m, x, list(c["classes"]), sliding=True).sigmoid()[0]
    s = c["slide_stride"]
    assert x.shape[-2:] == (512, 683)
    assert diff(prob[:, ::s, ::s], t["slide.prob"]) <= TOL
