"""A real browser (Debian's chromium via Playwright, as tests/test_webapp_browser.py) opens a
slide of real tissue (48 patches of one patient, tests/data/idc-8917, at their x/y) from the
slides folder in the deep-zoom viewer, maps it through the live model server
(its card says synthetic data: the banner on both pages; the busy button while mapping; the
rule beside the map), toggles the overlay and flies to a region with the keyboard, and reads
the page at phone width. Screenshots at desktop and phone widths go to $BREASTDX_SCREENSHOTS (else the
test's temporary folder) for a person to look at. Marked e2e: it needs /usr/bin/chromium."""

import json
import os

import numpy as np
import pytest

from breastdx_core import contract
from pipeline import synthetic_slide

pytest_plugins = ["conftest_serving"]

from serving_helpers import LiveServer, add_version  # noqa: E402
from test_slides_web import REAL_PATCHES  # noqa: E402
from test_webapp_browser import (  # noqa: E402
    CHROMIUM,
    CHROMIUM_ARGS,
    OVERFLOW,
    PAGE_TIMEOUT_MS,
    UNLABELLED,
)

DESKTOP = {"width": 1280, "height": 900}
PHONE = {"width": 390, "height": 844}
VIEWER = "slide-viewer"
_VIEWER_JS = f"window.breastdxViewers['{VIEWER}']"
_VIEWPORT = f"{_VIEWER_JS}.viewport"
# OpenSeadragon's springs are at their targets: no zoom or pan animation in flight.
_SETTLED = (
    f"{_VIEWPORT}.getZoom(true) === {_VIEWPORT}.getZoom()"
    f" && {_VIEWPORT}.getCenter(true).equals({_VIEWPORT}.getCenter())"
)


@pytest.fixture
def live_slides_web(web_app_factory, tiny_model_dir, tmp_path):
    """The web app with a slides folder, over a model server whose card holds the decision
    rule and says the model was trained on synthetic data (the banner every page must show)."""
    from serving.server import create_app

    folder = tmp_path / "slides"
    folder.mkdir()
    synthetic_slide.patient_slide(str(folder / "patient.svs"), REAL_PATCHES, mpp=1.0)
    synthetic_slide.write_plain_tiff(
        str(folder / "bare.tif"), np.full((600, 600, 3), 200, np.uint8)
    )
    root = tmp_path / "serving"
    card_path = os.path.join(add_version(root, 1, tiny_model_dir), contract.MODEL_CARD_RELPATH)
    with open(card_path, encoding="utf-8") as handle:
        card = json.load(handle)
    card["evaluation"]["synthetic_data"] = True  # as the demo's cards
    with open(card_path, "w", encoding="utf-8") as handle:
        json.dump(card, handle)
    server_app = create_app(str(root), start=False)
    server_app.extensions["model_store"].poll()
    server = LiveServer(server_app)
    web = LiveServer(web_app_factory(SERVER_URL=server.url, SLIDES_DIR=str(folder)))
    yield web
    web.close()
    server.close()
    server_app.extensions["model_store"].stop()


def _items(page) -> int:
    return page.evaluate(f"window.breastdxViewers['{VIEWER}'].world.getItemCount()")


def _overlay_opacity(page) -> float:
    return page.evaluate(f"window.breastdxViewers['{VIEWER}'].world.getItemAt(1).getOpacity()")


def _zoom(page) -> float:
    return page.evaluate(f"window.breastdxViewers['{VIEWER}'].viewport.getZoom(true)")


