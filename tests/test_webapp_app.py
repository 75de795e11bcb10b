"""The Flask app (webapp) through its test client: pages, JSON API, version pinning, CSRF, and
hostile uploads, which must all end in a 4xx with a message and never reach the model."""

import io
import os
import struct
import subprocess
import sys
import zlib

import pytest
from PIL import Image

from breastdx_core import contract

pytest_plugins = ["conftest_serving"]

from serving_helpers import BLUE, CLASS_NAMES, MODEL_NAME, PURPLE, RED, add_version, png_bytes  # noqa: E402

BOMB_SIDE = 20000


def upload(client, files, path="/api/predict", **fields):
    data = {"file": [(io.BytesIO(content), name) for name, content in files], **fields}
    return client.post(path, data=data, content_type="multipart/form-data")


def png_chunk(kind: bytes, payload: bytes) -> bytes:
    return (
        struct.pack(">I", len(payload))
        + kind
        + payload
        + struct.pack(">I", zlib.crc32(kind + payload))
    )


def png_bomb(side: int = BOMB_SIDE) -> bytes:
    """A valid PNG header declaring side x side RGB pixels, with a few compressed zero rows."""
    header = struct.pack(">IIBBBBB", side, side, 8, 2, 0, 0, 0)
    rows = zlib.compress(b"\x00" * (1 + 3 * side) * 4, 9)
    return (
        b"\x89PNG\r\n\x1a\n"
        + png_chunk(b"IHDR", header)
        + png_chunk(b"IDAT", rows)
        + png_chunk(b"IEND", b"")
    )


def noisy_png() -> bytes:
    buffer = io.BytesIO()
    Image.frombytes(
        "RGB", contract.IDC_PATCH, os.urandom(contract.IDC_PATCH[0] * contract.IDC_PATCH[1] * 3)
    ).save(buffer, format="PNG")
    return buffer.getvalue()


@pytest.fixture
def web(web_app_factory, live_model_server):
    return web_app_factory(SERVER_URL=live_model_server.url)


@pytest.fixture
def client(web):
    return web.test_client()


def test_api_predict_reports_every_fact(client):
    response = upload(
        client,
        [("red.png", png_bytes(RED)), ("purple.png", png_bytes(PURPLE)), ("blue.jpg", _jpeg(BLUE))],
    )
    assert response.status_code == 200
    body = response.json
    assert body["research_only"] == contract.RESEARCH_ONLY
    red, purple, blue = body["predictions"]
    assert (red["file"], red["class_name"], red["model_name"], red["model_version"]) == (
        "red.png",
        CLASS_NAMES[1],
        MODEL_NAME,
        "1",
    )
    assert red["probability"] > 0.9 and not red["uncertain"]
    assert purple["uncertain"] and purple["positive_probability"] == pytest.approx(0.5)
    assert purple["class_name"] is None and purple["prediction_set"] == list(CLASS_NAMES)
    assert purple["decision"]["text"] == "uncertain: refer to a pathologist"
    assert blue["class_name"] == CLASS_NAMES[0]
    assert set(red["probabilities"]) == set(CLASS_NAMES)
    assert len(red["heatmap"]) == contract.IDC_MODEL_SIZE[0]
    assert "overlay_png" not in red


def _jpeg(color) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", contract.IDC_PATCH, color).save(buffer, format="JPEG")
    return buffer.getvalue()


def test_api_overlay_is_a_png_data_uri(client):
    result = upload(client, [("red.png", png_bytes(RED))], overlay="1").json["predictions"][0]
    assert result["overlay_png"].startswith("data:image/png;base64,")


