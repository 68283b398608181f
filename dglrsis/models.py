"""Model registry: CLIP (open_clip), SAM (segment-anything) and DINO (transformers ViT) by name or path.

One flat table per family maps a public name to where its weights come from; builders call one private
``_build_*`` each. Names:

CLIP (:func:`load_clip`)
    ``ARCH:TAG``       an open_clip architecture and pretrained tag, e.g. ``ViT-B-16:openai``,
                       ``ViT-L-14-336:openai`` (downloaded by open_clip on a machine with network access).
    ``hf-hub:ORG/REPO`` an open_clip model hosted on the Hugging Face hub.
    ``RemoteCLIP-ViT-B-32``, ``GeoRSCLIP-ViT-B-32``, … RS CLIPs: a checkpoint file from a hub repo, loaded
                       into the matching open_clip architecture.
    ``ARCH:/path/file`` a local checkpoint (``.pt``/``.bin``/``.safetensors``) for architecture ARCH.
    ``ARCH:random``     random weights (explicit opt-in; benchmarks and shape tests).
    ``world-clip``     the small CLIP trained on the synthetic world, shipped with the package.

SAM (:func:`load_sam`): ``vit_b | vit_l | vit_h`` + checkpoint path (or ``random``).

DINO (:func:`load_dino`): ``rsib`` (DINO v1 ViT-B/8 pretrained on RS images; checkpoint key ``teacher``,
``module.``/``backbone.`` prefixes stripped), ``dino-vitb8``, ``dinov2-{small,base,large}``,
``dinov3-vitb16`` by name, a local path, or ``NAME:random``; ``dino-tiny:random`` is a small stand-in.

Weights that are absent and cannot be fetched raise one :class:`DglrsisError` saying what to download
and where to put it (``$DGLRSIS_WEIGHTS``, default ``~/.cache/dglrsis``). Nothing falls back silently to
other weights. Checkpoints are loaded with ``weights_only=True`` or from safetensors.
"""

from __future__ import annotations

import json
import os
import threading
import weakref
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .constants import IMAGENET_MEAN, IMAGENET_STD, OPENAI_MEAN, OPENAI_STD
from .errors import DglrsisError
from .safeload import load_checkpoint

_MODEL_LOCKS: weakref.WeakKeyDictionary[Any, threading.RLock] = weakref.WeakKeyDictionary()
_LOCKS_GUARD = threading.Lock()


def model_lock(model) -> threading.RLock:
    """The re-entrant lock that serialises calls into ``model`` across threads.

    Grad-CAM temporarily changes a model (hooks, positional embedding, ``requires_grad`` flags), so every
    forward pass through a shared CLIP — :class:`ClipBundle` encoders and :func:`dglrsis.cam.clip_gradcam`
    — holds this lock; one model serves concurrent callers (e.g. the demo's queue) one at a time.
    """
    with _LOCKS_GUARD:
        lock = _MODEL_LOCKS.get(model)
        if lock is None:
            lock = _MODEL_LOCKS[model] = threading.RLock()
        return lock


BUNDLED_DIR = Path(__file__).parent / "weights"


def weights_dir() -> Path:
    """Folder searched for local weight files: ``$DGLRSIS_WEIGHTS`` or ``~/.cache/dglrsis``."""
    return Path(os.environ.get("DGLRSIS_WEIGHTS", Path.home() / ".cache" / "dglrsis")).expanduser()


# --------------------------------------------------------------------------------------------- tables
@dataclass(frozen=True)
class ClipSpec:
    arch: str  # open_clip architecture name (or "world-clip")
    tag: str | None = None  # open_clip pretrained tag, when open_clip knows the weights
    hf_repo: str | None = None  # hub repository holding a plain checkpoint file
    hf_file: str | None = None  # that file's name inside the repository
    note: str = ""  # one-line description for `dglrsis models`
    # Activation the weights were trained with. None: open_clip's pretrained table (``quick_gelu``) or a
    # ``-quickgelu`` architecture name decide; RS CLIPs state what their publishers' loading code builds.
    quick_gelu: bool | None = None


