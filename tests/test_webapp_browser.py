"""A real browser (Debian's chromium, driven by Playwright) uploads an image to the web app,
which asks a live model server; the page must show the answer, the heatmap and the
research-only line. Marked e2e: it needs /usr/bin/chromium and the playwright package."""
import base64
import os

import pytest

from breastdx_core import contract

pytest_plugins = ["conftest_serving"]

from serving_helpers import CLASS_NAMES, MODEL_NAME, RED, png_bytes  # noqa: E402

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]
PAGE_TIMEOUT_MS = 30000


@pytest.mark.e2e
def test_browser_uploads_an_image_and_reads_the_answer_and_heatmap(live_web, tmp_path):
    # No skipping: `make test` installs both (Makefile: chromium from apt, playwright in [dev]).
    from playwright import sync_api as playwright_api

    assert os.path.exists(CHROMIUM), f"{CHROMIUM} is missing: apt-get install -y chromium (make test does it)"
    web, _ = live_web
    image = tmp_path / "patch.png"
    image.write_bytes(png_bytes(RED))
    with playwright_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page()
            page.set_default_timeout(PAGE_TIMEOUT_MS)
            page.goto(web.url + "/")
            page.set_input_files("#file-input", str(image))
            assert page.inner_text("#file-list") == "patch.png"
            # Drag and drop replaces the chosen file with the dropped one.
            dropped = page.evaluate_handle("""(b64) => {
                const transfer = new DataTransfer();
                const bytes = Uint8Array.from(atob(b64), (c) => c.charCodeAt(0));
                transfer.items.add(new File([bytes], 'dropped.png', {type: 'image/png'}));
                return transfer;
            }""", base64.b64encode(png_bytes(RED)).decode("ascii"))
            page.dispatch_event("#drop-zone", "drop", {"dataTransfer": dropped})
            assert page.inner_text("#file-list") == "dropped.png"
            page.click("#submit-button")
            page.wait_for_selector(".result")
            assert page.inner_text(".result h2") == "dropped.png"
            assert page.inner_text(".result .class-name") == CLASS_NAMES[1]
            assert float(page.inner_text(".result .probability")) > 0.9
            assert page.inner_text("#research-only") == contract.RESEARCH_ONLY
            assert MODEL_NAME in page.inner_text(".result .model")
            heatmap = page.locator("#heatmap-0")
            assert heatmap.get_attribute("data-has-heatmap") == "true"
            assert heatmap.get_attribute("src").startswith("data:image/png;base64,")
            width = page.evaluate("document.getElementById('heatmap-0').naturalWidth")
            assert width > 0
            # The overlay is drawn: its pixels are not the plain red of the upload everywhere.
            colours = page.evaluate("""() => {
                const img = document.getElementById('heatmap-0');
                const canvas = document.createElement('canvas');
                canvas.width = img.naturalWidth; canvas.height = img.naturalHeight;
                const ctx = canvas.getContext('2d'); ctx.drawImage(img, 0, 0);
                const d = ctx.getImageData(0, 0, canvas.width, canvas.height).data;
                return [d[0], d[1], d[2]];
            }""")
            assert tuple(colours) != RED
        finally:
            browser.close()