def test_upload_page_shows_the_answer_heatmap_and_research_line(client):
    page = client.get("/")
    assert page.status_code == 200 and contract.RESEARCH_ONLY.encode() in page.data
    response = upload(
        client, [("red.png", png_bytes(RED)), ("purple.png", png_bytes(PURPLE))], path="/"
    )
    html = response.get_data(as_text=True)
    assert response.status_code == 200
    assert html.count(contract.RESEARCH_ONLY) == 1  # once per page, not once per card
    assert f"{CLASS_NAMES[1]}, 0.99" in html
    assert "Uncertain: refer to a pathologist — both classes plausible at 95 %" in html
    assert "prediction set" not in html and "probability 0." not in html
    # The rule in plain words, beside the answers: the card's per-class levels.
    assert "kept 95 % of that class" in html and f"{CLASS_NAMES[1]} from 0.35" in html
    # Original and Grad-CAM overlay side by side for both images, labelled, with the legend.
    assert (
        html.count('class="img-fluid border original"') == 2
        and html.count("Grad-CAM overlay (toward") == 2
    )
    assert 'id="gradcam-legend"' in html
    assert f"Model {MODEL_NAME}, version" in html
    assert "<title>Results · BreastDx</title>" in html


def test_versions_page_lists_metrics_and_pins_a_version(
    client, live_model_server, serving_root, tiny_model_dir, server_app
):
    add_version(serving_root, 2, tiny_model_dir)
    server_app.extensions["model_store"].poll()
    html = client.get("/versions").get_data(as_text=True)
    assert "0.910" in html and 'data-version="2"' in html and 'data-version="1"' in html
    assert (
        upload(client, [("a.png", png_bytes(RED))]).json["predictions"][0]["model_version"] == "2"
    )
    response = client.post("/versions", data={"version": "1"})
    assert response.status_code == 302
    page = upload(client, [("a.png", png_bytes(RED))], path="/").get_data(as_text=True)
    assert '<span class="model-version">1</span>' in page
    client.post("/versions", data={"version": ""})
    page = upload(client, [("a.png", png_bytes(RED))], path="/").get_data(as_text=True)
    assert '<span class="model-version">2</span>' in page
    assert client.post("/versions", data={"version": "99"}).status_code == 400
    api = client.get("/api/versions").json
    assert [v["version"] for v in api["versions"]] == ["2", "1"]
    assert api["versions"][0]["metrics"]["auc"] == pytest.approx(0.91)


def test_api_version_field_picks_a_version(client):
    assert (
        upload(client, [("a.png", png_bytes(RED))], version="1").json["predictions"][0][
            "model_version"
        ]
        == "1"
    )
    response = upload(client, [("a.png", png_bytes(RED))], version="7")
    assert response.status_code == 404 and "error" in response.json
    assert upload(client, [("a.png", png_bytes(RED))], version="../1").status_code == 400


HOSTILE = {
    "empty": ("empty.png", b"", 400, "empty"),
    "text renamed .png": ("notes.png", b"just some text, not an image\n", 400, "not an image"),
    "truncated PNG": ("cut.png", None, 400, "not a readable"),
    "PNG bomb": ("bomb.png", None, 413, "pixels"),
    "path traversal name": ("../../etc/passwd.png", None, 400, "plain file name"),
    "PNG magic with a JPEG body": (
        "odd.png",
        b"\x89PNG\r\n\x1a\n" + b"\xff\xd8\xff" * 10,
        400,
        "not a readable",
    ),
}


@pytest.mark.parametrize("case", sorted(HOSTILE))
@pytest.mark.parametrize("path", ["/api/predict", "/"])
def test_hostile_uploads_get_a_4xx_with_a_message(client, case, path):
    name, content, status, words = HOSTILE[case]
    if content is None:
        content = {"truncated PNG": noisy_png()[:400], "PNG bomb": png_bomb()}.get(
            case, png_bytes(RED)
        )
    response = upload(client, [(name, content)], path=path)
    assert response.status_code == status
    text = response.get_data(as_text=True)
    assert words in text and "Traceback" not in text
    if path.startswith("/api"):
        assert set(response.json) == {"error"}