CLIP_MODELS: dict[str, ClipSpec] = {
    "ViT-B-16:openai": ClipSpec("ViT-B-16", tag="openai", note="OpenAI CLIP ViT-B/16 (CAT-Seg B, 384 px)"),
    "ViT-B-32:openai": ClipSpec("ViT-B-32", tag="openai", note="OpenAI CLIP ViT-B/32"),
    "ViT-L-14:openai": ClipSpec("ViT-L-14", tag="openai", note="OpenAI CLIP ViT-L/14"),
    "ViT-L-14-336:openai": ClipSpec(
        "ViT-L-14-336", tag="openai", note="OpenAI CLIP ViT-L/14@336 (CAT-Seg L)"
    ),
    "ViT-B-16:laion2b_s34b_b88k": ClipSpec("ViT-B-16", tag="laion2b_s34b_b88k", note="LAION-2B ViT-B/16"),
    "RemoteCLIP-ViT-B-32": ClipSpec(
        "ViT-B-32",
        hf_repo="chendelong/RemoteCLIP",
        hf_file="RemoteCLIP-ViT-B-32.pt",
        note="RemoteCLIP (RS) ViT-B/32",
        quick_gelu=False,  # RemoteCLIP's README: create_model_and_transforms(name) (GELU), load_state_dict
    ),
    "RemoteCLIP-ViT-L-14": ClipSpec(
        "ViT-L-14",
        hf_repo="chendelong/RemoteCLIP",
        hf_file="RemoteCLIP-ViT-L-14.pt",
        note="RemoteCLIP (RS) ViT-L/14",
        quick_gelu=False,
    ),
    "GeoRSCLIP-ViT-B-32": ClipSpec(
        "ViT-B-32",
        hf_repo="Zilun/GeoRSCLIP",
        hf_file="ckpt/RS5M_ViT-B-32.pt",
        note="GeoRSCLIP (RS5M) ViT-B/32",
        quick_gelu=True,  # GeoRSCLIP's README: create_model_and_transforms(name, pretrained="openai")
    ),
    "GeoRSCLIP-ViT-L-14": ClipSpec(
        "ViT-L-14",
        hf_repo="Zilun/GeoRSCLIP",
        hf_file="ckpt/RS5M_ViT-L-14.pt",
        note="GeoRSCLIP (RS5M) ViT-L/14",
        quick_gelu=True,
    ),
    "world-clip": ClipSpec("world-clip", note="small CLIP trained on the synthetic world (bundled)"),
}

SAM_CHECKPOINTS: dict[str, str] = {  # arch -> official checkpoint file name
    "vit_b": "sam_vit_b_01ec64.pth",
    "vit_l": "sam_vit_l_0b3195.pth",
    "vit_h": "sam_vit_h_4b8939.pth",
}
SAM_URL = "https://dl.fbaipublicfiles.com/segment_anything/"


@dataclass(frozen=True)
class DinoSpec:
    arch: dict  # transformers ViT/Dinov2 config keywords
    family: str = "vit"  # "vit" (DINO v1 layout), "dinov2" or "dinov3"
    hf_id: str | None = None  # transformers model id, when weights are on the hub
    file: str | None = None  # local checkpoint file name looked up in weights_dir()
    note: str = ""


_VIT_B8 = dict(
    hidden_size=768,
    num_hidden_layers=12,
    num_attention_heads=12,
    intermediate_size=3072,
    patch_size=8,
    image_size=224,
    layer_norm_eps=1e-6,  # DINO v1's ViT: LayerNorm(eps=1e-6) (transformers' default is 1e-12)
)
DINO_MODELS: dict[str, DinoSpec] = {
    "rsib": DinoSpec(
        _VIT_B8,
        file="rsib_dino_vitb8.pth",
        note="RSIB: DINO v1 ViT-B/8 pretrained on RS images (GSNet/RSKT-Seg)",
    ),
    "dino-vitb8": DinoSpec(_VIT_B8, hf_id="facebook/dino-vitb8", note="DINO v1 ViT-B/8 (ImageNet)"),
    "dinov2-small": DinoSpec(
        dict(hidden_size=384, num_hidden_layers=12, num_attention_heads=6, patch_size=14, image_size=518),
        "dinov2",
        hf_id="facebook/dinov2-small",
        note="DINOv2 ViT-S/14",
    ),
    "dinov2-base": DinoSpec(
        dict(hidden_size=768, num_hidden_layers=12, num_attention_heads=12, patch_size=14, image_size=518),
        "dinov2",
        hf_id="facebook/dinov2-base",
        note="DINOv2 ViT-B/14",
    ),
    "dinov2-large": DinoSpec(
        dict(hidden_size=1024, num_hidden_layers=24, num_attention_heads=16, patch_size=14, image_size=518),
        "dinov2",
        hf_id="facebook/dinov2-large",
        note="DINOv2 ViT-L/14",
    ),
    "dinov3-vitb16": DinoSpec(
        dict(
            hidden_size=768,
            num_hidden_layers=12,
            num_attention_heads=12,
            intermediate_size=3072,
            patch_size=16,
            image_size=224,
        ),
        "dinov3",
        hf_id="facebook/dinov3-vitb16-pretrain-lvd1689m",
        note="DINOv3 ViT-B/16 (gated)",
    ),
    "dino-tiny": DinoSpec(
        dict(
            hidden_size=96,
            num_hidden_layers=4,
            num_attention_heads=4,
            intermediate_size=384,
            patch_size=8,
            image_size=64,
            layer_norm_eps=1e-6,
        ),
        note="tiny ViT/8 stand-in (random weights only)",
    ),
}


