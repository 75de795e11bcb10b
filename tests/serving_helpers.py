"""Helpers for the model server and web app tests: the tiny SavedModel, images, live servers.

``tests/conftest_serving.py`` (the fixtures) and the ``test_serving_*``/``test_webapp_*``
modules import it. The tiny SavedModel has the project's signature names and outputs
(``serving_default``, ``serving_examples``, ``explain``) and is built in seconds, so the
tests never need the pipeline. Its rule is simple enough to assert on: the redder the
image, the more IDC-positive.
"""

from __future__ import annotations

import io
import shutil
import socket
import threading

from PIL import Image

from breastdx_core import contract

MODEL_NAME = "tiny-idc"
CLASS_NAMES = contract.TASKS["idc"].class_names
POSITIVE_INDEX = contract.TASKS["idc"].positive_index
TINY_SIZE = 8  # the tiny model's own input size
HEATMAP_SIZE = contract.IDC_MODEL_SIZE  # the real model's Grad-CAM is at its input size
RED_WEIGHT = 8.0  # logit per unit of (red - blue): a red patch is confidently positive
PATCH = contract.IDC_PATCH
RED = (220, 40, 60)
BLUE = (40, 40, 220)
PURPLE = (128, 40, 128)  # red == blue: positive probability exactly 0.5 (uncertain)
# A schema-valid card (breastdx_core/model_card.py; the server refuses invalid ones) with a
# conformal rule: P = 0.5 (PURPLE) puts both classes in the set, "uncertain".
CARD = {
    "schema_version": 1,
    "task": "idc",
    "model_name": MODEL_NAME,
    "version": 1,
    "pushed_at": "2026-01-01T00:00:00Z",
    "class_names": list(CLASS_NAMES),
    "positive_class": CLASS_NAMES[POSITIVE_INDEX],
    "backbone": "tiny-test-module",
    "input_contract": {"signature": contract.SIGNATURE_BYTES, "model_size": list(PATCH)},
    "evaluation": {
        "split": "eval (patient-grouped)",
        "metrics": {
            "auc": 0.91,
            "binary_accuracy": 0.85,
            "precision": 0.8,
            "recall": 0.75,
            "example_count": 40,
        },
    },
    "decision_rule": {
        "kind": "conformal",
        "description": "tiny test rule",
        "class_names": list(CLASS_NAMES),
        "positive_class": CLASS_NAMES[POSITIVE_INDEX],
        "operating_threshold": 0.5,
        "conformal": {
            "coverage": 0.95,
            "claimed": True,
            "calibrated_on": "eval",
            "n_per_class": {n: 20 for n in CLASS_NAMES},
            "min_probability": {n: 0.35 for n in CLASS_NAMES},
        },
        "ood": {"output": contract.OUTPUT_OOD, "threshold": None, "false_alarm_rate": 0.01},
    },
    "intended_use": contract.RESEARCH_ONLY,
}


def png_bytes(color=RED, size=PATCH, mode="RGB") -> bytes:
    """A solid PNG image's encoded bytes."""
    buffer = io.BytesIO()
    Image.new(mode, size, color).save(buffer, format="PNG")
    return buffer.getvalue()


def build_tiny_saved_model(path: str, card: dict = CARD) -> str:
    """Saves the tiny model (and its card under ``assets.extra``) at ``path``."""
    import json
    import os

    import tensorflow as tf

    class Tiny(tf.Module):
        def __init__(self):
            super().__init__()
            self.weight = tf.Variable(RED_WEIGHT)
            self.class_names = tf.constant(list(CLASS_NAMES))

        def images(self, encoded):
            def decode(one):
                image = tf.io.decode_image(
                    one, channels=contract.MODEL_CHANNELS, expand_animations=False
                )
                return tf.image.resize(
                    tf.cast(image, tf.float32) / contract.PIXEL_MAX, [TINY_SIZE, TINY_SIZE]
                )

            return tf.map_fn(
                decode,
                encoded,
                fn_output_signature=tf.TensorSpec(
                    [TINY_SIZE, TINY_SIZE, contract.MODEL_CHANNELS], tf.float32
                ),
            )

        def outputs(self, images):
            red = tf.reduce_mean(images[..., 0], axis=[1, 2])
            blue = tf.reduce_mean(images[..., 2], axis=[1, 2])
            positive = tf.sigmoid(self.weight * (red - blue))
            probabilities = tf.stack([1.0 - positive, positive], axis=-1)
            index = tf.argmax(probabilities, axis=-1)
            return {
                contract.OUTPUT_PROBABILITIES: probabilities,
                contract.OUTPUT_CLASS_NAME: tf.gather(self.class_names, index),
                contract.OUTPUT_CLASS_INDEX: index,
                contract.OUTPUT_POSITIVE: positive,
            }

        @tf.function(
            input_signature=[tf.TensorSpec([None], tf.string, name=contract.SERVING_INPUT_BYTES)]
        )
        def serve_bytes(self, image_bytes):
            return self.outputs(self.images(image_bytes))

        @tf.function(
            input_signature=[tf.TensorSpec([None], tf.string, name=contract.SERVING_INPUT_EXAMPLES)]
        )
        def serve_examples(self, examples):
            parsed = tf.io.parse_example(
                examples, {contract.IMAGE_KEY: tf.io.FixedLenFeature([], tf.string)}
            )
            return self.outputs(self.images(parsed[contract.IMAGE_KEY]))

        @tf.function(
            input_signature=[tf.TensorSpec([None], tf.string, name=contract.SERVING_INPUT_BYTES)]
        )
        def explain(self, image_bytes):
            images = self.images(image_bytes)
            red = tf.image.resize(images[..., :1], HEATMAP_SIZE)[..., 0]
            heatmap = red / (tf.reduce_max(red, axis=[1, 2], keepdims=True) + 1e-8)
            return {**self.outputs(images), "heatmap": heatmap}

    module = Tiny()
    tf.saved_model.save(
        module,
        path,
        signatures={
            contract.SIGNATURE_BYTES: module.serve_bytes,
            contract.SIGNATURE_EXAMPLES: module.serve_examples,
            "explain": module.explain,
        },
    )
    card_path = os.path.join(path, contract.MODEL_CARD_RELPATH)
    os.makedirs(os.path.dirname(card_path), exist_ok=True)
    with open(card_path, "w", encoding="utf-8") as handle:
        json.dump(card, handle)
    return path


def add_version(serving_root, version: int, source: str, name: str = MODEL_NAME) -> str:
    """Copies a SavedModel into ``<root>/<name>/<version>`` as Pusher would; returns the folder."""
    import json
    import os

    target = os.path.join(str(serving_root), name, str(version))
    tmp = target + ".tmp"
    shutil.copytree(source, tmp)
    card_path = os.path.join(tmp, contract.MODEL_CARD_RELPATH)
    with open(card_path, encoding="utf-8") as handle:
        card = json.load(handle)
    card["version"] = version
    with open(card_path, "w", encoding="utf-8") as handle:
        json.dump(card, handle)
    os.rename(tmp, target)  # appears whole: ".tmp" is not an integer so the poller skips it
    return target


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class LiveServer:
    """A WSGI app served by werkzeug's threaded server on 127.0.0.1 in a daemon thread."""

    def __init__(self, app):
        from werkzeug.serving import make_server

        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self._server = make_server("127.0.0.1", self.port, app, threaded=True)
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()

    def close(self) -> None:
        self._server.shutdown()
        self._thread.join()
