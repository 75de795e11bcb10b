"""Every kind of pushed model in the web app, each produced by the real pipeline (slow: e2e).

The presets' session runs (tests/conftest_presets.py, shared with the presets' own e2e
tests, so no extra pipeline run): the BUSI U-Net (``segment``: mask overlay and area),
BUSI's 3-class classifier (every probability) and the CBIS-DDSM whole-mammogram model (its
sliding-window heatmap). Each is served by the project's model server; the web app's
answers are checked against the SavedModel called in-process on the same bytes.
"""

import base64
import glob
import io
import json
import os

import numpy as np
import pytest
from PIL import Image

from breastdx_core import contract
from pipeline import synthetic

pytest_plugins = ["conftest_serving", "conftest_presets"]

from serving_helpers import LiveServer  # noqa: E402

pytestmark = pytest.mark.e2e


def _newest(serving_root, model_name):
    base = os.path.join(serving_root, model_name)
    return os.path.join(base, max((v for v in os.listdir(base) if v.isdigit()), key=int))


def _serve(serving_root, model_name, web_app_factory):
    from serving.server import create_app

    server_app = create_app(serving_root, [model_name], start=False)
    server_app.extensions["model_store"].poll()
    live = LiveServer(server_app)
    web = web_app_factory(SERVER_URL=live.url, MODEL_NAME=model_name).test_client()
    return live, server_app, web


def _post(client, path, name, content, **fields):
    return client.post(
        path,
        data={"file": (io.BytesIO(content), name), **fields},
        content_type="multipart/form-data",
    )


def _busi_images(data, kinds=synthetic.BUSI_CLASSES):
    return [
        sorted(
            p
            for p in glob.glob(os.path.join(data.root, kind, f"{kind} (*).png"))
            if "_mask" not in p
        )[0]
        for kind in kinds
    ]


def test_segmentation_model_shows_mask_overlay_and_area(segmentation_run, web_app_factory):
    import tensorflow as tf

    config, data = segmentation_run
    [malignant] = _busi_images(data, ["malignant"])
    image = open(malignant, "rb").read()
    live, server_app, web = _serve(config.serving_root, config.model_name, web_app_factory)
    try:
        response = _post(web, "/api/predict", "lesion.png", image, overlay="1")
        page = _post(web, "/", "lesion.png", image).get_data(as_text=True)
    finally:
        live.close()
        server_app.extensions["model_store"].stop()
    assert response.status_code == 200, response.json
    body = response.json
    assert body["kind"] == "segmentation"
    [result] = body["predictions"]
    assert result["mask_size"] == list(contract.BUSI_MODEL_SIZE)
    # The same bytes through the pushed SavedModel in-process: the area the page shows is its mask's.
    model = tf.saved_model.load(_newest(config.serving_root, config.model_name))
    out = model.signatures["segment"](**{contract.SERVING_INPUT_BYTES: tf.constant([image])})
    assert result["mask_area"] == pytest.approx(float(out["mask_area"][0]), abs=1e-4)
    width, height = Image.open(io.BytesIO(image)).size
    from webapp import kinds

    inside = kinds._content(out["mask"].numpy()[0], width, height)
    assert result["lesion_fraction"] == pytest.approx(float((inside > 0.5).mean()), abs=1e-4)
    assert result["area_threshold"] is not None and isinstance(result["area_positive"], bool)
    overlay = Image.open(io.BytesIO(base64.b64decode(result["overlay_png"].split(",", 1)[1])))
    assert max(overlay.size) == 256
    assert (
        'class="card result segmentation"' in page
        and "lesion area" in page
        and contract.RESEARCH_ONLY in page
    )


def test_busi_classifier_shows_every_class_probability(busi_run, web_app_factory):
    config, data = busi_run
    live, server_app, web = _serve(config.serving_root, config.model_name, web_app_factory)
    try:
        images = [(os.path.basename(p), open(p, "rb").read()) for p in _busi_images(data)]
        response = web.post(
            "/api/predict",
            data={"file": [(io.BytesIO(c), n.replace(" ", "_")) for n, c in images]},
            content_type="multipart/form-data",
        )
        page = _post(web, "/", "benign.png", images[1][1]).get_data(as_text=True)
    finally:
        live.close()
        server_app.extensions["model_store"].stop()
    assert response.status_code == 200, response.json
    assert response.json["kind"] == "classifier"
    for result in response.json["predictions"]:
        assert sorted(result["probabilities"]) == sorted(
            synthetic.BUSI_CLASSES
        )  # JSON objects sort their keys
        assert sum(result["probabilities"].values()) == pytest.approx(1.0, abs=1e-3)
    assert page.count('<span class="class">') == 3 and all(
        name in page for name in synthetic.BUSI_CLASSES
    )


def test_cbis_whole_image_model_shows_the_sliding_window_heatmap(cbis_run, web_app_factory):
    import tensorflow as tf

    from components.mammo import records
    from pipeline import summary

    config, _ = (
        cbis_run  # the mammography variant pushes the whole-image model as config.model_name
    )
    model_name = config.model_name
    pushed = summary.newest_pushed(config)
    mammogram = sorted(
        glob.glob(os.path.join(config.data_root, "CBIS-DDSM", "*", "*", "*", "000000.png"))
    )[0]
    image = open(mammogram, "rb").read()
    live, server_app, web = _serve(config.serving_root, model_name, web_app_factory)
    try:
        response = _post(web, "/api/predict", "mammogram.png", image, overlay="1")
        page = _post(web, "/", "mammogram.png", image).get_data(as_text=True)
    finally:
        live.close()
        server_app.extensions["model_store"].stop()
    assert response.status_code == 200, response.json
    [result] = response.json["predictions"]
    assert (
        response.json["kind"] == "whole_image" and result["class_name"] in records.WHOLE_CLASS_NAMES
    )
    model = tf.saved_model.load(pushed)
    heat = model.signatures[records.SIGNATURE_HEATMAP](
        **{contract.SERVING_INPUT_BYTES: tf.constant([image])}
    )
    heat = heat[records.OUTPUT_HEATMAP].numpy()[0]
    malignant = [i for i, name in enumerate(contract.CBIS_PATCH_CLASSES) if "malignant" in name]
    np.testing.assert_allclose(result["window_grid"], heat[..., malignant].sum(-1), atol=2e-4)
    assert result["overlay_png"].startswith("data:image/png;base64,")
    assert "sliding-window malignancy heatmap" in page and contract.RESEARCH_ONLY in page
    card = json.load(open(os.path.join(pushed, contract.MODEL_CARD_RELPATH)))
    assert card["input_contract"]["heatmap_signature"] == records.SIGNATURE_HEATMAP
