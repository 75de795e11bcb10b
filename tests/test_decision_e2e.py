"""One decision rule on every path, with the card the real pipeline pushed (slow: e2e).

The session's pipeline run (tests/conftest.py `idc_run`) pushes a model whose card holds
the input contract, the OOD threshold and the conformal rule. The same files go to the
model server's ``:predict`` (its ``decisions``), the web app's JSON API and page, and
``breastdx predict`` (through the server, and in-process from the SavedModel, where the
CLI applies the rule itself): every path must give the same status, class and set, and
the out-of-contract files (grayscale, alpha, 16-bit, noise, natural photographs) must be
"not assessed" with no class while held-out synthetic patches are assessed.
"""

import argparse
import base64
import glob
import io
import json
import os
import re
import struct
import sys
import zlib

import numpy as np
import pytest
import requests
import tensorflow as tf
from PIL import Image

from breastdx_core import contract, decision, model_card

sys.path.insert(0, os.path.dirname(__file__))
from serving_helpers import LiveServer  # noqa: E402

pytestmark = pytest.mark.e2e


def _png(array, mode=None) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(array, mode=mode).save(buffer, format="PNG")
    return buffer.getvalue()


def _png16(rgb: np.ndarray) -> bytes:
    """The patch as a 16-bit RGB PNG (Pillow writes 16 bits only for grey)."""
    pixels = (rgb.astype(np.uint16) * 257).astype(">u2")
    raw = b"".join(b"\x00" + row.tobytes() for row in pixels)

    def chunk(kind, data):
        return (
            struct.pack(">I", len(data))
            + kind
            + data
            + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)
        )

    height, width = rgb.shape[:2]
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 16, 2, 0, 0, 0))
        + chunk(b"IDAT", zlib.compress(raw))
        + chunk(b"IEND", b"")
    )


def _photo_crop(name: str, box) -> bytes:
    """A 50x50 crop of one of scikit-learn's bundled photographs (china.jpg, flower.jpg)."""
    import sklearn.datasets

    image = sklearn.datasets.load_sample_image(name)
    y, x = box
    return _png(np.ascontiguousarray(image[y : y + 50, x : x + 50]))


@pytest.fixture(scope="module")
def pushed(idc_run):
    config, _ = idc_run
    [version] = [
        d for d in os.listdir(os.path.join(config.serving_root, config.model_name)) if d.isdigit()
    ]
    version_dir = os.path.join(config.serving_root, config.model_name, version)
    card = model_card.read(os.path.join(version_dir, contract.MODEL_CARD_RELPATH))
    return config, version_dir, card


@pytest.fixture(scope="module")
def files(pushed):
    """Held-out test-split patches and the out-of-contract kinds, {name: bytes}."""
    config, _, _ = pushed
    [examples] = glob.glob(os.path.join(config.pipeline_root, "ImageExampleGen", "examples", "*"))
    records = tf.data.TFRecordDataset(
        sorted(glob.glob(os.path.join(examples, "Split-test", "*"))), compression_type="GZIP"
    )
    spec = {contract.IMAGE_KEY: tf.io.FixedLenFeature([], tf.string)}
    held_out = [
        tf.io.parse_single_example(r, spec)[contract.IMAGE_KEY].numpy() for r in records.take(24)
    ]
    rgb = np.asarray(Image.open(io.BytesIO(held_out[0])).convert("RGB"))
    rng = np.random.default_rng(0)
    out = {f"held_out_{i}.png": data for i, data in enumerate(held_out)}
    out.update(
        {
            "grayscale.png": _png(np.asarray(Image.fromarray(rgb).convert("L"))),
            "alpha.png": _png(np.dstack([rgb, np.full(rgb.shape[:2], 255, np.uint8)])),
            "sixteen_bit.png": _png16(rgb),
            "noise.png": _png(rng.integers(0, 256, (50, 50, 3), dtype=np.uint8)),
            "photo_china.png": _photo_crop("china.jpg", (100, 300)),
            "photo_flower.png": _photo_crop("flower.jpg", (200, 200)),
        }
    )
    return out


OUT_OF_CONTRACT = (
    "grayscale.png",
    "alpha.png",
    "sixteen_bit.png",
    "noise.png",
    "photo_china.png",
    "photo_flower.png",
)


def test_the_pushed_card_is_complete_valid_and_published_with_its_report(pushed):
    config, version_dir, card = pushed
    model_card.validate(card)
    assert card["version"] == int(os.path.basename(version_dir))
    accepted = card["input_contract"]["accepted"]
    assert (
        accepted["channels"] == [3]
        and accepted["bit_depths"] == [8]
        and accepted["measured_on"] == "train split"
    )
    assert accepted["width"][1] == contract.IDC_PATCH[0]
    rule = card["decision_rule"]
    conformal, ood = rule["conformal"], rule["ood"]
    assert conformal["coverage"] == config.evaluation.conformal_coverage and conformal[
        "calibrated_on"
    ].startswith("eval")
    coverage = conformal["test_coverage"]
    assert 0 <= coverage["value"] <= 1 and coverage["n"] == card["evaluation"]["test"]["n_images"]
    if conformal["claimed"]:
        assert rule["kind"] == "conformal"
        assert all(
            n >= decision.conformal_rank_min(config.evaluation.conformal_coverage)
            for n in conformal["n_per_class"].values()
        )
    else:
        assert rule["kind"] == "threshold" and "too small" in conformal["reason"]
    assert ood["threshold"] > 0 and 0 <= ood["test_false_alarm"]["value"] <= 1
    # the Evaluator's metrics under the keys the versions page reads (not TFMA's class names)
    assert {"auc", "binary_accuracy", "precision", "recall", "example_count"} <= set(
        card["evaluation"]["metrics"]
    )
    report = json.load(open(os.path.join(version_dir, card["evaluation_report"]["json"])))
    assert report["decision_rule"]["conformal"]["test_coverage"] == coverage
    page = open(os.path.join(version_dir, card["evaluation_report"]["html"])).read()
    assert "Decision rule" in page and contract.RESEARCH_ONLY in page
    # 30 synthetic patients: the eval and test splits hold < 10 patients each, and the card says so
    assert any("fewer than 10" in w for w in card["small_sample_warnings"])


