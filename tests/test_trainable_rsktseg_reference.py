"""RSKT-Seg against the public code's own outputs (tests/fixtures/rsktseg_reference.safetensors, written
by tests/fixtures/make_reference_rsktseg.py from LiBingyu01/RSKT-Seg): the public state dict is mapped
into our model by the public key map, and every stage (the CLIP, RemoteCLIP and DINO streams, the four
rotation costs, the DINO cost and the fused embedding, the spatial and class aggregation, the decoder
guidance), the logits in eval and train mode, the one-view output, the BCE loss and the gradients of
everything the public code trains (CLIP q/v through all four rotations included) must agree in float32."""

from pathlib import Path

import pytest
import torch
from fixtures.reference import (
    TOL,
    check_counts,
    check_gradients,
    clip_bundle,
    diff,
    dino_bundle,
    load,
    model_config_of,
    one_view_prob,
    public_state,
    run_stages,
    stage_diffs,
    train_step,
)

FIXTURE = Path(__file__).parent / "fixtures" / "rsktseg_reference.safetensors"


@pytest.fixture(scope="module")
def ref():
    return load(FIXTURE)


def _config(c: dict, **extra):
    gd = c["decoder_guidance_dims"]
    return model_config_of(
        "rsktseg",
        c,
        decoder_guidance_proj_dims=c["decoder_clip_guidance_proj_dims"],
        dino_decoder_guidance_proj_dims=c["decoder_dino_guidance_proj_dims"],
        rclip_guidance_dims=gd,
        dino_guidance_dims=gd,
        dino_layers=(3, 7),
        rclip_layers=c["rclip_layers"],
        **extra,
    )


def _model(t: dict, c: dict):
    from dglrsis.trainable.models import RSKTSeg
    from dglrsis.trainable.models.public_keys import load_public_rsktseg

    m = RSKTSeg(_config(c), clip_bundle(c), clip_bundle(c, "rclip_"), dino_bundle(c))
    assert (m.rclip_size, m.dino_size) == (c["rclip_input"], c["dino_input"])  # the public 768 / 384
    load_public_rsktseg(m, {"model": public_state(t, c)})
    return m


def _stages(m, x: torch.Tensor, names: list[str]) -> dict:
    """Our RSKT-Seg stage by stage, in the layouts the public hooks saw."""
    from dglrsis.trainable.models.rsktseg import rotated_costs

    b, k = x.shape[0], len(names)
    text = m.text_embeddings(names)[None].expand(b, -1, -1, -1)
    costs, img, inter = rotated_costs(m, x, text, m.rotations)
    dino_last, dino_inter, rclip_inter = m.encoders(x)
    rt, a = m.rs_transfer, m.aggregator
    s = dict(dense=img.flatten(1, 2), dino_last=dino_last.flatten(2).transpose(1, 2))
    s["res4"], s["res5"] = m.decoder_guidance(inter)
    s["rres4"], s["rres5"] = (up(r) for up, r in zip(rt.rclip_up, rclip_inter, strict=True))
    s["dino_p1"], s["dino_p2"] = rt.ripd(dino_inter)
    s.update({n: s[n][..., ::2, ::2] for n in ("res4", "res5", "rres4", "rres5", "dino_p1", "dino_p2")})
    s["dino_down"] = m.qgff.dino_down(dino_last)
    s["cost"] = torch.cat(costs, 1)
    s["dino_cost"] = m.cost_volume(s["dino_down"].permute(0, 2, 3, 1), text)
    x_ = s["embed"] = m.embed_cost(s["cost"], dino_last, text)
    g = a.guidance_proj(img.permute(0, 3, 1, 2))
    tg = a.text_guidance_proj(m.text_guidance(text))
    for i, (spatial, cls) in enumerate(a.layers):
        y = spatial(x_, g)
        if i == 0:
            s["spatial0"] = y.transpose(1, 2).reshape(b * k, *y.shape[1:2], *y.shape[3:])
        x_ = s[f"layer{i}"] = cls(y, tg)
    s["logits"] = m(x, names)
    return s


def test_parameter_counts_equal_the_public_model(ref):
    check_counts(_model(*ref), ref[1])


@pytest.mark.parametrize("mode", ["eval", "train"])
def test_every_stage_matches_the_public_code(ref, mode):
    t, c = ref
    ours = run_stages(_model(t, c), _stages, t, c, mode)
    got = stage_diffs(t, mode, ours, ("dense", "dino_last"))
    assert "logits" in got and len(got) >= (16 if mode == "eval" else 3)
    assert max(got.values()) <= TOL, got


def test_one_view_output_matches_the_public_eval_forward(ref):
    t, c = ref
    assert diff(one_view_prob(_model(t, c), t, c), t["eval.prob"]) <= TOL


def test_train_loss_and_gradients_match_the_public_code(ref):
    from dglrsis.trainable.models.public_keys import from_public_rsktseg

    t, c = ref
    m = _model(t, c)
    loss, want = train_step(m, t, c, lambda pub: from_public_rsktseg(pub, m))
    assert abs(loss - t["train.loss"].item()) <= 1e-6
    trained = check_gradients(m, want)
    visual = [n for n in trained if n.startswith("clip.visual.")]
    assert len(trained) > 100 and len(visual) >= 9  # each visual block's q/v, through the four rotations
