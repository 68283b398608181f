"""Demo start-up: seconds from ``dglrsis demo`` to the first page, and to the first answer.

Starts ``dglrsis demo`` (default model choice: ViT-B-16:openai when its weights are on this machine, else
world-clip with no download attempted) on a free localhost port in a fresh process, polls ``/`` until it
answers 200 (``page_s``), then calls the ``segment`` endpoint once with gradio_client (``first_answer_s``,
which includes waiting for the models that load in the background). Goal: ``page_s`` ≤ 20 on a 2-core
machine without network. Prints one JSON object on its last line.

Usage: python bench/bench_demo_startup.py [--clip NAME] [--timeout 180]
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_demo(port: int, extra: list[str], tmp: str) -> subprocess.Popen:
    """``dglrsis demo`` in a child process whose temporary files go under ``tmp``."""
    env = {k: v for k, v in os.environ.items() if k != "GRADIO_TEMP_DIR"} | {"TMPDIR": tmp}
    cmd = [sys.executable, "-m", "dglrsis.cli", "demo", "--port", str(port), *extra]
    return subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)


def wait_for_page(url: str, proc: subprocess.Popen, timeout: float) -> float:
    """Seconds until ``url`` answers 200 (RuntimeError if the process dies or time runs out)."""
    t0 = time.perf_counter()
    while time.perf_counter() - t0 < timeout:
        if proc.poll() is not None:
            raise RuntimeError(f"demo exited with {proc.returncode}: {proc.stderr.read()[-2000:]}")
        try:
            with urllib.request.urlopen(url, timeout=2) as r:
                if r.status == 200:
                    return time.perf_counter() - t0
        except OSError:
            time.sleep(0.1)
    raise RuntimeError(f"no page at {url} after {timeout} s")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--clip", help="pass --clip NAME to the demo (default: its own choice)")
    ap.add_argument("--timeout", type=float, default=180)
    args = ap.parse_args()
    from gradio_client import Client, handle_file

    with tempfile.TemporaryDirectory(prefix="bench-demo-") as tmp:
        port = free_port()
        url = f"http://127.0.0.1:{port}/"
        t0 = time.perf_counter()
        proc = start_demo(port, ["--clip", args.clip] if args.clip else [], tmp)
        try:
            page_s = wait_for_page(url, proc, args.timeout)
            image = next((Path(tmp) / "dglrsis-demo-world").glob("isaid/*/images/*.png"))
            out = Client(url, verbose=False).predict(
                image=handle_file(str(image)), classes="ship, harbor", api_name="/segment"
            )
            first_s = time.perf_counter() - t0
        finally:
            proc.terminate()
            proc.wait(timeout=30)
    result = {
        "page_s": round(page_s, 2),
        "first_answer_s": round(first_s, 2),
        "goal_page_s": 20,
        "page_within_goal": page_s <= 20,
        "answered": "OVSS" in out[5],
        "hf_hub_offline": os.environ.get("HF_HUB_OFFLINE", ""),
    }
    print(json.dumps(result))


if __name__ == "__main__":
    main()
