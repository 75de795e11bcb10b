"""A real browser (Debian's chromium, driven by Playwright) uses the web app as a person would,
with a live model server behind it (the tiny model; its card holds an input contract measured
on H&E-like tissue and says it was trained on synthetic data): answers read at a glance, the
Grad-CAM legend, the synthetic-data banner, the map and mosaic result pages in the deep-zoom
viewer, refusals in a person's words (a decompression bomb, ultrasound frames and a portrait
not assessed as wholes, a stride too small, a zip of unreadable patches with the real count), a
phone's width and the keyboard. Every page is photographed at desktop and phone widths into
``$BREASTDX_SCREENSHOTS`` (default: the test's temporary folder) for a person to look at.
Marked e2e: it needs /usr/bin/chromium and playwright."""

import base64
import io
import os
import time
import zipfile

import pytest

from breastdx_core import contract

pytest_plugins = ["conftest_serving"]

from serving_helpers import CLASS_NAMES, RED, LiveServer, png_bytes  # noqa: E402
from test_webapp_app import png_bomb  # noqa: E402
from webapp_helpers import (  # noqa: E402
    BLUE_STROMA,
    RED_STROMA,
    add_contract_version,
    encode,
    portrait,
    tissue,
    ultrasound,
    unreadable_patch_zip,
)

T0 = time.perf_counter()
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
PAGE_TIMEOUT_MS = 30000
DESKTOP = {"width": 1280, "height": 900}
PHONE = {"width": 390, "height": 844}
OVERFLOW = "document.documentElement.scrollWidth - document.documentElement.clientWidth"
# Form fields a screen reader cannot name: no <label>, no aria-label(ledby).
UNLABELLED = """Array.from(document.querySelectorAll('input:not([type=hidden]), select, textarea'))
    .filter(e => !(e.labels && e.labels.length) && !e.getAttribute('aria-label')
                 && !e.getAttribute('aria-labelledby'))
    .map(e => e.id || e.name || e.outerHTML.slice(0, 60))"""


@pytest.fixture
def live_contract_web(tmp_path, tiny_model_dir, web_app_factory):
    """The web app and a model server whose card holds an input contract and the synthetic flag."""
    from serving.server import create_app

    root = tmp_path / "serving"
    add_contract_version(root, 1, tiny_model_dir)
    server_app = create_app(str(root), start=False)
    server_app.extensions["model_store"].poll()
    server = LiveServer(server_app)
    web = LiveServer(web_app_factory(SERVER_URL=server.url, RESULTS_DIR=str(tmp_path / "results")))
    yield web
    web.close()
    server.close()
    server_app.extensions["model_store"].stop()


