"""Demo soak (localhost only): many short sessions in waves against one ``dglrsis demo`` process.

Starts ``dglrsis demo --clip world-clip --proposals slic`` in a child process (its temporary files under a
folder of this run), computes every query's answer once sequentially, then runs ``--sessions`` sessions
in ``--waves`` waves, ``--parallel`` at a time; each session is a new gradio_client ``Client`` (a new
server session) that calls ``segment`` and, every ``--refer-every``-th session, ``refer`` on one of a few
small world images. Reported: the server's resident memory after the first wave and after the soak
(goal: within 300 MB), the request folders left once the answers are delivered (goal: none), the files
and folders in gradio's cache (bounded by its 900-s expiry, not by the number of requests), what is left
in the server's temporary folder after it stops (goal: only the example world), and whether every
answer equals the sequential one (label / mask pixels). Prints one JSON object on its last line.

Usage: python bench/bench_demo_soak.py [--sessions 200] [--waves 10] [--parallel 4] [--size 128]
"""

from __future__ import annotations

import argparse
import concurrent.futures
import hashlib
import json
import tempfile
import time
from pathlib import Path

import numpy as np
from bench_demo_startup import free_port, start_demo, wait_for_page
from PIL import Image

JOBS = [
    ("ship, harbor, storage tank", "the storage tank on the left"),
    ("plane, ship", "the largest ship"),
]


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def pixels_digest(path: str) -> str:
    return hashlib.sha1(np.asarray(Image.open(path)).tobytes()).hexdigest()


def answer(url: str, image: str, classes: str, expression: str | None, downloads: str) -> tuple:
    """(label digest, mask digest or None) from one new session."""
    from gradio_client import Client, handle_file

    client = Client(url, verbose=False, download_files=downloads)
    seg = client.predict(image=handle_file(image), classes=classes, api_name="/segment")
    labels = pixels_digest(next(f for f in seg[4] if f.endswith(".png")))
    mask = None
    if expression:
        ref = client.predict(image=handle_file(image), expression=expression, api_name="/refer")
        mask = pixels_digest(next(f for f in ref[4] if f.endswith(".png")))
    return labels, mask


def count_tree(root: Path) -> tuple[int, int]:
    """(folders, files) under ``root``."""
    if not root.exists():
        return 0, 0
    items = list(root.rglob("*"))
    return sum(p.is_dir() for p in items), sum(p.is_file() for p in items)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sessions", type=int, default=200)
    ap.add_argument("--waves", type=int, default=10)
    ap.add_argument("--parallel", type=int, default=4)
    ap.add_argument("--size", type=int, default=128, help="side of the test images (pixels)")
    ap.add_argument("--refer-every", type=int, default=4)
    ap.add_argument("--images", type=int, default=3)
    args = ap.parse_args()

    with tempfile.TemporaryDirectory(prefix="bench-soak-") as tmp:
        tmp = Path(tmp)
        server_tmp = tmp / "server"
        server_tmp.mkdir()
        port = free_port()
        url = f"http://127.0.0.1:{port}/"
        proc = start_demo(port, ["--clip", "world-clip", "--proposals", "slic"], str(server_tmp))
        try:
            wait_for_page(url, proc, 300)
            world = sorted((server_tmp / "dglrsis-demo-world").glob("isaid/*/images/*.png"))
            images = []
            for i in range(args.images):  # small crops keep a session to a second or two on 2 cores
                src = np.asarray(Image.open(world[i % len(world)]))
                y = (i * 37) % max(1, src.shape[0] - args.size)
                path = tmp / f"img{i}.png"
                Image.fromarray(src[y : y + args.size, : args.size]).save(path)
                images.append(str(path))
            jobs = [(img, *q) for img in images for q in JOBS]
            downloads = str(tmp / "client")
            t0 = time.perf_counter()
            reference = {job: answer(url, *job, downloads) for job in jobs}
            sequential_s = time.perf_counter() - t0

            per_wave = -(-args.sessions // args.waves)
            rss, mismatches, done = [], 0, 0
            t0 = time.perf_counter()
            for wave in range(args.waves):
                n = min(per_wave, args.sessions - done)
                batch = [(jobs[i % len(jobs)], i % args.refer_every == 0) for i in range(done, done + n)]

                def one(item):
                    (img, classes, expression), refer = item
                    return answer(url, img, classes, expression if refer else None, downloads)

                with concurrent.futures.ThreadPoolExecutor(args.parallel) as pool:
                    results = list(pool.map(one, batch))
                for (job, _), (labels, mask) in zip(batch, results, strict=True):
                    ref_labels, ref_mask = reference[job]
                    mismatches += labels != ref_labels or (mask is not None and mask != ref_mask)
                done += n
                rss.append(round(rss_mb(proc.pid), 1))
                print(f"wave {wave + 1}/{args.waves}: {done} sessions, server RSS {rss[-1]} MB", flush=True)
            soak_s = time.perf_counter() - t0
            time.sleep(25)  # the request folders' grace period (20 s) after delivery
            left = sum(len(list(p.iterdir())) for p in server_tmp.glob("dglrsis-demo-requests-*"))
            gradio_dirs, gradio_files = count_tree(next(server_tmp.glob("dglrsis-demo-cache-*")))
            rss_final = round(rss_mb(proc.pid), 1)
        finally:
            proc.terminate()
            proc.wait(timeout=60)
        leftovers = sorted(p.name for p in server_tmp.iterdir())
    result = {
        "sessions": done,
        "waves": args.waves,
        "parallel": args.parallel,
        "image_side": args.size,
        "refer_every": args.refer_every,
        "sequential_reference_s": round(sequential_s, 1),
        "soak_s": round(soak_s, 1),
        "rss_after_first_wave_mb": rss[0],
        "rss_after_soak_mb": rss[-1],
        "rss_after_idle_mb": rss_final,
        "rss_growth_mb": round(rss[-1] - rss[0], 1),
        "rss_per_wave_mb": rss,
        "within_300mb": rss[-1] - rss[0] <= 300,
        "request_folders_left": left,
        "server_tmp_after_exit": leftovers,
        "gradio_cache_dirs": gradio_dirs,
        "gradio_cache_files": gradio_files,
        "answers_differing_from_sequential": int(mismatches),
    }
    print(json.dumps(result))


if __name__ == "__main__":
    main()
