"""Whole images and patient mosaics through the web app and the live model server (tiny model:
the redder a tile, the more IDC-positive), and hostile zip uploads: always a 4xx with the
reason, never a 500, never a file written."""

import base64
import builtins
import io
import re
import tempfile
import zipfile

import numpy as np
import pytest
from PIL import Image

from breastdx_core import contract
from webapp import mosaic, tiling

pytest_plugins = ["conftest_serving"]

from serving_helpers import BLUE, MODEL_NAME, RED  # noqa: E402
from webapp_helpers import unreadable_patch_zip  # noqa: E402

PATCH = contract.IDC_PATCH[0]
GLASS = (240, 240, 238)


@pytest.fixture
def web(web_app_factory, live_model_server):
    return web_app_factory(SERVER_URL=live_model_server.url)


@pytest.fixture
def client(web):
    return web.test_client()


def slide_png(width=400, height=300) -> bytes:
    """Glass on the left third, a red (positive) block top right, blue (negative) below it."""
    pixels = np.zeros((height, width, 3), np.uint8)
    pixels[:] = GLASS
    pixels[:150, 150:] = RED
    pixels[150:, 150:] = BLUE
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="PNG")
    return buffer.getvalue()


def post(client, path, field, name, content, **fields):
    return client.post(
        path,
        data={field: (io.BytesIO(content), name), **fields},
        content_type="multipart/form-data",
    )


def test_map_api_skips_glass_and_finds_the_red_block(client):
    response = post(client, "/api/map", "file", "slide.png", slide_png(), picture="1")
    assert response.status_code == 200, response.json
    body = response.json
    assert body["research_only"] == contract.RESEARCH_ONLY
    assert (body["patch"], body["stride"], body["rows"], body["cols"]) == (PATCH, PATCH, 6, 8)
    grid = body["grid"]
    assert all(grid[r][c] is None for r in range(6) for c in range(3))  # x < 150: glass, never sent
    assert all(grid[r][c] > 0.9 for r in range(3) for c in range(3, 8))  # red
    assert all(grid[r][c] < 0.1 for r in range(3, 6) for c in range(3, 8))  # blue
    assert body["counts"] == {
        "tiles": 48,
        "background": 18,
        "assessed": 30,
        "uncertain": 0,
        "flagged": 0,
        "positive": 15,
    }
    top = body["top_regions"][0]
    assert top["y"] < 150 and top["x"] >= 150 and top["positive"]
    assert body["model_name"] == MODEL_NAME and body["model_version"] == "1"
    picture = Image.open(io.BytesIO(base64.b64decode(body["map_png"].split(",", 1)[1])))
    # The legend under the map, padded to its minimum width; the map's own pixels unchanged.
    assert picture.size == (max(400, tiling.LEGEND_MIN_WIDTH), 300 + tiling.LEGEND_HEIGHT)


def test_map_stride_overlaps_and_covers_the_far_edge(client):
    body = post(client, "/api/map", "file", "slide.png", slide_png(410, 300), stride="25").json
    assert (body["stride"], body["cols"]) == (
        25,
        16,
    )  # 0, 25, ... 350, then 360 flush with the edge


def test_map_refuses_too_many_tiles_and_small_images(web_app_factory, live_model_server):
    # 48 tiles in the grid, 30 of them tissue: past 4 x MAX_TILES the stride is refused before
    # any pixel is decoded, with the stride that fits; past MAX_TILES tissue tiles, after the mask.
    small = web_app_factory(SERVER_URL=live_model_server.url, MAX_TILES=10).test_client()
    response = post(small, "/api/map", "file", "slide.png", slide_png())
    assert response.status_code == 413
    assert response.json["error"] == (
        "slide.png: a stride of 50 px cuts this 400 x 300 image into 48 tiles; at most "
        "40 are examined per image (10 of them classified): use a stride of at least "
        "63 px"
    )
    assert tiling.grid_tiles(400, 300, PATCH, 63) <= 40 < tiling.grid_tiles(400, 300, PATCH, 62)
    response = post(
        web_app_factory(SERVER_URL=live_model_server.url, MAX_TILES=12).test_client(),
        "/api/map",
        "file",
        "slide.png",
        slide_png(),
    )
    assert (
        response.status_code == 413 and "need 30 tissue tiles; at most 12" in response.json["error"]
    )
    client = small
    tiny = io.BytesIO()
    Image.new("RGB", (30, 30), RED).save(tiny, format="PNG")
    response = post(client, "/api/map", "file", "tiny.png", tiny.getvalue())
    assert (
        response.status_code == 400 and "smaller than one 50 x 50 patch" in response.json["error"]
    )
    response = post(client, "/api/map", "file", "slide.png", slide_png(), stride="abc")
    assert response.status_code == 400 and "stride" in response.json["error"]


