"""Every registry entry against a file forged in its release's layout.

Key names, nesting, wrappers and dtypes are written here from the publishing repositories' model code —
OpenAI's ``clip/model.py`` (VisionTransformer / Transformer / CLIP attribute names, fp16 release with
``input_resolution``/``context_length``/``vocab_size`` entries), RemoteCLIP/GeoRSCLIP (open_clip state
dicts saved bare), facebookresearch/dino ``vision_transformer.py`` + ``main_dino.py`` (``checkpoint.pth``
= ``{student, teacher, optimizer, epoch, args: Namespace, dino_loss}``, ``module.``/``backbone.``/``head.``
prefixes), transformers 4.x DINOv2 folders (``encoder.layer.N.attention.attention.query``), SAM's bare
``state_dict`` — never from our loader's own tables. Full-size tensors only where the test is marked slow;
the light tests compare key/shape layouts on the meta device or load tiny configs end to end.
"""

import argparse
import json
import math

import pytest
import torch

from dglrsis.errors import DglrsisError
from dglrsis.models import CLIP_MODELS, DINO_MODELS, load_clip, load_dino, load_sam

# OpenAI CLIP dimensions as published (model card / clip.load's state dicts): vision width, layers,
# patch, resolution; embed dim; text width, layers.
OPENAI_DIMS = {
    "ViT-B-32": (768, 12, 32, 224, 512, 512, 12),
    "ViT-B-16": (768, 12, 16, 224, 512, 512, 12),
    "ViT-L-14": (1024, 24, 14, 224, 768, 768, 12),
    "ViT-L-14-336": (1024, 24, 14, 336, 768, 768, 12),
}


def _resblocks(prefix: str, width: int, layers: int) -> dict:
    out = {}
    for i in range(layers):
        b = f"{prefix}transformer.resblocks.{i}."
        out.update(
            {
                b + "attn.in_proj_weight": (3 * width, width),
                b + "attn.in_proj_bias": (3 * width,),
                b + "attn.out_proj.weight": (width, width),
                b + "attn.out_proj.bias": (width,),
                b + "ln_1.weight": (width,),
                b + "ln_1.bias": (width,),
                b + "mlp.c_fc.weight": (4 * width, width),
                b + "mlp.c_fc.bias": (4 * width,),
                b + "mlp.c_proj.weight": (width, 4 * width),
                b + "mlp.c_proj.bias": (width,),
                b + "ln_2.weight": (width,),
                b + "ln_2.bias": (width,),
            }
        )
    return out


def openai_clip_layout(arch: str, release_extras: bool = True) -> dict:
    """key → shape of OpenAI's ``CLIP`` (clip/model.py) for ``arch``; the release adds three scalars."""
    vw, vl, p, res, emb, tw, tl = OPENAI_DIMS[arch]
    grid = res // p
    out = {
        "visual.class_embedding": (vw,),
        "visual.positional_embedding": (grid * grid + 1, vw),
        "visual.proj": (vw, emb),
        "visual.conv1.weight": (vw, 3, p, p),
        "visual.ln_pre.weight": (vw,),
        "visual.ln_pre.bias": (vw,),
        "visual.ln_post.weight": (vw,),
        "visual.ln_post.bias": (vw,),
        **_resblocks("visual.", vw, vl),
        "positional_embedding": (77, tw),
        "text_projection": (tw, emb),
        "logit_scale": (),
        "token_embedding.weight": (49408, tw),
        "ln_final.weight": (tw,),
        "ln_final.bias": (tw,),
        **_resblocks("", tw, tl),
    }
    if release_extras:
        out.update({"input_resolution": (), "context_length": (), "vocab_size": ()})
    return out


def _meta_state(arch: str) -> dict:
    import open_clip

    with torch.device("meta"):
        model = open_clip.create_model(arch, pretrained=None, device="meta")
    return {k: tuple(v.shape) for k, v in model.state_dict().items()}


@pytest.mark.parametrize("name", [n for n, s in CLIP_MODELS.items() if s.arch in OPENAI_DIMS])
def test_clip_release_layout_fits_the_built_model(name):
    """OpenAI/open_clip/RemoteCLIP/GeoRSCLIP files all use OpenAI's names; our model takes exactly them."""
    spec = CLIP_MODELS[name]
    layout = openai_clip_layout(spec.arch, release_extras=False)
    assert _meta_state(spec.arch) == layout