# --------------------------------------------------------------------------------------------- bundles
@dataclass
class ClipBundle:
    """A CLIP model with everything needed to use it.

    ``model`` is an open_clip ``CLIP`` (batch-first transformer: tokens B×N×D, CLS first).
    """

    name: str
    arch: str
    model: Any
    preprocess: Callable  # PIL image -> 3×S×S tensor (open_clip eval transform)
    tokenizer: Callable  # list[str] -> LongTensor B×context_length
    image_size: int
    mean: tuple
    std: tuple
    embed_dim: int
    device: str = "cpu"

    def encode_text(self, texts: list[str], batch_size: int = 256):
        """L2-normalised text embeddings, float32 ``len(texts)×embed_dim`` (no grad)."""
        import torch

        out = []
        with model_lock(self.model), torch.no_grad():
            for i in range(0, len(texts), batch_size):
                tok = self.tokenizer(texts[i : i + batch_size]).to(self.device)
                out.append(torch.nn.functional.normalize(self.model.encode_text(tok).float(), dim=-1))
        return torch.cat(out) if out else torch.zeros(0, self.embed_dim)

    def encode_images(self, images):
        """L2-normalised image embeddings ``B×embed_dim`` for normalised ``B×3×S×S`` input (no grad)."""
        import torch

        with model_lock(self.model), torch.no_grad():
            dtype = next(self.model.parameters()).dtype
            feats = self.model.encode_image(images.to(self.device, dtype)).float()
        return torch.nn.functional.normalize(feats, dim=-1)


