"""CAT-Seg against the public code's own outputs (tests/fixtures/catseg_reference.safetensors, written by
tests/fixtures/make_reference.py from cvlab-kaist/CAT-Seg): the public state dict is mapped into our
model by the public key map, and every stage, the logits (eval and train mode), the BCE loss, the
gradients of the fine-tuned parameters, the one-view output and the sliding-window output on a
512×683 image must agree in float32."""

import json
from pathlib import Path

import pytest
import torch

FIXTURE = Path(__file__).parent / "fixtures" / "catseg_reference.safetensors"
TOL = 1e-5


@pytest.fixture(scope="module")
def ref():
    from safetensors import safe_open

    with safe_open(str(FIXTURE), "pt") as f:
        tensors = {k: f.get_tensor(k) for k in f.keys()}
        meta = json.loads(f.metadata()["config"])
    return tensors, meta


def _blocks(small: torch.Tensor, size, block: int) -> torch.Tensor:
    big = small.repeat_interleave(block, -2).repeat_interleave(block, -1)
    return big[..., : size[0], : size[1]].float()


def _public_state(t: dict, c: dict) -> dict:
    state = {k[len("state.") :]: v for k, v in t.items() if k.startswith("state.")}
    emb = torch.zeros(c["vocab_size"], c["transformer_width"])
    emb[t["token_ids"]] = t["token_rows"]
    state["sem_seg_head.predictor.clip_model.token_embedding.weight"] = emb
    state.update({k: torch.zeros(s) for k, s in c["masks"].items()})  # recomputed by our blocks
    return state


# our ModelConfig field → the fixture's size name (the other sizes share the name)
_RENAMED = dict(guidance_dim="guidance_proj", text_guidance_dim="text_guidance_proj", pool_size="pooling")
_SAME = "input_size hidden num_layers heads window decoder_dims decoder_guidance_dims"
_SAME += " decoder_guidance_proj_dims"
_CONFIG_KEYS = {**{k: k for k in _SAME.split()}, **_RENAMED, "guidance_layers": "layer_indexes"}


def _model(t: dict, c: dict):
    import open_clip

    from dglrsis.models import ClipBundle
    from dglrsis.trainable.models import CATSeg, model_config
    from dglrsis.trainable.models.public_keys import load_public_catseg

    clip = open_clip.CLIP(
        c["embed_dim"],
        dict(
            layers=c["vision_layers"],
            width=c["vision_width"],
            patch_size=c["vision_patch_size"],
            image_size=c["image_resolution"],
        ),
        dict(
            context_length=c["context_length"],
            vocab_size=c["vocab_size"],
            width=c["transformer_width"],
            heads=c["transformer_heads"],
            layers=c["transformer_layers"],
        ),
        quick_gelu=True,
    )
    bundle = ClipBundle(
        name="ref",
        arch="ref",
        model=clip,
        preprocess=None,
        tokenizer=open_clip.get_tokenizer("ViT-B-16"),
        image_size=c["image_resolution"],
        mean=tuple(m / 255 for m in c["clip_pixel_mean"]),
        std=tuple(s / 255 for s in c["clip_pixel_std"]),
        embed_dim=c["embed_dim"],
    )
    cfg = model_config("catseg", {ours: c[theirs] for ours, theirs in _CONFIG_KEYS.items()})
    m = CATSeg(cfg, bundle)
    load_public_catseg(m, {"model": _public_state(t, c)})
    return m


def _normalise(x: torch.Tensor, c: dict) -> torch.Tensor:
    mean, std = (torch.tensor(c[k]).view(1, 3, 1, 1) for k in ("clip_pixel_mean", "clip_pixel_std"))
    return (x - mean) / std


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


def _diff(a: torch.Tensor, b: torch.Tensor) -> float:
    assert a.shape == b.shape, (a.shape, b.shape)
    return (a.float() - b.float()).abs().max().item()


def test_parameter_counts_equal_the_public_model(ref):
    t, c = ref
    m = _model(t, c)
    assert sum(p.numel() for p in m.parameters()) == c["n_total"]
    assert m.count_trainable() == c["n_trainable"]


@pytest.mark.parametrize("mode", ["eval", "train"])
def test_every_stage_matches_the_public_code(ref, mode):
    t, c = ref
    m = _model(t, c).train(mode == "train")
    x = _normalise(_blocks(t[f"{mode}.images"], (c["input_size"],) * 2, c["block"]), c)
    with torch.no_grad():
        ours = _stages(m, x, list(c["classes"]))
    got = {}
    for name in [k.split(".", 1)[1] for k in t if k.startswith(f"{mode}.")]:
        if name in ("images", "labels", "loss", "prob"):
            continue
        want = t[f"{mode}.{name}"]
        if name == "dense":
            want = want[:, 1:]
        got[name] = _diff(ours[name][: want.shape[0]], want)
    print(mode, {k: f"{v:.2e}" for k, v in got.items()})
    assert "logits" in got and len(got) >= 3
    assert max(got.values()) <= TOL, got


def test_train_loss_and_gradients_match_the_public_code(ref):
    from dglrsis.trainable.models.public_keys import from_public_catseg
    from dglrsis.trainable.train import seg_loss

    t, c = ref
    m = _model(t, c).train()
    x = _normalise(_blocks(t["train.images"], (c["input_size"],) * 2, c["block"]), c)
    labels = _blocks(t["train.labels"], x.shape[-2:], c["block"]).long()
    m.zero_grad()
    loss = seg_loss(m(x, list(c["classes"])), labels)
    loss.backward()
    assert abs(loss.item() - t["train.loss"].item()) <= 1e-6
    # the public gradients (zeros where the public code trains nothing) through the same key map
    pub = {k: t.get(f"grad.{k}", torch.zeros_like(v)) for k, v in _public_state(t, c).items()}
    want = from_public_catseg(pub)
    trained = 0
    for name, p in m.named_parameters():
        g = p.grad if p.grad is not None else torch.zeros_like(p)
        scale = want[name].abs().max().item()
        assert _diff(g, want[name]) <= 1e-5 * max(1.0, scale), name
        trained += int(scale > 0)
    assert trained > 100  # most of the aggregator and the CLIP q/v weights carry a gradient


def test_one_view_output_matches_the_public_eval_forward(ref):
    from dglrsis.trainable.evaluate import predict_logits

    t, c = ref
    m = _model(t, c).eval()
    x = _normalise(_blocks(t["eval.images"][:1], (c["input_size"],) * 2, c["block"]), c)
    prob = predict_logits(m, x, list(c["classes"])).sigmoid()[0]
    s = c["slide_stride"]
    assert _diff(prob[:, ::s, ::s], t["eval.prob"]) <= TOL


def test_sliding_window_output_matches_the_public_inference(ref):
    from dglrsis.trainable.evaluate import predict_logits

    t, c = ref
    m = _model(t, c).eval()
    x = _normalise(_blocks(t["slide.image"], c["slide_size"], c["block"]), c)
    prob = predict_logits(m, x, list(c["classes"]), sliding=True).sigmoid()[0]
    s = c["slide_stride"]
    assert x.shape[-2:] == (512, 683)
    assert _diff(prob[:, ::s, ::s], t["slide.prob"]) <= TOL
