"""Temperature scaling: the pushed model's probabilities calibrated on the eval split.

Called by `trainer_module.run_fn` after training (``calibration: "temperature"`` in the
Trainer's ``custom_config``): the trained model scores the whole eval split (patient-
grouped, never trained on), one temperature T is fitted there by minimising the negative
log-likelihood of ``softmax(log p / T)`` (Guo et al. 2017, "On calibration of modern neural
networks"), and a `TemperatureScaling` layer is put on top of the model, so every
exported signature (serving, examples, explain) returns calibrated probabilities. One
parameter cannot overfit a split of thousands of images, and it keeps the ranking: AUC is
unchanged, the 0.5 threshold and the uncertainty band move. The fit and the expected
calibration error (ECE) before and after, with reliability bins, go into the model card's
``calibration`` field (the keys of `breastdx_core.model_card.calibration_fields`); the
evaluation report reads them there. `uncalibrate` recovers the raw probabilities.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import tensorflow as tf
import tf_keras as keras

from breastdx_core import contract, model_card

LAYER_NAME = "temperature_scaling"
# The temperature is searched over log T in this range: T from 1/20 (sharpen) to 20 (soften).
LOG_T_BOUNDS = (-np.log(20.0), np.log(20.0))
_EPS = 1e-7


class TemperatureScaling(keras.layers.Layer):
    """probabilities [batch, classes] -> softmax(log(probabilities) / temperature)."""

    def __init__(self, temperature: float = 1.0, **kwargs: Any):
        super().__init__(**kwargs)
        self.temperature = float(temperature)

    def call(self, probabilities: tf.Tensor) -> tf.Tensor:
        logits = tf.math.log(tf.clip_by_value(probabilities, _EPS, 1.0))
        return tf.nn.softmax(logits / self.temperature, axis=-1)

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "temperature": self.temperature}


def scale(probabilities: np.ndarray, temperature: float) -> np.ndarray:
    """NumPy twin of `TemperatureScaling`: [n, classes] -> [n, classes]."""
    logits = np.log(np.clip(probabilities, _EPS, 1.0)) / temperature
    logits -= logits.max(axis=1, keepdims=True)
    exp = np.exp(logits)
    return exp / exp.sum(axis=1, keepdims=True)


def uncalibrate(probabilities: np.ndarray, temperature: float) -> np.ndarray:
    """The probabilities before scaling (the inverse: temperature 1/T), [n, classes]."""
    return scale(probabilities, 1.0 / temperature)


def nll(probabilities: np.ndarray, labels: np.ndarray) -> float:
    """Mean negative log-likelihood of integer ``labels`` [n] under [n, classes]."""
    picked = probabilities[np.arange(len(labels)), labels.astype(int)]
    return float(-np.mean(np.log(np.clip(picked, _EPS, 1.0))))


def fit_temperature(probabilities: np.ndarray, labels: np.ndarray) -> float:
    """The T that minimises the NLL of ``scale(probabilities, T)`` (bounded scalar search)."""
    from scipy.optimize import minimize_scalar

    result = minimize_scalar(
        lambda log_t: nll(scale(probabilities, float(np.exp(log_t))), labels),
        bounds=LOG_T_BOUNDS,
        method="bounded",
        options={"xatol": 1e-4},
    )
    return float(np.exp(result.x))


def calibrated_model(model: keras.Model, temperature: float) -> keras.Model:
    """``model`` with `TemperatureScaling` on its output. The layers are shared, so the
    backbone's names (Grad-CAM's feature map, the "pool" layer) stay reachable."""
    outputs = TemperatureScaling(temperature, name=LAYER_NAME)(model.output)
    return keras.Model(model.inputs, outputs, name=model.name)


def predict_split(model: keras.Model, dataset: tf.data.Dataset) -> tuple[np.ndarray, np.ndarray]:
    """(probabilities [n, classes], labels [n]) of a finite dataset of (features, label)."""
    probabilities, labels = [], []
    for features, label in dataset:
        probabilities.append(
            model(features[contract.TRANSFORMED_IMAGE_KEY], training=False).numpy()
        )
        labels.append(np.asarray(label).reshape(-1))
    if not probabilities:
        raise ValueError("calibration: the eval split is empty; nothing to calibrate on")
    return np.concatenate(probabilities), np.concatenate(labels).astype(int)


def calibrate(
    model: keras.Model, dataset: tf.data.Dataset, positive_index: int
) -> tuple[keras.Model, dict[str, Any]]:
    """Fits T on ``dataset`` (the whole eval split, finite) and wraps ``model``.

    Returns:
        (the calibrated model, the card's ``calibration`` field: method, temperature,
        ece_before/after, nll_before/after, n, fitted_on, reliability_before/after).
    """
    from components.evaluation.statistics import calibration as reliability

    probabilities, labels = predict_split(model, dataset)
    temperature = fit_temperature(probabilities, labels)
    after = scale(probabilities, temperature)
    positive = (labels == positive_index).astype(int)
    before_bins = reliability(positive, probabilities[:, positive_index])
    after_bins = reliability(positive, after[:, positive_index])
    field = {
        "method": "temperature",
        "temperature": temperature,
        "fitted_on": "eval",
        "n": int(len(labels)),
        "ece_before": before_bins["ece"],
        "ece_after": after_bins["ece"],
        "nll_before": nll(probabilities, labels),
        "nll_after": nll(after, labels),
        "reliability_before": before_bins["bins"],
        "reliability_after": after_bins["bins"],
    }
    return calibrated_model(model, temperature), field


def update_card(model_dir: str, fields: dict[str, Any]) -> None:
    """Adds ``fields`` to the card the Trainer wrote beside ``model_dir``'s SavedModel."""
    from tfx.dsl.io import fileio  # gs:// and local alike

    model_card.update(model_card.path_in(model_dir), fields, files=fileio)
