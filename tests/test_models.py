"""Model registry: every family builds at random weights with the expected shapes; missing weights
give one clear error; checkpoints load safely and exactly."""

import subprocess
import sys

import pytest
import torch

from dglrsis.errors import DglrsisError
from dglrsis.models import CLIP_MODELS, _dino_v1_to_hf, list_models, load_clip, load_dino, load_sam


@pytest.fixture()
def empty_weights(tmp_path, monkeypatch):
    monkeypatch.setenv("DGLRSIS_WEIGHTS", str(tmp_path))
    return tmp_path


def test_clip_vit_b16_random_shapes():
    clip = load_clip("ViT-B-16:random")
    assert clip.image_size == 224 and clip.embed_dim == 512
    img = clip.encode_images(torch.randn(2, 3, 224, 224))
    txt = clip.encode_text(["a satellite image of a ship", "a storage tank", "harbor"])
    assert img.shape == (2, 512) and txt.shape == (3, 512)
    assert torch.allclose(img.norm(dim=-1), torch.ones(2), atol=1e-5)
    assert sum(p.numel() for p in clip.model.parameters()) == 149_620_737  # CAT-Seg's CLIP budget


def test_world_clip_architecture_builds():
    clip = load_clip("world-clip:random")
    assert clip.encode_images(torch.randn(1, 3, clip.image_size, clip.image_size)).shape == (
        1,
        clip.embed_dim,
    )


def test_sam_vit_b_random_image_embedding():
    sam = load_sam("vit_b", checkpoint="random")
    with torch.no_grad():
        emb = sam.image_encoder(torch.randn(1, 3, 1024, 1024))
    assert emb.shape == (1, 256, 64, 64)


@pytest.mark.parametrize("name, dim, grid", [("rsib:random", 768, 48), ("dino-tiny:random", 96, 8)])
def test_dino_random_features(name, dim, grid):
    dino = load_dino(name)
    size = grid * dino.patch_size
    with torch.no_grad():
        feats = dino.features(torch.randn(1, 3, size, size))
    assert feats.shape == (1, dim, grid, grid)


def test_rsib_parameter_count():
    n = sum(p.numel() for p in load_dino("rsib:random").model.parameters())
    assert abs(n / 1e6 - 85.81) < 0.05  # RSIB DINO ViT-B/8, DESIGN.md §4


def _hf_to_dino_v1(state, num_layers):
    """Inverse of the loader's key mapping, to forge a DINO-repo style checkpoint in the test."""
    from dglrsis.models import _HF_VIT_LAYOUTS

    layout = "v5" if any(k.startswith("layers.") for k in state) else "v4"
    block, names, qkv = _HF_VIT_LAYOUTS[layout]
    out = {
        "cls_token": state["embeddings.cls_token"],
        "pos_embed": state["embeddings.position_embeddings"],
        "patch_embed.proj.weight": state["embeddings.patch_embeddings.projection.weight"],
        "patch_embed.proj.bias": state["embeddings.patch_embeddings.projection.bias"],
        "norm.weight": state["layernorm.weight"],
        "norm.bias": state["layernorm.bias"],
    }
    for i in range(num_layers):
        s, d = block.format(i=i), f"blocks.{i}."
        for a, b in names.items():
            for p in ("weight", "bias"):
                out[f"{d}{a}.{p}"] = state[f"{s}{b}.{p}"]
        for p in ("weight", "bias"):
            out[f"{d}attn.qkv.{p}"] = torch.cat([state[f"{s}{q}.{p}"] for q in qkv])
    assert len(out) == 6 + num_layers * 12
    return out


def test_dino_v1_checkpoint_with_teacher_key_and_prefixes(tmp_path):
    src = load_dino("dino-tiny:random")
    forged = {
        "teacher": {f"module.backbone.{k}": v for k, v in _hf_to_dino_v1(src.model.state_dict(), 4).items()},
        "student": {},
        "epoch": 100,
    }
    path = tmp_path / "rsib_like.pth"
    torch.save(forged, path)
    loaded = load_dino("dino-tiny", checkpoint=str(path))
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        assert torch.allclose(loaded.features(x), src.features(x), atol=1e-5)
    from dglrsis.models import _hf_vit_layout

    assert set(_dino_v1_to_hf(forged, 4, _hf_vit_layout(src.model))) == set(src.model.state_dict())


