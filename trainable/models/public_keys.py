"""Weight compatibility with the public CAT-Seg code (cvlab-kaist/CAT-Seg, detectron2 ``model_final.pth``)
and the public GSNet, RSKT-Seg and Pi-Seg code built on it (:func:`from_public_gsnet`,
:func:`from_public_rsktseg`, :func:`from_public_piseg`).

A checkpoint trained by the public code is a ``{"model": state_dict, ...}`` dict whose keys follow that
code's module names; :func:`from_public_catseg` maps it onto :class:`~.catseg.CATSeg`'s keys:

Public key (``P`` = ``sem_seg_head.predictor.``, ``T`` = ``P + "transformer."``) → ours:

- ``P clip_model.….attn.{q,k,v}_proj_weight`` → ``clip.….attn.in_proj_weight`` (q; k; v rows);
  every other ``P clip_model.X`` → ``clip.X``;
- ``T conv1`` / ``T guidance_projection.0`` / ``T text_guidance_projection.0`` →
  ``aggregator.conv1`` / ``aggregator.guidance_proj.0`` / ``aggregator.text_guidance_proj.0``;
- ``T layers.L.swin_block.guidance_norm`` → ``aggregator.layers.L.0.guidance_norm``;
  ``T layers.L.swin_block.block_{1,2}.X`` → ``aggregator.layers.L.0.blocks.{0,1}.X`` (``mlp.fc{1,2}`` →
  ``mlp.{0,2}``);
- ``T layers.L.attention.attention.{q,k,v}`` → ``aggregator.layers.L.1.{q,k,v}``;
  ``T layers.L.attention.MLP.{0,2}`` → ``….1.mlp.{0,2}``; ``T layers.L.attention.X`` (norm1, norm2,
  padding_tokens, padding_guidance) → ``aggregator.layers.L.1.X``;
- ``T decoder_guidance_projection.J.0`` → ``aggregator.decoder_guidance.J.0``;
  ``T decoder{1,2}.up`` / ``T decoder{1,2}.conv.double_conv.I`` / ``T head`` →
  ``aggregator.decoder{1,2}.up`` / ``aggregator.decoder{1,2}.conv.I`` / ``aggregator.head``;
- ``upsample1`` / ``upsample2`` (top level of the public ``CATSeg``) → the same names.

The shifted Swin block's ``attn_mask`` buffer is recomputed by our block and dropped. Every other key must
be mapped: a leftover key, or one of ours left unset, raises a :class:`~dglrsis.errors.DglrsisError`.
"""

from __future__ import annotations

import re

import torch

from dglrsis.errors import DglrsisError

PRED = "sem_seg_head.predictor."

_RULES = [
    (r"^transformer\.conv1\.", "aggregator.conv1."),
    (r"^transformer\.guidance_projection\.", "aggregator.guidance_proj."),
    (r"^transformer\.text_guidance_projection\.", "aggregator.text_guidance_proj."),
    (r"^transformer\.layers\.(\d+)\.swin_block\.guidance_norm\.", r"aggregator.layers.\1.0.guidance_norm."),
    (r"^transformer\.layers\.(\d+)\.swin_block\.block_1\.", r"aggregator.layers.\1.0.blocks.0."),
    (r"^transformer\.layers\.(\d+)\.swin_block\.block_2\.", r"aggregator.layers.\1.0.blocks.1."),
    (r"^transformer\.layers\.(\d+)\.attention\.attention\.", r"aggregator.layers.\1.1."),
    (r"^transformer\.layers\.(\d+)\.attention\.MLP\.", r"aggregator.layers.\1.1.mlp."),
    (r"^transformer\.layers\.(\d+)\.attention\.", r"aggregator.layers.\1.1."),
    (r"^transformer\.decoder_guidance_projection\.", "aggregator.decoder_guidance."),
    (r"^transformer\.decoder([12])\.conv\.double_conv\.", r"aggregator.decoder\1.conv."),
    (r"^transformer\.decoder([12])\.", r"aggregator.decoder\1."),
    (r"^transformer\.head\.", "aggregator.head."),
]
_MLP = {"fc1": "0", "fc2": "2"}


def _unwrap(ckpt: dict) -> dict:
    state = ckpt.get("model", ckpt) if isinstance(ckpt, dict) else ckpt
    if not isinstance(state, dict):
        raise DglrsisError("not a CAT-Seg checkpoint: expected a state dict or {'model': state dict}")
    return state


_CLIPS = {"clip_model.": "clip."}


