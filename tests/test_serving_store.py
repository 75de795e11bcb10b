"""Version management (serving.model_store) and batching (serving.batching): new versions are
loaded before they serve, old ones retire without failing a request, labels come from a
config file, concurrent requests are batched without mixing their answers."""

import base64
import json
import shutil
import threading
import time

import numpy as np
import pytest

from breastdx_core import contract

pytest_plugins = ["conftest_serving"]

from serving_helpers import BLUE, MODEL_NAME, RED, add_version, png_bytes  # noqa: E402

SWAP_THREADS = 6
WAIT_S = 30.0
POLL_S = 0.1


def wait_for(predicate, timeout=WAIT_S):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if predicate():
            return True
        time.sleep(POLL_S)
    return False


def served_versions(store):
    return [loaded.version for loaded in store.versions(MODEL_NAME)]


def test_version_swap_under_concurrent_requests_fails_nothing(serving_root, tiny_model_dir):
    from serving.server import create_app

    app = create_app(str(serving_root), num_versions=1, poll_seconds=POLL_S)
    store = app.extensions["model_store"]
    assert wait_for(lambda: served_versions(store) == [1])
    body = {"instances": [{"b64": base64.b64encode(png_bytes(RED)).decode()}]}
    failures, successes, stop = [], [0], threading.Event()

    def hammer():
        client = app.test_client()
        while not stop.is_set():
            response = client.post(f"/v1/models/{MODEL_NAME}:predict", json=body)
            if response.status_code != 200:
                failures.append((response.status_code, response.json))
            else:
                successes[0] += 1

    threads = [threading.Thread(target=hammer) for _ in range(SWAP_THREADS)]
    for thread in threads:
        thread.start()
    try:
        add_version(serving_root, 2, tiny_model_dir)
        assert wait_for(lambda: served_versions(store) == [2])
        add_version(serving_root, 3, tiny_model_dir)
        assert wait_for(lambda: served_versions(store) == [3])
        shutil.rmtree(serving_root / MODEL_NAME / "1")
        shutil.rmtree(serving_root / MODEL_NAME / "2")
        time.sleep(POLL_S * 3)
    finally:
        stop.set()
        for thread in threads:
            thread.join()
        store.stop()
    assert failures == []
    assert successes[0] > SWAP_THREADS
    status = app.test_client().get(f"/v1/models/{MODEL_NAME}").json["model_version_status"]
    assert [row["version"] for row in status] == ["3"]


def test_a_request_in_flight_keeps_its_retired_version(serving_root, tiny_model_dir):
    from serving.model_store import STATE_END, STATE_UNLOADING, ModelStore

    store = ModelStore(str(serving_root), num_versions=1)
    store.poll()
    held = store.acquire(MODEL_NAME)
    add_version(serving_root, 2, tiny_model_dir)
    store.poll()
    assert store.acquire(MODEL_NAME).version == 2
    assert held.version == 1 and held.state == STATE_UNLOADING
    outputs = held.signature(contract.SIGNATURE_BYTES)(
        **{contract.SERVING_INPUT_BYTES: __import__("tensorflow").constant([png_bytes(RED)])}
    )
    assert outputs[contract.OUTPUT_CLASS_INDEX].numpy().tolist() == [1]
    held.release()
    assert held.state == STATE_END


TEXT_CONFIG = """
model_config_list {
  config {
    name: "{name}"
    base_path: "/ignored/the/serving/root/wins"
    model_platform: "tensorflow"
    model_version_policy { specific { versions: 1 versions: 2 } }
    version_labels { key: "stable" value: 1 }
    version_labels { key: "canary" value: 2 }
  }
}
""".replace("{name}", MODEL_NAME)


