"""Slides through the live model server (the tiny model of tests/serving_helpers.py): the web
app's slide pages, DeepZoom tiles, map pages and downloads, the JSON API, and
``breastdx predict SLIDE --map-dir``. The slide is real tissue: 48 IDC patches of one
patient (tests/data/idc-8917, Kaggle IDC, CC0) at their file names' x/y, written as an
Aperio SVS by pipeline/synthetic_slide.py and read with OpenSlide."""

import argparse
import io
import json
import os

import numpy as np
import pytest
from PIL import Image

from breastdx_core import contract
from pipeline import synthetic_slide

pytest_plugins = ["conftest_serving"]

from serving_helpers import MODEL_NAME  # noqa: E402

# One real patient's patches, 24 labelled IDC and 24 not, in the Kaggle layout.
REAL_PATCHES = os.path.join(os.path.dirname(__file__), "data", "idc-8917")


@pytest.fixture(scope="module")
def slides_dir(tmp_path_factory):
    root = tmp_path_factory.mktemp("slides_dir")
    synthetic_slide.patient_slide(str(root / "patient.svs"), REAL_PATCHES, mpp=1.0)
    synthetic_slide.write_plain_tiff(str(root / "bare.tif"), np.full((600, 600, 3), 200, np.uint8))
    (root / "readme.txt").write_text("not listed\n")
    return root


@pytest.fixture
def client(web_app_factory, live_model_server, slides_dir):
    return web_app_factory(
        SERVER_URL=live_model_server.url, SLIDES_DIR=str(slides_dir)
    ).test_client()


def test_slide_pages_tiles_and_map(client):
    listing = client.get("/slides")
    assert listing.status_code == 200
    text = listing.get_data(as_text=True)
    width = client.get("/api/slides").get_json()["slides"][1]["width"]
    assert "patient.svs" in text and f"{width:,} &times;" in text  # its size in the listing
    assert "bare.tif" in text and "--mpp" in text and "readme.txt" not in text
    page = client.get("/slides/patient.svs")
    assert page.status_code == 200
    html = page.get_data(as_text=True)
    assert 'class="bdx-viewer"' in html and "/slide-tiles/patient.svs.dzi" in html
    assert "openseadragon/openseadragon.min.js" in html
    dzi = client.get("/slide-tiles/patient.svs.dzi")
    assert dzi.status_code == 200 and b"<Image" in dzi.data and b'Format="jpeg"' in dzi.data
    tile = client.get("/slide-tiles/patient.svs_files/8/0_0.jpeg")
    assert tile.status_code == 200 and tile.mimetype == "image/jpeg"
    assert Image.open(io.BytesIO(tile.data)).format == "JPEG"
    assert client.get("/slide-tiles/patient.svs_files/99/0_0.jpeg").status_code == 404
    assert client.get("/static/openseadragon/openseadragon.min.js").status_code == 200

    mapped = client.post("/slides/patient.svs/map")
    assert mapped.status_code == 303
    location = mapped.headers["Location"]
    assert location.startswith("/slides/patient.svs/maps/")
    result = client.get(location)
    assert result.status_code == 200
    html = result.get_data(as_text=True)
    assert contract.RESEARCH_ONLY in html and 'id="tile-counts"' in html and "bdx-region" in html
    assert client.get(location).status_code == 200  # the page reloads: bookmarkable
    overlay = client.get(location + "/overlay.png")
    assert overlay.mimetype == "image/png" and Image.open(io.BytesIO(overlay.data)).mode == "RGBA"
    regions = client.get(location + "/regions.geojson")
    collection = json.loads(regions.data)
    assert collection["type"] == "FeatureCollection" and collection["features"]
    body = json.loads(client.get(location + "/map.json").data)
    counts = body["counts"]
    assert (
        counts["assessed"] + counts["uncertain"] + counts["flagged"] + counts["background"]
        == counts["tiles"]
    )
    # The tissue mask finds each of the 48 real patches, and nothing of the glass around them.
    assert counts["assessed"] + counts["uncertain"] + counts["flagged"] == 48
    assert body["model_name"] == MODEL_NAME and body["model_version"] == "1"
    assert f'count-assessed">{counts["assessed"]}<' in html