def _map(ckpt: dict, rules: list, top: dict, what: str, dino=None, clips=None) -> dict[str, torch.Tensor]:
    """Public state → ours: CLIP keys (predictor prefixes → ours by ``clips``, q/k/v fused),
    ``transformer.…`` by ``rules``, top-level module prefixes by ``top``, ``dino_model.…`` (DINO v1
    layout) through ``dino`` (a callable → our keys)."""
    out: dict[str, torch.Tensor] = {}
    qkv: dict[str, dict[str, torch.Tensor]] = {}
    dino_state: dict[str, torch.Tensor] = {}
    left = []
    for key, value in _unwrap(ckpt).items():
        head = key.split(".", 1)[0]
        if head in top:
            out[top[head] + key[len(head) :]] = value
            continue
        if dino is not None and key.startswith("dino_model."):
            dino_state[key[len("dino_model.") :]] = value
            continue
        if not key.startswith(PRED):
            left.append(key)
            continue
        k = key[len(PRED) :]
        clip = next((c for c in clips or _CLIPS if k.startswith(c)), None)
        if clip is not None:
            k = (clips or _CLIPS)[clip] + k[len(clip) :]
            m = re.match(r"^(.*\.attn\.)([qkv])_proj_weight$", k)
            if m:
                qkv.setdefault(m.group(1) + "in_proj_weight", {})[m.group(2)] = value
            else:
                out[k] = value
            continue
        if re.search(r"block_2\.attn_mask$", k):
            continue  # shifted-window mask buffer, recomputed
        for pat, rep in rules:
            if re.match(pat, k):
                new = re.sub(pat, rep, k)
                if ".swin_block." in k:  # the Swin MLP (timm Mlp) is our nn.Sequential
                    new = re.sub(r"\.mlp\.(fc[12])\.", lambda mm: f".mlp.{_MLP[mm.group(1)]}.", new)
                out[new] = value
                break
        else:
            left.append(key)
    for name, parts in qkv.items():
        if set(parts) != {"q", "k", "v"}:
            raise DglrsisError(
                f"public checkpoint lacks the {sorted({'q', 'k', 'v'} - set(parts))} projection of {name}"
            )
        out[name] = torch.cat([parts["q"], parts["k"], parts["v"]], 0)
    if dino_state:
        out.update(dino(dino_state))
    if left:
        raise DglrsisError(
            f"public {what} checkpoint has {len(left)} keys with no counterpart, e.g. {left[:3]}"
        )
    return out


_TOP = {"upsample1": "upsample1", "upsample2": "upsample2"}


def from_public_catseg(ckpt: dict) -> dict[str, torch.Tensor]:
    """Public CAT-Seg checkpoint (``model_final.pth`` content) → a state dict for our CATSeg."""
    return _map(ckpt, _RULES, _TOP, "CAT-Seg")


_QGFF_RULES = [  # GSNet and RSKT-Seg: the DINO cost embedding and fusion
    (r"^transformer\.conv2\.", "qgff.dino_conv."),
    (r"^transformer\.fusion_corr\.", "qgff.fusion."),
]
_FUSION_DECODER_RULES = [  # GSNet and RSKT-Seg: the up blocks with a second (third) guidance
    (r"^transformer\.Fusiondecoder([12])\.conv\.double_conv\.", r"aggregator.decoder\1.conv."),
    (r"^transformer\.Fusiondecoder([12])\.", r"aggregator.decoder\1."),
]
_GS_RULES = [
    *_QGFF_RULES,
    (r"^transformer\.CLIP_decoder_guidance_projection\.", "aggregator.decoder_guidance."),
    (r"^transformer\.DINO_decoder_guidance_projection\.", "aggregator.extra_decoder_guidance."),
    *_FUSION_DECODER_RULES,
    *_RULES,
]
_GS_TOP = {
    **_TOP,
    "dino_decod_proj1": "ripd.proj1",
    "dino_decod_proj2": "ripd.proj2",
    "dino_down_sample": "qgff.dino_down",
}


