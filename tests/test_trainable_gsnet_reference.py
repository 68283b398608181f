"""GSNet against the public code's own outputs (tests/fixtures/gsnet_reference.safetensors, written by
tests/fixtures/make_reference_gsnet.py from yecy749/GSNet): the public state dict is mapped into our
model by the public key map, and every stage (both image streams, the fused cost, the aggregation
layers, the DINO decoder guidance), the logits in eval and train mode, the BCE loss and the gradients
of the trained head must agree in float32."""

from pathlib import Path

import pytest
import torch
from fixtures.reference import (
    TOL,
    check_counts,
    check_gradients,
    clip_bundle,
    dino_bundle,
    load,
    model_config_of,
    public_state,
    run_stages,
    stage_diffs,
    train_step,
)

FIXTURE = Path(__file__).parent / "fixtures" / "gsnet_reference.safetensors"


@pytest.fixture(scope="module")
def ref():
    return load(FIXTURE)


def _model(t: dict, c: dict):
    from dglrsis.trainable.models import GSNet
    from dglrsis.trainable.models.public_keys import load_public_gsnet

    cfg = model_config_of(
        "gsnet",
        c,
        decoder_guidance_proj_dims=c["decoder_clip_guidance_proj_dims"],
        dino_decoder_guidance_proj_dims=c["decoder_dino_guidance_proj_dims"],
        dino_layers=(3, 7),
    )
    m = GSNet(cfg, clip_bundle(c), dino_bundle(c))
    load_public_gsnet(m, {"model": public_state(t, c)})
    return m


def _stages(m, x: torch.Tensor, names: list[str]) -> dict:
    """Our GSNet stage by stage, in the layouts the public hooks saw."""
    b = x.shape[0]
    text = m.text_embeddings(names)[None].expand(b, -1, -1, -1)
    img, inter, dino_last, dino_inter = m.dsie(m, x)
    tokens = lambda g: g.flatten(2).transpose(1, 2)  # noqa: E731  B×D×g×g → B×g²×D (no CLS)
    s = dict(dense=img.flatten(1, 2), dino_last=tokens(dino_last))
    s.update(dino3=tokens(dino_inter[0]), dino7=tokens(dino_inter[1]))
    s["res4"], s["res5"] = m.decoder_guidance(inter)
    s["dino_down"] = m.qgff.dino_down(dino_last)
    s["dino_p1"], s["dino_p2"] = m.ripd(dino_inter)
    a = m.aggregator
    x_ = m.qgff(a.conv1, m.cost_volume(img, text), dino_last, text)
    g = a.guidance_proj(img.permute(0, 3, 1, 2))
    tg = a.text_guidance_proj(m.text_guidance(text))
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
    got = stage_diffs(t, mode, ours, ("dense", "dino_last", "dino3", "dino7"))
    assert "logits" in got
    assert max(got.values()) <= TOL, got


def test_train_loss_and_head_gradients_match_the_public_code(ref):
    from dglrsis.trainable.models.public_keys import from_public_gsnet

    t, c = ref
    m = _model(t, c)
    loss, want = train_step(m, t, c, lambda pub: from_public_gsnet(pub, m))
    assert abs(loss - t["train.loss"].item()) <= 1e-6
    # the CLIP gradients are checked against the CAT-Seg fixture
    assert len(check_gradients(m, want, ("clip.",))) > 50


def test_vit_b_parameter_counts_equal_the_public_model():
    """The public GSNet at vitb_384.yaml sizes (CLIP ViT-B/16, RSIB DINO ViT-B/8), counted at random
    weights with tests/fixtures/make_reference_gsnet.py's builder at full sizes."""
    from dglrsis.trainable.models import build_model

    m = build_model("gsnet", dict(clip="ViT-B-16:random", dino="rsib:random"))  # ~10 s on CPU
    assert sum(p.numel() for p in m.parameters()) == 243_988_242
    assert m.count_trainable() == 29_006_865
