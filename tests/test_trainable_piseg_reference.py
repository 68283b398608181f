"""Pi-Seg against the public code's own outputs (tests/fixtures/piseg_reference.safetensors, written by
tests/fixtures/make_reference_piseg.py from Zlittlemoon/Pi-Seg): the public state dict is mapped into our
model by the public key map, and every stage (CLIP, the clean appearance guidance, the perturbed text,
the image generator's μ and σ, the perturbed image features, the aggregation), the logits in eval and
train mode, the BCE loss, the gradients of everything the public code trains, the one-view and the
sliding-window output must agree in float32. Training noise: the public draws are fed to our model
for those comparisons, and drawing from the public seed must give the same numbers."""

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

FIXTURE = Path(__file__).parent / "fixtures" / "piseg_reference.safetensors"


@pytest.fixture(scope="module")
def ref():
    return load(FIXTURE)


@pytest.fixture(scope="module")
def model(ref):
    """Our Pi-Seg at the fixture's sizes with the public weights (the tests change modes and gradients
    only)."""
    from dglrsis.trainable.models import PiSeg
    from dglrsis.trainable.models.public_keys import load_public_piseg

    t, c = ref
    cfg = model_config_of(
        "piseg",
        c,
        spm_reduction=c["pini_reduction"],
        text_noise=c["pini_text_noise_type"],
        image_noise=c["pini_image_noise_type"],
        text_student_t_df=c["pini_student_t_df"],
        image_student_t_df=c["pini_student_t_df"],
    )
    m = PiSeg(cfg, clip_bundle(c))
    load_public_piseg(m, {"model": public_state(t, c)})
    return m


@pytest.fixture
def fed(ref, model, monkeypatch):
    """``model`` drawing the public train run's noise (text, then image) instead of its own."""
    t, _ = ref
    for spm, key in ((model.text_spm, "train.text_eps"), (model.image_spm, "train.image_eps")):

        def draw(like, family, df, want=t[key]):
            assert family == "gaussian" and like.shape == want.shape, (family, like.shape)
            return want

        monkeypatch.setattr(spm, "draw", draw)
    return model


def _caught(monkeypatch):
    """``stages(m, x, names)`` for run_stages: one forward of our Pi-Seg, its stages caught on the way in
    the layouts the public hooks saw."""

    def stages(m, x: torch.Tensor, names: list[str]) -> dict:
        s, a = {}, m.aggregator

        def keep(obj, method, layout):
            fn = getattr(obj, method)

            def wrapped(*args):
                out = fn(*args)
                s.update(layout(out))
                return out

            monkeypatch.setattr(obj, method, wrapped)

        keep(m, "image_features", lambda o: {"dense": o[0].flatten(1, 2)})
        keep(m, "decoder_guidance", lambda o: {"res4": o[0][..., ::2, ::2], "res5": o[1][..., ::2, ::2]})
        keep(m, "perturb", lambda o: {"noised": o[0].permute(0, 3, 1, 2), "text": o[1][None]})
        keep(m.image_spm, "stats", lambda o: {"mu": o[0], "sigma": o[1]})
        points = {"embed": a.conv1, "guid": a.guidance_proj}
        points.update({f"layer{i}": cls for i, (_, cls) in enumerate(a.layers)})
        hooks = [
            mod.register_forward_hook(lambda _m, _i, o, n=n: s.update({n: o})) for n, mod in points.items()
        ]
        try:
            s["logits"] = m(x, names)
        finally:
            for h in hooks:
                h.remove()
        return s

    return stages


def test_parameter_counts_equal_the_public_model(ref, model):
    check_counts(model, ref[1])


@pytest.mark.parametrize("mode", ["eval", "train"])
def test_every_stage_matches_the_public_code(ref, fed, mode, monkeypatch):
    t, c = ref
    ours = run_stages(fed, _caught(monkeypatch), t, c, mode)
    drawn = {k: v for k, v in t.items() if not k.endswith("_eps")}  # fed to ours: equal by construction
    got = stage_diffs(drawn, mode, ours)
    assert len(got) >= (7 if mode == "eval" else 8) and "logits" in got
    assert max(got.values()) <= TOL, got


def test_train_loss_and_gradients_match_the_public_code(ref, fed):
    from dglrsis.trainable.models.public_keys import from_public_piseg

    t, c = ref
    loss, want = train_step(fed, t, c, from_public_piseg)
    assert abs(loss - t["train.loss"].item()) <= 1e-6
    trained = check_gradients(fed, want)
    spm = {n for n in trained if n.startswith(("text_spm.", "image_spm."))}
    assert len(spm) == 12 and len(trained) > 100  # both generators, the aggregator, CLIP q/v


def test_noise_drawn_from_the_public_seed_is_the_public_noise(ref, model, monkeypatch):
    """Every family of our sampler gives the public sampler's numbers from the same seed, and our
    perturbation in training, from the public train run's seed, draws exactly that run's text noise and
    then its image noise (nothing else in either forward draws)."""
    from dglrsis.trainable.models.piseg import NOISES, sample_noise

    t, c = ref
    for family in NOISES:
        torch.manual_seed(c["noise_seed"])
        got = sample_noise((64, 8), family, torch.zeros(1), c["pini_student_t_df"])
        assert torch.equal(got, t[f"noise.{family}"]), family
    drawn = []
    for spm in (model.text_spm, model.image_spm):
        monkeypatch.setattr(spm, "draw", lambda *a, f=spm.draw: drawn.append(f(*a)) or drawn[-1])
    m = model.train()
    x = normalise(blocks(t["train.images"], (c["input_size"],) * 2, c["block"]), c)
    with torch.no_grad():
        text, (img, _) = m.text_embeddings(list(c["classes"])), m.image_features(x)
        torch.manual_seed(c["noise_seed"])
        m.perturb(img, text)
    assert len(drawn) == 2
    assert torch.equal(drawn[0], t["train.text_eps"]) and torch.equal(drawn[1], t["train.image_eps"])


def test_one_view_output_matches_the_public_eval_forward(ref, model):
    t, c = ref
    assert diff(one_view_prob(model, t, c), t["eval.prob"]) <= TOL


def test_sliding_window_output_matches_the_public_inference(ref, model):
    from dglrsis.trainable.evaluate import predict_logits

    t, c = ref
    m = model.eval()
    x = normalise(blocks(t["slide.image"], c["slide_size"], c["block"]), c)
    with torch.no_grad():
        prob = predict_logits(m, x, list(c["classes"]), sliding=True).sigmoid()[0]
    s = c["slide_stride"]
    assert diff(prob[:, ::s, ::s], t["slide.prob"]) <= TOL