@pytest.fixture
def stored(web_app_factory, live_model_server, tmp_path):
    """A web app whose results store is a temporary folder, and its test client."""
    app = web_app_factory(SERVER_URL=live_model_server.url, RESULTS_DIR=str(tmp_path / "results"))
    return app, app.test_client()


def test_map_page_lands_on_a_bookmarkable_result_with_viewer_legend_and_exports(stored, tmp_path):
    _, client = stored
    response = post(client, "/map", "file", "slide.png", slide_png())
    assert response.status_code == 303
    address = response.headers["Location"]
    assert address.startswith("/map/") and len(address) == len("/map/") + 32
    for _ in range(2):  # a reload (or a bookmark) shows the same result
        page = client.get(address)
        html = page.get_data(as_text=True)
        assert page.status_code == 200
        assert html.count(contract.RESEARCH_ONLY) == 1 and 'class="count-positive">15<' in html
        assert "15 of 30 tissue tiles IDC-positive" in html
        assert 'id="map-viewer"' in html and "openseadragon.min.js" in html
        regions = re.findall(r'<button type="button" class="[^"]*\bbdx-region\b[^"]*"', html)
        assert len(regions) == 5  # top regions fly the viewer
        assert 'id="export-png"' in html and 'id="export-json"' in html
    exported = client.get(address + "/result.json")
    assert exported.status_code == 200 and exported.json["counts"]["positive"] == 15
    assert "attachment" in exported.headers["Content-Disposition"]
    picture = Image.open(io.BytesIO(client.get(address + "/picture.png?download=1").data))
    assert picture.size == (tiling.LEGEND_MIN_WIDTH, 300 + tiling.LEGEND_HEIGHT)  # with its legend
    assert tiling.LEGEND_FONT_PX >= 14  # text a person reads, not Pillow's 9-pixel bitmap font
    for layer, mode in (("image", "RGB"), ("overlay", "RGBA"), ("marks", "RGBA")):
        got = client.get(f"{address}/{layer}.png")
        assert got.status_code == 200 and got.mimetype == "image/png"
        assert Image.open(io.BytesIO(got.data)).mode == mode
    overlay = np.asarray(Image.open(io.BytesIO(client.get(address + "/overlay.png").data)))
    assert (
        overlay[10, 10, 3] == 0 and overlay[10, 300, 3] == 255
    )  # glass transparent, tissue coloured
    assert tuple(overlay[10, 300, :3]) == tiling.colour_of(
        overlay_probability(exported.json, 10, 300)
    )
    assert sorted(p.name.split(".", 1)[1] for p in (tmp_path / "results").iterdir()) == [
        "image.png",
        "json",
        "marks.png",
        "overlay.png",
        "picture.png",
    ]