def test_versions_page_shows_the_real_cards_numbers(pushed, web_client):
    _, _, card = pushed
    page = web_client.get("/versions").get_data(as_text=True)
    auc = card["evaluation"]["metrics"]["auc"]
    assert f'data-key="auc">{auc:.3f}</td>' in page
    assert (
        f'data-key="example_count">{int(card["evaluation"]["metrics"]["example_count"])}</td>'
        in page
    )


@pytest.fixture(scope="module")
def live_server(pushed):
    from serving.server import create_app

    config, _, _ = pushed
    app = create_app(config.serving_root, [config.model_name], start=False)
    app.extensions["model_store"].poll()
    live = LiveServer(app)
    yield live
    live.close()
    app.extensions["model_store"].stop()


@pytest.fixture(scope="module")
def web_client(pushed, live_server):
    from webapp import create_app

    config, _, _ = pushed
    app = create_app(
        {
            "TESTING": True,
            "WTF_CSRF_ENABLED": False,
            "SECRET_KEY": "test",
            "MODEL_NAME": config.model_name,
            "SERVER_URL": live_server.url,
        }
    )
    return app.test_client()


def _key(ruled):
    return ruled["status"], ruled.get("class_name"), tuple(ruled.get("prediction_set") or ())


def _cli(args):
    from breastdx_cli import predict as predict_cli

    parser = argparse.ArgumentParser()
    predict_cli.add_predict_parser(parser.add_subparsers())
    out = io.StringIO()
    parsed = parser.parse_args(["predict", *args, "--json"])
    code = parsed.func(parsed, out)
    return code, [json.loads(line) for line in out.getvalue().splitlines() if line.startswith("{")]


def test_server_api_page_and_cli_give_one_answer_and_refuse_out_of_contract(
    pushed, files, live_server, web_client, tmp_path
):
    config, version_dir, card = pushed
    names = list(files)
    # 1. the model server's :predict (TF Serving's keys plus "decisions")
    body = requests.post(
        f"{live_server.url}/v1/models/{config.model_name}:predict",
        timeout=120,
        json={"instances": [{"b64": base64.b64encode(files[n]).decode()} for n in names]},
    ).json()
    assert len(body["predictions"]) == len(names) and contract.OUTPUT_OOD in body["predictions"][0]
    server = dict(zip(names, body["decisions"]))
    # 2. the JSON API
    api = web_client.post(
        "/api/predict",
        content_type="multipart/form-data",
        data={"file": [(io.BytesIO(files[n]), n) for n in names]},
    ).json["predictions"]
    api = {row["file"]: row for row in api}
    # 3. the HTML page: one card per file, in order, with the decision's status and class
    page = web_client.post(
        "/",
        content_type="multipart/form-data",
        data={"file": [(io.BytesIO(files[n]), n) for n in names]},
    ).get_data(as_text=True)
    statuses = re.findall(r'class="[^"]*decision[^"]*" data-status="([a-z_]+)"', page)
    assert len(statuses) == len(names)
    # 4. the CLI through the server, and 5. in-process from the SavedModel (the rule applied locally)
    for name in names:
        (tmp_path / name).write_bytes(files[name])
    paths = [str(tmp_path / n) for n in names]
    code, via_server = _cli([*paths, "--server", live_server.url, "--model", config.model_name])
    _, in_process = _cli([*paths, "--saved-model", version_dir])
    assert code == 0 and len(via_server) == len(in_process) == len(names)

    for i, name in enumerate(names):
        want = _key(server[name])
        assert _key(api[name]["decision"]) == want, name
        assert api[name]["class_name"] == server[name]["class_name"], name
        assert statuses[i] == want[0], name
        assert _key(via_server[i]["decision"]) == want and via_server[i]["class_name"] == want[1], (
            name
        )
        assert _key(in_process[i]["decision"]) == want, (
            name
        )  # the card's rule, applied in the CLI itself
    for name in OUT_OF_CONTRACT:
        assert server[name]["status"] == "not_assessed" and server[name]["class_name"] is None, (
            name,
            server[name],
        )
        assert server[name]["text"].startswith("not assessed: ")
        assert api[name]["probabilities"] == {}  # no class, no numbers to read one from
    held_out = [server[n] for n in names if n.startswith("held_out_")]
    assessed = [r for r in held_out if r["status"] != "not_assessed"]
    assert len(assessed) >= 0.9 * len(held_out), (
        held_out
    )  # the OOD threshold's false alarms are ~1 %
    assert "Not assessed: " in page and contract.RESEARCH_ONLY in page  # the one-sentence answer