def _forge(layout: dict, dtype=torch.float16, seed: int = 0) -> dict:
    g = torch.Generator().manual_seed(seed)
    out = {}
    for k, shape in layout.items():
        if k in ("input_resolution", "context_length", "vocab_size"):
            out[k] = torch.tensor({"input_resolution": 224, "context_length": 77, "vocab_size": 49408}[k])
        else:
            out[k] = (torch.randn(shape, generator=g) * 0.02).to(dtype)
    return out


@pytest.mark.slow
def test_openai_release_and_hub_files_load_end_to_end(tmp_path, monkeypatch):
    """ViT-B-32 fp16 in OpenAI's layout (local path) and as the open_clip hub file ($DGLRSIS_WEIGHTS)."""
    from open_clip.transformer import QuickGELU
    from safetensors.torch import save_file

    state = _forge(openai_clip_layout("ViT-B-32"))
    torch.save(state, tmp_path / "ViT-B-32.pt")
    a = load_clip(f"ViT-B-32:{tmp_path / 'ViT-B-32.pt'}")  # release keys say: OpenAI → QuickGELU
    assert isinstance(a.model.visual.transformer.resblocks[0].mlp.gelu, QuickGELU)
    hub = {k: v for k, v in state.items() if v.ndim or k == "logit_scale"}
    save_file(hub, str(tmp_path / "ViT-B-32-openai.safetensors"))
    monkeypatch.setenv("DGLRSIS_WEIGHTS", str(tmp_path))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    b = load_clip("ViT-B-32:openai")
    assert isinstance(b.model.visual.transformer.resblocks[0].mlp.gelu, QuickGELU)
    for m in (a.model, b.model):
        assert torch.equal(m.visual.conv1.weight, state["visual.conv1.weight"].float())
    x = torch.randn(1, 3, 224, 224)
    assert torch.allclose(a.encode_images(x), b.encode_images(x), atol=1e-6)


@pytest.mark.slow
@pytest.mark.parametrize("name", ["RemoteCLIP-ViT-B-32", "GeoRSCLIP-ViT-B-32"])
def test_rs_clip_release_files_load_end_to_end(name, tmp_path, monkeypatch):
    """RemoteCLIP/GeoRSCLIP ``.pt``: a bare open_clip state dict (fp32), found in $DGLRSIS_WEIGHTS."""
    spec = CLIP_MODELS[name]
    state = _forge(openai_clip_layout(spec.arch, release_extras=False), torch.float32)
    torch.save(state, tmp_path / spec.hf_file.split("/")[-1])
    monkeypatch.setenv("DGLRSIS_WEIGHTS", str(tmp_path))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    clip = load_clip(name)
    assert torch.equal(clip.model.text_projection, state["text_projection"])


def test_torchscript_release_is_refused_with_a_hint(tmp_path):
    torch.jit.save(torch.jit.script(torch.nn.Linear(2, 2)), tmp_path / "ViT-B-16.pt")
    with pytest.raises(DglrsisError, match="TorchScript") as info:
        load_clip(f"ViT-B-16:{tmp_path / 'ViT-B-16.pt'}")
    assert "\n" not in str(info.value) and "open_clip_model.safetensors" in str(info.value)


# ------------------------------------------------------------------------------------------ SAM
@pytest.mark.slow
def test_sam_vit_b_release_file(tmp_path):
    """``sam_vit_b_01ec64.pth``: ``torch.save(sam.state_dict())`` of segment-anything's build_sam_vit_b."""
    from segment_anything import sam_model_registry

    ref = sam_model_registry["vit_b"](checkpoint=None)
    torch.save(ref.state_dict(), tmp_path / "sam_vit_b_01ec64.pth")
    sam = load_sam("vit_b", str(tmp_path / "sam_vit_b_01ec64.pth"))
    for (k, v), (k2, v2) in zip(ref.state_dict().items(), sam.state_dict().items(), strict=True):
        assert k == k2 and torch.equal(v, v2)


# ------------------------------------------------------------------------------------------ DINO v1
def dino_vit_layout(dim: int, depth: int, patch: int, grid: int) -> dict:
    """key → shape of facebookresearch/dino ``VisionTransformer`` (qkv_bias, mlp_ratio 4)."""
    out = {
        "cls_token": (1, 1, dim),
        "pos_embed": (1, grid * grid + 1, dim),
        "patch_embed.proj.weight": (dim, 3, patch, patch),
        "patch_embed.proj.bias": (dim,),
        "norm.weight": (dim,),
        "norm.bias": (dim,),
    }
    for i in range(depth):
        b = f"blocks.{i}."
        out.update(
            {
                b + "norm1.weight": (dim,),
                b + "norm1.bias": (dim,),
                b + "attn.qkv.weight": (3 * dim, dim),
                b + "attn.qkv.bias": (3 * dim,),
                b + "attn.proj.weight": (dim, dim),
                b + "attn.proj.bias": (dim,),
                b + "norm2.weight": (dim,),
                b + "norm2.bias": (dim,),
                b + "mlp.fc1.weight": (4 * dim, dim),
                b + "mlp.fc1.bias": (4 * dim,),
                b + "mlp.fc2.weight": (dim, 4 * dim),
                b + "mlp.fc2.bias": (dim,),
            }
        )
    return out