def overlay_probability(body, y, x):
    return body["grid"][y // body["stride"]][x // body["stride"]]


def test_result_pages_404_with_a_link_back_and_the_forms_answer_get(stored):
    _, client = stored
    for path, back in (("/map/" + "0" * 32, "/map"), ("/mosaic/nonsense", "/mosaic")):
        page = client.get(path)
        html = page.get_data(as_text=True)
        assert page.status_code == 404 and f'id="back-link" href="{back}"' in html
    for path in ("/map", "/mosaic"):  # reloading a form's address is never a 405
        page = client.get(path)
        assert page.status_code == 200 and 'id="mosaic-form"' in page.get_data(as_text=True)
    page = post(client, "/map", "file", "notes.png", b"hello")
    assert page.status_code == 400 and 'id="back-link" href="/map"' in page.get_data(as_text=True)


def test_the_results_store_keeps_the_newest_only(web_app_factory, live_model_server, tmp_path):
    client = web_app_factory(
        SERVER_URL=live_model_server.url, RESULTS_DIR=str(tmp_path / "results"), RESULTS_MAX_COUNT=2
    ).test_client()
    addresses = [
        post(client, "/map", "file", "slide.png", slide_png()).headers["Location"] for _ in range(3)
    ]
    assert [client.get(a).status_code for a in addresses] == [404, 200, 200]
    assert len(list((tmp_path / "results").iterdir())) == 2 * 5


def test_map_refers_uncertain_tiles_and_marks_them(stored):
    """Purple tiles (P = 0.5) are uncertain under the card's conformal rule: listed, counted,
    and outlined dashed on the viewer's marks layer."""
    pixels = np.zeros((100, 200, 3), np.uint8)
    pixels[:, :100] = RED
    pixels[:, 100:] = (128, 40, 128)
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="PNG")
    _, client = stored
    address = post(client, "/map", "file", "half.png", buffer.getvalue()).headers["Location"]
    html = client.get(address).get_data(as_text=True)
    assert "4 of 8 tissue tiles IDC-positive; 4 to refer to a pathologist (uncertain)" in html
    assert html.count('data-viewer="map-viewer" data-x="1') == 4 and 'id="refer-tiles"' in html
    marks = np.asarray(Image.open(io.BytesIO(client.get(address + "/marks.png").data)))
    half = marks.shape[1] // 2  # drawn at tiling.MARKS_SIDE on the longer side: thin lines
    assert marks.shape[:2] == (tiling.MARKS_SIDE // 2, tiling.MARKS_SIDE)
    assert marks[:, : int(half * 0.95), 3].max() == 0  # nothing drawn over the assessed half
    assert (
        marks[0, half:, 3].max() == 255 and (marks[0, half:, :3] == 0).all(axis=-1).any()
    )  # black dashes


def patch_png(color, fmt="PNG") -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (PATCH, PATCH), color).save(buffer, format=fmt, lossless=True)
    return buffer.getvalue()


def patient_zip(places, patient="12345", folder="12345/") -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for x, y, label, color in places:
            archive.writestr(
                f"{folder}{label}/{patient}_idx5_x{x}_y{y}_class{label}.png", patch_png(color)
            )
        archive.writestr(f"{folder}README.txt", b"not a patch")
        archive.writestr(
            f"{folder}0/{patient}_idx5_x900_y900_class0.png", b""
        )  # left out, with its reason
    return buffer.getvalue()


PLACES = [(0, 0, 1, RED), (50, 0, 1, RED), (100, 0, 0, BLUE), (0, 50, 0, BLUE), (150, 100, 1, RED)]


def test_mosaic_api_places_patches_at_their_names_xy(client):
    response = post(client, "/api/mosaic", "archive", "12345.zip", patient_zip(PLACES), picture="1")
    assert response.status_code == 200, response.json
    body = response.json
    assert (body["patient"], body["width"], body["height"]) == ("12345", 200, 150)
    by_place = {(p["x"], p["y"]): p for p in body["patches"]}
    assert set(by_place) == {(x, y) for x, y, _, _ in PLACES}
    assert (
        by_place[(150, 100)]["positive_probability"] > 0.9
        and by_place[(100, 0)]["positive_probability"] < 0.1
    )
    assert body["counts"]["positive"] == 3 and body["counts"]["agree_with_label"] == 5
    assert body["skipped"] == {"not_an_idc_patch_name": 1, "refused_patch": 1}
    assert body["refused"] == ["12345_idx5_x900_y900_class0.png: the file is empty"]
    assert body["mosaic_png"].startswith("data:image/png;base64,")