def test_local_clip_checkpoint_roundtrip(tmp_path):
    src = load_clip("world-clip:random")
    path = tmp_path / "wc.pt"
    torch.save({"state_dict": {f"module.{k}": v for k, v in src.model.state_dict().items()}}, path)
    loaded = load_clip(f"world-clip:{path}")
    x = torch.randn(1, 3, src.image_size, src.image_size)
    assert torch.allclose(loaded.encode_images(x), src.encode_images(x), atol=1e-6)


def test_untrusted_checkpoint_is_refused(tmp_path):
    class Evil:
        def __reduce__(self):
            return (print, ("pwned",))

    path = tmp_path / "evil.pt"
    torch.save({"state_dict": Evil()}, path)
    with pytest.raises(DglrsisError, match="safely"):
        load_clip(f"world-clip:{path}")


def test_mismatched_checkpoint_is_one_clear_error(tmp_path):
    path = tmp_path / "wrong.pt"
    torch.save({"foo": torch.zeros(3)}, path)
    with pytest.raises(DglrsisError, match="does not fit"):
        load_clip(f"world-clip:{path}")


@pytest.mark.parametrize(
    "call, expected",
    [
        (lambda: load_clip("ViT-B-16:openai"), "ViT-B-16-openai.safetensors"),
        (lambda: load_clip("RemoteCLIP-ViT-B-32"), "RemoteCLIP-ViT-B-32.pt"),
        (lambda: load_sam("vit_b"), "sam_vit_b_01ec64.pth"),
        (lambda: load_dino("rsib"), "rsib_dino_vitb8.pth"),
        (lambda: load_dino("dinov2-base"), "facebook/dinov2-base"),
    ],
)
def test_missing_weights_offline_give_one_line_error(call, expected, empty_weights, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(DglrsisError) as info:
        call()
    msg = str(info.value)
    assert expected in msg and "\n" not in msg
    assert "DGLRSIS_WEIGHTS" in msg or "--" in msg


@pytest.mark.parametrize("name", ["nonsense", "ViT-B-16:no_such_tag", "ViT-B-16"])
def test_unknown_names(name):
    with pytest.raises(DglrsisError):
        load_clip(name)


def test_precision_needs_cuda():
    with pytest.raises(DglrsisError, match="CUDA"):
        load_clip("world-clip:random", precision="fp16")


def test_list_models_covers_every_family(empty_weights):
    rows = list_models()
    assert {r["family"] for r in rows} == {"clip", "sam", "dino"}
    assert {r["name"] for r in rows if r["family"] == "clip"} == set(CLIP_MODELS)
    assert all(r["present"] in ("yes", "no", "bundled", "missing", "n/a") for r in rows)


def test_models_cli_json(empty_weights):
    out = subprocess.run(
        [sys.executable, "-m", "dglrsis.cli", "models", "--json"], capture_output=True, text=True, timeout=120
    )
    assert out.returncode == 0, out.stderr
    import json

    data = json.loads(out.stdout)
    assert data["weights_dir"] == str(empty_weights)
    assert any(r["name"] == "vit_b" and r["present"] == "no" for r in data["models"])


@pytest.mark.parametrize(
    "name, quick",
    [
        ("ViT-B-16:openai", True),  # open_clip's pretrained table: quick_gelu
        ("ViT-B-16:laion2b_s34b_b88k", False),
        ("GeoRSCLIP-ViT-B-32", True),  # its README builds ViT-B-32 with pretrained="openai"
        ("RemoteCLIP-ViT-B-32", False),  # its README builds plain ViT-B-32
    ],
)
def test_activation_follows_the_weights(name, quick, monkeypatch, tmp_path):
    """OpenAI weights were trained with QuickGELU; open_clip's ViT-B-16 alone builds exact GELU."""
    from open_clip.transformer import QuickGELU

    import dglrsis.models as models

    monkeypatch.setattr(models, "_find_weights", lambda *a, **k: tmp_path / "w.safetensors")
    monkeypatch.setattr(models, "_load_state_into", lambda *a, **k: None)
    clip = load_clip(name)
    for tower in (clip.model.visual.transformer, clip.model.transformer):
        act = tower.resblocks[0].mlp.gelu
        assert isinstance(act, QuickGELU) is quick
        assert quick or type(act) is torch.nn.GELU


_OFFLINE_SCRIPT = """
import json, sys, time
import open_clip, transformers  # import cost is not part of the bound
from dglrsis.errors import DglrsisError
from dglrsis.models import load_clip, load_dino
rows = []
for name, call in [
    ("ViT-B-16:openai", lambda: load_clip("ViT-B-16:openai")),
    ("RemoteCLIP-ViT-B-32", lambda: load_clip("RemoteCLIP-ViT-B-32")),
    ("dinov2-base", lambda: load_dino("dinov2-base")),
]:
    t = time.perf_counter()
    try:
        call()
        msg = None
    except DglrsisError as exc:
        msg = str(exc)
    rows.append({"name": name, "s": time.perf_counter() - t, "msg": msg})
from dglrsis.cli import main
rc = main(["segment", sys.argv[1], "--classes", "ship", "--clip", "ViT-B-16:openai", "--out", sys.argv[2]])
print(json.dumps({"rows": rows, "rc": rc}))
"""


def test_offline_missing_weights_fail_fast_naming_file_and_places(tmp_path):
    import json
    import os

    import numpy as np
    from PIL import Image

    img = tmp_path / "img.png"
    Image.fromarray(np.zeros((32, 32, 3), np.uint8)).save(img)
    env = {
        **os.environ,
        "HF_HUB_OFFLINE": "1",
        "DGLRSIS_WEIGHTS": str(tmp_path / "w"),
        "HF_HOME": str(tmp_path / "hf"),
    }
    out = subprocess.run(
        [sys.executable, "-c", _OFFLINE_SCRIPT, str(img), str(tmp_path / "o.png")],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    res = json.loads(out.stdout.strip().splitlines()[-1])
    expected = {
        "ViT-B-16:openai": ("ViT-B-16-openai.safetensors", "timm/vit_base_patch16_clip_224.openai"),
        "RemoteCLIP-ViT-B-32": ("RemoteCLIP-ViT-B-32.pt", "chendelong/RemoteCLIP"),
        "dinov2-base": ("dinov2-base/config.json", "facebook/dinov2-base"),
    }
    for row in res["rows"]:
        msg = row["msg"]
        assert msg is not None and "\n" not in msg and row["s"] < 5.0, row
        local, repo = expected[row["name"]]
        assert local in msg and repo in msg and str(tmp_path / "w") in msg and str(tmp_path / "hf") in msg
        assert "https://huggingface.co/" in msg  # how to get it
    err = out.stderr.strip().splitlines()
    assert res["rc"] == 2 and len(err) == 1 and "ViT-B-16-openai.safetensors" in err[0], out.stderr
    assert not (tmp_path / "o.png").exists()


@pytest.mark.parametrize("payload", [torch.zeros(3), [torch.zeros(3)], {"a": 1}])
@pytest.mark.parametrize("loader", ["clip", "dino", "sam"])
def test_checkpoint_that_is_no_state_dict_is_one_clear_error(tmp_path, payload, loader):
    path = tmp_path / "bad.pt"
    torch.save(payload, path)
    call = {
        "clip": lambda: load_clip(f"world-clip:{path}"),
        "dino": lambda: load_dino(f"dino-tiny:{path}"),
        "sam": lambda: load_sam("vit_b", str(path)),
    }[loader]
    with pytest.raises(DglrsisError) as info:
        call()
    assert "\n" not in str(info.value) and str(path) in str(info.value)


def test_weights_in_weights_dir_are_listed_present(empty_weights):
    (empty_weights / "ViT-B-16-openai.safetensors").write_bytes(b"")
    rows = {r["name"]: r["present"] for r in list_models()}
    assert rows["ViT-B-16:openai"] == "yes" and rows["ViT-B-32:openai"] == "no"


def test_hub_probe_honours_offline_flags_and_proxies(monkeypatch):
    import dglrsis.models as models

    calls = []

    def fake_connect(addr, timeout):
        calls.append(addr)
        raise OSError("unreachable")

    monkeypatch.setattr("socket.create_connection", fake_connect)
    monkeypatch.setattr(models, "_REACHABLE", {})
    for v in ("HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy", "HF_ENDPOINT", "TRANSFORMERS_OFFLINE"):
        monkeypatch.delenv(v, raising=False)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    assert models.hub_offline() and calls == []  # the flag alone decides: no connection attempted
    monkeypatch.delenv("HF_HUB_OFFLINE")
    monkeypatch.setenv("HTTPS_PROXY", "http://proxy.example:8080")
    assert models.hub_offline() and calls == [("proxy.example", 8080)]
    assert models.hub_offline() and len(calls) == 1  # probed once per process
