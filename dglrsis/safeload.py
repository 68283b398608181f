"""Safe loading of untrusted files: pickles through a restricted unpickler, checkpoints with
``torch.load(weights_only=True)`` or safetensors.

A pickle downloaded from the internet (RRSIS-D's ``refs(unc).p``) can execute code when loaded with
:mod:`pickle`. :func:`load_pickle` only reconstructs builtin containers and scalars; anything else is
refused with a :class:`~dglrsis.errors.DglrsisError`.
"""

from __future__ import annotations

import io
import os
import pickle
from pathlib import Path
from typing import Any

from .errors import DglrsisError

# (module, name) pairs a data pickle may legitimately reference: builtin containers and scalars only.
_ALLOWED = {
    ("builtins", n)
    for n in (
        "dict",
        "list",
        "tuple",
        "set",
        "frozenset",
        "str",
        "bytes",
        "int",
        "float",
        "bool",
        "complex",
        "bytearray",
        "NoneType",
    )
} | {("collections", "OrderedDict"), ("copy_reg", "_reconstructor"), ("__builtin__", "unicode")}


class _RestrictedUnpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str) -> Any:
        if (module, name) in _ALLOWED:
            return super().find_class(module, name)
        raise pickle.UnpicklingError(f"refusing to load {module}.{name}")


def load_pickle(path: str | os.PathLike) -> Any:
    """Load a data-only pickle (lists/dicts/str/numbers) without executing code.

    Python-2 pickles (as RRSIS-D/refcoco ship) are read with ``encoding='latin1'``.
    """
    path = Path(path)
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise DglrsisError(f"cannot read {path}: {exc.strerror or exc}") from None
    try:
        return _RestrictedUnpickler(io.BytesIO(data), encoding="latin1").load()
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError, AttributeError, IndexError) as exc:
        raise DglrsisError(f"{path} is not a safe data pickle ({exc})") from None


def load_checkpoint(path: str | os.PathLike) -> Any:
    """Load a checkpoint from ``.safetensors`` or a torch file with ``weights_only=True``.

    ``argparse.Namespace`` is allowed besides tensors and containers: DINO's ``checkpoint.pth`` stores its
    training ``args`` as one (a plain attribute holder; nothing runs). TorchScript archives (OpenAI's
    original ``ViT-B-16.pt``) are refused with a hint: they cannot be loaded without running their code.
    """
    import argparse

    import torch

    path = Path(path)
    if not path.is_file():
        raise DglrsisError(f"checkpoint not found: {path}")
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            return load_file(str(path))
        import warnings

        with warnings.catch_warnings(), torch.serialization.safe_globals([argparse.Namespace]):
            warnings.simplefilter("ignore")  # e.g. the TorchScript dispatch warning: the error says it
            return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - any failure here is a bad/untrusted file
        text = " ".join(str(exc).split())
        if "TorchScript" in text:
            raise DglrsisError(
                f"{path} is a TorchScript archive (OpenAI's original release format), which cannot be loaded "
                f"safely; use the open_clip hub file (e.g. timm/vit_base_patch16_clip_224.openai "
                f"open_clip_model.safetensors) instead"
            ) from None
        why = f"{type(exc).__name__}: {text[:300]}"
        raise DglrsisError(f"cannot load checkpoint {path} safely: {why}") from None