def test_no_file_and_too_many_files_are_400(web_app_factory, live_model_server):
    client = web_app_factory(SERVER_URL=live_model_server.url, MAX_FILES=2).test_client()
    assert (
        client.post("/api/predict", data={}, content_type="multipart/form-data").status_code == 400
    )
    response = upload(client, [(f"{i}.png", png_bytes(RED)) for i in range(3)])
    assert response.status_code == 400 and "at most 2" in response.json["error"]


def test_a_huge_body_is_413(web_app_factory, live_model_server):
    client = web_app_factory(
        SERVER_URL=live_model_server.url, MAX_CONTENT_LENGTH=64 * 1024
    ).test_client()
    response = upload(client, [("big.png", png_bytes(RED) + b"\x00" * 128 * 1024)])
    assert response.status_code == 413 and "error" in response.json
    page = upload(client, [("big.png", png_bytes(RED) + b"\x00" * 128 * 1024)], path="/")
    assert page.status_code == 413 and "Traceback" not in page.get_data(as_text=True)


def test_an_oversized_file_is_413(web_app_factory, live_model_server):
    client = web_app_factory(SERVER_URL=live_model_server.url, MAX_FILE_BYTES=1000).test_client()
    assert upload(client, [("noise.png", noisy_png())]).status_code == 413


def test_messages_name_the_real_size_and_the_limit_in_a_persons_words(
    web_app_factory, live_model_server
):
    client = web_app_factory(
        SERVER_URL=live_model_server.url,
        MAX_FILE_BYTES=8 * 1024 * 1024,
        MAX_CONTENT_LENGTH=32 * 1024 * 1024,
    ).test_client()
    big = png_bytes(RED) + b"\x00" * (9_734_128 - len(png_bytes(RED)))
    response = upload(client, [("scan.png", big)])
    assert response.status_code == 413
    assert (
        response.json["error"]
        == "scan.png: 9.3 MiB (9,734,128 bytes); files of at most 8 MiB are accepted"
    )
    response = upload(client, [("bomb.png", png_bomb())])
    assert response.json["error"] == (
        "bomb.png: declares 400.0 megapixels (400,000,000 pixels); images "
        "of at most 16.8 megapixels (16,777,216 pixels) are accepted"
    )
    assert "bomb?" not in response.json["error"]
    small = web_app_factory(SERVER_URL=live_model_server.url, MAX_IMAGE_PIXELS=1000).test_client()
    assert upload(small, [("a.png", png_bytes(RED))]).json["error"] == (
        "a.png: 50 x 50 = 0.0 megapixels (2,500 pixels); "
        "images of at most 0.0 megapixels (1,000 pixels) are accepted"
    )
    tiny = web_app_factory(
        SERVER_URL=live_model_server.url, MAX_CONTENT_LENGTH=64 * 1024
    ).test_client()
    error = upload(tiny, [("big.png", png_bytes(RED) + b"\x00" * 128 * 1024)]).json["error"]
    assert (
        error.startswith("the upload is too large (128.")
        and "at most 64 KiB can be sent at once" in error
    )


def _encoded(fmt, **options) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", contract.IDC_PATCH, RED).save(buffer, format=fmt, **options)
    return buffer.getvalue()


def test_tiff_and_webp_are_answered_as_lossless_png(client):
    """The model's graph decodes PNG/JPEG/GIF/BMP only: TIFF and WebP reach it re-encoded as
    PNG with the same pixels, and are answered like any PNG."""
    from webapp.uploads import check_upload

    for name, data in (
        ("scan.tif", _encoded("TIFF")),
        ("scan.webp", _encoded("WEBP", lossless=True)),
    ):
        upload_ = check_upload(name, data, 0, 1 << 20, 1 << 20, convert=True)
        assert upload_.image_format == "PNG" and upload_.data.startswith(b"\x89PNG")
        assert (
            Image.open(io.BytesIO(upload_.data)).getpixel((3, 3)) == RED
        )  # not resized, not normalised
    response = upload(
        client, [("scan.tif", _encoded("TIFF")), ("scan.webp", _encoded("WEBP", lossless=True))]
    )
    assert response.status_code == 200, response.json
    assert [p["class_name"] for p in response.json["predictions"]] == [CLASS_NAMES[1]] * 2
    assert [p["source_format"] for p in response.json["predictions"]] == ["TIFF", "WEBP"]
    page = upload(client, [("scan.tif", _encoded("TIFF"))], path="/").get_data(as_text=True)
    assert "TIFF, sent as lossless PNG" in page


