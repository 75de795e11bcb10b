"""The exported SavedModel: the Transform graph inside every signature, the feature-space
OOD score, and the Trainer's part of the model card (built by breastdx_core/model_card.py).

Called by `trainer_module.run_fn` after training.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import tensorflow as tf
import tensorflow_transform as tft
import tf_keras as keras

from breastdx_core import contract, model_card
from components.trainer.model import CNN_LSTM, last_conv_layer, weights_provenance
from components.trainer.sections import TrainerSettings

HEATMAP_OUTPUT = "heatmap"
SIGNATURE_EXPLAIN = "explain"  # bytes in; probabilities plus a Grad-CAM heatmap out
OOD_MAX_IMAGES = 4096  # train images the feature density is fitted on (features are [n, units])
OOD_SCORE_NAME = (
    "Mahalanobis distance of the penultimate layer's features to the nearest train-split class mean"
)


TTA_DESCRIPTION = "the 8 dihedral orientations (4 rotations, each mirrored) of every image, probabilities averaged"


def dihedral_views(images: tf.Tensor) -> list[tf.Tensor]:
    """The 8 orientations of a batch of square images: 4 quarter turns, each also mirrored.

    Args:
        images: float32 [n, h, h, c].

    Returns:
        8 tensors [n, h, h, c], the identity first.
    """
    turns = [tf.image.rot90(images, k) for k in range(4)]
    return turns + [tf.image.flip_left_right(turn) for turn in turns]


def penultimate(model: keras.Model) -> tf.Tensor:
    """The features the output layer reads (the head's last hidden layer)."""
    return model.get_layer(contract.OUTPUT_PROBABILITIES).input


def fit_ood(
    model: keras.Model,
    train_files: list[str],
    tf_transform_output: tft.TFTransformOutput,
    settings: TrainerSettings,
) -> dict[str, np.ndarray]:
    """Class means and the shared (shrunk) precision matrix of the penultimate features of
    the train split (Lee et al. 2018, "A simple unified framework for detecting
    out-of-distribution samples"), read once in file order without augmentation.

    Returns:
        {"means": [k, d] float32 (absent classes left out), "precision": [d, d] float32}.
    """
    features_model = keras.Model(model.inputs, penultimate(model))
    spec = tf_transform_output.transformed_feature_spec()
    files = [f for pattern in train_files for f in tf.io.gfile.glob(pattern)]
    dataset = (
        tf.data.TFRecordDataset(files, compression_type="GZIP")
        .take(OOD_MAX_IMAGES)
        .batch(int(settings.training.batch_size))
        .map(lambda x: tf.io.parse_example(x, spec))
    )
    features, labels = [], []
    for batch in dataset:
        features.append(
            features_model(batch[contract.TRANSFORMED_IMAGE_KEY], training=False).numpy()
        )
        labels.append(batch[contract.TRANSFORMED_LABEL_KEY].numpy().reshape(-1))
    f, y = np.concatenate(features).astype(np.float64), np.concatenate(labels)
    classes = [c for c in range(len(settings.task.class_names)) if np.any(y == c)]
    means = np.stack([f[y == c].mean(axis=0) for c in classes])
    centred = f - means[np.searchsorted(classes, y)]
    covariance = centred.T @ centred / max(len(f) - len(classes), 1)
    # Shrinkage towards the mean variance: a few hundred images of a 128-unit layer give a
    # singular covariance (ReLU units that never fire).
    shrink = 0.1 * np.trace(covariance) / len(covariance) + 1e-6
    precision = np.linalg.inv(covariance + shrink * np.eye(len(covariance)))
    return {"means": means.astype(np.float32), "precision": precision.astype(np.float32)}


def export_serving_model(
    model: keras.Model,
    tf_transform_output: tft.TFTransformOutput,
    path: str,
    settings: TrainerSettings,
    ood: dict[str, np.ndarray] | None = None,
) -> None:
    """Saves the model with the Transform graph inside every signature:

    * ``serving_default``: ``image_bytes`` [None] tf.string (raw PNG/JPEG bytes, what TF
      Serving's REST API carries as {"b64": ...}) -> probabilities, class_name,
      class_index, positive_probability, and with ``ood`` (`fit_ood`) ``ood_score`` [None]
      float32 (higher: less like the train split; breastdx_core/decision.py holds the threshold).
    * ``serving_examples``: ``examples`` [None] serialized tf.Example (only
      ``image_raw`` is read) -> the same outputs (Evaluator, batch jobs).
    * ``explain``: like serving_default, plus a Grad-CAM ``heatmap`` [None, h, w] in [0, 1].
    * ``transform_features``: serialized tf.Example -> the transformed image.

    With the training section's ``tta`` the probabilities of ``serving_default`` and
    ``serving_examples`` are the average over the 8 dihedral orientations
    (`dihedral_views`); ``explain``'s Grad-CAM stays the upright image's.
    """
    model.tft_layer = tf_transform_output.transform_features_layer()
    class_names = tf.constant(list(settings.task.class_names))
    positive = int(settings.task.positive_index)
    conv_layer = last_conv_layer(model)
    scored_model = keras.Model(model.inputs, [penultimate(model), model.output])
    explain_model = keras.Model(model.inputs, [conv_layer.output, penultimate(model), model.output])
    if ood is not None:
        ood_means = tf.constant(ood["means"])
        ood_precision = tf.constant(ood["precision"])

    def ood_outputs(features: tf.Tensor) -> dict[str, tf.Tensor]:
        if ood is None:
            return {}
        diff = features[:, tf.newaxis, :] - ood_means[tf.newaxis]  # [n, k, d]
        squared = tf.einsum("nkd,de,nke->nk", diff, ood_precision, diff)
        return {contract.OUTPUT_OOD: tf.sqrt(tf.maximum(tf.reduce_min(squared, axis=1), 0.0))}

    def transformed_image(encoded: tf.Tensor) -> tf.Tensor:
        features = model.tft_layer({contract.IMAGE_KEY: tf.reshape(encoded, [-1, 1])})
        return features[contract.TRANSFORMED_IMAGE_KEY]

    def named_outputs(probabilities: tf.Tensor) -> dict[str, tf.Tensor]:
        index = tf.argmax(probabilities, axis=-1)
        return {
            contract.OUTPUT_PROBABILITIES: probabilities,
            contract.OUTPUT_CLASS_NAME: tf.gather(class_names, index),
            contract.OUTPUT_CLASS_INDEX: index,
            contract.OUTPUT_POSITIVE: probabilities[:, positive],
        }

    def parse_images(examples: tf.Tensor) -> tf.Tensor:
        # Serving has only the image: parsing patient_id, height... would make them required.
        parsed = tf.io.parse_example(
            examples, {contract.IMAGE_KEY: tf.io.FixedLenFeature([1], tf.string)}
        )
        return parsed[contract.IMAGE_KEY]

    bytes_spec = tf.TensorSpec([None], tf.string, name=contract.SERVING_INPUT_BYTES)
    examples_spec = tf.TensorSpec([None], tf.string, name=contract.SERVING_INPUT_EXAMPLES)

    tta = bool(settings.training.tta)

    def scored(images: tf.Tensor) -> dict[str, tf.Tensor]:
        features, probabilities = scored_model(images, training=False)
        if tta:
            # Tissue has no up or left: the average over the orientations is the model's
            # answer (the OOD score stays the upright image's, as its threshold was set).
            probabilities = (
                tf.add_n(
                    [probabilities]
                    + [scored_model(view, training=False)[1] for view in dihedral_views(images)[1:]]
                )
                / 8.0
            )
        return {**named_outputs(probabilities), **ood_outputs(features)}

    @tf.function(input_signature=[bytes_spec])
    def serve_bytes(image_bytes):
        return scored(transformed_image(image_bytes))

    @tf.function(input_signature=[examples_spec])
    def serve_examples(examples):
        return scored(transformed_image(parse_images(examples)))

    @tf.function(input_signature=[bytes_spec])
    def explain(image_bytes):
        images = transformed_image(image_bytes)
        with tf.GradientTape() as tape:
            feature_map, features, probabilities = explain_model(images, training=False)
            top = tf.argmax(probabilities, axis=-1)
            score = tf.gather(probabilities, top, batch_dims=1)
        grads = tape.gradient(score, feature_map)
        channel_weights = tf.reduce_mean(grads, axis=[1, 2], keepdims=True)
        cam = tf.nn.relu(tf.reduce_sum(channel_weights * feature_map, axis=-1))
        cam = cam / (tf.reduce_max(cam, axis=[1, 2], keepdims=True) + 1e-8)
        cam = tf.image.resize(cam[..., tf.newaxis], tf.shape(images)[1:3])[..., 0]
        return {**named_outputs(probabilities), **ood_outputs(features), HEATMAP_OUTPUT: cam}

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
    model.save(
        path, save_format="tf", include_optimizer=False, signatures=signatures, save_traces=False
    )


def write_model_card(
    path: str,
    settings: TrainerSettings,
    model: keras.Model,
    history: dict[str, list[float]],
    counts: np.ndarray,
    seconds: float,
    training_diagnostics: dict[str, Any] | None = None,
    tuned: dict[str, Any] | None = None,
    ood: dict[str, np.ndarray] | None = None,
) -> None:
    """The Trainer's part of the model card (the EvaluationReport component adds the
    evaluation and the decision rule, the Pusher version and run id). ``tuned``: the
    Tuner's values, already applied to ``settings``."""
    training = settings.training
    values = settings.card_values()  # JSON's forms (lists), as the card holds them
    outputs = [
        contract.OUTPUT_PROBABILITIES,
        contract.OUTPUT_CLASS_NAME,
        contract.OUTPUT_CLASS_INDEX,
        contract.OUTPUT_POSITIVE,
    ] + ([contract.OUTPUT_OOD] if ood is not None else [])
    extra: dict[str, Any] = {
        "backbone": training.backbone,
        "weights": training.weights or "none (random initialisation)",
        "hyperparameters": {
            k: values[k]
            for k in (
                "unfreeze_last",
                "dense_units",
                "dropout",
                "learning_rate",
                "optimizer",
                "batch_size",
                "epochs",
                "seed",
            )
        },
        "train_class_counts": {n: int(c) for n, c in zip(settings.task.class_names, counts)},
    }
    extra["test_time_augmentation"] = TTA_DESCRIPTION if training.tta else "none"
    extra.update(weights_provenance(settings))  # the pretrained weights' source, or "random"
    if ood is not None:
        extra["ood_score"] = {
            "output": contract.OUTPUT_OOD,
            "score": OOD_SCORE_NAME,
            "fitted_on": "train",
            "classes": int(len(ood["means"])),
            "features": int(ood["precision"].shape[0]),
        }
    if training.backbone == CNN_LSTM:
        extra["hyperparameters"].update(
            {k: values[k] for k in ("lstm_backbone", "lstm_steps", "lstm_units")}
        )
    if tuned:
        extra["tuned_hyperparameters"] = tuned
    if training_diagnostics is not None:
        extra["training_diagnostics"] = training_diagnostics
    card = model_card.trainer_fields(
        config=settings.task.to_dict(),
        signature=contract.SIGNATURE_BYTES,
        input_description=f"{contract.SERVING_INPUT_BYTES}: [None] string, raw PNG/JPEG/GIF/BMP bytes "
        '(REST: {"b64": ...})',
        outputs=outputs,
        parameters={
            "total": int(model.count_params()),
            "trainable": int(sum(np.prod(w.shape) for w in model.trainable_weights)),
        },
        history=history,
        seconds=seconds,
        **extra,
    )
    card["input_contract"]["explain_signature"] = SIGNATURE_EXPLAIN
    from tfx.dsl.io import fileio  # gs:// and local alike

    model_card.save(model_card.path_in(path), card, files=fileio)