@pytest.mark.e2e
def test_browser_views_maps_and_navigates_a_slide(live_slides_web, tmp_path):
    from playwright import sync_api as playwright_api

    assert os.path.exists(CHROMIUM), (
        f"{CHROMIUM} is missing: apt-get install -y chromium (make test does it)"
    )
    shots = os.environ.get("BREASTDX_SCREENSHOTS") or str(tmp_path / "screenshots")
    os.makedirs(shots, exist_ok=True)
    with playwright_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport=DESKTOP)
            page.set_default_timeout(PAGE_TIMEOUT_MS)
            errors = []
            page.on("pageerror", lambda err: errors.append(str(err)))
            page.goto(live_slides_web.url + "/slides")
            page.screenshot(path=os.path.join(shots, "slides-list-desktop.png"), full_page=True)
            # No resolution metadata: the page asks for it in a labelled field, then opens.
            page.click("text=bare.tif")
            assert "--mpp" in page.inner_text("#slide-problem")
            page.fill("#mpp-input", "4")
            page.keyboard.press("Enter")
            page.wait_for_selector(f"#{VIEWER}[data-ready='true']")
            assert "4 µm/px (given)" in page.inner_text("#slide-info")
            page.goto(live_slides_web.url + "/slides")
            page.click("text=patient.svs")
            page.wait_for_selector(f"#{VIEWER}[data-ready='true']")
            page.wait_for_function(
                f"window.breastdxViewers['{VIEWER}'].world.getItemAt(0).getFullyLoaded()"
            )
            assert page.locator("#synthetic-banner").is_visible()
            assert page.locator(f"text={contract.RESEARCH_ONLY}").count() == 1
            page.screenshot(path=os.path.join(shots, "slide-desktop.png"))

            # Long work: the button is disabled and a spinner counts the seconds (held back).
            page.evaluate(
                "document.getElementById('map-form')"
                ".addEventListener('submit', e => e.preventDefault())"
            )
            page.click("#map-button")
            assert page.is_disabled("#map-button")
            assert "Mapping the slide" in page.inner_text("#map-form .busy")
            page.reload()
            page.wait_for_selector(f"#{VIEWER}[data-ready='true']")
            page.click("#map-button")
            page.wait_for_url("**/maps/**")
            page.wait_for_selector(f"#{VIEWER}[data-ready='true']")
            page.wait_for_function(f"window.breastdxViewers['{VIEWER}'].world.getItemCount() === 3")
            page.wait_for_function(
                f"window.breastdxViewers['{VIEWER}'].world.getItemAt(0).getFullyLoaded()"
            )
            assert page.inner_text("#research-only") == contract.RESEARCH_ONLY
            assert page.title() == "patient.svs · map · BreastDx"
            assert page.evaluate(UNLABELLED) == []
            assert page.inner_text("#main-nav a[aria-current='page']").strip() == "Slides"
            counts = {
                name: int(page.inner_text(f"#tile-counts .count-{name}"))
                for name in ("assessed", "uncertain", "flagged", "background")
            }
            assert counts["assessed"] > 0 and counts["flagged"] == 0, counts
            assert (
                page.get_attribute(f"#{VIEWER}", "data-overlay") == "on"
                and _overlay_opacity(page) > 0.3
            )
            assert page.is_visible(f"#{VIEWER} .bdx-legend")
            assert page.locator("#synthetic-banner").is_visible()
            assert "pathologist" in page.inner_text("#rule-explained")
            assert page.locator(f"text={contract.RESEARCH_ONLY}").count() == 1
            page.screenshot(path=os.path.join(shots, "slide-map-desktop.png"), full_page=True)

            # The keyboard alone: the overlay switch, then a region link that flies to its region.
            page.focus(f"#{VIEWER}-overlay")
            page.keyboard.press("Space")
            assert (
                page.get_attribute(f"#{VIEWER}", "data-overlay") == "off"
                and _overlay_opacity(page) == 0
            )
            page.keyboard.press("Space")
            assert page.get_attribute(f"#{VIEWER}", "data-overlay") == "on"
            home = _zoom(page)
            page.focus(f"#{VIEWER} .bdx-region >> nth=0")
            page.keyboard.press("Enter")
            page.wait_for_selector(f"#{VIEWER}[data-focused-region='1']")
            # The flight ends first: while it zooms about its reference point the centre still
            # moves towards the region (leftwards for this slide's first region), so a centre
            # read mid-flight can lie right of where a finished flight plus a pan ends.
            page.wait_for_function(f"{_VIEWPORT}.getZoom(true) > {home * 2} && {_SETTLED}")
            assert page.evaluate(f"document.activeElement === {_VIEWER_JS}.canvas")
            centre = page.evaluate(f"{_VIEWPORT}.getCenter(true).x")
            page.keyboard.press("ArrowRight")  # the viewer has the focus: arrows pan it
            page.wait_for_function(
                f"window.breastdxViewers['{VIEWER}'].viewport.getCenter(true).x > {centre} + 1e-6"
            )
            page.wait_for_function(
                f"window.breastdxViewers['{VIEWER}'].world.getItemAt(0).getFullyLoaded()"
            )
            page.screenshot(path=os.path.join(shots, "slide-region-desktop.png"))
            assert not errors, errors

            phone = browser.new_page(viewport=PHONE)
            phone.set_default_timeout(PAGE_TIMEOUT_MS)
            phone.goto(page.url)
            phone.wait_for_selector(f"#{VIEWER}[data-ready='true']")
            phone.wait_for_function(
                f"window.breastdxViewers['{VIEWER}'].world.getItemCount() === 3"
            )
            phone.wait_for_function(
                f"window.breastdxViewers['{VIEWER}'].world.getItemAt(0).getFullyLoaded()"
            )
            box = phone.locator(f"#{VIEWER} .bdx-viewer-canvas").bounding_box()
            assert box["x"] >= 0 and box["x"] + box["width"] <= PHONE["width"]
            assert phone.locator("#tile-counts").bounding_box()["width"] <= PHONE["width"]
            assert phone.evaluate(OVERFLOW) <= 0, "the slide's map page is wider than a phone"
            phone.screenshot(path=os.path.join(shots, "slide-map-phone.png"), full_page=True)
            for name, address in (("slides-list", "/slides"), ("slide", "/slides/patient.svs")):
                phone.goto(live_slides_web.url + address)
                if name == "slide":
                    phone.wait_for_selector(f"#{VIEWER}[data-ready='true']")
                assert phone.evaluate(OVERFLOW) <= 0, f"{name} is wider than a phone"
                phone.screenshot(path=os.path.join(shots, f"{name}-phone.png"), full_page=True)
        finally:
            browser.close()
    assert sorted(n for n in os.listdir(shots) if n.startswith("slide")) == [
        "slide-desktop.png",
        "slide-map-desktop.png",
        "slide-map-phone.png",
        "slide-phone.png",
        "slide-region-desktop.png",
        "slides-list-desktop.png",
        "slides-list-phone.png",
    ]