def test_mosaic_reads_tiff_and_webp_patches_as_the_other_pages_do(client):
    """The same formats as the single-patch and map pages: a TIFF or WebP patch (an IDC name
    still ends .png) is read, not refused as "not an image"."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for x, fmt in ((0, "PNG"), (50, "TIFF"), (100, "WEBP")):
            archive.writestr(f"12345_idx5_x{x}_y0_class1.png", patch_png(RED, fmt))
    response = post(client, "/api/mosaic", "archive", "12345.zip", buffer.getvalue())
    assert response.status_code == 200, response.json
    assert len(response.json["patches"]) == 3 and response.json["refused"] == []


def test_mosaic_page_shows_sensitivity_and_specificity_with_n(stored):
    """The agreement count alone hides a model that calls nothing positive: the page shows
    each class's rate with its n and interval, and the skipped files in words."""
    _, client = stored
    places = PLACES + [
        (0, 100, 1, BLUE),
        (50, 100, 1, BLUE),
    ]  # two labelled IDC patches the model misses
    response = post(client, "/mosaic", "archive", "12345.zip", patient_zip(places))
    assert response.status_code == 303 and response.headers["Location"].startswith("/mosaic/")
    html = client.get(response.headers["Location"]).get_data(as_text=True)
    assert html.count(contract.RESEARCH_ONLY) == 1 and 'id="mosaic-viewer"' in html
    assert (
        "Sensitivity" in html
        and "60 % (3 of 5)" in html
        and "Specificity" in html
        and "100 % (2 of 2)" in html
    )
    assert "1 file not named like an IDC patch, 1 patch refused (unreadable or too large)" in html
    assert "not_an_idc_patch_name" not in html and "refused_patch" not in html
    body = client.get(response.headers["Location"] + "/result.json").json
    sensitivity = body["rates"][0]
    assert (sensitivity["hits"], sensitivity["n"]) == (3, 5)
    assert sensitivity["ci95"][0] < 0.6 < sensitivity["ci95"][1]


def test_wilson_interval():
    assert mosaic.wilson(0, 0) == (None, None)
    low, high = mosaic.wilson(0, 397)
    assert low == 0.0 and 0.005 < high < 0.01
    low, high = mosaic.wilson(5, 10)
    assert low == pytest.approx(0.2366, abs=1e-3) and high == pytest.approx(0.7634, abs=1e-3)


def _zip_with(name, content=b"x", symlink=False) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        info = zipfile.ZipInfo(name)
        if symlink:
            info.external_attr = 0o120777 << 16
        archive.writestr(info, content)
    return buffer.getvalue()


def _bomb() -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("1_idx5_x0_y0_class0.png", b"\0" * (64 * 1024 * 1024))
    return buffer.getvalue()


def _empty_zip() -> bytes:
    buffer = io.BytesIO()
    zipfile.ZipFile(buffer, "w").close()
    return buffer.getvalue()


HOSTILE = {
    "empty file": (b"", 400, "empty"),
    "not a zip": (patch_png(RED), 400, "not a readable zip"),
    "empty archive": (_empty_zip(), 400, "no files"),
    "parent path": (
        _zip_with("../1_idx5_x0_y0_class0.png", patch_png(RED)),
        400,
        "outside the archive",
    ),
    "absolute path": (
        _zip_with("/tmp/1_idx5_x0_y0_class0.png", patch_png(RED)),
        400,
        "absolute path",
    ),
    "symlink": (
        _zip_with("1_idx5_x0_y0_class0.png", b"/etc/passwd", symlink=True),
        400,
        "symbolic link",
    ),
    "zip bomb": (_bomb(), 413, "would expand 1,028-fold when unpacked"),
    "past the pixel limit": (
        _zip_with("1_idx5_x99999_y99999_class0.png", patch_png(RED)),
        413,
        "at most",
    ),
    "no patch names": (_zip_with("photo.png", patch_png(RED)), 400, "named like an IDC patch"),
    "not an image": (
        _zip_with("1_idx5_x0_y0_class0.png", b"hello"),
        400,
        "no readable patch: 1 refused",
    ),
    "many unreadable": (unreadable_patch_zip(25), 400, "no readable patch: 25 refused"),
}