def test_a_bad_file_in_a_batch_is_refused_alone_and_the_rest_answered(client):
    files = [("red.png", png_bytes(RED)), ("notes.png", b"hello"), ("blue.png", png_bytes(BLUE))]
    body = upload(client, files).json
    assert [p["file"] for p in body["predictions"]] == ["red.png", "blue.png"]
    assert body["refused"] == [
        {
            "file": "notes.png",
            "index": 1,
            "status": "refused",
            "http_status": 400,
            "error": "notes.png: not an image; expected PNG, JPEG, GIF, BMP, TIFF or WebP content",
        }
    ]
    html = upload(client, files, path="/").get_data(as_text=True)
    assert html.count('class="card result"') == 2 and html.count("card border-danger refused") == 1
    assert 'Refused: <span class="refusal-reason">not an image; expected' in html
    both_bad = upload(client, [("a.png", b"x"), ("b.png", b"")])
    assert both_bad.status_code == 400 and both_bad.json["error"].startswith(
        "none of the 2 files could be read"
    )


def test_pages_name_the_app_mark_the_current_page_and_say_what_the_model_reads(client):
    home = client.get("/").get_data(as_text=True)
    assert "<title>Classify patches · BreastDx</title>" in home
    assert 'class="nav-link active" href="/"\n           aria-current="page"' in home
    assert home.count('aria-current="page"') == 1
    assert "50 × 50-pixel patches of H&amp;E-stained breast tissue at 2.5×" in home
    assert (
        '<label class="form-label" for="file-input">' in home
        and home.count(contract.RESEARCH_ONLY) == 1
    )
    assert 'class="navbar-toggler"' in home and "navbar-expand-md" in home
    versions = client.get("/versions").get_data(as_text=True)
    assert (
        "<title>Model versions · BreastDx</title>" in versions
        and 'id="versions-scroll"' in versions
    )
    assert 'href="/versions"\n           aria-current="page"' in versions
    wholes = client.get("/map").get_data(as_text=True)
    assert (
        '<label class="form-label" for="map-file">' in wholes
        and '<label class="form-label" for="mosaic-file">' in wholes
    )
    assert "data-busy-text=" in wholes and "data-busy-text=" in home
    assert (
        f'max="{4 * contract.IDC_PATCH[0]}"' in wholes
    )  # the stride limit, before anything is sent


def test_the_home_page_opens_while_the_model_server_is_down(web_app_factory):
    from serving_helpers import free_port

    client = web_app_factory(
        SERVER_URL=f"http://127.0.0.1:{free_port()}", REQUEST_TIMEOUT_S=2
    ).test_client()
    page = client.get("/")
    assert page.status_code == 200 and "did not describe its model" in page.get_data(as_text=True)


def test_error_pages_link_back_to_the_page_they_came_from(client):
    page = upload(client, [("notes.png", b"hello")], path="/")
    assert page.status_code == 400 and 'id="back-link" href="/"' in page.get_data(as_text=True)
    page = client.post("/versions", data={"version": "99"})
    assert page.status_code == 400 and 'id="back-link" href="/versions"' in page.get_data(
        as_text=True
    )


def test_forms_need_a_csrf_token(web_app_factory, live_model_server):
    client = web_app_factory(SERVER_URL=live_model_server.url, WTF_CSRF_ENABLED=True).test_client()
    response = upload(client, [("red.png", png_bytes(RED))], path="/")
    assert response.status_code == 400 and "CSRF" in response.get_data(as_text=True)
    assert client.post("/versions", data={"version": "1"}).status_code == 400
    assert (
        upload(client, [("red.png", png_bytes(RED))]).status_code == 200
    )  # the JSON API is exempt


