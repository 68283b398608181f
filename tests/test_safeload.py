"""The untrusted-pickle loader: memory bounded by construction (memo bomb, allocation bombs, 1000 fuzzed
refs files each under a tracemalloc bound), every failure one DglrsisError line, Python-2 names read."""

import pickle
import tracemalloc
from collections import OrderedDict

import numpy as np
import pytest

from dglrsis.errors import DglrsisError
from dglrsis.safeload import load_pickle

MEMO_BOMB = bytes.fromhex("80025d72000000402e")  # EMPTY_LIST, LONG_BINPUT 2**30, STOP
LIMIT = 64 * 2**20  # bytes of Python allocations any one file may cause here (files are ~10 KB)


def _refs() -> list:
    """A refs(unc).p-like list: dicts of sentences with tokens, ids, splits, file names."""
    rng = np.random.default_rng(0)
    words = ["the", "ship", "left", "large", "white", "tank", "near", "harbor", "vehicle", "small"]
    refs, sent = [], 0
    for r in range(40):
        sents = []
        for _ in range(3):
            toks = [str(w) for w in rng.choice(words, 5)]
            sents.append({"tokens": toks, "raw": " ".join(toks), "sent_id": sent, "sent": " ".join(toks)})
            sent += 1
        refs.append(
            {
                "image_id": r,
                "split": ["train", "val", "test"][r % 3],
                "sentences": sents,
                "file_name": f"{r:05d}.jpg",
                "category_id": int(r % 20),
                "ann_id": r,
                "sent_ids": [s["sent_id"] for s in sents],
                "ref_id": r,
            }
        )
    return refs


def _load_bounded(path):
    tracemalloc.start()
    try:
        try:
            return load_pickle(path), None
        except DglrsisError as exc:
            return None, str(exc)
    finally:
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
        assert peak < LIMIT, f"{path.name}: {peak / 2**20:.0f} MiB"


def test_memo_bomb_is_one_clear_error(tmp_path):
    p = tmp_path / "refs(unc).p"
    p.write_bytes(MEMO_BOMB)
    value, err = _load_bounded(p)
    assert value is None and "memo index 1073741824" in err and "\n" not in err


@pytest.mark.parametrize(
    "payload",
    [
        b"\x80\x02c__builtin__\nbytearray\nJ\x00\x00\x00\x7f\x85R.",  # bytearray(2**31 - 2**24)
        b"\x80\x02c__builtin__\nbytes\nJ\x00\x00\x00\x7f\x85R.",
        b"\x80\x02ccopy_reg\n_reconstructor\nc__builtin__\nbytearray\nc__builtin__\nbytearray\n"
        b"J\x00\x00\x00\x7f\x87R.",  # bytearray.__init__(obj, 2**31 - 2**24) through _reconstructor
        b"\x80\x04\x95\x00\x00\x00\x00\x00\x00\x00\x40N.",  # FRAME of 2**62 bytes
        b"\x80\x02X\x00\x00\x00\x7f" + b"a" * 8 + b".",  # BINUNICODE longer than the file
    ],
)
def test_allocation_bombs_are_refused(tmp_path, payload):
    p = tmp_path / "bomb.p"
    p.write_bytes(payload)
    value, err = _load_bounded(p)
    assert value is None and err and "\n" not in err


def test_python2_names_and_containers_load(tmp_path):
    data = [{"s": {1, 2}, "f": frozenset({3}), "o": OrderedDict(a=1), "b": b"x", "t": (1.5, None, True)}]
    p = tmp_path / "p2.p"
    p.write_bytes(pickle.dumps(data, protocol=2))  # protocol 2 names builtins __builtin__.set …
    assert load_pickle(p) == data
    p.write_bytes(b"\x80\x02c__builtin__\nunicode\nX\x01\x00\x00\x00a\x85R.")  # py2 unicode('a')
    assert load_pickle(p) == "a"


def test_fuzzed_refs_files_load_or_fail_cleanly_in_bounded_memory(tmp_path):
    genuine = pickle.dumps(_refs(), protocol=2)
    rng = np.random.default_rng(21)
    outcomes = {"loaded": 0, "refused": 0}
    for i in range(1000):
        b = bytearray(genuine)
        kind = i % 4
        if kind == 0:  # flip random bytes
            for pos in rng.integers(2, len(b), int(rng.integers(1, 8))):
                b[pos] = int(rng.integers(0, 256))
        elif kind == 1:  # a large memo index / length written over the stream
            pos = int(rng.integers(2, len(b) - 5))
            b[pos : pos + 5] = bytes([int(rng.choice([0x72, 0x58, 0x54, 0x42, 0x6A]))]) + int(
                rng.integers(2**20, 2**31)
            ).to_bytes(4, "little")
        elif kind == 2:  # truncate
            b = b[: int(rng.integers(1, len(b)))]
        else:  # splice a chunk of the stream elsewhere
            a0, a1 = sorted(rng.integers(2, len(b), 2))
            pos = int(rng.integers(2, len(b)))
            b[pos:pos] = b[a0:a1]
        p = tmp_path / f"f{i}.p"
        p.write_bytes(bytes(b))
        value, err = _load_bounded(p)
        outcomes["loaded" if err is None else "refused"] += 1
        assert err is None or ("\n" not in err and str(p) in err)
    assert outcomes["refused"] > 250  # the mutations do bite