@dataclass
class DinoBundle:
    """A DINO-family ViT (transformers module, no pooling layer)."""

    name: str
    model: Any
    patch_size: int
    embed_dim: int
    mean: tuple = IMAGENET_MEAN
    std: tuple = IMAGENET_STD
    extra: dict = field(default_factory=dict)

    def features(self, images):
        """Patch features ``B×D×(H/p)×(W/p)`` for normalised ``B×3×H×W`` input (H, W multiples of p)."""
        b, _, h, w = images.shape
        out = self.model(pixel_values=images, interpolate_pos_encoding=True).last_hidden_state
        n = (h // self.patch_size) * (w // self.patch_size)
        tokens = out[:, -n:]  # drop CLS (and DINOv3 register) tokens
        return tokens.transpose(1, 2).reshape(b, -1, h // self.patch_size, w // self.patch_size)


# --------------------------------------------------------------------------------------------- CLIP
def _offline_hint() -> str:
    return f"put the file in {weights_dir()} (or set DGLRSIS_WEIGHTS)"


def _check_precision(precision: str, device: str) -> None:
    if precision not in ("fp32", "fp16", "bf16"):
        raise DglrsisError(f"unknown precision {precision!r}; use fp32, fp16 or bf16")
    if precision != "fp32" and not str(device).startswith("cuda"):
        raise DglrsisError(f"precision {precision} needs a CUDA device; use fp32 on {device}")


def _resolve_clip(name: str, checkpoint: str | None) -> tuple[ClipSpec, str]:
    """Return (spec, mode) with mode in 'openclip', 'hf-file', 'local', 'random', 'hub', 'bundled'."""
    import open_clip

    if checkpoint:
        arch = name.split(":")[0]
        return ClipSpec(arch), "local"
    if name in CLIP_MODELS:
        spec = CLIP_MODELS[name]
        if spec.arch == "world-clip":
            return spec, "bundled"
        return spec, ("hf-file" if spec.hf_repo else "openclip")
    if name.startswith("hf-hub:"):
        return ClipSpec(name), "hub"
    arch, sep, tag = name.partition(":")
    archs = set(open_clip.list_models()) | {"world-clip"}
    if not sep or arch not in archs:
        raise DglrsisError(
            f"unknown CLIP {name!r}: use a registry name (dglrsis models), ARCH:TAG, ARCH:/path/to/weights, "
            f"ARCH:random or hf-hub:ORG/REPO"
        )
    if tag == "random":
        return ClipSpec(arch), "random"
    if os.sep in tag or Path(tag).suffix in (".pt", ".pth", ".bin", ".safetensors"):
        return ClipSpec(arch), "local"
    if tag not in open_clip.list_pretrained_tags_by_model(arch):
        raise DglrsisError(
            f"open_clip has no pretrained tag {tag!r} for {arch}; "
            f"known: {', '.join(open_clip.list_pretrained_tags_by_model(arch)) or 'none'}"
        )
    return ClipSpec(arch, tag=tag), "openclip"


_TRUE = {"1", "ON", "YES", "TRUE"}
_REACHABLE: dict[str, bool] = {}


def hub_offline() -> bool:
    """True when the Hugging Face hub must not be asked: ``HF_HUB_OFFLINE``/``TRANSFORMERS_OFFLINE`` set,
    or its host (or the ``HTTPS_PROXY``/``ALL_PROXY`` proxy) does not answer a TCP connect within 2 s
    (checked once per process). Nothing is retried."""
    if any(
        os.environ.get(v, "").strip().upper() in _TRUE for v in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE")
    ):
        return True
    from urllib.parse import urlparse

    url = urlparse(os.environ.get("HF_ENDPOINT", "https://huggingface.co"))
    host, port = url.hostname or "huggingface.co", url.port or 443
    proxy = next(
        (
            os.environ[v]
            for v in ("HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy")
            if os.environ.get(v)
        ),
        "",
    )
    if proxy:  # behind a proxy only the proxy can be reached directly
        p = urlparse(proxy if "://" in proxy else f"http://{proxy}")
        host, port = p.hostname or host, p.port or 3128
    if host not in _REACHABLE:
        import socket

        try:
            socket.create_connection((host, port), timeout=2).close()
            _REACHABLE[host] = True
        except OSError:
            _REACHABLE[host] = False
    return not _REACHABLE[host]


def _hf_cache_dir() -> str:
    try:
        from huggingface_hub import constants

        return str(constants.HF_HUB_CACHE)
    except Exception:  # noqa: BLE001
        return "~/.cache/huggingface/hub"


def _cached(repo: str, filename: str) -> Path | None:
    """``repo/filename`` from the Hugging Face cache, or None (never touches the network)."""
    try:
        from huggingface_hub import try_to_load_from_cache

        hit = try_to_load_from_cache(repo, filename)
    except Exception:  # noqa: BLE001
        return None
    return Path(hit) if isinstance(hit, str) else None


def _missing(what: str, local: list[Path], hub: list[tuple[str, str]]) -> DglrsisError:
    """One-line error: the file, every place searched, how to get it."""
    wd = weights_dir()
    names = [str(p.relative_to(wd)) if p.is_relative_to(wd) else str(p) for p in local]
    places = [f"$DGLRSIS_WEIGHTS ({wd}): {', '.join(names)}"] if local else []
    if hub:
        places.append(f"Hugging Face cache ({_hf_cache_dir()}): {', '.join(f'{r}/{f}' for r, f in hub)}")
    repo, fname = hub[0] if hub else (None, None)
    how = (
        f"download https://huggingface.co/{repo}/resolve/main/{fname} to {local[0]} "
        f"(or run once with network access)"
        if hub and local
        else f"put it at {local[0]}"
        if local
        else "run once with network access"
    )
    return DglrsisError(f"{what} weights not found offline; searched {'; '.join(places)}; {how}")


def _find_weights(what: str, local: list[Path], hub: list[tuple[str, str]]) -> Path | None:
    """First of ``local`` files, then of ``hub`` files in the HF cache. None: not here but the hub can be
    asked; offline, a :class:`DglrsisError` naming all places searched."""
    for p in local:
        if p.is_file():
            return p
    for repo, fname in hub:
        hit = _cached(repo, fname)
        if hit is not None:
            return hit
    if hub_offline():
        raise _missing(what, local, hub)
    return None


def _hub_file(repo: str, filename: str) -> Path:
    """``filename`` from weights_dir(), the HF cache, or the hub (online only; never retried offline)."""
    local = [weights_dir() / Path(filename).name]
    found = _find_weights(f"{repo}/{filename}", local, [(repo, filename)])
    if found is not None:
        return found
    from huggingface_hub import hf_hub_download

    try:
        return Path(hf_hub_download(repo, filename))
    except Exception as exc:  # noqa: BLE001 - missing, gated: one clear message
        raise DglrsisError(
            f"weights {filename} could not be downloaded from {repo} ({type(exc).__name__}); "
            f"{_offline_hint()}"
        ) from None


OPENCLIP_HUB_FILES = ("open_clip_model.safetensors", "open_clip_pytorch_model.bin")


def clip_quick_gelu(spec: ClipSpec) -> bool:
    """Whether ``spec``'s weights need QuickGELU: the spec's own flag, a ``-quickgelu`` architecture, or
    open_clip's pretrained table (``quick_gelu``: True for every OpenAI tag)."""
    if spec.quick_gelu is not None:
        return spec.quick_gelu
    if spec.arch.endswith("-quickgelu"):
        return True
    if not spec.tag:
        return False
    import open_clip

    return bool((open_clip.get_pretrained_cfg(spec.arch, spec.tag) or {}).get("quick_gelu", False))


def _openclip_file(spec: ClipSpec) -> Path | None:
    """Local file for an open_clip ``ARCH:TAG``: ``$DGLRSIS_WEIGHTS/ARCH-TAG.{safetensors,bin}`` or the
    open_clip hub files in the HF cache (see :func:`_find_weights`)."""
    import open_clip

    cfg = open_clip.get_pretrained_cfg(spec.arch, spec.tag) or {}
    repo, fname = os.path.split((cfg.get("hf_hub") or "").strip())
    hub = [(repo, f) for f in ((fname,) if fname else OPENCLIP_HUB_FILES)] if repo else []
    local = [weights_dir() / f"{spec.arch}-{spec.tag}{ext}" for ext in (".safetensors", ".bin")]
    return _find_weights(f"CLIP {spec.arch}:{spec.tag}", local, hub)


OPENAI_EXTRA_KEYS = ("input_resolution", "context_length", "vocab_size")  # OpenAI CLIP release files


def _read_state(path: Path) -> dict:
    """A checkpoint's state dict: ``state_dict`` wrapper and ``module.`` prefixes removed."""
    state = load_checkpoint(path)
    if isinstance(state, dict) and isinstance(state.get("state_dict"), dict):
        state = state["state_dict"]
    import torch

    if not isinstance(state, dict) or not all(isinstance(k, str) for k in state):
        raise DglrsisError(f"{path} holds no state dict (a {type(state).__name__})")
    if not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise DglrsisError(f"{path} is no state dict: not every entry is a tensor")
    return {k.removeprefix("module."): v for k, v in state.items()}


def _load_state_into(model, path: Path, what: str, state: dict | None = None) -> None:
    """Load ``path`` (or its already read ``state``) strictly into ``model``; a mismatch names keys."""

    state = _read_state(path) if state is None else state
    state = {k: v for k, v in state.items() if k not in OPENAI_EXTRA_KEYS}
    own = model.state_dict()
    missing = [k for k in own if k not in state]
    unexpected = [k for k in state if k not in own]
    shapes = [
        f"{k} {tuple(state[k].shape)}≠{tuple(own[k].shape)}"
        for k in own
        if k in state and state[k].shape != own[k].shape
    ]
    if missing or unexpected or shapes:
        parts = [
            f"{label} {len(keys)} ({', '.join(keys[:3])}{', …' if len(keys) > 3 else ''})"
            for label, keys in (("missing", missing), ("unexpected", unexpected), ("shape", shapes))
            if keys
        ]
        raise DglrsisError(f"{path} does not fit {what}: {'; '.join(parts)}")
    model.load_state_dict(state, strict=True)


def _build_world_clip(with_weights: bool):
    import open_clip

    cfg_path = BUNDLED_DIR / "world-clip.json"
    weights = BUNDLED_DIR / "world-clip.safetensors"
    if not cfg_path.is_file() or (with_weights and not weights.is_file()):
        raise DglrsisError(
            "world-clip weights are missing from the package: regenerate them with "
            "`python -m dglrsis.trainable.world_clip` (see README)"
        )
    cfg = json.loads(cfg_path.read_text())
    model = open_clip.CLIP(**cfg["model_cfg"])
    return model, cfg


def load_clip(
    name: str, checkpoint: str | None = None, device: str = "cpu", precision: str = "fp32"
) -> ClipBundle:
    """Build a CLIP by registry name (see module docstring); eval mode, requires_grad left on.

    ``checkpoint`` (a local file) overrides where weights come from; ``name`` then only names the
    architecture. fp16/bf16 are for CUDA devices.
    """
    import open_clip
    import torch

    _check_precision(precision, device)
    spec, mode = _resolve_clip(name, checkpoint)
    if spec.arch == "world-clip":
        model, cfg = _build_world_clip(with_weights=mode == "bundled")
        if mode == "bundled":
            _load_state_into(model, BUNDLED_DIR / "world-clip.safetensors", "world-clip")
        elif mode == "local":
            _load_state_into(model, Path(checkpoint or name.partition(":")[2]).expanduser(), "world-clip")
        size = cfg["model_cfg"]["vision_cfg"]["image_size"]
        mean, std = tuple(cfg.get("mean", OPENAI_MEAN)), tuple(cfg.get("std", OPENAI_STD))
        preprocess = open_clip.image_transform(size, is_train=False, mean=mean, std=std)
        tokenizer = open_clip.SimpleTokenizer(context_length=cfg["model_cfg"]["text_cfg"]["context_length"])
    else:
        quick = clip_quick_gelu(spec)
        local_state = None
        if mode == "local":  # an OpenAI release file says so by its extra keys: QuickGELU
            local_path = Path(checkpoint or name.partition(":")[2]).expanduser()
            local_state = _read_state(local_path)
            quick = quick or all(k in local_state for k in OPENAI_EXTRA_KEYS)
        local_file = _openclip_file(spec) if mode == "openclip" else None
        if mode == "hf-file":
            local_file = _hub_file(spec.hf_repo, spec.hf_file)
        try:
            if mode == "openclip" and local_file is None:  # online: open_clip downloads
                model, _, preprocess = open_clip.create_model_and_transforms(
                    spec.arch, pretrained=spec.tag, weights_only=True, force_quick_gelu=quick
                )
            elif mode == "hub":
                if hub_offline():
                    raise DglrsisError(f"CLIP {name} is on the Hugging Face hub, which is not reachable")
                model, _, preprocess = open_clip.create_model_and_transforms(spec.arch, weights_only=True)
            else:  # weights loaded below from a file; the tag's own eval transform
                cfg = (open_clip.get_pretrained_cfg(spec.arch, spec.tag) or {}) if spec.tag else {}
                model, _, preprocess = open_clip.create_model_and_transforms(
                    spec.arch,
                    pretrained=None,
                    force_quick_gelu=quick,
                    image_mean=cfg.get("mean"),
                    image_std=cfg.get("std"),
                    image_interpolation=cfg.get("interpolation"),
                    image_resize_mode=cfg.get("resize_mode"),
                )
        except DglrsisError:
            raise
        except Exception as exc:  # noqa: BLE001
            where = f"{spec.arch}:{spec.tag}" if spec.tag else spec.arch
            raise DglrsisError(
                f"CLIP weights {where} are not available ({type(exc).__name__}); on a machine with network "
                f"access open_clip downloads them, offline pass --clip {spec.arch}:/path/to/checkpoint.pt "
                f"(or {_offline_hint()})"
            ) from None
        if mode == "local":
            _load_state_into(model, local_path, f"CLIP {spec.arch}", local_state)
        elif local_file is not None:
            _load_state_into(model, local_file, f"CLIP {spec.arch}")
        tokenizer = open_clip.get_tokenizer(spec.arch if mode != "hub" else name)
        size = model.visual.image_size
        size = size[0] if isinstance(size, (tuple, list)) else size
        mean = tuple(getattr(model.visual, "image_mean", None) or OPENAI_MEAN)
        std = tuple(getattr(model.visual, "image_std", None) or OPENAI_STD)
    dtype = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}[precision]
    model = model.to(device=device, dtype=dtype).eval()
    embed_dim = (
        int(model.text_projection.shape[-1])
        if getattr(model, "text_projection", None) is not None
        else int(model.visual.output_dim)
    )
    return ClipBundle(
        name=name,
        arch=spec.arch,
        model=model,
        preprocess=preprocess,
        tokenizer=tokenizer,
        image_size=int(size),
        mean=mean,
        std=std,
        embed_dim=embed_dim,
        device=str(device),
    )


# --------------------------------------------------------------------------------------------- SAM
def load_sam(arch: str = "vit_b", checkpoint: str | None = None, device: str = "cpu"):
    """Build a segment-anything ``Sam`` (eval mode).

    ``checkpoint``: a file path, ``"random"`` (random weights), or None to look for the official file
    name (e.g. ``sam_vit_b_01ec64.pth``) in :func:`weights_dir`.
    """
    from segment_anything import sam_model_registry

    if arch not in SAM_CHECKPOINTS:
        raise DglrsisError(f"unknown SAM architecture {arch!r}; use one of {', '.join(SAM_CHECKPOINTS)}")
    path = None
    if checkpoint != "random":  # checked before the model is built (fast errors)
        path = Path(checkpoint).expanduser() if checkpoint else weights_dir() / SAM_CHECKPOINTS[arch]
        if not path.is_file():
            raise DglrsisError(
                f"SAM {arch} weights not found at {path}: download {SAM_URL}{SAM_CHECKPOINTS[arch]} and pass "
                f"--sam-checkpoint PATH (or put it in {weights_dir()}, or set DGLRSIS_WEIGHTS)"
            )
    state = _read_state(path) if path is not None else None  # a bad file fails before the build
    model = sam_model_registry[arch](checkpoint=None)
    if path is not None:
        _load_state_into(model, path, f"SAM {arch}", state)
    return model.to(device).eval()


# --------------------------------------------------------------------------------------------- DINO
# transformers renamed ViT parameters in v5; map onto whichever layout the installed version builds.
_HF_VIT_LAYOUTS = {
    "v5": (
        "layers.{i}.",
        {
            "norm1": "layernorm_before",
            "norm2": "layernorm_after",
            "attn.proj": "attention.o_proj",
            "mlp.fc1": "mlp.fc1",
            "mlp.fc2": "mlp.fc2",
        },
        ("attention.q_proj", "attention.k_proj", "attention.v_proj"),
    ),
    "v4": (
        "encoder.layer.{i}.",
        {
            "norm1": "layernorm_before",
            "norm2": "layernorm_after",
            "attn.proj": "attention.output.dense",
            "mlp.fc1": "intermediate.dense",
            "mlp.fc2": "output.dense",
        },
        ("attention.attention.query", "attention.attention.key", "attention.attention.value"),
    ),
}


def _dino_v1_to_hf(state: dict, num_layers: int, layout: str = "v5") -> dict:
    """Map a DINO v1 (facebookresearch/dino layout) ViT state dict onto transformers ``ViTModel`` keys.

    Accepts the raw training checkpoint (``teacher``/``student`` keys, ``module.``/``backbone.``
    prefixes) or a bare state dict; a dict already in transformers layout is returned as is.
    """
    for key in ("teacher", "student", "model", "state_dict"):
        if isinstance(state.get(key), dict) and state[key]:
            state = state[key]
            break
    clean = {}
    for k, v in state.items():
        for prefix in ("module.", "backbone."):
            k = k.removeprefix(prefix)
        clean[k] = v
    if "embeddings.cls_token" in clean:  # already in transformers layout
        return clean
    block, names, qkv_names = _HF_VIT_LAYOUTS[layout]
    out = {
        "embeddings.cls_token": clean["cls_token"],
        "embeddings.position_embeddings": clean["pos_embed"],
        "embeddings.patch_embeddings.projection.weight": clean["patch_embed.proj.weight"],
        "embeddings.patch_embeddings.projection.bias": clean["patch_embed.proj.bias"],
        "layernorm.weight": clean["norm.weight"],
        "layernorm.bias": clean["norm.bias"],
    }
    for i in range(num_layers):
        src, dst = f"blocks.{i}.", block.format(i=i)
        for a, b in names.items():
            for p in ("weight", "bias"):
                out[f"{dst}{b}.{p}"] = clean[f"{src}{a}.{p}"]
        for p in ("weight", "bias"):
            for part, t in zip(qkv_names, clean[f"{src}attn.qkv.{p}"].chunk(3, dim=0), strict=False):
                out[f"{dst}{part}.{p}"] = t
    return out


def _hf_vit_layout(model) -> str:
    return "v5" if any(k.startswith("layers.") for k in model.state_dict()) else "v4"


def _build_dino(spec: DinoSpec):
    if spec.family == "dinov2":
        from transformers import Dinov2Config, Dinov2Model

        return Dinov2Model(Dinov2Config(**spec.arch))
    if spec.family == "dinov3":
        from transformers import AutoConfig, AutoModel

        try:
            cfg = AutoConfig.for_model("dinov3_vit", **spec.arch)
        except Exception:  # noqa: BLE001 - older transformers without DINOv3
            raise DglrsisError("DINOv3 needs a newer transformers (>= 4.56)") from None
        return AutoModel.from_config(cfg)
    from transformers import ViTConfig, ViTModel

    return ViTModel(ViTConfig(**spec.arch), add_pooling_layer=False)


def load_dino(name: str, checkpoint: str | None = None, device: str = "cpu") -> DinoBundle:
    """Build a DINO-family ViT: ``NAME``, ``NAME:random`` or ``NAME:/path``, see module docstring."""
    base, _, tag = name.partition(":")
    if base not in DINO_MODELS:
        raise DglrsisError(f"unknown DINO {base!r}; use one of {', '.join(DINO_MODELS)}")
    spec = DINO_MODELS[base]
    checkpoint = checkpoint or (tag if tag and tag != "random" else None)
    if tag == "random":
        model = _build_dino(spec)
    else:  # where the weights are is settled before any model is built (fast offline errors)
        folder = weights_dir() / spec.hf_id.split("/")[-1] if spec.hf_id else None
        if checkpoint:
            path = Path(checkpoint).expanduser()
        elif spec.file:
            path = weights_dir() / spec.file
        elif folder is not None and folder.is_dir():
            path = folder
        elif spec.hf_id:
            path = None
        else:
            raise DglrsisError(f"{base} has no pretrained weights; use {base}:random")
        if path is None:
            model = _dino_from_hub(spec, base)
        elif path.is_dir():  # a Hugging Face model folder (config.json + weights)
            model = _dino_from_folder(spec, base, path)
        else:
            if not path.is_file():
                raise DglrsisError(
                    f"DINO {base} weights not found at {path}: download the checkpoint and pass "
                    f"--dino {base}:/path/to/file (or {_offline_hint()})"
                )
            state = load_checkpoint(path)
            if not isinstance(state, dict) or not all(isinstance(k, str) for k in state):
                raise DglrsisError(f"{path} is not a DINO checkpoint (it holds a {type(state).__name__})")
            model = _build_dino(spec)
            if spec.family == "vit":
                try:
                    state = _dino_v1_to_hf(state, spec.arch["num_hidden_layers"], _hf_vit_layout(model))
                except KeyError as exc:
                    raise DglrsisError(f"{path} is not a DINO ViT checkpoint (no {exc.args[0]})") from None
            missing, unexpected = model.load_state_dict(state, strict=False)
            if missing or unexpected:
                raise DglrsisError(
                    f"{path} does not fit DINO {base}: missing {list(missing)[:3]}, "
                    f"unexpected {list(unexpected)[:3]}"
                )
    model = model.to(device).eval()
    return DinoBundle(
        name=name, model=model, patch_size=spec.arch["patch_size"], embed_dim=spec.arch["hidden_size"]
    )


def _dino_from_folder(spec: DinoSpec, base: str, folder: Path):
    """A Hugging Face model folder (``config.json`` + ``model.safetensors``/``pytorch_model.bin``)."""
    from transformers import AutoModel

    if not (folder / "config.json").is_file():
        raise DglrsisError(f"{folder} is not a Hugging Face model folder (no config.json) for DINO {base}")
    kwargs = {"add_pooling_layer": False} if spec.family == "vit" else {}
    try:
        model = AutoModel.from_pretrained(str(folder), local_files_only=True, **kwargs)
    except Exception as exc:  # noqa: BLE001 - bad or incomplete folder
        text = " ".join(str(exc).split())[:300]
        raise DglrsisError(f"cannot load DINO {base} from {folder}: {type(exc).__name__}: {text}") from None
    got = {k: getattr(model.config, k, None) for k in ("hidden_size", "patch_size", "num_hidden_layers")}
    want = {k: spec.arch[k] for k in got}
    if got != want:
        raise DglrsisError(f"{folder} holds a different model than DINO {base}: {got} vs {want}")
    return model


def _dino_from_hub(spec: DinoSpec, base: str):
    """From the HF cache, or the hub when online; offline and not cached: one error naming the places."""
    from transformers import AutoModel

    hub = [(spec.hf_id, "config.json"), (spec.hf_id, "model.safetensors")]
    folder = weights_dir() / spec.hf_id.split("/")[-1]
    cached = _cached(spec.hf_id, "config.json") is not None
    if not cached and hub_offline():
        raise _missing(
            f"DINO {base} ({spec.hf_id})", [folder / "config.json", folder / "model.safetensors"], hub
        )
    try:
        kwargs = {"add_pooling_layer": False} if spec.family == "vit" else {}
        return AutoModel.from_pretrained(spec.hf_id, local_files_only=cached, **kwargs)
    except Exception:  # noqa: BLE001
        raise DglrsisError(
            f"DINO {base} weights not available: download the Hugging Face model {spec.hf_id} into "
            f"{folder} (or pass --dino {base}:/path/to/folder-or-checkpoint)"
        ) from None


# --------------------------------------------------------------------------------------------- listing
def _clip_present(name: str, spec: ClipSpec) -> str:
    if spec.arch == "world-clip":
        return "bundled" if (BUNDLED_DIR / "world-clip.safetensors").is_file() else "missing"
    if spec.hf_file:
        return (
            "yes"
            if (weights_dir() / Path(spec.hf_file).name).is_file() or _in_hf_cache(spec.hf_repo, spec.hf_file)
            else "no"
        )
    import open_clip

    local = [weights_dir() / f"{spec.arch}-{spec.tag}{ext}" for ext in (".safetensors", ".bin")]
    if any(p.is_file() for p in local):
        return "yes"
    cfg = open_clip.get_pretrained_cfg(spec.arch, spec.tag) or {}
    repo, fname = os.path.split((cfg.get("hf_hub") or "").strip())
    files = (fname,) if fname else OPENCLIP_HUB_FILES
    return "yes" if repo and any(_in_hf_cache(repo, f) for f in files) else "no"


def _in_hf_cache(repo: str, filename: str) -> bool:
    try:
        from huggingface_hub import try_to_load_from_cache

        return isinstance(try_to_load_from_cache(repo, filename), str)
    except Exception:  # noqa: BLE001
        return False


def list_models() -> list[dict]:
    """Rows ``{family, name, weights, present, note}`` for every registry entry (no network)."""
    rows = []
    for name, spec in CLIP_MODELS.items():
        src = (
            spec.tag
            and f"open_clip tag {spec.tag}"
            or spec.hf_repo
            and f"{spec.hf_repo}/{spec.hf_file}"
            or "package"
        )
        rows.append(
            dict(family="clip", name=name, weights=src, present=_clip_present(name, spec), note=spec.note)
        )
    for arch, fname in SAM_CHECKPOINTS.items():
        rows.append(
            dict(
                family="sam",
                name=arch,
                weights=fname,
                present="yes" if (weights_dir() / fname).is_file() else "no",
                note=f"segment-anything {arch}",
            )
        )
    for name, spec in DINO_MODELS.items():
        if spec.file:
            src, present = spec.file, "yes" if (weights_dir() / spec.file).is_file() else "no"
        elif spec.hf_id:
            src = spec.hf_id
            present = (
                "yes"
                if any(_in_hf_cache(spec.hf_id, f) for f in ("model.safetensors", "pytorch_model.bin"))
                else "no"
            )
        else:
            src, present = "random only", "n/a"
        rows.append(dict(family="dino", name=name, weights=src, present=present, note=spec.note))
    return rows
