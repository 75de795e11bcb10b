"""Export, evaluation and the Trainer's part of the model card for the mammography
variant's two Trainer modules (patch_trainer/, whole_trainer/).

Signatures (every one decodes with `components.mammo.records.decode_grey`):

* patch model, ``serving_default``: ``image_bytes`` [None] (PNG/JPEG patches) ->
  probabilities [None, 5], class_name, class_index, positive_probability
  (P(malignant calcification) + P(malignant mass)).
* whole-image model, ``serving_default``: ``image_bytes`` [None] (whole mammograms,
  any size) -> probabilities [None, 2] (benign, malignant), class_name, class_index,
  positive_probability; ``serving_examples``: serialized tf.Example (``image_raw``) ->
  the same (the Evaluator scores through it); ``heatmap``: the same bytes -> ``heatmap``
  [None, rows, cols, 5] patch-class probabilities on a window grid of the fitted image.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import tensorflow as tf
import tf_keras as keras

from breastdx_core import contract, model_card
from breastdx_core.metrics import roc_auc
from components.mammo import records

MALIGNANT_PATCH_CLASSES = ("calcification_malignant", "mass_malignant")


def _malignant_indices() -> list:
    return [contract.CBIS_PATCH_CLASSES.index(name) for name in MALIGNANT_PATCH_CLASSES]


def evaluate_patches(model: keras.Model, x: np.ndarray, y: np.ndarray) -> dict[str, Any]:
    """Accuracy over the 5 classes, the confusion matrix, and the AUC of P(malignant)."""
    if not len(x):
        return {"n": 0}
    probabilities = model.predict(x, batch_size=64, verbose=0)
    predicted = probabilities.argmax(axis=1)
    n = len(contract.CBIS_PATCH_CLASSES)
    confusion = np.zeros((n, n), np.int64)
    for t, p in zip(y, predicted):
        confusion[t, p] += 1
    malignant = np.isin(y, _malignant_indices())
    return {
        "n": int(len(y)),
        "accuracy": float(np.mean(predicted == y)),
        "malignant_auc": roc_auc(malignant, probabilities[:, _malignant_indices()].sum(axis=1)),
        "confusion_matrix": confusion.tolist(),
        "class_names": list(contract.CBIS_PATCH_CLASSES),
    }


def evaluate_whole(model: keras.Model, x: np.ndarray, y: np.ndarray) -> dict[str, Any]:
    """AUC and accuracy at 0.5 of P(malignant) on whole mammograms."""
    if not len(x):
        return {"n": 0}
    p = model.predict(x, batch_size=4, verbose=0)[:, 0]
    return {
        "n": int(len(y)),
        "auc": roc_auc(y.astype(bool), p),
        "accuracy": float(np.mean((p > 0.5) == y)),
        "malignant": int(y.sum()),
    }


def export_patch_model(model: keras.Model, path: str, patch_size: int) -> None:
    """The patch classifier as a SavedModel (module docstring)."""
    class_names = tf.constant(list(contract.CBIS_PATCH_CLASSES))
    malignant = _malignant_indices()

    @tf.function(
        input_signature=[tf.TensorSpec([None], tf.string, name=contract.SERVING_INPUT_BYTES)]
    )
    def serve(image_bytes):
        probabilities = model(
            records.decode_grey(image_bytes, (patch_size, patch_size)), training=False
        )
        index = tf.argmax(probabilities, axis=-1)
        return {
            contract.OUTPUT_PROBABILITIES: probabilities,
            contract.OUTPUT_CLASS_NAME: tf.gather(class_names, index),
            contract.OUTPUT_CLASS_INDEX: index,
            contract.OUTPUT_POSITIVE: tf.reduce_sum(
                tf.gather(probabilities, malignant, axis=1), axis=1
            ),
        }

    model.save(
        path,
        save_format="tf",
        include_optimizer=False,
        signatures={contract.SIGNATURE_BYTES: serve},
    )


def export_whole_model(
    model: keras.Model,
    patch_model: keras.Model,
    path: str,
    image_size: Sequence[int],
    patch_size: int,
    stride: int,
) -> None:
    """The whole-image classifier with the heatmap signature (module docstring)."""
    class_names = tf.constant(list(records.WHOLE_CLASS_NAMES))
    bytes_spec = tf.TensorSpec([None], tf.string, name=contract.SERVING_INPUT_BYTES)

    def outputs(image_bytes):
        p = model(records.decode_grey(image_bytes, image_size), training=False)[:, 0]
        index = tf.cast(p > 0.5, tf.int64)
        return {
            contract.OUTPUT_PROBABILITIES: tf.stack([1 - p, p], axis=1),
            contract.OUTPUT_CLASS_NAME: tf.gather(class_names, index),
            contract.OUTPUT_CLASS_INDEX: index,
            contract.OUTPUT_POSITIVE: p,
        }

    @tf.function(input_signature=[bytes_spec])
    def serve(image_bytes):
        return outputs(image_bytes)

    @tf.function(
        input_signature=[tf.TensorSpec([None], tf.string, name=contract.SERVING_INPUT_EXAMPLES)]
    )
    def serve_examples(examples):
        return outputs(records.parse_image_bytes(examples))

    @tf.function(input_signature=[bytes_spec])
    def heat(image_bytes):
        grey = records.decode_grey(image_bytes, image_size)
        windows = tf.image.extract_patches(
            grey, [1, patch_size, patch_size, 1], [1, stride, stride, 1], [1, 1, 1, 1], "VALID"
        )
        shape = tf.shape(windows)
        probabilities = patch_model(
            tf.reshape(windows, [-1, patch_size, patch_size, 1]), training=False
        )
        return {
            records.OUTPUT_HEATMAP: tf.reshape(
                probabilities, [shape[0], shape[1], shape[2], len(contract.CBIS_PATCH_CLASSES)]
            )
        }

    model.heatmap_model = patch_model  # tracked, so the heatmap signature's variables are saved
    model.save(
        path,
        save_format="tf",
        include_optimizer=False,
        signatures={
            contract.SIGNATURE_BYTES: serve,
            contract.SIGNATURE_EXAMPLES: serve_examples,
            records.SIGNATURE_HEATMAP: heat,
        },
    )


def write_card(
    path: str,
    *,
    variant: str,
    class_names: Sequence[str],
    positive_index: int,
    model_size: Sequence[int],
    input_description: str,
    outputs: Sequence[str],
    model: keras.Model,
    history: Any,
    seconds: float,
    synthetic: bool,
    evaluation: dict[str, Any],
    contract_extra: dict[str, Any] | None = None,
    **extra: Any,
) -> None:
    """The Trainer's part of the model card (``assets.extra/model_card.json``, built by
    `breastdx_core.model_card.trainer_fields`); the Pusher adds the version and the run and
    validates it against the schema.

    ``evaluation``: the Trainer's own metrics on the eval split (a stratified share of
    the release's train patients: components/mammo/cbis.pipeline_splits) with their n;
    labelled synthetic when the release was the embedded one. For the whole-image model
    the EvaluationReport component replaces them with the Evaluator's eval metrics and
    the held-out test split's report before the push; the patch model's stay in the
    card as ``patch_model``.
    ``contract_extra``: more of the input contract (the heatmap signature the web app
    looks for: webapp/kinds.py; ``any_size``: the model fits any image itself).
    """
    card = model_card.trainer_fields(
        config={
            "task": "cbis",
            "class_names": list(class_names),
            "positive_index": positive_index,
            "model_size": list(model_size),
        },
        signature=contract.SIGNATURE_BYTES,
        input_description=input_description,
        outputs=list(outputs),
        parameters={"total": int(model.count_params())},
        history=history,
        seconds=seconds,
        variant=variant,
        intended_use="Research on mammograms (CBIS-DDSM); not validated for clinical decisions.",
        **extra,
    )
    card["input_contract"].update(contract_extra or {})
    note = (
        "Metrics of the SYNTHETIC release the pipeline ran on: they say nothing about real mammograms."
        if synthetic
        else "Metrics of the release the pipeline ran on (its eval split, by patient)."
    )
    card["evaluation"] = model_card.finite(
        {
            "split": "eval (a stratified share of the release's train patients)",
            "metrics": evaluation,
            "n_images": int(evaluation.get("n", 0)),
            "synthetic_data": bool(synthetic),
            "note": note,
        }
    )
    from tfx.dsl.io import fileio  # gs:// and local alike

    model_card.save(model_card.path_in(path), card, files=fileio)
