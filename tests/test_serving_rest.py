"""The model server's REST API (serving.server) against the tiny SavedModel: TF Serving's paths,
bodies, formats and error shape."""

import base64

import pytest

from breastdx_core import contract

pytest_plugins = ["conftest_serving"]

from serving_helpers import BLUE, CLASS_NAMES, MODEL_NAME, PURPLE, RED, png_bytes  # noqa: E402


def b64(data: bytes) -> dict:
    return {"b64": base64.b64encode(data).decode("ascii")}


@pytest.fixture
def client(server_app):
    return server_app.test_client()


def test_model_status_lists_the_loaded_version(client):
    for path in (f"/v1/models/{MODEL_NAME}", f"/v1/models/{MODEL_NAME}/versions/1"):
        response = client.get(path)
        assert response.status_code == 200
        assert response.json == {
            "model_version_status": [
                {
                    "version": "1",
                    "state": "AVAILABLE",
                    "status": {"error_code": "OK", "error_message": ""},
                }
            ]
        }


def test_metadata_has_signatures_and_the_model_card(client):
    for path in (
        f"/v1/models/{MODEL_NAME}/metadata",
        f"/v1/models/{MODEL_NAME}/versions/1/metadata",
    ):
        body = client.get(path).json
        assert body["model_spec"] == {"name": MODEL_NAME, "signature_name": "", "version": "1"}
        defs = body["metadata"]["signature_def"]["signature_def"]
        assert {contract.SIGNATURE_BYTES, contract.SIGNATURE_EXAMPLES, "explain"} <= set(defs)
        bytes_input = defs[contract.SIGNATURE_BYTES]["inputs"][contract.SERVING_INPUT_BYTES]
        assert bytes_input["dtype"] == "DT_STRING"
        assert bytes_input["tensor_shape"]["dim"][0]["size"] == "-1"
        assert (
            defs[contract.SIGNATURE_BYTES]["outputs"][contract.OUTPUT_PROBABILITIES]["dtype"]
            == "DT_FLOAT"
        )
        assert body["model_card"]["version"] == 1
        assert body["model_card"]["evaluation"]["metrics"]["auc"] == pytest.approx(0.91)


def test_predict_row_format_with_b64(client):
    response = client.post(
        f"/v1/models/{MODEL_NAME}:predict",
        json={"instances": [b64(png_bytes(RED)), b64(png_bytes(BLUE))]},
    )
    assert response.status_code == 200
    rows = response.json["predictions"]
    assert [row[contract.OUTPUT_CLASS_NAME] for row in rows] == [CLASS_NAMES[1], CLASS_NAMES[0]]
    assert [row[contract.OUTPUT_CLASS_INDEX] for row in rows] == [1, 0]
    for row in rows:
        assert sum(row[contract.OUTPUT_PROBABILITIES]) == pytest.approx(1.0, abs=1e-5)
        assert row[contract.OUTPUT_POSITIVE] == pytest.approx(row[contract.OUTPUT_PROBABILITIES][1])


def test_predict_adds_the_cards_decisions_beside_tf_servings_keys(client):
    body = client.post(
        f"/v1/models/{MODEL_NAME}:predict",
        json={"instances": [b64(png_bytes(RED)), b64(png_bytes(PURPLE))]},
    ).json
    assert set(body) == {"predictions", "decisions"}  # TF Serving's key unchanged, one extra
    red, purple = body["decisions"]
    assert (red["status"], red["class_name"], red["prediction_set"]) == (
        "assessed",
        CLASS_NAMES[1],
        [CLASS_NAMES[1]],
    )
    assert purple["status"] == "uncertain" and purple["class_name"] is None
    assert purple["text"] == "uncertain: refer to a pathologist" and purple[
        "prediction_set"
    ] == list(CLASS_NAMES)
    columnar = client.post(
        f"/v1/models/{MODEL_NAME}:predict", json={"inputs": [b64(png_bytes(RED))]}
    ).json
    assert (
        set(columnar) == {"outputs", "decisions"}
        and columnar["decisions"][0]["class_name"] == CLASS_NAMES[1]
    )


def test_a_version_whose_card_breaks_the_schema_is_not_served(tmp_path, tiny_model_dir, caplog):
    import json
    import os
    import shutil

    from serving.server import create_app

    target = tmp_path / "serving" / MODEL_NAME / "1"
    shutil.copytree(tiny_model_dir, target)
    card_path = os.path.join(target, contract.MODEL_CARD_RELPATH)
    card = json.load(open(card_path))
    del card["class_names"]
    json.dump(card, open(card_path, "w"))
    app = create_app(str(tmp_path / "serving"), start=False)
    app.extensions["model_store"].poll()
    try:
        assert app.test_client().get(f"/v1/models/{MODEL_NAME}").status_code in (404, 503)
        assert "class_names" in caplog.text and "failed to load" in caplog.text
    finally:
        app.extensions["model_store"].stop()


def test_predict_named_rows_and_columnar_format_agree(client):
    image = b64(png_bytes(PURPLE))
    named = client.post(
        f"/v1/models/{MODEL_NAME}/versions/1:predict",
        json={"instances": [{contract.SERVING_INPUT_BYTES: image}]},
    ).json["predictions"][0]
    columnar = client.post(
        f"/v1/models/{MODEL_NAME}:predict", json={"inputs": {contract.SERVING_INPUT_BYTES: [image]}}
    ).json["outputs"]
    bare = client.post(f"/v1/models/{MODEL_NAME}:predict", json={"inputs": [image]}).json["outputs"]
    assert named[contract.OUTPUT_POSITIVE] == pytest.approx(0.5)
    assert columnar[contract.OUTPUT_POSITIVE] == pytest.approx([0.5])
    assert bare[contract.OUTPUT_CLASS_NAME] == columnar[contract.OUTPUT_CLASS_NAME]