def test_model_server_down_is_503_not_500(web_app_factory):
    from serving_helpers import free_port

    client = web_app_factory(SERVER_URL=f"http://127.0.0.1:{free_port()}").test_client()
    response = upload(client, [("red.png", png_bytes(RED))])
    assert response.status_code == 503 and "unreachable" in response.json["error"]
    page = upload(client, [("red.png", png_bytes(RED))], path="/")
    assert page.status_code == 503 and "unreachable" in page.get_data(as_text=True)


def test_unknown_pages_and_methods_are_4xx_json_for_the_api(client):
    assert client.get("/nope").status_code == 404
    response = client.get("/api/predict")
    assert response.status_code == 405 and "error" in response.json


def test_the_web_process_never_imports_tensorflow(tmp_path):
    code = (
        "import sys, io\n"
        "from webapp import create_app\n"
        "import webapp.cli, webapp.ui, webapp.api, webapp.clients, webapp.overlay, breastdx_cli.predict\n"
        "app = create_app({'SECRET_KEY': 'x', 'WTF_CSRF_ENABLED': False, 'SERVER_URL': 'http://127.0.0.1:9'})\n"
        "c = app.test_client()\n"
        "assert c.get('/').status_code == 200\n"
        "assert c.post('/api/predict', data={'file': [(io.BytesIO(b'x'), 'a.png')]},"
        " content_type='multipart/form-data').status_code == 400\n"
        "loaded = [m for m in sys.modules if m == 'tensorflow' or m.startswith('tensorflow.')]\n"
        "assert not loaded, loaded[:5]\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr[-2000:]


def test_a_pinned_version_that_was_unloaded_is_unpinned_with_a_message(
    client, serving_root, tiny_model_dir, server_app
):
    import shutil

    add_version(serving_root, 2, tiny_model_dir)
    store = server_app.extensions["model_store"]
    store.poll()
    client.post("/versions", data={"version": "1"})
    shutil.rmtree(serving_root / MODEL_NAME / "1")
    store.poll()
    page = upload(client, [("a.png", png_bytes(RED))], path="/")
    assert page.status_code == 404 and "no longer served" in page.get_data(as_text=True)
    page = upload(client, [("a.png", png_bytes(RED))], path="/").get_data(as_text=True)
    assert '<span class="model-version">2</span>' in page


def test_answers_read_at_a_glance_whatever_the_rule_said():
    """One sentence per answer; the numbers behind a refusal only under "details"; a class
    called below one half by a threshold rule says why instead of "probability 0.455"."""
    from serving_helpers import CARD

    from breastdx_core import decision
    from webapp import answers

    card = {
        **CARD,
        "decision_rule": {
            **CARD["decision_rule"],
            "ood": {**CARD["decision_rule"]["ood"], "threshold": 8.9},
        },
    }
    ood = decision.decide(card["decision_rule"], [0.2, 0.8], ood_score=9.04)
    said = answers.sentence({"status": ood["status"], "decision": ood}, card)
    assert said == {
        "text": "Not assessed: not an H&E patch of breast tissue (the model's own features for it "
        "are unlike those of any training image)",
        "tone": "not_assessed",
        "details": "feature distance 9.0; the limit is 8.9 "
        "(a limit that flags 1 % of ordinary eval "
        "images)",
    }
    assert "OOD score" not in said["text"] and ">" not in said["text"]
    checks = answers.rule_in_words(card)[0]
    assert "features for it lie from those of the training images, a check" in checks, checks
    colour = {
        "status": "not_assessed",
        "decision": decision.decide(
            None,
            [0.5, 0.5],
            contract="its colours and texture are unlike the training images (distance 12.3; "
            "the farthest accepted is 4.8)",
        ),
    }
    said = answers.sentence(colour, card)
    assert said["text"].endswith("(its colours and texture are unlike the training images)")
    assert said["details"] == "colour and texture distance 12.3; the limit is 4.8"
    empty = decision.decide(card["decision_rule"], [0.2, 0.2])
    assert answers.sentence({"status": "uncertain", "decision": empty, "prediction_set": []}, card)[
        "text"
    ] == ("Uncertain: refer to a pathologist — no class is plausible enough at 95 %")
    threshold = {
        "status": "assessed",
        "class_name": CLASS_NAMES[0],
        "probability": 0.455,
        "positive_class": CLASS_NAMES[1],
        "positive_probability": 0.545,
    }
    rule = {
        "decision_rule": {
            "kind": "threshold",
            "operating_threshold": 0.6,
            "positive_class": CLASS_NAMES[1],
        }
    }
    assert answers.sentence(threshold, rule)["text"] == (
        f"{CLASS_NAMES[0]}: P({CLASS_NAMES[1]}) = 0.55 is below the threshold 0.60"
    )
    lines = answers.rule_in_words(rule)
    assert lines == [
        f"The model calls {CLASS_NAMES[1]} when P({CLASS_NAMES[1]}) is at least 0.60; no coverage "
        "is claimed."
    ]


def test_the_grad_cam_overlay_is_on_one_fixed_scale():
    """The same relative attention is drawn fainter for a less sure answer, red toward the
    positive class and blue otherwise: colours mean the same in every image."""
    import numpy as np

    from webapp import overlay

    grey = png_bytes((128, 128, 128))
    heat = [[1.0] * 8 for _ in range(8)]
    sure = np.asarray(Image.open(io.BytesIO(overlay.evidence_png(grey, heat, 0.99, True))))[0, 0]
    unsure = np.asarray(Image.open(io.BytesIO(overlay.evidence_png(grey, heat, 0.55, True))))[0, 0]
    other = np.asarray(Image.open(io.BytesIO(overlay.evidence_png(grey, heat, 0.99, False))))[0, 0]
    none = np.asarray(
        Image.open(io.BytesIO(overlay.evidence_png(grey, [[0.0] * 8] * 8, 0.99, True)))
    )[0, 0]
    assert tuple(none) == (128, 128, 128)  # no attention: the image unchanged
    assert sure[0] > unsure[0] > 128 and sure[2] < unsure[2] < 128  # redder when surer
    assert other[2] > 128 > other[0]  # blue toward the other class


def test_a_map_whose_tiles_the_server_mostly_refuses_is_not_assessed_as_a_whole():
    from webapp.wholeslide import map_assessment

    counts = {"assessed": 3, "uncertain": 1, "flagged": 6, "positive": 3}
    said = map_assessment(counts, {"task": "idc", "positive_class": CLASS_NAMES[1]})
    assert said["status"] == "not_assessed" and said["text"].startswith(
        "Not assessed: 6 of 10 tissue tiles"
    )
    said = map_assessment(
        {**counts, "flagged": 1}, {"task": "idc", "positive_class": CLASS_NAMES[1]}
    )
    assert said == {
        "status": "assessed",
        "text": f"3 of 5 tissue tiles {CLASS_NAMES[1]}; 1 to refer to a "
        "pathologist (uncertain); 1 not assessed",
    }


def test_any_user_error_is_answered_with_its_own_message_and_status(web_app_factory):
    from breastdx_core import errors

    app = web_app_factory()

    @app.get("/api/raises-user-error")
    def raises_user_error():
        raise errors.UserError("the setting X must be a number")

    @app.get("/api/raises-service-error")
    def raises_service_error():
        raise errors.ServiceError("the model server refused the request")

    client = app.test_client()
    response = client.get("/api/raises-user-error")
    assert (response.status_code, response.json) == (
        400,
        {"error": "the setting X must be a number"},
    )
    response = client.get("/api/raises-service-error")
    assert response.status_code == 502
    assert response.json == {"error": "the model server refused the request"}
