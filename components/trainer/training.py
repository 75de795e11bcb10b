"""The fit loop: the study's callbacks, the training diagnostics, the distribution strategy.

Called by `trainer_module.run_fn` and the model lab.
"""
from __future__ import annotations

import math
import time
from typing import Any, Dict, List, Optional, Sequence, Tuple

import tensorflow as tf
import tf_keras as keras

from components.progress import StepProgress
from components.trainer.model import resolve_weights
from pipeline.lab import diagnostics

def fit_model(model: keras.Model, train: tf.data.Dataset, evaluation: tf.data.Dataset, config: Dict[str, Any],
              train_steps: int, eval_steps: int, class_weight: Optional[Dict[int, float]] = None,
              log_dir: Optional[str] = None, extra_callbacks: Sequence[keras.callbacks.Callback] = ()
              ) -> Tuple[Dict[str, List[float]], Dict[str, Any], float]:
    """Trains ``model`` with the study's callbacks and the training diagnostics.

    Returns:
        (history {metric: [per epoch]}, the diagnostics report, seconds of training).
    """
    epochs = max(1, int(config["epochs"]))
    steps_per_epoch = max(1, math.ceil(train_steps / epochs))
    # One un-augmented eval batch: the diagnostics measure gradients on the same data each time.
    probe_features, probe_labels = next(iter(evaluation))
    probe_size = int(config.get("diagnostics_probe", 16))
    probe = ({k: v[:probe_size] for k, v in probe_features.items()} if isinstance(probe_features, dict)
             else probe_features[:probe_size], probe_labels[:probe_size])
    checks = diagnostics.TrainingDiagnostics(probe, diagnostics.Thresholds(**config.get("diagnostics", {})))
    # A randomly initialised network validates with batch-norm statistics still near
    # their initial values (recalibrated only after fitting): its val_loss misleads, so
    # the schedule and early stopping follow the training loss there.
    monitor = "val_loss" if resolve_weights(config["weights"]) is not None else "loss"
    callbacks = [
        keras.callbacks.ReduceLROnPlateau(monitor=monitor, factor=config["lr_factor"], patience=1,
                                          min_lr=config["min_learning_rate"]),
        keras.callbacks.EarlyStopping(monitor=monitor, patience=int(config["early_stopping_patience"]),
                                      restore_best_weights=True),
        checks,
        StepProgress("Trainer", epochs * steps_per_epoch),  # the console's bar (components/progress.py)
        *extra_callbacks,
    ]
    if log_dir:
        callbacks.append(keras.callbacks.TensorBoard(log_dir=log_dir, update_freq="epoch"))
    # A handful of steps (`breastdx compare`'s small budget) costs less eagerly than
    # tracing and optimising a graph of hundreds of layers (minutes on 2 CPU cores).
    model.run_eagerly = bool(config.get("run_eagerly", False))
    started = time.time()
    history = model.fit(train, epochs=epochs, steps_per_epoch=steps_per_epoch, validation_data=evaluation,
                        validation_steps=max(1, eval_steps or 1), class_weight=class_weight,
                        callbacks=callbacks, verbose=2)
    seconds = time.time() - started
    clean_history = {k: [float(v) for v in values] for k, values in history.history.items()}
    return clean_history, checks.report(), seconds


STRATEGIES = ("none", "mirrored", "multi_worker_mirrored")
BATCHNORM_BATCHES = 16  # un-augmented train batches that re-estimate batch-norm statistics


def distribution_strategy(name: Optional[str]) -> tf.distribute.Strategy:
    """The tf.distribute strategy a cluster run asks for (kubeflow_runner sets
    ``distribution_strategy`` in custom_config): mirrored over the GPUs of one node,
    multi-worker over several (TF_CONFIG from the cluster), or none (local runs)."""
    name = name or "none"
    if name == "mirrored":
        return tf.distribute.MirroredStrategy()
    if name == "multi_worker_mirrored":
        return tf.distribute.MultiWorkerMirroredStrategy()
    if name == "none":
        return tf.distribute.get_strategy()  # the default: no distribution
    raise ValueError(f"distribution_strategy must be one of {STRATEGIES}, got {name!r}")