def from_public_gsnet(ckpt: dict, model) -> dict[str, torch.Tensor]:
    """Public GSNet checkpoint → a state dict for our GSNet ``model`` (whose DINO fixes the layout of
    the transformers keys). Beyond the CAT-Seg map: ``T conv2`` / ``T fusion_corr`` → ``qgff.dino_conv``
    / ``qgff.fusion``; ``T CLIP_decoder_guidance_projection`` / ``T DINO_decoder_guidance_projection``
    → ``aggregator.decoder_guidance`` / ``aggregator.extra_decoder_guidance``; ``T Fusiondecoder{1,2}``
    → ``aggregator.decoder{1,2}``; top-level ``dino_decod_proj{1,2}`` → ``ripd.proj{1,2}``,
    ``dino_down_sample`` → ``qgff.dino_down``, ``dino_model.…`` (DINO v1 names) → ``dsie.dino.model.…``."""
    return _map(ckpt, _GS_RULES, _GS_TOP, "GSNet", _dino_keys(model.dino, "dsie.dino.model.", "GSNet"))


def _dino_keys(backbone, prefix: str, what: str):
    """The public ``dino_model.…`` state (DINO v1 names) → our keys under ``prefix``, in the layout of
    ``backbone`` (our FrozenBackbone; None: the model has no DINO, an error)."""

    def dino(state: dict) -> dict:
        from dglrsis.models import _dino_v1_to_hf, _hf_vit_layout

        if backbone is None:
            raise DglrsisError(f"public {what} checkpoint has DINO weights but the model has no DINO")
        hf = backbone.model
        mapped = _dino_v1_to_hf(state, hf.config.num_hidden_layers, _hf_vit_layout(hf))
        return {prefix + k: v for k, v in mapped.items()}

    return dino


_RSKT_RULES = [
    *_QGFF_RULES,
    (r"^transformer\.CLIP_decoder_guidance_projection_remote\.", "rs_transfer.rclip_proj."),
    (r"^transformer\.CLIP_decoder_guidance_projection\.", "aggregator.decoder_guidance."),
    (r"^transformer\.DINO_decoder_guidance_projection\.", "rs_transfer.dino_proj."),
    *_FUSION_DECODER_RULES,
    (r"^transformer\.layers\.(\d+)\.spatial_fusion\.sa\.attention\.", r"aggregator.layers.\1.0.attn."),
    (
        r"^transformer\.layers\.(\d+)\.spatial_fusion\.sa\.mlp\.dwconv\.dwconv\.",
        r"aggregator.layers.\1.0.mlp.dwconv.",
    ),
    (r"^transformer\.layers\.(\d+)\.spatial_fusion\.sa\.", r"aggregator.layers.\1.0."),
    (r"^transformer\.layers\.(\d+)\.class_fusion\.sa\.attention\.", r"aggregator.layers.\1.1.attn."),
    (r"^transformer\.layers\.(\d+)\.class_fusion\.sa\.", r"aggregator.layers.\1.1."),
    *_RULES[:3],
    _RULES[-1],
]
_RSKT_TOP = {
    **_TOP,
    "upsample1_remote": "rs_transfer.rclip_up.0",
    "upsample2_remote": "rs_transfer.rclip_up.1",
    "dino_decod_proj1": "rs_transfer.ripd.proj1",
    "dino_decod_proj2": "rs_transfer.ripd.proj2",
    "dino_down_sample": "qgff.dino_down",
}
_RSKT_CLIPS = {**_CLIPS, "clip_model_remote.": "rclip.model."}


def from_public_rsktseg(ckpt: dict, model) -> dict[str, torch.Tensor]:
    """Public RSKT-Seg checkpoint (LiBingyu01/RSKT-Seg) → a state dict for our RSKTSeg ``model`` (whose
    DINO fixes the layout of the transformers keys). ``P clip_model.…`` as for CAT-Seg,
    ``P clip_model_remote.…`` → ``rclip.model.…`` (q/k/v fused the same way), ``dino_model.…`` (DINO v1
    names) → ``dino.model.…``, and (``T`` = ``P transformer.``):

    - ``T conv1`` / ``T guidance_projection.0`` / ``T text_guidance_projection.0`` / ``T head`` →
      ``aggregator.conv1`` / ``.guidance_proj.0`` / ``.text_guidance_proj.0`` / ``.head``;
      ``T conv2`` / ``T fusion_corr`` → ``qgff.dino_conv`` / ``qgff.fusion``;
    - ``T layers.L.spatial_fusion.sa.X`` → ``aggregator.layers.L.0.X`` (``attention`` → ``attn``,
      ``mlp.dwconv.dwconv`` → ``mlp.dwconv``); ``T layers.L.class_fusion.sa.X`` →
      ``aggregator.layers.L.1.X`` (``attention`` → ``attn``);
    - ``T CLIP_decoder_guidance_projection`` → ``aggregator.decoder_guidance``;
      ``T CLIP_decoder_guidance_projection_remote`` / ``T DINO_decoder_guidance_projection`` →
      ``rs_transfer.rclip_proj`` / ``rs_transfer.dino_proj``; ``T Fusiondecoder{1,2}.up`` /
      ``….conv.double_conv.I`` → ``aggregator.decoder{1,2}.up`` / ``….conv.I``;
    - top level: ``upsample1/2`` → the same names, ``upsample{1,2}_remote`` →
      ``rs_transfer.rclip_up.{0,1}``, ``dino_decod_proj{1,2}`` → ``rs_transfer.ripd.proj{1,2}``,
      ``dino_down_sample`` → ``qgff.dino_down``."""
    dino = _dino_keys(model.dino, "dino.model.", "RSKT-Seg")
    return _map(ckpt, _RSKT_RULES, _RSKT_TOP, "RSKT-Seg", dino, _RSKT_CLIPS)