@pytest.mark.parametrize("case", sorted(HOSTILE))
def test_hostile_zip_is_a_4xx_with_the_reason_and_writes_nothing(client, monkeypatch, case):
    content, status, words = HOSTILE[case]
    real_open = builtins.open

    def read_only_open(file, mode="r", *args, **kwargs):
        if any(flag in mode for flag in "wax+"):
            raise AssertionError(f"the request wrote {file}")
        return real_open(file, mode, *args, **kwargs)

    def no_temp(*args, **kwargs):
        raise AssertionError("the request made a temporary file")

    monkeypatch.setattr(builtins, "open", read_only_open)
    for name in (
        "TemporaryFile",
        "NamedTemporaryFile",
        "SpooledTemporaryFile",
        "mkstemp",
        "mkdtemp",
    ):
        monkeypatch.setattr(tempfile, name, no_temp)
    response = post(client, "/api/mosaic", "archive", "upload.zip", content)
    assert response.status_code == status, response.json
    # The zip's name first, as the other pages' refusals start with the file's.
    assert response.json["error"].startswith("upload.zip: ") and words in response.json["error"]


def test_two_patients_in_one_zip_is_refused(client):
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("a_idx5_x0_y0_class0.png", patch_png(RED))
        archive.writestr("b_idx5_x0_y0_class0.png", patch_png(RED))
    response = post(client, "/api/mosaic", "archive", "two.zip", buffer.getvalue())
    assert response.status_code == 400
    assert response.json["error"].startswith("two.zip: the patches belong to 2 patients")
    page = post(client, "/mosaic", "archive", "two.zip", buffer.getvalue())
    html = page.get_data(as_text=True)
    assert page.status_code == 400 and "two.zip: the patches belong to 2 patients" in html


def test_read_folder_walks_the_idc_layout(tmp_path):
    for x, y, label, color in PLACES:
        folder = tmp_path / "12345" / str(label)
        folder.mkdir(parents=True, exist_ok=True)
        (folder / f"12345_idx5_x{x}_y{y}_class{label}.png").write_bytes(patch_png(color))
    (tmp_path / "notes.txt").write_text("x")
    (tmp_path / "12345" / "0" / "12345_idx5_x300_y300_class0.png").write_bytes(b"")
    patches, skipped, refused = mosaic.read_folder(str(tmp_path))
    assert sorted((p.x, p.y, p.label) for p in patches) == sorted(
        (x, y, lab) for x, y, lab, _ in PLACES
    )
    assert skipped == {"not_an_idc_patch_name": 1, "refused_patch": 1}
    assert refused == ["12345_idx5_x300_y300_class0.png: the file is empty"]


def test_tissue_mask_counts_tinted_pixels_only():
    rgb = np.full((100, 100, 3), 245, np.uint8)
    rgb[:50, :50] = (200, 120, 170)  # pink: saturated
    fractions = tiling.tissue_fractions(rgb, [0, 50], [0, 50], 50)
    np.testing.assert_allclose(fractions, [[1.0, 0.0], [0.0, 0.0]])


def test_the_servers_decision_wins_over_the_probability():
    """Tiles the server answers "not assessed" are flagged, "uncertain" ones are not called
    positive, and an assessed tile is positive only when the server's class is the positive
    class, whatever the probability says (breastdx_core/decision.py's fields)."""
    from types import SimpleNamespace

    verdicts = iter(
        [
            {"status": "not_assessed", "reason": "the image is grayscale"},
            {"status": "uncertain", "text": "uncertain: refer to a pathologist"},
            {"status": "assessed", "class_name": "IDC-negative"},
            {"status": "assessed", "class_name": "IDC-positive"},
        ]
    )

    def predict(batch):
        return [
            SimpleNamespace(
                positive_probability=0.9,
                class_name="IDC-positive",
                model_version="7",
                decision=next(verdicts),
            )
            for _ in batch
        ]

    pixels = np.full((100, 100, 3), (200, 120, 170), np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="PNG")
    tile_map = tiling.map_image(
        buffer.getvalue(),
        predict,
        tiling.TileSettings(patch=PATCH, stride=PATCH, batch=1, workers=1),
        positive_class="IDC-positive",
        threshold=0.5,
    )
    assert [t.status for t in tile_map.tiles] == ["flagged", "uncertain", "assessed", "assessed"]
    assert [t.positive for t in tile_map.tiles] == [False, False, False, True]
    assert tile_map.counts() == {
        "tiles": 4,
        "background": 0,
        "assessed": 2,
        "uncertain": 1,
        "flagged": 1,
        "positive": 1,
    }
    assert tile_map.as_dict()["flagged"][0]["reason"] == "the image is grayscale"
    assert tile_map.grid() == [[None, 0.9], [0.9, 0.9]] and tile_map.model_version == "7"