def _dino_head(dim: int) -> dict:
    """DINOHead keys (projection MLP + weight-normed last layer): present in the checkpoint, unused."""
    g = torch.Generator().manual_seed(1)
    return {
        "head.mlp.0.weight": torch.randn(64, dim, generator=g),
        "head.mlp.0.bias": torch.randn(64, generator=g),
        "head.last_layer.weight_g": torch.ones(128, 1),
        "head.last_layer.weight_v": torch.randn(128, 64, generator=g),
    }


def dino_vit_forward(state: dict, x: torch.Tensor, heads: int, patch: int) -> torch.Tensor:
    """facebookresearch/dino ``VisionTransformer.forward`` tokens (pre-norm blocks, LayerNorm eps 1e-6)."""
    import torch.nn.functional as F

    def ln(t, name):
        return F.layer_norm(t, t.shape[-1:], state[name + ".weight"], state[name + ".bias"], eps=1e-6)

    t = F.conv2d(x, state["patch_embed.proj.weight"], state["patch_embed.proj.bias"], stride=patch)
    t = t.flatten(2).transpose(1, 2)
    t = torch.cat([state["cls_token"].expand(len(t), -1, -1), t], 1) + state["pos_embed"]
    depth = len({k.split(".")[1] for k in state if k.startswith("blocks.")})
    for i in range(depth):
        b = f"blocks.{i}."
        bsz, n, c = t.shape
        qkv = F.linear(ln(t, b + "norm1"), state[b + "attn.qkv.weight"], state[b + "attn.qkv.bias"])
        q, k, v = qkv.reshape(bsz, n, 3, heads, c // heads).permute(2, 0, 3, 1, 4)
        attn = ((q @ k.transpose(-2, -1)) / math.sqrt(c // heads)).softmax(-1)
        y = (attn @ v).transpose(1, 2).reshape(bsz, n, c)
        t = t + F.linear(y, state[b + "attn.proj.weight"], state[b + "attn.proj.bias"])
        h = F.gelu(F.linear(ln(t, b + "norm2"), state[b + "mlp.fc1.weight"], state[b + "mlp.fc1.bias"]))
        t = t + F.linear(h, state[b + "mlp.fc2.weight"], state[b + "mlp.fc2.bias"])
    return ln(t, "norm")


@pytest.mark.parametrize("teacher_prefix", ["backbone.", "module.backbone."])
def test_dino_v1_checkpoint_pth_end_to_end(tmp_path, teacher_prefix):
    """DINO's checkpoint.pth (args Namespace included: weights_only refused it) → same tokens as DINO."""
    spec = DINO_MODELS["dino-tiny"].arch
    dim, depth, patch = spec["hidden_size"], spec["num_hidden_layers"], spec["patch_size"]
    grid = spec["image_size"] // patch
    g = torch.Generator().manual_seed(0)
    layout = dino_vit_layout(dim, depth, patch, grid)
    backbone = {k: torch.randn(s, generator=g) * 0.1 for k, s in layout.items()}
    for k in backbone:
        if k.endswith("norm1.weight") or k.endswith("norm2.weight") or k == "norm.weight":
            backbone[k] = 1 + backbone[k]
    teacher = {teacher_prefix + k: v for k, v in backbone.items()}
    teacher.update({teacher_prefix.replace("backbone.", "") + k: v for k, v in _dino_head(dim).items()})
    student = {"module." + k.removeprefix("module."): v.clone() * 0 for k, v in teacher.items()}
    ckpt = {
        "student": student,
        "teacher": teacher,
        "optimizer": {"state": {}, "param_groups": [{"lr": 1e-4, "params": [0, 1]}]},
        "epoch": 100,
        "args": argparse.Namespace(arch="vit_base", patch_size=8, out_dim=65536),
        "dino_loss": {"center": torch.zeros(1, 128)},
    }
    torch.save(ckpt, tmp_path / "checkpoint.pth")
    dino = load_dino(f"dino-tiny:{tmp_path / 'checkpoint.pth'}")
    x = torch.randn(2, 3, grid * patch, grid * patch, generator=g)
    with torch.no_grad():
        ours = dino.model(pixel_values=x).last_hidden_state
    ref = dino_vit_forward(backbone, x, spec["num_attention_heads"], patch)
    assert torch.allclose(ours, ref, atol=1e-5), (ours - ref).abs().max()


# ------------------------------------------------------------------------------------------ DINOv2/v3
def dinov2_hf_v4_layout(dim: int, depth: int, patch: int, grid: int) -> dict:
    """key → shape of a transformers-4 ``Dinov2Model`` save (as facebook/dinov2-* are published)."""
    out = {
        "embeddings.cls_token": (1, 1, dim),
        "embeddings.mask_token": (1, dim),
        "embeddings.position_embeddings": (1, grid * grid + 1, dim),
        "embeddings.patch_embeddings.projection.weight": (dim, 3, patch, patch),
        "embeddings.patch_embeddings.projection.bias": (dim,),
        "layernorm.weight": (dim,),
        "layernorm.bias": (dim,),
    }
    for i in range(depth):
        b = f"encoder.layer.{i}."
        for n in ("norm1", "norm2"):
            out[b + n + ".weight"] = out[b + n + ".bias"] = (dim,)
        for n in ("query", "key", "value"):
            out[b + f"attention.attention.{n}.weight"] = (dim, dim)
            out[b + f"attention.attention.{n}.bias"] = (dim,)
        out[b + "attention.output.dense.weight"], out[b + "attention.output.dense.bias"] = (dim, dim), (dim,)
        out[b + "layer_scale1.lambda1"] = out[b + "layer_scale2.lambda1"] = (dim,)
        out[b + "mlp.fc1.weight"], out[b + "mlp.fc1.bias"] = (4 * dim, dim), (4 * dim,)
        out[b + "mlp.fc2.weight"], out[b + "mlp.fc2.bias"] = (dim, 4 * dim), (dim,)
    return out


def test_dinov2_hf_folder_end_to_end(tmp_path):
    from safetensors.torch import save_file

    spec = DINO_MODELS["dinov2-small"].arch
    dim, depth, patch = spec["hidden_size"], spec["num_hidden_layers"], spec["patch_size"]
    layout = dinov2_hf_v4_layout(dim, depth, patch, spec["image_size"] // patch)
    g = torch.Generator().manual_seed(0)
    state = {k: torch.randn(s, generator=g) * 0.02 for k, s in layout.items()}
    folder = tmp_path / "dinov2-small"
    folder.mkdir()
    save_file(state, str(folder / "model.safetensors"), metadata={"format": "pt"})
    cfg = {
        "architectures": ["Dinov2Model"],
        "model_type": "dinov2",
        "hidden_size": dim,
        "num_hidden_layers": depth,
        "num_attention_heads": spec["num_attention_heads"],
        "patch_size": patch,
        "image_size": spec["image_size"],
        "mlp_ratio": 4,
        "layerscale_value": 1.0,
        "torch_dtype": "float32",
    }
    (folder / "config.json").write_text(json.dumps(cfg))
    dino = load_dino(f"dinov2-small:{folder}")
    q = dict(dino.model.named_parameters())["encoder.layer.3.attention.q_proj.weight"]
    assert torch.equal(q, state["encoder.layer.3.attention.attention.query.weight"])
    with torch.no_grad():
        assert dino.features(torch.randn(1, 3, 4 * patch, 4 * patch)).shape == (1, dim, 4, 4)
    cfg["num_hidden_layers"] = 2  # a folder of another model is refused, not half-loaded
    (folder / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(DglrsisError, match="different model"):
        load_dino(f"dinov2-small:{folder}")


@pytest.mark.slow
def test_dinov3_hf_folder_in_weights_dir(tmp_path, monkeypatch):
    """A DINOv3 ViT-B/16 folder (4 register tokens) under $DGLRSIS_WEIGHTS/<repo name>/ is found."""
    from transformers import AutoConfig, AutoModel

    spec = DINO_MODELS["dinov3-vitb16"]
    cfg = AutoConfig.for_model("dinov3_vit", num_register_tokens=4, **spec.arch)
    AutoModel.from_config(cfg).save_pretrained(tmp_path / spec.hf_id.split("/")[-1])
    monkeypatch.setenv("DGLRSIS_WEIGHTS", str(tmp_path))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    dino = load_dino("dinov3-vitb16")
    with torch.no_grad():
        assert dino.features(torch.randn(1, 3, 64, 64)).shape == (1, 768, 4, 4)