_PI_RULES = [
    (r"^image_vpn\.cross_attn\.fc_([qkv])\.", r"image_spm.\1."),
    (r"^image_vpn\.fc_mean\.", "image_spm.mu."),
    (r"^image_vpn\.fc_variance\.", "image_spm.sigma."),
    (r"^text_vpn\.mu$", "text_spm.mu"),
    (r"^text_vpn\.var$", "text_spm.sigma"),
    *_RULES,
]
_PI_LAYERS = {"sptial_agg": "swin_block", "class_agg": "attention"}


def from_public_piseg(ckpt: dict) -> dict[str, torch.Tensor]:
    """Public Pi-Seg checkpoint (Zlittlemoon/Pi-Seg) → a state dict for our PiSeg: the CAT-Seg map, its
    layers' blocks named ``T layers.L.sptial_agg`` / ``T layers.L.class_agg`` (CAT-Seg: ``swin_block`` /
    ``attention``), and ``P image_vpn.cross_attn.fc_{q,k,v}`` / ``P image_vpn.fc_mean`` /
    ``P image_vpn.fc_variance`` → ``image_spm.{q,k,v}`` / ``image_spm.mu`` / ``image_spm.sigma``,
    ``P text_vpn.mu`` / ``P text_vpn.var`` (1×1×1×C) → ``text_spm.mu`` / ``text_spm.sigma`` (C)."""
    layer = re.compile(r"(\.transformer\.layers\.\d+\.)(sptial_agg|class_agg)\.")
    state = {
        layer.sub(lambda m: m.group(1) + _PI_LAYERS[m.group(2)] + ".", k): v for k, v in _unwrap(ckpt).items()
    }
    out = _map(state, _PI_RULES, _TOP, "Pi-Seg")
    for name in ("text_spm.mu", "text_spm.sigma"):
        if name in out:
            out[name] = out[name].reshape(-1)
    return out


def load_public_catseg(model, ckpt: dict) -> None:
    """Load a public CAT-Seg checkpoint into ``model`` (a CATSeg); every key must match both ways."""
    _load(model, from_public_catseg(ckpt), "CAT-Seg")


def load_public_gsnet(model, ckpt: dict) -> None:
    """Load a public GSNet checkpoint into ``model`` (a GSNet); every key must match both ways."""
    _load(model, from_public_gsnet(ckpt, model), "GSNet")


def load_public_piseg(model, ckpt: dict) -> None:
    """Load a public Pi-Seg checkpoint into ``model`` (a PiSeg); every key must match both ways."""
    _load(model, from_public_piseg(ckpt), "Pi-Seg")


def load_public_rsktseg(model, ckpt: dict) -> None:
    """Load a public RSKT-Seg checkpoint into ``model`` (an RSKTSeg); every key must match both ways."""
    _load(model, from_public_rsktseg(ckpt, model), "RSKT-Seg")


def _load(model, state: dict, what: str) -> None:
    ours = model.state_dict()
    missing = sorted(set(ours) - set(state))
    unexpected = sorted(set(state) - set(ours))
    if missing or unexpected:
        raise DglrsisError(
            f"public {what} checkpoint does not fit: missing {missing[:3]} ({len(missing)}), "
            f"unexpected {unexpected[:3]} ({len(unexpected)})"
        )
    bad = [k for k, v in state.items() if tuple(v.shape) != tuple(ours[k].shape)]
    if bad:
        raise DglrsisError(
            f"public {what} checkpoint shapes differ for {bad[:3]}: e.g. {tuple(state[bad[0]].shape)} vs "
            f"{tuple(ours[bad[0]].shape)} (another backbone or head size?)"
        )
    model.load_state_dict(state)