def test_slide_refusals(client, web_app_factory, live_model_server):
    for path in (
        "/slides/nope.svs",
        "/slides/readme.txt",
        "/slides/..%2Fpatient.svs",
        "/slide-tiles/nope.svs.dzi",
    ):
        assert client.get(path).status_code == 404, path
    # A slide without resolution metadata: the page asks for it, and opens with it.
    page = client.get("/slides/bare.tif").get_data(as_text=True)
    assert 'id="mpp-input"' in page and "--mpp" in page
    assert 'class="bdx-viewer"' in client.get("/slides/bare.tif?mpp=4").get_data(as_text=True)
    refused = client.post("/api/slides/bare.tif/map")
    assert refused.status_code == 400 and "--mpp" in refused.get_json()["error"]
    bad = client.post("/api/slides/bare.tif/map", data={"mpp": "fast"})
    assert bad.status_code == 400 and "must be a number" in bad.get_json()["error"]
    limited = web_app_factory(
        SERVER_URL=live_model_server.url,
        SLIDES_DIR=client.application.config["SLIDES_DIR"],
        MAX_SLIDE_TILES=5,
    ).test_client()
    too_many = limited.post("/api/slides/patient.svs/map")
    assert too_many.status_code == 413 and "at most 5" in too_many.get_json()["error"]
    # The page's form: the same refusal on an error page that links back to the slides.
    page = limited.post("/slides/patient.svs/map")
    html = page.get_data(as_text=True)
    assert page.status_code == 413 and "at most 5" in html and 'href="/slides"' in html
    # Too large to open: refused on the slide's page, which does not ask for a resolution.
    large = web_app_factory(
        SERVER_URL=live_model_server.url,
        SLIDES_DIR=client.application.config["SLIDES_DIR"],
        MAX_SLIDE_PIXELS=1000 * 1000,
    ).test_client()
    page = large.get("/slides/patient.svs")
    html = page.get_data(as_text=True)
    assert page.status_code == 413 and "larger than the limit of 1,000,000 pixels" in html
    assert 'id="mpp-input"' not in html and 'id="back-link" href="/slides"' in html
    missing = client.get("/slides/nope.svs").get_data(as_text=True)
    assert "no slide named &#39;nope.svs&#39;" in missing and 'href="/slides"' in missing
    unset = web_app_factory(SERVER_URL=live_model_server.url).test_client()
    assert "SLIDES_DIR" in unset.get("/slides").get_data(as_text=True)
    assert unset.get("/api/slides").status_code == 404


def test_api_maps_a_slide(client):
    listed = client.get("/api/slides").get_json()
    assert [s["name"] for s in listed["slides"]] == ["bare.tif", "patient.svs"]
    assert listed["slides"][1]["mpp"] == 1.0
    body = client.post("/api/slides/patient.svs/map", data={"grid": "1"}).get_json()
    assert body["level"] == {
        "level": 1,
        "level_mpp": 4.0,
        "target_mpp": 4.0,
        "tile_l0_px": 200.0,
        "tile_level_px": 50.0,
        "resample": False,
    }
    assert len(body["grid"]) == body["rows"] and body["links"]["geojson"].endswith(
        "regions.geojson"
    )
    assert body["research_only"] == contract.RESEARCH_ONLY


def test_predict_cli_maps_a_slide(live_model_server, slides_dir, tmp_path, capsys):
    from breastdx_cli import predict

    def run(*paths, mpp=None):
        args = argparse.Namespace(
            images=[str(slides_dir / p) for p in paths],
            saved_model=None,
            server=live_model_server.url,
            model=MODEL_NAME,
            version=None,
            map_dir=str(tmp_path),
            stride=0,
            mosaic=None,
            json=False,
            mpp=mpp,
        )
        out = io.StringIO()
        return predict.run_predict(args, out=out), out.getvalue()

    (tmp_path / "notes.svs").write_text("not a slide\n")
    code, text = run("patient.svs")
    assert code == 0, text
    assert "patient.svs: map " in text and contract.RESEARCH_ONLY in text
    assert Image.open(tmp_path / "patient.map.png").format == "PNG"
    geo = json.loads((tmp_path / "patient.geojson").read_text())
    assert geo["type"] == "FeatureCollection"
    body = json.loads((tmp_path / "patient.map.json").read_text())
    assert body["slide"]["name"] == "patient.svs" and body["rows"] == len(body["grid"])
    code, text = run("bare.tif")
    assert code == 2 and "bare.tif: refused:" in text and "--mpp" in text
    code, text = run("bare.tif", mpp=4.0)
    assert code == 0 and "bare.tif: map" in text
    code, text = run(str(tmp_path / "notes.svs"))  # an absolute path: not under slides_dir
    assert code == 2 and "notes.svs: refused: not a whole-slide image" in text
    side = 250_001  # one past the default limit's side, tiles absent: a few kB
    huge = synthetic_slide.write_sparse_tiff(str(tmp_path / "huge.tif"), side, side)
    code, text = run(huge, mpp=0.25)
    assert code == 2 and "huge.tif: refused: 250,001 x 250,001 pixels is larger" in text
    assert [line for line in text.splitlines() if "refused" in line] == [
        f"{huge}: refused: 250,001 x 250,001 pixels is larger than the limit of "
        "62,500,000,000 pixels at level 0"
    ]
