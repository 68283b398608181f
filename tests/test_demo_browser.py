"""Real-browser test of the demo: headless Debian Chromium driven by Playwright. Upload → preview → segment
(legend with the asked classes, overlay) → refer (CAM with colour bar, candidate table, a selected row
outlined); the model note appears once and shows no filesystem path. (.ci/system-deps installs chromium;
without it the test is skipped.)"""

import os
import re
import shutil
import socket
import time

import numpy as np
import pytest
from PIL import Image

playwright = pytest.importorskip("playwright.sync_api")
CHROMIUM = "/usr/bin/chromium"
pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(not os.path.exists(CHROMIUM), reason="Debian chromium is not installed"),
]
CLASSES = ["ship", "storage tank", "harbor"]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _image(page, elem_id: str) -> np.ndarray:
    """The picture an image component shows, fetched as the browser does."""
    src = page.locator(f"#{elem_id} img").first.get_attribute("src")
    body = page.request.get(src).body()
    import io

    return np.asarray(Image.open(io.BytesIO(body)).convert("RGB"))


def test_browser_upload_segment_refer(tmp_path):
    from dglrsis.demos import app as demo_app

    examples = demo_app.world_examples(str(tmp_path / "world"), 1, size=192)
    upload = tmp_path / "upload.png"
    shutil.copy(examples[0], upload)
    models = demo_app.DemoModels("world-clip", background=True)
    app = demo_app.launch_app(demo_app.build_app(models, examples), port=_free_port(), examples=examples)
    try:
        with playwright.sync_playwright() as p:
            browser = p.chromium.launch(
                executable_path=CHROMIUM,
                args=[
                    "--headless",
                    "--no-sandbox",
                    "--disable-gpu",
                    "--disable-background-networking",
                    "--disable-component-update",
                    "--no-first-run",
                ],
            )
            page = browser.new_page(viewport={"width": 1400, "height": 1400})
            page.goto(app.local_url, wait_until="domcontentloaded", timeout=60_000)
            page.locator("#segment").wait_for(timeout=60_000)
            page.locator("#model-note").get_by_text("world-clip").wait_for(timeout=60_000)

            page.locator("#image-input input[type=file]").set_input_files(str(upload))
            page.locator("#preview img").wait_for(timeout=60_000)
            assert _image(page, "preview").shape == (192, 192, 3)
            page.locator("#preview-info").get_by_text("bands used: 1, 2, 3").wait_for(timeout=30_000)

            page.locator("#classes textarea").fill(", ".join(CLASSES))
            page.locator("#segment").click()
            page.locator("#message").get_by_text("OVSS").wait_for(timeout=180_000)
            items = page.locator("#legend .legend-item").all_inner_texts()
            assert [re.sub(r" \(.*\)$", "", t) for t in items] == CLASSES
            assert _image(page, "overlay").shape[0] > 192  # the overlay with its legend strip

            page.get_by_role("tab", name="Refer (expression)").click()
            page.locator("#expression textarea").fill("the storage tank on the left")
            page.locator("#refer").click()
            page.locator("#message").get_by_text("RES").wait_for(timeout=180_000)
            page.locator("#cam img").wait_for(timeout=30_000)
            cam = _image(page, "cam")
            assert cam.shape[1] > 192 and cam.shape[0] == 192  # CAM plus its colour bar
            headers = page.locator("#scores th").all_inner_texts()
            assert any("rank" in h for h in headers) and any("score" in h for h in headers)
            page.screenshot(path=str(tmp_path / "demo.png"), full_page=True)
            cells = page.locator("#scores [role=gridcell]")
            assert cells.count() >= len(headers)  # at least one candidate row
            before = page.locator("#overlay img").first.get_attribute("src")
            page.locator(
                "#scores [data-testid=cell-0-2]"
            ).click()  # select a candidate: it is outlined on the image
            page.wait_for_function(
                "b => document.querySelector('#overlay img').getAttribute('src') !== b",
                arg=before,
                timeout=60_000,
            )

            body = page.locator("body").inner_text()
            note = page.locator("#model-note").inner_text()
            assert body.count("Model:") == 1 and note.count("Model:") == 1
            assert not re.search(r"(/[\w.-]+){2,}", note) and "Error" not in note
            assert len(app.demo.sessions) == 1
            browser.close()
        for _ in range(100):  # closing the tab releases the session's cached image state
            if len(app.demo.sessions) == 0:
                break
            time.sleep(0.2)
        assert len(app.demo.sessions) == 0
    finally:
        app.close()
        app.demo.files.close()
    assert (tmp_path / "demo.png").stat().st_size > 10_000
    out = os.environ.get("DGLRSIS_SCREENSHOT")
    if out:
        shutil.copy(tmp_path / "demo.png", out)
