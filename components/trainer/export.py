"""The exported SavedModel: the Transform graph inside every signature, and the Trainer's
part of the model card.

Called by `trainer_module.run_fn` after training.
"""
from __future__ import annotations

import json
import os
from typing import Any, Dict, List, Optional

import numpy as np
import tensorflow as tf
import tensorflow_transform as tft
import tf_keras as keras

from components.trainer.model import CNN_LSTM, last_conv_layer, weights_provenance
from pipeline import contract

HEATMAP_OUTPUT = "heatmap"
SIGNATURE_EXPLAIN = "explain"  # bytes in; probabilities plus a Grad-CAM heatmap out


def export_serving_model(model: keras.Model, tf_transform_output: tft.TFTransformOutput, path: str,
                         config: Dict[str, Any]) -> None:
    """Saves the model with the Transform graph inside every signature:

    * ``serving_default``: ``image_bytes`` [None] tf.string (raw PNG/JPEG bytes, what TF
      Serving's REST API carries as {"b64": ...}) -> probabilities, class_name,
      class_index, positive_probability.
    * ``serving_examples``: ``examples`` [None] serialized tf.Example (only
      ``image_raw`` is read) -> the same outputs (Evaluator, batch jobs).
    * ``explain``: like serving_default, plus a Grad-CAM ``heatmap`` [None, h, w] in [0, 1].
    * ``transform_features``: serialized tf.Example -> the transformed image.
    """
    model.tft_layer = tf_transform_output.transform_features_layer()
    class_names = tf.constant(config["class_names"])
    positive = int(config["positive_index"])
    conv_layer = last_conv_layer(model)
    explain_model = keras.Model(model.inputs, [conv_layer.output, model.output])

    def transformed_image(encoded: tf.Tensor) -> tf.Tensor:
        features = model.tft_layer({contract.IMAGE_KEY: tf.reshape(encoded, [-1, 1])})
        return features[contract.TRANSFORMED_IMAGE_KEY]

    def named_outputs(probabilities: tf.Tensor) -> Dict[str, tf.Tensor]:
        index = tf.argmax(probabilities, axis=-1)
        return {
            contract.OUTPUT_PROBABILITIES: probabilities,
            contract.OUTPUT_CLASS_NAME: tf.gather(class_names, index),
            contract.OUTPUT_CLASS_INDEX: index,
            contract.OUTPUT_POSITIVE: probabilities[:, positive],
        }

    def parse_images(examples: tf.Tensor) -> tf.Tensor:
        # Serving has only the image: parsing patient_id, height... would make them required.
        parsed = tf.io.parse_example(examples, {contract.IMAGE_KEY: tf.io.FixedLenFeature([1], tf.string)})
        return parsed[contract.IMAGE_KEY]

    bytes_spec = tf.TensorSpec([None], tf.string, name=contract.SERVING_INPUT_BYTES)
    examples_spec = tf.TensorSpec([None], tf.string, name=contract.SERVING_INPUT_EXAMPLES)

    @tf.function(input_signature=[bytes_spec])
    def serve_bytes(image_bytes):
        return named_outputs(model(transformed_image(image_bytes), training=False))

    @tf.function(input_signature=[examples_spec])
    def serve_examples(examples):
        return named_outputs(model(transformed_image(parse_images(examples)), training=False))

    @tf.function(input_signature=[bytes_spec])
    def explain(image_bytes):
        images = transformed_image(image_bytes)
        with tf.GradientTape() as tape:
            feature_map, probabilities = explain_model(images, training=False)
            top = tf.argmax(probabilities, axis=-1)
            score = tf.gather(probabilities, top, batch_dims=1)
        grads = tape.gradient(score, feature_map)
        channel_weights = tf.reduce_mean(grads, axis=[1, 2], keepdims=True)
        cam = tf.nn.relu(tf.reduce_sum(channel_weights * feature_map, axis=-1))
        cam = cam / (tf.reduce_max(cam, axis=[1, 2], keepdims=True) + 1e-8)
        cam = tf.image.resize(cam[..., tf.newaxis], tf.shape(images)[1:3])[..., 0]
        return {**named_outputs(probabilities), HEATMAP_OUTPUT: cam}

    @tf.function(input_signature=[examples_spec])
    def transform_features(examples):
        return {contract.TRANSFORMED_IMAGE_KEY: transformed_image(parse_images(examples))}

    signatures = {
        contract.SIGNATURE_BYTES: serve_bytes,
        contract.SIGNATURE_EXAMPLES: serve_examples,
        SIGNATURE_EXPLAIN: explain,
        contract.SIGNATURE_TRANSFORM: transform_features,
    }
    # Without the optimizer state: the SavedModel is a third of the size and is copied
    # by Trainer, Pusher and the serving root. Without Keras's per-layer call traces:
    # every consumer (TFMA as tf_generic, the model server, the report) loads the
    # signatures with tf.saved_model.load, and tracing each of NASNet's or DenseNet's
    # hundreds of layers took minutes on 2 CPU cores.
    model.save(path, save_format="tf", include_optimizer=False, signatures=signatures, save_traces=False)


def write_model_card(path: str, config: Dict[str, Any], model: keras.Model, history: Dict[str, List[float]],
                     counts: np.ndarray, seconds: float, training_diagnostics: Optional[Dict[str, Any]] = None,
                     tuned: Optional[Dict[str, Any]] = None) -> None:
    """The Trainer's part of the model card (Pusher adds version, metrics, run id)."""
    card = {
        "intended_use": contract.RESEARCH_ONLY + " Trained for research on breast images; "
                        "not validated for clinical decisions.",
        "task": config["task"],
        "class_names": list(config["class_names"]),
        "positive_class": config["class_names"][int(config["positive_index"])],
        "input_contract": {
            "signature": contract.SIGNATURE_BYTES,
            "input": f"{contract.SERVING_INPUT_BYTES}: [None] string, raw PNG/JPEG/GIF/BMP bytes "
                     "(REST: {\"b64\": ...})",
            "model_size": list(config["model_size"]),
            "outputs": [contract.OUTPUT_PROBABILITIES, contract.OUTPUT_CLASS_NAME, contract.OUTPUT_CLASS_INDEX,
                        contract.OUTPUT_POSITIVE],
            "explain_signature": SIGNATURE_EXPLAIN,
        },
        "backbone": config["backbone"],
        "weights": config["weights"] or "none (random initialisation)",
        "hyperparameters": {k: config[k] for k in ("unfreeze_last", "dense_units", "dropout", "learning_rate",
                                                   "optimizer", "batch_size", "epochs", "seed") if k in config},
        "parameters": {"total": int(model.count_params()),
                       "trainable": int(sum(np.prod(w.shape) for w in model.trainable_weights))},
        "train_class_counts": {n: int(c) for n, c in zip(config["class_names"], counts)},
        "training_history": history,
        "train_seconds": round(seconds, 1),
    }
    if config["backbone"] == CNN_LSTM:
        card["hyperparameters"].update({k: config[k] for k in ("lstm_backbone", "lstm_steps", "lstm_units")})
    if tuned:
        card["tuned_hyperparameters"] = tuned
    if training_diagnostics is not None:
        card["training_diagnostics"] = training_diagnostics
    card.update(weights_provenance(config))  # the pretrained weights' source, or "random" (issue 14)
    card_path = os.path.join(path, contract.MODEL_CARD_RELPATH)
    tf.io.gfile.makedirs(os.path.dirname(card_path))
    with tf.io.gfile.GFile(card_path, "w") as handle:
        json.dump(card, handle, indent=1)