@pytest.fixture
def contract_client(tmp_path, tiny_model_dir, web_app_factory):
    """The web app over a model server whose only version's card holds an input contract
    measured on H&E-like tissue and says the model was trained on synthetic data."""
    from serving_helpers import LiveServer
    from webapp_helpers import add_contract_version

    from serving.server import create_app

    root = tmp_path / "serving"
    add_contract_version(root, 1, tiny_model_dir)
    server_app = create_app(str(root), start=False)
    server_app.extensions["model_store"].poll()
    live = LiveServer(server_app)
    yield web_app_factory(SERVER_URL=live.url, RESULTS_DIR=str(tmp_path / "results")).test_client()
    live.close()
    server_app.extensions["model_store"].stop()


def test_whole_images_are_checked_as_wholes(contract_client):
    """The single-patch path refuses a photograph or an ultrasound frame; the map path must
    too, before any tile is sent: a portrait and an ultrasound (RGB or grayscale) are not
    assessed with the reason, while H&E-like tissue of the same size is mapped."""
    from webapp_helpers import encode, portrait, tissue, ultrasound

    body = post(
        contract_client, "/api/map", "file", "tissue.png", encode(tissue(200, 250, seed=99))
    ).json
    assert (
        body["counts"]["assessed"] + body["counts"]["uncertain"] == 20
        and body["counts"]["flagged"] == 0
    ), body["counts"]
    assert body["assessment"]["status"] == "assessed" and body["synthetic_data"] is True
    for name, content, words in (
        (
            "portrait.jpg",
            encode(portrait(), "JPEG"),
            "colours and texture are unlike the training images",
        ),
        (
            "ultrasound.png",
            encode(ultrasound()),
            "colours and texture are unlike the training images",
        ),
        ("ultrasound-grey.png", encode(ultrasound(), mode="L"), "the image is grayscale"),
    ):
        response = post(contract_client, "/api/map", "file", name, content)
        assert response.status_code == 422, (name, response.json)
        message = response.json["error"]
        assert message.startswith(
            f"{name}: not assessed: as a whole it is not an H&E patch of breast tissue"
        ), message
        assert words in message and "distance" not in message
    page = post(contract_client, "/map", "file", "portrait.jpg", encode(portrait(), "JPEG"))
    html = page.get_data(as_text=True)
    assert page.status_code == 422 and "not assessed: as a whole" in html and 'href="/map"' in html
    assert "<title>Not assessed · BreastDx</title>" in html


def test_map_result_of_a_synthetic_model_carries_the_banner(contract_client):
    from webapp_helpers import encode, tissue

    address = post(
        contract_client, "/map", "file", "tissue.png", encode(tissue(100, 150, seed=5))
    ).headers["Location"]
    html = contract_client.get(address).get_data(as_text=True)
    assert 'id="synthetic-banner"' in html and "SYNTHETIC images" in html
    for page in ("/", "/versions", "/map"):
        assert 'id="synthetic-banner"' in contract_client.get(page).get_data(as_text=True), page


def test_a_map_is_still_shown_where_the_results_store_cannot_be_written(
    web_app_factory, live_model_server, tmp_path
):
    """A read-only disk (the cluster's web pods): the page is shown at once, inline, and says
    it cannot be bookmarked, rather than failing."""
    blocked = tmp_path / "file-not-folder"
    blocked.write_text("x")
    client = web_app_factory(
        SERVER_URL=live_model_server.url, RESULTS_DIR=str(blocked / "results")
    ).test_client()
    page = post(client, "/map", "file", "slide.png", slide_png())
    html = page.get_data(as_text=True)
    assert page.status_code == 200 and 'id="not-kept"' in html and "15 of 30 tissue tiles" in html
    assert 'href="data:application/json;base64,' in html and "data:image/png;base64," in html