def patient_zip() -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for i in range(12):  # six labelled IDC (one of them looks negative), six not
            x, y = 50 * (i % 4), 50 * (i // 4)
            label = 1 if i < 6 else 0
            sheet = tissue(50, 50, seed=200 + i, stroma=RED_STROMA if i < 5 else BLUE_STROMA)
            archive.writestr(f"777_idx5_x{x}_y{y}_class{label}.png", encode(sheet))
        archive.writestr("notes.txt", b"not a patch")
    return buffer.getvalue()


def refused_page(page, button, status, back):
    """Submits the form, checks the answer is a refusal page (its status, never a 500, with a
    way back) and returns its message."""
    with page.expect_navigation() as navigation:
        page.click(button)
    assert navigation.value.status == status, page.inner_text("body")[:300]
    assert page.get_attribute("#back-link", "href") == back
    return page.inner_text("#error-message")


class Shots:
    """Writes numbered screenshots of whole pages."""

    def __init__(self, folder):
        self.folder = folder
        os.makedirs(folder, exist_ok=True)
        self.taken = []

    def __call__(self, page, name):
        assert page.title().endswith(" · BreastDx"), (name, page.title())  # every page: the app
        assert page.evaluate(UNLABELLED) == [], name
        path = os.path.join(self.folder, f"{len(self.taken) + 1:02d}-{name}.png")
        t = time.perf_counter()
        page.screenshot(path=path, full_page=True)
        self.taken.append(path)
        print(f"{name}: shot {time.perf_counter() - t:.1f} s, at {time.perf_counter() - T0:.1f}")


def no_overflow(page, where):
    assert page.evaluate(OVERFLOW) <= 0, f"{where}: the page is wider than the screen"


@pytest.mark.e2e
def test_a_person_reads_answers_maps_and_mosaics_at_desktop_and_phone_width(
    live_contract_web, tmp_path
):
    # No skipping: `make test` installs both (Makefile: chromium from apt, playwright in [dev]).
    from playwright import sync_api as playwright_api

    assert os.path.exists(CHROMIUM), (
        f"{CHROMIUM} is missing: apt-get install -y chromium (make test does it)"
    )
    url = live_contract_web.url
    shots = Shots(os.environ.get("BREASTDX_SCREENSHOTS") or str(tmp_path / "screenshots"))
    files = tmp_path / "files"
    files.mkdir()
    for name, content in (
        ("red.png", encode(tissue(50, 50, seed=1, stroma=RED_STROMA))),
        ("red.tif", encode(tissue(50, 50, seed=1, stroma=RED_STROMA), "TIFF")),
        ("red.webp", encode(tissue(50, 50, seed=1, stroma=RED_STROMA), "WEBP")),
        ("pink.png", encode(tissue(50, 50, seed=2))),
        ("blue.png", encode(tissue(50, 50, seed=3, stroma=BLUE_STROMA))),
        ("portrait.png", encode(portrait())),
        ("notes.png", b"hello"),
        ("tissue.png", encode(tissue(200, 300, seed=42))),
        ("scan.png", png_bytes(RED) + b"\0" * (9_734_128 - len(png_bytes(RED)))),
        ("777.zip", patient_zip()),
        ("bomb.png", png_bomb()),
        ("ultrasound.png", encode(ultrasound())),
        ("ultrasound-grey.png", encode(ultrasound(), mode="L")),
        ("unreadable.zip", unreadable_patch_zip(25)),
    ):
        (files / name).write_bytes(content)
    with playwright_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            desktop = browser.new_page(viewport=DESKTOP)
            desktop.set_default_timeout(PAGE_TIMEOUT_MS)
            result_pages = _desktop(desktop, url, files, shots)
            phone = browser.new_page(viewport=PHONE)
            phone.set_default_timeout(PAGE_TIMEOUT_MS)
            _phone(phone, url, files, shots, result_pages)
        finally:
            browser.close()
    assert len(shots.taken) >= 22 and all(os.path.getsize(p) > 5000 for p in shots.taken)


def _desktop(page, url, files, shots):
    started = time.perf_counter()
    page.goto(url + "/")
    assert page.title() == "Classify patches · BreastDx"
    assert page.locator("#synthetic-banner").is_visible()
    assert "50 × 50-pixel patches of H&E-stained breast tissue at 2.5×" in page.inner_text(
        "#scope-text"
    )
    assert page.locator(f"text={contract.RESEARCH_ONLY}").count() == 1
    assert page.get_attribute("nav a[aria-current=page]", "href") == "/"
    shots(page, "home-desktop")
    # Drag and drop replaces the chosen files with the dropped one.
    page.set_input_files("#file-input", str(files / "red.png"))
    assert page.inner_text("#file-list") == "red.png"
    dropped = page.evaluate_handle(
        """(b64) => {
        const transfer = new DataTransfer();
        const bytes = Uint8Array.from(atob(b64), (c) => c.charCodeAt(0));
        transfer.items.add(new File([bytes], 'dropped.png', {type: 'image/png'}));
        return transfer;
    }""",
        base64.b64encode(png_bytes(RED)).decode("ascii"),
    )
    page.dispatch_event("#drop-zone", "drop", {"dataTransfer": dropped})
    assert page.inner_text("#file-list") == "dropped.png"
    # Long work: the button is disabled and a spinner counts the seconds (navigation held back).
    page.evaluate(
        "document.getElementById('upload-form').addEventListener('submit', e => e.preventDefault())"
    )
    page.click("#submit-button")
    assert page.is_disabled("#submit-button") and "Classifying" in page.inner_text(
        "#upload-form .busy"
    )
    page.goto(url + "/")
    # Keyboard only: Tab from the top reaches the skip link first, then the file input, the button.
    page.keyboard.press("Tab")
    assert page.evaluate("document.activeElement.textContent") == "Skip to the content"
    page.set_input_files(
        "#file-input",
        [
            str(files / n)
            for n in ("red.png", "pink.png", "blue.png", "portrait.png", "notes.png", "red.tif")
        ]
        + [str(files / "red.webp")],
    )
    page.focus("#file-input")
    page.keyboard.press("Tab")
    assert page.evaluate("document.activeElement.id") == "submit-button"
    with page.expect_navigation():
        page.keyboard.press("Enter")
    answers = page.locator(".result .answer").all_inner_texts()
    assert answers[0].startswith(f"{CLASS_NAMES[1]}, 0.9") and answers[2].startswith(
        f"{CLASS_NAMES[0]}, 0."
    )
    assert answers[1] == "Uncertain: refer to a pathologist — both classes plausible at 95 %"
    assert answers[3].startswith(
        "Not assessed: not an H&E patch of breast tissue (the image is 240x300 px"
    )
    # TIFF and WebP are read like PNG (the bad file in the batch is refused alone).
    assert answers[4].startswith(f"{CLASS_NAMES[1]}, 0.9") and len(answers) == 6
    assert answers[5].startswith(f"{CLASS_NAMES[1]}, 0.9")
    assert "refused" not in " ".join(answers).lower() and "prediction set" not in page.content()
    assert page.inner_text(".refused .refusal-reason").startswith(
        "not an image; expected PNG, JPEG"
    )
    assert page.locator("#rule-explained").is_visible() and "pathologist" in page.inner_text(
        "#rule-explained"
    )
    legend = page.locator("#gradcam-legend")
    assert legend.is_visible() and "same 0–1 scale for every image" in legend.inner_text()
    assert page.locator("#original-0").is_visible() and page.locator("#heatmap-0").is_visible()
    assert page.locator("#synthetic-banner").is_visible()
    assert page.locator(f"text={contract.RESEARCH_ONLY}").count() == 1
    shots(page, "results-desktop")
    # Too large: the real size and the limit in words, and the way back.
    page.goto(url + "/")
    page.set_input_files("#file-input", str(files / "scan.png"))
    with page.expect_navigation():
        page.click("#submit-button")
    assert page.inner_text("#error-message") == (
        "scan.png: 9.3 MiB (9,734,128 bytes); files of at most 8 MiB are accepted"
    )
    assert page.get_attribute("#back-link", "href") == "/"
    shots(page, "too-large-desktop")
    # A decompression bomb: what it declares and the limit, in words.
    page.goto(url + "/")
    page.set_input_files("#file-input", str(files / "bomb.png"))
    assert refused_page(page, "#submit-button", 413, "/") == (
        "bomb.png: declares 400.0 megapixels (400,000,000 pixels); images "
        "of at most 16.8 megapixels (16,777,216 pixels) are accepted"
    )
    shots(page, "too-many-pixels-desktop")
    # A whole image: the map lands on its own page, shown in the deep-zoom viewer.
    page.goto(url + "/map")
    page.set_input_files("#map-file", str(files / "tissue.png"))
    page.evaluate(
        "document.getElementById('map-form').addEventListener('submit', e => e.preventDefault())"
    )
    page.click("#map-submit")  # held back: the button disabled, the seconds counted
    assert page.is_disabled("#map-submit") and "Mapping the image" in page.inner_text(
        "#map-form .busy"
    )
    page.goto(url + "/map")
    page.set_input_files("#map-file", str(files / "tissue.png"))
    with page.expect_navigation():
        page.click("#map-submit")
    assert page.url.startswith(url + "/map/")
    map_url = page.url
    page.wait_for_selector("#map-viewer[data-ready=true]")
    assert (
        page.locator("#synthetic-banner").is_visible() and page.locator(".bdx-legend").is_visible()
    )
    assert "24 tissue tiles" in page.inner_text("#map-answer")
    shots(page, "map-result-desktop")
    region = page.locator(".bdx-region").first
    region.focus()
    page.keyboard.press("Enter")  # the keyboard flies the viewer to the region
    assert page.get_attribute("#map-viewer", "data-focused-region") == "1"
    page.locator("#refer-tiles button.fly-to").first.click()  # a tile to refer, flown to
    assert page.get_attribute("#map-viewer", "data-focused-box") == "0,0"
    page.click("label[for=map-viewer-overlay]")
    assert page.get_attribute("#map-viewer", "data-overlay") == "off"
    shots(page, "map-region-1-overlay-off-desktop")
    page.reload()  # bookmarkable: the same result again
    page.wait_for_selector("#map-viewer[data-ready=true]")
    assert "24 tissue tiles" in page.inner_text("#map-answer")
    # A portrait on the map page is refused as a whole, with a link back to the map page.
    page.goto(url + "/map")
    page.set_input_files("#map-file", str(files / "portrait.png"))
    with page.expect_navigation():
        page.click("#map-submit")
    assert "as a whole it is not an H&E patch of breast tissue" in page.inner_text("#error-message")
    assert page.get_attribute("#back-link", "href") == "/map"
    shots(page, "map-refused-desktop")
    # Ultrasound frames (RGB and grey) are not assessed as wholes, not cut into tiles.
    for name, words in (
        ("ultrasound.png", "colours and texture are unlike the training images"),
        ("ultrasound-grey.png", "the image is grayscale"),
    ):
        page.goto(url + "/map")
        page.set_input_files("#map-file", str(files / name))
        message = refused_page(page, "#map-submit", 422, "/map")
        assert message.startswith(
            f"{name}: not assessed: as a whole it is not an H&E patch of breast tissue"
        ), message
        assert words in message and page.inner_text("h1") == "Not assessed"
        shots(page, f"map-{name[:-4]}-desktop")
    # A stride too small for the image: refused before any work, with the stride that fits.
    page.goto(url + "/map")
    page.set_input_files("#map-file", str(files / "tissue.png"))
    page.fill("#stride", "1")
    assert refused_page(page, "#map-submit", 413, "/map") == (
        "tissue.png: a stride of 1 px cuts this 300 x 200 image into 37,901 tiles; at most "
        "16,384 are examined per image (4,096 of them classified): use a stride of at least 2 px"
    )
    shots(page, "map-stride-refused-desktop")
    # A patient's mosaic: sensitivity and specificity with their n.
    page.goto(url + "/mosaic")
    page.set_input_files("#mosaic-file", str(files / "777.zip"))
    with page.expect_navigation():
        page.click("#mosaic-submit")
    mosaic_url = page.url
    page.wait_for_selector("#mosaic-viewer[data-ready=true]")
    rates = page.locator("#mosaic-rates .rate-value").all_inner_texts()
    assert rates == ["83 % (5 of 6)", "100 % (6 of 6)"]
    assert "1 file not named like an IDC patch" in page.inner_text("#skipped")
    shots(page, "mosaic-result-desktop")
    # A zip of unreadable patches: the real count refused, not the 20 the answer names.
    page.goto(url + "/mosaic")
    page.set_input_files("#mosaic-file", str(files / "unreadable.zip"))
    message = refused_page(page, "#mosaic-submit", 400, "/mosaic")
    assert message.startswith(
        "unreadable.zip: no readable patch: 25 refused ("
    ) and message.endswith("; and 22 more)"), message
    shots(page, "mosaic-refused-desktop")
    page.goto(url + "/versions")
    assert (
        page.locator("#synthetic-banner").is_visible() and page.locator(".synthetic").count() == 1
    )
    shots(page, "versions-desktop")
    page.goto(url + "/map")
    shots(page, "whole-images-desktop")
    print(f"desktop pages: {time.perf_counter() - started:.1f} s")
    return {"map": map_url, "mosaic": mosaic_url}


def _phone(page, url, files, shots, result_pages):
    page.goto(url + "/")
    no_overflow(page, "home")
    assert (
        page.locator(".navbar-toggler").is_visible() and not page.locator("#main-nav").is_visible()
    )
    shots(page, "home-phone")
    page.focus(".navbar-toggler")  # the menu opens from the keyboard
    page.keyboard.press("Enter")
    page.wait_for_selector("#main-nav.show")
    assert page.get_attribute(".navbar-toggler", "aria-expanded") == "true"
    assert page.locator("#main-nav a[href='/versions']").is_visible()
    shots(page, "home-phone-menu-open")
    page.set_input_files(
        "#file-input", [str(files / n) for n in ("red.png", "pink.png", "notes.png")]
    )
    with page.expect_navigation():
        page.click("#submit-button")
    no_overflow(page, "results")
    shots(page, "results-phone")
    for name, address in (
        ("map-result", result_pages["map"]),
        ("mosaic-result", result_pages["mosaic"]),
        ("whole-images", url + "/map"),
        ("versions", url + "/versions"),
    ):
        page.goto(address)
        if name.endswith("result"):
            page.wait_for_selector(".bdx-viewer[data-ready=true]")
        no_overflow(page, name)
        shots(page, f"{name}-phone")
    # The versions table scrolls in its own box, not the page; its cells are never cut mid-word.
    box = page.locator("#versions-scroll")
    assert box.evaluate("e => e.clientWidth") <= PHONE["width"] < box.evaluate("e => e.scrollWidth")
    lines = (
        page.locator("#versions td")
        .nth(1)
        .evaluate(
            "e => { const r = document.createRange(); r.selectNodeContents(e); "
            "return r.getClientRects().length; }"
        )
    )
    assert lines == 1
    page.goto(url + "/map/" + "0" * 32)
    no_overflow(page, "error")
    shots(page, "error-phone")