@pytest.mark.parametrize(
    "config_name, text",
    [
        ("models.config", TEXT_CONFIG),
        (
            "models.json",
            json.dumps(
                {
                    MODEL_NAME: {
                        "policy": "specific",
                        "versions": [1, 2],
                        "labels": {"stable": 1, "canary": 2},
                    }
                }
            ),
        ),
    ],
)
def test_version_labels_from_a_config_file(
    serving_root, tiny_model_dir, tmp_path, config_name, text
):
    from serving.server import create_app

    add_version(serving_root, 2, tiny_model_dir)
    add_version(serving_root, 3, tiny_model_dir)
    config = tmp_path / config_name
    config.write_text(text)
    app = create_app(str(serving_root), config_path=str(config), start=False)
    app.extensions["model_store"].poll()
    client = app.test_client()
    assert [
        r["version"] for r in client.get(f"/v1/models/{MODEL_NAME}").json["model_version_status"]
    ] == ["2", "1"]
    assert (
        client.get(f"/v1/models/{MODEL_NAME}/labels/stable").json["model_version_status"][0][
            "version"
        ]
        == "1"
    )
    assert (
        client.get(f"/v1/models/{MODEL_NAME}/labels/canary/metadata").json["model_spec"]["version"]
        == "2"
    )
    body = {"instances": [{"b64": base64.b64encode(png_bytes(BLUE)).decode()}]}
    response = client.post(f"/v1/models/{MODEL_NAME}/labels/canary:predict", json=body)
    assert (
        response.status_code == 200
        and response.json["predictions"][0][contract.OUTPUT_CLASS_INDEX] == 0
    )
    assert client.post(f"/v1/models/{MODEL_NAME}/labels/nope:predict", json=body).status_code == 404


def test_a_bad_config_file_is_refused_with_its_path(tmp_path):
    from serving.model_store import parse_config

    bad = tmp_path / "models.config"
    bad.write_text("model_config_list { nonsense: 1 }")
    with pytest.raises(ValueError, match="models.config"):
        parse_config(str(bad))


def test_batcher_keeps_each_requests_rows_apart():
    import tensorflow as tf

    from serving.batching import Batcher

    calls = []

    def double(x):
        calls.append(int(x.shape[0]))
        return {"y": x * 2}

    batcher = Batcher(max_batch_size=64, timeout_s=0.05, num_threads=1)
    results = {}

    def one(i):
        results[i] = batcher.run(double, {"x": np.full((i + 1,), i, dtype=np.float32)})["y"]

    threads = [threading.Thread(target=one, args=(i,)) for i in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    for i in range(8):
        assert results[i].tolist() == [2.0 * i] * (i + 1)
    assert len(calls) < 8, "concurrent requests were not batched"
    assert tf is not None


def test_a_bad_request_in_a_batch_does_not_fail_its_neighbours(server_app):
    from serving.batching import Batcher, SignatureCallError

    store = server_app.extensions["model_store"]
    function = store.acquire(MODEL_NAME).signature(contract.SIGNATURE_BYTES)
    batcher = Batcher(max_batch_size=16, timeout_s=0.05, num_threads=1)
    outcome = {}

    def one(name, data):
        try:
            outcome[name] = batcher.run(
                function, {contract.SERVING_INPUT_BYTES: np.array([data], dtype=object)}
            )
        except SignatureCallError as err:
            outcome[name] = err

    threads = [
        threading.Thread(target=one, args=("good", png_bytes(RED))),
        threading.Thread(target=one, args=("bad", b"garbage")),
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert outcome["good"][contract.OUTPUT_CLASS_INDEX].tolist() == [1]
    assert isinstance(outcome["bad"], SignatureCallError) and outcome["bad"].status == 400


def test_a_broken_newer_version_does_not_retire_the_serving_one(serving_root, tiny_model_dir):
    from serving.model_store import ModelStore

    store = ModelStore(str(serving_root), num_versions=1)
    store.poll()
    broken = serving_root / MODEL_NAME / "2"
    broken.mkdir()
    (broken / "saved_model.pb").write_bytes(b"still copying")
    store.poll()
    assert served_versions(store) == [1]
    shutil.rmtree(broken)
    add_version(serving_root, 2, tiny_model_dir)
    store.poll()
    assert served_versions(store) == [2]
