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

# (module, name) pairs a data pickle may legitimately reference: builtin containers and scalars only
# (Python 2 pickles name the same builtins ``__builtin__``, and ``copy_reg._reconstructor``).
_BUILTINS = (
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
_ALLOWED = (
    {("builtins", n) for n in _BUILTINS}
    | {("__builtin__", n) for n in (*_BUILTINS, "unicode", "long")}
    | {("collections", "OrderedDict"), ("copy_reg", "_reconstructor"), ("copyreg", "_reconstructor")}
    | {("_codecs", "encode")}  # protocol-2 bytes: _codecs.encode(text, "latin1"), latin-1 only
)
_PY2_NAMES = {("__builtin__", "unicode"): ("builtins", "str"), ("__builtin__", "long"): ("builtins", "int")}

# Allowed callables whose integer argument is an allocation size (copyreg._reconstructor passes its
# state to ``base.__init__``, e.g. ``bytearray.__init__(obj, n)``).
_ALLOCATING = {"bytes", "bytearray", "_reconstructor"}

# Opcodes whose argument is a memo index (the C unpickler grows its memo array to the index).
_MEMO_OPS = {"PUT", "BINPUT", "LONG_BINPUT", "GET", "BINGET", "LONG_BINGET"}


def _guarded(fn: Any, budget: int) -> Any:
    """``fn`` refusing integer arguments above ``budget`` (``bytes(n)``/``bytearray(n)`` allocate n)."""

    def call(*args, **kwargs):
        for a in (*args, *kwargs.values()):
            if isinstance(a, int) and not isinstance(a, bool) and abs(a) > budget:
                raise pickle.UnpicklingError(
                    f"{getattr(fn, '__name__', fn)}({a}) would allocate beyond the file"
                )
        return fn(*args, **kwargs)

    return call


def _latin1_encode(text: str, encoding: str = "utf-8", errors: str = "strict") -> bytes:
    """``_codecs.encode`` as protocol-2 pickles of bytes use it; only latin-1 (never a compression codec)."""
    if not isinstance(text, str) or encoding.lower().replace("_", "-") not in ("latin1", "latin-1"):
        raise pickle.UnpicklingError(f"refusing _codecs.encode with encoding {encoding!r}")
    return text.encode("latin-1", errors)


class _RestrictedUnpickler(pickle.Unpickler):
    budget = 1 << 20  # set per file: the largest integer argument an allowed callable may receive

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) not in _ALLOWED:
            raise pickle.UnpicklingError(f"refusing to load {module}.{name}")
        module, name = _PY2_NAMES.get((module, name), (module, name))
        if (module, name) == ("_codecs", "encode"):
            return _latin1_encode
        obj = super().find_class(module, name)
        return _guarded(obj, self.budget) if name in _ALLOCATING else obj


def prescan(data: bytes, what: str = "pickle") -> None:
    """Walk the opcodes without building anything and refuse what could allocate beyond the file's size:
    memo indices (``LONG_BINPUT 2**30`` makes the C unpickler allocate 8 GiB), frame and string lengths
    larger than the file. Raises :class:`DglrsisError`."""
    import pickletools

    size = len(data)
    try:
        for op, arg, pos in pickletools.genops(data):
            if op.name in _MEMO_OPS and isinstance(arg, int) and not 0 <= arg <= size:
                raise DglrsisError(
                    f"{what} is not a safe data pickle (memo index {arg} at byte {pos} exceeds the file's "
                    f"{size} bytes)"
                )
            if op.name == "FRAME" and isinstance(arg, int) and arg > size:
                raise DglrsisError(
                    f"{what} is not a safe data pickle (frame of {arg} bytes in a {size}-byte file)"
                )
            if isinstance(arg, (str, bytes, bytearray)) and len(arg) > size:
                raise DglrsisError(
                    f"{what} is not a safe data pickle (a {len(arg)}-byte string in {size} bytes)"
                )
    except DglrsisError:
        raise
    except Exception as exc:  # noqa: BLE001 - truncated or malformed opcode stream
        raise DglrsisError(f"{what} is not a safe data pickle ({' '.join(str(exc).split())[:200]})") from None


def load_pickle(path: str | os.PathLike) -> Any:
    """Load a data-only pickle (lists/dicts/str/numbers) without executing code, in memory bounded by
    the file's size: :func:`prescan` first, then a restricted unpickler whose allowed callables refuse
    allocation arguments above 64× the file size. Every failure is one :class:`DglrsisError`.

    Python-2 pickles (as RRSIS-D/refcoco ship) are read with ``encoding='latin1'``.
    """
    path = Path(path)
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise DglrsisError(f"cannot read {path}: {exc.strerror or exc}") from None
    prescan(data, str(path))
    unpickler = _RestrictedUnpickler(io.BytesIO(data), encoding="latin1")
    unpickler.budget = max(1 << 16, 64 * len(data))
    try:
        return unpickler.load()
    except (Exception, RecursionError) as exc:  # noqa: BLE001 - MemoryError, OverflowError, … : one line
        msg = " ".join(str(exc).split())[:200]
        raise DglrsisError(f"{path} is not a safe data pickle ({type(exc).__name__}: {msg})") from None


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
