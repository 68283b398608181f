"""The Gradio demo, driven over HTTP with gradio_client; load and upload-limit checks."""

import concurrent.futures
import os
import resource
import shutil
import socket

import numpy as np
import pytest
from PIL import Image

gradio_client = pytest.importorskip("gradio_client")
from gradio_client import Client, handle_file  # noqa: E402
from gradio_client.exceptions import AppError  # noqa: E402

import dglrsis  # noqa: E402
from dglrsis.demos.app import DemoModels, build_app, detect_mode, world_examples  # noqa: E402


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    models = DemoModels("world-clip:random")
    examples = world_examples(str(tmp_path_factory.mktemp("demo_world")), 2)
    app = build_app(models, examples)
    app.queue(max_size=64, default_concurrency_limit=2)
    port = _free_port()
    app.launch(
        server_name="127.0.0.1",
        server_port=port,
        prevent_thread_lock=True,
        quiet=True,
        max_file_size="2mb",
        show_error=False,
    )
    yield {"url": f"http://127.0.0.1:{port}/", "models": models, "examples": examples}
    app.close()


@pytest.mark.parametrize(
    "text, mode",
    [
        ("ship, harbor", "ovss"),
        ("storage tank", "ovss"),
        ("the ship on the left", "res"),
        ("largest storage tank", "res"),
        ("ship; plane", "ovss"),
    ],
)
def test_mode_detection(text, mode):
    assert detect_mode(text) == mode


def _predict(url, path, text, mode="auto", background="prompt"):
    return Client(url, verbose=False).predict(
        handle_file(path), text, mode, "", background, api_name="/segment"
    )


def test_both_modes_match_the_pipeline(demo):
    img_path = demo["examples"][0]
    image = dglrsis.read_image(img_path).array
    ref_pred = dglrsis.Predictor(
        dglrsis.PredictorConfig(clip="world-clip:random", background="prompt"), clip=demo["models"].clip
    )
    ref_pred.set_image(image)

    out = _predict(demo["url"], img_path, "ship, storage tank, harbor")
    labels = np.asarray(Image.open(out[4]))
    assert np.array_equal(
        labels, (ref_pred.segment("ship, storage tank, harbor").labels + 1).astype(np.uint8)
    )
    assert "OVSS" in out[5] and "legend" in out[1]
    assert np.asarray(Image.open(out[0])).shape == image.shape  # overlay at the image's size

    out = _predict(demo["url"], img_path, "the storage tank on the left")
    mask = np.asarray(Image.open(out[4])) > 0
    assert np.array_equal(mask, ref_pred.refer("the storage tank on the left").mask)
    assert "RES" in out[5] and np.asarray(Image.open(out[3])).shape == image.shape  # CAM heatmap returned


def test_bad_inputs_give_a_message(demo, tmp_path):
    bad = tmp_path / "bad.png"
    bad.write_text("not an image")
    cases = (
        (str(bad), "ship", "not a supported image"),
        (demo["examples"][0], "   ", "type class names"),
        (demo["examples"][0], "ship, ship", "listed twice"),
    )
    for path, text, expected in cases:
        with pytest.raises(AppError) as info:
            _predict(demo["url"], path, text)
        assert expected in str(info.value).lower() and "Traceback" not in str(info.value)


def test_oversized_upload_is_refused(demo, tmp_path):
    big = tmp_path / "big.png"
    rng = np.random.default_rng(0)
    Image.fromarray((rng.random((1400, 1400, 3)) * 255).astype(np.uint8)).save(big)  # ~5.9 MB > 2 MB
    assert os.path.getsize(big) > 2 * 1024 * 1024
    with pytest.raises((AppError, ValueError)) as info:  # the client refuses it before sending, or the server
        _predict(demo["url"], str(big), "ship")
    assert "large" in str(info.value).lower() or "size" in str(info.value).lower()


def test_thirty_concurrent_requests(demo, tmp_path):
    paths = []
    for i, e in enumerate(demo["examples"]):
        p = tmp_path / f"ex{i}.png"
        shutil.copy(e, p)
        paths.append(str(p))
    rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    texts = ["ship, harbor", "the ship on the left", "storage tank, plane"]

    def one(i):
        return _predict(demo["url"], paths[i % len(paths)], texts[i % len(texts)])

    with concurrent.futures.ThreadPoolExecutor(max_workers=30) as pool:
        results = list(pool.map(one, range(30)))
    assert len(results) == 30 and all(r[4] for r in results)
    grown_mb = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - rss_before) / 1024
    assert grown_mb < 1500, f"peak memory grew by {grown_mb:.0f} MB under load"