def test_explain_signature_returns_a_heatmap_in_range(client):
    body = client.post(
        f"/v1/models/{MODEL_NAME}:predict",
        json={"signature_name": "explain", "instances": [b64(png_bytes(RED))]},
    ).json
    heatmap = body["predictions"][0]["heatmap"]
    assert (len(heatmap), len(heatmap[0])) == contract.IDC_MODEL_SIZE
    assert (
        0.0 <= min(min(row) for row in heatmap) and max(max(row) for row in heatmap) <= 1.0 + 1e-6
    )


def test_examples_signature_reads_serialized_examples(client):
    import tensorflow as tf

    example = tf.train.Example(
        features=tf.train.Features(
            feature={
                contract.IMAGE_KEY: tf.train.Feature(
                    bytes_list=tf.train.BytesList(value=[png_bytes(RED)])
                )
            }
        )
    )
    body = client.post(
        f"/v1/models/{MODEL_NAME}:predict",
        json={
            "signature_name": contract.SIGNATURE_EXAMPLES,
            "instances": [{contract.SERVING_INPUT_EXAMPLES: b64(example.SerializeToString())}],
        },
    ).json
    assert body["predictions"][0][contract.OUTPUT_CLASS_NAME] == CLASS_NAMES[1]


@pytest.mark.parametrize(
    "path, status",
    [
        ("/v1/models/nope", 404),
        ("/v1/models/nope/metadata", 404),
        (f"/v1/models/{MODEL_NAME}/versions/9", 404),
        (f"/v1/models/{MODEL_NAME}/versions/9/metadata", 404),
        (f"/v1/models/{MODEL_NAME}/labels/stable", 404),
        (f"/v1/models/{MODEL_NAME}/versions/abc", 400),
        ("/v1/models/a/b/c", 404),
    ],
)
def test_get_errors_have_tf_servings_shape(client, path, status):
    response = client.get(path)
    assert response.status_code == status
    assert set(response.json) == {"error"} and response.json["error"]


@pytest.mark.parametrize(
    "path, body, status, words",
    [
        ("/v1/models/nope:predict", {"instances": ["x"]}, 404, "Servable not found"),
        (f"/v1/models/{MODEL_NAME}/versions/7:predict", {"instances": ["x"]}, 404, "Specific("),
        (f"/v1/models/{MODEL_NAME}:predict", {"foo": 1}, 400, "instances"),
        (
            f"/v1/models/{MODEL_NAME}:predict",
            {
                "instances": [],
            },
            400,
            "non-empty",
        ),
        (
            f"/v1/models/{MODEL_NAME}:predict",
            {"instances": ["a"], "inputs": ["a"]},
            400,
            "exactly one",
        ),
        (f"/v1/models/{MODEL_NAME}:predict", {"instances": [{"b64": "***"}]}, 400, "base64"),
        (f"/v1/models/{MODEL_NAME}:predict", {"instances": [1.5]}, 400, "string"),
        (f"/v1/models/{MODEL_NAME}:predict", {"instances": [{"wrong": "a"}]}, 400, "image_bytes"),
        (
            f"/v1/models/{MODEL_NAME}:predict",
            {"signature_name": "nope", "instances": ["a"]},
            400,
            "not found in signature def",
        ),
        (f"/v1/models/{MODEL_NAME}:predict", {"instances": [b64(b"not an image")]}, 400, "image"),
        (f"/v1/models/{MODEL_NAME}:classify", {"examples": []}, 501, "predict"),
    ],
)
def test_predict_errors_have_tf_servings_shape(client, path, body, status, words):
    response = client.post(path, json=body)
    assert response.status_code == status, response.json
    assert set(response.json) == {"error"}
    assert words.lower() in response.json["error"].lower()
    assert "Traceback" not in response.json["error"]


def test_a_body_that_is_not_json_is_a_400(client):
    response = client.post(
        f"/v1/models/{MODEL_NAME}:predict", data=b"{not json", content_type="application/json"
    )
    assert response.status_code == 400
    assert response.json["error"].startswith("JSON Parse error")


def test_503_while_nothing_is_loaded(tmp_path):
    from serving.server import create_app

    (tmp_path / MODEL_NAME).mkdir()
    app = create_app(str(tmp_path), start=False)
    app.extensions["model_store"].poll()
    client = app.test_client()
    for response in (
        client.get(f"/v1/models/{MODEL_NAME}"),
        client.post(f"/v1/models/{MODEL_NAME}:predict", json={"instances": ["x"]}),
    ):
        assert response.status_code == 503
        assert "no model version is loaded" in response.json["error"]


def test_a_broken_version_is_skipped_and_the_good_one_served(serving_root):
    from serving.server import create_app

    broken = serving_root / MODEL_NAME / "5"
    broken.mkdir()
    (broken / "saved_model.pb").write_bytes(b"half-copied")
    app = create_app(str(serving_root), start=False)
    app.extensions["model_store"].poll()
    status = app.test_client().get(f"/v1/models/{MODEL_NAME}").json["model_version_status"]
    assert [row["version"] for row in status] == ["1"]
