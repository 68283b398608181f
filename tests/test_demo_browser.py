"""Real-browser test of the demo: headless Debian Chromium driven by Playwright uploads an example, runs
both modes and saves a screenshot; the overlay and the legend must appear. (.ci/system-deps installs
chromium; without it the test is skipped.)"""

import os
import shutil
import socket

import pytest

playwright = pytest.importorskip("playwright.sync_api")
CHROMIUM = "/usr/bin/chromium"
pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(not os.path.exists(CHROMIUM), reason="Debian chromium is not installed"),
]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_browser_both_modes(tmp_path):
    from dglrsis.demos.app import DemoModels, build_app, world_examples

    examples = world_examples(str(tmp_path / "world"), 1)
    upload = tmp_path / "upload.png"
    shutil.copy(examples[0], upload)
    app = build_app(DemoModels("world-clip:random"), examples)
    app.queue(max_size=16, default_concurrency_limit=2)
    port = _free_port()
    app.launch(server_name="127.0.0.1", server_port=port, prevent_thread_lock=True, quiet=True)
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
            page = browser.new_page(viewport={"width": 1400, "height": 1100})
            page.goto(f"http://127.0.0.1:{port}/", wait_until="domcontentloaded", timeout=60_000)
            page.locator("#run").wait_for(timeout=60_000)
            page.locator("#image-input input[type=file]").set_input_files(str(upload))
            page.wait_for_timeout(1000)
            for text, expect in (
                ("ship, storage tank, harbor", "OVSS"),
                ("the storage tank on the left", "RES"),
            ):
                page.locator("#query textarea").fill(text)
                page.locator("#run").click()
                page.locator("#message").get_by_text(expect).wait_for(timeout=120_000)
                assert page.locator("#overlay img").count() >= 1
                assert page.locator("#legend .legend-item").count() >= 1
            page.screenshot(path=str(tmp_path / "demo.png"), full_page=True)
            browser.close()
    finally:
        app.close()
    assert (tmp_path / "demo.png").stat().st_size > 10_000
    out = os.environ.get("DGLRSIS_SCREENSHOT")
    if out:
        shutil.copy(tmp_path / "demo.png", out)
