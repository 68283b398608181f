"""The console script: its parser imports nothing heavy, so `--help` and `decompose` start fast."""

import json
import subprocess
import sys

import pytest

from dglrsis.cli import COMMANDS

PROBE = """
import sys
from dglrsis.cli import main
try:
    code = main(sys.argv[1:])
except SystemExit as exc:  # --help
    code = exc.code
heavy = sorted(m for m in ("torch", "open_clip", "transformers", "gradio", "skimage") if m in sys.modules)
print("HEAVY=" + ",".join(heavy) + f" CODE={code}")
"""


def _probe(*args) -> tuple[str, str]:
    out = subprocess.run([sys.executable, "-c", PROBE, *args], capture_output=True, text=True, timeout=120)
    body, _, tail = out.stdout.rpartition("HEAVY=")
    return body, tail.strip()


def test_decompose_imports_no_model_stack():
    body, tail = _probe("decompose", "the white ship next to the harbor")
    assert json.loads(body)["local"] == ["ship"]
    assert tail == "CODE=0"  # nothing heavy imported


@pytest.mark.parametrize("command", [None, *COMMANDS])
def test_help_imports_no_model_stack(command):
    body, tail = _probe(*([] if command is None else [command]), "--help")
    assert "usage: dglrsis" in body
    assert tail == "CODE=0"


def test_out_of_memory_is_one_line_that_says_what_to_do(monkeypatch, capsys):
    import dglrsis.commands.segment as segment

    def boom(args):
        raise MemoryError("Unable to allocate 4.30 GiB for an array with shape (1955, 1536, 1536)")

    monkeypatch.setattr(segment, "run", boom)
    from dglrsis.cli import main

    code = main(["segment", "x.tif", "--classes", "ship", "--out", "o.tif"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 1 and len(err) == 1
    assert "out of memory" in err[0] and "--tile" in err[0] and "internal error" not in err[0]
